//! Routing by path and host, longest prefix, the 404 page, and path tricks that must not
//! cross from one app to another.

use gatehouse_tests::{raw, Backend};

use crate::{gatehouse, json};

#[tokio::test(flavor = "multi_thread")]
async fn path_host_and_longest_prefix_routing() {
    let a = Backend::start("a").await;
    let ab = Backend::start("ab").await;
    let graf = Backend::start("graf").await;
    let gw = gatehouse()
        .server("app_domain = \"apps.test\"")
        .app("a", &[a.addr], "access = \"public\"")
        .app(
            "ab",
            &[ab.addr],
            "access = \"public\"\npath = \"/apps/a/b/\"\nstrip_prefix = true",
        )
        .app("graf", &[graf.addr], "access = \"public\"\nhost = \"grafana.test\"")
        .start()
        .await;

    let r = json(gw.get("/apps/a/x?q=1").await).await;
    assert_eq!(r["backend"], "a");
    assert_eq!(r["path"], "/apps/a/x?q=1", "prefix kept by default");

    let r = json(gw.get("/apps/a/b/deep/er").await).await;
    assert_eq!(r["backend"], "ab", "longest prefix wins");
    assert_eq!(r["path"], "/deep/er", "strip_prefix removes the prefix");

    let r = raw::get(gw.addr, "/anything", &[("Host", "grafana.test")]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"backend\":\"graf\""), "{}", r.body);

    let r = raw::get(gw.addr, "/x", &[("Host", "AB.apps.test:8443")]).await;
    assert!(
        r.body.contains("\"backend\":\"ab\""),
        "slug subdomain routes by host: {}",
        r.body
    );

    let r = gw.get("/apps/a").await;
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/apps/a/");

    let r = gw
        .client()
        .get(gw.url("/apps/nope/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("There is no app here") && page.contains("/apps/nope/"),
        "{page}"
    );
    assert!(page.contains("href=\"/\""), "404 page links to the portal");

    let r = gw
        .client()
        .get(gw.url("/apps/nope/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["status"], 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_cannot_cross_apps() {
    let public = Backend::start("public").await;
    let secret = Backend::start("secret").await;
    let gw = gatehouse()
        .app("public", &[public.addr], "access = \"public\"")
        .app("secret", &[secret.addr], "access = \"authenticated\"")
        .start()
        .await;
    // Each either reaches the app its canonical path names (with that app's policy: the
    // secret app needs sign-in, so 401) or is refused; none reaches "secret" unchecked.
    let cases = [
        ("/apps/public/../secret/", 401),
        ("/apps/public/%2e%2e/secret/", 401),
        ("/apps/public/%2E%2E/secret/", 401),
        ("/apps//secret/", 401),
        ("/apps/public/./../secret/x", 401),
        ("/apps/public%2f..%2fsecret/", 400),
        ("/apps/public/..%2fsecret/", 400),
        ("/apps/public/..;/secret/", 400),
        ("/apps/public/..\\secret/", 400),
        ("/apps/secret;x/", 404),
        ("/apps/SECRET/", 404),
        ("/../apps/secret/", 400),
        ("/apps/public/../../.gatehouse/healthz", 200),
    ];
    for (target, want) in cases {
        let r = raw::get(gw.addr, target, &[("Accept", "application/json")]).await;
        assert_eq!(r.status, want, "{target}: {}", r.body);
        assert!(!r.body.contains("\"backend\":\"secret\""), "{target} reached secret");
    }
    assert_eq!(secret.hits(), 0);
    // The public app sees the canonical path, never the trick.
    let r = raw::get(gw.addr, "/apps/secret/../public/%2e/x", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"path\":\"/apps/public/x\""), "{}", r.body);
}
