//! LDAP sign-in against a real OpenLDAP `slapd` with a seeded directory (see
//! tests/peers/ldap/): escaping, single-entry rule, locked accounts, 2,000 groups, nested
//! groups with a cycle, LDAPS and StartTLS, and the directory going away and coming back.

use std::time::{Duration, Instant};

use gatehouse_tests::ldap::Slapd;
use gatehouse_tests::{Backend, Gateway};

use crate::gatehouse;

/// An LDAP provider block for `slapd`, with extra lines.
fn provider(slapd: &Slapd, url: &str, extra: &str) -> String {
    format!(
        r#"[[providers]]
id = "corp"
kind = "ldap"
label = "Corporate directory"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "{bind_pw}"
user_base = "{base}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
connect_timeout = "2s"
operation_timeout = "3s"
{extra}
"#,
        bind_dn = slapd.bind_dn,
        bind_pw = slapd.bind_password,
        base = slapd.base,
    )
}

async fn gateway(slapd: &Slapd, backend: &Backend, url: &str, extra: &str) -> Gateway {
    let b = [backend.addr];
    gatehouse()
        .raw(&provider(slapd, url, extra))
        .app("fin", &b, "access = \"restricted\"\nallow_groups = [\"finance\"]")
        .app("outer", &b, "access = \"restricted\"\nallow_groups = [\"outer\"]")
        .app("staff", &b, "access = \"restricted\"\nallow_groups = [\"staff\", \"posix-staff\"]\nheaders = { groups_sent = \"referenced\" }")
        .app("any", &b, "access = \"authenticated\"\nheaders = { groups_sent = \"all\" }")
        .start()
        .await
}

const NESTED: &str = "groups = { strategy = \"member_of\", nested = true }";

#[tokio::test(flavor = "multi_thread")]
async fn directory_sign_in_accepts_the_right_people_only() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&slapd, &backend, &slapd.url, NESTED).await;

    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", "alice-pw", None).await.status, 303);
    assert_eq!(alice.get("/apps/fin/").await.status, 200);
    let p = alice.get("/apps/any/").await;
    let groups = p.json()["headers"]["x-forwarded-groups"][0]
        .as_str()
        .unwrap()
        .to_string();
    for g in ["finance", "staff", "r&d, europe"] {
        assert!(
            gatehouse_tests::identity::split_groups(&groups).iter().any(|x| x == g),
            "{g} missing from {groups}"
        );
    }
    assert_eq!(p.json()["headers"]["x-forwarded-email"][0], "alice@example.org");

    let mut bob = gw.browser();
    assert_eq!(
        bob.login("BOB", "bob-pw", None).await.status,
        303,
        "user ids compare case-insensitively"
    );
    assert_eq!(bob.get("/apps/fin/").await.status, 403);

    // A uid full of filter metacharacters signs in as itself.
    let mut odd = gw.browser();
    let p = odd.login("o'b(r)i*e\\n", "odd-pw", None).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        odd.get("/apps/any/").await.json()["headers"]["x-forwarded-user"][0],
        "o'b(r)i*e\\n"
    );

    // Refusals: none of these may match anyone.
    for (user, pw, why) in [
        ("alice", "wrong", "wrong password"),
        ("alice", "", "empty password (unauthenticated bind)"),
        ("*", "alice-pw", "wildcard user"),
        ("alice)(uid=*", "alice-pw", "filter injection"),
        ("*)(uid=*))(|(uid=*", "x", "filter injection"),
        // Each of these would match exactly one entry (alice, bob) if `*` were not escaped,
        // so only escaping refuses them, not the single-entry rule.
        ("*ice", "alice-pw", "wildcard suffix matching one entry"),
        ("a*e", "alice-pw", "inner wildcard matching one entry"),
        ("b*", "bob-pw", "wildcard matching one entry"),
        ("al*", "alice-pw", "wildcard prefix"),
        ("locked", "locked-pw", "locked account"),
        ("dup", "dup-pw", "several entries match"),
        ("nobody", "nobody-pw", "unknown user"),
    ] {
        let mut b = gw.browser();
        let p = b.login(user, pw, None).await;
        assert_eq!(p.status, 401, "{why}: {user:?} → {}", p.status);
        assert!(p.body.contains("Wrong user name or password."), "{why}");
        assert!(!b.cookies.contains_key("gatehouse_session"), "{why}");
    }
    // The empty password is refused by the gateway itself: slapd never sees a bind as alice
    // for it (slapd would refuse an unauthenticated bind too, so only its log tells).
    let alice_binds = || {
        slapd
            .log()
            .to_ascii_lowercase()
            .matches("bind dn=\"uid=alice,ou=people,dc=example,dc=org\" method=")
            .count()
    };
    let before = alice_binds();
    assert_eq!(gw.browser().login("alice", "", None).await.status, 401);
    assert_eq!(gw.browser().login("alice", "alice-pw", None).await.status, 303);
    // slapd's log is ordered: once the good sign-in's bind is in it, so would the other be.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alice_binds() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        alice_binds() - before,
        1,
        "slapd saw a bind as alice for the empty password:\n{}",
        slapd.log()
    );
    // Secrets never reach the logs.
    let log = gw.log();
    for secret in ["service-pw", "alice-pw", "bob-pw", "odd-pw"] {
        assert!(!log.contains(secret), "{secret} appears in the gateway log");
    }
}

