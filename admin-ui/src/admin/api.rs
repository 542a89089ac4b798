//! The JSON admin API under `/.gatehouse/admin/api/`: the admin pages' operations (apps,
//! grants, "check a person", access requests, people, sessions, audit log) for scripts and
//! CI pipelines. Another renderer of the same [`AdminGate`] calls — nothing is decided here
//! that the pages do not decide the same way.
//!
//! One table, [`ROUTES`], drives the router, the access check of every route and the test
//! that the OpenAPI document (`openapi.json`, served at `…/api/openapi.json`) names every
//! route and nothing else.
//!
//! Callers authenticate with `Authorization: Bearer <token>` (an API token from the admin
//! UI's tokens page, looked up in the store on every call, so a revoked token is refused at
//! once on every replica) or with the admin session cookie — then every state-changing
//! request must carry the session-bound token in `X-Gatehouse-Csrf` and come from this
//! gateway's `Origin`. Scope: an administrator (session or `admin` token) may do everything;
//! an app's owner (session) or an `app:<slug>` token only what owners may do for that app.
//! Every answer is JSON; errors are `{"error": "…", "fields": {"name": "message"}}`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::routing::{on, MethodFilter, MethodRouter};
use http::{HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::*;

/// The OpenAPI 3.1 document describing [`ROUTES`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body the API reads.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// The header carrying the session-bound CSRF token on session-authenticated changes.
pub const CSRF_HEADER: &str = "x-gatehouse-csrf";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Administrators (session or `admin` token) only.
    Admin,
    /// Administrators and those with owner rights on the app in the path (`{slug}`).
    App,
    /// Administrators and anyone with owner rights on some app; answers are limited to
    /// what the caller manages.
    Manager,
}

type ApiResult = Result<Response, ApiError>;
type Handler = fn(Call) -> Pin<Box<dyn Future<Output = ApiResult> + Send>>;

/// One route of the API.
#[derive(Clone, Copy)]
pub struct Route {
    /// `GET`, `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// Absolute path with `{param}` placeholders (axum's and OpenAPI's syntax).
    pub path: &'static str,
    pub need: Need,
    handler: Handler,
}

macro_rules! route {
    ($method:literal, $path:literal, $need:ident, $handler:ident) => {
        Route {
            method: $method,
            path: concat!("/.gatehouse/admin/api", $path),
            need: Need::$need,
            handler: |c| Box::pin($handler(c)),
        }
    };
}

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    route!("GET", "/openapi.json", Manager, openapi),
    route!("GET", "/whoami", Manager, whoami),
    route!("GET", "/apps", Manager, list_apps),
    route!("POST", "/apps", Admin, create_app),
    route!("GET", "/apps/{slug}", App, get_app),
    route!("PATCH", "/apps/{slug}", App, update_app),
    route!("DELETE", "/apps/{slug}", Admin, delete_app),
    route!("GET", "/apps/{slug}/check", App, check),
    route!("GET", "/apps/{slug}/grants", App, list_grants),
    route!("POST", "/apps/{slug}/grants", App, add_grant),
    route!("DELETE", "/apps/{slug}/grants/{kind}/{name}", App, remove_grant),
    route!("GET", "/requests", Manager, list_requests),
    route!("POST", "/apps/{slug}/requests/{user}", App, decide),
    route!("GET", "/users", Admin, list_users),
    route!("POST", "/users", Admin, create_user),
    route!("PATCH", "/users/{name}", Admin, update_user),
    route!("GET", "/sessions", Admin, list_sessions),
    route!("DELETE", "/sessions/{user}", Admin, revoke_sessions),
    route!("GET", "/audit", Admin, audit),
];

