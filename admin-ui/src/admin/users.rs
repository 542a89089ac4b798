//! People: those seen at sign-in, and local accounts (create, reset password, disable, make admin).

use super::*;

pub(super) async fn users_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
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
pub(super) fn shorten(groups: &[String]) -> String {
    match groups.len() {
        0 => "none".into(),
        n if n <= 6 => groups.join(", "),
        n => format!("{}, … and {} more", groups[..5].join(", "), n - 5),
    }
}

pub(super) fn user_form(input: &UserInput, create: bool, token: &str, errors: &[(String, String)]) -> String {
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

pub(super) async fn new_user_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/users/new") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/.gatehouse/admin/users">People</a></p><section class="card wide-card"><h1>New local account</h1>{}</section>"#,
        user_form(&UserInput::default(), true, &token_of(&gate, &i), &[])
    );
    page(&gate, &v, "New local account", "users", &body)
}

pub(super) async fn user_page(
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
        form = user_form(&input, false, &token_of(&gate, &i), &[]),
    );
    page(&gate, &v, &u.user, "users", &body)
}

pub(super) async fn create_user(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<UserInput>, FormRejection>,
) -> Response {
    save_user(gate, info(i), headers, form, true, "/.gatehouse/admin/users/new").await
}

pub(super) async fn update_user(
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

pub(super) async fn save_user(
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
                form = user_form(&input, create, &token_of(&gate, &i), &errors)
            );
            let mut r = page(&gate, &v, title, "users", &body);
            *r.status_mut() = status;
            r
        }
    }
}
