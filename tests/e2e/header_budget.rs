//! A person in 2,000 groups against real app servers with their default header limits —
//! Debian's nginx (8 KiB a header line), gunicorn (8190 bytes a line) and uvicorn — behind
//! the gateway, through the real sign-in. By default (`groups_sent = "auto"`) every app
//! answers 200 and is told the groups its access names; with `groups_sent = "all"` (and
//! every identity header on: some 160 KiB) nginx, gunicorn and uvicorn refuse the request.
//! A person in a few groups is told all of them by default.

use gatehouse_tests::dataapps::{DataApp, Framework};
use gatehouse_tests::nginx::Nginx;

use crate::gatehouse;

const PW: &str = "header budget pw 7Qz";

/// Every identity header an app can ask for, so all of them count against the budget.
const EVERY_HEADER: &str = "remote_headers = true, plotly_user_data = true, dash_token = true";

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_groups_reach_nginx_gunicorn_and_uvicorn_by_default() {
    let nginx = Nginx::start().await;
    let gunicorn = DataApp::start(Framework::Gunicorn, "/").await;
    let uvicorn = DataApp::start(Framework::Uvicorn, "/").await;
    let groups: Vec<String> = (0..2000).map(|i| format!("group-{i:04}")).collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).chain(["finance"]).collect();
    let restricted = "access = \"restricted\"\nallow_groups = [\"finance\", \"group-0007\", \"nobody-has-this\"]";
    let mut builder = gatehouse()
        .user("many", PW, false, &refs)
        .user("few", PW, false, &["finance", "staff"]);
    for (slug, addr) in [("ngx", nginx.addr), ("gun", gunicorn.addr), ("uvi", uvicorn.addr)] {
        builder = builder
            .app(slug, &[addr], &format!("{restricted}\nheaders = {{ {EVERY_HEADER} }}"))
            .app(
                &format!("{slug}-all"),
                &[addr],
                &format!("{restricted}\nheaders = {{ {EVERY_HEADER}, groups_sent = \"all\" }}"),
            );
    }
    let gw = builder.start().await;

    let mut many = gw.browser();
    assert_eq!(many.login("many", PW, None).await.status, 303, "the real sign-in");
    // nginx echoes X-Forwarded-Groups as its body; gunicorn and uvicorn answer JSON.
    let ngx = many.get("/apps/ngx/").await;
    assert_eq!(
        (ngx.status, ngx.body.as_str()),
        (200, "finance,group-0007"),
        "{}",
        nginx.log()
    );
    for (slug, server) in [("gun", &gunicorn), ("uvi", &uvicorn)] {
        let p = many.get(&format!("/apps/{slug}/")).await;
        assert_eq!(p.status, 200, "{slug}: {}\n{}", p.body, server.log());
        assert_eq!(p.json()["groups"], "finance,group-0007", "{slug}");
        assert_eq!(p.json()["user"], "many");
    }
    // Asked again: the same, and the gateway said once per app that it limited the groups.
    assert_eq!(many.get("/apps/ngx/").await.status, 200);
    let log = gw.log();
    for slug in ["ngx", "gun", "uvi"] {
        let said = log
            .lines()
            .filter(|l| l.contains(&format!("app={slug} ")) && l.contains("headers.groups_sent"))
            .count();
        assert_eq!(said, 1, "{slug}: logged once with how to opt in:\n{log}");
    }

    // "all": 2,001 groups in X-Forwarded-Groups, Remote-Groups, Plotly-User-Data, the
    // assertion and the Dash token. nginx (400) and gunicorn (431) refuse it; uvicorn takes it.
    let p = many.get("/apps/ngx-all/").await;
    assert_eq!(p.status, 400, "nginx: {}", p.body);
    let p = many.get("/apps/gun-all/").await;
    assert_eq!(p.status, 431, "gunicorn: {}", p.body);
    // Together some 160 KiB of headers: over uvicorn's ~125 KiB too.
    let p = many.get("/apps/uvi-all/").await;
    assert_eq!(p.status, 400, "uvicorn: {}", p.body);

    // A person whose headers fit is told every group by default.
    let mut few = gw.browser();
    assert_eq!(few.login("few", PW, None).await.status, 303);
    let p = few.get("/apps/ngx/").await;
    assert_eq!((p.status, p.body.as_str()), (200, "finance,staff"));
    let p = few.get("/apps/gun/").await;
    assert_eq!(p.json()["groups"], "finance,staff");
}
