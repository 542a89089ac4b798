//! API tokens for the JSON admin API ([`super::api`]): the list (name, scope, created by,
//! created, last used, expires), the new-token form — the secret is shown once, on the page
//! answering the form — and revoking. Administrators only (owners ask an administrator for
//! a token scoped to their app).

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct TokensQuery {
    revoked: Option<String>,
}

fn when(t: Option<i64>, none: &str) -> String {
    t.map(|t| format!("{} UTC", time(t)))
        .unwrap_or_else(|| none.to_string())
}

/// The page: an optional notice (the new secret), the form, the list.
async fn render(
    gate: &Shared,
    v: &Viewer,
    i: &RequestInfo,
    notice: &str,
    input: &TokenInput,
    errors: &[(String, String)],
) -> Response {
    let rows = match gate.tokens().await {
        Ok(rows) => rows,
        Err(e) => {
            return crate::error(
                gate,
                StatusCode::SERVICE_UNAVAILABLE,
                "API tokens unavailable",
                &format!("{e:?}"),
            )
        }
    };
    let token = token_of(gate, i);
    let rows: String = rows
        .iter()
        .map(|t| {
            let status = match (t.revoked_at, t.active) {
                (Some(at), _) => format!(
                    r#"<span class="badge access-restricted">revoked</span><div class="muted small">{} by {}</div>"#,
                    time(at),
                    esc(t.revoked_by.as_deref().unwrap_or(""))
                ),
                (None, false) => r#"<span class="badge access-restricted">expired</span>"#.to_string(),
                (None, true) => r#"<span class="badge access-public">active</span>"#.to_string(),
            };
            let revoke = if t.revoked_at.is_none() {
                format!(
                    r#"<form method="post" action="/.gatehouse/admin/tokens/revoke"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="id" value="{id}"><button class="button secondary small-button" type="submit">Revoke {name}</button></form>"#,
                    token = attr(&token),
                    id = attr(&t.id),
                    name = esc(&t.name),
                )
            } else {
                String::new()
            };
            format!(
                r#"<tr class="{cls}"><td>{name}</td><td><code>{scope}</code></td><td>{by}</td><td class="nowrap">{created}</td><td class="nowrap">{used}</td><td class="nowrap">{expires}</td><td>{status}</td><td>{revoke}</td></tr>"#,
                cls = if t.active { "" } else { "expired" },
                name = esc(&t.name),
                scope = esc(&t.scope),
                by = esc(&t.created_by),
                created = time(t.created_at),
                used = when(t.last_used_at, "never"),
                expires = when(t.expires_at, "never"),
            )
        })
        .collect();
    let option = |value: &str, label: &str| {
        let sel = if input.scope == value { " selected" } else { "" };
        format!(r#"<option value="{}"{sel}>{}</option>"#, attr(value), esc(label))
    };
    let scopes: String = std::iter::once(option("admin", "admin — everything an administrator may do"))
        .chain(gate.admin_apps().iter().map(|a| {
            option(
                &format!("app:{}", a.slug),
                &format!("app:{} — what the owners of {} may do", a.slug, a.name),
            )
        }))
        .collect();
    let durations: String = [
        ("", "never (until revoked)"),
        ("1d", "1 day"),
        ("7d", "7 days"),
        ("30d", "30 days"),
    ]
    .iter()
    .map(|(value, label)| {
        let sel = if input.duration == *value { " selected" } else { "" };
        format!(r#"<option value="{value}"{sel}>{label}</option>"#)
    })
    .collect();
    let body = format!(
        r#"<div class="admin-head"><h1>API tokens</h1></div>
<p class="muted">Tokens let scripts and CI pipelines use the JSON admin API (<a href="/.gatehouse/admin/api/openapi.json">OpenAPI document</a>) with <code>Authorization: Bearer &lt;token&gt;</code>. Only a hash is kept: the token is shown once, when it is created. Every change made with a token is audited under its name.</p>
{notice}
<section class="card wide-card"><h2>New token</h2>
<form method="post" action="/.gatehouse/admin/tokens" class="stack admin-form" novalidate>
<input type="hidden" name="csrf" value="{token}">
<label for="token-name">Name</label><p class="hint" id="token-name-hint">Lower-case letters, digits, <code>-</code>, <code>_</code> and <code>.</code>, e.g. <code>ci-deploy</code>.</p>
<input id="token-name" name="name" type="text" required autocapitalize="none" spellcheck="false" value="{name}"{name_inv}>{name_err}
<label for="token-scope">Scope</label>
<select id="token-scope" name="scope"{scope_inv}>{scopes}</select>{scope_err}
<label for="token-duration">Expires</label>
<select id="token-duration" name="duration"{dur_inv}>{durations}</select>{dur_err}
<label for="token-until">Or until (UTC date)</label>
<input id="token-until" name="until" type="text" placeholder="YYYY-MM-DD" inputmode="numeric" value="{until}"{until_inv}>{until_err}
<div class="actions"><button class="button" type="submit">Create token</button></div>
</form></section>
<h2>Tokens</h2>
<div class="table-wrap"><table><thead><tr><th>Name</th><th>Scope</th><th>Created by</th><th>Created (UTC)</th><th>Last used</th><th>Expires</th><th>Status</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>"#,
        token = attr(&token),
        name = attr(&input.name),
        name_inv = described_by(errors, "name"),
        name_err = field_error(errors, "name"),
        scope_inv = described_by(errors, "scope"),
        scope_err = field_error(errors, "scope"),
        dur_inv = described_by(errors, "duration"),
        dur_err = field_error(errors, "duration"),
        until = attr(&input.until),
        until_inv = described_by(errors, "until"),
        until_err = field_error(errors, "until"),
    );
    page(gate, v, "API tokens", "tokens", &body)
}

pub(super) async fn tokens_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(q): Query<TokensQuery>,
) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/tokens") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let notice = if q.revoked.is_some() {
        r#"<div class="alert ok" role="status">Revoked. The token is refused from its next request, on every replica.</div>"#
    } else {
        ""
    };
    let input = TokenInput {
        scope: "admin".into(),
        ..TokenInput::default()
    };
    render(&gate, &v, &i, notice, &input, &[]).await
}