/// Directory group names hold commas (`R&D\, Europe`; `staff\,admins` is one group): in the
/// comma-separated headers each name has `,` and `%` percent-encoded, so no name can add
/// another group; `Plotly-User-Data` and the assertion carry real JSON lists.
#[tokio::test(flavor = "multi_thread")]
async fn group_names_with_commas_cannot_inject_groups() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let b = [backend.addr];
    let gw = gatehouse()
        .raw(&provider(&slapd, &slapd.url, NESTED))
        .app(
            "dash",
            &b,
            "access = \"authenticated\"\nheaders = { remote_headers = true, plotly_user_data = true }",
        )
        .app("admins", &b, "access = \"restricted\"\nallow_groups = [\"admins\"]")
        .start()
        .await;
    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", "alice-pw", None).await.status, 303);
    let p = alice.get("/apps/dash/").await;
    let headers = &p.json()["headers"];
    assert_eq!(
        headers["x-forwarded-groups"][0],
        "finance,r&d%2C europe,staff,staff%2Cadmins"
    );
    assert_eq!(
        headers["remote-groups"][0],
        "finance,r&d%2C europe,staff,staff%2Cadmins"
    );
    gatehouse_tests::identity::assert_groups(headers, &["finance", "r&d, europe", "staff", "staff,admins"]);
    let seen = gatehouse_tests::identity::split_groups(headers["x-forwarded-groups"][0].as_str().unwrap());
    assert!(!seen.iter().any(|g| g == "admins"), "{seen:?}");
    assert_eq!(alice.get("/apps/admins/").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_groups_grant_the_outer_group_and_cycles_end() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&slapd, &backend, &slapd.url, NESTED).await;
    let mut n = gw.browser();
    let t = Instant::now();
    assert_eq!(n.login("nested", "nested-pw", None).await.status, 303);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "cycle guard: took {:?}",
        t.elapsed()
    );
    assert_eq!(
        n.get("/apps/outer/").await.status,
        200,
        "two levels of nesting reach outer"
    );
    let groups = n.get("/apps/any/").await.json()["headers"]["x-forwarded-groups"][0]
        .as_str()
        .unwrap()
        .to_string();
    for g in ["inner", "middle", "outer", "cycle-a", "cycle-b"] {
        assert!(groups.split(',').any(|x| x == g), "{g} missing from {groups}");
    }

    // Without nesting only the direct group counts.
    let flat = gateway(&slapd, &backend, &slapd.url, "groups = { strategy = \"member_of\" }").await;
    let mut n = flat.browser();
    assert_eq!(n.login("nested", "nested-pw", None).await.status, 303);
    assert_eq!(n.get("/apps/outer/").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_search_strategy_finds_member_and_member_uid_groups() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&slapd, &backend, &slapd.url, "groups = { strategy = \"search\" }").await;
    let mut bob = gw.browser();
    assert_eq!(bob.login("bob", "bob-pw", None).await.status, 303);
    let p = bob.get("/apps/staff/").await;
    assert_eq!(p.status, 200);
    assert_eq!(p.json()["headers"]["x-forwarded-groups"][0], "staff,posix-staff");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_groups_sign_in_under_a_second() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&slapd, &backend, &slapd.url, NESTED).await;
    let mut many = gw.browser();
    let _ = many.get("/.gatehouse/login").await;
    let t = Instant::now();
    let p = many.login("many", "many-pw", None).await;
    let took = t.elapsed();
    assert_eq!(p.status, 303, "{}", p.body);
    eprintln!("LDAP sign-in of a user in 2,001 groups (nested resolution on): {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let cookie = many
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    assert!(cookie.split(';').next().unwrap().len() < 100);
    let p = many.get("/apps/staff/").await;
    assert_eq!(p.status, 200);
    assert_eq!(p.json()["headers"]["x-forwarded-groups"][0], "staff");
    let p = many.get("/apps/any/").await;
    assert!(
        p.json()["headers"]["x-forwarded-groups"][0]
            .as_str()
            .unwrap()
            .split(',')
            .count()
            >= 2001
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ldaps_and_starttls_verify_the_certificate() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let ca = slapd.ca_file.display().to_string();
    let wrong = slapd.wrong_ca_file.display().to_string();
    for (url, extra) in [
        (slapd.ldaps_url.clone(), format!("ca_file = \"{ca}\"\n{NESTED}")),
        (
            slapd.url.clone(),
            format!("starttls = true\nca_file = \"{ca}\"\n{NESTED}"),
        ),
    ] {
        let gw = gateway(&slapd, &backend, &url, &extra).await;
        let mut a = gw.browser();
        assert_eq!(a.login("alice", "alice-pw", None).await.status, 303, "{url} {extra}");
    }
    for (url, extra) in [
        (slapd.ldaps_url.clone(), format!("ca_file = \"{wrong}\"")),
        (slapd.url.clone(), format!("starttls = true\nca_file = \"{wrong}\"")),
    ] {
        let gw = gateway(&slapd, &backend, &url, &extra).await;
        let mut a = gw.browser();
        let p = a.login("alice", "alice-pw", None).await;
        assert_eq!(
            p.status, 503,
            "a certificate from an unknown CA must be refused ({url})"
        );
        assert!(p.body.contains("directory is unavailable"), "{}", p.body);
    }
    // insecure_skip_verify works but is announced at start.
    let gw = gateway(
        &slapd,
        &backend,
        &slapd.ldaps_url,
        &format!("ca_file = \"{wrong}\"\ninsecure_skip_verify = true"),
    )
    .await;
    let mut a = gw.browser();
    assert_eq!(a.login("alice", "alice-pw", None).await.status, 303);
    assert!(gw.log().contains("insecure_skip_verify is on"), "no warning logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_outage_keeps_sessions_and_recovers_without_restart() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&slapd, &backend, &slapd.url, NESTED).await;
    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", "alice-pw", None).await.status, 303);

    slapd.stop();
    let mut bob = gw.browser();
    let t = Instant::now();
    let p = bob.login("bob", "bob-pw", None).await;
    assert_eq!(p.status, 503);
    assert!(
        p.body.contains("directory is unavailable") && p.body.contains("Try again"),
        "{}",
        p.body
    );
    assert!(t.elapsed() < Duration::from_secs(8), "took {:?}", t.elapsed());
    assert_eq!(
        alice.get("/apps/fin/").await.status,
        200,
        "existing sessions keep working"
    );
    assert_eq!(
        gw.get("/.gatehouse/healthz").await.status(),
        200,
        "the gateway stays up"
    );

    slapd.start_again();
    let mut bob = gw.browser();
    assert_eq!(
        bob.login("bob", "bob-pw", None).await.status,
        303,
        "sign-in works again without a restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_test_command_shows_what_the_gateway_sees() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(&slapd, &backend, &slapd.url, NESTED).await;
    let out = gw.cli(&["ldap", "test", "alice"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("dn:") && text.contains("uid=alice"), "{text}");
    assert!(text.contains("finance") && text.contains("time taken"), "{text}");
    let out = gw.cli(&["ldap", "test", "dup"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no single directory entry"));
}

#[tokio::test(flavor = "multi_thread")]
async fn local_and_directory_accounts_are_tried_in_order() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let b = [backend.addr];
    let gw = gatehouse()
        .raw("[[providers]]\nid = \"local\"\nkind = \"local\"\n")
        .raw(&provider(&slapd, &slapd.url, NESTED))
        .app("any", &b, "access = \"authenticated\"")
        .user("localonly", "local-only-pw", false, &[])
        .start()
        .await;
    let mut l = gw.browser();
    assert_eq!(l.login("localonly", "local-only-pw", None).await.status, 303);
    let mut d = gw.browser();
    assert_eq!(d.login("alice", "alice-pw", None).await.status, 303);
    assert_eq!(
        d.get("/apps/any/").await.json()["headers"]["x-forwarded-user"][0],
        "alice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recheck_refreshes_groups_and_ends_sessions_of_removed_accounts() {
    let slapd = Slapd::start().await;
    let backend = Backend::start("app").await;
    let gw = gateway(
        &slapd,
        &backend,
        &slapd.url,
        &format!("{NESTED}\nrecheck_interval = \"1s\""),
    )
    .await;
    let mut alice = gw.browser();
    assert_eq!(alice.login("alice", "alice-pw", None).await.status, 303);
    assert_eq!(alice.get("/apps/staff/").await.status, 200);
    slapd.modify(
        "dn: cn=staff,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n",
    );
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if alice.get("/apps/staff/").await.status == 403 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "removed group still honoured");
    }
    assert_eq!(alice.get("/apps/any/").await.status, 200, "the session itself lives on");
    slapd.modify("dn: uid=alice,ou=people,dc=example,dc=org\nchangetype: delete\n");
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        if alice.get("/apps/any/").await.status == 302 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a removed account keeps its session"
        );
    }
}
