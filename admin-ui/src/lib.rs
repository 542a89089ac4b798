//! Gatehouse's web layer: the server-rendered pages people see (error pages now; login,
//! App Portal and admin pages as they land) and the axum handlers behind the reserved
//! `/.gatehouse/` endpoints. Pages share one layout and one stylesheet. Nothing here decides
//! access; handlers receive decisions made by `gatehouse-policy`.
#![forbid(unsafe_code)]

pub mod pages;

use axum::routing::get;
use axum::Router;

/// Static stylesheet served at `/.gatehouse/assets/gatehouse.css`.
pub const STYLESHEET: &str = include_str!("assets/gatehouse.css");

/// Errors of the web layer.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
}

/// The router for the gateway's reserved endpoints, mounted at `/` (paths are absolute:
/// `/.gatehouse/healthz`, …).
pub fn router() -> Router {
    Router::new()
        .route("/.gatehouse/healthz", get(|| async { "ok\n" }))
        .route(
            "/.gatehouse/assets/gatehouse.css",
            get(|| async {
                (
                    [
                        (http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
                        (http::header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    STYLESHEET,
                )
            }),
        )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn healthz_answers_ok() {
        let res = router()
            .oneshot(
                Request::get("/.gatehouse/healthz")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn unknown_reserved_path_is_404() {
        let res = router()
            .oneshot(
                Request::get("/.gatehouse/nope")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
}
