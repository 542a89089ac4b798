//! The demo's sample app, "whoami": it answers every request with the method, path and
//! headers it received — exactly what an app behind Gatehouse sees. HTML for browsers,
//! `{"method":…,"path":…,"headers":{name: value}}` for `Accept: application/json`. A path
//! ending in `/card.svg` is answered with a small picture instead: the demo's App Portal
//! thumbnail, served by the app itself through the gateway.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

/// Headers as a sorted map; repeated headers are joined with `, `.
fn header_map(req: &Request) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

async fn whoami(req: Request) -> Response {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = header_map(&req);
    let json = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    if json {
        return Json(serde_json::json!({ "method": method, "path": path, "headers": headers })).into_response();
    }
    let esc = |s: &str| html_escape::encode_text(s).into_owned();
    let rows: String = headers
        .iter()
        .map(|(k, v)| format!("<tr><th scope=\"row\">{}</th><td>{}</td></tr>", esc(k), esc(v)))
        .collect();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>whoami</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f7fa;color:#1d2430}}
main{{max-width:960px;margin:0 auto;padding:32px 16px}} h1{{font-size:22px;margin:0 0 4px}}
p{{color:#5b6676;margin:0 0 24px}} table{{width:100%;border-collapse:collapse;background:#fff;border:1px solid #dde3ea;border-radius:8px}}
th,td{{text-align:left;padding:8px 12px;border-bottom:1px solid #dde3ea;font-size:14px;vertical-align:top}}
td{{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}} code{{font-family:ui-monospace,Menlo,monospace}}
</style></head><body><main>
<h1>whoami</h1><p>This sample app shows what it received through Gatehouse: <code>{m} {p}</code></p>
<table><tbody>{rows}</tbody></table></main></body></html>"#,
        m = esc(&method),
        p = esc(&path),
    ))
    .into_response()
}

/// The demo apps' portal thumbnail: a 16:9 picture of a small bar chart.
const CARD_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 320 180"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#0b6bcb"/><stop offset="1" stop-color="#0f7b6c"/></linearGradient></defs><rect width="320" height="180" fill="url(#g)"/><g fill="#fff" fill-opacity=".85"><rect x="48" y="100" width="28" height="44" rx="4"/><rect x="96" y="72" width="28" height="72" rx="4"/><rect x="144" y="88" width="28" height="56" rx="4"/><rect x="192" y="48" width="28" height="96" rx="4"/><rect x="240" y="64" width="28" height="80" rx="4"/></g></svg>"##;

async fn dispatch(req: Request) -> Response {
    if req.uri().path().ends_with("/card.svg") {
        return ([(http::header::CONTENT_TYPE, "image/svg+xml")], CARD_SVG).into_response();
    }
    whoami(req).await
}

/// The sample app as an axum router.
pub fn router() -> axum::Router {
    axum::Router::new().fallback(dispatch)
}

/// Serves the sample app on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}
