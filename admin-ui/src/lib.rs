//! Gatehouse's web layer: the server-rendered pages people see (login, App Portal, error
//! pages, the 403 page with its access-request form, and the admin pages in [`admin`]),
//! CSRF, and the axum handlers behind the reserved `/.gatehouse/` endpoints. Pages share
//! one layout and one stylesheet.
//!
//! Nothing here decides access or checks passwords: handlers call a [`Gate`], which the
//! gateway implements with its sessions, providers and `gatehouse_policy::evaluate`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod csrf;
pub mod pages;
pub mod portal;
pub mod redirect;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Extension, Form, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gatehouse_config::Branding;
use gatehouse_policy::{Identity, MAX_USER_NAME_BYTES};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

pub use redirect::safe_redirect;

/// Why a single sign-on did not complete, as its page explains it.
#[derive(Debug, Clone)]
pub struct SsoError {
    pub status: u16,
    pub title: String,
    pub message: String,
    /// Where "Try again" leads.
    pub retry: String,
}

/// Largest sign-in form body: room for a user name of [`MAX_USER_NAME_BYTES`], a long
/// password and the return URL, all percent-encoded; a larger body gets a 413 page before
/// anything in it is read.
pub const LOGIN_BODY_LIMIT: usize = 32 * 1024;

/// Static stylesheet served at `/.gatehouse/assets/gatehouse.css`.
pub const STYLESHEET: &str = include_str!("assets/gatehouse.css");

/// Errors of the web layer.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
}

/// The branding in force — the config file's `[branding]`, or what an administrator saved
/// on the Branding page — swapped whole when either changes; read by every page.
#[derive(Debug)]
pub struct BrandingCell(arc_swap::ArcSwap<Branding>);

impl BrandingCell {
    pub fn new(branding: Branding) -> BrandingCell {
        BrandingCell(arc_swap::ArcSwap::from_pointee(branding))
    }

    pub fn get(&self) -> std::sync::Arc<Branding> {
        self.0.load_full()
    }

    pub fn set(&self, branding: Branding) {
        self.0.store(std::sync::Arc::new(branding));
    }
}

/// Site-wide settings the pages need.
#[derive(Debug, Clone)]
pub struct Site {
    pub branding: std::sync::Arc<BrandingCell>,
    pub session_cookie: String,
    pub csrf_cookie: String,
    /// Cookies carry `Secure` (TLS is on).
    pub secure: bool,
    /// `Max-Age` of the session cookie, seconds (the absolute timeout).
    pub session_max_age: u64,
    /// A username/password form is offered (a local or directory provider exists).
    pub password_form: bool,
    /// Single sign-on buttons, in configuration order.
    pub sso: Vec<pages::SsoButton>,
    /// Name of the cookie that ties a started single sign-on to this browser.
    pub login_cookie: String,
    /// The gateway's origin (`https://apps.example.com`): admin changes must come from it.
    pub origin: String,
}

impl Site {
    /// Every cookie the gateway sets. None of them is ever forwarded to an app, and an app's
    /// `Set-Cookie` for any of them is dropped.
    pub fn gateway_cookies(&self) -> Vec<String> {
        vec![
            self.session_cookie.clone(),
            self.csrf_cookie.clone(),
            self.login_cookie.clone(),
            saml_binding_cookie(self),
        ]
    }
}

/// Headers every page of the gateway carries: no MIME sniffing, no referrer leaving the
/// origin, no framing (clickjacking of sign-in and admin forms), and images only from the
/// gateway itself, `https:` (the branding logo and app thumbnails are validated to be
/// one of those) and `data:` (the favicon).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    (
        "content-security-policy",
        "frame-ancestors 'none'; img-src 'self' https: data:",
    ),
    ("x-frame-options", "DENY"),
];

