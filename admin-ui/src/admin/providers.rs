//! The Providers page (administrators): each configured sign-in provider with its status —
//! probed when the page loads — its last error and its facts, and the LDAP test form (the
//! lookup `gatehouse ldap test` does). Also the name suggestions behind the grant, owner
//! and approval fields: `GET /.gatehouse/admin/suggest` (JSON; administrators, and an app's
//! owners for that app), the `<datalist>` the pages pre-fill for browsers without script,
//! and the small script (`/.gatehouse/assets/suggest.js`, a static asset so a strict
//! Content-Security-Policy can forbid inline scripts) that turns a field into a
//! keyboard-usable combobox.

use super::*;

/// A provider as the Providers page shows it.
#[derive(Debug, Clone)]
pub struct ProviderStatus {
    pub id: String,
    pub label: String,
    /// `local`, `ldap`, `oidc` or `saml`.
    pub kind: String,
    /// Whether it answered the probe, or why not.
    pub reachable: Result<(), String>,
    /// How long the probe took.
    pub checked_ms: u64,
    /// The last error seen at sign-in, re-check or refresh: when (UTC) and what.
    pub last_error: Option<(String, String)>,
    /// Label → value, per kind (server, issuer, metadata age, …). Never secrets.
    pub facts: Vec<(String, String)>,
}

/// What the LDAP test form found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapLookup {
    Found {
        provider: String,
        dn: String,
        user_id: String,
        email: Option<String>,
        display_name: Option<String>,
        groups: Vec<String>,
        ms: u64,
    },
    /// No entry, or several, match the user filter.
    NotFound { provider: String, ms: u64 },
    /// The directory could not answer (why).
    Error(String),
}

/// Which names a suggestion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestKind {
    User,
    Group,
}

impl SuggestKind {
    pub fn parse(s: &str) -> Option<SuggestKind> {
        match s {
            "user" => Some(SuggestKind::User),
            "group" => Some(SuggestKind::Group),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SuggestKind::User => "user",
            SuggestKind::Group => "group",
        }
    }
}

/// One suggested name, spelled as grants store it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Suggestion {
    pub name: String,
    /// A display name, if known.
    pub detail: String,
    /// Where it was found: `seen at sign-in`, `directory <provider>`.
    pub sources: Vec<String>,
}

/// Longest user name or query accepted by the LDAP test form and the suggest endpoint.
pub const MAX_QUERY_BYTES: usize = 256;
/// Names pre-filled in a `<datalist>` per kind.
pub const DATALIST_NAMES: usize = 200;

/// `YYYY-MM-DD HH:MM:SS` (UTC) of epoch seconds `t`.
pub fn utc(t: i64) -> String {
    chrono_like(t)
}

/// The script that turns `data-suggest` fields into comboboxes.
pub const SUGGEST_SCRIPT: &str = include_str!("../assets/suggest.js");

pub(super) async fn suggest_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SUGGEST_SCRIPT,
    )
        .into_response()
}

