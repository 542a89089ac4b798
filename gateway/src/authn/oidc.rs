//! OpenID Connect sign-in with the `openidconnect` crate: discovery (retried while the
//! provider is down), authorization code flow with PKCE (S256), `state` and `nonce` bound
//! to a short-lived, single-use login record kept in the store, so any replica can take the
//! callback (the browser holds one small
//! binding cookie, whatever the number of attempts), ID token validation (signature with
//! the provider's asymmetric algorithms only, `iss`, `aud`/`azp`, `exp`/`iat`/`nbf` with leeway,
//! `nonce`), JWKS re-fetch on an unknown key (at most every [`REFETCH_FLOOR`]), claims →
//! identity (user claim, email, name, groups by a dotted path, userinfo fallback),
//! refresh, and RP-initiated logout. Discovery (with the JWKS key count) and sign-in or
//! refresh failures are recorded in the provider's [`Health`](crate::providers::Health).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use gatehouse_config::{Oidc as OidcConfig, UserNamespace};
use gatehouse_policy::UserName;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};

use gatehouse_store::Store;

use super::session::NewIdentity;

/// The JWKS (with the discovery document) is fetched again on an unknown key at most this
/// often.
pub const REFETCH_FLOOR: Duration = Duration::from_secs(5);
/// How long a started sign-in may take.
pub const ATTEMPT_TTL: Duration = Duration::from_secs(600);
/// Clock skew allowed on `exp`, `iat` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// The reason the issue-time check gives (openidconnect reports it as `Expired`).
const ISSUED_IN_THE_FUTURE: &str = "issued in the future";

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// Why an OIDC sign-in did not complete; each is shown as a page with a "try again" link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcError {
    /// Discovery, token or userinfo requests failed.
    Unreachable(String),
    /// The `state` is unknown, used, expired, or belongs to another browser.
    Expired,
    /// The provider answered with an error (`error=access_denied`, …).
    Denied(String),
    /// The ID token failed a check (which one, in words).
    Rejected(String),
    /// Signed in, but the provider's `allowed_email_domains` / `required_groups` refuse it.
    NotAllowed(String),
    /// The store (where sign-in attempts and sessions live) cannot be reached.
    StoreUnavailable(String),
}

impl std::fmt::Display for OidcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OidcError::Unreachable(e) => write!(f, "provider unreachable: {e}"),
            OidcError::Expired => f.write_str("unknown, used or expired sign-in attempt"),
            OidcError::Denied(e) => write!(f, "provider refused: {e}"),
            OidcError::Rejected(e) => write!(f, "ID token rejected: {e}"),
            OidcError::NotAllowed(e) => write!(f, "not allowed: {e}"),
            OidcError::StoreUnavailable(e) => write!(f, "session store unavailable: {e}"),
        }
    }
}

/// What a session remembers from the provider (stored as JSON with the session).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderData {
    pub id_token: String,
    pub refresh_token: Option<String>,
}

struct Discovered {
    client: Client,
    end_session: Option<String>,
    algs: Vec<CoreJwsSigningAlgorithm>,
}

/// A sign-in in flight, kept in the store (any replica may receive the callback) under the
/// SHA-256 of its `state`, single use.
#[derive(Serialize, Deserialize)]
struct Attempt {
    nonce: String,
    pkce: String,
    rd: String,
    binding: String,
}

/// The store key of the attempt a `state` names: its hash, so the table holds no live value.
fn attempt_key(state: &str) -> String {
    format!("oidc:{}", super::session::hash_id(state))
}

/// The query of a callback.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// One configured OIDC provider.
pub struct OidcProvider {
    pub id: String,
    pub label: String,
    cfg: OidcConfig,
    redirect_uri: String,
    http: reqwest::Client,
    discovered: tokio::sync::RwLock<Option<Arc<Discovered>>>,
    last_fetch: Mutex<Option<Instant>>,
    /// Where attempts are kept (shared by every replica).
    store: Arc<Store>,
    /// Discovery, JWKS and the last error, for the admin UI's Providers page.
    pub health: crate::providers::Health,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.cfg.issuer)
            .finish()
    }
}

