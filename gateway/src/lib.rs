//! The `gatehouse` gateway: a pingora proxy that routes each request to its app by path or
//! host, decides access with `gatehouse_policy::evaluate`, tells apps who is calling, and
//! serves the gateway's own endpoints under `/.gatehouse/`.
//!
//! Request path: `proxy::Gateway::request_filter` (canonicalise → reserved endpoints →
//! route → policy) → `upstream_peer` (round robin over healthy upstreams) →
//! `upstream_request_filter` (forwarding headers) → `logging` (metrics, access log).
#![forbid(unsafe_code)]

pub mod authn;
pub mod demo;
pub mod forwarded;
pub mod identity;
pub mod metrics;
pub mod proxy;
pub mod respond;
pub mod route;
pub mod server;
pub mod upstream;
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
