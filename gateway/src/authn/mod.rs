//! Authentication: providers (local accounts, LDAP, OIDC, SAML) establish an identity,
//! sessions keep it. Providers never decide access — that is `policy::evaluate`.

pub mod ldap;
pub mod local;
pub mod oidc;
pub mod saml;
pub mod session;
mod session_table;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_admin_ui::admin::AdminError;
use gatehouse_admin_ui::portal::PortalMemory;
use gatehouse_admin_ui::{Gate, LoginError, PortalApp, Site, SsoError};
use gatehouse_config::{Config, ProviderKind};
use gatehouse_policy::{Identity, UserName};
use gatehouse_store::{Actor, AuditEvent, NewUser, Store};

use crate::identity::KeyRing;
use crate::snapshot::Live;
use crate::GatewayError;
use ldap::{LdapFailure, LdapProvider};
use local::{LoginFailure, RateLimit};
use oidc::{OidcError, OidcProvider, ProviderData};
use saml::{SamlProvider, SamlSessionData, SloOutcome};
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

/// The SAML providers of a config; a provider that cannot be set up safely (no IdP
/// signing certificate, unreadable metadata) stops the start.
pub fn saml_providers(config: &Config, store: &Arc<Store>) -> Result<Vec<Arc<SamlProvider>>, GatewayError> {
    config
        .providers
        .iter()
        .filter_map(|p| match &p.kind {
            ProviderKind::Saml(s) => {
                Some(SamlProvider::new(&p.id, &p.label, s, &config.server.public_url, store.clone()).map(Arc::new))
            }
            _ => None,
        })
        .collect()
}

fn saml_error(p: &SamlProvider, why: &str) -> SsoError {
    SsoError {
        status: 401,
        title: "The sign-in could not be verified".into(),
        message: format!("The response from {} was refused: {why}.", p.label),
        retry: format!("/.gatehouse/saml/{}/start", p.id),
    }
}

/// The OIDC providers of a config.
pub fn oidc_providers(config: &Config, store: &Arc<Store>) -> Vec<Arc<OidcProvider>> {
    config
        .providers
        .iter()
        .filter_map(|p| match &p.kind {
            ProviderKind::Oidc(o) => Some(Arc::new(OidcProvider::new(
                &p.id,
                &p.label,
                o,
                &config.server.public_url,
                store.clone(),
            ))),
            _ => None,
        })
        .collect()
}

/// Re-checks sessions: LDAP sessions re-read the directory at `recheck_interval`; OIDC
/// sessions use their refresh token at `refresh_interval`.
#[derive(Debug)]
pub struct Rechecker {
    ldap: std::collections::HashMap<String, (Arc<LdapProvider>, std::time::Duration)>,
    oidc: std::collections::HashMap<String, (Arc<OidcProvider>, std::time::Duration)>,
    store: Arc<Store>,
}

impl Rechecker {
    pub fn new(
        config: &Config,
        providers: &[PasswordProvider],
        oidc: &[Arc<OidcProvider>],
        store: Arc<Store>,
    ) -> Rechecker {
        let mut ldap = std::collections::HashMap::new();
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
                    ldap.insert(l.id.clone(), (l.clone(), i));
                }
            }
        }
        let oidc = oidc
            .iter()
            .filter_map(|o| o.refresh_interval().map(|i| (o.id.clone(), (o.clone(), i))))
            .collect();
        Rechecker { ldap, oidc, store }
    }
}

impl session::Recheck for Rechecker {
    fn interval(&self, provider: &str) -> Option<std::time::Duration> {
        self.ldap
            .get(provider)
            .map(|(_, i)| *i)
            .or_else(|| self.oidc.get(provider).map(|(_, i)| *i))
    }

