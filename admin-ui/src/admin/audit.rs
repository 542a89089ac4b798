//! The audit log: search by person, kind and date, pages of 100, CSV and JSON export. Never edited or deleted here.

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    app: String,
    /// UTC dates `YYYY-MM-DD`, both inclusive.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    page: i64,
}

/// Rows per audit page.
pub(super) const AUDIT_PAGE: i64 = 100;
/// Most rows an export holds.
pub(super) const AUDIT_EXPORT: i64 = 100_000;

/// The midnight (UTC) starting `date` (`YYYY-MM-DD`); empty: none; `Err`: not a date.
pub(super) fn day_start(date: &str) -> Result<Option<i64>, String> {
    let date = date.trim();
    if date.is_empty() {
        return Ok(None);
    }
    if date.contains([' ', 'T']) {
        return Err(format!("{date:?} is not a date (YYYY-MM-DD)"));
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
            app: self.app.trim().to_string(),
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
            "actor={}&action={}&target={}&app={}&from={}&to={}&page={page}",
            enc(&self.actor),
            enc(&self.action),
            enc(&self.target),
            enc(&self.app),
            enc(&self.from),
            enc(&self.to)
        )
    }
}

pub(super) async fn audit_page(
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
<label>App <input name="app" type="text" value="{app}" placeholder="slug" autocapitalize="none"></label>
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
        app = attr(&q.app),
        from = attr(&q.from),
        to = attr(&q.to),
    );
    page_response(&gate, &v, &body)
}

pub(super) fn page_response(gate: &Shared, v: &Viewer, body: &str) -> Response {
    page(gate, v, "Audit log", "audit", body)
}

/// One CSV field, quoted when it must be (RFC 4180); a leading `=`, `+`, `-` or `@` is
/// prefixed with `'` so spreadsheets do not run it as a formula.
pub(super) fn csv_field(s: &str) -> String {
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

pub(super) async fn export_rows(
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

pub(super) async fn audit_csv(
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

pub(super) async fn audit_json(
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
