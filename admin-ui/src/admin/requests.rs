//! Access requests: asked for from the 403 page, decided by the app's owners and administrators.

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct RequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    reason: String,
}

/// `POST /.gatehouse/request-access` from an app's 403 page: any signed-in person, with the
/// token bound to their session and this gateway's Origin.
pub(super) async fn request_access(
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
        .map(|h| crate::csrf::bound_token(&gate.csrf_key(), h, "request"));
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

pub(super) fn status_badge(status: &str) -> String {
    let cls = match status {
        "approved" => "access-public",
        "declined" => "access-restricted",
        _ => "access-authenticated",
    };
    format!(r#"<span class="badge {cls}">{}</span>"#, esc(status))
}

/// Most groups listed one by one in the "Grant to" choice; beyond, the requester's groups
/// are suggested as the approver types (a `<datalist>`, no script needed).
const GROUP_OPTIONS: usize = 20;

/// The "Grant to" options for request `r` (the `n`th on the page) and, for a requester in
/// many groups, the field that takes one of them by name.
fn grant_choice(r: &RequestRow, n: usize) -> (String, String) {
    let user = format!(r#"<option value="user">{} only</option>"#, esc(&r.user));
    if r.groups.len() <= GROUP_OPTIONS {
        let groups: String = r
            .groups
            .iter()
            .map(|g| format!(r#"<option value="group:{}">everyone in {}</option>"#, attr(g), esc(g)))
            .collect();
        return (user + &groups, String::new());
    }
    let list: String = r
        .groups
        .iter()
        .map(|g| format!(r#"<option value="{}">"#, attr(g)))
        .collect();
    (
        format!(r#"{user}<option value="group">everyone in the group named here →</option>"#),
        format!(
            r#"<label>Their group ({count}) <input name="grant_group" type="text" list="request-groups-{n}" autocapitalize="none" spellcheck="false" maxlength="256"></label><datalist id="request-groups-{n}">{list}</datalist>"#,
            count = r.groups.len()
        ),
    )
}

pub(super) async fn requests_page(State(gate): State<Shared>, i: Option<Extension<RequestInfo>>) -> Response {
    let i = info(i);
    let (v, is_admin) = match manager(&gate, &i, "/.gatehouse/admin/requests", None) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let token = token_of(&gate, &i);
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
        .enumerate()
        .map(|(n, r)| {
            let (options, group_field) = grant_choice(r, n);
            format!(
                r#"<li class="card wide-card request"><div class="admin-head"><h2>{user} → {app_name}</h2><span class="muted small">asked {at} UTC</span></div>
<p>{reason}</p><p class="muted small">Groups: {groups}</p>
<form method="post" action="/.gatehouse/admin/requests" class="filters">
<input type="hidden" name="csrf" value="{token}"><input type="hidden" name="app" value="{app}"><input type="hidden" name="user" value="{user_attr}">
<label>Grant to <select name="grant_to">{options}</select></label>{group_field}
<label>For <select name="duration"><option value="">until removed</option><option value="1h">1 hour</option><option value="8h">8 hours</option><option value="1d">1 day</option><option value="7d">7 days</option><option value="30d">30 days</option></select></label>
<label>Or until (UTC) <input name="until" type="text" placeholder="YYYY-MM-DD or YYYY-MM-DD HH:MM"></label>
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

pub(super) async fn decide(
    State(gate): State<Shared>,
    i: Option<Extension<RequestInfo>>,
    headers: HeaderMap,
    form: Result<Form<DecisionInput>, FormRejection>,
) -> Response {
    let i = info(i);
    let mut f = form.map(|Form(f)| f).unwrap_or_default();
    if f.grant_to == "group" {
        f.grant_to = format!("group:{}", f.grant_group.trim());
    }
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