    fn recheck(
        &self,
        id_hash: String,
        username: String,
        provider: String,
    ) -> futures_util::future::BoxFuture<'static, session::Rechecked> {
        let ldap = self.ldap.get(&provider).map(|(p, _)| p.clone());
        let oidc = self.oidc.get(&provider).map(|(p, _)| p.clone());
        let store = self.store.clone();
        Box::pin(async move {
            if let Some(p) = ldap {
                return match p.lookup(&username).await {
                    Ok(Some(u)) => session::Rechecked::Groups(u.groups),
                    Ok(None) => session::Rechecked::Gone,
                    Err(e) => {
                        tracing::warn!(provider = %provider, error = ?e, "could not re-check a session; keeping it");
                        session::Rechecked::Unknown
                    }
                };
            }
            let Some(p) = oidc else {
                return session::Rechecked::Unknown;
            };
            let data: Option<ProviderData> = store
                .session_provider_data(&id_hash)
                .await
                .ok()
                .flatten()
                .and_then(|d| serde_json::from_str(&d).ok());
            let Some(data) = data else {
                return session::Rechecked::Gone;
            };
            // A refresh failure ends the session: the provider no longer vouches for it.
            match p.refresh(&data).await {
                Ok((groups, new_data)) => {
                    if let Ok(text) = serde_json::to_string(&new_data) {
                        let _ = store.set_session_provider_data(&id_hash, &text).await;
                    }
                    session::Rechecked::Groups(groups)
                }
                Err(e) => {
                    tracing::info!(provider = %provider, user = %username, error = %e, "refresh failed; ending the session");
                    session::Rechecked::Gone
                }
            }
        })
    }
}

fn unknown_provider(provider: &str) -> SsoError {
    SsoError {
        status: 404,
        title: "Unknown sign-in provider".into(),
        message: format!("This gateway has no single sign-on provider called {provider:?}."),
        retry: "/.gatehouse/login".into(),
    }
}

