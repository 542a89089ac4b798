//! `X-Forwarded-*` handling: replaced for untrusted peers, appended for trusted ones.

use gatehouse_tests::{raw, Backend};

use crate::gatehouse;

fn header(body: &str, name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    v["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_forwarding_headers_from_untrusted_peer_are_replaced() {
    let b = Backend::start("b").await;
    let gw = gatehouse().app("a", &[b.addr], "access = \"public\"").start().await;
    let r = raw::get(
        gw.addr,
        "/apps/a/",
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Real-IP", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(header(&r.body, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header(&r.body, "x-forwarded-proto"), ["http"]);
    assert_eq!(header(&r.body, "x-forwarded-host"), [gw.addr.to_string()]);
    assert_eq!(header(&r.body, "x-real-ip"), ["127.0.0.1"]);
    assert!(header(&r.body, "forwarded").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_from_trusted_proxy_are_appended() {
    let b = Backend::start("b").await;
    let gw = gatehouse()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .app("a", &[b.addr], "access = \"public\"")
        .start()
        .await;
    let r = raw::get(
        gw.addr,
        "/apps/a/",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "apps.example.com"),
        ],
    )
    .await;
    assert_eq!(header(&r.body, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    assert_eq!(header(&r.body, "x-forwarded-proto"), ["https"]);
    assert_eq!(header(&r.body, "x-forwarded-host"), ["apps.example.com"]);
    assert_eq!(header(&r.body, "x-real-ip"), ["203.0.113.7"]);
}
