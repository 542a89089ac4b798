//! Local accounts: argon2id hashes in the store. Unknown user and wrong password give the
//! same answer after the same work (a dummy hash is verified for unknown users); failures
//! are rate-limited per user and per client address.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use gatehouse_policy::UserName;
use gatehouse_store::{Store, StoreError};

use super::session::{now, NewIdentity};
use crate::GatewayError;

/// Hashes a password with argon2id (default parameters), as a PHC string.
pub fn hash_password(password: &str) -> Result<String, GatewayError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| GatewayError::Io(format!("cannot hash password: {e}")))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A hash of a random password, verified for unknown users so that they cost the same.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&format!("{:x}", rand::random::<u128>())).unwrap_or_default())
}

/// Computes the dummy hash now, so the first unknown-user sign-in is not slower than the
/// others.
pub fn warm_up() {
    let _ = dummy_hash();
}

/// Why a password sign-in failed. `Invalid` covers unknown user, wrong password and a
/// disabled account alike: the page must not tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    Invalid,
    RateLimited { retry_after: Duration },
    Unavailable,
}

/// Failure counters per user and per client address over a window, kept in the store so
/// that every replica counts the same failures (a balancer spreading guesses over replicas
/// gains nothing).
#[derive(Debug)]
pub struct RateLimit {
    store: Arc<Store>,
    window: Duration,
    per_user: u32,
    per_client: u32,
}

impl RateLimit {
    pub fn new(store: Arc<Store>, window: Duration, per_user: u32, per_client: u32) -> RateLimit {
        RateLimit {
            store,
            window,
            per_user,
            per_client,
        }
    }

    /// The counters' keys. The user's is the normalised name ([`UserName::new`]), so
    /// `' carol'`, `'CAROL\u{a0}'` and `'ｃａｒｏｌ'` share carol's counter: the spelling
    /// authentication and sessions use too. Callers parse typed names with
    /// [`UserName::parse`], which bounds their length, so keys stay small.
    fn keys(user: &UserName, client: Option<IpAddr>) -> (String, Option<String>) {
        (format!("u:{user}"), client.map(|c| format!("c:{c}")))
    }

    /// Whether another attempt is allowed now. `Err`: the store cannot say.
    pub async fn allowed(&self, user: &UserName, client: Option<IpAddr>) -> Result<bool, StoreError> {
        let (u, c) = Self::keys(user, client);
        let since = now() - self.window.as_secs() as i64;
        if self.store.failed_signins_since(&u, since).await? >= i64::from(self.per_user) {
            return Ok(false);
        }
        match c {
            Some(c) => Ok(self.store.failed_signins_since(&c, since).await? < i64::from(self.per_client)),
            None => Ok(true),
        }
    }

    /// Counts a failed sign-in for the user and the client address.
    pub async fn record_failure(&self, user: &UserName, client: Option<IpAddr>) {
        let (u, c) = Self::keys(user, client);
        let at = now();
        for k in std::iter::once(u).chain(c) {
            if let Err(e) = self.store.record_failed_signin(&k, at).await {
                tracing::warn!(error = %e, "could not count a failed sign-in");
            }
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Checks a user name (already normalised: [`UserName::parse`]) and password against the
/// local accounts. Rate limits are the caller's (they span every password provider).
pub async fn authenticate(
    store: &Store,
    provider_id: &str,
    username: &UserName,
    password: &str,
) -> Result<NewIdentity, LoginFailure> {
    let user = if username.as_str().is_empty() {
        None
    } else {
        store.user(username).await.map_err(|e| {
            tracing::error!(error = %e, "store unavailable during sign-in");
            LoginFailure::Unavailable
        })?
    };
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_string());
    let pw = password.to_string();
    let matched = tokio::task::spawn_blocking(move || !pw.is_empty() && verify_password(&pw, &hash))
        .await
        .unwrap_or(false);
    match user {
        Some(u) if matched && !u.disabled && u.password_hash.is_some() => Ok(NewIdentity {
            username: u.username.to_string(),
            email: u.email,
            display_name: u.display_name,
            groups: u.groups.iter().map(ToString::to_string).collect(),
            admin: u.admin,
            provider: provider_id.to_string(),
        }),
        _ => Err(LoginFailure::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_garbage_never_matches() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("", &h));
    }

    fn name(n: &str) -> UserName {
        UserName::new(n)
    }

    async fn limits(per_user: u32, per_client: u32) -> (RateLimit, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        (
            RateLimit::new(Arc::new(store), Duration::from_secs(60), per_user, per_client),
            dir,
        )
    }

    #[tokio::test]
    async fn limits_per_user_and_per_client() {
        let (l, _dir) = limits(3, 5).await;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allowed(&name("Alice"), Some(ip)).await.unwrap());
            l.record_failure(&name("alice"), Some(ip)).await;
        }
        assert!(
            !l.allowed(&name("ALICE"), None).await.unwrap(),
            "per user, case-insensitive"
        );
        assert!(l.allowed(&name("bob"), Some(ip)).await.unwrap());
        l.record_failure(&name("bob"), Some(ip)).await;
        l.record_failure(&name("carol"), Some(ip)).await;
        assert!(!l.allowed(&name("dave"), Some(ip)).await.unwrap(), "per client address");
        assert!(l
            .allowed(&name("dave"), Some("192.0.2.2".parse().unwrap()))
            .await
            .unwrap());
    }

    /// Failures spread over spellings of one name lock every spelling.
    #[tokio::test]
    async fn spellings_of_one_name_share_one_counter() {
        let variants = [
            "carol",
            " carol",
            "carol ",
            "Carol",
            "\u{a0}carol",
            "carol\u{3000}",
            "ＣＡＲＯＬ",
            "car\u{200b}ol",
            "\tCAROL\u{202f}",
        ];
        let (l, _dir) = limits(variants.len() as u32, 1000).await;
        for v in variants {
            assert!(l.allowed(&name(v), None).await.unwrap(), "{v:?}");
            l.record_failure(&name(v), None).await;
        }
        for v in variants {
            assert!(!l.allowed(&name(v), None).await.unwrap(), "{v:?} is still allowed");
        }
        assert!(l.allowed(&name("caroline"), None).await.unwrap());
    }
}
