//! The access core end to end: sign-in, the portal, identity headers and the assertion JWT,
//! 403 reasons, sign-out, spoofing, open redirects, timeouts, revocation, big directories.

use std::time::{Duration, Instant};

use gatehouse_tests::{raw, Backend, Browser, Gateway};
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};

use crate::gatehouse;

const PW: &str = "correct horse battery";

async fn start(backend: &Backend, server_extra: &str) -> Gateway {
    let b = [backend.addr];
    gatehouse()
        .server(server_extra)
        .app("open", &b, "access = \"authenticated\"\nname = \"Open to staff\"\ndescription = \"Everyone signed in\"")
        .app("fin", &b, "name = \"Finance\"\naccess = \"restricted\"\nallow_groups = [\"Finance\"]\nheaders = { groups_sent = \"referenced\" }")
        .app("secret", &b, "name = \"Secret\"\naccess = \"restricted\"")
        .app("pub", &b, "name = \"Public\"\naccess = \"public\"")
        .app("dash", &b, "name = \"Dash\"\naccess = \"authenticated\"\nheaders = { remote_headers = true, plotly_user_data = true }")
        .user("alice", PW, false, &["finance", "staff"])
        .user("bob", PW, false, &["sales"])
        .user("root", PW, true, &[])
        .user("carol", PW, false, &[])
        .start()
        .await
}

