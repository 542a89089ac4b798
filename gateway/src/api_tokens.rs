//! The gateway's side of API tokens (`AdminGate::tokens`, `create_token`, `revoke_token`,
//! `token_for`): a secret of 256 random bits with the recognisable prefix `ghk_`, of which
//! the store keeps only the SHA-256 (`gatehouse_store::api_token_hash`); names and scopes
//! validated here; every call of the API looks its token up in the store, so a revoked or
//! expired token is refused from the next request on every replica.

use std::net::IpAddr;

use base64::Engine;
use gatehouse_admin_ui::admin::{expiry, AdminError, TokenInput, TokenRow};
use gatehouse_admin_ui::Viewer;
use gatehouse_store::{api_token_hash, Actor, ApiTokenRecord, StoreError, TokenScope};
use rand::RngCore;

use crate::authn::session::now;
use crate::authn::Authn;

/// The prefix of every token secret, so that leaked tokens are recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "ghk_";
/// Longest token name.
pub const MAX_TOKEN_NAME: usize = 64;

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid(vec![(field.to_string(), message.into())])
}

fn unavailable(e: StoreError) -> AdminError {
    AdminError::Unavailable(e.to_string())
}

fn random(bytes: usize) -> Vec<u8> {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// A new secret: `ghk_` and 32 random bytes, base64url.
pub fn new_secret() -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(32))
    )
}

/// Whether `name` is a token name: 1 to 64 of `a-z 0-9 - _ .`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOKEN_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

fn row(t: ApiTokenRecord, at: i64) -> TokenRow {
    TokenRow {
        active: t.usable(at),
        id: t.id,
        name: t.name,
        scope: t.scope.as_string(),
        created_by: t.created_by,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked_at,
        revoked_by: t.revoked_by,
    }
}

impl Authn {
    pub(crate) async fn api_tokens(&self) -> Result<Vec<TokenRow>, AdminError> {
        let t = now();
        Ok(self
            .store
            .api_tokens()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|r| row(r, t))
            .collect())
    }

    pub(crate) async fn create_api_token(
        &self,
        by: &Viewer,
        actor: &Actor,
        input: &TokenInput,
    ) -> Result<String, AdminError> {
        let mut errors = vec![];
        let name = input.name.trim().to_string();
        if !valid_name(&name) {
            errors.push((
                "name".to_string(),
                format!("1 to {MAX_TOKEN_NAME} lower-case letters, digits, -, _ or ."),
            ));
        }
        let scope = TokenScope::parse(&input.scope);
        match &scope {
            None => errors.push(("scope".to_string(), "\"admin\" or \"app:<slug>\"".to_string())),
            Some(TokenScope::App(slug)) if self.live.peek().app(slug).is_none() => {
                errors.push(("scope".to_string(), format!("no app {slug:?}")));
            }
            Some(_) => {}
        }
        let t = now();
        let expires_at = match expiry(&input.duration, &input.until, t) {
            Ok(e) => e,
            Err(m) => {
                let field = if input.until.trim().is_empty() {
                    "duration"
                } else {
                    "until"
                };
                errors.push((field.to_string(), m));
                None
            }
        };
        let (Some(scope), true) = (scope, errors.is_empty()) else {
            return Err(AdminError::Invalid(errors));
        };
        let secret = new_secret();
        let record = ApiTokenRecord {
            id: random(8).iter().map(|b| format!("{b:02x}")).collect(),
            name: name.clone(),
            scope,
            secret_hash: api_token_hash(&secret),
            created_by: by.identity.user.as_str().to_string(),
            created_at: t,
            expires_at,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
        };
        match self.store.create_api_token(&record, actor).await {
            Ok(()) => Ok(secret),
            Err(StoreError::Conflict { .. }) => Err(invalid("name", format!("a live token is named {name:?}"))),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(crate) async fn revoke_api_token(&self, actor: &Actor, id: &str) -> Result<(), AdminError> {
        match self.store.revoke_api_token(id, now(), actor).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdminError::NotFound),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(crate) async fn api_token_for(&self, secret: &str) -> Result<Option<TokenRow>, AdminError> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let t = now();
        let Some(record) = self
            .store
            .api_token_by_hash(&api_token_hash(secret))
            .await
            .map_err(unavailable)?
            .filter(|r| r.usable(t))
        else {
            return Ok(None);
        };
        if let Err(e) = self.store.touch_api_token(&record.id, t).await {
            tracing::warn!(error = %e, token = %record.name, "could not record API token use");
        }
        Ok(Some(row(record, t)))
    }
}

/// The actor of a token change made by `by` from `client`.
pub(crate) fn actor(by: &Viewer, client: Option<IpAddr>) -> Actor {
    Actor::user(&by.identity.user, client).with_token(by.token.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("ghk_") && a.len() == 4 + 43, "{a}");
    }

    #[test]
    fn names() {
        for ok in ["ci", "ci-deploy", "team_a.bot", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "CI", "a b", "a/b", "tök", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
