//! Writing the gateway's own responses (error pages, redirects, reserved endpoints) into a
//! pingora session. The one place where errors become what clients see.

use bytes::Bytes;
use gatehouse_admin_ui::pages::{error_json, error_page, ErrorText};
use gatehouse_config::Branding;
use http::{HeaderMap, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Whether the client prefers HTML (browsers) over JSON (APIs, XHR).
pub fn wants_html(headers: &HeaderMap) -> bool {
    if headers.contains_key(&crate::identity::names::X_REQUESTED_WITH) {
        return false;
    }
    match headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(a) => a.contains("text/html") || a.contains("*/*") && !a.contains("application/json"),
    }
}

/// Writes a complete response. Security headers that every gateway page carries are added.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: Bytes,
) -> Result<()> {
    let mut h = ResponseHeader::build(status, Some(8 + extra.len()))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (k, v) in gatehouse_admin_ui::SECURITY_HEADERS {
        h.insert_header(*k, *v)?;
    }
    for (k, v) in extra {
        h.insert_header(k.to_string(), *v)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only || body.is_empty())
        .await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes an error page: HTML for browsers, JSON for API clients.
pub async fn error(session: &mut Session, brand: &Branding, e: &ErrorText<'_>) -> Result<()> {
    let html = wants_html(&session.req_header().headers);
    let (ctype, body) = if html {
        ("text/html; charset=utf-8", error_page(brand, e))
    } else {
        ("application/json", error_json(e))
    };
    send(session, e.status, ctype, &[], Bytes::from(body)).await
}

/// A redirect to `location` (already a safe, same-origin or configured URL).
pub async fn redirect(session: &mut Session, status: u16, location: &str) -> Result<()> {
    send(
        session,
        status,
        "text/plain; charset=utf-8",
        &[("location", location)],
        Bytes::new(),
    )
    .await
}

/// The reason phrase of a status, for logs.
pub fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(accept: Option<&str>, xhr: bool) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(a) = accept {
            m.insert(http::header::ACCEPT, a.parse().unwrap());
        }
        if xhr {
            m.insert("x-requested-with", "XMLHttpRequest".parse().unwrap());
        }
        m
    }

    #[test]
    fn html_or_json() {
        assert!(wants_html(&h(None, false)));
        assert!(wants_html(&h(Some("text/html,application/xhtml+xml,*/*;q=0.8"), false)));
        assert!(wants_html(&h(Some("*/*"), false)));
        assert!(!wants_html(&h(Some("application/json"), false)));
        assert!(!wants_html(&h(Some("application/json, */*"), false)));
        assert!(!wants_html(&h(Some("text/html"), true)));
    }
}
