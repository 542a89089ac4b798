//! The admin UI at `/.gatehouse/admin/`, one module per page: [`apps`] (list, create, edit,
//! delete store apps — file apps read-only —, grants, who can open an app and why),
//! [`requests`] (access requests), [`users`] (people and local accounts), [`sessions`]
//! (ending a person's), [`audit`] (the log and its export), [`usage`] (visits per app: the
//! section of an app's page and the overview), [`providers`] (sign-in provider status, the
//! LDAP test form, name suggestions), `branding` (name, logo, accent), `tokens` (API
//! tokens: create, shown once, revoke) and [`api`] (the JSON admin API: the same operations
//! for scripts). This module holds what they
//! share: the records the gateway hands over, the [`AdminGate`] trait, the routes, the
//! admin/owner guards and the page frame. Server-rendered; every change is a POST carrying
//! a token bound to the admin's session and coming from this gateway's own origin (the
//! JSON API: an API token, or the session with that token in a header and the origin). Nothing
//! here decides access: the gateway's [`AdminGate`] does, with `gatehouse_policy`.

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

pub mod api;
mod apps;
mod audit;
mod branding;
mod providers;
mod requests;
mod sessions;
mod tokens;
mod usage;
mod users;

use apps::*;
use audit::*;
pub use branding::BrandingInput;
use branding::*;
use providers::*;
pub use providers::{utc, LdapLookup, ProviderStatus, SuggestKind, Suggestion, MAX_QUERY_BYTES};
use requests::*;
use sessions::*;
use tokens::*;
use usage::*;
pub use usage::{UsageDayRow, UsageReport, UsageRow};
use users::*;

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
    /// Position on the App Portal: lower first.
    pub portal_order: i64,
    /// `headers.dash_token`: a `kcIdToken` cookie for `dash_enterprise_auth`.
    pub dash_token: bool,
    /// Labels on the portal card.
    pub tags: Vec<String>,
    /// The portal card's picture (`https://…` or a path on the gateway); empty: none.
    pub thumbnail: String,
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
    pub dash_token: Option<String>,
    /// `all` (default) or `referenced`.
    #[serde(default)]
    pub groups_sent: String,
    /// Checkbox; the form renders it ticked for a new app.
    pub portal_visible: Option<String>,
    /// Position on the App Portal, a whole number (lower first; empty: 0).
    #[serde(default)]
    pub portal_order: String,
    /// Portal card labels, one per line or comma-separated.
    #[serde(default)]
    pub tags: String,
    /// The portal card's picture: `https://…` or a path on the gateway; empty: none.
    #[serde(default)]
    pub thumbnail: String,
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