/// The page for a failed OIDC sign-in: what happened, in words an admin can act on.
fn sso_error(p: &OidcProvider, e: &OidcError) -> SsoError {
    let (status, title, message) = match e {
        OidcError::Unreachable(_) => (
            502,
            "The sign-in provider cannot be reached",
            format!("{} is not answering right now. Try again in a minute.", p.label),
        ),
        OidcError::Expired => (
            400,
            "This sign-in attempt expired",
            "It took too long, was already used, or was started in another browser. Start again.".to_string(),
        ),
        OidcError::Denied(why) => (
            403,
            "The sign-in provider refused",
            format!("{} answered: {why}.", p.label),
        ),
        OidcError::Rejected(why) => (
            401,
            "The sign-in could not be verified",
            format!("The identity token from {} was rejected: {why}.", p.label),
        ),
        OidcError::NotAllowed(why) => (
            403,
            "You cannot sign in here",
            format!("{} confirmed who you are, but {why}.", p.label),
        ),
        OidcError::StoreUnavailable(_) => (
            503,
            "Sign-in is unavailable",
            gatehouse_admin_ui::STORE_UNAVAILABLE_MESSAGE.to_string(),
        ),
    };
    SsoError {
        status,
        title: title.into(),
        message,
        retry: format!("/.gatehouse/oidc/{}/start", p.id),
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
        .create_user(
            &NewUser {
                username: UserName::new("admin"),
                password_hash: Some(hash),
                email: None,
                display_name: Some("Administrator".into()),
                admin: true,
                groups: vec![],
            },
            &Actor::gateway(),
        )
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
    pub oidc: Vec<Arc<OidcProvider>>,
    pub saml: Vec<Arc<SamlProvider>>,
    pub public_url: String,
    pub keys: Arc<KeyRing>,
    /// The live apps, for the portal.
    pub live: Arc<Live>,
    /// This process's visit counts not yet in the store: the portal's "recently opened"
    /// includes them, so an app just opened shows at once.
    pub usage: Arc<crate::usage::Recorder>,
}

impl Authn {
    /// Writes a sign-in or sign-out event to the audit log. A store failure is logged, not
    /// fatal: the person is already signed in (or refused) by then.
    async fn audit(&self, actor: &str, client: Option<IpAddr>, action: &str, target: &str, detail: serde_json::Value) {
        let mut e = AuditEvent::new(&Actor::new(actor, client), action, target);
        e.detail = detail;
        if let Err(err) = self.store.audit(&e).await {
            tracing::warn!(error = %err, action, "could not write the audit log");
        }
    }

    /// The provider whose own namespace `who` claims without being that provider's user: a
    /// local, LDAP or shared-namespace account named `okta:carol` would otherwise be the
    /// `okta` provider's carol in policies, grants and headers. Such sign-ins are refused.
    fn poses_as(&self, who: &session::NewIdentity) -> Option<String> {
        let own = (self.oidc.iter().filter(|p| p.own_namespace()).map(|p| p.id.as_str()))
            .chain(self.saml.iter().filter(|p| p.own_namespace()).map(|p| p.id.as_str()));
        let claimed = UserName::new(&who.username).claimed_namespace(own)?;
        let own_user = self.oidc.iter().any(|p| p.id == who.provider && p.id == claimed)
            || self.saml.iter().any(|p| p.id == who.provider && p.id == claimed);
        (!own_user).then(|| claimed.to_string())
    }

    /// Audits a failed single sign-on (the user is not known yet: the provider is the target).
    async fn audit_sso_failure(&self, provider: &str, client: Option<IpAddr>, reason: &str) {
        let detail = serde_json::json!({ "provider": provider, "reason": reason });
        self.audit("anonymous", client, "signin.failure", provider, detail)
            .await;
    }

    /// What a provider stored with session `id_hash` (OIDC tokens, SAML NameID), if readable.
    async fn provider_data<T: serde::de::DeserializeOwned>(&self, id_hash: &str) -> Option<T> {
        let text = self.store.session_provider_data(id_hash).await.ok().flatten()?;
        serde_json::from_str(&text).ok()
    }
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

    fn csrf_key(&self) -> [u8; 32] {
        self.keys.current().csrf_key()
    }

    async fn password_login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<String, LoginError> {
        // One spelling of the name for the rate limit, every provider and the session, so
        // `' carol'`, `'carol\u{a0}'` and `'CAROL'` are all carol and share one counter. The
        // login form refuses over-long names before this; here they are refused uncounted
        // and unlogged as well.
        let Ok(name) = UserName::parse(username) else {
            return Err(LoginError::Invalid);
        };
        let username = name.as_str();
        let allowed = self.limits.allowed(&name, client).await.map_err(|e| {
            tracing::error!(error = %e, "store unavailable during sign-in");
            LoginError::StoreUnavailable
        })?;
        if !allowed {
            return Err(LoginError::RateLimited {
                minutes: self.limits.window().as_secs().div_ceil(60),
            });
        }
        let mut unavailable = false;
        let mut store_down = false;
        let mut who = None;
        for p in &self.providers {
            let result = match p {
                PasswordProvider::Local(id) => {
                    local::authenticate(&self.store, id, &name, password)
                        .await
                        .map_err(|f| {
                            store_down |= f == LoginFailure::Unavailable;
                            f == LoginFailure::Unavailable
                        })
                }
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
            let reason = if store_down {
                "store unavailable"
            } else if unavailable {
                "directory unavailable"
            } else {
                "wrong user name or password"
            };
            let detail = serde_json::json!({ "provider": "password", "reason": reason });
            self.audit(username, client, "signin.failure", username, detail).await;
            if store_down {
                return Err(LoginError::StoreUnavailable);
            }
            if unavailable {
                return Err(LoginError::Unavailable);
            }
            self.limits.record_failure(&name, client).await;
            tracing::info!(user = %username, client = ?client, "failed sign-in");
            return Err(LoginError::Invalid);
        };
        if let Some(claimed) = self.poses_as(&who) {
            tracing::warn!(user = %who.username, provider = %who.provider, claimed = %claimed, "sign-in refused: the name is in another provider's namespace");
            let detail =
                serde_json::json!({ "provider": who.provider, "reason": "name in another provider's namespace" });
            self.audit(username, client, "signin.failure", username, detail).await;
            return Err(LoginError::Invalid);
        }
        let (user, provider) = (who.username.clone(), who.provider.clone());
        let id = self.sessions.create(who).await.map_err(|e| {
            tracing::error!(error = %e, "could not create session");
            LoginError::StoreUnavailable
        })?;
        tracing::info!(user = %user, provider = %provider, "signed in");
        let detail = serde_json::json!({ "provider": provider });
        self.audit(&user, client, "signin.success", &user, detail).await;
        Ok(id)
    }

    async fn logout(&self, session_cookie: &str, client: Option<IpAddr>) -> Option<String> {
        let session = self.sessions.lookup(session_cookie).await;
        if let Some(s) = &session {
            let user = s.identity.user.as_str();
            let detail = serde_json::json!({ "provider": s.provider });
            self.audit(user, client, "signout", user, detail).await;
        }
        let mut next = None;
        if let Some(s) = &session {
            if let Some(p) = self.saml.iter().find(|p| *p.id == *s.provider) {
                let data: Option<SamlSessionData> = self.provider_data(&s.id_hash()).await;
                next = data.and_then(|d| p.logout_url(&d, &self.public_url));
            }
            if let Some(p) = self.oidc.iter().find(|p| *p.id == *s.provider) {
                let data: Option<ProviderData> = self.provider_data(&s.id_hash()).await;
                if let Some(d) = data {
                    let back = format!("{}/.gatehouse/login?signed_out=1", self.public_url);
                    next = p.end_session_url(&d, &back).await;
                }
            }
        }
        self.sessions.revoke(session_cookie).await;
        next
    }

    async fn sso_start(&self, provider: &str, rd: &str, binding: &str) -> Result<String, SsoError> {
        let p = self
            .oidc
            .iter()
            .find(|p| p.id == provider)
            .ok_or_else(|| unknown_provider(provider))?;
        p.start(rd, binding).await.map_err(|e| sso_error(p, &e))
    }

    async fn sso_callback(
        &self,
        provider: &str,
        query: &str,
        binding: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(String, String), SsoError> {
        let p = self
            .oidc
            .iter()
            .find(|p| p.id == provider)
            .ok_or_else(|| unknown_provider(provider))?;
        let q: oidc::Callback = serde_urlencoded::from_str(query).unwrap_or_default();
        let (who, data, rd) = match p.callback(&q, binding).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(provider = %provider, error = %e, "OIDC sign-in refused");
                self.audit_sso_failure(provider, client, &e.to_string()).await;
                return Err(sso_error(p, &e));
            }
        };
        if let Some(claimed) = self.poses_as(&who) {
            let e = OidcError::Rejected(format!("the user name is in the namespace of provider {claimed}"));
            tracing::warn!(provider = %provider, user = %who.username, "OIDC sign-in refused: {e}");
            self.audit_sso_failure(provider, client, &e.to_string()).await;
            return Err(sso_error(p, &e));
        }
        let user = who.username.clone();
        let id = self.sessions.create(who).await.map_err(|e| {
            tracing::error!(error = %e, "could not create session");
            SsoError {
                status: 503,
                title: "Sign-in is unavailable".into(),
                message: gatehouse_admin_ui::STORE_UNAVAILABLE_MESSAGE.into(),
                retry: "/.gatehouse/login".into(),
            }
        })?;
        if let Ok(text) = serde_json::to_string(&data) {
            let _ = self
                .store
                .set_session_provider_data(&session::hash_id(&id), &text)
                .await;
        }
        tracing::info!(user = %user, provider = %provider, "signed in");
        let detail = serde_json::json!({ "provider": provider });
        self.audit(&user, client, "signin.success", &user, detail).await;
        Ok((id, rd))
    }

    fn saml_metadata(&self, provider: &str) -> Result<String, SsoError> {
        let p = self
            .saml
            .iter()
            .find(|p| p.id == provider)
            .ok_or_else(|| unknown_provider(provider))?;
        p.metadata().map_err(|e| saml_error(p, &e.0))
    }

    async fn saml_start(&self, provider: &str, rd: &str, binding: Option<&str>) -> Result<String, SsoError> {
        let p = self
            .saml
            .iter()
            .find(|p| p.id == provider)
            .ok_or_else(|| unknown_provider(provider))?;
        p.start(rd, binding).await.map_err(|e| saml_error(p, &e.0))
    }

    async fn saml_acs(
        &self,
        provider: &str,
        response: &str,
        relay_state: Option<&str>,
        binding: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(String, String), SsoError> {
        let p = self
            .saml
            .iter()
            .find(|p| p.id == provider)
            .ok_or_else(|| unknown_provider(provider))?;
        let (who, data, rd) = match p.acs(response, relay_state, binding).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(provider = %provider, refused = %e, "SAML response refused");
                self.audit_sso_failure(provider, client, &e.0).await;
                return Err(saml_error(p, &e.0));
            }
        };
        if let Some(claimed) = self.poses_as(&who) {
            let why = format!("the user name is in the namespace of provider {claimed}");
            tracing::warn!(provider = %provider, user = %who.username, "SAML sign-in refused: {why}");
            self.audit_sso_failure(provider, client, &why).await;
            return Err(saml_error(p, &why));
        }
        let user = who.username.clone();
        let id = self.sessions.create(who).await.map_err(|e| {
            tracing::error!(error = %e, "could not create session");
            saml_error(p, "the session could not be saved; try again in a minute")
        })?;
        if let Ok(text) = serde_json::to_string(&data) {
            let _ = self
                .store
                .set_session_provider_data(&session::hash_id(&id), &text)
                .await;
        }
        tracing::info!(user = %user, provider = %provider, "signed in");
        let detail = serde_json::json!({ "provider": provider });
        self.audit(&user, client, "signin.success", &user, detail).await;
        Ok((id, rd))
    }

    async fn saml_slo(&self, provider: &str, query: &str) -> Result<String, SsoError> {
        let p = self
            .saml
            .iter()
            .find(|p| p.id == provider)
            .ok_or_else(|| unknown_provider(provider))?;
        match p.slo(query, &self.public_url).await.map_err(|e| {
            tracing::warn!(provider = %provider, refused = %e, "SAML logout message refused");
            saml_error(p, &e.0)
        })? {
            SloOutcome::LoggedOut => Ok("/.gatehouse/login?signed_out=1".into()),
            SloOutcome::EndSessions {
                name_id,
                session_index,
                respond_to,
            } => {
                let mut ended = 0;
                for s in self
                    .store
                    .sessions_of(&UserName::new(&p.user_name(&name_id)))
                    .await
                    .unwrap_or_default()
                {
                    if s.provider != p.id {
                        continue;
                    }
                    let data: Option<SamlSessionData> = self.provider_data(&s.id_hash).await;
                    let same_index = match (&session_index, data.and_then(|d| d.session_index)) {
                        (Some(want), Some(have)) => *want == have,
                        _ => true,
                    };
                    if same_index {
                        self.sessions.revoke_hash(&s.id_hash).await;
                        ended += 1;
                    }
                }
                tracing::info!(provider = %provider, user = %name_id, ended, "IdP-initiated logout");
                Ok(respond_to)
            }
        }
    }

    fn portal_apps(&self, who: Option<&Identity>) -> Vec<PortalApp> {
        self.live.peek().portal(who)
    }

    async fn portal_memory(&self, user: &str) -> PortalMemory {
        let since = gatehouse_store::day_of(session::now()) - gatehouse_admin_ui::portal::RECENT_DAYS;
        // Twice what is shown: apps the person can no longer open are dropped later.
        let limit = 2 * gatehouse_admin_ui::portal::RECENT_SHOWN as i64;
        let (favourites, stored) = match (
            self.store.favourites(user).await,
            self.store.recent_apps(user, since, limit).await,
        ) {
            (Ok(f), Ok(r)) => (f, r),
            (f, r) => {
                if let Some(e) = f.as_ref().err().or(r.as_ref().err()) {
                    tracing::warn!(error = %e, "portal: favourites or recent apps not readable");
                }
                (f.unwrap_or_default(), r.unwrap_or_default())
            }
        };
        PortalMemory {
            favourites,
            recent: crate::usage::merge_recent(stored, self.usage.recent_of(user), limit as usize),
        }
    }

    async fn set_favourite(&self, who: &Identity, slug: &str, on: bool) -> Result<(), AdminError> {
        let listed =
            self.live.peek().app(slug).is_some_and(|a| {
                a.portal_visible && gatehouse_policy::evaluate(&a.policy_now(), Some(who)).is_allowed()
            });
        // Unmarking stays possible for an app the person can no longer open.
        if on && !listed {
            return Err(AdminError::NotFound);
        }
        self.store
            .set_favourite(who.user.as_str(), slug, on, session::now())
            .await
            .map_err(|e| match e {
                gatehouse_store::StoreError::Invalid(m) => AdminError::Invalid(vec![("app".into(), m)]),
                e => AdminError::Unavailable(e.to_string()),
            })
    }

    fn jwks(&self) -> String {
        self.keys.jwks()
    }
}