/// Verifies an assertion against the gateway's JWKS for audience `aud`.
async fn verify(gw: &Gateway, token: &str, aud: &str) -> Result<serde_json::Value, String> {
    let jwks: jsonwebtoken::jwk::JwkSet = gw
        .client()
        .get(gw.url("/.well-known/gatehouse/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = decode_header(token).map_err(|e| e.to_string())?.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&[gw.url("")]);
    decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn header(page: &gatehouse_tests::Page, name: &str) -> Option<String> {
    page.json()["headers"][name]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_portal_identity_forbidden_and_sign_out() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut alice = gw.browser();

    // Not signed in: a browser is sent to the login page, keeping where it was going;
    // an API client gets a 401 in JSON.
    let p = alice.get("/apps/open/report?q=1").await;
    assert_eq!(p.status, 302);
    assert_eq!(p.location(), Some("/.gatehouse/login?rd=/apps/open/report%3Fq%3D1"));
    let p = alice.get_json("/apps/open/report").await;
    assert_eq!(p.status, 401);
    assert_eq!(p.json()["status"], 401);

    // Anonymous portal: public apps and a sign-in button.
    let p = alice.get("/").await;
    assert!(
        p.body.contains("href=\"/apps/pub/\"") && !p.body.contains("/apps/open/"),
        "{}",
        p.body
    );
    assert!(p.body.contains("Sign in"));

    // Wrong password: the form again, with a clear message, and no session.
    let p = alice.login("alice", "nope", None).await;
    assert_eq!(p.status, 401);
    assert!(p.body.contains("Wrong user name or password."));

    let p = alice.login("Alice", PW, Some("/apps/open/report?q=1")).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/apps/open/report?q=1"), "back where she started");
    let session_cookie = alice.cookies.get("gatehouse_session").cloned().expect("session cookie");
    assert!(alice
        .set_cookies
        .iter()
        .any(|c| c.starts_with("gatehouse_session=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")));

    // The portal lists exactly the apps she may open.
    let p = alice.get("/").await;
    for yes in ["/apps/open/", "/apps/fin/", "/apps/pub/", "/apps/dash/"] {
        assert!(p.body.contains(&format!("href=\"{yes}\"")), "{yes} missing");
    }
    assert!(
        !p.body.contains("/apps/secret/"),
        "portal must not list what she cannot open"
    );
    assert!(p.body.contains("Sign out"));

    // The app sees who is calling, and a verifiable assertion for itself only.
    let p = alice
        .get_with(
            "/apps/open/x",
            &[("cookie", &format!("gatehouse_session={session_cookie}; theme=dark"))],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(header(&p, "x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(header(&p, "x-forwarded-preferred-username").as_deref(), Some("alice"));
    assert_eq!(header(&p, "x-forwarded-groups").as_deref(), Some("finance,staff"));
    let cookie_seen = header(&p, "cookie").unwrap_or_default();
    assert!(
        !cookie_seen.contains("gatehouse_session"),
        "gateway cookie reached the app: {cookie_seen}"
    );
    assert!(
        cookie_seen.contains("theme=dark"),
        "the app's own cookies pass: {cookie_seen}"
    );
    let token = header(&p, "x-gatehouse-assertion").expect("assertion");
    let claims = verify(&gw, &token, "open")
        .await
        .expect("assertion verifies against the JWKS");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "open");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 300);
    assert!(
        verify(&gw, &token, "fin").await.is_err(),
        "an assertion for one app is refused by another"
    );

    // groups_sent = "referenced": only the groups the app's policy names.
    let p = alice.get("/apps/fin/").await;
    assert_eq!(header(&p, "x-forwarded-groups").as_deref(), Some("finance"));

    // Dash apps: Remote-* and Plotly-User-Data.
    let p = alice.get("/apps/dash/").await;
    assert_eq!(header(&p, "remote-user").as_deref(), Some("alice"));
    let plotly: serde_json::Value = serde_json::from_str(&header(&p, "plotly-user-data").unwrap()).unwrap();
    assert_eq!(plotly["username"], "alice");
    assert_eq!(plotly["groups"], serde_json::json!(["finance", "staff"]));

    // A restricted app she is not allowed in: 403 saying which app and why.
    let p = alice.get("/apps/secret/").await;
    assert_eq!(p.status, 403);
    assert!(p.body.contains("You cannot open Secret"), "{}", p.body);
    assert!(p.body.contains("allow-list"), "{}", p.body);
    assert!(p.body.contains("href=\"/\""), "403 page links to the portal");
    assert_eq!(backend.hits(), 3, "denied requests never reach the app");

    // Sign-out needs the CSRF token.
    let p = alice.post_form("/.gatehouse/logout", &[("csrf", "forged")]).await;
    assert_eq!(p.status, 400);
    assert_eq!(
        alice.get("/apps/open/").await.status,
        200,
        "a forged sign-out changes nothing"
    );
    let p = alice.logout().await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), Some("/.gatehouse/login?signed_out=1"));

    // The old cookie is dead, server-side.
    let mut replay = gw.browser();
    replay.cookies.insert("gatehouse_session".into(), session_cookie);
    assert_eq!(replay.get("/apps/open/").await.status, 302);
    assert_eq!(replay.get_json("/apps/open/").await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_open_everything_and_bob_is_kept_out() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut root = gw.browser();
    assert_eq!(root.login("root", PW, None).await.status, 303);
    assert_eq!(root.get("/apps/secret/").await.status, 200);
    assert_eq!(root.get("/apps/fin/").await.status, 200);
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", PW, None).await.status, 303);
    assert_eq!(bob.get("/apps/fin/").await.status, 403);
    let portal = bob.get("/").await.body;
    assert!(!portal.contains("/apps/fin/") && portal.contains("/apps/open/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_never_reaches_the_app() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    // A genuine assertion the gateway signed for alice, replayed by bob: it verifies, so only
    // its decoded claims tell it apart from bob's own.
    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", PW, None).await.status, 303);
    let alices = header(&alice.get("/apps/open/").await, "x-gatehouse-assertion").unwrap();
    assert_eq!(verify(&gw, &alices, "open").await.unwrap()["sub"], "alice");
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.";
    let spoof: &[(&str, &str)] = &[
        ("X-Forwarded-User", "admin"),
        ("x-forwarded-user", "admin"),
        ("X_Forwarded_User", "admin"),
        ("X-Forwarded-Email", "admin@evil"),
        ("X-Forwarded-Groups", "admins"),
        ("X_FORWARDED_GROUPS", "admins"),
        ("X-Forwarded-Preferred-Username", "admin"),
        ("Remote-User", "admin"),
        ("remote_groups", "admins"),
        ("Remote-Groups", "admins"),
        ("Remote-Email", "admin@evil"),
        ("remote-email", "admin@evil"),
        ("REMOTE_EMAIL", "admin@evil"),
        ("Remote-Name", "admin"),
        ("remote_name", "admin"),
        ("REMOTE-NAME", "admin"),
        ("Plotly-User-Data", "{\"username\":\"admin\"}"),
        ("plotly_user_data", "{\"username\":\"admin\"}"),
        ("X-Gatehouse-Assertion", &alices),
        ("x_gatehouse_assertion", &alices),
        ("X-GATEHOUSE-ASSERTION", forged),
    ];
    let identity = [
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-gatehouse-assertion",
        "remote-user",
        "remote-groups",
        "remote-email",
        "remote-name",
        "plotly-user-data",
    ];
    let check = |body: &str, who: &str| -> serde_json::Value {
        assert!(!body.contains("admin"), "{who}: spoofed value reached the app: {body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        for (name, values) in v["headers"].as_object().unwrap() {
            assert!(!name.contains('_'), "{who}: underscore header {name} passed");
            assert!(
                values.as_array().is_some_and(|a| a.len() == 1) || !identity.contains(&name.as_str()),
                "{who}: {name} reached the app more than once: {values}"
            );
        }
        v
    };
    // Anonymous on a public app: no identity header at all, no assertion of anyone's.
    let r = raw::get(gw.addr, "/apps/pub/", spoof).await;
    assert_eq!(r.status, 200);
    let v = check(&r.body, "anonymous");
    for name in identity.iter().chain(&["x-forwarded-user"]) {
        assert!(
            v["headers"].get(name).is_none(),
            "anonymous: {name} reached the app: {}",
            r.body
        );
    }
    // Signed in: the gateway's values replace the client's; apps without the options get none.
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", PW, None).await.status, 303);
    let cookie = format!("gatehouse_session={}", bob.cookies["gatehouse_session"]);
    let mut headers = spoof.to_vec();
    headers.push(("Cookie", &cookie));
    for (app, slug) in [("/apps/open/", "open"), ("/apps/dash/", "dash"), ("/apps/pub/", "pub")] {
        let r = raw::get(gw.addr, app, &headers).await;
        assert_eq!(r.status, 200, "{app}: {}", r.body);
        let v = check(&r.body, app);
        let got = |name: &str| v["headers"][name][0].as_str().map(str::to_string);
        assert_eq!(got("x-forwarded-user").as_deref(), Some("bob"), "{app}: {}", r.body);
        let token = got("x-gatehouse-assertion").expect("the gateway's assertion");
        assert_ne!(token, alices, "{app}: the client's assertion reached the app");
        let claims = verify(&gw, &token, slug)
            .await
            .unwrap_or_else(|e| panic!("{app}: the assertion does not verify: {e}"));
        assert_eq!(claims["sub"], "bob", "{app}: {claims}");
        assert_eq!(claims["aud"], slug, "{app}: {claims}");
        assert_eq!(
            decode_header(&token).unwrap().kid,
            decode_header(&alices).unwrap().kid,
            "{app}: signed with the gateway's current key"
        );
        if slug == "dash" {
            assert_eq!(got("remote-user").as_deref(), Some("bob"));
            assert_eq!(got("remote-name").as_deref(), Some("bob"));
            assert_eq!(got("remote-groups").as_deref(), Some("sales"));
            assert_eq!(got("remote-email").as_deref(), Some(""));
            let plotly: serde_json::Value = serde_json::from_str(&got("plotly-user-data").unwrap()).unwrap();
            assert_eq!(plotly, serde_json::json!({ "username": "bob", "groups": ["sales"] }));
        } else {
            for name in [
                "remote-user",
                "remote-groups",
                "remote-email",
                "remote-name",
                "plotly-user-data",
            ] {
                assert!(
                    v["headers"].get(name).is_none(),
                    "{app}: {name} reached the app: {}",
                    r.body
                );
            }
        }
        assert!(
            !r.body.contains("gatehouse_session"),
            "{app}: gateway cookie reached the app"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_keep_each_apps_policy() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", PW, None).await.status, 303);
    let cookie = format!("gatehouse_session={}", bob.cookies["gatehouse_session"]);
    for target in [
        "/apps/pub/../secret/",
        "/apps/pub/%2e%2e/secret/",
        "/apps//secret/",
        "/apps/open/./../fin/x",
    ] {
        let r = raw::get(gw.addr, target, &[("Cookie", &cookie), ("Accept", "application/json")]).await;
        assert_eq!(r.status, 403, "{target} must be judged by the app it names: {}", r.body);
    }
    // README: `%2f`, `%5c`, `..;` and climbing above `/` are refused with 400.
    for target in [
        "/apps/pub%2f..%2fsecret/",
        "/apps/pub%2F..%2Fsecret/",
        "/apps/pub/..%5csecret/",
        "/apps/pub/..;/secret/",
        "/apps/pub/../../../secret/",
    ] {
        let r = raw::get(gw.addr, target, &[("Cookie", &cookie), ("Accept", "application/json")]).await;
        assert_eq!(r.status, 400, "{target}: {}", r.body);
    }
    // Names that are not an app's: not found (app slugs are matched exactly).
    for target in ["/apps/secret;x/", "/apps/SECRET/"] {
        let r = raw::get(gw.addr, target, &[("Cookie", &cookie), ("Accept", "application/json")]).await;
        assert_eq!(r.status, 404, "{target}: {}", r.body);
    }
    let r = raw::get(gw.addr, "/apps/pub/../../.gatehouse/admin/", &[("Cookie", &cookie)]).await;
    assert_ne!(r.status, 200, "admin prefix not reachable by a trick");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirects_fall_back_to_the_portal() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    for rd in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "%252F%252Fevil.example",
        "javascript:alert(1)",
    ] {
        let mut b = gw.browser();
        let p = b.login("bob", PW, Some(rd)).await;
        assert_eq!(p.status, 303);
        assert_eq!(p.location(), Some("/"), "rd={rd:?}");
    }
    // The login page itself never echoes a foreign target into its form.
    let mut b = gw.browser();
    let p = b.get("/.gatehouse/login?rd=//evil.example").await;
    assert_eq!(p.input_value("rd").as_deref(), Some("/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_form_needs_csrf_and_failures_are_rate_limited() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut b = gw.browser();
    let _ = b.get("/.gatehouse/login").await;
    let p = b
        .post_form(
            "/.gatehouse/login",
            &[("username", "bob"), ("password", PW), ("csrf", "x")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(!b.cookies.contains_key("gatehouse_session"));
    let p = b.post_form("/.gatehouse/login", &[("garbage", "\u{0}")]).await;
    assert_eq!(p.status, 400, "malformed form gets a clear error");

    // Unknown user and wrong password: same page, similar time (median of 3 each).
    let mut t_unknown = vec![];
    let mut t_wrong = vec![];
    let (mut unknown, mut wrong) = (None, None);
    for i in 0..3 {
        let t = Instant::now();
        unknown = Some(b.login(&format!("nobody{i}"), "whatever-pass", None).await);
        t_unknown.push(t.elapsed());
        let t = Instant::now();
        wrong = Some(b.login("carol", "whatever-pass", None).await);
        t_wrong.push(t.elapsed());
    }
    let (unknown, wrong) = (unknown.unwrap(), wrong.unwrap());
    t_unknown.sort();
    t_wrong.sort();
    let (t_unknown, t_wrong) = (t_unknown[1], t_wrong[1]);
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.status, wrong.status);
    let alert = |s: &str| {
        s.lines()
            .filter(|l| l.contains("class=\"alert"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(alert(&unknown.body), alert(&wrong.body));
    assert!(
        t_unknown * 3 > t_wrong && t_wrong * 3 > t_unknown,
        "timing differs: {t_unknown:?} vs {t_wrong:?}"
    );

    // Per user: after 10 failures even the right password is refused for a while.
    for _ in 0..10 {
        assert_eq!(b.login("bob", "bad-password", None).await.status, 401);
    }
    let p = b.login("bob", PW, None).await;
    assert_eq!(p.status, 429, "{}", p.body);
    assert!(p.body.contains("Too many failed sign-ins"));
    // From another address (127.0.0.2, a different client to the gateway): bob is still
    // locked — the limit is his, not the address's — and another user is not affected.
    let elsewhere = || {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Browser::new(client, gw.url(""))
    };
    let p = elsewhere().login("bob", PW, None).await;
    assert_eq!(
        p.status, 429,
        "bob's lockout follows him to another address: {}",
        p.body
    );
    let mut other = elsewhere();
    assert_eq!(other.login("alice", PW, None).await.status, 303);
    assert_eq!(
        header(&other.get("/apps/open/").await, "x-forwarded-for").as_deref(),
        Some("127.0.0.2"),
        "the gateway saw a different client"
    );
}

/// A user name is normalised once (Unicode spaces trimmed, NFKC, case folded) for sign-in,
/// the rate limit and the session: failures spread over spellings of one name lock them all.
#[tokio::test(flavor = "multi_thread")]
async fn failures_over_spellings_of_one_name_lock_every_spelling() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    // Any spelling signs in as the one user.
    let mut b = gw.browser();
    assert_eq!(b.login("\u{3000}ＣＡＲＯＬ\u{a0}", PW, None).await.status, 303);
    assert_eq!(
        header(&b.get("/apps/open/").await, "x-forwarded-user").as_deref(),
        Some("carol")
    );
    let variants = [
        " carol",
        "carol ",
        "\u{a0}carol",
        "carol\u{a0}",
        "\u{3000}carol",
        "carol\u{3000}",
        "CAROL",
        "ｃａｒｏｌ",
        "car\u{200b}ol",
        "\tCarol\u{202f}",
    ];
    let mut b = gw.browser();
    for v in variants {
        assert_eq!(b.login(v, "wrong-password", None).await.status, 401, "{v:?}");
    }
    for v in ["carol", " carol", "ＣＡＲＯＬ", "carol\u{3000}"] {
        let p = b.login(v, PW, None).await;
        assert_eq!(p.status, 429, "{v:?} is not locked: {}", p.status);
    }
    assert_eq!(gw.browser().login("alice", PW, None).await.status, 303);
}

/// A huge user name is refused with a form error before it is counted, stored, logged or
/// shown again: the gateway's memory stays flat.
#[tokio::test(flavor = "multi_thread")]
async fn huge_user_names_are_refused_before_anything_is_kept() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut b = gw.browser();
    let csrf = b.get("/.gatehouse/login").await.input_value("csrf").unwrap();
    let huge = |i: usize| format!("{i:03}{}", "x".repeat(900 * 1024));
    let mut post = async |name: &str| {
        b.post_form(
            "/.gatehouse/login",
            &[
                ("username", name),
                ("password", "wrong-password"),
                ("csrf", &csrf),
                ("rd", "/"),
            ],
        )
        .await
    };
    for i in 0..3 {
        post(&huge(i)).await;
    }
    let before = gw.rss_kib();
    let mut answers = vec![];
    for i in 3..53 {
        let p = post(&huge(i)).await;
        answers.push((p.status, p.body.len(), p.body.contains("at most 256 bytes")));
    }
    let grown = gw.rss_kib().saturating_sub(before);
    eprintln!("RSS after 50 sign-ins with 900 KB user names: +{grown} KiB");
    for (i, (status, len, says)) in answers.into_iter().enumerate() {
        assert_eq!(status, 413, "post {i}: the form is larger than the sign-in form cap");
        assert!(says, "post {i}: the page says why");
        assert!(len < 64 * 1024, "post {i}: the name is shown again ({len} bytes)");
    }
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB");
    // Just over the cap, in a small body: the form's own error, the name not shown again.
    let long = "y".repeat(257);
    let p = post(&long).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("User names are at most 256 bytes."), "{}", p.body);
    assert!(!p.body.contains(&long));
    assert!(!gw.log().contains(&"x".repeat(1000)), "a huge name reached the log");
    // None of it counted against this address: a real sign-in still works.
    assert_eq!(gw.browser().login("alice", PW, None).await.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_absolute_timeouts_end_sessions() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    drop(gw);
    let b = [backend.addr];
    let gw = gatehouse()
        .raw("[session]\nidle_timeout = \"2s\"\nabsolute_timeout = \"5s\"")
        .app("open", &b, "access = \"authenticated\"")
        .user("bob", PW, false, &[])
        .start()
        .await;
    // Idle: no request for longer than 2 s ends the session.
    let mut idle = gw.browser();
    assert_eq!(idle.login("bob", PW, None).await.status, 303);
    assert_eq!(idle.get("/apps/open/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(idle.get("/apps/open/").await.status, 302, "idle session must expire");
    // Absolute: active every second, still ends after 5 s.
    let mut busy = gw.browser();
    assert_eq!(busy.login("bob", PW, None).await.status, 303);
    let t = Instant::now();
    let mut ended = None;
    while t.elapsed() < Duration::from_secs(9) {
        if busy.get("/apps/open/").await.status != 200 {
            ended = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let ended = ended.expect("absolute timeout never ended the session");
    assert!(ended >= Duration::from_secs(4), "ended too early: {ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_revokes_sessions() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", PW, None).await.status, 303);
    assert_eq!(bob.get("/apps/open/").await.status, 200);
    let out = gw.cli(&["user", "set-password", "bob"], Some("another good password\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Another process changed the store: this gateway notices within its cache TTL (5 s,
    // README), timed from when the CLI returned.
    let t = Instant::now();
    loop {
        if bob.get("/apps/open/").await.status == 302 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "revoked session still honoured after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut again = gw.browser();
    assert_eq!(again.login("bob", "another good password", None).await.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_groups_keep_cookie_and_headers_small() {
    let backend = Backend::start("app").await;
    let groups: Vec<String> = (0..2000).map(|i| format!("group-{i:04}")).collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).chain(["finance"]).collect();
    let b = [backend.addr];
    let gw = gatehouse()
        .app("fin", &b, "access = \"restricted\"\nallow_groups = [\"finance\", \"group-0007\"]\nheaders = { groups_sent = \"referenced\" }")
        .app("all", &b, "access = \"authenticated\"\nheaders = { groups_sent = \"all\" }")
        .app("auto", &b, "access = \"authenticated\"")
        .user("many", PW, false, &refs)
        .start()
        .await;
    let mut m = gw.browser();
    let p = m.login("many", PW, None).await;
    assert_eq!(p.status, 303);
    let set = m
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    let pair = set.split(';').next().unwrap();
    assert!(pair.len() < 100, "session cookie is {} bytes", pair.len());
    let p = m.get("/apps/fin/").await;
    assert_eq!(p.status, 200);
    let groups_header = header(&p, "x-forwarded-groups").unwrap();
    assert_eq!(groups_header, "finance,group-0007");
    let total: usize = p.json()["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .sum();
    assert!(
        total < 4096,
        "request headers to a referenced-groups app are {total} bytes"
    );
    let p = m.get("/apps/all/").await;
    assert_eq!(header(&p, "x-forwarded-groups").unwrap().split(',').count(), 2001);
    // The default ("auto"): too many to send, and an app open to everyone signed in names
    // no group, so it is told none.
    let p = m.get("/apps/auto/").await;
    assert_eq!(header(&p, "x-forwarded-groups").unwrap(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_keys_stay_published_until_their_tokens_expire() {
    let backend = Backend::start("app").await;
    let mut gw = start(&backend, "").await;
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", PW, None).await.status, 303);
    let old = header(&bob.get("/apps/open/").await, "x-gatehouse-assertion").unwrap();
    let old_kid = decode_header(&old).unwrap().kid.unwrap();
    let out = gw.cli(&["keys", "rotate"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    gw.restart().await;
    let jwks: serde_json::Value = gw
        .client()
        .get(gw.url("/.well-known/gatehouse/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    verify(&gw, &old, "open").await.expect("old token still verifies");
    let mut fresh = gw.browser();
    assert_eq!(fresh.login("bob", PW, None).await.status, 303);
    let new = header(&fresh.get("/apps/open/").await, "x-gatehouse-assertion").unwrap();
    assert_ne!(
        decode_header(&new).unwrap().kid.unwrap(),
        old_kid,
        "new tokens use the new key"
    );
    verify(&gw, &new, "open").await.expect("new token verifies");
    // Sessions survive a restart (they live in the store).
    assert_eq!(bob.get("/apps/open/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_cookies_are_host_prefixed_and_secure() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .tls(false)
        .app("open", &[backend.addr], "access = \"authenticated\"")
        .user("bob", PW, false, &[])
        .start()
        .await;
    let mut b: Browser = gw.browser();
    let p = b.login("bob", PW, None).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let set = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-gatehouse_session="))
        .expect("__Host- cookie");
    assert!(
        set.contains("Secure") && set.contains("Path=/") && !set.contains("Domain"),
        "{set}"
    );
    assert_eq!(b.get("/apps/open/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_from_the_store_are_routed_and_judged_like_config_apps() {
    let backend = Backend::start("app").await;
    let mut gw = start(&backend, "").await;
    let store = gatehouse_store::Store::open_sqlite(&gw.dir.path().join("gatehouse.db"))
        .await
        .unwrap();
    store
        .upsert_app(
            &gatehouse_store::AppRecord {
                slug: "reports".into(),
                name: "Reports".into(),
                description: "Defined in the admin UI".into(),
                upstreams: vec![backend.addr.to_string()],
                access: gatehouse_store::Access::Restricted,
                allow_groups: vec![gatehouse_policy::GroupName::new("Finance")],
                allow_users: vec![],
                owner_users: vec![],
                owner_groups: vec![],
                remote_headers: false,
                plotly_user_data: false,
                groups_sent: "all".into(),
                portal_visible: true,
                portal_order: 0,
                tags: vec![],
                thumbnail: String::new(),
                dash_token: false,
                created_at: 0,
                updated_at: 0,
            },
            &gatehouse_store::Actor::new("e2e-admin", None),
        )
        .await
        .unwrap();
    store.close().await;
    gw.restart().await;
    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", PW, None).await.status, 303);
    assert!(alice.get("/").await.body.contains("href=\"/apps/reports/\""));
    let p = alice.get("/apps/reports/x").await;
    assert_eq!(p.status, 200);
    assert_eq!(p.json()["path"], "/apps/reports/x");
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", PW, None).await.status, 303);
    assert_eq!(bob.get("/apps/reports/").await.status, 403);
    assert!(!bob.get("/").await.body.contains("/apps/reports/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn first_admin_comes_from_the_environment_on_first_start() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .env("GATEHOUSE_ADMIN_PASSWORD", "first-admin-password")
        .app("secret", &[backend.addr], "access = \"restricted\"")
        .start()
        .await;
    let mut admin = gw.browser();
    assert_eq!(admin.login("admin", "first-admin-password", None).await.status, 303);
    assert_eq!(
        admin.get("/apps/secret/").await.status,
        200,
        "the bootstrap account is an administrator"
    );
    assert!(gw.log().contains("created the first administrator"));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_from_one_address_are_limited_across_user_names() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;
    let mut b = gw.browser();
    // 50 failures from one client address, spread over user names so no single user hits
    // the per-user limit...
    for i in 0..50 {
        let p = b.login(&format!("guess{}", i % 5), "wrong-password", None).await;
        assert_eq!(p.status, 401, "attempt {i}");
    }
    // ...then even a real account with the right password waits.
    let p = b.login("alice", PW, None).await;
    assert_eq!(p.status, 429, "{}", p.body);
}

/// Session fixation: every sign-in issues a fresh session id. A value planted in the browser
/// beforehand, or the browser's own earlier session, is never the id it is given, and the
/// planted value opens nothing afterwards; a sign-in over a live session ends that session.
#[tokio::test(flavor = "multi_thread")]
async fn every_sign_in_gets_a_fresh_session_id() {
    let backend = Backend::start("app").await;
    let gw = start(&backend, "").await;

    // A planted cookie (an attacker's chosen value, well formed: 32 random-looking bytes).
    let planted = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    let mut victim = gw.browser();
    victim.cookies.insert("gatehouse_session".into(), planted.clone());
    assert_eq!(victim.login("bob", PW, None).await.status, 303);
    let given = victim.cookies["gatehouse_session"].clone();
    assert_ne!(given, planted, "the sign-in adopted the planted id");
    assert!(victim
        .set_cookies
        .iter()
        .any(|c| c.starts_with(&format!("gatehouse_session={given};"))));
    let mut attacker = gw.browser();
    attacker.cookies.insert("gatehouse_session".into(), planted);
    assert_eq!(
        attacker.get_json("/apps/open/").await.status,
        401,
        "the planted id opens nothing"
    );

    // Signing in again over a live session (same user, then another): a new id each time.
    let mut seen = vec![given];
    // (The login page sends a signed-in browser on; a form posted anyway still signs in.)
    for who in ["bob", "alice"] {
        let csrf = victim.get("/").await.input_value("csrf").expect("csrf on the portal");
        let p = victim
            .post_form(
                "/.gatehouse/login",
                &[("username", who), ("password", PW), ("csrf", &csrf), ("rd", "/")],
            )
            .await;
        assert_eq!(p.status, 303, "{}", p.body);
        let id = victim.cookies["gatehouse_session"].clone();
        assert!(!seen.contains(&id), "sign-in as {who} kept an earlier session id");
        assert_eq!(
            header(&victim.get("/apps/open/").await, "x-forwarded-user").as_deref(),
            Some(who)
        );
        seen.push(id);
    }
    // Each sign-in over a live session ended that session: an earlier id, wherever it
    // leaked, opens nothing now; the newest one still works.
    let (newest, earlier) = seen.split_last().expect("ids");
    for id in earlier {
        let mut leaked = gw.browser();
        leaked.cookies.insert("gatehouse_session".into(), id.clone());
        assert_eq!(
            leaked.get_json("/apps/open/").await.status,
            401,
            "an earlier id still opens apps"
        );
    }
    let mut current = gw.browser();
    current.cookies.insert("gatehouse_session".into(), newest.clone());
    assert_eq!(current.get_json("/apps/open/").await.status, 200, "the newest id works");

    // Two browsers signing in as the same person never share an id either (and the first
    // browser's session is not ended by the second's sign-in).
    let mut other = gw.browser();
    assert_eq!(other.login("alice", PW, None).await.status, 303);
    assert!(!seen.contains(&other.cookies["gatehouse_session"]));
    assert_eq!(current.get_json("/apps/open/").await.status, 200);
}
