//! The sessions page: recent sessions, and ending a person's.

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct Notice {
    ended: Option<String>,
    revoked: Option<String>,
    user: Option<String>,
}

pub(super) async fn sessions_page(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    Query(n): Query<Notice>,
) -> Response {
    let i = info(i);
    let v = match admin(&gate, &i, "/.gatehouse/admin/sessions") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let token = token_of(&gate, &i);
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
                r#"<tr><td>{user}{admin}</td><td>{provider}</td><td>{groups}</td><td>{created}</td><td>{seen}</td><td class="row-actions"><form method="post" action="/.gatehouse/admin/sessions/end"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="session" value="{reference}"><button class="button secondary small-button" type="submit" aria-label="End this session of {user} (since {created})">End this session</button></form><form method="post" action="/.gatehouse/admin/sessions/revoke"><input type="hidden" name="csrf" value="{token}"><input type="hidden" name="user" value="{user_attr}"><button class="button secondary small-button" type="submit">End all of {user}'s sessions</button></form></td></tr>"#,
                reference = attr(&s.reference),
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
        (_, _) if n.ended.is_some() => {
            r#"<div class="alert ok" role="status">Ended that session on every replica.</div>"#.to_string()
        }
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
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
}

pub(super) async fn revoke_sessions(
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
pub(super) struct EndForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    session: String,
}

pub(super) async fn end_session(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<EndForm>, FormRejection>,
) -> Response {
    let i = info(i);
    let f = form.map(|Form(f)| f).unwrap_or_default();
    let v = match admin_post(&gate, &i, &headers, &f.csrf, "/.gatehouse/admin/sessions") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match gate.revoke_session(&v, i.client, &f.session).await {
        Ok(()) => crate::see_other("/.gatehouse/admin/sessions?ended=1"),
        Err(AdminError::NotFound) => crate::error(
            &gate,
            StatusCode::NOT_FOUND,
            "No such session",
            "It has ended already (signed out, expired or ended by someone else). Reload the Sessions page.",
        ),
        Err(e) => crate::error(
            &gate,
            StatusCode::SERVICE_UNAVAILABLE,
            "Session not ended",
            &format!("{e:?}. Try again in a moment."),
        ),
    }
}
