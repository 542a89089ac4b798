//! The JSON admin API over real sockets: the whole grant flow with an API token created on
//! the tokens page; invalid input answered with field errors and changing nothing; 401
//! without credentials, 403 for a non-admin session on every route and for an app-scoped
//! token outside its app; a revoked token refused at its next request, also on a second
//! replica sharing PostgreSQL; session changes need the CSRF header and this Origin.

use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::{Backend, Browser, Gateway};
use serde_json::{json, Value};

use crate::gatehouse;

const PW: &str = "correct horse battery staple";
const API: &str = "/.gatehouse/admin/api";

async fn setup(backend: &Backend) -> Gateway {
    gatehouse()
        .app("pub", &[backend.addr], "access = \"public\"")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &["finance"])
        .user("bob", PW, false, &["sales"])
        .start()
        .await
}

async fn signed_in(gw: &Gateway, user: &str) -> Browser {
    let mut b = gw.browser();
    assert_eq!(b.login(user, PW, None).await.status, 303, "{user} signs in");
    b
}

/// An API answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
    text: String,
}

/// How a test calls the API: a bearer token, or a browser's session (with or without the
/// CSRF header and Origin).
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Session {
        browser: &'a Browser,
        csrf: Option<&'a str>,
        origin: Option<&'a str>,
    },
}

async fn call(gw: &Gateway, auth: &Auth<'_>, method: &str, path: &str, body: Option<&str>) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = gw.client().request(method, gw.url(&format!("{API}{path}")));
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
        Auth::Session { browser, csrf, origin } => {
            let cookie: Vec<String> = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", cookie.join("; "));
            if let Some(c) = csrf {
                req = req.header("x-gatehouse-csrf", *c);
            }
            if let Some(o) = origin {
                req = req.header("origin", *o);
            }
        }
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
        text,
    }
}

async fn bearer(gw: &Gateway, token: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| b.to_string());
    call(gw, &Auth::Bearer(token), method, path, body.as_deref()).await
}

