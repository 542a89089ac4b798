//! The admin UI over real sockets: only administrators reach it; every change needs the
//! session-bound token and this gateway's Origin, and a refused request changes nothing;
//! apps created and edited there are served and enforced at once; invalid input is answered
//! next to the field; a stale edit is refused; sessions are ended; the audit log shows it all.

use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::{Backend, Browser, Gateway, Page};

use crate::gatehouse;

const PW: &str = "correct horse battery staple";

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

/// Posts `form` the way a browser on this gateway's page would (its Origin).
async fn post(b: &mut Browser, path: &str, form: &[(&str, &str)]) -> Page {
    let origin = b.origin();
    b.post_form_with(path, form, &[("origin", origin.as_str())]).await
}

fn new_app_form<'a>(token: &'a str, slug: &'a str, upstream: &'a str, groups: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", token),
        ("version", "0"),
        ("slug", slug),
        ("name", "Finance reports"),
        ("description", "Numbers"),
        ("upstreams", upstream),
        ("access", "restricted"),
        ("allow_groups", groups),
        ("allow_users", ""),
        ("portal_visible", "1"),
    ]
}

/// The "known people who can open it" number in app `slug`'s row of the apps list.
async fn people_count(b: &mut Browser, slug: &str) -> Option<usize> {
    let page = b.get("/.gatehouse/admin/apps").await;
    let link = format!("href=\"/.gatehouse/admin/apps/{slug}\"");
    let row = page.body.split("<tr>").find(|r| r.contains(&link))?;
    let n = row.split("data-people=\"").nth(1)?.split('"').next()?;
    n.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_administrators_reach_the_admin_pages() {
    let backend = Backend::start("app").await;
    let gw = setup(&backend).await;
    let pages = [
        "/.gatehouse/admin/",
        "/.gatehouse/admin/apps",
        "/.gatehouse/admin/apps/new",
        "/.gatehouse/admin/apps/pub",
        "/.gatehouse/admin/sessions",
        "/.gatehouse/admin/audit",
        "/.gatehouse/admin/branding",
        "/.gatehouse/admin/users",
    ];
    let mut anon = gw.browser();
    for p in pages {
        let page = anon.get(p).await;
        assert_eq!(page.status, 303, "{p}");
        assert!(
            page.location().unwrap_or("").starts_with("/.gatehouse/login?rd="),
            "{p}"
        );
    }
    let mut alice = signed_in(&gw, "alice").await;
    for p in pages {
        let page = alice.get(p).await;
        assert_eq!(page.status, 403, "{p}");
        assert!(page.body.contains("Administrators only"), "{p}: a clear page");
        assert!(
            !page.body.contains("Finance reports") && !page.body.contains("127.0.0.1:"),
            "{p}: no data"
        );
    }
    for (p, form) in [
        (
            "/.gatehouse/admin/apps/new",
            vec![("slug", "x"), ("upstreams", "127.0.0.1:1")],
        ),
        ("/.gatehouse/admin/apps/pub/delete", vec![("version", "0")]),
        ("/.gatehouse/admin/sessions/revoke", vec![("user", "root")]),
    ] {
        assert_eq!(post(&mut alice, p, &form).await.status, 403, "{p}");
    }
    let mut root = signed_in(&gw, "root").await;
    for p in pages {
        let page = root.get(p).await;
        assert!(page.status == 200 || page.status == 303, "{p}: {}", page.status);
    }
    let apps = root.get("/.gatehouse/admin/apps").await;
    assert!(
        apps.body.contains("/apps/pub/") && apps.body.contains("config file"),
        "{}",
        apps.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_created_in_the_admin_ui_is_served_and_enforced_at_once() {
    let backend = Backend::start("reports").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let form_page = root.get("/.gatehouse/admin/apps/new").await;
    let token = form_page.input_value("csrf").expect("token field");
    let up = backend.addr.to_string();
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/new",
        &new_app_form(&token, "reports", &up, "finance"),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/.gatehouse/admin/apps/reports?saved=1"));

    let mut alice = signed_in(&gw, "alice").await;
    let mut bob = signed_in(&gw, "bob").await;
    let served = within(Duration::from_secs(1), || async {
        alice.clone().get("/apps/reports/").await.status == 200
    })
    .await;
    assert!(served.is_some(), "the new app is served to a member within 1 s");
    assert_eq!(bob.get("/apps/reports/").await.status, 403);
    assert!(
        alice.get("/").await.body.contains("Finance reports"),
        "on the member's portal"
    );

    // The apps list counts the known people it admits: root (an administrator) and alice.
    assert_eq!(people_count(&mut root, "reports").await, Some(2));
    assert_eq!(people_count(&mut root, "pub").await, Some(3), "public: everyone known");

    // Who can open it, and why — the proxy's own decision.
    let page = root.get("/.gatehouse/admin/apps/reports?check=bob").await;
    assert!(page.body.contains("members of finance"), "{}", page.body);
    assert!(page.body.contains("cannot open this app"), "{}", page.body);
    let page = root.get("/.gatehouse/admin/apps/reports?check=Alice").await;
    assert!(page.body.contains("can open this app") && page.body.contains("member of allowed group finance"));

    // An edit: grant sales too. Bob gets in.
    let edit = root.get("/.gatehouse/admin/apps/reports").await;
    let token = edit.input_value("csrf").expect("token");
    let version = edit.input_value("version").expect("version");
    let mut form = new_app_form(&token, "reports", &up, "finance\nsales");
    form.retain(|(k, _)| *k != "version");
    form.push(("version", version.as_str()));
    let p = post(&mut root, "/.gatehouse/admin/apps/reports", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let granted = within(Duration::from_secs(1), || async {
        bob.clone().get("/apps/reports/").await.status == 200
    })
    .await;
    assert!(granted.is_some(), "the grant applies within 1 s");
    assert_eq!(
        people_count(&mut root, "reports").await,
        Some(3),
        "bob (sales) counted now"
    );

    // The same form again (the version it carries is now stale): refused, not overwritten.
    let p = post(&mut root, "/.gatehouse/admin/apps/reports", &form).await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert!(p.body.contains("changed by root meanwhile"), "{}", p.body);

    // Two saves of one version at the same moment: one wins, the other is told — never a
    // silent overwrite (the store checks and writes in one statement).
    let edit = root.get("/.gatehouse/admin/apps/reports").await;
    let version = edit.input_value("version").expect("version");
    let racers: Vec<_> = ["finance\nsales", "finance"]
        .into_iter()
        .map(|groups| {
            let (mut b, token, up, version) = (root.clone(), token.clone(), up.clone(), version.clone());
            tokio::spawn(async move {
                let mut form = new_app_form(&token, "reports", &up, groups);
                form.retain(|(k, _)| *k != "version");
                form.push(("version", version.as_str()));
                post(&mut b, "/.gatehouse/admin/apps/reports", &form).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.expect("racer"));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [303, 409], "exactly one of two simultaneous saves wins");

    // Deleted: gone at once, for everybody.
    let page = root.get("/.gatehouse/admin/apps/reports").await;
    let version = page.input_value("version").expect("version");
    let token = page.input_value("csrf").expect("token");
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/reports/delete",
        &[("csrf", &token), ("version", &version)],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let gone = within(Duration::from_secs(1), || async {
        alice.clone().get("/apps/reports/").await.status == 404
    })
    .await;
    assert!(gone.is_some());

    // The audit log shows each step, with the admin as actor.
    let audit = root.get("/.gatehouse/admin/audit?actor=root").await;
    for action in ["app.create", "app.update", "app.delete"] {
        assert!(audit.body.contains(action), "{action} in the audit page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_changes_change_nothing() {
    let backend = Backend::start("app").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let origin = root.origin();
    let form = new_app_form(&token, "x1", &up, "finance");

    // No token, a wrong one, another session's, a double-submit style random one.
    let mut other = signed_in(&gw, "root").await;
    let other_token = other
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    assert_ne!(other_token, token, "tokens are bound to the session");
    for bad in ["", "x", other_token.as_str(), "AAAAAAAAAAAAAAAAAAAAAA"] {
        let mut f = form.clone();
        f[0] = ("csrf", bad);
        let p = root
            .post_form_with("/.gatehouse/admin/apps/new", &f, &[("origin", &origin)])
            .await;
        assert_eq!(p.status, 403, "token {bad:?}");
    }
    // The right token from another origin, or with no Origin and no Referer.
    let p = root
        .post_form_with(
            "/.gatehouse/admin/apps/new",
            &form,
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(p.status, 403);
    assert!(p.body.contains("Cross-site request refused"));
    let p = root.post_form("/.gatehouse/admin/apps/new", &form).await;
    assert_eq!(p.status, 403, "no Origin, no Referer");
    // Invalid input: 400 with the message next to the field.
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/new",
        &new_app_form(&token, "BAD SLUG", "nowhere:80a", ""),
    )
    .await;
    assert_eq!(p.status, 400);
    assert!(
        p.body.contains(r#"id="slug-error""#) && p.body.contains("not a valid slug"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains(r#"id="upstreams-error""#) && p.body.contains("nowhere:80a"),
        "{}",
        p.body
    );
    // A slug the config file uses.
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/new",
        &new_app_form(&token, "pub", &up, ""),
    )
    .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("config file"), "{}", p.body);

    let apps = root.get("/.gatehouse/admin/apps").await.body;
    assert!(
        !apps.contains("x1") && !apps.contains("BAD SLUG"),
        "nothing was created"
    );
    let audit = root.get("/.gatehouse/admin/audit?action=app.create").await.body;
    assert!(
        !audit.contains("<code>app.create</code>"),
        "nothing was audited as created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_ends_a_persons_sessions() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app("team", &[backend.addr], "access = \"authenticated\"")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &[])
        .start()
        .await;
    let mut alice = signed_in(&gw, "alice").await;
    assert_eq!(alice.get_json("/apps/team/").await.status, 200);
    let mut root = signed_in(&gw, "root").await;
    // One session of two: alice's phone is signed out, her laptop stays.
    let mut phone = signed_in(&gw, "alice").await;
    let page = root.get("/.gatehouse/admin/sessions").await;
    assert!(page.body.contains("End all of alice"), "{}", page.body);
    let token = page.input_value("csrf").expect("token");
    // One of alice's rows (either session).
    let reference = page
        .body
        .split("name=\"session\" value=\"")
        .skip(1)
        .zip(page.body.split("name=\"user\" value=\"").skip(1))
        .find(|(_, user)| user.starts_with("alice\""))
        .and_then(|(r, _)| r.split('"').next())
        .expect("alice's session row")
        .to_string();
    assert!(!page
        .body
        .contains(&phone.cookies.values().next().cloned().unwrap_or_default()));
    let p = post(
        &mut root,
        "/.gatehouse/admin/sessions/end",
        &[("csrf", &token), ("session", &reference)],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let mut after = [
        phone.get_json("/apps/team/").await.status,
        alice.clone().get_json("/apps/team/").await.status,
    ];
    after.sort_unstable();
    assert_eq!(after, [200, 401], "that one session ended at once; her other one lives");
    if phone.get_json("/apps/team/").await.status == 200 {
        std::mem::swap(&mut alice, &mut phone);
    }
    let again = post(
        &mut root,
        "/.gatehouse/admin/sessions/end",
        &[("csrf", &token), ("session", &reference)],
    )
    .await;
    assert_eq!(again.status, 404, "ended already: said so");
    let forged = post(
        &mut root,
        "/.gatehouse/admin/sessions/end",
        &[("csrf", "nope"), ("session", &reference)],
    )
    .await;
    assert_eq!(forged.status, 403);
    let p = post(
        &mut root,
        "/.gatehouse/admin/sessions/revoke",
        &[("csrf", &token), ("user", "alice")],
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location().unwrap_or("").contains("revoked=1"), "{:?}", p.location());
    assert_eq!(alice.get_json("/apps/team/").await.status, 401, "ended at once");
    assert_eq!(
        root.get_json("/apps/team/").await.status,
        200,
        "the admin's own session lives"
    );
    let audit = root.get("/.gatehouse/admin/audit?target=alice").await.body;
    assert!(audit.contains("user.sessions.delete"), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_accounts_are_created_regrouped_disabled_and_reset_in_the_admin_ui() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app("fin", &[backend.addr], "allow_groups = [\"finance\"]")
        .user("root", PW, true, &[])
        .start()
        .await;
    let mut root = signed_in(&gw, "root").await;
    let page = root.get("/.gatehouse/admin/users/new").await;
    let token = page.input_value("csrf").expect("token");
    // Invalid: a short password and a bad email, each named next to its field.
    let p = post(
        &mut root,
        "/.gatehouse/admin/users/new",
        &[
            ("csrf", &token),
            ("username", "carol"),
            ("email", "not an email"),
            ("password", "short"),
        ],
    )
    .await;
    assert_eq!(p.status, 400);
    assert!(
        p.body.contains(r#"id="password-error""#) && p.body.contains(r#"id="email-error""#),
        "{}",
        p.body
    );
    assert!(!p.body.contains("short"), "the password is never echoed back");
    // Created with group finance: she signs in and opens the finance app.
    let form = [
        ("csrf", token.as_str()),
        ("username", " Carol"),
        ("display_name", "Carol Example"),
        ("email", "carol@example.org"),
        ("groups", "finance"),
        ("password", "carols-first-password"),
    ];
    let p = post(&mut root, "/.gatehouse/admin/users/new", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/.gatehouse/admin/users/carol?saved=1"));
    let again = post(&mut root, "/.gatehouse/admin/users/new", &form).await;
    assert_eq!(again.status, 400, "the same name twice");
    assert!(again.body.contains("exists"));
    let mut carol = gw.browser();
    assert_eq!(carol.login("carol", "carols-first-password", None).await.status, 303);
    assert_eq!(carol.get("/apps/fin/").await.status, 200);
    assert!(root.get("/.gatehouse/admin/users").await.body.contains("Carol Example"));

    // Groups changed: her running session follows at once.
    let edit = [("csrf", token.as_str()), ("groups", "sales")];
    assert_eq!(
        post(&mut root, "/.gatehouse/admin/users/carol", &edit).await.status,
        303
    );
    assert_eq!(
        carol.get("/apps/fin/").await.status,
        403,
        "the group change applies to her session"
    );

    // Disabled: her session ends and she cannot sign in.
    let edit = [("csrf", token.as_str()), ("groups", "finance"), ("disabled", "1")];
    assert_eq!(
        post(&mut root, "/.gatehouse/admin/users/carol", &edit).await.status,
        303
    );
    assert_eq!(carol.get_json("/apps/fin/").await.status, 401);
    let mut c2 = gw.browser();
    assert_eq!(c2.login("carol", "carols-first-password", None).await.status, 401);

    // Enabled with a new password: the old one no longer works, the new one does.
    let edit = [
        ("csrf", token.as_str()),
        ("groups", "finance"),
        ("password", "carols-second-password"),
    ];
    assert_eq!(
        post(&mut root, "/.gatehouse/admin/users/carol", &edit).await.status,
        303
    );
    assert_eq!(
        gw.browser().login("carol", "carols-first-password", None).await.status,
        401
    );
    assert_eq!(
        gw.browser().login("carol", "carols-second-password", None).await.status,
        303
    );

    // An admin cannot lock themselves out.
    let p = post(
        &mut root,
        "/.gatehouse/admin/users/root",
        &[("csrf", &token), ("groups", "")],
    )
    .await;
    assert_eq!(p.status, 409, "{}", p.body);
    assert_eq!(root.get("/.gatehouse/admin/apps").await.status, 200, "still an admin");

    let audit = root.get("/.gatehouse/admin/audit?target=carol").await.body;
    for action in [
        "user.create",
        "user.set_groups",
        "user.set_disabled",
        "user.set_password",
    ] {
        assert!(audit.contains(action), "{action} audited: {audit}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_added_removed_and_expire_on_every_replica() {
    let backend = Backend::start("reports").await;
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let store_line = format!("[store]\nurl = \"{}\"\n", db.url);
    let first = gatehouse()
        .raw(&store_line)
        .user("root", PW, true, &[])
        .user("alice", PW, false, &["finance"])
        .user("bob", PW, false, &["sales"])
        .start()
        .await;
    let second = gatehouse().raw(&store_line).start().await;
    let mut root = signed_in(&first, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/new",
        &new_app_form(&token, "reports", &up, ""),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);

    let mut alice = signed_in(&first, "alice").await;
    let alice2 = {
        let mut b = second.browser();
        b.cookies = alice.cookies.clone();
        b
    };
    assert_eq!(
        alice.get("/apps/reports/").await.status,
        403,
        "administrators only so far"
    );

    // A grant through the form: group finance for 8 hours.
    let form = [
        ("csrf", token.as_str()),
        ("kind", "group"),
        ("name", "Finance"),
        ("duration", "8h"),
        ("until", ""),
    ];
    let p = post(&mut root, "/.gatehouse/admin/apps/reports/grants", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        alice.get("/apps/reports/").await.status,
        200,
        "at once on the replica that saved it"
    );
    let other = within(Duration::from_secs(1), || async {
        alice2.clone().get("/apps/reports/").await.status == 200
    })
    .await;
    assert!(other.is_some(), "and within 1 s on the other");
    let page = root.get("/.gatehouse/admin/apps/reports").await.body;
    assert!(
        page.contains("finance") && page.contains("until 2"),
        "the grant is listed with its end"
    );
    // A bad date is refused next to the form, nothing granted.
    let bad = [
        ("csrf", token.as_str()),
        ("kind", "user"),
        ("name", "bob"),
        ("duration", ""),
        ("until", "friday"),
    ];
    let p = post(&mut root, "/.gatehouse/admin/apps/reports/grants", &bad).await;
    assert!(
        p.location().unwrap_or("").contains("grant_error="),
        "{:?}",
        p.location()
    );
    let mut bob = signed_in(&first, "bob").await;
    assert_eq!(bob.get("/apps/reports/").await.status, 403);

    // Removed: refused everywhere.
    let rm = [("csrf", token.as_str()), ("kind", "group"), ("name", "finance")];
    assert_eq!(
        post(&mut root, "/.gatehouse/admin/apps/reports/grants/remove", &rm)
            .await
            .status,
        303
    );
    assert_eq!(alice.get("/apps/reports/").await.status, 403);
    let gone = within(Duration::from_secs(1), || async {
        alice2.clone().get("/apps/reports/").await.status == 403
    })
    .await;
    assert!(gone.is_some());

    // A grant that ends in 3 seconds (written by another client, through the store API):
    // bob gets in, then out again on both replicas within a second of the end, and the end
    // is audited once.
    let store = gatehouse_store::Store::open_postgres(&db.url).await.expect("store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let grant = gatehouse_store::GrantRecord {
        app: "reports".into(),
        grantee: gatehouse_store::Grantee::User(gatehouse_policy::UserName::new("bob")),
        expires_at: Some(now + 3),
        created_by: "test".into(),
        created_at: now,
    };
    store
        .put_grant(&grant, &gatehouse_store::Actor::new("test", None))
        .await
        .expect("grant");
    let bob2 = {
        let mut b = second.browser();
        b.cookies = bob.cookies.clone();
        b
    };
    let admitted = within(Duration::from_secs(1), || async {
        bob.clone().get("/apps/reports/").await.status == 200 && bob2.clone().get("/apps/reports/").await.status == 200
    })
    .await;
    assert!(admitted.is_some(), "bob admitted on both replicas");
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        < (now + 3) as u64
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expired = within(Duration::from_secs(1), || async {
        bob.clone().get("/apps/reports/").await.status == 403 && bob2.clone().get("/apps/reports/").await.status == 403
    })
    .await;
    assert!(
        expired.is_some(),
        "the expired grant stopped working within 1 s on both replicas"
    );
    let page = root.get("/.gatehouse/admin/apps/reports").await.body;
    assert!(page.contains("expired"), "shown as expired");
    let audited = within(Duration::from_secs(2), || async {
        let events = store
            .audit_events(&gatehouse_store::AuditFilter {
                action: Some("grant.expire".into()),
                ..gatehouse_store::AuditFilter::default()
            })
            .await
            .unwrap_or_default();
        events.len() == 1 && events[0].target == "reports/user:bob"
    })
    .await;
    assert!(audited.is_some(), "one grant.expire row, whichever replica wrote it");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = store
        .audit_events(&gatehouse_store::AuditFilter {
            action: Some("grant.expire".into()),
            ..gatehouse_store::AuditFilter::default()
        })
        .await
        .expect("audit")
        .len();
    assert_eq!(n, 1, "not once per replica");
    // The audit log by app: its creation, grants and their end; nobody's sign-in.
    let by_app = root.get("/.gatehouse/admin/audit?app=reports").await.body;
    for action in ["app.create", "grant.add", "grant.remove", "grant.expire"] {
        assert!(by_app.contains(action), "{action}: {by_app}");
    }
    assert!(!by_app.contains("signin.success"), "{by_app}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn access_is_requested_from_the_403_page_and_approved_or_declined() {
    let backend = Backend::start("reports").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let p = post(
        &mut root,
        "/.gatehouse/admin/apps/new",
        &new_app_form(&token, "reports", &up, ""),
    )
    .await;
    assert_eq!(p.status, 303, "{}", p.body);

    // Alice asks from the 403 page.
    let mut alice = signed_in(&gw, "alice").await;
    let page = alice.get("/apps/reports/").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("Request access"), "{}", page.body);
    let alice_token = page.input_value("csrf").expect("request token");
    // Someone else's token, or no Origin: refused, nothing recorded.
    let mut bob = signed_in(&gw, "bob").await;
    let p = post(
        &mut bob,
        "/.gatehouse/request-access",
        &[("csrf", &alice_token), ("app", "reports"), ("reason", "x")],
    )
    .await;
    assert_eq!(p.status, 403, "a token works only for its own session");
    let p = alice
        .post_form(
            "/.gatehouse/request-access",
            &[("csrf", &alice_token), ("app", "reports"), ("reason", "x")],
        )
        .await;
    assert_eq!(p.status, 403, "no Origin");
    let form = [
        ("csrf", alice_token.as_str()),
        ("app", "reports"),
        ("reason", "Quarter close <b>"),
    ];
    let p = post(&mut alice, "/.gatehouse/request-access", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location(), Some("/apps/reports/"));
    let page = alice.get("/apps/reports/").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("waiting for an administrator"), "{}", page.body);
    assert!(
        alice.get("/").await.body.contains("Your access requests"),
        "the portal says so too"
    );

    // The admin sees it (escaped), with her groups; a group she is not in cannot be granted.
    let list = root.get("/.gatehouse/admin/requests").await;
    assert!(
        list.body.contains("alice")
            && list.body.contains("Quarter close &lt;b&gt;")
            && list.body.contains("group:finance"),
        "{}",
        list.body
    );
    let token = list.input_value("csrf").expect("token");
    let approve = |grant_to: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("app", "reports".to_string()),
            ("user", "alice".to_string()),
            ("decision", "approve".to_string()),
            ("grant_to", grant_to.to_string()),
            ("duration", "1h".to_string()),
            ("until", String::new()),
        ]
    };
    let wide = approve("group:sales");
    let wide: Vec<(&str, &str)> = wide.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post(&mut root, "/.gatehouse/admin/requests", &wide).await.status, 400);
    assert_eq!(alice.get("/apps/reports/").await.status, 403, "nothing granted");
    let ok = approve("group:finance");
    let ok: Vec<(&str, &str)> = ok.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post(&mut root, "/.gatehouse/admin/requests", &ok).await.status, 303);
    assert_eq!(
        alice.get("/apps/reports/").await.status,
        200,
        "approved: she opens it at once"
    );
    assert_eq!(
        post(&mut root, "/.gatehouse/admin/requests", &ok).await.status,
        409,
        "decided once"
    );
    let grants = root.get("/.gatehouse/admin/apps/reports").await.body;
    assert!(
        grants.contains("finance") && grants.contains("until 2"),
        "a time-limited group grant"
    );

    // Bob asks and is declined; he sees it on the 403 page and the portal.
    let page = bob.get("/apps/reports/").await;
    let bob_token = page.input_value("csrf").expect("token");
    let p = post(
        &mut bob,
        "/.gatehouse/request-access",
        &[("csrf", &bob_token), ("app", "reports"), ("reason", "")],
    )
    .await;
    assert_eq!(p.status, 303);
    let decline = [
        ("csrf", token.as_str()),
        ("app", "reports"),
        ("user", "bob"),
        ("decision", "decline"),
    ];
    assert_eq!(
        post(&mut root, "/.gatehouse/admin/requests", &decline).await.status,
        303
    );
    let page = bob.get("/apps/reports/").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("declined by root"), "{}", page.body);
    assert!(bob.get("/").await.body.contains("declined by root"));
    // Asking for an app one can open is refused.
    let p = post(&mut alice, "/.gatehouse/request-access", &form).await;
    assert_eq!(p.status, 400);

    let audit = root.get("/.gatehouse/admin/audit").await.body;
    for action in ["access.request", "access.approve", "access.decline"] {
        assert!(audit.contains(action), "{action} audited");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_owners_manage_that_app_and_nothing_else() {
    let backend = Backend::start("sales").await;
    let gw = gatehouse()
        .user("root", PW, true, &[])
        .user("olga", PW, false, &[])
        .user("dan", PW, false, &["data"])
        .user("bob", PW, false, &["sales"])
        .start()
        .await;
    let mut root = signed_in(&gw, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let mut sales = new_app_form(&token, "sales", &up, "");
    sales.push(("owner_users", "Olga"));
    sales.push(("owner_groups", "data"));
    assert_eq!(post(&mut root, "/.gatehouse/admin/apps/new", &sales).await.status, 303);
    let hr = new_app_form(&token, "hr", &up, "");
    assert_eq!(post(&mut root, "/.gatehouse/admin/apps/new", &hr).await.status, 303);

    for owner in ["olga", "dan"] {
        let mut o = signed_in(&gw, owner).await;
        let home = o.get("/.gatehouse/admin/").await;
        assert_eq!(home.status, 303, "{owner}");
        let mine = o.get("/.gatehouse/admin/apps").await;
        assert_eq!(mine.status, 200);
        assert!(
            mine.body.contains("My apps") && mine.body.contains("/.gatehouse/admin/apps/sales"),
            "{owner}: {}",
            mine.body
        );
        assert!(
            !mine.body.contains("/.gatehouse/admin/apps/hr") && !mine.body.contains("New app"),
            "{owner} sees only their app"
        );
        for p in [
            "/.gatehouse/admin/apps/hr",
            "/.gatehouse/admin/apps/new",
            "/.gatehouse/admin/users",
            "/.gatehouse/admin/sessions",
            "/.gatehouse/admin/audit",
        ] {
            assert_eq!(o.get(p).await.status, 403, "{owner}: {p}");
        }
    }

    let mut olga = signed_in(&gw, "olga").await;
    let page = olga.get("/.gatehouse/admin/apps/sales").await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("owner_users") && !page.body.contains("Delete"),
        "no owner fields, no delete for owners"
    );
    let token = page.input_value("csrf").expect("token");
    let version = page.input_value("version").expect("version");
    // An owner's edit: the allow-list changes; an attempt to name owners is ignored.
    let mut edit = new_app_form(&token, "sales", &up, "sales");
    edit.retain(|(k, _)| *k != "version");
    edit.push(("version", &version));
    edit.push(("owner_users", "eve"));
    assert_eq!(post(&mut olga, "/.gatehouse/admin/apps/sales", &edit).await.status, 303);
    let mut bob = signed_in(&gw, "bob").await;
    assert_eq!(
        bob.get("/apps/sales/").await.status,
        200,
        "the owner's grant to group sales applies"
    );
    let owners = root.get("/.gatehouse/admin/apps/sales").await.body;
    assert!(
        owners.contains("olga") && !owners.contains(">eve"),
        "owners unchanged by an owner's save"
    );
    // Grants: on their app, yes; on another, no.
    let g = [
        ("csrf", token.as_str()),
        ("kind", "user"),
        ("name", "carol"),
        ("duration", "1d"),
        ("until", ""),
    ];
    assert_eq!(
        post(&mut olga, "/.gatehouse/admin/apps/sales/grants", &g).await.status,
        303
    );
    assert_eq!(
        post(&mut olga, "/.gatehouse/admin/apps/hr/grants", &g).await.status,
        403
    );
    assert_eq!(post(&mut olga, "/.gatehouse/admin/apps/hr", &edit).await.status, 403);
    assert_eq!(
        post(
            &mut olga,
            "/.gatehouse/admin/apps/sales/delete",
            &[("csrf", &token), ("version", &version)]
        )
        .await
        .status,
        403
    );
    assert_eq!(
        post(
            &mut olga,
            "/.gatehouse/admin/sessions/revoke",
            &[("csrf", &token), ("user", "bob")]
        )
        .await
        .status,
        403
    );

    // Access requests: the owner sees and decides those for their app only.
    let mut dan = signed_in(&gw, "dan").await;
    let p = dan.get("/apps/hr/").await;
    let t = p.input_value("csrf").expect("request form");
    assert_eq!(
        post(
            &mut dan,
            "/.gatehouse/request-access",
            &[("csrf", &t), ("app", "hr"), ("reason", "")]
        )
        .await
        .status,
        303
    );
    let requests = olga.get("/.gatehouse/admin/requests").await;
    assert_eq!(requests.status, 200);
    assert!(!requests.body.contains("dan →"), "olga does not see requests for hr");
    let decide = [
        ("csrf", token.as_str()),
        ("app", "hr"),
        ("user", "dan"),
        ("decision", "approve"),
        ("grant_to", "user"),
        ("duration", ""),
        ("until", ""),
    ];
    assert_eq!(post(&mut olga, "/.gatehouse/admin/requests", &decide).await.status, 403);
    assert_eq!(dan.get("/apps/hr/").await.status, 403, "nothing was granted");
    assert!(
        root.get("/.gatehouse/admin/requests").await.body.contains("dan"),
        "the admin sees it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_is_filtered_paged_and_exported() {
    let backend = Backend::start("app").await;
    let gw = setup(&backend).await;
    let store = gatehouse_store::Store::open_sqlite(&gw.dir.path().join("gatehouse.db"))
        .await
        .expect("store");
    let actor = gatehouse_store::Actor::new("script", None);
    for i in 0..150 {
        let mut e =
            gatehouse_store::AuditEvent::new(&actor, "test.event", if i == 0 { "=HYPERLINK(\"x\")" } else { "t" });
        e.detail = serde_json::json!({ "n": i });
        store.audit(&e).await.expect("audit");
    }
    store.close().await;
    let mut root = signed_in(&gw, "root").await;
    let first = root.get("/.gatehouse/admin/audit?action=test.event").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body.matches("<code>test.event</code>").count(),
        100,
        "100 per page"
    );
    assert!(first.body.contains(">Older<") && !first.body.contains(">Newer<"));
    let second = root.get("/.gatehouse/admin/audit?action=test.event&page=1").await;
    assert_eq!(second.body.matches("<code>test.event</code>").count(), 50);
    assert!(second.body.contains(">Newer<") && !second.body.contains(">Older<"));
    let none = root
        .get("/.gatehouse/admin/audit?action=test.event&from=2999-01-01")
        .await;
    assert_eq!(none.body.matches("<code>test.event</code>").count(), 0);
    let bad = root.get("/.gatehouse/admin/audit?from=yesterday").await;
    assert!(bad.body.contains("is not a UTC date"), "{}", bad.body);
    let bad = root.get("/.gatehouse/admin/audit?from=2026-11-20%2010:00").await;
    assert!(bad.body.contains("is not a date (YYYY-MM-DD)"), "{}", bad.body);

    let csv = root.get("/.gatehouse/admin/audit.csv?action=test.event").await;
    assert_eq!(csv.status, 200);
    assert!(csv
        .headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/csv")));
    assert_eq!(csv.body.lines().count(), 151, "a header and every event, not a page");
    assert!(
        csv.body.contains("\"'=HYPERLINK(\"\"x\"\")\""),
        "formulas are defused: {}",
        &csv.body[..300.min(csv.body.len())]
    );
    let json = root.get("/.gatehouse/admin/audit.json?action=test.event").await;
    let v: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(150));
    assert_eq!(v[149]["detail"]["n"], 0, "oldest last, detail as JSON");

    let mut alice = signed_in(&gw, "alice").await;
    assert_eq!(alice.get("/.gatehouse/admin/audit.csv").await.status, 403);
    assert_eq!(alice.get("/.gatehouse/admin/audit.json").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn header_options_and_portal_visibility_are_set_in_the_admin_ui() {
    let backend = Backend::start("dash").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let mut form = new_app_form(&token, "dash", &up, "finance\nsales");
    form.retain(|(k, _)| *k != "portal_visible");
    form.push(("remote_headers", "1"));
    form.push(("plotly_user_data", "1"));
    form.push(("groups_sent", "referenced"));
    let p = post(&mut root, "/.gatehouse/admin/apps/new", &form).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let mut alice = signed_in(&gw, "alice").await;
    let page = alice.get("/apps/dash/").await;
    assert_eq!(page.status, 200);
    let h = |n: &str| page.json()["headers"][n][0].as_str().unwrap_or("").to_string();
    assert_eq!(h("remote-user"), "alice");
    let plotly: serde_json::Value = serde_json::from_str(&h("plotly-user-data")).expect("Plotly-User-Data is JSON");
    assert_eq!(plotly["username"], "alice");
    assert_eq!(
        plotly["groups"],
        serde_json::json!(["finance"]),
        "only the groups the app names"
    );
    assert!(
        !alice.get("/").await.body.contains("/apps/dash/"),
        "hidden from the portal, still served"
    );
    // The edit page shows the options as saved; a bad groups_sent is refused by field.
    let edit = root.get("/.gatehouse/admin/apps/dash").await;
    assert!(
        edit.body.contains(r#"name="remote_headers" value="1" checked"#),
        "{}",
        edit.body
    );
    assert!(edit.body.contains(r#"<option value="referenced" selected>"#));
    let new = root.get("/.gatehouse/admin/apps/new").await;
    assert!(
        new.body.contains(r#"<option value="auto" selected>"#),
        "a new app sends groups by the default, auto: {}",
        new.body
    );
    let mut bad = new_app_form(&token, "other", &up, "");
    bad.push(("groups_sent", "everything"));
    let p = post(&mut root, "/.gatehouse/admin/apps/new", &bad).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains(r#"id="groups_sent-error""#), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn branding_set_in_the_admin_ui_shows_on_every_page_of_every_replica() {
    let backend = Backend::start("reports").await;
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let store_line = format!("[store]\nurl = \"{}\"\n[branding]\nname = \"File Name\"\n", db.url);
    let first = gatehouse()
        .raw(&store_line)
        .app("pub", &[backend.addr], "access = \"public\"")
        .app("closed", &[backend.addr], "access = \"restricted\"")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &["finance"])
        .start()
        .await;
    let second = gatehouse()
        .raw(&store_line)
        .app("pub", &[backend.addr], "access = \"public\"")
        .app("closed", &[backend.addr], "access = \"restricted\"")
        .start()
        .await;
    let mut root = signed_in(&first, "root").await;
    let page = root.get("/.gatehouse/admin/branding").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("File Name") && page.body.contains("From the config file"));
    let token = page.input_value("csrf").expect("token");

    // Refused, field by field, and nothing changes.
    let bad = [
        ("csrf", token.as_str()),
        ("name", ""),
        ("accent", "#ffff00"),
        ("logo_url", "javascript:alert(1)"),
    ];
    let p = post(&mut root, "/.gatehouse/admin/branding", &bad).await;
    assert_eq!(p.status, 400, "{}", p.body);
    for (field, words) in [
        ("name", "1 to 60 characters"),
        ("accent", "contrast of 1.1:1"),
        ("logo_url", "https://"),
    ] {
        assert!(
            p.body.contains(&format!(r#"id="{field}-error""#)) && p.body.contains(words),
            "{field}: {}",
            p.body
        );
    }
    assert!(second
        .browser()
        .get("/.gatehouse/login")
        .await
        .body
        .contains("File Name"));
    // Not an administrator: refused, read or write.
    let mut alice = signed_in(&first, "alice").await;
    assert_eq!(alice.get("/.gatehouse/admin/branding").await.status, 403);
    let alice_token = alice.get("/").await.input_value("csrf").unwrap_or_default();
    let good = [
        ("csrf", token.as_str()),
        ("name", "Acme Apps"),
        ("accent", "#1F7A4D"),
        ("logo_url", "/apps/pub/logo.svg"),
    ];
    let mut forged = good;
    forged[0] = ("csrf", alice_token.as_str());
    assert_eq!(
        post(&mut alice, "/.gatehouse/admin/branding", &forged).await.status,
        403
    );
    // Without this gateway's Origin: refused.
    let p = root
        .post_form_with("/.gatehouse/admin/branding", &good, &[("origin", "http://evil.test")])
        .await;
    assert_eq!(p.status, 403);
    assert!(second
        .browser()
        .get("/.gatehouse/login")
        .await
        .body
        .contains("File Name"));

    // Saved: the sign-in page, the portal, the gateway's own 403 page and the admin pages
    // show it, on the other replica within a second.
    let p = post(&mut root, "/.gatehouse/admin/branding", &good).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let branded = |body: &str| {
        body.contains("Acme Apps")
            && body.contains("--accent: #1f7a4d")
            && body.contains(r#"<img class="logo" src="/apps/pub/logo.svg""#)
            && !body.contains("File Name")
    };
    let seen = within(Duration::from_secs(1), || async {
        branded(&second.browser().get("/.gatehouse/login").await.body)
    })
    .await;
    assert!(seen.is_some(), "the other replica shows the new branding within 1 s");
    assert!(branded(&root.get("/.gatehouse/admin/apps").await.body));
    assert!(branded(&root.get("/").await.body), "portal");
    let denied = alice.get("/apps/closed/").await;
    assert_eq!(denied.status, 403);
    assert!(branded(&denied.body), "the proxy's 403 page: {}", denied.body);

    // Back to the file's.
    let page = root.get("/.gatehouse/admin/branding").await;
    assert!(page.body.contains("Saved in the admin UI"));
    let p = post(
        &mut root,
        "/.gatehouse/admin/branding",
        &[("csrf", token.as_str()), ("reset", "1")],
    )
    .await;
    assert_eq!(p.status, 303);
    let back = within(Duration::from_secs(1), || async {
        second
            .browser()
            .get("/.gatehouse/login")
            .await
            .body
            .contains("File Name")
    })
    .await;
    assert!(back.is_some(), "reset reaches the other replica");
    let audit = root.get("/.gatehouse/admin/audit?action=setting.update").await.body;
    assert!(audit.matches("setting.update").count() >= 2, "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_lists_apps_in_the_order_admins_give() {
    let backend = Backend::start("reports").await;
    let gw = setup(&backend).await;
    let mut root = signed_in(&gw, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    for (slug, name, order) in [("zeta", "Zeta board", "-5"), ("alpha", "Alpha board", "7")] {
        let mut form = new_app_form(&token, slug, &up, "finance");
        form.retain(|(k, _)| *k != "name");
        form.push(("name", name));
        form.push(("portal_order", order));
        let p = post(&mut root, "/.gatehouse/admin/apps/new", &form).await;
        assert_eq!(p.status, 303, "{}", p.body);
    }
    let mut bad = new_app_form(&token, "gamma", &up, "finance");
    bad.push(("portal_order", "first"));
    let p = post(&mut root, "/.gatehouse/admin/apps/new", &bad).await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains(r#"id="portal_order-error""#), "{}", p.body);
    let mut alice = signed_in(&gw, "alice").await;
    let portal = alice.get("/").await.body;
    let at = |name: &str| {
        portal
            .find(name)
            .unwrap_or_else(|| panic!("{name} on the portal: {portal}"))
    };
    // Zeta (-5) before the file's app (0) before Alpha (7), whatever the names.
    assert!(
        at("Zeta board") < at(">pub<") && at(">pub<") < at("Alpha board"),
        "{portal}"
    );
}
