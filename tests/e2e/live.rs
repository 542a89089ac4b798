//! The live access model over real sockets: three gateways on one PostgreSQL behind a real
//! HAProxy (round robin, no stickiness) see each other's changes within a second; config
//! reloads (SIGHUP) swap in valid files and refuse invalid ones without dropping requests;
//! retried requests keep their forwarding headers; no gateway cookie reaches an app or can be
//! set by one; every gateway page carries the security headers.

use std::net::SocketAddr;
use std::time::Duration;

use gatehouse_tests::cluster::{within, LoadBalancer, PgDatabase};
use gatehouse_tests::{Backend, Browser, Gateway};

use crate::{gatehouse, json};

const PW: &str = "correct horse battery staple";

/// How fast a change on one replica must be seen by the others.
const PROPAGATION: Duration = Duration::from_secs(1);

async fn replicas(db: &PgDatabase, backend: &Backend, n: usize) -> Vec<Gateway> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut b = gatehouse()
            .raw(&format!("[store]\nurl = \"{}\"\n", db.url))
            .app("pub", &[backend.addr], "access = \"public\"")
            .app("team", &[backend.addr], "access = \"authenticated\"");
        if i == 0 {
            b = b.user("alice", PW, false, &["staff"]).user("root", PW, true, &[]);
        }
        out.push(b.start().await);
    }
    out
}

fn browser_on(addr: SocketAddr) -> Browser {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    Browser::new(client, format!("http://{addr}"))
}

/// The same cookies, sent to one particular replica.
fn on(b: &Browser, gw: &Gateway) -> Browser {
    let mut other = browser_on(gw.addr);
    other.cookies = b.cookies.clone();
    other
}

async fn status_everywhere(b: &Browser, gws: &[Gateway], path: &str) -> Vec<u16> {
    let mut out = vec![];
    for gw in gws {
        out.push(on(b, gw).get(path).await.status);
    }
    out
}