impl AppInput {
    /// The form (or API body) as `app` stands now: what an edit starts from.
    pub fn of(app: &AdminApp) -> AppInput {
        let flag = |b: bool| b.then(|| "1".to_string());
        AppInput {
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
            remote_headers: flag(app.remote_headers),
            plotly_user_data: flag(app.plotly_user_data),
            dash_token: flag(app.dash_token),
            groups_sent: app.groups_sent.clone(),
            portal_visible: flag(app.portal_visible),
            portal_order: app.portal_order.to_string(),
            tags: app.tags.join("\n"),
            thumbnail: app.thumbnail.clone(),
            version: app.version,
            csrf: String::new(),
        }
    }
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
    /// Names this session in the "end this session" form without revealing its store key
    /// (a one-way digest of it).
    pub reference: String,
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
    /// A UTC date `YYYY-MM-DD` (the grant lasts through that day) or date and time
    /// `YYYY-MM-DD HH:MM[:SS]` (until that moment), overriding `duration`.
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
        let bad = || format!("{until:?} is not a UTC date (YYYY-MM-DD) or date and time (YYYY-MM-DD HH:MM)");
        let (date, time) = match until.split_once(['T', ' ']) {
            Some((d, t)) => (d, Some(t.trim())),
            None => (until, None),
        };
        let parts: Vec<&str> = date.split('-').collect();
        let nums: Option<Vec<i64>> = parts.iter().map(|p| p.parse().ok()).collect();
        let Some([y, m, d]) = nums.as_deref().and_then(|n| <[i64; 3]>::try_from(n).ok()) else {
            return Err(bad());
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
            return Err(bad());
        }
        let day = days_from_civil(y, m, d) * 86_400;
        let end = match time {
            // A date alone: through the whole of that day.
            None => day + 86_400,
            Some(t) => {
                let hms: Option<Vec<i64>> = t.split(':').map(|p| p.parse().ok()).collect();
                match hms.as_deref() {
                    Some([h, mi]) if (0..24).contains(h) && (0..60).contains(mi) => day + h * 3_600 + mi * 60,
                    Some([h, mi, sec]) if (0..24).contains(h) && (0..60).contains(mi) && (0..60).contains(sec) => {
                        day + h * 3_600 + mi * 60 + sec
                    }
                    _ => return Err(bad()),
                }
            }
        };
        if end <= now {
            return Err(format!("{until} (UTC) is in the past"));
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
    /// An app's slug: its own events and those of its grants and requests.
    pub app: String,
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
    /// With `grant_to = "group"`: the group, typed (requesters in many groups get a field
    /// suggesting their groups instead of a long list).
    #[serde(default)]
    pub grant_group: String,
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

/// An API token, as listed (never its secret).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Short public id (not a secret).
    pub id: String,
    pub name: String,
    /// `admin` or `app:<slug>`.
    pub scope: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// Usable now: neither revoked nor expired.
    pub active: bool,
}

/// What the new-token form sends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenInput {
    #[serde(default)]
    pub name: String,
    /// `admin` or `app:<slug>`.
    #[serde(default)]
    pub scope: String,
    /// As for grants: ``, `1h`, `8h`, `1d`, `7d` or `30d`; or `until` a UTC date.
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub csrf: String,
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
    /// How many known people (local accounts and people seen at sign-in, judged with the
    /// groups they last had) each app admits now, by slug.
    async fn people_counts(&self) -> Result<std::collections::HashMap<String, usize>, AdminError>;
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
    /// Ends the one session whose [`SessionRow::reference`] is `reference`, on every
    /// replica. `Err(NotFound)`: no such live session.
    async fn revoke_session(&self, by: &Viewer, client: Option<IpAddr>, reference: &str) -> Result<(), AdminError>;
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
    /// App `slug`'s usage: the last 30 UTC days, totals over 7 and 30 days, the last 10
    /// people who opened it.
    async fn app_usage(&self, slug: &str) -> Result<UsageReport, AdminError>;
    /// Each app's visits and distinct people over the last `days` UTC days (today
    /// included); apps without visits may be left out.
    async fn usage_by_app(&self, days: i64) -> Result<Vec<UsageRow>, AdminError>;
    /// Every configured sign-in provider, probed now (all at once, each briefly).
    async fn provider_statuses(&self) -> Vec<ProviderStatus>;
    /// The LDAP providers: id and label, in configuration order.
    fn ldap_providers(&self) -> Vec<(String, String)>;
    /// What LDAP provider `provider` (the first when `None`) says about `user`.
    async fn ldap_lookup(&self, provider: Option<&str>, user: &str) -> LdapLookup;
    /// Names of `kind` matching `q`, seen at sign-in or found in a directory, as grants
    /// spell them.
    async fn suggest(&self, kind: SuggestKind, q: &str) -> Vec<Suggestion>;
    /// Up to `limit` names of `kind` seen at sign-in.
    async fn seen_names(&self, kind: SuggestKind, limit: usize) -> Vec<String>;
    /// API tokens, live ones first, revoked and expired ones too.
    async fn tokens(&self) -> Result<Vec<TokenRow>, AdminError>;
    /// Creates an API token; returns its secret (shown once: only its hash is stored).
    async fn create_token(&self, by: &Viewer, client: Option<IpAddr>, input: &TokenInput)
        -> Result<String, AdminError>;
    /// Revokes token `id`: refused from the next request on, on every replica.
    async fn revoke_token(&self, by: &Viewer, client: Option<IpAddr>, id: &str) -> Result<(), AdminError>;
    /// The usable token whose secret is `secret` (looked up in the store on every call, its
    /// use recorded); `None`: unknown, revoked or expired.
    async fn token_for(&self, secret: &str) -> Result<Option<TokenRow>, AdminError>;
    /// The branding in force and where it comes from.
    async fn branding_view(&self) -> BrandingView;
    /// Saves the branding (checked like `[branding]`) for every page on every replica;
    /// `None` goes back to the config file's.
    async fn save_branding(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: Option<&BrandingInput>,
    ) -> Result<(), AdminError>;
}

