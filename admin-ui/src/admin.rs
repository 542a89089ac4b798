//! The admin UI at `/.gatehouse/admin/`: apps (list, create, edit, delete store apps; file
//! apps read-only), who can open an app and why, sessions (revoke a person's), and the audit
//! log. Server-rendered; every change is a POST carrying a token bound to the admin's
//! session and coming from this gateway's own origin. Nothing here decides access: the
//! gateway's [`AdminGate`] does, with `gatehouse_policy`.

use std::net::IpAddr;

use async_trait::async_trait;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use html_escape::encode_double_quoted_attribute as attr;
use html_escape::encode_text as esc;
use http::{header, HeaderMap, StatusCode};
use serde::Deserialize;

use crate::{pages, RequestInfo, Shared, Viewer};

/// An app as the admin UI shows it.
#[derive(Debug, Clone)]
pub struct AdminApp {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// Host (if any) and path prefix.
    pub route: String,
    /// Each upstream and whether it passes health checks.
    pub upstreams: Vec<(String, bool)>,
    /// `public`, `authenticated` or `restricted`.
    pub access: String,
    pub allow_groups: Vec<String>,
    pub allow_users: Vec<String>,
    /// Defined in the store (editable here) rather than the config file.
    pub editable: bool,
    /// Where it is defined, in words.
    pub source: String,
    /// Who can open it, in words (`policy::who_can_open`).
    pub audience: String,
    /// The store record's version (its `updated_at`), for refusing stale saves.
    pub version: i64,
    /// Who manages it besides administrators.
    pub owner_users: Vec<String>,
    pub owner_groups: Vec<String>,
    pub remote_headers: bool,
    pub plotly_user_data: bool,
    pub groups_sent: String,
    pub portal_visible: bool,
}

/// What the app form sends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppInput {
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// One per line (or comma-separated).
    #[serde(default)]
    pub upstreams: String,
    #[serde(default)]
    pub access: String,
    /// One per line (or comma-separated).
    #[serde(default)]
    pub allow_groups: String,
    #[serde(default)]
    pub allow_users: String,
    /// Checkboxes: present when ticked.
    pub remote_headers: Option<String>,
    pub plotly_user_data: Option<String>,
    /// `all` (default) or `referenced`.
    #[serde(default)]
    pub groups_sent: String,
    /// Checkbox; the form renders it ticked for a new app.
    pub portal_visible: Option<String>,
    /// Owners (administrators only set these): people and groups, one per line.
    #[serde(default)]
    pub owner_users: String,
    #[serde(default)]
    pub owner_groups: String,
    /// The version the form was rendered from; 0 when creating.
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub csrf: String,
}

/// Why an admin change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// Field → what is wrong with it.
    Invalid(Vec<(String, String)>),
    /// Someone else changed it since the form was rendered (who, if known).
    Conflict(String),
    NotFound,
    /// Defined in the config file: change it there.
    ReadOnly,
    Unavailable(String),
}

/// One line of the audit log, as shown.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub client: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub before: String,
    pub after: String,
}

/// A live session, as shown.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user: String,
    pub provider: String,
    pub groups: usize,
    pub admin: bool,
    pub created_at: i64,
    pub last_seen: i64,
}

/// A person the gateway knows: a local account, or someone seen at sign-in.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub user: String,
    pub display_name: String,
    pub email: String,
    /// `local` for local accounts, else the provider of their latest session.
    pub provider: String,
    pub local: bool,
    pub admin: bool,
    pub disabled: bool,
    pub groups: Vec<String>,
    /// Latest session activity (epoch seconds), if any.
    pub last_seen: Option<i64>,
}

/// What the local-account form sends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInput {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub email: String,
    /// One per line (or comma-separated).
    #[serde(default)]
    pub groups: String,
    /// Checkbox: present when ticked.
    pub admin: Option<String>,
    pub disabled: Option<String>,
    /// Required for a new account; when editing, a new password (empty: unchanged).
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub csrf: String,
}

/// A grant on an app, as shown.
#[derive(Debug, Clone)]
pub struct GrantRow {
    /// `user` or `group`.
    pub kind: String,
    pub name: String,
    pub expires_at: Option<i64>,
    /// Still lets people in.
    pub active: bool,
    pub created_by: String,
}

/// What the grant form sends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrantInput {
    /// `user` or `group`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    /// ``, `1h`, `8h`, `1d`, `7d` or `30d`.
    #[serde(default)]
    pub duration: String,
    /// A UTC date `YYYY-MM-DD` (the grant lasts through that day), overriding `duration`.
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub csrf: String,
}