/// An error answer: status, message, field errors, and (401) the challenge.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    fields: Vec<(String, String)>,
    challenge: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            fields: vec![],
            challenge: None,
        }
    }

    fn invalid(fields: Vec<(String, String)>) -> ApiError {
        ApiError {
            fields,
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid input: nothing was changed")
        }
    }

    fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(vec![(field.to_string(), message.into())])
    }

    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn unauthorized(message: &str, challenge: &'static str) -> ApiError {
        ApiError {
            challenge: Some(challenge),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    fn into_response(self) -> Response {
        let fields: serde_json::Map<String, Value> =
            self.fields.into_iter().map(|(f, m)| (f, Value::String(m))).collect();
        let mut r = reply(self.status, json!({ "error": self.error, "fields": fields }));
        if let Some(c) = self.challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

/// The usual mapping of an [`AdminError`]; `what` names the thing for 404 and 409.
fn admin_error(e: AdminError, what: &str) -> ApiError {
    match e {
        AdminError::Invalid(fields) => ApiError::invalid(fields),
        AdminError::Conflict(who) => ApiError::new(
            StatusCode::CONFLICT,
            format!("{what} was changed by {who} meanwhile: nothing was changed"),
        ),
        AdminError::NotFound => ApiError::not_found(format!("no such {what}")),
        AdminError::ReadOnly => ApiError::new(
            StatusCode::CONFLICT,
            format!("{what} is defined in the config file: change it there"),
        ),
        AdminError::Unavailable(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is unavailable: {why}"),
        ),
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> ApiResult {
    Ok(reply(StatusCode::OK, body))
}

/// Whom the API acts for, and how far.
#[derive(Debug, Clone)]
enum Scope {
    /// An administrator's session or an `admin` token.
    Admin,
    /// A signed-in non-administrator: owner rights on the apps they own.
    Owner,
    /// An `app:<slug>` token.
    App(String),
}

/// One authenticated, authorised call.
pub struct Call {
    gate: Shared,
    viewer: Viewer,
    scope: Scope,
    client: Option<IpAddr>,
    csrf: Option<String>,
    params: HashMap<String, String>,
    uri: Uri,
    body: Bytes,
}

impl Call {
    fn admin(&self) -> bool {
        matches!(self.scope, Scope::Admin)
    }

    /// Whether the caller has owner rights on app `slug`.
    fn may(&self, slug: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Owner => self.gate.manages(&self.viewer.identity, slug),
            Scope::App(s) => s == slug,
        }
    }

    fn param(&self, name: &str) -> String {
        self.params.get(name).cloned().unwrap_or_default()
    }

    fn query<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        Query::<T>::try_from_uri(&self.uri)
            .map(|Query(q)| q)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query string: {}", e.body_text())))
    }

    /// The body as JSON `T`: 400 with the parser's message when it is not.
    fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "a JSON object body is required"));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            let kind = if e.is_data() {
                "invalid request body"
            } else {
                "malformed JSON"
            };
            ApiError::new(StatusCode::BAD_REQUEST, format!("{kind}: {e}"))
        })
    }
}

/// The API routes, merged into the admin routes.
pub fn routes() -> Router<Shared> {
    let mut by_path: Vec<(&'static str, MethodRouter<Shared>)> = Vec::new();
    for route in ROUTES {
        let filter = match route.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PATCH" => MethodFilter::PATCH,
            "PUT" => MethodFilter::PUT,
            _ => MethodFilter::DELETE,
        };
        let r = *route;
        let handler = move |State(gate): State<Shared>,
                            i: Option<Extension<RequestInfo>>,
                            params: Option<Path<HashMap<String, String>>>,
                            uri: Uri,
                            method: Method,
                            headers: HeaderMap,
                            body: Body| async move {
            let params = params.map(|Path(p)| p).unwrap_or_default();
            match dispatch(r, gate, info(i), params, uri, method, headers, body).await {
                Ok(res) => res,
                Err(e) => e.into_response(),
            }
        };
        match by_path.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).on(filter, handler),
            None => by_path.push((route.path, on(filter, handler))),
        }
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr.fallback(method_not_allowed));
    }
    router
        .route("/.gatehouse/admin/api", axum::routing::any(no_route))
        .route("/.gatehouse/admin/api/", axum::routing::any(no_route))
        .route("/.gatehouse/admin/api/{*rest}", axum::routing::any(no_route))
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route").into_response()
}

