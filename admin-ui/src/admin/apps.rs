//! The apps pages: the list (with each app's visits over 7 days), create / edit / delete of
//! store apps (file apps read-only), grants, who can open an app and "check a person", and
//! the app's usage section (`usage::usage_section`).

use super::*;

pub(super) async fn apps_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let (v, is_admin) = match manager(&gate, &info(i), "/.gatehouse/admin/apps", None) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    // Visits over the last 7 days by app; unknown (store down) shows as "–".
    let visits: Option<std::collections::HashMap<String, i64>> = gate
        .usage_by_app(7)
        .await
        .ok()
        .map(|rows| rows.into_iter().map(|r| (r.app, r.visits)).collect());
    // Known people each app admits; unknown (store down) shows as "–".
    let people = gate.people_counts().await.ok();
    let rows: String = gate
        .admin_apps()
        .iter()
        .filter(|a| is_admin || gate.manages(&v.identity, &a.slug))
        .map(|a| {
            let seen = match &visits {
                Some(m) => {
                    let n = m.get(&a.slug).copied().unwrap_or(0);
                    format!(r#"<td class="num" data-visits="{n}"><a href="/.gatehouse/admin/apps/{slug}#usage">{n}</a></td>"#, slug = attr(&a.slug))
                }
                None => r#"<td class="num muted" title="usage unavailable">–</td>"#.to_string(),
            };
            let count = match people.as_ref().and_then(|m| m.get(&a.slug)) {
                Some(n) => format!(
                    r#"<div class="small" data-people="{n}">{n} {word} known</div>"#,
                    word = if *n == 1 { "person" } else { "people" }
                ),
                None => String::new(),
            };
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
                r#"<tr><td><a href="/.gatehouse/admin/apps/{slug}">{name}</a><div class="muted small">{slug_text}</div></td><td><code>{route}</code></td><td>{ups}</td><td>{access}</td><td>{audience}{count}</td>{seen}<td class="muted small">{source}</td></tr>"#,
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
<div class="table-wrap"><table><thead><tr><th>App</th><th>Route</th><th>Upstreams</th><th>Access</th><th>Who can open it</th><th class="num">Visits (7 days)</th><th>Defined in</th></tr></thead><tbody>{rows}</tbody></table></div>"#
    );
    page(&gate, &v, if is_admin { "Apps" } else { "My apps" }, "apps", &body)
}

pub(super) fn field_error(errors: &[(String, String)], field: &str) -> String {
    errors
        .iter()
        .filter(|(f, _)| f == field)
        .map(|(_, m)| format!(r#"<p class="field-error" id="{field}-error">{}</p>"#, esc(m)))
        .collect()
}

pub(super) fn described_by(errors: &[(String, String)], field: &str) -> String {
    if errors.iter().any(|(f, _)| f == field) {
        format!(r#" aria-invalid="true" aria-describedby="{field}-error""#)
    } else {
        String::new()
    }
}

/// [`described_by`] for a field in error, else a pointer to its hint (`<field>-hint`).
fn described_or_hinted(errors: &[(String, String)], field: &str) -> String {
    match described_by(errors, field) {
        none if none.is_empty() => format!(r#" aria-describedby="{field}-hint""#),
        error => error,
    }
}

/// The app form. `create`: a new app (slug editable).
pub(super) fn app_form(
    input: &AppInput,
    create: bool,
    token: &str,
    errors: &[(String, String)],
    with_owners: bool,
) -> String {
    let owners = if with_owners {
        format!(
            r#"<label for="owner_users">Owners</label><p class="hint">People (one per line) who may manage this app's access, grants, requests and settings without being administrators.</p>
<textarea id="owner_users" name="owner_users" rows="2" spellcheck="false" data-suggest="user">{}</textarea>
<label for="owner_groups">Owner groups</label><p class="hint">Members of these groups are owners too.</p>
<textarea id="owner_groups" name="owner_groups" rows="2" spellcheck="false" data-suggest="group">{}</textarea>"#,
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
    // A new app (no value yet) gets the default, "auto".
    let groups_sent = match input.groups_sent.as_str() {
        "" => "auto",
        g => g,
    };
    let groups_option = |value: &str, label: &str| {
        let sel = if groups_sent == value { " selected" } else { "" };
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
<textarea id="allow_groups" name="allow_groups" rows="3" spellcheck="false" data-suggest="group"{app_attr}{g_inv}>{groups}</textarea>{g_err}
<label for="allow_users">Allowed people</label><p class="hint">User names, one per line.</p>
<textarea id="allow_users" name="allow_users" rows="2" spellcheck="false" data-suggest="user"{app_attr}{u_inv}>{users}</textarea>{u_err}
<fieldset class="options"><legend>What the app is told, and where it shows</legend>
<label class="check"><input type="checkbox" name="remote_headers" value="1"{remote}> Remote-User, Remote-Groups, Remote-Email, Remote-Name headers (Authelia style)</label>
<label class="check"><input type="checkbox" name="plotly_user_data" value="1"{plotly}> Plotly-User-Data header for Dash apps using dash_enterprise_auth</label>
<label class="check"><input type="checkbox" name="dash_token" value="1"{dash}> kcIdToken cookie (a signed token) for Dash apps using dash_enterprise_auth in token mode</label>
<label for="groups_sent">Groups sent to the app</label>
<select id="groups_sent" name="groups_sent"{gs_inv}>{gs_auto}{gs_all}{gs_ref}</select>{gs_err}
<label class="check"><input type="checkbox" name="portal_visible" value="1"{visible}> Show on the App Portal (to those who may open it)</label>
<label for="portal_order">Position on the App Portal</label><p class="hint" id="portal_order-hint">A whole number; lower comes first. Apps from the config file are at their portal_order (default 0).</p>
<input id="portal_order" name="portal_order" type="text" inputmode="numeric" value="{order}"{po_inv}>{po_err}
<label for="tags">Tags on the App Portal</label><p class="hint" id="tags-hint">One per line or comma-separated, e.g. finance, dash. People filter the portal by them.</p>
<textarea id="tags" name="tags" rows="2" spellcheck="false"{t_inv}>{tags}</textarea>{t_err}
<label for="thumbnail">Thumbnail</label><p class="hint" id="thumbnail-hint">An https:// address or a path on this gateway (/…) of a picture for the card; empty: the app's initial.</p>
<input id="thumbnail" name="thumbnail" type="text" spellcheck="false" value="{thumb}"{th_inv}>{th_err}
</fieldset>
{owners}
<div class="actions"><button class="button" type="submit">{submit}</button><a class="button secondary" href="/.gatehouse/admin/apps">Cancel</a></div>
</form><script src="/.gatehouse/assets/suggest.js" defer></script>"#,
        app_attr = if create {
            String::new()
        } else {
            format!(r#" data-suggest-app="{}""#, attr(&input.slug))
        },
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
        gs_auto = groups_option(
            "auto",
            "All while the headers stay small, else those this app's access names (default)",
        ),
        gs_all = groups_option("all", "All of the person's groups, however large the headers"),
        gs_ref = groups_option("referenced", "Only the groups this app's access names"),
        gs_inv = described_by(errors, "groups_sent"),
        gs_err = field_error(errors, "groups_sent"),
        visible = if input.portal_visible.is_some() { " checked" } else { "" },
        order = attr(&input.portal_order),
        po_inv = described_or_hinted(errors, "portal_order"),
        po_err = field_error(errors, "portal_order"),
        dash = if input.dash_token.is_some() { " checked" } else { "" },
        tags = esc(&input.tags),
        t_inv = described_or_hinted(errors, "tags"),
        t_err = field_error(errors, "tags"),
        thumb = attr(&input.thumbnail),
        th_inv = described_or_hinted(errors, "thumbnail"),
        th_err = field_error(errors, "thumbnail"),
    )
}

pub(super) fn token_of(gate: &Shared, i: &RequestInfo) -> String {
    i.session_id_hash
        .as_deref()
        .map(|h| session_token(&gate.csrf_key(), h))
        .unwrap_or_default()
}

pub(super) async fn new_app_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
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
        app_form(&input, true, &token_of(&gate, &i), &[], true)
    );
    page(&gate, &v, "New app", "apps", &body)
}

pub(super) async fn create_app(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<AppInput>, FormRejection>,
) -> Response {
    save(gate, info(i), headers, form, true, "/.gatehouse/admin/apps/new").await
}

pub(super) async fn update_app(
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

pub(super) async fn save(
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
                form = app_form(&input, create, &token_of(&gate, &i), &errors, v.identity.admin)
            );
            let mut r = page(&gate, &v, title, "apps", &body);
            *r.status_mut() = status;
            r
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct AppQuery {
    pub(super) check: Option<String>,
    pub(super) saved: Option<String>,
    pub(super) grant_error: Option<String>,
}

pub(super) async fn grants_section(gate: &Shared, app: &AdminApp, token: &str, error: Option<&str>) -> String {
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
<label>Name <input name="name" id="grant-name" type="text" autocapitalize="none" spellcheck="false" required maxlength="256" list="grant-names" data-suggest="group" data-suggest-kind-from="grant-kind" data-suggest-app="{slug}"></label>
<label>For <select name="duration" id="grant-duration"><option value="">until removed</option><option value="1h">1 hour</option><option value="8h">8 hours</option><option value="1d">1 day</option><option value="7d">7 days</option><option value="30d">30 days</option></select></label>
<label>Or until (UTC) <input name="until" id="grant-until" type="text" placeholder="YYYY-MM-DD or YYYY-MM-DD HH:MM"></label>
<button class="button" type="submit">Grant</button></form>{error}{names}</section>"#,
        slug = attr(&app.slug),
        token = attr(token),
        names = datalist(gate, "grant-names").await,
    )
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RemoveGrant {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
}

pub(super) async fn add_grant(
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

pub(super) async fn remove_grant(
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

pub(super) async fn app_page(
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
    let token = token_of(&gate, &i);
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
    let usage = usage_section(&gate.app_usage(&app.slug).await);
    let grants = if app.editable {
        grants_section(&gate, &app, &token, q.grant_error.as_deref()).await
    } else {
        String::new()
    };
    let edit = if app.editable {
        let input = AppInput::of(&app);
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
{usage}
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

pub(super) fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    version: i64,
}

pub(super) async fn delete_app(
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

pub(super) fn time(t: i64) -> String {
    chrono_like(t)
}

/// `YYYY-MM-DD HH:MM:SS` UTC without a date library (civil-from-days).
pub(super) fn chrono_like(t: i64) -> String {
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