fn unreachable(e: impl std::fmt::Display) -> OidcError {
    OidcError::Unreachable(e.to_string())
}

/// An email address as the provider sent it, with the `email_verified` claim that came in
/// the same claims (ID token or userinfo), if any.
#[derive(Debug, Clone, PartialEq)]
struct Email {
    address: String,
    verified: Option<serde_json::Value>,
}

impl Email {
    fn of(claims: &serde_json::Value) -> Option<Email> {
        Some(Email {
            address: claims.get("email")?.as_str()?.to_string(),
            verified: claims.get("email_verified").cloned(),
        })
    }

    /// Whether the provider did not say the address is unverified: no `email_verified`
    /// claim, or `true` (some providers send the string `"true"`). Anything else — `false`,
    /// `null`, `"false"`, a number — is not a verification.
    fn not_unverified(&self) -> bool {
        match &self.verified {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(_) => false,
        }
    }
}

/// The provider-level filters: `allowed_email_domains` (on a verified address unless
/// `require_verified_email = false`) and `required_groups` (any of).
fn admit(cfg: &OidcConfig, email: Option<&Email>, groups: &[String]) -> Result<(), OidcError> {
    if !cfg.allowed_email_domains.is_empty() {
        let domain = email
            .and_then(|e| e.address.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        let ok = domain.as_deref().is_some_and(|d| {
            cfg.allowed_email_domains
                .iter()
                .any(|a| a.trim_start_matches('@').eq_ignore_ascii_case(d))
        });
        if !ok {
            return Err(OidcError::NotAllowed(
                "your email domain is not allowed to sign in here".into(),
            ));
        }
        // Anyone can type an address into some providers' profiles; only a verified one
        // proves membership of the domain.
        if cfg.require_verified_email && !email.is_some_and(Email::not_unverified) {
            return Err(OidcError::NotAllowed(
                "your email address is not verified there, so its domain cannot be trusted".into(),
            ));
        }
    }
    if !cfg.required_groups.is_empty()
        && !groups
            .iter()
            .any(|g| cfg.required_groups.iter().any(|r| r.eq_ignore_ascii_case(g)))
    {
        return Err(OidcError::NotAllowed(
            "you are in none of the groups allowed to sign in here".into(),
        ));
    }
    Ok(())
}

/// The value at a dotted path (`realm_access.roles`) of a JSON object.
pub fn claim_at<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

/// Groups from a claim value: an array of strings, or one string.
pub fn groups_of(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    match v? {
        serde_json::Value::Array(a) => Some(a.iter().filter_map(|g| g.as_str().map(str::to_string)).collect()),
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// The payload of a JWT whose signature has already been verified.
fn payload(jwt: &str) -> Option<serde_json::Value> {
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the claims carry an `nbf` (not before) later than `now` plus [`LEEWAY`]
/// (openidconnect does not look at `nbf`). A non-numeric `nbf` counts as not yet valid.
fn not_yet_valid(claims: &serde_json::Value, now: i64) -> bool {
    match claims.get("nbf") {
        None | Some(serde_json::Value::Null) => false,
        Some(v) => v
            .as_f64()
            .is_none_or(|nbf| nbf > (now + LEEWAY.as_secs() as i64) as f64),
    }
}

fn describe(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::Expired(m) if m == ISSUED_IN_THE_FUTURE => {
            "the token was issued in the future (iat), beyond the allowed clock skew".into()
        }
        ClaimsVerificationError::Expired(_) => "the token has expired".into(),
        ClaimsVerificationError::InvalidAudience(_) => "the token is for another client (aud/azp)".into(),
        ClaimsVerificationError::InvalidIssuer(_) => "the token comes from another issuer".into(),
        ClaimsVerificationError::InvalidNonce(_) => "the nonce does not match this sign-in".into(),
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey) => {
            "the token is signed by a key the provider does not publish".into()
        }
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::DisallowedAlg(a)) => {
            format!("signature algorithm {a} is not allowed")
        }
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoSignature) => {
            "the token is not signed".into()
        }
        ClaimsVerificationError::SignatureVerification(_) => "the token's signature is invalid".into(),
        other => format!("{other}"),
    }
}