/// Adds [`SECURITY_HEADERS`] a handler did not set itself.
async fn security_headers(mut res: Response) -> Response {
    for (name, value) in SECURITY_HEADERS {
        if !res.headers().contains_key(*name) {
            res.headers_mut()
                .insert(header::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
    }
    res
}

/// The person behind a request, as the gateway found them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub identity: Identity,
    pub display_name: Option<String>,
    /// The API token (its name) this caller authenticated with; `None` for a session.
    /// Changes made with it are audited with the token's name in the detail.
    pub token: Option<String>,
}

/// Per-request facts the gateway attaches as an extension.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub client: Option<IpAddr>,
    pub viewer: Option<Viewer>,
    /// The raw session cookie, if one was sent.
    pub session_cookie: Option<String>,
    /// The signed-in session's store key (binds admin forms to the session).
    pub session_id_hash: Option<String>,
}

/// Why a sign-in failed, as the page explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or password (never which of the two).
    Invalid,
    RateLimited {
        minutes: u64,
    },
    /// A directory (LDAP) could not be asked.
    Unavailable,
    /// The store (sessions, accounts, sign-in counts) cannot be reached: nobody can sign
    /// in until it is back; people already signed in are not affected.
    StoreUnavailable,
}

/// The sign-in page's words while the store is down.
pub const STORE_UNAVAILABLE_MESSAGE: &str =
    "The session store is unreachable, so nobody can sign in right now. Try again in a minute. (If you are already signed in, your apps keep working.)";

/// An app card on the portal.
#[derive(Debug, Clone)]
pub struct PortalApp {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub href: String,
    /// Labels people filter by, as written.
    pub tags: Vec<String>,
    /// The card's picture: an `https://` URL or a path on the gateway (validated).
    pub thumbnail: Option<String>,
    /// Who runs it, in words; empty: not said.
    pub owner: String,
    /// When its definition last changed (epoch seconds), if known.
    pub updated_at: Option<i64>,
}

