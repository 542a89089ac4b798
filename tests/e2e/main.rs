//! End-to-end suites: the real `gatehouse` binary over real sockets. Compiled as the
//! gateway package's integration test so cargo builds the binary first.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

mod access;
mod admin;
mod api;
mod browser;
mod cli;
mod csrf;
mod dataapps;
mod degraded;
mod forward_auth;
mod forwarding;
mod header_budget;
mod ldap;
mod lifecycle;
mod limits;
mod live;
mod longlived;
mod oidc;
mod portal;
mod providers;
mod routing;
mod saml;
mod streaming;
mod tls_reload;
mod upgrade;
mod upstreams;
mod usage;

use gatehouse_tests::GatewayBuilder;

/// A builder for the gatehouse binary under test.
pub fn gatehouse() -> GatewayBuilder {
    GatewayBuilder::new(env!("CARGO_BIN_EXE_gatehouse"))
}

/// The JSON an echoing backend returned.
pub async fn json(res: reqwest::Response) -> serde_json::Value {
    let status = res.status();
    let text = res.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON (status {status}): {text}"))
}