/// Creates an API token on the tokens page as `admin` (signed in); returns its secret.
async fn create_token(admin: &mut Browser, name: &str, scope: &str) -> String {
    let page = admin.get("/.gatehouse/admin/tokens").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.input_value("csrf").expect("csrf");
    let origin = admin.origin();
    let p = admin
        .post_form_with(
            "/.gatehouse/admin/tokens",
            &[
                ("csrf", &csrf),
                ("name", name),
                ("scope", scope),
                ("duration", ""),
                ("until", ""),
            ],
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    let start = p.body.find("value=\"ghk_").expect("the secret is shown") + "value=\"".len();
    let end = start + p.body[start..].find('"').unwrap();
    let secret = p.body[start..end].to_string();
    assert_eq!(secret.len(), 47, "{secret}");
    // Shown once: the list does not show it again.
    assert!(!admin.get("/.gatehouse/admin/tokens").await.body.contains(&secret));
    secret
}

/// Revokes token `name` on the tokens page.
async fn revoke_token(admin: &mut Browser, name: &str) {
    let page = admin.get("/.gatehouse/admin/tokens").await;
    let csrf = page.input_value("csrf").expect("csrf");
    let row = page.body.find(&format!("Revoke {name}<")).expect("a revoke button");
    let id_at = page.body[..row].rfind("name=\"id\" value=\"").unwrap() + "name=\"id\" value=\"".len();
    let id = page.body[id_at..id_at + 16].to_string();
    let origin = admin.origin();
    let p = admin
        .post_form_with(
            "/.gatehouse/admin/tokens/revoke",
            &[("csrf", &csrf), ("id", &id)],
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
}

fn slugs(a: &Answer) -> Vec<String> {
    a.json["apps"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", a.text))
        .iter()
        .map(|a| a["slug"].as_str().unwrap().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grant_flow_runs_through_the_api_with_a_token() {
    let backend = Backend::start("reports").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = create_token(&mut root, "ci", "admin").await;

    // Create an app, grant a group.
    let up = backend.addr.to_string();
    let created = bearer(
        &gw,
        &token,
        "POST",
        "/apps",
        Some(json!({"slug": "reports", "name": "Finance reports", "upstreams": [up], "access": "restricted"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["slug"], "reports");
    let version = created.json["version"].as_i64().unwrap();
    let g = bearer(
        &gw,
        &token,
        "POST",
        "/apps/reports/grants",
        Some(json!({"kind": "group", "name": "Finance"})),
    )
    .await;
    assert_eq!(g.status, 201, "{}", g.text);
    assert_eq!(g.json["name"], "finance");

    // A member opens it, a non-member gets 403.
    let mut alice = signed_in(&gw, "alice").await;
    let mut bob = signed_in(&gw, "bob").await;
    assert_eq!(alice.get("/apps/reports/").await.status, 200);
    let page = bob.get("/apps/reports/").await;
    assert_eq!(page.status, 403);

    // The non-member asks through the 403 page's form.
    let bob_csrf = page.input_value("csrf").expect("request form");
    let origin = bob.origin();
    let p = bob
        .post_form_with(
            "/.gatehouse/request-access",
            &[("csrf", &bob_csrf), ("app", "reports"), ("reason", "quarter close")],
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let requests = bearer(&gw, &token, "GET", "/requests", None).await;
    assert_eq!(requests.status, 200);
    let pending = &requests.json["requests"][0];
    assert_eq!(
        (
            pending["user"].as_str(),
            pending["status"].as_str(),
            pending["reason"].as_str()
        ),
        (Some("bob"), Some("pending"), Some("quarter close"))
    );

    // Approved through the API, for 8 hours.
    let d = bearer(
        &gw,
        &token,
        "POST",
        "/apps/reports/requests/bob",
        Some(json!({"decision": "approve", "duration": "8h"})),
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.text);
    let grants = bearer(&gw, &token, "GET", "/apps/reports/grants", None).await;
    let bobs = grants.json["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "bob")
        .cloned()
        .expect("bob's grant");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let until = bobs["expires_at"].as_i64().expect("time-limited");
    assert!((until - now - 8 * 3600).abs() < 60, "{bobs}");
    assert_eq!(bobs["created_by"], "token:ci");
    assert_eq!(bob.get("/apps/reports/").await.status, 200, "the requester opens it");

    // "Check a person" agrees.
    let c = bearer(&gw, &token, "GET", "/apps/reports/check?user=bob", None).await;
    assert_eq!(c.json["allowed"], true, "{}", c.text);

    // A version-checked change: the current version works, a stale one is refused (409).
    let a = bearer(
        &gw,
        &token,
        "PATCH",
        "/apps/reports",
        Some(json!({"description": "Q4", "version": version})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["description"], "Q4");
    let stale = bearer(
        &gw,
        &token,
        "PATCH",
        "/apps/reports",
        Some(json!({"description": "lost", "version": version})),
    )
    .await;
    assert_eq!(stale.status, 409, "{}", stale.text);
    assert!(
        stale.json["error"]
            .as_str()
            .unwrap()
            .contains("changed by token:ci meanwhile"),
        "{}",
        stale.text
    );

    // A session revoked through the API: bob's next request is signed out.
    let sessions = bearer(&gw, &token, "GET", "/sessions", None).await;
    assert!(sessions.text.contains("\"bob\""), "{}", sessions.text);
    let r = bearer(&gw, &token, "DELETE", "/sessions/bob", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["revoked"].as_u64().unwrap() >= 1);
    let signed_out = within(Duration::from_secs(1), || async {
        let p = bob.clone().get("/apps/reports/").await;
        p.status == 302 && p.location().unwrap_or("").starts_with("/.gatehouse/login")
    })
    .await;
    assert!(signed_out.is_some(), "bob is signed out");

    // The audit log, through the API, shows each step — the token's changes under its name.
    let audit = bearer(&gw, &token, "GET", "/audit?limit=200", None).await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    let events = audit.json["events"].as_array().unwrap();
    let find = |action: &str, target: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("no {action} {target} in {events:#?}"))
            .clone()
    };
    let created = find("token.create", "token:ci");
    assert_eq!(created["actor"], "root");
    assert!(!audit.text.contains(&token), "the secret is never audited");
    for (action, target) in [
        ("app.create", "reports"),
        ("grant.add", "reports/group:finance"),
        ("access.approve", "reports/user:bob"),
        ("app.update", "reports"),
        ("user.sessions.delete", "bob"),
    ] {
        let e = find(action, target);
        assert_eq!(e["actor"], "token:ci", "{e}");
        assert_eq!(e["detail"]["token"], "ci", "{e}");
    }
    assert_eq!(find("access.request", "reports/user:bob")["actor"], "bob");

    // The tokens page lists it: scope, creator, last use.
    let page = root.get("/.gatehouse/admin/tokens").await.body;
    assert!(page.contains(">ci<") && page.contains("<code>admin</code>"), "{page}");
    assert!(!page.contains("never</td><td class=\"nowrap\">never"), "last use shown");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_change_nothing() {
    let backend = Backend::start("reports").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = create_token(&mut root, "ci", "admin").await;
    let up = backend.addr.to_string();
    for slug in ["reports", "other"] {
        let r = bearer(
            &gw,
            &token,
            "POST",
            "/apps",
            Some(json!({"slug": slug, "name": slug, "upstreams": [up]})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let before = bearer(&gw, &token, "GET", "/apps", None).await;
    assert_eq!(slugs(&before), ["other", "pub", "reports"]);

    // Invalid input: 400 with field errors.
    let r = bearer(
        &gw,
        &token,
        "POST",
        "/apps",
        Some(json!({"slug": "Bad Slug!", "upstreams": ["not a host"], "access": "sometimes"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    for field in ["slug", "upstreams", "access"] {
        assert!(r.json["fields"][field].is_string(), "{field}: {}", r.text);
    }
    let r = bearer(&gw, &token, "POST", "/apps", Some(json!({"name": "no slug"}))).await;
    assert_eq!(
        (r.status, r.json["fields"]["slug"].is_string()),
        (400, true),
        "{}",
        r.text
    );
    let r = bearer(
        &gw,
        &token,
        "POST",
        "/apps/reports/grants",
        Some(json!({"kind": "robot", "name": "", "duration": "forever"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    for field in ["kind", "name", "duration"] {
        assert!(r.json["fields"][field].is_string(), "{field}: {}", r.text);
    }
    let r = bearer(&gw, &token, "PATCH", "/apps/reports", Some(json!({"access": "public"}))).await;
    assert_eq!(
        (r.status, r.json["fields"]["version"].is_string()),
        (400, true),
        "{}",
        r.text
    );
    let r = bearer(
        &gw,
        &token,
        "POST",
        "/users",
        Some(json!({"username": "carol", "password": "short", "email": "nope"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["fields"]["password"].is_string() && r.json["fields"]["email"].is_string());
    // Malformed JSON, a wrong type, an unknown field, no body, a huge body.
    for (body, says) in [
        ("{\"slug\": ", "malformed JSON"),
        ("{\"slug\": 5}", "invalid request body"),
        ("{\"slug\": \"x\", \"colour\": \"red\"}", "unknown field `colour`"),
        ("", "a JSON object body is required"),
    ] {
        let r = call(&gw, &Auth::Bearer(&token), "POST", "/apps", Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.json["error"].as_str().unwrap().contains(says), "{body}: {}", r.text);
    }
    let huge = format!("{{\"slug\": \"{}\"}}", "x".repeat(100_000));
    let r = call(&gw, &Auth::Bearer(&token), "POST", "/apps", Some(&huge)).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.json["error"].is_string());
    let after = bearer(&gw, &token, "GET", "/apps", None).await;
    assert_eq!(before.json, after.json, "nothing changed");
    let grants = bearer(&gw, &token, "GET", "/apps/reports/grants", None).await;
    assert_eq!(grants.json["grants"], json!([]));
    let users = bearer(&gw, &token, "GET", "/users", None).await;
    assert!(!users.text.contains("carol"));

    // 404s are JSON too.
    let r = bearer(&gw, &token, "GET", "/apps/nope", None).await;
    assert_eq!((r.status, r.json["error"].is_string()), (404, true), "{}", r.text);
    let r = bearer(&gw, &token, "GET", "/no-such-route", None).await;
    assert_eq!((r.status, r.json["error"].is_string()), (404, true), "{}", r.text);

    // No credentials: 401 with the Bearer challenge; a made-up token: 401.
    let r = call(&gw, &Auth::None, "GET", "/apps", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert!(r.json["error"].is_string());
    let r = bearer(&gw, "ghk_madeup", "GET", "/apps", None).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // A signed-in non-administrator: 403 on every route of the OpenAPI document.
    let doc = bearer(&gw, &token, "GET", "/openapi.json", None).await;
    let alice = signed_in(&gw, "alice").await;
    let origin = alice.origin();
    let as_alice = Auth::Session {
        browser: &alice,
        csrf: Some("whatever"),
        origin: Some(&origin),
    };
    let mut checked = 0;
    for (path, item) in doc.json["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .trim_start_matches(API)
                .replace("{slug}", "reports")
                .replace("{kind}", "group")
                .replace("{name}", "finance")
                .replace("{user}", "bob");
            let r = call(&gw, &as_alice, &method.to_uppercase(), &concrete, Some("{}")).await;
            assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
            assert!(
                r.json["error"].as_str().unwrap().contains("alice may not"),
                "{}",
                r.text
            );
            assert!(!r.text.contains("127.0.0.1"), "no data leaks");
            checked += 1;
        }
    }
    assert_eq!(checked, 19, "every route");

    // The tokens page: administrators only; a bad name or scope is refused next to the
    // field and creates nothing.
    let mut alice_b = alice.clone();
    assert_eq!(alice_b.get("/.gatehouse/admin/tokens").await.status, 403);
    let page = root.get("/.gatehouse/admin/tokens").await;
    let csrf = page.input_value("csrf").unwrap();
    let origin = root.origin();
    let p = root
        .post_form_with(
            "/.gatehouse/admin/tokens",
            &[
                ("csrf", &csrf),
                ("name", "Bad Name"),
                ("scope", "app:nope"),
                ("duration", ""),
            ],
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(
        p.body.contains("id=\"name-error\"") && p.body.contains("id=\"scope-error\""),
        "{}",
        p.body
    );
    assert!(!p.body.contains("ghk_"), "no token");
    let p = alice_b
        .post_form_with(
            "/.gatehouse/admin/tokens",
            &[("csrf", &csrf), ("name", "mine"), ("scope", "admin")],
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(p.status, 403, "non-administrators create no tokens");
    let listed = root.get("/.gatehouse/admin/tokens").await.body;
    assert!(
        !listed.contains("Bad Name") && !listed.contains(">mine<"),
        "nothing created"
    );

    // An app-scoped token: its app only, and only what owners may do.
    let scoped = create_token(&mut root, "reports-bot", "app:reports").await;
    assert_eq!(slugs(&bearer(&gw, &scoped, "GET", "/apps", None).await), ["reports"]);
    assert_eq!(bearer(&gw, &scoped, "GET", "/apps/reports", None).await.status, 200);
    let g = bearer(
        &gw,
        &scoped,
        "POST",
        "/apps/reports/grants",
        Some(json!({"kind": "user", "name": "alice", "duration": "1h"})),
    )
    .await;
    assert_eq!(g.status, 201, "{}", g.text);
    let other = bearer(&gw, &token, "GET", "/apps/other", None).await;
    let v = other.json["version"].as_i64().unwrap();
    let delete = format!("/apps/reports?version={v}");
    for (method, path, body) in [
        ("GET", "/apps/other", None),
        ("GET", "/apps/other/grants", None),
        ("GET", "/apps/other/check?user=alice", None),
        (
            "POST",
            "/apps/other/grants",
            Some(json!({"kind": "group", "name": "sales"})),
        ),
        ("PATCH", "/apps/other", Some(json!({"name": "mine", "version": v}))),
        ("DELETE", delete.as_str(), None),
        ("POST", "/apps", Some(json!({"slug": "new", "upstreams": [up]}))),
        ("GET", "/users", None),
        ("GET", "/sessions", None),
        ("DELETE", "/sessions/root", None),
        ("GET", "/audit", None),
    ] {
        let r = bearer(&gw, &scoped, method, path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
    }
    let owners = bearer(
        &gw,
        &scoped,
        "PATCH",
        "/apps/reports",
        Some(json!({"owner_users": ["bob"], "version": 0})),
    )
    .await;
    assert_eq!(
        owners.status, 403,
        "owners are named by administrators: {}",
        owners.text
    );
    assert_eq!(bearer(&gw, &token, "GET", "/apps/other", None).await.json, other.json);

    // Revoked: refused from the very next request.
    revoke_token(&mut root, "reports-bot").await;
    let r = bearer(&gw, &scoped, "GET", "/apps/reports", None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let page = root.get("/.gatehouse/admin/tokens").await.body;
    assert!(page.contains("revoked"), "listed as revoked");

    // A session: GETs as is; changes need the CSRF header and this Origin.
    let who = call(
        &gw,
        &Auth::Session {
            browser: &root,
            csrf: None,
            origin: None,
        },
        "GET",
        "/whoami",
        None,
    )
    .await;
    assert_eq!(who.status, 200, "{}", who.text);
    let csrf = who.json["csrf"]
        .as_str()
        .expect("a session gets its CSRF token")
        .to_string();
    let origin = root.origin();
    let body = json!({"slug": "viasession", "upstreams": [up]}).to_string();
    for (csrf, origin, why) in [
        (None, Some(origin.as_str()), "no CSRF header"),
        (Some("wrong"), Some(origin.as_str()), "a wrong CSRF token"),
        (Some(csrf.as_str()), Some("http://evil.example"), "another Origin"),
        (Some(csrf.as_str()), None, "no Origin"),
    ] {
        let auth = Auth::Session {
            browser: &root,
            csrf,
            origin,
        };
        let r = call(&gw, &auth, "POST", "/apps", Some(&body)).await;
        assert_eq!(r.status, 403, "{why}: {}", r.text);
    }
    let r = call(&gw, &Auth::Bearer(&token), "GET", "/apps", None).await;
    assert!(!slugs(&r).contains(&"viasession".to_string()), "nothing changed");
    let auth = Auth::Session {
        browser: &root,
        csrf: Some(&csrf),
        origin: Some(&origin),
    };
    let r = call(&gw, &auth, "POST", "/apps", Some(&body)).await;
    assert_eq!(r.status, 201, "with both: {}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refused_at_once_on_every_replica() {
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let store_line = format!("[store]\nurl = \"{}\"\n", db.url);
    let first = gatehouse().raw(&store_line).user("root", PW, true, &[]).start().await;
    let second = gatehouse().raw(&store_line).start().await;
    let mut root = signed_in(&first, "root").await;
    let token = create_token(&mut root, "ci", "admin").await;
    assert_eq!(bearer(&second, &token, "GET", "/apps", None).await.status, 200);
    assert_eq!(bearer(&first, &token, "GET", "/apps", None).await.status, 200);

    // Only the hash is stored.
    let stored = db.sql("SELECT concat_ws('|', id, name, scope, secret_hash, created_by) FROM api_tokens");
    assert!(stored.contains("ci|admin|"), "{stored}");
    assert!(!stored.contains(&token[4..]), "the secret is not in the table");

    // An expired token (its end moved into the past by another client): refused at once too.
    let other = create_token(&mut root, "nightly", "admin").await;
    assert_eq!(bearer(&second, &other, "GET", "/apps", None).await.status, 200);
    db.sql("UPDATE api_tokens SET expires_at = 1 WHERE name = 'nightly'");
    assert_eq!(
        bearer(&second, &other, "GET", "/apps", None).await.status,
        401,
        "expired"
    );
    assert!(root.get("/.gatehouse/admin/tokens").await.body.contains(">expired<"));

    revoke_token(&mut root, "ci").await;
    let r = bearer(&second, &token, "GET", "/apps", None).await;
    assert_eq!(r.status, 401, "the other replica refuses it at once: {}", r.text);
    assert_eq!(bearer(&first, &token, "GET", "/apps", None).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_manages_their_own_app_through_the_api_and_nothing_else() {
    let backend = Backend::start("reports").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = create_token(&mut root, "ci", "admin").await;
    let up = backend.addr.to_string();
    for (slug, owners) in [("reports", json!(["bob"])), ("other", json!([]))] {
        let body = json!({"slug": slug, "name": slug, "upstreams": [up], "access": "restricted",
                          "owner_users": owners});
        let r = bearer(&gw, &token, "POST", "/apps", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    // Bob (no administrator) through his session: his app only.
    let bob = signed_in(&gw, "bob").await;
    let get = |path: &'static str| {
        let auth = Auth::Session {
            browser: &bob,
            csrf: None,
            origin: None,
        };
        let gw = &gw;
        async move { call(gw, &auth, "GET", path, None).await }
    };
    let who = get("/whoami").await;
    assert_eq!(who.json["scope"], "owner", "{}", who.text);
    assert_eq!(slugs(&get("/apps").await), ["reports"]);
    let listed = get("/apps").await;
    assert_eq!(
        listed.json["apps"][0]["people"], 1,
        "root, an administrator: {}",
        listed.text
    );
    assert_eq!(get("/apps/reports").await.status, 200);
    let csrf = who.json["csrf"].as_str().expect("a CSRF token").to_string();
    let origin = bob.origin();
    let auth = Auth::Session {
        browser: &bob,
        csrf: Some(&csrf),
        origin: Some(&origin),
    };
    let grant = json!({"kind": "user", "name": "alice", "duration": "8h"}).to_string();
    let r = call(&gw, &auth, "POST", "/apps/reports/grants", Some(&grant)).await;
    assert_eq!(r.status, 201, "an owner grants on their app: {}", r.text);
    let alice = signed_in(&gw, "alice").await;
    let served = within(Duration::from_secs(1), || async {
        alice.clone().get("/apps/reports/").await.status == 200
    })
    .await;
    assert!(served.is_some(), "the owner's grant admits alice within 1 s");

    // Everything else is refused, and changes nothing.
    let other_before = bearer(&gw, &token, "GET", "/apps/other", None).await;
    let v = other_before.json["version"].as_i64().unwrap();
    let patch_other = json!({"name": "mine", "version": v}).to_string();
    let new_app = json!({"slug": "new", "upstreams": [up]}).to_string();
    let owners = json!({"owner_users": ["bob", "alice"], "version": 0}).to_string();
    for (method, path, body) in [
        ("GET", "/apps/other", None),
        ("POST", "/apps/other/grants", Some(grant.as_str())),
        ("PATCH", "/apps/other", Some(patch_other.as_str())),
        ("POST", "/apps", Some(new_app.as_str())),
        ("PATCH", "/apps/reports", Some(owners.as_str())),
        ("GET", "/users", None),
        ("GET", "/sessions", None),
        ("GET", "/audit", None),
    ] {
        let r = call(&gw, &auth, method, path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
    }
    let other_after = bearer(&gw, &token, "GET", "/apps/other", None).await;
    assert_eq!(other_after.json, other_before.json, "the other app is unchanged");
    assert_eq!(
        bearer(&gw, &token, "GET", "/apps", None).await.json["apps"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "no app created"
    );
    let reports = bearer(&gw, &token, "GET", "/apps/reports", None).await;
    assert_eq!(reports.json["owner_users"], json!(["bob"]), "owners unchanged");
}

#[tokio::test(flavor = "multi_thread")]
async fn store_apps_take_portal_fields_and_the_dash_token_through_the_api() {
    let backend = Backend::start("dash").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = create_token(&mut root, "ci", "admin").await;
    let up = backend.addr.to_string();
    let body = json!({
        "slug": "dash", "upstreams": [up], "access": "authenticated", "dash_token": true,
        "tags": ["Finance", "dash", "finance"], "thumbnail": "https://cdn.example.com/d.png",
        "portal_order": -3,
    });
    let created = bearer(&gw, &token, "POST", "/apps", Some(body.clone())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let app = &created.json;
    assert_eq!(app["dash_token"], true);
    assert_eq!(app["tags"], json!(["Finance", "dash"]), "repeats ignoring case dropped");
    assert_eq!(app["thumbnail"], "https://cdn.example.com/d.png");
    assert_eq!(app["portal_order"], -3);
    // What the API sends and takes is what openapi.json describes.
    let doc = bearer(&gw, &token, "GET", "/openapi.json", None).await.json;
    let described = |schema: &str, key: &str| doc["components"]["schemas"][schema]["properties"].get(key).is_some();
    for key in app.as_object().unwrap().keys() {
        assert!(described("App", key), "App lacks {key}");
    }
    for key in body.as_object().unwrap().keys() {
        assert!(described("AppInput", key), "AppInput lacks {key}");
    }

    // The app receives Gatehouse's kcIdToken (a JWT for dash_enterprise_auth), never the
    // client's.
    let mut alice = signed_in(&gw, "alice").await;
    let cookie_seen = |p: &gatehouse_tests::Page| {
        let all = p.json()["headers"]["cookie"].as_array().cloned().unwrap_or_default();
        all.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")
    };
    let p = alice.get_with("/apps/dash/", &[("cookie", "kcIdToken=mallory")]).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let cookie = cookie_seen(&alice.get_json("/apps/dash/").await);
    let jwt = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("kcIdToken="))
        .unwrap_or_else(|| panic!("no kcIdToken in {cookie:?}"));
    assert!(!cookie.contains("mallory"));
    assert!(jwt.len() > 100, "a signed token: {jwt}");

    // Switched off (and the thumbnail removed) with a version-checked PATCH.
    let version = app["version"].as_i64().unwrap();
    let changed = bearer(
        &gw,
        &token,
        "PATCH",
        "/apps/dash",
        Some(json!({"dash_token": false, "thumbnail": null, "version": version})),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(
        (changed.json["dash_token"].clone(), changed.json["thumbnail"].clone()),
        (json!(false), Value::Null)
    );
    let gone = within(Duration::from_secs(3), || async {
        !cookie_seen(&alice.clone().get_json("/apps/dash/").await).contains("kcIdToken=")
    })
    .await;
    assert!(gone.is_some(), "no kcIdToken once dash_token is off");

    // Bad portal fields: 400 naming the field, nothing changed.
    let version = changed.json["version"].as_i64().unwrap();
    for (bad, field) in [
        (
            json!({"thumbnail": "javascript:alert(1)", "version": version}),
            "thumbnail",
        ),
        (json!({"tags": ["a,b"], "version": version}), "tags"),
        (json!({"portal_order": 2_000_000, "version": version}), "portal_order"),
    ] {
        let r = bearer(&gw, &token, "PATCH", "/apps/dash", Some(bad.clone())).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.json["fields"][field].is_string(), "{bad}: {}", r.text);
    }
    let now = bearer(&gw, &token, "GET", "/apps/dash", None).await;
    assert_eq!(now.json["version"].as_i64(), Some(version), "nothing was changed");
}