/// What the pages need from the gateway.
#[async_trait]
pub trait Gate: admin::AdminGate + Send + Sync + 'static {
    fn site(&self) -> &Site;
    /// The key of the sign-in and sign-out forms' CSRF field ([`csrf::form_token`]): a
    /// secret shared by every replica (so a form served by one is accepted by another) that
    /// no app can know.
    fn csrf_key(&self) -> [u8; 32];
    /// Checks a user name and password; on success returns the new session cookie value.
    async fn password_login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<String, LoginError>;
    /// Ends the session with this cookie value; returns where to send the browser next when
    /// the provider wants to end its own session too (RP-initiated logout).
    async fn logout(&self, session_cookie: &str, client: Option<IpAddr>) -> Option<String>;
    /// The apps `who` may open, as decided by `gatehouse_policy::evaluate`, in portal order
    /// (the admin-set position, then the config file's order, then store apps by slug).
    fn portal_apps(&self, who: Option<&Identity>) -> Vec<PortalApp>;
    /// What the portal remembers of `user`: favourites and recently opened apps. Empty
    /// (the portal still works) when the store cannot be asked.
    async fn portal_memory(&self, user: &str) -> portal::PortalMemory;
    /// Marks (`on`) or unmarks app `slug` as a favourite of `who`. `Err(NotFound)` unless
    /// the portal lists that app for them.
    async fn set_favourite(&self, who: &Identity, slug: &str, on: bool) -> Result<(), admin::AdminError>;
    /// The JWKS document that verifies assertions.
    fn jwks(&self) -> String;
    /// Starts a single sign-on with `provider`; returns the URL to send the browser to.
    async fn sso_start(&self, provider: &str, rd: &str, binding: &str) -> Result<String, SsoError>;
    /// Completes a single sign-on from the callback's raw query; returns the new session
    /// cookie value and where to go next.
    async fn sso_callback(
        &self,
        provider: &str,
        query: &str,
        binding: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(String, String), SsoError>;
    /// The SP metadata of SAML provider `provider`.
    fn saml_metadata(&self, provider: &str) -> Result<String, SsoError>;
    /// Starts a SAML sign-in; returns the IdP URL. `binding` ties the attempt to this
    /// browser when the gateway runs with TLS (see [`Site::secure`]).
    async fn saml_start(&self, provider: &str, rd: &str, binding: Option<&str>) -> Result<String, SsoError>;
    /// Checks a posted SAML response; returns the new session cookie value and where to go.
    async fn saml_acs(
        &self,
        provider: &str,
        response: &str,
        relay_state: Option<&str>,
        binding: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(String, String), SsoError>;
    /// Handles a message at the SAML single-logout endpoint; returns where to send the browser.
    async fn saml_slo(&self, provider: &str, query: &str) -> Result<String, SsoError>;
}

type Shared = Arc<dyn Gate>;

/// The router for the gateway's own pages, mounted at `/` (paths are absolute).
pub fn router(gate: Shared) -> Router {
    Router::new()
        .route("/", get(portal))
        .route("/.gatehouse/healthz", get(|| async { "ok\n" }))
        .route(
            "/.gatehouse/login",
            get(login_page)
                .post(login_submit)
                .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
        .route("/.gatehouse/logout", get(logout_page).post(logout_submit))
        .route("/.gatehouse/oidc/{provider}/start", get(sso_start))
        .route("/.gatehouse/oidc/{provider}/callback", get(sso_callback))
        .route("/.gatehouse/saml/{provider}/metadata", get(saml_metadata))
        .route("/.gatehouse/saml/{provider}/start", get(saml_start))
        .route("/.gatehouse/saml/{provider}/acs", axum::routing::post(saml_acs))
        .route("/.gatehouse/saml/{provider}/slo", get(saml_slo))
        .route("/.well-known/gatehouse/jwks.json", get(jwks))
        .route("/.gatehouse/assets/gatehouse.css", get(stylesheet))
        .route("/.gatehouse/assets/portal.js", get(portal::script))
        .route("/.gatehouse/portal/favourite", axum::routing::post(portal::favourite))
        .merge(admin::routes())
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(gate)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn jwks(State(gate): State<Shared>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        gate.jwks(),
    )
        .into_response()
}

async fn not_found(State(gate): State<Shared>) -> Response {
    error(
        &gate,
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no such Gatehouse page.",
    )
}

fn error(gate: &Shared, status: StatusCode, title: &str, message: &str) -> Response {
    let e = pages::ErrorText {
        status: status.as_u16(),
        title,
        message,
        action: Some(("Go to the App Portal", "/")),
    };
    (
        status,
        no_store(),
        Html(pages::error_page(&gate.site().branding.get(), &e)),
    )
        .into_response()
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn set_cookie(site: &Site, name: &str, value: &str, max_age: Option<u64>, same_site: &str) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if site.secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF form field for this browser (the keyed hash of its CSRF cookie, see
/// [`csrf::form_token`]), and a `Set-Cookie` if a new cookie had to be issued.
fn csrf_token(gate: &Shared, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    let site = gate.site();
    let key = gate.csrf_key();
    match cookie(headers, &site.csrf_cookie).filter(|t| csrf::well_formed(t)) {
        Some(t) => (csrf::form_token(&key, t), None),
        None => {
            let t = csrf::new_token();
            let c = set_cookie(site, &site.csrf_cookie, &t, None, "Strict");
            (csrf::form_token(&key, &t), Some(c))
        }
    }
}

fn with_cookies(mut res: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

fn see_other(location: &str) -> Response {
    let loc = HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, loc)]).into_response()
}

/// The portal's address: `?q=` search text and `?tag=` (the filter without JavaScript).
#[derive(Debug, Deserialize, Default)]
struct PortalQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
}

async fn portal(
    State(gate): State<Shared>,
    info: Option<Extension<RequestInfo>>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let info = info.map(|e| e.0).unwrap_or_default();
    let site = gate.site();
    let (csrf, new_cookie) = csrf_token(&gate, &headers);
    // An unreadable query is no reason to refuse the portal: it is shown unfiltered.
    let Query(q) = Query::<PortalQuery>::try_from_uri(&uri).unwrap_or_default();
    let apps = gate.portal_apps(info.viewer.as_ref().map(|v| &v.identity));
    let (requests, memory) = match &info.viewer {
        Some(v) => {
            let user = v.identity.user.as_str();
            (gate.my_requests(user).await, gate.portal_memory(user).await)
        }
        None => (Vec::new(), portal::PortalMemory::default()),
    };
    let favourite_token = info
        .session_id_hash
        .as_deref()
        .filter(|_| info.viewer.is_some())
        .map(|h| csrf::bound_token(&gate.csrf_key(), h, portal::TOKEN_PURPOSE));
    let html = pages::portal(
        site,
        &pages::PortalPage {
            viewer: info.viewer.as_ref(),
            apps: &apps,
            memory: &memory,
            query: clip(&q.q, 200),
            tag: clip(&q.tag, 100),
            requests: &requests,
            csrf: &csrf,
            favourite_token: favourite_token.as_deref(),
        },
    );
    with_cookies((no_store(), Html(html)).into_response(), new_cookie)
}

/// `s` cut to at most `max` bytes at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Debug, Deserialize, Default)]
struct LoginQuery {
    rd: Option<String>,
    signed_out: Option<String>,
}

async fn login_page(
    State(gate): State<Shared>,
    info: Option<Extension<RequestInfo>>,
    Query(q): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let rd = safe_redirect(q.rd.as_deref().unwrap_or("/"));
    if info.is_some_and(|i| i.viewer.is_some()) {
        return see_other(&rd);
    }
    let site = gate.site();
    let (csrf, new_cookie) = csrf_token(&gate, &headers);
    let notice = q.signed_out.is_some().then_some("You are signed out.");
    let html = pages::login(
        site,
        &pages::LoginForm {
            rd: &rd,
            csrf: &csrf,
            username: "",
            error: None,
            notice,
        },
    );
    with_cookies((no_store(), Html(html)).into_response(), new_cookie)
}

#[derive(Debug, Deserialize)]
struct LoginSubmit {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rd: String,
}

async fn login_submit(
    State(gate): State<Shared>,
    info: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<LoginSubmit>, FormRejection>,
) -> Response {
    let site = gate.site();
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                &gate,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The sign-in form is too large",
                &format!(
                    "User names are at most {MAX_USER_NAME_BYTES} bytes. Go back to the sign-in page and try again."
                ),
            );
        }
        Err(_) => {
            return error(
                &gate,
                StatusCode::BAD_REQUEST,
                "The sign-in form could not be read",
                "Go back to the sign-in page and try again.",
            );
        }
    };
    // An over-long name is refused before it is counted, stored, logged or shown again.
    let too_long = f.username.len() > MAX_USER_NAME_BYTES;
    let rd = safe_redirect(if f.rd.is_empty() { "/" } else { &f.rd });
    let (csrf, new_cookie) = csrf_token(&gate, &headers);
    let render = |status: StatusCode, err: &str| {
        let html = pages::login(
            site,
            &pages::LoginForm {
                rd: &rd,
                csrf: &csrf,
                username: if too_long { "" } else { &f.username },
                error: Some(err),
                notice: None,
            },
        );
        with_cookies((status, no_store(), Html(html)).into_response(), new_cookie.clone())
    };
    if too_long {
        return render(
            StatusCode::BAD_REQUEST,
            &format!("User names are at most {MAX_USER_NAME_BYTES} bytes."),
        );
    }
    if !csrf::verify(&gate.csrf_key(), cookie(&headers, &site.csrf_cookie), &f.csrf) {
        return render(
            StatusCode::BAD_REQUEST,
            "This sign-in form expired. Please sign in again.",
        );
    }
    if !site.password_form {
        return render(
            StatusCode::BAD_REQUEST,
            "Password sign-in is not enabled on this gateway.",
        );
    }
    let client = info.as_ref().and_then(|i| i.client);
    match gate.password_login(&f.username, &f.password, client).await {
        Ok(session) => {
            end_previous_session(&gate, &headers, &session, client).await;
            let mut cookies = vec![set_cookie(
                site,
                &site.session_cookie,
                &session,
                Some(site.session_max_age),
                "Lax",
            )];
            // A fresh CSRF token with the fresh session.
            cookies.push(set_cookie(site, &site.csrf_cookie, &csrf::new_token(), None, "Strict"));
            with_cookies(see_other(&rd), cookies)
        }
        Err(LoginError::Invalid) => render(StatusCode::UNAUTHORIZED, "Wrong user name or password."),
        Err(LoginError::RateLimited { minutes }) => render(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins. Wait {minutes} minutes and try again."),
        ),
        Err(LoginError::StoreUnavailable) => render(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE_MESSAGE),
        Err(LoginError::Unavailable) => render(
            StatusCode::SERVICE_UNAVAILABLE,
            "The directory is unavailable right now, so sign-in cannot be checked. Try again in a minute.",
        ),
    }
}

