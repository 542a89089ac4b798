//! Process-level behaviour: metrics, access logs, TLS, graceful shutdown, the demo.

use std::time::{Duration, Instant};

use gatehouse_tests::{raw, Backend};

use crate::{gatehouse, json};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_app_and_status() {
    let b = Backend::start("b").await;
    let gw = gatehouse().app("sales", &[b.addr], "access = \"public\"").start().await;
    for _ in 0..3 {
        assert_eq!(gw.get("/apps/sales/").await.status(), 200);
    }
    assert_eq!(gw.get("/apps/none/").await.status(), 404);
    let m = gw.metrics_text().await;
    assert!(
        m.contains("gatehouse_requests_total{app=\"sales\",status=\"200\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_requests_total{app=\"-\",status=\"404\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("gatehouse_upstream_duration_seconds_count{app=\"sales\"} 3"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "gatehouse_upstream_healthy{{app=\"sales\",upstream=\"{}\"}} 1",
            b.addr
        )),
        "{m}"
    );
}

/// The environment the gateway process runs with now (after it started itself again).
fn environment_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("the gateway's environment");
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Anonymous mappings of a process: (size KiB, resident KiB, huge-page KiB) each.
fn anonymous_mappings(pid: u32) -> Vec<(u64, u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("the gateway's smaps");
    let mut out = vec![];
    let mut current: Option<(u64, u64, u64)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        let kib = |w: Option<&str>| w.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if first.contains('-') && !first.ends_with(':') {
            out.extend(current.take());
            // "start-end perms offset dev inode [path]": anonymous when no path follows.
            if line.split_whitespace().count() == 5 {
                current = Some((0, 0, 0));
            }
        } else if let Some(m) = current.as_mut() {
            match first {
                "Size:" => m.0 = kib(words.next()),
                "Rss:" => m.1 = kib(words.next()),
                "AnonHugePages:" => m.2 = kib(words.next()),
                _ => {}
            }
        }
    }
    out.extend(current);
    out
}

/// `serve` starts itself again with its allocator settings (an operator's own values win), and
/// they hold: no transparent huge pages, each of which made 2 MiB resident at once (on a
/// machine whose kernel has THP `never` this part holds anyway). That released argon2 memory
/// goes back to the system is measured by `benches/load/scale.sh` ("demo, … s after them").
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_runs_with_its_allocator_settings_unless_the_operator_set_them() {
    let b = Backend::start("b").await;
    let gw = gatehouse().app("sales", &[b.addr], "access = \"public\"").start().await;
    for _ in 0..50 {
        assert_eq!(gw.get("/apps/sales/").await.status(), 200);
    }
    let env = environment_of(gw.pid());
    for setting in ["MIMALLOC_ALLOW_THP=0", "MIMALLOC_ARENA_MAX_OBJECT_SIZE=4096"] {
        assert!(env.iter().any(|v| v == setting), "{setting} missing: {env:?}");
    }
    let maps = anonymous_mappings(gw.pid());
    let huge: u64 = maps.iter().map(|m| m.2).sum();
    assert_eq!(huge, 0, "transparent huge pages in use: {maps:?}");

    let own = gatehouse()
        .env("MIMALLOC_ALLOW_THP", "1")
        .app("sales", &[b.addr], "access = \"public\"")
        .start()
        .await;
    assert_eq!(own.get("/apps/sales/").await.status(), 200);
    let env = environment_of(own.pid());
    assert!(env.iter().any(|v| v == "MIMALLOC_ALLOW_THP=1"), "{env:?}");
    assert!(
        env.iter().any(|v| v == "MIMALLOC_ARENA_MAX_OBJECT_SIZE=4096"),
        "{env:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_log_has_one_line_per_request() {
    let b = Backend::start("b").await;
    let gw = gatehouse()
        .arg("--log-format")
        .arg("json")
        .app("sales", &[b.addr], "access = \"public\"")
        .start()
        .await;
    assert_eq!(gw.get("/apps/sales/x").await.status(), 200);
    // The access line is written after the response: wait for it with a deadline.
    let g = &gw;
    gatehouse_tests::cluster::within(
        Duration::from_secs(5),
        || async move { g.log().contains("/apps/sales/x") },
    )
    .await;
    let log = gw.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["path"] == "/apps/sales/x")
        .unwrap_or_else(|| panic!("no JSON access line:\n{log}"));
    assert_eq!(line["app"], "sales");
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_termination_and_http_redirect() {
    let b = Backend::start("b").await;
    let gw = gatehouse()
        .tls(true)
        .app("sales", &[b.addr], "access = \"public\"")
        .start()
        .await;
    let r = json(gw.get("/apps/sales/x").await).await;
    assert_eq!(r["headers"]["x-forwarded-proto"][0], "https");
    let redirect = gw.redirect.unwrap();
    let r = raw::get(redirect, "/apps/sales/x?y=1", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/apps/sales/x?y=1", gw.addr.port()).as_str())
    );
}

async fn slow_request_survives(signal: &str) {
    let b = Backend::start("b").await;
    let mut gw = gatehouse().app("slow", &[b.addr], "access = \"public\"").start().await;
    let client = gw.client();
    let url = gw.url("/apps/slow/slow?ms=1500");
    let req = tokio::spawn(async move { client.get(url).send().await });
    // In flight once the backend has it.
    assert!(
        gatehouse_tests::cluster::within(Duration::from_secs(5), || {
            let b = &b;
            async move { b.hits() >= 1 }
        })
        .await
        .is_some(),
        "the slow request never reached the backend"
    );
    let t = Instant::now();
    gw.signal(signal);
    let res = req.await.unwrap().expect("in-flight request completes");
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["slept_ms"], 1500);
    let status = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(8))).expect("process exits");
    assert!(status.success(), "exit status {status:?}; log:\n{}", gw.log());
    assert!(t.elapsed() < Duration::from_secs(5), "shutdown took {:?}", t.elapsed());
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    slow_request_survives("TERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_lets_in_flight_requests_finish() {
    slow_request_survives("INT").await;
}

