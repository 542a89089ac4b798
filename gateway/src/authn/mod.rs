//! Authentication: providers establish an identity (`local` now; LDAP, OIDC and SAML as they
//! land), sessions keep it. Providers never decide access — that is `policy::evaluate`.

pub mod local;
pub mod session;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_admin_ui::{Gate, LoginError, PortalApp, Site};
use gatehouse_config::{Config, ProviderKind};
use gatehouse_policy::store::{NewUser, Store};
use gatehouse_policy::{evaluate, AppPolicy, Identity};

use crate::identity::Keys;
use crate::GatewayError;
use local::{LoginFailure, RateLimit};
use session::Sessions;

/// The id of the local provider: the configured one, or `local` when no provider is
/// configured at all (local accounts are the embedded default).
pub fn local_provider(config: &Config) -> Option<String> {
    if config.providers.is_empty() {
        return Some("local".to_string());
    }
    config
        .providers
        .iter()
        .find(|p| matches!(p.kind, ProviderKind::Local))
        .map(|p| p.id.clone())
}

/// Creates the first admin from `GATEHOUSE_ADMIN_PASSWORD` when the store has no users.
/// Returns whether one was created.
pub async fn bootstrap_admin(store: &Store, password: Option<&str>) -> Result<bool, GatewayError> {
    let Some(pw) = password.filter(|p| !p.is_empty()) else {
        return Ok(false);
    };
    if store.user_count().await? > 0 {
        return Ok(false);
    }
    let hash = local::hash_password(pw)?;
    store
        .create_user(&NewUser {
            username: "admin".into(),
            password_hash: Some(hash),
            email: None,
            display_name: Some("Administrator".into()),
            admin: true,
            groups: vec![],
        })
        .await?;
    tracing::info!("created the first administrator, \"admin\", from GATEHOUSE_ADMIN_PASSWORD");
    Ok(true)
}

/// The gateway's side of the web pages: sessions, sign-in, the portal's app list, JWKS.
pub struct Authn {
    pub site: Site,
    pub store: Arc<Store>,
    pub sessions: Arc<Sessions>,
    pub limits: RateLimit,
    pub local: Option<String>,
    pub keys: Arc<Keys>,
    /// (app index, policy, name, description, href) for the portal.
    pub apps: Vec<(AppPolicy, PortalApp)>,
}

impl std::fmt::Debug for Authn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authn").field("local", &self.local).finish()
    }
}

#[async_trait]
impl Gate for Authn {
    fn site(&self) -> &Site {
        &self.site
    }

    async fn password_login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<String, LoginError> {
        let Some(provider) = &self.local else {
            return Err(LoginError::Invalid);
        };
        let who = local::login(
            &self.store,
            &self.limits,
            provider,
            username,
            password,
            client,
        )
        .await
        .map_err(|f| match f {
            LoginFailure::Invalid => LoginError::Invalid,
            LoginFailure::RateLimited { retry_after } => LoginError::RateLimited {
                minutes: retry_after.as_secs().div_ceil(60),
            },
            LoginFailure::Unavailable => LoginError::Unavailable,
        })?;
        let user = who.username.clone();
        let id = self.sessions.create(who).await.map_err(|e| {
            tracing::error!(error = %e, "could not create session");
            LoginError::Unavailable
        })?;
        tracing::info!(user = %user, provider = %provider, "signed in");
        Ok(id)
    }

    async fn logout(&self, session_cookie: &str) {
        self.sessions.revoke(session_cookie).await;
    }

    fn portal_apps(&self, who: Option<&Identity>) -> Vec<PortalApp> {
        self.apps
            .iter()
            .filter(|(policy, _)| evaluate(policy, who).is_allowed())
            .map(|(_, card)| card.clone())
            .collect()
    }

    fn jwks(&self) -> String {
        self.keys.jwks().to_string()
    }
}