/// When a grant made at `now` from `duration` / `until` ends; `None`: never. `Err`: the
/// message for the form.
pub fn expiry(duration: &str, until: &str, now: i64) -> Result<Option<i64>, String> {
    let until = until.trim();
    if !until.is_empty() {
        let parts: Vec<&str> = until.split('-').collect();
        let nums: Option<Vec<i64>> = parts.iter().map(|p| p.parse().ok()).collect();
        let Some([y, m, d]) = nums.as_deref().and_then(|n| <[i64; 3]>::try_from(n).ok()) else {
            return Err(format!("{until:?} is not a date (YYYY-MM-DD)"));
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
            return Err(format!("{until:?} is not a date (YYYY-MM-DD)"));
        }
        let end = (days_from_civil(y, m, d) + 1) * 86_400;
        if end <= now {
            return Err(format!("{until} is in the past"));
        }
        return Ok(Some(end));
    }
    let secs = match duration.trim() {
        "" => return Ok(None),
        "1h" => 3_600,
        "8h" => 8 * 3_600,
        "1d" => 86_400,
        "7d" => 7 * 86_400,
        "30d" => 30 * 86_400,
        other => return Err(format!("unknown duration {other:?}")),
    };
    Ok(Some(now + secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Which audit events to show or export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSearch {
    /// Exact matches; empty: any.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Epoch seconds: from (inclusive) and to (exclusive).
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

/// An access request, as shown.
#[derive(Debug, Clone)]
pub struct RequestRow {
    pub app: String,
    pub app_name: String,
    pub user: String,
    pub reason: String,
    /// The requester's groups when they asked.
    pub groups: Vec<String>,
    /// `pending`, `approved` or `declined`.
    pub status: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

/// What an approve/decline form sends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DecisionInput {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub user: String,
    /// `approve` or `decline`.
    #[serde(default)]
    pub decision: String,
    /// `user`, or `group:<name>` (one of the requester's groups).
    #[serde(default)]
    pub grant_to: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub until: String,
}

/// The answer of "check a person" on an app.
#[derive(Debug, Clone)]
pub struct Check {
    pub user: String,
    pub allowed: bool,
    pub reason: String,
    /// Where the person's groups came from (a local account, their latest session, none).
    pub basis: String,
}

/// What the admin pages need from the gateway.
#[async_trait]
pub trait AdminGate: Send + Sync {
    /// Every app served now (the live snapshot), file apps first.
    fn admin_apps(&self) -> Vec<AdminApp>;
    /// Whether `who` may manage app `slug` (an administrator or one of its owners).
    fn manages(&self, who: &gatehouse_policy::Identity, slug: &str) -> bool;
    /// Problems with store apps that are not served (slug or route clashes, invalid).
    fn admin_problems(&self) -> Vec<String>;
    /// Creates (`create`) or updates a store app.
    async fn save_app(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: &AppInput,
        create: bool,
    ) -> Result<(), AdminError>;
    /// Deletes a store app whose version is still `version`.
    async fn delete_app(&self, by: &Viewer, client: Option<IpAddr>, slug: &str, version: i64)
        -> Result<(), AdminError>;
    /// Whether `user` may open app `slug`, and why. `None`: no such app.
    async fn check(&self, slug: &str, user: &str) -> Option<Check>;
    /// The most recently active sessions.
    async fn sessions(&self) -> Result<Vec<SessionRow>, AdminError>;
    /// Ends every session of `user`; returns how many.
    async fn revoke_user(&self, by: &Viewer, client: Option<IpAddr>, user: &str) -> Result<u64, AdminError>;
    /// The audit events matching `q`, newest first.
    async fn audit(&self, q: &AuditSearch) -> Result<Vec<AuditRow>, AdminError>;
    /// The grants of store app `slug`, expired ones too.
    async fn grants(&self, slug: &str) -> Result<Vec<GrantRow>, AdminError>;
    /// Adds (or renews) a grant on store app `slug`.
    async fn add_grant(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        input: &GrantInput,
    ) -> Result<(), AdminError>;
    /// Removes a grant.
    async fn remove_grant(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), AdminError>;
    /// `by` asks for app `slug` (a store app they cannot open); returns the app's link.
    async fn request_access(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        reason: &str,
    ) -> Result<String, AdminError>;
    /// Every access request: pending first.
    async fn requests(&self) -> Result<Vec<RequestRow>, AdminError>;
    /// `user`'s own requests (for the portal).
    async fn my_requests(&self, user: &str) -> Vec<RequestRow>;
    /// Approves (with a grant) or declines a pending request.
    async fn decide(&self, by: &Viewer, client: Option<IpAddr>, input: &DecisionInput) -> Result<(), AdminError>;
    /// Local accounts, then people seen at sign-in.
    async fn users(&self) -> Result<Vec<UserRow>, AdminError>;
    /// Creates (`create`) or updates a local account (groups, admin, disabled, password).
    async fn save_user(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: &UserInput,
        create: bool,
    ) -> Result<(), AdminError>;
}

/// The admin routes, merged into the gateway's router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/.gatehouse/admin", get(home))
        .route("/.gatehouse/admin/", get(home))
        .route("/.gatehouse/admin/apps", get(apps_page))
        .route("/.gatehouse/admin/apps/new", get(new_app_page).post(create_app))
        .route("/.gatehouse/admin/apps/{slug}", get(app_page).post(update_app))
        .route("/.gatehouse/admin/apps/{slug}/delete", post(delete_app))
        .route("/.gatehouse/admin/apps/{slug}/grants", post(add_grant))
        .route("/.gatehouse/admin/apps/{slug}/grants/remove", post(remove_grant))
        .route("/.gatehouse/admin/sessions", get(sessions_page))
        .route("/.gatehouse/admin/sessions/revoke", post(revoke_sessions))
        .route("/.gatehouse/admin/audit", get(audit_page))
        .route("/.gatehouse/admin/audit.csv", get(audit_csv))
        .route("/.gatehouse/admin/audit.json", get(audit_json))
        .route("/.gatehouse/admin/requests", get(requests_page).post(decide))
        .route("/.gatehouse/request-access", post(request_access))
        .route("/.gatehouse/admin/users", get(users_page))
        .route("/.gatehouse/admin/users/new", get(new_user_page).post(create_user))
        .route("/.gatehouse/admin/users/{name}", get(user_page).post(update_user))
}

/// The token admin forms carry: bound to the session (a hash of its store key), so a token
/// planted in a cookie or copied from another session is worthless.
pub fn session_token(session_id_hash: &str) -> String {
    crate::csrf::bound_token(session_id_hash, "admin")
}

/// The signed-in administrator, or the response to send instead: the sign-in page for
/// nobody, a 403 page for anyone else.
fn admin(gate: &Shared, info: &RequestInfo, path: &str) -> Result<Viewer, Box<Response>> {
    match &info.viewer {
        None => {
            let rd = percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC);
            Err(Box::new(crate::see_other(&format!("/.gatehouse/login?rd={rd}"))))
        }
        Some(v) if !v.identity.admin => Err(Box::new(crate::error(
            gate,
            StatusCode::FORBIDDEN,
            "Administrators only",
            &format!(
                "Signed in as {}: the admin pages are for administrators of this gateway.",
                v.identity.user
            ),
        ))),
        Some(v) => Ok(v.clone()),
    }
}

/// The signed-in administrator, or an owner of app `slug` (any app when `None`: the "My
/// apps" and requests lists); `.1` says whether they are an administrator.
fn manager(gate: &Shared, info: &RequestInfo, path: &str, slug: Option<&str>) -> Result<(Viewer, bool), Box<Response>> {
    let v = match &info.viewer {
        None => return admin(gate, info, path).map(|v| (v, true)),
        Some(v) => v.clone(),
    };
    if v.identity.admin {
        return Ok((v, true));
    }
    let owns = match slug {
        Some(s) => gate.manages(&v.identity, s),
        None => gate.admin_apps().iter().any(|a| gate.manages(&v.identity, &a.slug)),
    };
    if owns {
        Ok((v, false))
    } else {
        Err(Box::new(crate::error(
            gate,
            StatusCode::FORBIDDEN,
            "Administrators only",
            &format!(
                "Signed in as {}: these pages are for administrators of this gateway and the owners of each app.",
                v.identity.user
            ),
        )))
    }
}

/// [`manager`] for a state-changing request: plus the session-bound token and the Origin.
fn manager_post(
    gate: &Shared,
    info: &RequestInfo,
    headers: &HeaderMap,
    token: &str,
    path: &str,
    slug: Option<&str>,
) -> Result<(Viewer, bool), Box<Response>> {
    let who = manager(gate, info, path, slug)?;
    check_token_and_origin(gate, info, headers, token)?;
    Ok(who)
}

fn check_token_and_origin(
    gate: &Shared,
    info: &RequestInfo,
    headers: &HeaderMap,
    token: &str,
) -> Result<(), Box<Response>> {
    let expected = info.session_id_hash.as_deref().map(session_token);
    if !expected.is_some_and(|e| crate::csrf::same(&e, token)) {
        return Err(Box::new(crate::error(
            gate,
            StatusCode::FORBIDDEN,
            "This form expired",
            "The page was open too long or came from elsewhere. Reload it and try again.",
        )));
    }
    if !same_origin(headers, &gate.site().origin) {
        return Err(Box::new(crate::error(
            gate,
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            "Admin changes are accepted only from this gateway's own pages.",
        )));
    }
    Ok(())
}

/// Checks a state-changing request: an administrator, the session-bound token, and an
/// `Origin` (or `Referer`) of this gateway. Any failure changes nothing.
fn admin_post(
    gate: &Shared,
    info: &RequestInfo,
    headers: &HeaderMap,
    token: &str,
    path: &str,
) -> Result<Viewer, Box<Response>> {
    let v = admin(gate, info, path)?;
    check_token_and_origin(gate, info, headers, token)?;
    Ok(v)
}

/// Whether the request's `Origin` (or, without one, `Referer`) is `origin`. Neither: refused.
pub fn same_origin(headers: &HeaderMap, origin: &str) -> bool {
    if let Some(o) = headers.get(header::ORIGIN) {
        return o.to_str().is_ok_and(|o| o == origin);
    }
    headers
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .is_some_and(|r| r == origin || r.starts_with(&format!("{origin}/")))
}

fn info(e: Option<Extension<RequestInfo>>) -> RequestInfo {
    e.map(|e| e.0).unwrap_or_default()
}

fn page(gate: &Shared, v: &Viewer, title: &str, active: &str, body: &str) -> Response {
    let site = gate.site();
    let link = |href: &str, label: &str, key: &str| {
        let current = if key == active { r#" aria-current="page""# } else { "" };
        format!(r#"<a href="{href}"{current}>{label}</a>"#)
    };
    // Owners who are not administrators see their apps and their requests, nothing else.
    let links = if v.identity.admin {
        [
            link("/.gatehouse/admin/apps", "Apps", "apps"),
            link("/.gatehouse/admin/requests", "Requests", "requests"),
            link("/.gatehouse/admin/users", "People", "users"),
            link("/.gatehouse/admin/sessions", "Sessions", "sessions"),
            link("/.gatehouse/admin/audit", "Audit log", "audit"),
        ]
        .concat()
    } else {
        [
            link("/.gatehouse/admin/apps", "My apps", "apps"),
            link("/.gatehouse/admin/requests", "Requests", "requests"),
        ]
        .concat()
    };
    let nav = format!(
        r#"<nav class="admin-nav" aria-label="Admin">{links}<a href="/">Portal</a></nav><span class="user who-admin" title="Signed in as {user}">{user}</span>"#,
        user = esc(v.identity.user.as_str()),
    );
    let html = pages::layout_with_nav(
        &site.branding,
        title,
        &format!(r#"<div class="admin">{body}</div>"#),
        false,
        &nav,
    );
    (crate::no_store(), Html(html)).into_response()
}

async fn home(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    match manager(&gate, &info(i), "/.gatehouse/admin/apps", None) {
        Ok(_) => crate::see_other("/.gatehouse/admin/apps"),
        Err(r) => *r,
    }
}

fn access_badge(access: &str) -> String {
    format!(r#"<span class="badge access-{a}">{a}</span>"#, a = esc(access))
}

async fn apps_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let (v, is_admin) = match manager(&gate, &info(i), "/.gatehouse/admin/apps", None) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let rows: String = gate
        .admin_apps()
        .iter()
        .filter(|a| is_admin || gate.manages(&v.identity, &a.slug))
        .map(|a| {
            let ups: String = a
                .upstreams
                .iter()
                .map(|(u, ok)| {
                    format!(
                        r#"<span class="health {cls}" title="{word}">{u}</span>"#,
                        cls = if *ok { "up" } else { "down" },
                        word = if *ok { "healthy" } else { "unhealthy" },
                        u = esc(u)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                r#"<tr><td><a href="/.gatehouse/admin/apps/{slug}">{name}</a><div class="muted small">{slug_text}</div></td><td><code>{route}</code></td><td>{ups}</td><td>{access}</td><td>{audience}</td><td class="muted small">{source}</td></tr>"#,
                slug = attr(&a.slug),
                slug_text = esc(&a.slug),
                name = esc(&a.name),
                route = esc(&a.route),
                access = access_badge(&a.access),
                audience = esc(&a.audience),
                source = esc(&a.source),
            )
        })
        .collect();
    let problems: String = if is_admin { gate.admin_problems() } else { vec![] }
        .iter()
        .map(|p| format!(r#"<div class="alert error" role="alert">{}</div>"#, esc(p)))
        .collect();
    let head = if is_admin {
        r#"<div class="admin-head"><h1>Apps</h1><a class="button" href="/.gatehouse/admin/apps/new">New app</a></div>"#
    } else {
        r#"<div class="admin-head"><h1>My apps</h1></div><p class="muted">The apps you own: manage who can open them, their grants and requests.</p>"#
    };
    let body = format!(
        r#"{head}
{problems}
<div class="table-wrap"><table><thead><tr><th>App</th><th>Route</th><th>Upstreams</th><th>Access</th><th>Who can open it</th><th>Defined in</th></tr></thead><tbody>{rows}</tbody></table></div>"#
    );
    page(&gate, &v, if is_admin { "Apps" } else { "My apps" }, "apps", &body)
}

fn field_error(errors: &[(String, String)], field: &str) -> String {
    errors
        .iter()
        .filter(|(f, _)| f == field)
        .map(|(_, m)| format!(r#"<p class="field-error" id="{field}-error">{}</p>"#, esc(m)))
        .collect()
}

fn described_by(errors: &[(String, String)], field: &str) -> String {
    if errors.iter().any(|(f, _)| f == field) {
        format!(r#" aria-invalid="true" aria-describedby="{field}-error""#)
    } else {
        String::new()
    }
}

/// The app form. `create`: a new app (slug editable).
fn app_form(input: &AppInput, create: bool, token: &str, errors: &[(String, String)], with_owners: bool) -> String {
    let owners = if with_owners {
        format!(
            r#"<label for="owner_users">Owners</label><p class="hint">People (one per line) who may manage this app's access, grants, requests and settings without being administrators.</p>
<textarea id="owner_users" name="owner_users" rows="2" spellcheck="false">{}</textarea>
<label for="owner_groups">Owner groups</label><p class="hint">Members of these groups are owners too.</p>
<textarea id="owner_groups" name="owner_groups" rows="2" spellcheck="false">{}</textarea>"#,
            esc(&input.owner_users),
            esc(&input.owner_groups)
        )
    } else {
        String::new()
    };
    let action = if create {
        "/.gatehouse/admin/apps/new".to_string()
    } else {
        format!("/.gatehouse/admin/apps/{}", input.slug)
    };
    let option = |value: &str, label: &str| {
        let sel = if input.access == value { " selected" } else { "" };
        format!(r#"<option value="{value}"{sel}>{label}</option>"#)
    };
    let slug_field = if create {
        format!(
            r#"<label for="slug">Slug</label><p class="hint" id="slug-hint">Lower-case letters, digits and -. The app is served at /apps/&lt;slug&gt;/.</p>
<input id="slug" name="slug" type="text" required autocapitalize="none" spellcheck="false" value="{}"{}>{}"#,
            attr(&input.slug),
            described_by(errors, "slug"),
            field_error(errors, "slug")
        )
    } else {
        format!(r#"<input type="hidden" name="slug" value="{}">"#, attr(&input.slug))
    };
    format!(
        r#"<form method="post" action="{action}" class="stack admin-form" novalidate>
<input type="hidden" name="csrf" value="{token}">
<input type="hidden" name="version" value="{version}">
{slug_field}
<label for="name">Name</label>
<input id="name" name="name" type="text" value="{name}"{name_inv}>{name_err}
<label for="description">Description</label>
<input id="description" name="description" type="text" value="{desc}">
<label for="upstreams">Upstreams</label><p class="hint">One host:port (or https://host:port) per line.</p>
<textarea id="upstreams" name="upstreams" rows="3" spellcheck="false"{up_inv}>{ups}</textarea>{up_err}
<label for="access">Access</label>
<select id="access" name="access"{acc_inv}>{o1}{o2}{o3}</select>{acc_err}
<label for="allow_groups">Allowed groups</label><p class="hint">Restricted apps: one group per line. Administrators can always open every app.</p>
<textarea id="allow_groups" name="allow_groups" rows="3" spellcheck="false"{g_inv}>{groups}</textarea>{g_err}
<label for="allow_users">Allowed people</label><p class="hint">User names, one per line.</p>
<textarea id="allow_users" name="allow_users" rows="2" spellcheck="false"{u_inv}>{users}</textarea>{u_err}
<fieldset class="options"><legend>What the app is told, and where it shows</legend>
<label class="check"><input type="checkbox" name="remote_headers" value="1"{remote}> Remote-User, Remote-Groups, Remote-Email, Remote-Name headers (Authelia style)</label>
<label class="check"><input type="checkbox" name="plotly_user_data" value="1"{plotly}> Plotly-User-Data header for Dash apps using dash_enterprise_auth</label>
<label for="groups_sent">Groups sent to the app</label>
<select id="groups_sent" name="groups_sent"{gs_inv}><option value="all"{gs_all}>All of the person's groups</option><option value="referenced"{gs_ref}>Only the groups this app's access names (large directories)</option></select>{gs_err}
<label class="check"><input type="checkbox" name="portal_visible" value="1"{visible}> Show on the App Portal (to those who may open it)</label>
</fieldset>
{owners}
<div class="actions"><button class="button" type="submit">{submit}</button><a class="button secondary" href="/.gatehouse/admin/apps">Cancel</a></div>
</form>"#,
        token = attr(token),
        version = input.version,
        name = attr(&input.name),
        name_inv = described_by(errors, "name"),
        name_err = field_error(errors, "name"),
        desc = attr(&input.description),
        ups = esc(&input.upstreams),
        up_inv = described_by(errors, "upstreams"),
        up_err = field_error(errors, "upstreams"),
        acc_inv = described_by(errors, "access"),
        acc_err = field_error(errors, "access"),
        o1 = option(
            "restricted",
            "Restricted — administrators and the groups and people listed"
        ),
        o2 = option("authenticated", "Everyone signed in"),
        o3 = option("public", "Public — anyone, signed in or not"),
        groups = esc(&input.allow_groups),
        g_inv = described_by(errors, "allow_groups"),
        g_err = field_error(errors, "allow_groups"),
        users = esc(&input.allow_users),
        u_inv = described_by(errors, "allow_users"),
        u_err = field_error(errors, "allow_users"),
        submit = if create { "Create app" } else { "Save changes" },
        remote = if input.remote_headers.is_some() { " checked" } else { "" },
        plotly = if input.plotly_user_data.is_some() {
            " checked"
        } else {
            ""
        },
        gs_all = if input.groups_sent != "referenced" {
            " selected"
        } else {
            ""
        },
        gs_ref = if input.groups_sent == "referenced" {
            " selected"
        } else {
            ""
        },
        gs_inv = described_by(errors, "groups_sent"),
        gs_err = field_error(errors, "groups_sent"),
        visible = if input.portal_visible.is_some() { " checked" } else { "" },
    )
}

fn token_of(i: &RequestInfo) -> String {
    i.session_id_hash.as_deref().map(session_token).unwrap_or_default()
}

async fn new_app_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/apps/new") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let input = AppInput {
        access: "restricted".into(),
        portal_visible: Some("1".into()),
        ..AppInput::default()
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/.gatehouse/admin/apps">Apps</a></p><section class="card wide-card"><h1>New app</h1>{}</section>"#,
        app_form(&input, true, &token_of(&i), &[], true)
    );
    page(&gate, &v, "New app", "apps", &body)
}

async fn create_app(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<AppInput>, FormRejection>,
) -> Response {
    save(gate, info(i), headers, form, true, "/.gatehouse/admin/apps/new").await
}

async fn update_app(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppInput>, FormRejection>,
) -> Response {
    let form = form.map(|Form(mut f)| {
        f.slug = slug.clone();
        Form(f)
    });
    save(
        gate,
        info(i),
        headers,
        form,
        false,
        &format!("/.gatehouse/admin/apps/{slug}"),
    )
    .await
}

async fn save(
    gate: Shared,
    i: RequestInfo,
    headers: HeaderMap,
    form: Result<Form<AppInput>, FormRejection>,
    create: bool,
    path: &str,
) -> Response {
    let token = form.as_ref().map(|f| f.csrf.clone()).unwrap_or_default();
    // Creating an app is for administrators; an app's owners may edit it.
    let slug = form.as_ref().ok().map(|f| f.slug.clone()).unwrap_or_default();
    let who = if create {
        admin_post(&gate, &i, &headers, &token, path)
    } else {
        manager_post(&gate, &i, &headers, &token, path, Some(&slug)).map(|(v, _)| v)
    };
    let v = match who {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(Form(input)) = form else {
        return crate::error(
            &gate,
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Reload the page and try again.",
        );
    };
    match gate.save_app(&v, i.client, &input, create).await {
        Ok(()) => crate::see_other(&format!("/.gatehouse/admin/apps/{}?saved=1", input.slug)),
        Err(e) => {
            let (status, errors, alert) = match e {
                AdminError::Invalid(errors) => (StatusCode::BAD_REQUEST, errors, "Nothing was saved: correct the fields marked below.".to_string()),
                AdminError::Conflict(who) => (
                    StatusCode::CONFLICT,
                    vec![],
                    format!("Not saved: this app was changed by {who} meanwhile. Reload to see the current version, then make your change again."),
                ),
                AdminError::ReadOnly => (StatusCode::CONFLICT, vec![], "This app is defined in the config file: change it there and reload.".to_string()),
                AdminError::NotFound => (StatusCode::NOT_FOUND, vec![], "This app no longer exists.".to_string()),
                AdminError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, vec![], format!("Not saved: the store is unavailable ({why}). Try again in a minute.")),
            };
            let title = if create { "New app" } else { "Edit app" };
            let body = format!(
                r#"<p class="crumbs"><a href="/.gatehouse/admin/apps">Apps</a></p><section class="card wide-card"><h1>{title}</h1><div class="alert error" role="alert">{alert}</div>{form}</section>"#,
                alert = esc(&alert),
                form = app_form(&input, create, &token_of(&i), &errors, v.identity.admin)
            );
            let mut r = page(&gate, &v, title, "apps", &body);
            *r.status_mut() = status;
            r
        }
    }
}

#[derive(Debug, Deserialize, Default)]
struct AppQuery {
    check: Option<String>,
    saved: Option<String>,
    grant_error: Option<String>,
}

async fn grants_section(gate: &Shared, app: &AdminApp, token: &str, error: Option<&str>) -> String {
    if app.access != "restricted" {
        return r#"<section class="card wide-card"><h2>Grants</h2><p class="muted">Grants apply to restricted apps; this one is open to more than a list.</p></section>"#.to_string();
    }
    let rows: String = match gate.grants(&app.slug).await {
        Ok(g) => g
            .iter()
            .map(|g| {
                let until = match (g.expires_at, g.active) {
                    (None, _) => "until removed".to_string(),
                    (Some(t), true) => format!("until {} UTC", time(t)),
                    (Some(t), false) => format!("expired {} UTC", time(t)),
                };
                format!(
                    r#"<tr class="{cls}"><td>{kind}</td><td>{name}</td><td>{until}</td><td class="muted small">{by}</td><td><form method="post" action="/.gatehouse/admin/apps/{slug}/grants/remove"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="kind" value="{kind_attr}"><input type="hidden" name="name" value="{name_attr}"><button class="button secondary small-button" type="submit">Remove</button></form></td></tr>"#,
                    cls = if g.active { "" } else { "expired" },
                    kind = esc(&g.kind),
                    kind_attr = attr(&g.kind),
                    name = esc(&g.name),
                    name_attr = attr(&g.name),
                    until = esc(&until),
                    by = esc(&g.created_by),
                    slug = attr(&app.slug),
                    token = attr(token),
                )
            })
            .collect(),
        Err(e) => format!(r#"<tr><td colspan="5">{}</td></tr>"#, esc(&format!("{e:?}"))),
    };
    let error = error
        .map(|e| format!(r#"<p class="field-error" id="grant-error">{}</p>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<section class="card wide-card"><h2>Grants</h2><p class="muted">Besides the allow-lists: one person or group, for a while or until removed. An expired grant stops working at once, on every replica.</p>
<div class="table-wrap"><table><thead><tr><th>Kind</th><th>Name</th><th>Lasts</th><th>Granted by</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>
<form method="post" action="/.gatehouse/admin/apps/{slug}/grants" class="filters grant-form">
<input type="hidden" name="csrf" value="{token}">
<label>Kind <select name="kind" id="grant-kind"><option value="group">Group</option><option value="user">Person</option></select></label>
<label>Name <input name="name" id="grant-name" type="text" autocapitalize="none" spellcheck="false" required></label>
<label>For <select name="duration" id="grant-duration"><option value="">until removed</option><option value="1h">1 hour</option><option value="8h">8 hours</option><option value="1d">1 day</option><option value="7d">7 days</option><option value="30d">30 days</option></select></label>
<label>Or until (UTC date) <input name="until" id="grant-until" type="text" placeholder="YYYY-MM-DD" inputmode="numeric"></label>
<button class="button" type="submit">Grant</button></form>{error}</section>"#,
        slug = attr(&app.slug),
        token = attr(token),
    )
}

#[derive(Debug, Deserialize, Default)]
struct RemoveGrant {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

async fn add_grant(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<GrantInput>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let back = format!("/.gatehouse/admin/apps/{slug}");
    let v = match manager_post(&gate, &i, &headers, &f.csrf, &back, Some(&slug)) {
        Ok((v, _)) => v,
        Err(r) => return *r,
    };
    match gate.add_grant(&v, i.client, &slug, &f).await {
        Ok(()) => crate::see_other(&format!("{back}?saved=1")),
        Err(AdminError::Invalid(errors)) => {
            let msg = errors.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; ");
            let msg = percent_encoding::utf8_percent_encode(&msg, percent_encoding::NON_ALPHANUMERIC);
            crate::see_other(&format!("{back}?grant_error={msg}"))
        }
        Err(AdminError::NotFound | AdminError::ReadOnly) => crate::error(
            &gate,
            StatusCode::NOT_FOUND,
            "No such app",
            "Grants apply to apps defined in the admin UI.",
        ),
        Err(e) => crate::error(&gate, StatusCode::SERVICE_UNAVAILABLE, "Not granted", &format!("{e:?}")),
    }
}

async fn remove_grant(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<RemoveGrant>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let back = format!("/.gatehouse/admin/apps/{slug}");
    let v = match manager_post(&gate, &i, &headers, &f.csrf, &back, Some(&slug)) {
        Ok((v, _)) => v,
        Err(r) => return *r,
    };
    match gate.remove_grant(&v, i.client, &slug, &f.kind, &f.name).await {
        Ok(()) | Err(AdminError::NotFound) => crate::see_other(&format!("{back}?saved=1")),
        Err(e) => crate::error(&gate, StatusCode::SERVICE_UNAVAILABLE, "Not removed", &format!("{e:?}")),
    }
}

async fn app_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(slug): Path<String>,
    Query(q): Query<AppQuery>,
) -> Response {
    let i = info(i);
    let (v, is_admin) = match manager(&gate, &i, &format!("/.gatehouse/admin/apps/{slug}"), Some(&slug)) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(app) = gate.admin_apps().into_iter().find(|a| a.slug == slug) else {
        return crate::error(
            &gate,
            StatusCode::NOT_FOUND,
            "No such app",
            "It may have been deleted. The Apps page lists every app.",
        );
    };
    let token = token_of(&i);
    let check = match q.check.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(user) => match gate.check(&slug, user).await {
            Some(c) => format!(
                r#"<div class="alert {cls}" role="status"><strong>{user}</strong> {verdict}: {reason}. <span class="muted">({basis})</span></div>"#,
                cls = if c.allowed { "ok" } else { "error" },
                user = esc(&c.user),
                verdict = if c.allowed {
                    "can open this app"
                } else {
                    "cannot open this app"
                },
                reason = esc(&c.reason),
                basis = esc(&c.basis),
            ),
            None => String::new(),
        },
        None => String::new(),
    };
    let saved = if q.saved.is_some() {
        r#"<div class="alert ok" role="status">Saved. The change applies from the next request, on every replica.</div>"#
    } else {
        ""
    };
    let grants = if app.editable {
        grants_section(&gate, &app, &token, q.grant_error.as_deref()).await
    } else {
        String::new()
    };
    let edit = if app.editable {
        let input = AppInput {
            slug: app.slug.clone(),
            name: app.name.clone(),
            description: app.description.clone(),
            upstreams: app
                .upstreams
                .iter()
                .map(|(u, _)| u.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            access: app.access.clone(),
            allow_groups: app.allow_groups.join("\n"),
            allow_users: app.allow_users.join("\n"),
            owner_users: app.owner_users.join("\n"),
            owner_groups: app.owner_groups.join("\n"),
            remote_headers: app.remote_headers.then(|| "1".to_string()),
            plotly_user_data: app.plotly_user_data.then(|| "1".to_string()),
            groups_sent: app.groups_sent.clone(),
            portal_visible: app.portal_visible.then(|| "1".to_string()),
            version: app.version,
            csrf: String::new(),
        };
        let delete = if is_admin {
            format!(
                r#"<section class="card wide-card danger-zone"><h2>Delete</h2><p class="muted">Removes the app from every replica at once. People lose access immediately.</p>
<form method="post" action="/.gatehouse/admin/apps/{slug}/delete"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="version" value="{version}"><button class="button danger" type="submit">Delete {name}</button></form></section>"#,
                slug = attr(&app.slug),
                token = attr(&token),
                version = app.version,
                name = esc(&app.name),
            )
        } else {
            String::new()
        };
        format!(
            r#"<section class="card wide-card"><h2>Settings</h2>{form}</section>{delete}"#,
            form = app_form(&input, false, &token, &[], is_admin),
        )
    } else {
        format!(
            r#"<section class="card wide-card"><h2>Settings</h2><p class="muted">Defined in the {}: read-only here. Change the file and reload (<code>kill -HUP</code> or <code>gatehouse reload</code>).</p>
<dl class="facts"><dt>Upstreams</dt><dd>{}</dd><dt>Allowed groups</dt><dd>{}</dd><dt>Allowed people</dt><dd>{}</dd></dl></section>"#,
            esc(&app.source),
            esc(&app
                .upstreams
                .iter()
                .map(|(u, _)| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")),
            esc(&or_none(&app.allow_groups)),
            esc(&or_none(&app.allow_users)),
        )
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/.gatehouse/admin/apps">Apps</a></p>
<div class="admin-head"><h1>{name}</h1>{access}</div>
{saved}
<section class="card wide-card"><h2>Who can open it</h2><p>{audience}.</p>
<form method="get" action="/.gatehouse/admin/apps/{slug}" class="inline-form"><label for="check">Check a person</label><input id="check" name="check" type="text" placeholder="user name" autocapitalize="none" spellcheck="false" value="{checked}"><button class="button secondary" type="submit">Check</button></form>
{check}</section>
{grants}
{edit}"#,
        name = esc(&app.name),
        access = access_badge(&app.access),
        audience = esc(&app.audience),
        slug = attr(&app.slug),
        checked = attr(q.check.as_deref().unwrap_or("")),
    );
    page(&gate, &v, &app.name, "apps", &body)
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[derive(Debug, Deserialize, Default)]
struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: i64,
}

async fn delete_app(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    form: Result<Form<DeleteForm>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &f.csrf, &format!("/.gatehouse/admin/apps/{slug}")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match gate.delete_app(&v, i.client, &slug, f.version).await {
        Ok(()) => crate::see_other("/.gatehouse/admin/apps"),
        Err(AdminError::Conflict(who)) => crate::error(
            &gate,
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("This app was changed by {who} meanwhile. Reload it and decide again."),
        ),
        Err(AdminError::ReadOnly) => crate::error(
            &gate,
            StatusCode::CONFLICT,
            "Not deleted",
            "This app is defined in the config file: remove it there.",
        ),
        Err(AdminError::NotFound) => {
            crate::error(&gate, StatusCode::NOT_FOUND, "No such app", "It was already deleted.")
        }
        Err(e) => crate::error(&gate, StatusCode::SERVICE_UNAVAILABLE, "Not deleted", &format!("{e:?}")),
    }
}

fn time(t: i64) -> String {
    chrono_like(t)
}

/// `YYYY-MM-DD HH:MM:SS` UTC without a date library (civil-from-days).
fn chrono_like(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[derive(Debug, Deserialize, Default)]
struct Notice {
    revoked: Option<String>,
    user: Option<String>,
}

async fn sessions_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(n): Query<Notice>,
) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/sessions") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let token = token_of(&i);
    let rows = match gate.sessions().await {
        Ok(rows) => rows,
        Err(e) => {
            return crate::error(
                &gate,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sessions unavailable",
                &format!("{e:?}"),
            )
        }
    };
    let rows: String = rows
        .iter()
        .map(|s| {
            format!(
                r#"<tr><td>{user}{admin}</td><td>{provider}</td><td>{groups}</td><td>{created}</td><td>{seen}</td><td><form method="post" action="/.gatehouse/admin/sessions/revoke"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="user" value="{user_attr}"><button class="button secondary small-button" type="submit">End all of {user}'s sessions</button></form></td></tr>"#,
                user = esc(&s.user),
                user_attr = attr(&s.user),
                admin = if s.admin { r#" <span class="badge">admin</span>"# } else { "" },
                provider = esc(&s.provider),
                groups = s.groups,
                created = time(s.created_at),
                seen = time(s.last_seen),
                token = attr(&token),
            )
        })
        .collect();
    let notice = match (n.revoked, n.user) {
        (Some(count), Some(user)) => format!(
            r#"<div class="alert ok" role="status">Ended {} session(s) of {} on every replica.</div>"#,
            esc(&count),
            esc(&user)
        ),
        _ => String::new(),
    };
    let body = format!(
        r#"<div class="admin-head"><h1>Sessions</h1></div>{notice}
<div class="table-wrap"><table><thead><tr><th>Person</th><th>Signed in with</th><th>Groups</th><th>Since (UTC)</th><th>Last seen (UTC)</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>"#
    );
    page(&gate, &v, "Sessions", "sessions", &body)
}

#[derive(Debug, Deserialize, Default)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
}

async fn revoke_sessions(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &f.csrf, "/.gatehouse/admin/sessions") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match gate.revoke_user(&v, i.client, &f.user).await {
        Ok(n) => {
            let user = percent_encoding::utf8_percent_encode(&f.user, percent_encoding::NON_ALPHANUMERIC);
            crate::see_other(&format!("/.gatehouse/admin/sessions?revoked={n}&user={user}"))
        }
        Err(e) => crate::error(
            &gate,
            StatusCode::SERVICE_UNAVAILABLE,
            "Sessions not ended",
            &format!("{e:?}"),
        ),
    }
}

#[derive(Debug, Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    /// UTC dates `YYYY-MM-DD`, both inclusive.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: i64,
}

/// Rows per audit page.
const AUDIT_PAGE: i64 = 100;
/// Most rows an export holds.
const AUDIT_EXPORT: i64 = 100_000;

/// The midnight (UTC) starting `date` (`YYYY-MM-DD`); empty: none; `Err`: not a date.
fn day_start(date: &str) -> Result<Option<i64>, String> {
    let date = date.trim();
    if date.is_empty() {
        return Ok(None);
    }
    // The day after, minus one day: `expiry` already parses dates and rejects nonsense.
    let end = expiry("", date, i64::MIN + 1)?.ok_or_else(|| format!("{date:?} is not a date"))?;
    Ok(Some(end - 86_400))
}

impl AuditQuery {
    fn search(&self, limit: i64) -> Result<AuditSearch, String> {
        Ok(AuditSearch {
            actor: self.actor.trim().to_string(),
            action: self.action.trim().to_string(),
            target: self.target.trim().to_string(),
            since: day_start(&self.from)?,
            until: day_start(&self.to)?.map(|t| t + 86_400),
            offset: self.page.clamp(0, 100_000) * AUDIT_PAGE,
            limit,
        })
    }

    /// The query string for the same filters on another page or export.
    fn link(&self, page: i64) -> String {
        let enc =
            |v: &str| percent_encoding::utf8_percent_encode(v.trim(), percent_encoding::NON_ALPHANUMERIC).to_string();
        format!(
            "actor={}&action={}&target={}&from={}&to={}&page={page}",
            enc(&self.actor),
            enc(&self.action),
            enc(&self.target),
            enc(&self.from),
            enc(&self.to)
        )
    }
}

async fn audit_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let v = match admin(&gate, &info(i), "/.gatehouse/admin/audit") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let (rows, problem) = match q.search(AUDIT_PAGE + 1) {
        Ok(search) => match gate.audit(&search).await {
            Ok(rows) => (rows, String::new()),
            Err(e) => {
                return crate::error(
                    &gate,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Audit log unavailable",
                    &format!("{e:?}"),
                )
            }
        },
        Err(e) => (
            vec![],
            format!(r#"<div class="alert error" role="alert">{}</div>"#, esc(&e)),
        ),
    };
    let more = rows.len() as i64 > AUDIT_PAGE;
    let rows: String = rows
        .iter()
        .take(AUDIT_PAGE as usize)
        .map(|r| {
            let change = match (r.before.as_str(), r.after.as_str()) {
                ("", "") => esc(&r.detail).into_owned(),
                (b, a) => format!(
                    r#"<details><summary>before → after</summary><pre>{}</pre><pre>{}</pre></details>"#,
                    esc(if b.is_empty() { "(none)" } else { b }),
                    esc(if a.is_empty() { "(none)" } else { a })
                ),
            };
            format!(
                r#"<tr><td class="nowrap">{at}</td><td>{actor}<div class="muted small">{client}</div></td><td><code>{action}</code></td><td>{target}</td><td class="detail">{change}</td></tr>"#,
                at = time(r.at),
                actor = esc(&r.actor),
                client = esc(&r.client),
                action = esc(&r.action),
                target = esc(&r.target),
            )
        })
        .collect();
    let page = q.page.clamp(0, 100_000);
    let mut pager = String::new();
    if page > 0 {
        pager.push_str(&format!(
            r#"<a class="button secondary" href="/.gatehouse/admin/audit?{}">Newer</a>"#,
            attr(&q.link(page - 1))
        ));
    }
    if more {
        pager.push_str(&format!(
            r#"<a class="button secondary" href="/.gatehouse/admin/audit?{}">Older</a>"#,
            attr(&q.link(page + 1))
        ));
    }
    let body = format!(
        r#"<div class="admin-head"><h1>Audit log</h1><div class="actions export"><a class="button secondary" href="/.gatehouse/admin/audit.csv?{export}">Export CSV</a><a class="button secondary" href="/.gatehouse/admin/audit.json?{export}">Export JSON</a></div></div>
<form method="get" action="/.gatehouse/admin/audit" class="filters">
<label>Person <input name="actor" type="text" value="{actor}" autocapitalize="none"></label>
<label>Action <input name="action" type="text" value="{action}" placeholder="e.g. signin.failure" autocapitalize="none"></label>
<label>Target <input name="target" type="text" value="{target}" autocapitalize="none"></label>
<label>From (UTC) <input name="from" type="text" value="{from}" placeholder="YYYY-MM-DD" inputmode="numeric"></label>
<label>To (UTC) <input name="to" type="text" value="{to}" placeholder="YYYY-MM-DD" inputmode="numeric"></label>
<button class="button secondary" type="submit">Filter</button></form>{problem}
<div class="table-wrap"><table><thead><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>Target</th><th>Change</th></tr></thead><tbody>{rows}</tbody></table></div>
<div class="actions pager">{pager}</div>"#,
        export = attr(&q.link(0)),
        actor = attr(&q.actor),
        action = attr(&q.action),
        target = attr(&q.target),
        from = attr(&q.from),
        to = attr(&q.to),
    );
    page_response(&gate, &v, &body)
}

fn page_response(gate: &Shared, v: &Viewer, body: &str) -> Response {
    page(gate, v, "Audit log", "audit", body)
}

/// One CSV field, quoted when it must be (RFC 4180); a leading `=`, `+`, `-` or `@` is
/// prefixed with `'` so spreadsheets do not run it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn export_rows(
    gate: &Shared,
    i: Option<Extension<RequestInfo>>,
    q: &AuditQuery,
) -> Result<Vec<AuditRow>, Response> {
    admin(gate, &info(i), "/.gatehouse/admin/audit").map_err(|r| *r)?;
    let mut search = q
        .search(AUDIT_EXPORT)
        .map_err(|e| crate::error(gate, StatusCode::BAD_REQUEST, "Bad filter", &e))?;
    search.offset = 0;
    gate.audit(&search).await.map_err(|e| {
        crate::error(
            gate,
            StatusCode::SERVICE_UNAVAILABLE,
            "Audit log unavailable",
            &format!("{e:?}"),
        )
    })
}

async fn audit_csv(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let rows = match export_rows(&gate, i, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut out = String::from("at,at_utc,actor,client,action,target,detail,before,after\r\n");
    for r in &rows {
        let fields = [
            r.at.to_string(),
            time(r.at),
            r.actor.clone(),
            r.client.clone(),
            r.action.clone(),
            r.target.clone(),
            r.detail.clone(),
            r.before.clone(),
            r.after.clone(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"gatehouse-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response()
}

async fn audit_json(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let rows = match export_rows(&gate, i, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "at": r.at, "actor": r.actor, "client": r.client, "action": r.action, "target": r.target,
                "detail": parse(&r.detail), "before": parse(&r.before), "after": parse(&r.after),
            })
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"gatehouse-audit.json\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::Value::Array(items).to_string(),
    )
        .into_response()
}

#[derive(Debug, Deserialize, Default)]
struct RequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    reason: String,
}

/// `POST /.gatehouse/request-access` from an app's 403 page: any signed-in person, with the
/// token bound to their session and this gateway's Origin.
async fn request_access(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<RequestForm>, FormRejection>,
) -> Response {
    let i = info(i);
    let Some(v) = i.viewer.clone() else {
        return crate::see_other("/.gatehouse/login");
    };
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let expected = i
        .session_id_hash
        .as_deref()
        .map(|h| crate::csrf::bound_token(h, "request"));
    if !expected.is_some_and(|e| crate::csrf::same(&e, &f.csrf)) || !same_origin(&headers, &gate.site().origin) {
        return crate::error(
            &gate,
            StatusCode::FORBIDDEN,
            "This form expired",
            "Reload the app's page and ask again.",
        );
    }
    if f.reason.chars().count() > 1000 {
        return crate::error(
            &gate,
            StatusCode::BAD_REQUEST,
            "Reason too long",
            "Keep the reason under 1,000 characters.",
        );
    }
    match gate.request_access(&v, i.client, &f.app, f.reason.trim()).await {
        Ok(href) => crate::see_other(&href),
        Err(AdminError::Invalid(e)) => crate::error(
            &gate,
            StatusCode::BAD_REQUEST,
            "Nothing to ask for",
            &e.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "),
        ),
        Err(_) => crate::error(
            &gate,
            StatusCode::NOT_FOUND,
            "No such app",
            "The App Portal lists the apps you can open.",
        ),
    }
}

fn status_badge(status: &str) -> String {
    let cls = match status {
        "approved" => "access-public",
        "declined" => "access-restricted",
        _ => "access-authenticated",
    };
    format!(r#"<span class="badge {cls}">{}</span>"#, esc(status))
}

async fn requests_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let i = info(i);
    let (v, is_admin) = match manager(&gate, &i, "/.gatehouse/admin/requests", None) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let token = token_of(&i);
    let rows = match gate.requests().await {
        // Owners see the requests for their apps only.
        Ok(r) => r
            .into_iter()
            .filter(|r| is_admin || gate.manages(&v.identity, &r.app))
            .collect::<Vec<_>>(),
        Err(e) => {
            return crate::error(
                &gate,
                StatusCode::SERVICE_UNAVAILABLE,
                "Requests unavailable",
                &format!("{e:?}"),
            )
        }
    };
    let pending: String = rows
        .iter()
        .filter(|r| r.status == "pending")
        .map(|r| {
            let options: String = std::iter::once(format!(r#"<option value="user">{} only</option>"#, esc(&r.user)))
                .chain(r.groups.iter().map(|g| {
                    format!(r#"<option value="group:{}">everyone in {}</option>"#, attr(g), esc(g))
                }))
                .collect();
            format!(
                r#"<li class="card wide-card request"><div class="admin-head"><h2>{user} → {app_name}</h2><span class="muted small">asked {at} UTC</span></div>
<p>{reason}</p><p class="muted small">Groups: {groups}</p>
<form method="post" action="/.gatehouse/admin/requests" class="filters">
<input type="hidden" name="csrf" value="{token}"><input type="hidden" name="app" value="{app}"><input type="hidden" name="user" value="{user_attr}">
<label>Grant to <select name="grant_to">{options}</select></label>
<label>For <select name="duration"><option value="">until removed</option><option value="1h">1 hour</option><option value="8h">8 hours</option><option value="1d">1 day</option><option value="7d">7 days</option><option value="30d">30 days</option></select></label>
<label>Or until (UTC date) <input name="until" type="text" placeholder="YYYY-MM-DD" inputmode="numeric"></label>
<button class="button" type="submit" name="decision" value="approve">Approve</button>
<button class="button secondary" type="submit" name="decision" value="decline">Decline</button>
</form></li>"#,
                user = esc(&r.user),
                user_attr = attr(&r.user),
                app_name = esc(&r.app_name),
                app = attr(&r.app),
                at = time(r.created_at),
                reason = if r.reason.is_empty() { "<span class=\"muted\">No reason given.</span>".to_string() } else { esc(&r.reason).into_owned() },
                groups = esc(&shorten(&r.groups)),
                token = attr(&token),
            )
        })
        .collect();
    let decided: String = rows
        .iter()
        .filter(|r| r.status != "pending")
        .map(|r| {
            format!(
                r#"<tr><td>{user}</td><td>{app}</td><td>{status}</td><td>{by}</td><td class="nowrap">{at}</td></tr>"#,
                user = esc(&r.user),
                app = esc(&r.app_name),
                status = status_badge(&r.status),
                by = esc(r.decided_by.as_deref().unwrap_or("")),
                at = r.decided_at.map(time).unwrap_or_default(),
            )
        })
        .collect();
    let pending = if pending.is_empty() {
        r#"<p class="muted">No pending requests.</p>"#.to_string()
    } else {
        format!(r#"<ul class="requests">{pending}</ul>"#)
    };
    let body = format!(
        r#"<div class="admin-head"><h1>Access requests</h1></div>{pending}
<h2>Decided</h2><div class="table-wrap"><table><thead><tr><th>Person</th><th>App</th><th>Outcome</th><th>By</th><th>When (UTC)</th></tr></thead><tbody>{decided}</tbody></table></div>"#
    );
    page(&gate, &v, "Access requests", "requests", &body)
}

async fn decide(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<DecisionInput>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match manager_post(&gate, &i, &headers, &f.csrf, "/.gatehouse/admin/requests", Some(&f.app)) {
        Ok((v, _)) => v,
        Err(r) => return *r,
    };
    match gate.decide(&v, i.client, &f).await {
        Ok(()) => crate::see_other("/.gatehouse/admin/requests"),
        Err(AdminError::Invalid(e)) => crate::error(
            &gate,
            StatusCode::BAD_REQUEST,
            "Not decided",
            &e.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "),
        ),
        Err(AdminError::NotFound) => crate::error(
            &gate,
            StatusCode::CONFLICT,
            "Already decided",
            "Another administrator decided this request meanwhile.",
        ),
        Err(e) => crate::error(&gate, StatusCode::SERVICE_UNAVAILABLE, "Not decided", &format!("{e:?}")),
    }
}

async fn users_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let v = match admin(&gate, &info(i), "/.gatehouse/admin/users") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let rows = match gate.users().await {
        Ok(rows) => rows,
        Err(e) => {
            return crate::error(
                &gate,
                StatusCode::SERVICE_UNAVAILABLE,
                "People unavailable",
                &format!("{e:?}"),
            )
        }
    };
    let rows: String = rows
        .iter()
        .map(|u| {
            let name = if u.local {
                format!(r#"<a href="/.gatehouse/admin/users/{}">{}</a>"#, attr(&u.user), esc(&u.user))
            } else {
                esc(&u.user).into_owned()
            };
            let mut flags = String::new();
            if u.admin {
                flags.push_str(r#" <span class="badge">admin</span>"#);
            }
            if u.disabled {
                flags.push_str(r#" <span class="badge access-restricted">disabled</span>"#);
            }
            format!(
                r#"<tr><td>{name}{flags}<div class="muted small">{display}</div></td><td>{provider}</td><td>{groups}</td><td class="nowrap">{seen}</td></tr>"#,
                display = esc(&u.display_name),
                provider = esc(&u.provider),
                groups = esc(&shorten(&u.groups)),
                seen = u.last_seen.map(time).unwrap_or_else(|| "—".into()),
            )
        })
        .collect();
    let body = format!(
        r#"<div class="admin-head"><h1>People</h1><a class="button" href="/.gatehouse/admin/users/new">New local account</a></div>
<p class="muted">Local accounts and everyone seen at sign-in (directory and single sign-on accounts are managed by their provider).</p>
<div class="table-wrap"><table><thead><tr><th>Person</th><th>Signs in with</th><th>Groups</th><th>Last seen (UTC)</th></tr></thead><tbody>{rows}</tbody></table></div>"#
    );
    page(&gate, &v, "People", "users", &body)
}

/// The first groups of a long list, and how many more.
fn shorten(groups: &[String]) -> String {
    match groups.len() {
        0 => "none".into(),
        n if n <= 6 => groups.join(", "),
        n => format!("{}, … and {} more", groups[..5].join(", "), n - 5),
    }
}

fn user_form(input: &UserInput, create: bool, token: &str, errors: &[(String, String)]) -> String {
    let action = if create {
        "/.gatehouse/admin/users/new".to_string()
    } else {
        format!("/.gatehouse/admin/users/{}", input.username)
    };
    let head = if create {
        format!(
            r#"<label for="username">User name</label>
<input id="username" name="username" type="text" required autocapitalize="none" spellcheck="false" value="{}"{}>{}
<label for="display_name">Display name</label>
<input id="display_name" name="display_name" type="text" value="{}">
<label for="email">Email</label>
<input id="email" name="email" type="email" value="{}"{}>{}"#,
            attr(&input.username),
            described_by(errors, "username"),
            field_error(errors, "username"),
            attr(&input.display_name),
            attr(&input.email),
            described_by(errors, "email"),
            field_error(errors, "email"),
        )
    } else {
        format!(
            r#"<input type="hidden" name="username" value="{}">"#,
            attr(&input.username)
        )
    };
    let checked = |v: &Option<String>| if v.is_some() { " checked" } else { "" };
    let disabled = if create {
        String::new()
    } else {
        format!(
            r#"<label class="check"><input type="checkbox" name="disabled" value="1"{}> Disabled: cannot sign in; current sessions end</label>"#,
            checked(&input.disabled)
        )
    };
    format!(
        r#"<form method="post" action="{action}" class="stack admin-form" novalidate>
<input type="hidden" name="csrf" value="{token}">
{head}
<label for="groups">Groups</label><p class="hint">One group per line.</p>
<textarea id="groups" name="groups" rows="3" spellcheck="false"{g_inv}>{groups}</textarea>{g_err}
<label class="check"><input type="checkbox" name="admin" value="1"{admin}> Administrator of this gateway</label>
{disabled}
<label for="password">{pw_label}</label><p class="hint">{pw_hint}</p>
<input id="password" name="password" type="password" autocomplete="new-password"{p_inv}>{p_err}
<div class="actions"><button class="button" type="submit">{submit}</button><a class="button secondary" href="/.gatehouse/admin/users">Cancel</a></div>
</form>"#,
        token = attr(token),
        groups = esc(&input.groups),
        g_inv = described_by(errors, "groups"),
        g_err = field_error(errors, "groups"),
        admin = checked(&input.admin),
        pw_label = if create { "Password" } else { "New password" },
        pw_hint = if create {
            "At least 12 characters. Tell it to the person over a separate channel."
        } else {
            "Leave empty to keep the current one. A new password ends the person's sessions."
        },
        p_inv = described_by(errors, "password"),
        p_err = field_error(errors, "password"),
        submit = if create { "Create account" } else { "Save changes" },
    )
}

async fn new_user_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/users/new") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/.gatehouse/admin/users">People</a></p><section class="card wide-card"><h1>New local account</h1>{}</section>"#,
        user_form(&UserInput::default(), true, &token_of(&i), &[])
    );
    page(&gate, &v, "New local account", "users", &body)
}

async fn user_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(name): Path<String>,
    Query(q): Query<AppQuery>,
) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, &format!("/.gatehouse/admin/users/{name}")) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let users = match gate.users().await {
        Ok(u) => u,
        Err(e) => {
            return crate::error(
                &gate,
                StatusCode::SERVICE_UNAVAILABLE,
                "People unavailable",
                &format!("{e:?}"),
            )
        }
    };
    let Some(u) = users.into_iter().find(|u| u.local && u.user == name) else {
        return crate::error(
            &gate,
            StatusCode::NOT_FOUND,
            "No such local account",
            "The People page lists every account.",
        );
    };
    let input = UserInput {
        username: u.user.clone(),
        groups: u.groups.join("\n"),
        admin: u.admin.then(|| "1".to_string()),
        disabled: u.disabled.then(|| "1".to_string()),
        ..UserInput::default()
    };
    let saved = if q.saved.is_some() {
        r#"<div class="alert ok" role="status">Saved. The change applies from the next request, on every replica.</div>"#
    } else {
        ""
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/.gatehouse/admin/users">People</a></p>
<div class="admin-head"><h1>{name}</h1></div>{saved}
<section class="card wide-card"><p class="muted">{display} {email}</p>{form}</section>"#,
        name = esc(&u.user),
        display = esc(&u.display_name),
        email = esc(&u.email),
        form = user_form(&input, false, &token_of(&i), &[]),
    );
    page(&gate, &v, &u.user, "users", &body)
}

async fn create_user(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<UserInput>, FormRejection>,
) -> Response {
    save_user(gate, info(i), headers, form, true, "/.gatehouse/admin/users/new").await
}

async fn update_user(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    form: Result<Form<UserInput>, FormRejection>,
) -> Response {
    let form = form.map(|Form(mut f)| {
        f.username = name.clone();
        Form(f)
    });
    save_user(
        gate,
        info(i),
        headers,
        form,
        false,
        &format!("/.gatehouse/admin/users/{name}"),
    )
    .await
}

async fn save_user(
    gate: Shared,
    i: RequestInfo,
    headers: HeaderMap,
    form: Result<Form<UserInput>, FormRejection>,
    create: bool,
    path: &str,
) -> Response {
    let token = form.as_ref().map(|f| f.csrf.clone()).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &token, path) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Ok(Form(mut input)) = form else {
        return crate::error(
            &gate,
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "Reload the page and try again.",
        );
    };
    match gate.save_user(&v, i.client, &input, create).await {
        Ok(()) => {
            let name = percent_encoding::utf8_percent_encode(input.username.trim(), percent_encoding::NON_ALPHANUMERIC);
            crate::see_other(&format!(
                "/.gatehouse/admin/users/{}?saved=1",
                name.to_string().to_lowercase()
            ))
        }
        Err(e) => {
            input.password.clear();
            let (status, errors, alert) = match e {
                AdminError::Invalid(errors) => (
                    StatusCode::BAD_REQUEST,
                    errors,
                    "Nothing was saved: correct the fields marked below.".to_string(),
                ),
                AdminError::NotFound => (
                    StatusCode::NOT_FOUND,
                    vec![],
                    "This account no longer exists.".to_string(),
                ),
                AdminError::Conflict(why) => (StatusCode::CONFLICT, vec![], why),
                AdminError::ReadOnly => (
                    StatusCode::CONFLICT,
                    vec![],
                    "This account is managed by its provider.".to_string(),
                ),
                AdminError::Unavailable(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![],
                    format!("Not saved: the store is unavailable ({why})."),
                ),
            };
            let title = if create { "New local account" } else { "Edit account" };
            let body = format!(
                r#"<p class="crumbs"><a href="/.gatehouse/admin/users">People</a></p><section class="card wide-card"><h1>{title}</h1><div class="alert error" role="alert">{alert}</div>{form}</section>"#,
                alert = esc(&alert),
                form = user_form(&input, create, &token_of(&i), &errors)
            );
            let mut r = page(&gate, &v, title, "users", &body);
            *r.status_mut() = status;
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        assert!(!same_origin(&h, "https://gw"), "neither header: refused");
        h.insert(header::REFERER, "https://gw/.gatehouse/admin/apps".parse().unwrap());
        assert!(same_origin(&h, "https://gw"));
        h.insert(header::REFERER, "https://gw.evil/x".parse().unwrap());
        assert!(!same_origin(&h, "https://gw"));
        h.insert(header::ORIGIN, "https://gw".parse().unwrap());
        assert!(same_origin(&h, "https://gw"), "Origin wins");
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&h, "https://gw"));
    }

    #[test]
    fn times() {
        assert_eq!(chrono_like(0), "1970-01-01 00:00:00");
        assert_eq!(chrono_like(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(chrono_like(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn csv_fields() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
        assert_eq!(
            day_start("2026-11-18"),
            Ok(Some(1_795_000_000 - 11 * 3600 - 6 * 60 - 40))
        );
        assert_eq!(day_start(""), Ok(None));
        assert!(day_start("yesterday").is_err());
    }

    #[test]
    fn grant_expiry() {
        let now = 1_795_000_000; // 2026-11-18 11:06:40 UTC
        assert_eq!(expiry("", "", now), Ok(None));
        assert_eq!(expiry("8h", "", now), Ok(Some(now + 8 * 3600)));
        // Through the whole named day (UTC).
        let end = expiry("1h", "2026-11-20", now).unwrap().unwrap();
        assert_eq!(chrono_like(end), "2026-11-21 00:00:00");
        assert!(expiry("", "2026-11-17", now).is_err(), "in the past");
        for bad in ["2026-13-01", "tomorrow", "2026-11", "2026-11-20-1"] {
            assert!(expiry("", bad, now).is_err(), "{bad}");
        }
        assert!(expiry("forever", "", now).is_err());
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2026, 11, 18), (2400, 12, 31)] {
            let t = days_from_civil(y, m, d) * 86_400;
            assert_eq!(chrono_like(t), format!("{y:04}-{m:02}-{d:02} 00:00:00"));
        }
    }

    #[test]
    fn tokens_are_bound_to_the_session() {
        assert_eq!(session_token("abc"), session_token("abc"));
        assert_ne!(session_token("abc"), session_token("abd"));
        assert_eq!(session_token("abc").len(), 43);
    }
}