async fn no_route() -> Response {
    ApiError::not_found("no such API route: see /.gatehouse/admin/api/openapi.json").into_response()
}

/// Authenticates, checks the CSRF token of session changes and the route's [`Need`], reads
/// the body, then runs the route's handler.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    route: Route,
    gate: Shared,
    i: RequestInfo,
    params: HashMap<String, String>,
    uri: Uri,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (viewer, scope, csrf) = authenticate(&gate, &i, &headers).await?;
    let mut call = Call {
        gate,
        viewer,
        scope,
        client: i.client,
        csrf,
        params,
        uri,
        body: Bytes::new(),
    };
    let allowed = match route.need {
        Need::Admin => call.admin(),
        Need::App => call.may(&call.param("slug")),
        Need::Manager => match &call.scope {
            Scope::Owner => call
                .gate
                .admin_apps()
                .iter()
                .any(|a| call.gate.manages(&call.viewer.identity, &a.slug)),
            _ => true,
        },
    };
    if !allowed {
        let who = call.viewer.identity.user.as_str().to_string();
        return Err(ApiError::forbidden(match route.need {
            Need::App => format!("{who} may not manage app {:?}", call.param("slug")),
            _ => format!("{who} may not use this route: administrators only"),
        }));
    }
    if let Some(expected) = &call.csrf {
        if !matches!(method, Method::GET | Method::HEAD) {
            check_csrf(&call.gate, expected, &headers)?;
        }
    }
    call.body = axum::body::to_bytes(body, API_BODY_LIMIT).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {API_BODY_LIMIT} bytes"),
        )
    })?;
    (route.handler)(call).await
}

/// The caller: a bearer token (looked up now) or the admin session. Returns the viewer, its
/// scope and, for a session, the session-bound CSRF token.
async fn authenticate(
    gate: &Shared,
    i: &RequestInfo,
    headers: &HeaderMap,
) -> Result<(Viewer, Scope, Option<String>), ApiError> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let secret = auth
            .to_str()
            .ok()
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "expected Authorization: Bearer <API token>",
                    r#"Bearer realm="gatehouse", error="invalid_request""#,
                )
            })?;
        let token = gate
            .token_for(secret)
            .await
            .map_err(|e| admin_error(e, "token"))?
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "unknown, revoked or expired API token",
                    r#"Bearer realm="gatehouse", error="invalid_token""#,
                )
            })?;
        let scope = match token.scope.strip_prefix("app:") {
            Some(slug) => Scope::App(slug.to_string()),
            None if token.scope == "admin" => Scope::Admin,
            None => return Err(ApiError::forbidden("this token has no usable scope")),
        };
        let viewer = Viewer {
            identity: gatehouse_policy::Identity {
                user: gatehouse_policy::UserName::new(&format!("token:{}", token.name)),
                groups: Default::default(),
                admin: matches!(scope, Scope::Admin),
            },
            display_name: Some(format!("API token {}", token.name)),
            token: Some(token.name),
        };
        return Ok((viewer, scope, None));
    }
    let Some(v) = i.viewer.clone() else {
        return Err(ApiError::unauthorized(
            "sign in or send Authorization: Bearer <API token>",
            r#"Bearer realm="gatehouse""#,
        ));
    };
    // A session always has a CSRF token to expect; a missing store key expects one nobody has.
    let csrf = Some(
        i.session_id_hash
            .as_deref()
            .map(|h| session_token(&gate.csrf_key(), h))
            .unwrap_or_default(),
    );
    let scope = if v.identity.admin { Scope::Admin } else { Scope::Owner };
    Ok((v, scope, csrf))
}