impl OidcProvider {
    pub fn new(id: &str, label: &str, cfg: &OidcConfig, public_url: &str, store: Arc<Store>) -> OidcProvider {
        let http = reqwest::Client::builder()
            // Following redirects would open the token and userinfo calls to SSRF.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        OidcProvider {
            id: id.to_string(),
            label: label.to_string(),
            cfg: cfg.clone(),
            redirect_uri: format!("{public_url}/.gatehouse/oidc/{id}/callback"),
            http,
            discovered: tokio::sync::RwLock::new(None),
            last_fetch: Mutex::new(None),
            store,
            health: crate::providers::Health::default(),
        }
    }

    /// Discovers the provider (issuer metadata and JWKS). With `force`, fetches again unless
    /// the last fetch is younger than [`REFETCH_FLOOR`].
    async fn discovered(&self, force: bool) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.read().await.as_ref() {
            if !force {
                return Ok(d.clone());
            }
        }
        let mut slot = self.discovered.write().await;
        let recent = self
            .last_fetch
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|t| t.elapsed() < REFETCH_FLOOR);
        if let (Some(d), true) = (slot.as_ref(), recent) {
            return Ok(d.clone());
        }
        if let Ok(mut l) = self.last_fetch.lock() {
            *l = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone()).map_err(unreachable)?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %self.id, error = %e, "OIDC discovery failed");
                self.health.error(format!("discovery failed: {e}"));
                unreachable(e)
            })?;
        let jwks_keys = metadata.jwks().keys().len();
        // end_session_endpoint is not in the core metadata; read it from the document.
        let doc_url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let end_session = match self.http.get(doc_url).send().await {
            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|d| {
                d.get("end_session_endpoint")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            }),
            Err(_) => None,
        };
        let algs: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    CoreJwsSigningAlgorithm::HmacSha256
                        | CoreJwsSigningAlgorithm::HmacSha384
                        | CoreJwsSigningAlgorithm::HmacSha512
                        | CoreJwsSigningAlgorithm::None
                )
            })
            .cloned()
            .collect();
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(unreachable)?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        )
        .set_redirect_uri(redirect);
        let d = Arc::new(Discovered {
            client,
            end_session,
            algs,
        });
        *slot = Some(d.clone());
        self.health.update(|h| {
            h.discovered_at = Some(super::session::now());
            h.jwks_keys = Some(jwks_keys);
        });
        tracing::info!(provider = %self.id, "OIDC provider discovered");
        Ok(d)
    }

    /// Tries discovery once (at start; failures are retried on demand).
    pub async fn warm_up(&self) {
        let _ = self.discovered(false).await;
    }

    /// Starts a sign-in: records the attempt and returns the provider's authorization URL.
    pub async fn start(&self, rd: &str, binding: &str) -> Result<String, OidcError> {
        let d = self.discovered(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in self.cfg.scopes.iter().filter(|s| s.as_str() != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.url();
        let attempt = Attempt {
            nonce: nonce.secret().clone(),
            pkce: verifier.secret().clone(),
            rd: rd.to_string(),
            binding: binding.to_string(),
        };
        let data = serde_json::to_string(&attempt).map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let expires = super::session::now() + ATTEMPT_TTL.as_secs() as i64;
        self.store
            .put_login_attempt(&attempt_key(state.secret()), &self.id, &data, expires)
            .await
            .map_err(|e| OidcError::StoreUnavailable(e.to_string()))?;
        Ok(url.to_string())
    }

    /// Completes a sign-in from the callback's query. Returns the identity, the data to
    /// keep with the session, and where to send the person.
    pub async fn callback(
        &self,
        q: &Callback,
        binding: Option<&str>,
    ) -> Result<(NewIdentity, ProviderData, String), OidcError> {
        let r = self.complete(q, binding).await;
        self.note("sign-in", &r);
        r
    }

    /// Records a sign-in or refresh outcome; a stale attempt or a person the provider's
    /// filters refuse says nothing about the provider.
    fn note<T>(&self, what: &str, r: &Result<T, OidcError>) {
        match r {
            Ok(_) => self.health.ok(),
            Err(e @ (OidcError::Unreachable(_) | OidcError::Denied(_) | OidcError::Rejected(_))) => {
                self.health.error(format!("{what}: {e}"))
            }
            Err(_) => {}
        }
    }

    async fn complete(
        &self,
        q: &Callback,
        binding: Option<&str>,
    ) -> Result<(NewIdentity, ProviderData, String), OidcError> {
        let state = q.state.as_deref().unwrap_or_default();
        // Single use: the attempt is removed whatever happens next.
        let taken = self
            .store
            .take_login_attempt(&attempt_key(state), super::session::now())
            .await
            .map_err(|e| OidcError::StoreUnavailable(e.to_string()))?
            .filter(|a| a.provider == self.id)
            .ok_or(OidcError::Expired)?;
        let attempt: Attempt = serde_json::from_str(&taken.data).map_err(|_| OidcError::Expired)?;
        if binding != Some(attempt.binding.as_str()) {
            return Err(OidcError::Expired);
        }
        if let Some(e) = &q.error {
            let desc = q
                .error_description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(OidcError::Denied(format!("{e}{desc}")));
        }
        let code = q
            .code
            .clone()
            .ok_or_else(|| OidcError::Denied("no authorization code".into()))?;
        let d = self.discovered(false).await?;
        let token = d
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(unreachable)?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Denied(r.error().to_string()),
                other => unreachable(other),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::Rejected("the provider sent no ID token".into()))?;
        let raw_jwt = id_token.to_string();
        let nonce = Nonce::new(attempt.nonce.clone());
        // Verify; on an unknown key, fetch the JWKS again once (key rotation).
        let verify = |d: &Discovered| {
            let now = chrono::Utc::now();
            let verifier = d
                .client
                .id_token_verifier()
                .set_allowed_algs(d.algs.clone())
                .set_time_fn(move || now - chrono::Duration::from_std(LEEWAY).unwrap_or_default())
                .set_issue_time_verifier_fn(move |iat| {
                    if iat > now + chrono::Duration::from_std(LEEWAY).unwrap_or_default() {
                        Err(ISSUED_IN_THE_FUTURE.to_string())
                    } else {
                        Ok(())
                    }
                });
            id_token.claims(&verifier, &nonce).map(|c| c.subject().to_string())
        };
        let sub = match verify(&d) {
            Ok(sub) => sub,
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                let fresh = self.discovered(true).await?;
                verify(&fresh).map_err(|e| OidcError::Rejected(describe(&e)))?
            }
            Err(e) => {
                tracing::warn!(provider = %self.id, error = %e, "ID token rejected");
                return Err(OidcError::Rejected(describe(&e)));
            }
        };
        let claims = payload(&raw_jwt).ok_or_else(|| OidcError::Rejected("unreadable claims".into()))?;
        if not_yet_valid(&claims, chrono::Utc::now().timestamp()) {
            tracing::warn!(provider = %self.id, "ID token rejected: nbf in the future");
            return Err(OidcError::Rejected(
                "the token is not valid yet (nbf), beyond the allowed clock skew".into(),
            ));
        }
        // openidconnect leaves `azp` unchecked; a token authorised for another party is not
        // ours even when `aud` names us (OpenID Connect Core 3.1.3.7, step 5).
        if claims
            .get("azp")
            .is_some_and(|azp| azp.as_str() != Some(self.cfg.client_id.as_str()))
        {
            tracing::warn!(provider = %self.id, "ID token rejected: azp names another client");
            return Err(OidcError::Rejected("the token is for another client (aud/azp)".into()));
        }
        let who = self.identity(&claims, &sub, token.access_token().secret()).await?;
        let data = ProviderData {
            id_token: raw_jwt,
            refresh_token: token.refresh_token().map(|r| r.secret().clone()),
        };
        Ok((who, data, attempt.rd.clone()))
    }

    /// Userinfo claims (checked to be about `sub`).
    async fn userinfo(&self, access_token: &str, sub: &str) -> Result<serde_json::Value, OidcError> {
        let d = self.discovered(false).await?;
        let url = d
            .client
            .user_info_url()
            .ok_or_else(|| unreachable("the provider has no userinfo endpoint"))?;
        let info: serde_json::Value = self
            .http
            .get(url.as_str())
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(unreachable)?
            .error_for_status()
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        if info.get("sub").and_then(|s| s.as_str()) != Some(sub) {
            return Err(OidcError::Rejected("userinfo is about another subject".into()));
        }
        Ok(info)
    }

    async fn identity(
        &self,
        claims: &serde_json::Value,
        sub: &str,
        access_token: &str,
    ) -> Result<NewIdentity, OidcError> {
        let mut groups = groups_of(claim_at(claims, &self.cfg.groups_claim));
        let mut user = claim_at(claims, &self.cfg.user_claim)
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let mut email = Email::of(claims);
        let mut name = claims.get("name").and_then(|v| v.as_str()).map(str::to_string);
        if groups.is_none() || user.is_none() {
            let info = self.userinfo(access_token, sub).await?;
            groups = groups.or_else(|| groups_of(claim_at(&info, &self.cfg.groups_claim)));
            user = user.or_else(|| {
                claim_at(&info, &self.cfg.user_claim)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
            email = email.or_else(|| Email::of(&info));
            name = name.or_else(|| info.get("name").and_then(|v| v.as_str()).map(str::to_string));
        }
        let user =
            user.ok_or_else(|| OidcError::Rejected(format!("the provider sent no {} claim", self.cfg.user_claim)))?;
        let groups = groups.unwrap_or_default();
        admit(&self.cfg, email.as_ref(), &groups)?;
        Ok(NewIdentity {
            username: self.user_name(&user),
            email: email.map(|e| e.address),
            display_name: name,
            groups,
            admin: false,
            provider: self.id.clone(),
        })
    }

    /// Whether this provider's users are named `<id>:<name>` (its own namespace, the
    /// default) rather than sharing the local accounts' names.
    pub fn own_namespace(&self) -> bool {
        self.cfg.user_namespace == UserNamespace::Own
    }

    /// The session user name for the provider's `name`: `<id>:<name>` unless the provider
    /// shares the local namespace (`user_namespace = "shared"`).
    pub fn user_name(&self, name: &str) -> String {
        match self.cfg.user_namespace {
            UserNamespace::Own => UserName::qualified(&self.id, name).as_str().to_string(),
            UserNamespace::Shared => name.to_string(),
        }
    }

    /// Uses the refresh token: returns the current groups and the new data to keep.
    pub async fn refresh(&self, data: &ProviderData) -> Result<(Vec<String>, ProviderData), OidcError> {
        let r = self.refresh_tokens(data).await;
        self.note("refresh", &r);
        r
    }

    async fn refresh_tokens(&self, data: &ProviderData) -> Result<(Vec<String>, ProviderData), OidcError> {
        let rt = data
            .refresh_token
            .clone()
            .ok_or_else(|| OidcError::Denied("no refresh token".into()))?;
        let d = self.discovered(false).await?;
        let token = d
            .client
            .exchange_refresh_token(&RefreshToken::new(rt.clone()))
            .map_err(unreachable)?
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Denied(format!("refresh refused: {e}")))?;
        let old = payload(&data.id_token).unwrap_or_default();
        let sub = old.get("sub").and_then(|s| s.as_str()).unwrap_or_default().to_string();
        let (claims, id_token) = match token.id_token() {
            Some(t) => {
                let verifier = d.client.id_token_verifier().set_allowed_algs(d.algs.clone());
                let c = t
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map_err(|e| OidcError::Rejected(describe(&e)))?;
                if c.subject().as_str() != sub {
                    return Err(OidcError::Rejected("refreshed token is about another subject".into()));
                }
                (payload(&t.to_string()).unwrap_or_default(), t.to_string())
            }
            None => (serde_json::Value::Null, data.id_token.clone()),
        };
        let groups = match groups_of(claim_at(&claims, &self.cfg.groups_claim)) {
            Some(g) => g,
            None => groups_of(claim_at(
                &self.userinfo(token.access_token().secret(), &sub).await?,
                &self.cfg.groups_claim,
            ))
            .unwrap_or_default(),
        };
        let refresh_token = token.refresh_token().map(|r| r.secret().clone()).or(Some(rt));
        Ok((
            groups,
            ProviderData {
                id_token,
                refresh_token,
            },
        ))
    }

    /// The provider's end-session URL for RP-initiated logout, if it offers one.
    pub async fn end_session_url(&self, data: &ProviderData, post_logout_redirect: &str) -> Option<String> {
        let d = self.discovered(false).await.ok()?;
        let mut url = reqwest::Url::parse(d.end_session.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", &data.id_token)
            .append_pair("post_logout_redirect_uri", post_logout_redirect)
            .append_pair("client_id", &self.cfg.client_id);
        Some(url.to_string())
    }

    pub fn refresh_interval(&self) -> Option<Duration> {
        self.cfg.refresh_interval
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    /// Fetches the discovery document (without replacing the one in use); for the Providers
    /// page. `Err`: why the provider cannot be used now.
    pub async fn probe(&self) -> Result<(), String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let r = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        if !status.is_success() {
            return Err(format!("discovery document: HTTP {status}"));
        }
        let doc: serde_json::Value = r
            .json()
            .await
            .map_err(|_| "discovery document is not JSON".to_string())?;
        match doc.get("issuer").and_then(|i| i.as_str()) {
            Some(i) if i.trim_end_matches('/') == self.cfg.issuer.trim_end_matches('/') => Ok(()),
            Some(i) => Err(format!("discovery names another issuer ({i})")),
            None => Err("discovery document has no issuer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_by_path() {
        let c = json!({"groups": ["a", "b"], "realm_access": {"roles": ["x"]}, "dotted.name": "d", "one": "g"});
        assert_eq!(
            groups_of(claim_at(&c, "groups")),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(
            groups_of(claim_at(&c, "realm_access.roles")),
            Some(vec!["x".to_string()])
        );
        assert_eq!(claim_at(&c, "dotted.name"), Some(&json!("d")));
        assert_eq!(groups_of(claim_at(&c, "one")), Some(vec!["g".to_string()]));
        assert_eq!(groups_of(claim_at(&c, "missing.path")), None);
        assert_eq!(groups_of(Some(&json!(42))), None);
    }

    fn config(domains: &[&str], require_verified_email: bool, required_groups: &[&str]) -> OidcConfig {
        OidcConfig {
            issuer: "https://op.example".into(),
            client_id: "gatehouse".into(),
            client_secret: None,
            scopes: vec![],
            user_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            allowed_email_domains: domains.iter().map(|d| d.to_string()).collect(),
            require_verified_email,
            required_groups: required_groups.iter().map(|g| g.to_string()).collect(),
            refresh_interval: None,
            user_namespace: UserNamespace::Own,
        }
    }

    /// Who the provider-level filters admit: the domain, its verification, the groups.
    #[test]
    fn admission_table() {
        let domain = config(&["example.org"], true, &[]);
        let lax = config(&["example.org"], false, &[]);
        let open = config(&[], true, &[]);
        let staff = config(&[], true, &["staff"]);
        let claims = |c: serde_json::Value| Email::of(&c);
        /// (why, provider config, email claims, groups, admitted?)
        type Case<'a> = (&'a str, &'a OidcConfig, Option<Email>, &'a [&'a str], bool);
        let cases: Vec<Case> = vec![
            (
                "verified, allowed domain",
                &domain,
                claims(json!({"email": "a@example.org", "email_verified": true})),
                &[],
                true,
            ),
            (
                "no email_verified claim",
                &domain,
                claims(json!({"email": "a@example.org"})),
                &[],
                true,
            ),
            (
                "\"true\" as a string",
                &domain,
                claims(json!({"email": "a@Example.ORG", "email_verified": "true"})),
                &[],
                true,
            ),
            (
                "unverified",
                &domain,
                claims(json!({"email": "a@example.org", "email_verified": false})),
                &[],
                false,
            ),
            (
                "\"false\" as a string",
                &domain,
                claims(json!({"email": "a@example.org", "email_verified": "false"})),
                &[],
                false,
            ),
            (
                "null",
                &domain,
                claims(json!({"email": "a@example.org", "email_verified": null})),
                &[],
                false,
            ),
            (
                "1",
                &domain,
                claims(json!({"email": "a@example.org", "email_verified": 1})),
                &[],
                false,
            ),
            (
                "verified, other domain",
                &domain,
                claims(json!({"email": "a@evil.example", "email_verified": true})),
                &[],
                false,
            ),
            (
                "look-alike domain",
                &domain,
                claims(json!({"email": "a@example.org.evil.example", "email_verified": true})),
                &[],
                false,
            ),
            ("no email", &domain, None, &[], false),
            (
                "unverified, check off",
                &lax,
                claims(json!({"email": "a@example.org", "email_verified": false})),
                &[],
                true,
            ),
            (
                "check off, other domain",
                &lax,
                claims(json!({"email": "a@evil.example", "email_verified": false})),
                &[],
                false,
            ),
            (
                "no domain filter: unverified is fine",
                &open,
                claims(json!({"email": "a@x.example", "email_verified": false})),
                &[],
                true,
            ),
            ("required group", &staff, None, &["Staff"], true),
            ("no required group", &staff, None, &["sales"], false),
        ];
        for (why, cfg, email, groups, want) in cases {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let got = admit(cfg, email.as_ref(), &groups);
            assert_eq!(got.is_ok(), want, "{why}: {got:?}");
        }
        let why = admit(
            &domain,
            claims(json!({"email": "a@example.org", "email_verified": false})).as_ref(),
            &[],
        );
        assert!(
            matches!(&why, Err(OidcError::NotAllowed(m)) if m.contains("email address is not verified")),
            "{why:?}"
        );
    }

    #[test]
    fn nbf_is_allowed_the_leeway_and_no_more() {
        let now = 1_000_000;
        assert!(!not_yet_valid(&json!({}), now));
        assert!(!not_yet_valid(&json!({ "nbf": null }), now));
        assert!(!not_yet_valid(&json!({ "nbf": now - 3600 }), now));
        assert!(!not_yet_valid(&json!({ "nbf": now + 60 }), now));
        assert!(not_yet_valid(&json!({ "nbf": now + 61 }), now));
        assert!(not_yet_valid(&json!({ "nbf": "soon" }), now));
    }

    #[test]
    fn payload_of_garbage_is_none() {
        assert!(payload("not a jwt").is_none());
        assert!(payload("a.!!!.c").is_none());
        assert_eq!(payload("x.eyJzdWIiOiJhIn0.y"), Some(json!({"sub": "a"})));
    }
}