async fn logout_page(State(gate): State<Shared>, info: Option<Extension<RequestInfo>>, headers: HeaderMap) -> Response {
    let site = gate.site();
    let (csrf, new_cookie) = csrf_token(&gate, &headers);
    let viewer = info.and_then(|i| i.0.viewer);
    let html = pages::logout(site, viewer.as_ref(), &csrf);
    with_cookies((no_store(), Html(html)).into_response(), new_cookie)
}

#[derive(Debug, Deserialize)]
struct LogoutSubmit {
    #[serde(default)]
    csrf: String,
}

async fn logout_submit(
    State(gate): State<Shared>,
    info: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<LogoutSubmit>, FormRejection>,
) -> Response {
    let site = gate.site();
    let token = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf::verify(&gate.csrf_key(), cookie(&headers, &site.csrf_cookie), &token) {
        return error(
            &gate,
            StatusCode::BAD_REQUEST,
            "Sign-out form expired",
            "Reload the page and press Sign out again.",
        );
    }
    let mut next = None;
    let info = info.map(|i| i.0).unwrap_or_default();
    if let Some(c) = &info.session_cookie {
        next = gate.logout(c, info.client).await;
    }
    let clear = set_cookie(site, &site.session_cookie, "", Some(0), "Lax");
    let next = next.unwrap_or_else(|| "/.gatehouse/login?signed_out=1".to_string());
    with_cookies(see_other(&next), [clear])
}