/// For a session caller's change: the session-bound token in [`CSRF_HEADER`] and this
/// gateway's Origin.
fn check_csrf(gate: &Shared, expected: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok()).unwrap_or("");
    if expected.is_empty() || !crate::csrf::same(expected, sent) {
        return Err(ApiError::forbidden(format!(
            "session requests that change something need the {CSRF_HEADER} header (GET /.gatehouse/admin/api/whoami gives it): nothing was changed"
        )));
    }
    if !same_origin(headers, &gate.site().origin) {
        return Err(ApiError::forbidden(
            "cross-site request refused (Origin is not this gateway): nothing was changed",
        ));
    }
    Ok(())
}

// ---- answers ----

fn app_json(a: &AdminApp) -> Value {
    json!({
        "slug": a.slug,
        "name": a.name,
        "description": a.description,
        "route": a.route,
        "upstreams": a.upstreams.iter().map(|(u, healthy)| json!({"address": u, "healthy": healthy})).collect::<Vec<_>>(),
        "access": a.access,
        "allow_groups": a.allow_groups,
        "allow_users": a.allow_users,
        "owner_users": a.owner_users,
        "owner_groups": a.owner_groups,
        "remote_headers": a.remote_headers,
        "plotly_user_data": a.plotly_user_data,
        "dash_token": a.dash_token,
        "groups_sent": a.groups_sent,
        "portal_visible": a.portal_visible,
        "portal_order": a.portal_order,
        "tags": a.tags,
        "thumbnail": (!a.thumbnail.is_empty()).then_some(&a.thumbnail),
        "editable": a.editable,
        "source": a.source,
        "audience": a.audience,
        "version": a.version,
    })
}

fn grant_json(g: &GrantRow) -> Value {
    json!({
        "kind": g.kind,
        "name": g.name,
        "expires_at": g.expires_at,
        "active": g.active,
        "created_by": g.created_by,
    })
}

fn request_json(r: &RequestRow) -> Value {
    json!({
        "app": r.app,
        "app_name": r.app_name,
        "user": r.user,
        "reason": r.reason,
        "groups": r.groups,
        "status": r.status,
        "created_at": r.created_at,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
    })
}

fn user_json(u: &UserRow) -> Value {
    json!({
        "user": u.user,
        "display_name": u.display_name,
        "email": u.email,
        "provider": u.provider,
        "local": u.local,
        "admin": u.admin,
        "disabled": u.disabled,
        "groups": u.groups,
        "last_seen": u.last_seen,
    })
}

fn find_app(c: &Call, slug: &str) -> Result<AdminApp, ApiError> {
    c.gate
        .admin_apps()
        .into_iter()
        .find(|a| a.slug == slug)
        .ok_or_else(|| ApiError::not_found(format!("no such app {slug:?}")))
}

// ---- handlers ----

async fn openapi(_c: Call) -> ApiResult {
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        OPENAPI,
    )
        .into_response())
}

async fn whoami(c: Call) -> ApiResult {
    let scope = match &c.scope {
        Scope::Admin => "admin".to_string(),
        Scope::Owner => "owner".to_string(),
        Scope::App(s) => format!("app:{s}"),
    };
    ok(json!({
        "user": c.viewer.identity.user.as_str(),
        "admin": c.admin(),
        "scope": scope,
        "token": c.viewer.token,
        "csrf": c.csrf.as_deref().filter(|t| !t.is_empty()),
    }))
}

async fn list_apps(c: Call) -> ApiResult {
    // Known people each app admits (null when the store cannot say).
    let people = c.gate.people_counts().await.ok();
    let apps: Vec<Value> = c
        .gate
        .admin_apps()
        .iter()
        .filter(|a| c.may(&a.slug))
        .map(|a| {
            let mut v = app_json(a);
            v["people"] = json!(people.as_ref().and_then(|m| m.get(&a.slug)));
            v
        })
        .collect();
    ok(json!({ "apps": apps }))
}

async fn get_app(c: Call) -> ApiResult {
    ok(app_json(&find_app(&c, &c.param("slug"))?))
}