/// A `<datalist id="{id}">` of names seen at sign-in (people and groups), for browsers
/// without script, and the `<script>` tag of [`SUGGEST_SCRIPT`].
pub(super) async fn datalist(gate: &Shared, id: &str) -> String {
    let users = gate.seen_names(SuggestKind::User, DATALIST_NAMES).await;
    let groups = gate.seen_names(SuggestKind::Group, DATALIST_NAMES).await;
    let options: String = users
        .iter()
        .map(|u| (u, "person"))
        .chain(groups.iter().map(|g| (g, "group")))
        .map(|(n, k)| format!(r#"<option value="{}" label="{k}">"#, attr(n)))
        .collect();
    format!(
        r#"<datalist id="{id}">{options}</datalist><script src="/.gatehouse/assets/suggest.js" defer></script>"#,
        id = attr(id)
    )
}

fn status_cell(s: &ProviderStatus) -> String {
    match &s.reachable {
        Ok(()) => format!(
            r#"<span class="health up provider-status" data-status="reachable">reachable</span> <span class="muted small">({} ms)</span>"#,
            s.checked_ms
        ),
        Err(e) => format!(
            r#"<span class="health down provider-status" data-status="unreachable">unreachable</span><p class="field-error">{}</p>"#,
            esc(e)
        ),
    }
}

fn provider_card(s: &ProviderStatus) -> String {
    let facts: String = s
        .facts
        .iter()
        .map(|(k, v)| format!("<dt>{}</dt><dd>{}</dd>", esc(k), esc(v)))
        .collect();
    let last_error = match &s.last_error {
        Some((at, e)) => format!(
            r#"<dt>Last error</dt><dd class="last-error">{} <span class="muted small">({} UTC)</span></dd>"#,
            esc(e),
            esc(at)
        ),
        None => "<dt>Last error</dt><dd class=\"muted\">none since start</dd>".to_string(),
    };
    format!(
        r#"<section class="card wide-card provider" id="provider-{id_attr}" data-provider="{id_attr}" data-kind="{kind_attr}"><div class="admin-head"><h2>{label}</h2><span class="badge">{kind}</span></div>
<dl class="facts"><dt>Id</dt><dd><code>{id}</code></dd><dt>Status</dt><dd>{status}</dd>{facts}{last_error}</dl></section>"#,
        id_attr = attr(&s.id),
        kind_attr = attr(&s.kind),
        id = esc(&s.id),
        label = esc(&s.label),
        kind = esc(&s.kind),
        status = status_cell(s),
    )
}

/// What the LDAP test form sends.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct LdapTestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    user: String,
}

fn ldap_form(gate: &Shared, token: &str, form: &LdapTestForm, error: Option<&str>, result: &str) -> String {
    let ldap = gate.ldap_providers();
    if ldap.is_empty() {
        return String::new();
    }
    let provider_field = if ldap.len() > 1 {
        let options: String = ldap
            .iter()
            .map(|(id, label)| {
                let sel = if *id == form.provider { " selected" } else { "" };
                format!(r#"<option value="{}"{sel}>{}</option>"#, attr(id), esc(label))
            })
            .collect();
        format!(
            r#"<label for="ldap-provider">Directory</label><select id="ldap-provider" name="provider">{options}</select>"#
        )
    } else {
        format!(r#"<input type="hidden" name="provider" value="{}">"#, attr(&ldap[0].0))
    };
    let (inv, err) = match error {
        Some(e) => (
            r#" aria-invalid="true" aria-describedby="ldap-user-error""#.to_string(),
            format!(r#"<p class="field-error" id="ldap-user-error">{}</p>"#, esc(e)),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"<section class="card wide-card" id="ldap-test"><h2>Test a directory lookup</h2><p class="muted">What the gateway would see for a person at sign-in — without their password and without signing them in (as <code>gatehouse ldap test</code>).</p>
<form method="post" action="/.gatehouse/admin/providers/ldap-test" class="filters">
<input type="hidden" name="csrf" value="{token}">
{provider_field}
<label for="ldap-user">User name <input id="ldap-user" name="user" type="text" required maxlength="{max}" autocapitalize="none" spellcheck="false" value="{user}"{inv}></label>
<button class="button" type="submit">Look up</button></form>{err}{result}</section>"#,
        token = attr(token),
        max = MAX_QUERY_BYTES,
        user = attr(&form.user),
    )
}

fn lookup_result(r: &LdapLookup, user: &str) -> String {
    match r {
        LdapLookup::Found {
            provider,
            dn,
            user_id,
            email,
            display_name,
            groups,
            ms,
        } => {
            let groups_html: String = groups.iter().map(|g| format!("<li>{}</li>", esc(g))).collect();
            format!(
                r#"<div class="alert ok ldap-result" role="status" data-found="yes"><strong>Found</strong> in {provider} ({ms} ms).</div>
<dl class="facts ldap-entry"><dt>DN</dt><dd><code>{dn}</code></dd><dt>User id</dt><dd class="ldap-user-id">{user_id}</dd><dt>Email</dt><dd>{email}</dd><dt>Display name</dt><dd>{display}</dd><dt>Groups ({n})</dt><dd><ul class="ldap-groups">{groups_html}</ul></dd></dl>"#,
                provider = esc(provider),
                dn = esc(dn),
                user_id = esc(user_id),
                email = esc(email.as_deref().unwrap_or("-")),
                display = esc(display_name.as_deref().unwrap_or("-")),
                n = groups.len(),
            )
        }
        LdapLookup::NotFound { provider, ms } => format!(
            r#"<div class="alert error ldap-result" role="alert" data-found="no"><strong>Not found:</strong> no single entry in {provider} matches {user} ({ms} ms). Check the spelling, the provider's <code>user_base</code> and <code>user_filter</code>, and whether two entries share this name (then neither can sign in).</div>"#,
            provider = esc(provider),
            user = esc(&format!("{user:?}")),
        ),
        LdapLookup::Error(e) => format!(
            r#"<div class="alert error ldap-result" role="alert" data-found="error"><strong>The directory could not answer:</strong> {}. Check the server URL, that it is running and reachable from the gateway, TLS settings and the service account's <code>bind_dn</code> / <code>bind_password</code>.</div>"#,
            esc(e)
        ),
    }
}

async fn render(gate: &Shared, v: &Viewer, ldap: String) -> Response {
    let statuses = gate.provider_statuses().await;
    let cards: String = statuses.iter().map(provider_card).collect();
    let body = format!(
        r#"<div class="admin-head"><h1>Sign-in providers</h1><a class="button secondary" href="/.gatehouse/admin/providers">Check again</a></div>
<p class="muted">Each provider was asked just now (a few seconds at most each, all at once). Secrets are never shown.</p>
{cards}{ldap}"#
    );
    page(gate, v, "Providers", "providers", &body)
}

pub(super) async fn providers_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/providers") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let token = token_of(&gate, &i);
    let ldap = ldap_form(&gate, &token, &LdapTestForm::default(), None, "");
    render(&gate, &v, ldap).await
}

pub(super) async fn ldap_test(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<LdapTestForm>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &f.csrf, "/.gatehouse/admin/providers") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let token = token_of(&gate, &i);
    let user = f.user.trim();
    let problem = if user.is_empty() {
        Some("name a person".to_string())
    } else if user.len() > MAX_QUERY_BYTES {
        Some(format!("at most {MAX_QUERY_BYTES} bytes"))
    } else {
        None
    };
    if let Some(p) = problem {
        let shown = LdapTestForm {
            user: user.chars().take(MAX_QUERY_BYTES).collect(),
            ..f.clone()
        };
        let mut r = render(&gate, &v, ldap_form(&gate, &token, &shown, Some(&p), "")).await;
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    }
    let provider = Some(f.provider.as_str()).filter(|p| !p.is_empty());
    let found = gate.ldap_lookup(provider, user).await;
    let result = lookup_result(&found, user);
    render(&gate, &v, ldap_form(&gate, &token, &f, None, &result)).await
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct SuggestQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    app: String,
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        v.to_string(),
    )
        .into_response()
}

/// `GET /.gatehouse/admin/suggest?kind=user|group&q=…&app=<slug>`: names for a grant or
/// owner field. Administrators; an app's owners with `app` naming their app.
pub(super) async fn suggest(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    q: Result<Query<SuggestQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let i = info(i);
    let Ok(Query(q)) = q else {
        return json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "unreadable query", "field": "q"}),
        );
    };
    if i.viewer.is_none() {
        return json_response(StatusCode::UNAUTHORIZED, serde_json::json!({"error": "sign in first"}));
    }
    let app = Some(q.app.as_str()).filter(|a| !a.is_empty());
    let allowed = match app {
        Some(slug) => manager(&gate, &i, "/.gatehouse/admin/apps", Some(slug)).is_ok(),
        None => admin(&gate, &i, "/.gatehouse/admin/apps").is_ok(),
    };
    if !allowed {
        return json_response(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "administrators and this app's owners only"}),
        );
    }
    let Some(kind) = SuggestKind::parse(&q.kind) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "kind must be user or group", "field": "kind"}),
        );
    };
    if q.q.len() > MAX_QUERY_BYTES {
        return json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": format!("at most {MAX_QUERY_BYTES} bytes"), "field": "q"}),
        );
    }
    let found = gate.suggest(kind, &q.q).await;
    json_response(
        StatusCode::OK,
        serde_json::json!({"kind": kind.as_str(), "query": q.q.trim(), "suggestions": found}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_results_are_escaped_and_say_what_to_check() {
        let r = LdapLookup::Found {
            provider: "corp".into(),
            dn: "uid=<b>,dc=x".into(),
            user_id: "<b>".into(),
            email: None,
            display_name: Some("B & B".into()),
            groups: vec!["R&D, Europe".into()],
            ms: 3,
        };
        let html = lookup_result(&r, "<b>");
        assert!(
            html.contains("uid=&lt;b&gt;,dc=x") && html.contains("R&amp;D, Europe"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        let nf = lookup_result(
            &LdapLookup::NotFound {
                provider: "corp".into(),
                ms: 1,
            },
            "x<y",
        );
        assert!(nf.contains("Not found") && nf.contains("user_filter") && !nf.contains("x<y"));
        let e = lookup_result(&LdapLookup::Error("connect timed out".into()), "x");
        assert!(e.contains("connect timed out") && e.contains("bind_dn"));
    }

    #[test]
    fn kinds() {
        assert_eq!(SuggestKind::parse("user"), Some(SuggestKind::User));
        assert_eq!(SuggestKind::parse("group").map(SuggestKind::as_str), Some("group"));
        assert_eq!(SuggestKind::parse("User"), None);
    }
}