/// A sign-in over a live session ends that session: the browser gets a new one, and the
/// old id — wherever else it may have leaked — opens nothing any more. (A SAML response is a
/// cross-site POST that carries no `SameSite=Lax` cookie, so there the old session, if any,
/// lives on until it times out or is signed out.)
async fn end_previous_session(gate: &Shared, headers: &HeaderMap, new_session: &str, client: Option<IpAddr>) {
    let site = gate.site();
    if let Some(old) = cookie(headers, &site.session_cookie).filter(|c| !c.is_empty() && *c != new_session) {
        // Only the local session ends; no single-logout round trip for a sign-in.
        let _ = gate.logout(old, client).await;
    }
}

/// After a successful single sign-on: the previous session (if the request carries one)
/// ended, the new session cookie, a fresh CSRF token, and a redirect to the (same-origin)
/// target.
async fn signed_in(gate: &Shared, headers: &HeaderMap, client: Option<IpAddr>, session: &str, rd: &str) -> Response {
    end_previous_session(gate, headers, session, client).await;
    let site = gate.site();
    let cookies = [
        set_cookie(site, &site.session_cookie, session, Some(site.session_max_age), "Lax"),
        set_cookie(site, &site.csrf_cookie, &csrf::new_token(), None, "Strict"),
    ];
    with_cookies(see_other(&safe_redirect(rd)), cookies)
}

fn sso_error(gate: &Shared, e: &SsoError) -> Response {
    let page = pages::ErrorText {
        status: e.status,
        title: &e.title,
        message: &e.message,
        action: Some(("Try again", &e.retry)),
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        no_store(),
        Html(pages::error_page(&gate.site().branding.get(), &page)),
    )
        .into_response()
}