/// The branding page's view.
#[derive(Debug, Clone)]
pub struct BrandingView {
    pub current: gatehouse_config::Branding,
    /// Saved in the admin UI (else: the config file's).
    pub saved: bool,
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
        .route("/.gatehouse/admin/sessions/end", post(end_session))
        .route("/.gatehouse/admin/audit", get(audit_page))
        .route("/.gatehouse/admin/audit.csv", get(audit_csv))
        .route("/.gatehouse/admin/audit.json", get(audit_json))
        .route("/.gatehouse/admin/requests", get(requests_page).post(decide))
        .route("/.gatehouse/request-access", post(request_access))
        .route("/.gatehouse/admin/users", get(users_page))
        .route("/.gatehouse/admin/users/new", get(new_user_page).post(create_user))
        .route("/.gatehouse/admin/users/{name}", get(user_page).post(update_user))
        .route("/.gatehouse/admin/branding", get(branding_page).post(save_branding))
        .route("/.gatehouse/admin/tokens", get(tokens_page).post(create_token))
        .route("/.gatehouse/admin/tokens/revoke", post(revoke_token))
        .merge(api::routes())
        .route("/.gatehouse/admin/providers", get(providers_page))
        .route("/.gatehouse/admin/providers/ldap-test", post(ldap_test))
        .route("/.gatehouse/admin/suggest", get(suggest))
        .route("/.gatehouse/assets/suggest.js", get(suggest_script))
        .route("/.gatehouse/admin/usage", get(usage_page))
}

/// The token admin forms carry: bound to the session (a hash of its store key), so a token
/// planted in a cookie or copied from another session is worthless.
pub fn session_token(key: &[u8], session_id_hash: &str) -> String {
    crate::csrf::bound_token(key, session_id_hash, "admin")
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
    let expected = info
        .session_id_hash
        .as_deref()
        .map(|h| session_token(&gate.csrf_key(), h));
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
            link("/.gatehouse/admin/branding", "Branding", "branding"),
            link("/.gatehouse/admin/tokens", "API tokens", "tokens"),
            link("/.gatehouse/admin/providers", "Providers", "providers"),
            link("/.gatehouse/admin/usage", "Usage", "usage"),
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
        &site.branding.get(),
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
        // A moment: until then.
        let end = expiry("", "2026-11-20 17:30", now).unwrap().unwrap();
        assert_eq!(chrono_like(end), "2026-11-20 17:30:00");
        let end = expiry("8h", "2026-11-18T11:07:05", now).unwrap().unwrap();
        assert_eq!(end, now + 25);
        assert!(expiry("", "2026-11-18 11:06", now).is_err(), "a minute ago");
        for bad in [
            "2026-13-01",
            "tomorrow",
            "2026-11",
            "2026-11-20-1",
            "2026-11-20 24:00",
            "2026-11-20 12:60",
            "2026-11-20 12",
            "2026-11-20 12:00:00:00",
            "2026-11-20T",
        ] {
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
        let key = [7u8; 32];
        assert_eq!(session_token(&key, "abc"), session_token(&key, "abc"));
        assert_ne!(session_token(&key, "abc"), session_token(&key, "abd"));
        assert_ne!(session_token(&key, "abc"), session_token(&[8u8; 32], "abc"), "keyed");
        assert_eq!(session_token(&key, "abc").len(), 43);
        assert_eq!(session_token(&[], "abc"), "", "no key: a token nobody can send");
    }
}