/// An app as the API takes it: every field optional (creating: defaults; updating: the
/// current value stays).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppBody {
    slug: Option<String>,
    name: Option<String>,
    description: Option<String>,
    upstreams: Option<Vec<String>>,
    access: Option<String>,
    allow_groups: Option<Vec<String>>,
    allow_users: Option<Vec<String>>,
    owner_users: Option<Vec<String>>,
    owner_groups: Option<Vec<String>>,
    remote_headers: Option<bool>,
    plotly_user_data: Option<bool>,
    dash_token: Option<bool>,
    groups_sent: Option<String>,
    portal_visible: Option<bool>,
    portal_order: Option<i64>,
    tags: Option<Vec<String>>,
    /// `null` or `""` removes the thumbnail.
    #[serde(default, deserialize_with = "some_or_null")]
    thumbnail: Option<Option<String>>,
    version: Option<i64>,
}

/// A field that may be absent (keep the current value) or `null` (clear it).
fn some_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A list field as the form's one-per-line text; items holding a comma or line break are
/// refused (the form would split them).
fn lines(field: &str, items: &[String], errors: &mut Vec<(String, String)>) -> String {
    if let Some(bad) = items.iter().find(|i| i.contains([',', '\n', '\r'])) {
        errors.push((
            field.to_string(),
            format!("{bad:?}: one name per item, without commas or line breaks"),
        ));
    }
    items.join("\n")
}

fn flag(b: bool) -> Option<String> {
    b.then(|| "1".to_string())
}

impl AppBody {
    /// The form input for this body on top of `base` (the current app, or defaults).
    fn input(self, base: AppInput) -> Result<AppInput, ApiError> {
        let mut errors = vec![];
        let mut list = |field: &str, v: Option<Vec<String>>, current: String| match v {
            Some(items) => lines(field, &items, &mut errors),
            None => current,
        };
        let input = AppInput {
            upstreams: list("upstreams", self.upstreams, base.upstreams),
            allow_groups: list("allow_groups", self.allow_groups, base.allow_groups),
            allow_users: list("allow_users", self.allow_users, base.allow_users),
            owner_users: list("owner_users", self.owner_users, base.owner_users),
            owner_groups: list("owner_groups", self.owner_groups, base.owner_groups),
            tags: list("tags", self.tags, base.tags),
            thumbnail: self.thumbnail.map_or(base.thumbnail, Option::unwrap_or_default),
            slug: self.slug.unwrap_or(base.slug),
            name: self.name.unwrap_or(base.name),
            description: self.description.unwrap_or(base.description),
            access: self.access.unwrap_or(base.access),
            remote_headers: self.remote_headers.map_or(base.remote_headers, flag),
            plotly_user_data: self.plotly_user_data.map_or(base.plotly_user_data, flag),
            dash_token: self.dash_token.map_or(base.dash_token, flag),
            groups_sent: self.groups_sent.unwrap_or(base.groups_sent),
            portal_visible: self.portal_visible.map_or(base.portal_visible, flag),
            portal_order: self.portal_order.map_or(base.portal_order, |n| n.to_string()),
            version: self.version.unwrap_or(base.version),
            csrf: String::new(),
        };
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(ApiError::invalid(errors))
        }
    }
}

async fn create_app(c: Call) -> ApiResult {
    let body: AppBody = c.json()?;
    if body.slug.as_deref().is_none_or(|s| s.trim().is_empty()) {
        return Err(ApiError::field("slug", "a slug is required"));
    }
    let base = AppInput {
        access: "restricted".into(),
        groups_sent: "auto".into(),
        portal_visible: flag(true),
        ..AppInput::default()
    };
    let input = body.input(base)?;
    c.gate
        .save_app(&c.viewer, c.client, &input, true)
        .await
        .map_err(|e| admin_error(e, "app"))?;
    let app = find_app(&c, input.slug.trim())?;
    Ok(reply(StatusCode::CREATED, app_json(&app)))
}