pub(super) async fn create_token(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<TokenInput>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &f.csrf, "/.gatehouse/admin/tokens") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match gate.create_token(&v, i.client, &f).await {
        Ok(secret) => {
            let notice = format!(
                r#"<div class="alert ok token-created" role="status"><p>Token <strong>{name}</strong> created. Copy it now: it is not shown again.</p>
<label for="new-token">Token</label><input id="new-token" class="secret" type="text" readonly value="{secret}" spellcheck="false" autocomplete="off"></div>"#,
                name = esc(f.name.trim()),
                secret = attr(&secret),
            );
            let input = TokenInput {
                scope: "admin".into(),
                ..TokenInput::default()
            };
            let mut r = render(&gate, &v, &i, &notice, &input, &[]).await;
            if r.status() == StatusCode::OK {
                *r.status_mut() = StatusCode::CREATED;
            }
            r
        }
        Err(AdminError::Invalid(errors)) => {
            let notice =
                r#"<div class="alert error" role="alert">No token was created: correct the fields marked below.</div>"#;
            let mut r = render(&gate, &v, &i, notice, &f, &errors).await;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        Err(e) => crate::error(
            &gate,
            StatusCode::SERVICE_UNAVAILABLE,
            "No token created",
            &format!("{e:?}"),
        ),
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RevokeTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

pub(super) async fn revoke_token(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<RevokeTokenForm>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &f.csrf, "/.gatehouse/admin/tokens") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match gate.revoke_token(&v, i.client, &f.id).await {
        Ok(()) | Err(AdminError::NotFound) => crate::see_other("/.gatehouse/admin/tokens?revoked=1"),
        Err(e) => crate::error(&gate, StatusCode::SERVICE_UNAVAILABLE, "Not revoked", &format!("{e:?}")),
    }
}
