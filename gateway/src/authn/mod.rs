//! Authentication: providers establish an identity (`local` now; LDAP, OIDC and SAML as they
//! land), sessions keep it. Providers never decide access — that is `policy::evaluate`.

pub mod ldap;
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
use ldap::{LdapFailure, LdapProvider};
use local::{LoginFailure, RateLimit};
use session::Sessions;

/// A provider that checks a user name and password, tried in configuration order.
#[derive(Debug, Clone)]
pub enum PasswordProvider {
    Local(String),
    Ldap(Arc<LdapProvider>),
}

/// The password providers of a config, in order (the implicit local one when none is
/// configured).
pub fn password_providers(config: &Config) -> Result<Vec<PasswordProvider>, GatewayError> {
    if config.providers.is_empty() {
        return Ok(vec![PasswordProvider::Local("local".into())]);
    }
    let mut out = vec![];
    for p in &config.providers {
        match &p.kind {
            ProviderKind::Local => out.push(PasswordProvider::Local(p.id.clone())),
            ProviderKind::Ldap(l) => out.push(PasswordProvider::Ldap(Arc::new(LdapProvider::new(&p.id, l)?))),
            _ => {}
        }
    }
    Ok(out)
}

/// Re-reads the groups of directory sessions at each provider's `recheck_interval`.
#[derive(Debug, Default)]
pub struct DirectoryRecheck {
    providers: std::collections::HashMap<String, (Arc<LdapProvider>, std::time::Duration)>,
}

impl DirectoryRecheck {
    pub fn new(config: &Config, providers: &[PasswordProvider]) -> DirectoryRecheck {
        let mut map = std::collections::HashMap::new();
        for p in providers {
            if let PasswordProvider::Ldap(l) = p {
                let interval = config
                    .providers
                    .iter()
                    .find(|c| c.id == l.id)
                    .and_then(|c| match &c.kind {
                        ProviderKind::Ldap(cfg) => cfg.recheck_interval,
                        _ => None,
                    });
                if let Some(i) = interval {
                    map.insert(l.id.clone(), (l.clone(), i));
                }
            }
        }
        DirectoryRecheck { providers: map }
    }
}

impl session::Recheck for DirectoryRecheck {
    fn interval(&self, provider: &str) -> Option<std::time::Duration> {
        self.providers.get(provider).map(|(_, i)| *i)
    }

    fn recheck(
        &self,
        username: String,
        provider: String,
    ) -> futures_util::future::BoxFuture<'static, session::Rechecked> {
        let p = self.providers.get(&provider).map(|(p, _)| p.clone());
        Box::pin(async move {
            let Some(p) = p else { return session::Rechecked::Unknown };
            match p.lookup(&username).await {
                Ok(Some(u)) => session::Rechecked::Groups(u.groups),
                Ok(None) => session::Rechecked::Gone,
                Err(e) => {
                    tracing::warn!(provider = %provider, error = ?e, "could not re-check a session; keeping it");
                    session::Rechecked::Unknown
                }
            }
        })
    }
}

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
    pub providers: Vec<PasswordProvider>,
    pub keys: Arc<Keys>,
    /// (app index, policy, name, description, href) for the portal.
    pub apps: Vec<(AppPolicy, PortalApp)>,
}

impl std::fmt::Debug for Authn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authn").field("providers", &self.providers).finish()
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
        if !self.limits.allowed(username, client) {
            return Err(LoginError::RateLimited {
                minutes: self.limits.window().as_secs().div_ceil(60),
            });
        }
        let mut unavailable = false;
        let mut who = None;
        for p in &self.providers {
            let result = match p {
                PasswordProvider::Local(id) => local::authenticate(&self.store, id, username, password)
                    .await
                    .map_err(|f| f == LoginFailure::Unavailable),
                PasswordProvider::Ldap(l) => l.authenticate(username, password).await.map_err(|f| match f {
                    LdapFailure::Invalid => false,
                    LdapFailure::Unavailable(e) => {
                        tracing::error!(provider = %l.id, error = %e, "directory unavailable");
                        true
                    }
                }),
            };
            match result {
                Ok(w) => {
                    who = Some(w);
                    break;
                }
                Err(down) => unavailable |= down,
            }
        }
        let Some(who) = who else {
            if unavailable {
                return Err(LoginError::Unavailable);
            }
            self.limits.record_failure(username, client);
            tracing::info!(user = %username, client = ?client, "failed sign-in");
            return Err(LoginError::Invalid);
        };
        let (user, provider) = (who.username.clone(), who.provider.clone());
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