async fn update_app(c: Call) -> ApiResult {
    let slug = c.param("slug");
    let body: AppBody = c.json()?;
    let Some(version) = body.version else {
        return Err(ApiError::field(
            "version",
            "required: the version you read (GET the app), so that a change made meanwhile is not overwritten",
        ));
    };
    if body.slug.as_deref().is_some_and(|s| s != slug) {
        return Err(ApiError::field("slug", "an app's slug cannot be changed"));
    }
    if !c.admin() && (body.owner_users.is_some() || body.owner_groups.is_some()) {
        return Err(ApiError::forbidden("only administrators name an app's owners"));
    }
    let app = find_app(&c, &slug)?;
    if !app.editable {
        return Err(admin_error(AdminError::ReadOnly, "this app"));
    }
    let base = AppInput {
        version,
        ..AppInput::of(&app)
    };
    let input = body.input(base)?;
    c.gate
        .save_app(&c.viewer, c.client, &input, false)
        .await
        .map_err(|e| admin_error(e, "this app"))?;
    ok(app_json(&find_app(&c, &slug)?))
}

#[derive(Debug, Deserialize)]
struct VersionQuery {
    version: Option<i64>,
}

async fn delete_app(c: Call) -> ApiResult {
    let slug = c.param("slug");
    let Some(version) = c.query::<VersionQuery>()?.version else {
        return Err(ApiError::field("version", "required (?version=<the version you read>)"));
    };
    c.gate
        .delete_app(&c.viewer, c.client, &slug, version)
        .await
        .map_err(|e| admin_error(e, "this app"))?;
    ok(json!({ "deleted": slug }))
}

#[derive(Debug, Deserialize)]
struct CheckQuery {
    user: Option<String>,
}

async fn check(c: Call) -> ApiResult {
    let slug = c.param("slug");
    let user = c.query::<CheckQuery>()?.user.unwrap_or_default();
    if user.trim().is_empty() || user.len() > gatehouse_policy::MAX_USER_NAME_BYTES {
        return Err(ApiError::field("user", "name a person (?user=<name>)"));
    }
    let Some(r) = c.gate.check(&slug, user.trim()).await else {
        return Err(ApiError::not_found(format!("no such app {slug:?}")));
    };
    ok(json!({ "user": r.user, "allowed": r.allowed, "reason": r.reason, "basis": r.basis }))
}

