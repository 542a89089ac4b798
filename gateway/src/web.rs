//! Serving the reserved `/.gatehouse/…` endpoints: the request is handed, with a capped
//! body, to the axum router of `gatehouse-admin-ui`, and its response written back. Only
//! for the gateway's own small pages and forms; app traffic never passes here.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tower::ServiceExt;

/// Largest request body a reserved endpoint accepts (login forms, SAML responses).
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest response body a reserved endpoint may produce.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Whether a canonical path belongs to the gateway itself.
pub fn is_reserved(path: &str) -> bool {
    path.starts_with("/.gatehouse/") || path.starts_with("/.well-known/gatehouse/")
}

/// Reads the request body, refusing more than `limit` bytes. `None`: too large.
async fn read_body(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// Writes the 413 page for a body over [`MAX_BODY`] and closes the connection. The rest of
/// the body is read and dropped for a moment first, so that the client sees the page
/// rather than a reset connection; it is never kept.
async fn too_large(session: &mut Session, brand: &gatehouse_config::Branding) -> Result<u16> {
    session.set_keepalive(None);
    let msg = format!(
        "The gateway accepts at most {} KiB here; nothing was read or stored.",
        MAX_BODY / 1024
    );
    let page = gatehouse_admin_ui::pages::ErrorText {
        status: 413,
        title: "The request is too large",
        message: &msg,
        action: Some(("Go to the App Portal", "/")),
    };
    crate::respond::error(session, brand, &page).await?;
    crate::limits::drain_briefly(session).await;
    Ok(413)
}

/// Runs `router` for this request (path already canonical) and writes its response.
pub async fn serve(
    session: &mut Session,
    router: &axum::Router,
    path_and_query: &str,
    info: gatehouse_admin_ui::RequestInfo,
    brand: &gatehouse_config::Branding,
) -> Result<u16> {
    // A declared length over the cap is refused before a byte of the body is read.
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(session, brand).await;
    }
    let Some(body) = read_body(session, MAX_BODY).await? else {
        return too_large(session, brand).await;
    };
    let req_header = session.req_header();
    let mut req = http::Request::builder()
        .method(req_header.method.clone())
        .uri(path_and_query)
        .body(Body::from(body))
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "reserved endpoint request", e))?;
    *req.headers_mut() = req_header.headers.clone();
    req.extensions_mut().insert(info);
    let res = router
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| Error::because(ErrorType::InternalError, "web router", e))?;
    let (parts, body) = res.into_parts();
    let body = axum::body::to_bytes(body, MAX_RESPONSE)
        .await
        .map_err(|e| Error::because(ErrorType::InternalError, "web response body", e))?;
    let status = parts.status.as_u16();
    let mut h = ResponseHeader::build(parts.status, Some(parts.headers.len() + 1))?;
    for (k, v) in &parts.headers {
        h.append_header(k.clone(), v.clone())?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only || body.is_empty())
        .await?;
    if !head_only && !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_prefixes() {
        assert!(is_reserved("/.gatehouse/healthz"));
        assert!(is_reserved("/.well-known/gatehouse/jwks.json"));
        assert!(!is_reserved("/.gatehousex/"));
        assert!(!is_reserved("/apps/x/.gatehouse/"));
    }
}
