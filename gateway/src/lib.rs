//! The `gatehouse` gateway: a pingora proxy that routes each request to its app by path or
//! host, decides access with `gatehouse_policy::evaluate`, tells apps who is calling, and
//! serves the gateway's own endpoints under `/.gatehouse/`.
//!
//! Request path: `proxy::Gateway::request_filter` asks `gatekeeper::Gatekeeper::judge`
//! (canonicalise → reserved endpoints → route → session → policy, against the live
//! `snapshot::Snapshot`) and renders its verdict → `upstream_peer` (round robin over the
//! routed app's healthy upstreams) → `upstream_request_filter` (identity and forwarding
//! headers) → `logging` (metrics, access log). `server::Reloader` keeps the snapshot live;
//! `streams` closes WebSocket and event streams whose access ended.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api_tokens;
pub mod authn;
pub mod branding;
pub mod demo;
pub mod forward_auth;
pub mod forwarded;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod gatekeeper;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod respond;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod streams;
pub mod tls;
pub mod upstream;
pub mod usage;
pub mod web;
pub mod whoami;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("store: {0}")]
    Store(#[from] gatehouse_store::StoreError),
}