async fn list_grants(c: Call) -> ApiResult {
    let slug = c.param("slug");
    let app = find_app(&c, &slug)?;
    if !app.editable {
        return ok(json!({ "grants": [] }));
    }
    let grants = c.gate.grants(&slug).await.map_err(|e| admin_error(e, "app"))?;
    ok(json!({ "grants": grants.iter().map(grant_json).collect::<Vec<_>>() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    /// ``, `1h`, `8h`, `1d`, `7d`, `30d`.
    #[serde(default)]
    duration: String,
    /// A UTC date: the grant lasts through that day.
    #[serde(default)]
    until: String,
}

async fn add_grant(c: Call) -> ApiResult {
    let slug = c.param("slug");
    let b: GrantBody = c.json()?;
    let mut errors = vec![];
    if !matches!(b.kind.as_str(), "user" | "group") {
        errors.push(("kind".to_string(), "\"user\" or \"group\"".to_string()));
    }
    if b.name.trim().is_empty() {
        errors.push(("name".to_string(), "name a person or a group".to_string()));
    }
    if let Err(m) = expiry(&b.duration, "", 0) {
        errors.push(("duration".to_string(), format!("{m}: one of 1h, 8h, 1d, 7d, 30d")));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let input = GrantInput {
        kind: b.kind,
        name: b.name,
        duration: b.duration,
        until: b.until,
        csrf: String::new(),
    };
    c.gate
        .add_grant(&c.viewer, c.client, &slug, &input)
        .await
        .map_err(|e| admin_error(e, "app"))?;
    let grants = c.gate.grants(&slug).await.map_err(|e| admin_error(e, "app"))?;
    let name = input.name.trim().to_lowercase();
    let grant = grants
        .iter()
        .find(|g| g.kind == input.kind && g.name.to_lowercase() == name)
        .map(grant_json)
        .unwrap_or(Value::Null);
    Ok(reply(StatusCode::CREATED, grant))
}

async fn remove_grant(c: Call) -> ApiResult {
    let (slug, kind, name) = (c.param("slug"), c.param("kind"), c.param("name"));
    c.gate
        .remove_grant(&c.viewer, c.client, &slug, &kind, &name)
        .await
        .map_err(|e| admin_error(e, "grant"))?;
    ok(json!({ "removed": { "kind": kind, "name": name } }))
}

async fn list_requests(c: Call) -> ApiResult {
    let rows = c.gate.requests().await.map_err(|e| admin_error(e, "request"))?;
    let rows: Vec<Value> = rows.iter().filter(|r| c.may(&r.app)).map(request_json).collect();
    ok(json!({ "requests": rows }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// `approve` or `decline`.
    #[serde(default)]
    decision: String,
    /// `user` (default) or `group:<one of the requester's groups>`.
    #[serde(default)]
    grant_to: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    until: String,
}

async fn decide(c: Call) -> ApiResult {
    let (slug, user) = (c.param("slug"), c.param("user"));
    let b: DecisionBody = c.json()?;
    if !matches!(b.decision.as_str(), "approve" | "decline") {
        return Err(ApiError::field("decision", "\"approve\" or \"decline\""));
    }
    let input = DecisionInput {
        csrf: String::new(),
        app: slug.clone(),
        user: user.clone(),
        decision: b.decision.clone(),
        grant_to: if b.grant_to.is_empty() {
            "user".into()
        } else {
            b.grant_to
        },
        duration: b.duration,
        until: b.until,
        grant_group: String::new(),
    };
    c.gate.decide(&c.viewer, c.client, &input).await.map_err(|e| match e {
        AdminError::NotFound => ApiError::not_found(format!("no pending request of {user:?} for {slug:?}")),
        e => admin_error(e, "request"),
    })?;
    ok(json!({ "app": slug, "user": user, "status": if b.decision == "approve" { "approved" } else { "declined" } }))
}

async fn list_users(c: Call) -> ApiResult {
    let rows = c.gate.users().await.map_err(|e| admin_error(e, "user"))?;
    ok(json!({ "users": rows.iter().map(user_json).collect::<Vec<_>>() }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    password: String,
}

async fn create_user(c: Call) -> ApiResult {
    let b: NewUserBody = c.json()?;
    let mut errors = vec![];
    let groups = lines("groups", &b.groups, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let input = UserInput {
        username: b.username,
        display_name: b.display_name,
        email: b.email,
        groups,
        admin: flag(b.admin),
        disabled: None,
        password: b.password,
        csrf: String::new(),
    };
    c.gate
        .save_user(&c.viewer, c.client, &input, true)
        .await
        .map_err(|e| admin_error(e, "account"))?;
    let name = gatehouse_policy::UserName::new(&input.username);
    let rows = c.gate.users().await.map_err(|e| admin_error(e, "user"))?;
    let row = rows.iter().find(|u| u.local && u.user == name.as_str()).map(user_json);
    Ok(reply(StatusCode::CREATED, row.unwrap_or(Value::Null)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    groups: Option<Vec<String>>,
    admin: Option<bool>,
    disabled: Option<bool>,
    /// A new password (ends the person's sessions).
    password: Option<String>,
}

async fn update_user(c: Call) -> ApiResult {
    let name = gatehouse_policy::UserName::new(&c.param("name"));
    let b: UserPatch = c.json()?;
    let rows = c.gate.users().await.map_err(|e| admin_error(e, "user"))?;
    let Some(current) = rows.iter().find(|u| u.local && u.user == name.as_str()) else {
        return Err(ApiError::not_found(format!("no local account {:?}", name.as_str())));
    };
    let mut errors = vec![];
    let groups = match &b.groups {
        Some(g) => lines("groups", g, &mut errors),
        None => current.groups.join("\n"),
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let input = UserInput {
        username: current.user.clone(),
        groups,
        admin: flag(b.admin.unwrap_or(current.admin)),
        disabled: flag(b.disabled.unwrap_or(current.disabled)),
        password: b.password.unwrap_or_default(),
        ..UserInput::default()
    };
    c.gate
        .save_user(&c.viewer, c.client, &input, false)
        .await
        .map_err(|e| match e {
            AdminError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, why),
            e => admin_error(e, "account"),
        })?;
    let rows = c.gate.users().await.map_err(|e| admin_error(e, "user"))?;
    let row = rows.iter().find(|u| u.local && u.user == name.as_str()).map(user_json);
    ok(row.unwrap_or(Value::Null))
}

async fn list_sessions(c: Call) -> ApiResult {
    let rows = c.gate.sessions().await.map_err(|e| admin_error(e, "session"))?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|s| {
            json!({
                "user": s.user,
                "provider": s.provider,
                "groups": s.groups,
                "admin": s.admin,
                "created_at": s.created_at,
                "last_seen": s.last_seen,
            })
        })
        .collect();
    ok(json!({ "sessions": rows }))
}

async fn revoke_sessions(c: Call) -> ApiResult {
    let user = c.param("user");
    if user.trim().is_empty() || user.len() > gatehouse_policy::MAX_USER_NAME_BYTES {
        return Err(ApiError::field("user", "name a person"));
    }
    let n = c
        .gate
        .revoke_user(&c.viewer, c.client, &user)
        .await
        .map_err(|e| admin_error(e, "session"))?;
    ok(json!({ "user": user, "revoked": n }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    /// An app's slug: its events and its grants' and requests'.
    #[serde(default)]
    app: String,
    /// Epoch seconds, inclusive.
    since: Option<i64>,
    /// Epoch seconds, exclusive.
    until: Option<i64>,
    #[serde(default)]
    offset: i64,
    limit: Option<i64>,
}

/// Most audit events one call returns.
const AUDIT_API_MAX: i64 = 1000;

async fn audit(c: Call) -> ApiResult {
    let q: AuditParams = c.query()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=AUDIT_API_MAX).contains(&limit) {
        return Err(ApiError::field("limit", format!("between 1 and {AUDIT_API_MAX}")));
    }
    if q.offset < 0 {
        return Err(ApiError::field("offset", "0 or more"));
    }
    let search = AuditSearch {
        actor: q.actor.trim().to_string(),
        action: q.action.trim().to_string(),
        target: q.target.trim().to_string(),
        app: q.app.trim().to_string(),
        since: q.since,
        until: q.until,
        offset: q.offset,
        limit,
    };
    let rows = c.gate.audit(&search).await.map_err(|e| admin_error(e, "audit log"))?;
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "at": r.at,
                "actor": r.actor,
                "client": r.client,
                "action": r.action,
                "target": r.target,
                "detail": parse(&r.detail),
                "before": parse(&r.before),
                "after": parse(&r.after),
            })
        })
        .collect();
    ok(json!({ "events": events }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the table is in the OpenAPI document and the document has no other.
    #[test]
    fn openapi_describes_every_route_and_no_other() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: std::collections::BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty(), "routes missing from openapi.json: {missing:?}");
        assert!(
            extra.is_empty(),
            "openapi.json documents routes that do not exist: {extra:?}"
        );
    }

    #[test]
    fn list_items_with_separators_are_refused() {
        let mut errors = vec![];
        assert_eq!(lines("g", &["a".into(), "b".into()], &mut errors), "a\nb");
        assert!(errors.is_empty());
        lines("g", &["a,b".into()], &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "g");
    }
}