/// The README's first command: `gatehouse demo` serves the portal, the three sample apps
/// and the two accounts, whose access differs.
#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_the_sample_apps_to_its_accounts() {
    let demo = gatehouse_tests::demo::Demo::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_gatehouse")),
        &[("GATEHOUSE_ADMIN_PASSWORD", "demo-admin-pw")],
        &["GATEHOUSE_VIEWER_PASSWORD"],
    )
    .await;
    let (banner, port, base) = (demo.banner.clone(), demo.port, demo.base.clone());
    // The two accounts were hashed at start (19 MiB of argon2 working memory each time);
    // that memory is the system's again before the demo serves.
    let anon_kib = gatehouse_tests::status_kib(demo.pid(), "RssAnon");
    assert!(anon_kib > 0, "no RssAnon for the demo");
    assert!(
        anon_kib < 18 * 1024,
        "the demo holds {anon_kib} KiB of anonymous memory after start"
    );
    assert!(
        banner.contains(&format!("http://127.0.0.1:{port}/apps/whoami/")),
        "{banner}"
    );
    // The viewer's password was generated and printed once.
    let viewer_pw = banner
        .lines()
        .find(|l| l.trim_start().starts_with("viewer:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no viewer password in:\n{banner}"))
        .to_string();
    assert!(
        !banner.contains("demo-admin-pw"),
        "passwords from the environment are not echoed"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut anon = gatehouse_tests::Browser::new(client.clone(), &base);
    let portal = anon.get("/").await.body;
    assert!(
        portal.contains("/apps/public/") && !portal.contains("/apps/whoami/"),
        "{portal}"
    );
    assert_eq!(anon.get("/apps/whoami/").await.status, 302);

    let mut admin = gatehouse_tests::Browser::new(client.clone(), &base);
    assert_eq!(admin.login("admin", "demo-admin-pw", None).await.status, 303);
    let portal = admin.get("/").await.body;
    for app in ["/apps/whoami/", "/apps/public/", "/apps/admins-only/"] {
        assert!(portal.contains(app), "admin portal lacks {app}");
    }
    let who = admin.get_json("/apps/whoami/hello").await.json();
    assert_eq!(who["path"], "/apps/whoami/hello");
    assert_eq!(who["headers"]["x-forwarded-user"], "admin");
    assert!(who["headers"]["plotly-user-data"]
        .as_str()
        .unwrap()
        .contains("\"username\":\"admin\""));
    let html = admin.get("/apps/whoami/").await.body;
    assert!(html.contains("<table>") && html.contains("x-forwarded-user"), "{html}");

    let mut viewer = gatehouse_tests::Browser::new(client, &base);
    assert_eq!(viewer.login("viewer", &viewer_pw, None).await.status, 303);
    let portal = viewer.get("/").await.body;
    assert!(portal.contains("/apps/whoami/") && !portal.contains("/apps/admins-only/"));
    assert_eq!(viewer.get("/apps/admins-only/").await.status, 403);
    assert!(demo.dir.path().join("gatehouse.toml").is_file() && demo.dir.path().join("gatehouse.db").is_file());
}