async fn sso_start(
    State(gate): State<Shared>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    Query(q): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let site = gate.site();
    let rd = safe_redirect(q.rd.as_deref().unwrap_or("/"));
    // One binding cookie per browser, reused by every attempt (no pile-up of cookies).
    let (binding, new_cookie) = match cookie(&headers, &site.login_cookie).filter(|t| csrf::well_formed(t)) {
        Some(b) => (b.to_string(), None),
        None => {
            let b = csrf::new_token();
            let c = set_cookie(site, &site.login_cookie, &b, Some(600), "Lax");
            (b, Some(c))
        }
    };
    match gate.sso_start(&provider, &rd, &binding).await {
        Ok(url) => with_cookies(see_other(&url), new_cookie),
        Err(e) => sso_error(&gate, &e),
    }
}

async fn sso_callback(
    State(gate): State<Shared>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    uri: http::Uri,
    info: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
) -> Response {
    let site = gate.site();
    let binding = cookie(&headers, &site.login_cookie);
    let client = info.and_then(|i| i.0.client);
    match gate
        .sso_callback(&provider, uri.query().unwrap_or(""), binding, client)
        .await
    {
        Ok((session, rd)) => signed_in(&gate, &headers, client, &session, &rd).await,
        Err(e) => sso_error(&gate, &e),
    }
}

async fn saml_metadata(
    State(gate): State<Shared>,
    axum::extract::Path(provider): axum::extract::Path<String>,
) -> Response {
    match gate.saml_metadata(&provider) {
        Ok(xml) => ([(header::CONTENT_TYPE, "application/samlmetadata+xml")], xml).into_response(),
        Err(e) => sso_error(&gate, &e),
    }
}

/// The cookie that ties a SAML sign-in to the browser. The ACS is a cross-site POST, which
/// carries only `SameSite=None` cookies, and browsers accept those only with `Secure`: so
/// the binding exists under TLS only (without TLS, single-use InResponseTo records remain).
fn saml_binding_cookie(site: &Site) -> String {
    format!("{}_saml", site.session_cookie)
}

async fn saml_start(
    State(gate): State<Shared>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    Query(q): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let site = gate.site();
    let rd = safe_redirect(q.rd.as_deref().unwrap_or("/"));
    let name = saml_binding_cookie(site);
    let (binding, new_cookie) = if site.secure {
        match cookie(&headers, &name).filter(|t| csrf::well_formed(t)) {
            Some(b) => (Some(b.to_string()), None),
            None => {
                let b = csrf::new_token();
                let c = set_cookie(site, &name, &b, Some(600), "None");
                (Some(b), Some(c))
            }
        }
    } else {
        (None, None)
    };
    match gate.saml_start(&provider, &rd, binding.as_deref()).await {
        Ok(url) => with_cookies(see_other(&url), new_cookie),
        Err(e) => sso_error(&gate, &e),
    }
}

#[derive(Debug, Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse", default)]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

async fn saml_acs(
    State(gate): State<Shared>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    info: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Response {
    let site = gate.site();
    let client = info.and_then(|i| i.0.client);
    let binding = cookie(&headers, &saml_binding_cookie(site)).map(str::to_string);
    let Ok(Form(f)) = form else {
        let e = SsoError {
            status: 400,
            title: "The sign-in response could not be read".into(),
            message: "The identity provider's answer was not a valid form post. Start the sign-in again.".into(),
            retry: "/.gatehouse/login".into(),
        };
        return sso_error(&gate, &e);
    };
    match gate
        .saml_acs(
            &provider,
            &f.saml_response,
            f.relay_state.as_deref(),
            binding.as_deref(),
            client,
        )
        .await
    {
        Ok((session, rd)) => signed_in(&gate, &headers, client, &session, &rd).await,
        Err(e) => sso_error(&gate, &e),
    }
}

async fn saml_slo(
    State(gate): State<Shared>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    uri: http::Uri,
) -> Response {
    match gate.saml_slo(&provider, uri.query().unwrap_or("")).await {
        Ok(next) => see_other(&next),
        Err(e) => sso_error(&gate, &e),
    }
}