fn app_row(slug: &str, upstream: SocketAddr, access: &str, groups: &str, users: &str) -> String {
    format!(
        "INSERT INTO apps (slug, name, description, upstreams_json, access, allow_groups_json, allow_users_json, created_at, updated_at) \
         VALUES ('{slug}', '{slug} app', '', '[\"{upstream}\"]', '{access}', '{groups}', '{users}', 0, 0)"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_see_grants_apps_revocations_and_keys_within_a_second() {
    let backend = Backend::start("app").await;
    let db = PgDatabase::create();
    let gws = replicas(&db, &backend, 3).await;
    let lb = LoadBalancer::start(&gws.iter().map(|g| g.addr).collect::<Vec<_>>()).await;

    // Sign-in through the balancer: the form and the POST may land on different replicas.
    let mut alice = browser_on(lb.addr);
    let page = alice.login("alice", PW, Some("/apps/team/")).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(status_everywhere(&alice, &gws, "/apps/team/").await, [200, 200, 200]);

    // A restricted app added by another client (psql): every replica routes it within 1 s,
    // and refuses alice, who is not on its list.
    db.sql(&app_row("fin", backend.addr, "restricted", "[\"finance\"]", "[]"));
    let seen = within(PROPAGATION, || async {
        status_everywhere(&alice, &gws, "/apps/fin/").await == [403, 403, 403]
    })
    .await;
    assert!(
        seen.is_some(),
        "new app not enforced everywhere: {:?}",
        status_everywhere(&alice, &gws, "/apps/fin/").await
    );

    // A grant changed by another client: alice may open it everywhere within 1 s.
    db.sql("UPDATE apps SET allow_users_json = '[\"alice\"]', updated_at = 1 WHERE slug = 'fin'");
    let granted = within(PROPAGATION, || async {
        status_everywhere(&alice, &gws, "/apps/fin/").await == [200, 200, 200]
    })
    .await;
    assert!(
        granted.is_some(),
        "grant not live everywhere: {:?}",
        status_everywhere(&alice, &gws, "/apps/fin/").await
    );
    // … and the portal of every replica lists it.
    for gw in &gws {
        assert!(on(&alice, gw).get("/").await.body.contains("href=\"/apps/fin/\""));
    }
    // Taken back: refused everywhere within 1 s.
    db.sql("UPDATE apps SET allow_users_json = '[]', updated_at = 2 WHERE slug = 'fin'");
    let revoked = within(PROPAGATION, || async {
        status_everywhere(&alice, &gws, "/apps/fin/").await == [403, 403, 403]
    })
    .await;
    assert!(revoked.is_some(), "grant removal not live everywhere");

    // A local account's groups changed through the store API: every replica judges alice
    // by her new groups within 1 s (the cached sessions are dropped and re-read).
    let store = gatehouse_store::Store::open_postgres(&db.url).await.expect("store");
    let admin = gatehouse_store::Actor::new("test-admin", None);
    db.sql("UPDATE apps SET allow_groups_json = '[\"finance\"]', updated_at = 3 WHERE slug = 'fin'");
    store
        .set_user_groups(
            &gatehouse_policy::UserName::new("alice"),
            &[gatehouse_policy::GroupName::new("finance")],
            &admin,
        )
        .await
        .expect("set groups");
    let regrouped = within(PROPAGATION, || async {
        status_everywhere(&alice, &gws, "/apps/fin/").await == [200, 200, 200]
    })
    .await;
    assert!(
        regrouped.is_some(),
        "new groups not live everywhere: {:?}",
        status_everywhere(&alice, &gws, "/apps/fin/").await
    );
    store
        .set_user_groups(&gatehouse_policy::UserName::new("alice"), &[], &admin)
        .await
        .expect("set groups");
    let ungrouped = within(PROPAGATION, || async {
        status_everywhere(&alice, &gws, "/apps/fin/").await == [403, 403, 403]
    })
    .await;
    assert!(ungrouped.is_some(), "removed group still honoured somewhere");
    store.close().await;

    // Signing keys rotated through the CLI: every replica signs with the new key within 1 s;
    // the JWKS keeps the old key while its tokens may be valid.
    let kid_of = |page: &gatehouse_tests::Page| -> String {
        let token = page.json()["headers"]["x-gatehouse-assertion"][0]
            .as_str()
            .unwrap_or("")
            .to_string();
        let header = token.split('.').next().unwrap_or("");
        let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v["kid"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let old_kid = kid_of(&on(&alice, &gws[1]).get("/apps/team/").await);
    assert!(!old_kid.is_empty());
    let out = gws[0].cli(&["keys", "rotate"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated = within(PROPAGATION, || async {
        let mut kids = vec![];
        for gw in &gws {
            kids.push(kid_of(&on(&alice, gw).get("/apps/team/").await));
        }
        kids.iter().all(|k| !k.is_empty() && *k != old_kid)
    })
    .await;
    assert!(rotated.is_some(), "not every replica signs with the new key");
    for gw in &gws {
        let jwks = gw
            .get("/.well-known/gatehouse/jwks.json")
            .await
            .text()
            .await
            .unwrap_or_default();
        assert!(jwks.contains(&old_kid), "old key still published: {jwks}");
    }

    // Sign-out on one replica: the session is refused by the others within 1 s.
    let mut via_first = on(&alice, &gws[0]);
    assert_eq!(via_first.logout().await.status, 303);
    let ended = within(PROPAGATION, || async {
        let mut s = vec![];
        for gw in &gws[1..] {
            s.push(on(&alice, gw).get_json("/apps/team/").await.status);
        }
        s == [401, 401]
    })
    .await;
    assert!(ended.is_some(), "revocation not seen by the other replicas within 1 s");
    drop(lb);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_in_the_store_that_clashes_with_the_file_is_reported_not_served() {
    let file_app = Backend::start("file").await;
    let store_app = Backend::start("store").await;
    let db = PgDatabase::create();
    let gw = gatehouse()
        .raw(&format!("[store]\nurl = \"{}\"\n", db.url))
        .app("pub", &[file_app.addr], "access = \"public\"")
        .start()
        .await;
    db.sql(&app_row("pub", store_app.addr, "public", "[]", "[]"));
    let logged = within(Duration::from_secs(2), || async {
        gw.log().contains("store.apps[\\\"pub\\\"]") || gw.log().contains("store.apps[\"pub\"]")
    })
    .await;
    assert!(logged.is_some(), "clash not reported; log:\n{}", gw.log());
    let res = json(gw.get("/apps/pub/").await).await;
    assert_eq!(res["backend"], "file", "the file's app keeps serving");
}

fn write_config(gw: &Gateway, extra: &str) {
    let text = std::fs::read_to_string(gw.config_path()).expect("config");
    std::fs::write(gw.config_path(), format!("{text}\n{extra}\n")).expect("write config");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_in_a_valid_config_and_refuses_an_invalid_one() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let gw = gatehouse().app("a", &[a.addr], "access = \"public\"").start().await;
    assert_eq!(gw.get("/apps/b/").await.status(), 404);

    // A valid change: app b appears, a keeps serving, the process stays up.
    let original = std::fs::read_to_string(gw.config_path()).expect("config");
    write_config(
        &gw,
        &format!(
            "[[apps]]\nslug = \"b\"\nupstreams = [\"{}\"]\naccess = \"public\"\n",
            b.addr
        ),
    );
    gw.signal("HUP");
    let added = within(Duration::from_secs(3), || async {
        gw.get("/apps/b/").await.status() == 200
    })
    .await;
    assert!(added.is_some(), "app b not served after SIGHUP; log:\n{}", gw.log());
    assert_eq!(json(gw.get("/apps/b/x").await).await["backend"], "b");

    // An invalid file: refused with every problem logged; the running config stays.
    std::fs::write(
        gw.config_path(),
        format!("{original}\n[[apps]]\nslug = \"BAD SLUG\"\nupstreams = [\"nowhere:80a\"]\n"),
    )
    .expect("write");
    let out = gw.cli(&["reload", "--pid", &gw.pid().to_string()], None);
    assert!(!out.status.success(), "reload of an invalid file must fail");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("slug") && said.contains("upstreams[0]"), "{said}");
    gw.signal("HUP");
    let refused = within(Duration::from_secs(3), || async {
        gw.log().contains("config reload refused")
    })
    .await;
    assert!(refused.is_some(), "log:\n{}", gw.log());
    let log = gw.log();
    assert!(
        log.contains("BAD SLUG") && log.contains("nowhere:80a"),
        "every problem is logged:\n{log}"
    );
    assert_eq!(
        gw.get("/apps/b/").await.status(),
        200,
        "the last good config keeps serving"
    );
    assert_eq!(gw.get("/apps/a/").await.status(), 200);

    // `gatehouse reload` of a valid file signals the process.
    std::fs::write(gw.config_path(), &original).expect("write");
    let out = gw.cli(&["reload", "--pid", &gw.pid().to_string()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let removed = within(Duration::from_secs(3), || async {
        gw.get("/apps/b/").await.status() == 404
    })
    .await;
    assert!(
        removed.is_some(),
        "app b still served after reloading the original file"
    );
    assert!(
        !gw.log().contains('\u{1b}'),
        "a log file gets plain text, no terminal colour codes"
    );
}

/// Parses wrk's summary: (requests, non-2xx/3xx, socket errors).
fn wrk_summary(out: &str) -> (u64, u64, u64) {
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let non2xx = out
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let errors = out
        .lines()
        .find(|l| l.contains("Socket errors"))
        .map(|l| {
            l.split(',')
                .filter_map(|p| p.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()))
                .sum()
        })
        .unwrap_or(0);
    (requests, non2xx, errors)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_request_fails_while_config_reloads_and_grants_change() {
    let backend = Backend::start("app").await;
    let other = Backend::start("other").await;
    let db = PgDatabase::create();
    let gw = gatehouse()
        .raw(&format!("[store]\nurl = \"{}\"\n", db.url))
        .app("pub", &[backend.addr], "access = \"public\"")
        .start()
        .await;
    db.sql(&app_row("fin", other.addr, "restricted", "[]", "[]"));
    let url = gw.url("/apps/pub/load");
    let wrk = tokio::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(["-t1", "-c8", "-d10s", "--latency", &url])
            .output()
            .expect("wrk runs (tests/peers/install.sh installs it)")
    });
    // Grants change every 100 ms (through the store API, as the admin UI will), and the
    // config is reloaded twice, while wrk runs.
    let store = gatehouse_store::Store::open_postgres(&db.url).await.expect("store");
    let actor = gatehouse_store::Actor::new("test", None);
    let mut fin = store.app("fin").await.expect("read").expect("fin exists");
    let stop = std::time::Instant::now() + Duration::from_secs(9);
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut n = 0;
    while std::time::Instant::now() < stop {
        every.tick().await;
        fin.allow_users = if n % 2 == 0 {
            vec![gatehouse_policy::UserName::new("alice")]
        } else {
            vec![]
        };
        store.upsert_app(&fin, &actor).await.expect("grant change");
        if n == 10 || n == 30 {
            write_config(
                &gw,
                &format!(
                    "[[apps]]\nslug = \"extra{n}\"\nupstreams = [\"{}\"]\naccess = \"public\"\n",
                    other.addr
                ),
            );
            gw.signal("HUP");
        }
        n += 1;
    }
    let out = wrk.await.expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (requests, non2xx, errors) = wrk_summary(&text);
    assert!(requests > 1000, "wrk ran: {text}");
    assert_eq!((non2xx, errors), (0, 0), "every request succeeded:\n{text}");
    assert!(n >= 50, "grants changed {n} times");
    for app in ["/apps/extra10/", "/apps/extra30/"] {
        assert_eq!(gw.get(app).await.status(), 200, "both reloads took effect: {app}");
    }
}

/// An upstream that answers the first request of a connection with keep-alive, then drops
/// the connection when the next request arrives on it: a reused connection that fails.
async fn flaky_keepalive_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut seen = 0;
                let Ok(n) = s.read(&mut buf).await else { return };
                if n == 0 {
                    return;
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                seen += 1;
                let xff = req
                    .lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-for:"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let body = format!("{{\"n\":{seen},\"xff\":\"{xff}\"}}");
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
                // The next request on this connection is met with a reset.
                let _ = s.read(&mut buf).await;
                drop(s);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_request_keeps_its_forwarding_headers() {
    let up = flaky_keepalive_upstream().await;
    let gw = gatehouse().app("flaky", &[up], "access = \"public\"").start().await;
    let client = gw.client();
    for i in 0..6 {
        // Every request after the first finds a pooled connection that the upstream drops.
        let res = client.get(gw.url("/apps/flaky/x")).send().await.expect("request");
        let status = res.status();
        if status != 200 {
            panic!(
                "request {i}: {status} {}\nlog:\n{}",
                res.text().await.unwrap_or_default(),
                gw.log()
            );
        }
        let v: serde_json::Value = res.json().await.expect("json");
        assert_eq!(
            v["xff"], "127.0.0.1",
            "request {i} reached the app without X-Forwarded-For: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_cookies_never_reach_apps_and_apps_cannot_set_them() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app("pub", &[backend.addr], "access = \"public\"")
        .user("alice", PW, false, &[])
        .start()
        .await;
    let names = [
        "gatehouse_session",
        "gatehouse_session_csrf",
        "gatehouse_session_login",
        "gatehouse_session_saml",
    ];
    let cookie = names.iter().map(|n| format!("{n}=x")).collect::<Vec<_>>().join("; ") + "; theme=dark";
    let res = gw
        .client()
        .get(gw.url("/apps/pub/"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("request");
    let v = json(res).await;
    let sent = v["headers"]["cookie"][0].as_str().unwrap_or("").to_string();
    assert_eq!(sent, "theme=dark", "only the app's own cookies are forwarded");

    // The echo backend sets cookies named in `?set=`; gateway cookie names are dropped.
    let res = gw
        .client()
        .get(gw.url("/apps/pub/set-cookie?set=gatehouse_session,GATEHOUSE_SESSION_CSRF,theme"))
        .send()
        .await
        .expect("request");
    let set: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].starts_with("theme="), "{set:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_gateway_page_carries_the_security_headers() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app("pub", &[backend.addr], "access = \"public\"")
        .app("team", &[backend.addr], "access = \"authenticated\"")
        .app("fin", &[backend.addr], "allow_groups = [\"finance\"]")
        .user("alice", PW, false, &[])
        .start()
        .await;
    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", PW, None).await.status, 303);
    let mut anon = gw.browser();
    let mut pages = vec![
        ("portal", anon.get("/").await),
        ("login", anon.get("/.gatehouse/login").await),
        ("logout", anon.get("/.gatehouse/logout").await),
        ("gateway 404", anon.get("/.gatehouse/nothing").await),
        ("app 404", anon.get("/apps/nothing/").await),
        ("bad path", anon.get("/apps/pub/%2fx").await),
        ("jwks", anon.get("/.well-known/gatehouse/jwks.json").await),
        ("sign-in redirect", anon.get("/apps/team/").await),
        ("401", anon.get_json("/apps/team/").await),
        ("unknown provider", anon.get("/.gatehouse/oidc/nope/start").await),
    ];
    pages.push(("403", alice.get("/apps/fin/").await));
    pages.push(("portal signed in", alice.get("/").await));
    for (what, page) in &pages {
        let h = |n: &str| {
            page.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(h("referrer-policy"), "same-origin", "{what}");
        assert!(
            h("content-security-policy").contains("frame-ancestors 'none'"),
            "{what}"
        );
    }
}

/// Sign-ins (both outcomes), sign-outs and revocations are in the audit log with who, from
/// where, and why — on SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_sign_outs_and_revocations_are_audited() {
    let backend = Backend::start("app").await;
    for postgres in [false, true] {
        let db = postgres.then(PgDatabase::create);
        let mut b = gatehouse()
            .app("team", &[backend.addr], "access = \"authenticated\"")
            .user("alice", PW, false, &[]);
        if let Some(db) = &db {
            b = b.raw(&format!("[store]\nurl = \"{}\"\n", db.url));
        }
        let gw = b.start().await;
        let mut alice = gw.browser();
        assert_eq!(alice.login("alice", "wrong password", None).await.status, 401);
        assert_eq!(alice.login(" Alice", PW, None).await.status, 303);
        assert_eq!(alice.logout().await.status, 303);
        let mut again = gw.browser();
        assert_eq!(again.login("alice", PW, None).await.status, 303);
        // Revocation: a new password ends every session of the user.
        let out = gw.cli(&["user", "set-password", "alice"], Some("a brand new password 123\n"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        let store = match &db {
            Some(db) => gatehouse_store::Store::open_postgres(&db.url).await,
            None => gatehouse_store::Store::open_sqlite(&gw.dir.path().join("gatehouse.db")).await,
        }
        .expect("store");
        let events = store
            .audit_events(&gatehouse_store::AuditFilter::default())
            .await
            .expect("audit");
        let find = |action: &str| {
            events
                .iter()
                .find(|e| e.action == action)
                .unwrap_or_else(|| panic!("no {action} event (postgres: {postgres}): {events:#?}"))
        };
        let failure = find("signin.failure");
        assert_eq!((failure.actor.as_str(), failure.target.as_str()), ("alice", "alice"));
        assert_eq!(failure.client.as_deref(), Some("127.0.0.1"));
        assert!(
            failure.detail["reason"].as_str().is_some_and(|r| r.contains("wrong")),
            "{failure:?}"
        );
        let success = find("signin.success");
        assert_eq!(success.target, "alice");
        assert_eq!(success.client.as_deref(), Some("127.0.0.1"));
        assert_eq!(success.detail["provider"], "local");
        let signout = find("signout");
        assert_eq!(
            (signout.actor.as_str(), signout.client.as_deref()),
            ("alice", Some("127.0.0.1"))
        );
        let revoked = find("user.sessions.delete");
        assert!(revoked.actor.starts_with("cli:"), "{revoked:?}");
        assert_eq!(events.iter().filter(|e| e.action == "signin.success").count(), 2);
        store.close().await;
    }
}
