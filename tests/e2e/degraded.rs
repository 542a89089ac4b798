//! Degraded modes over real sockets (see docs/degraded-modes.md).
//!
//! - The store's PostgreSQL stopped under load (a private server of the test's own, never
//!   the machine's shared one): cached sessions keep being served without a 5xx or a
//!   sign-in redirect, a sign-in gets the clear "session store is unreachable" page within
//!   seconds, and once the database is back sign-in works again without a restart, every
//!   audit row written before the outage is still there, and the visits counted during the
//!   outage reach the store. The outage lasts `GATEHOUSE_TEST_PG_OUTAGE_SECS` (default 30).
//! - Identity providers unreachable: an OIDC issuer and an LDAP directory that nothing
//!   answers on give their clear error pages, while local accounts sign in and sessions
//!   keep working.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_tests::cluster::{psql, within};
use gatehouse_tests::private_pg::PrivatePg;
use gatehouse_tests::{free_port, Backend, Browser, Gateway};

use crate::gatehouse;

const PW: &str = "correct horse battery staple";

fn outage() -> Duration {
    let secs = std::env::var("GATEHOUSE_TEST_PG_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u64);
    Duration::from_secs(secs)
}

async fn signed_in(gw: &Gateway, user: &str) -> Browser {
    let mut b = gw.browser();
    let p = b.login(user, PW, None).await;
    assert_eq!(p.status, 303, "{user} signs in: {}", p.body);
    b
}

/// What the load saw.
#[derive(Default)]
struct Seen {
    ok: AtomicUsize,
    /// Status and when (seconds into the load) of every answer that was not 200.
    bad: Mutex<Vec<(u16, f32)>>,
}

#[tokio::test(flavor = "multi_thread")]
async fn store_outage_keeps_signed_in_traffic_and_loses_nothing() {
    let pg = PrivatePg::start();
    let backend = Backend::start("reports").await;
    let gw = gatehouse()
        .app("reports", &[backend.addr], "access = \"authenticated\"")
        .raw(&format!(
            "[store]\nurl = \"{}\"\n[usage]\nflush_seconds = 1\n",
            pg.url()
        ))
        .user("alice", PW, false, &[])
        .user("bob", PW, false, &[])
        .start()
        .await;

    // Before the outage: sign-ins, a failed one, a sign-out — audit rows to keep.
    let alice = signed_in(&gw, "alice").await;
    let mut early = signed_in(&gw, "bob").await;
    assert_eq!(early.logout().await.status, 303);
    let mut wrong = gw.browser();
    assert_eq!(wrong.login("bob", "not the password", None).await.status, 401);
    let audit_before = psql(&pg.url(), "SELECT id, action, target FROM audit_log ORDER BY id");
    for action in ["signin.success", "signin.failure", "signout"] {
        assert!(
            audit_before.contains(action),
            "no {action} row before the outage:\n{audit_before}"
        );
    }

    // A bounded load of signed-in page loads (each one a visit) by four clients.
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut load = vec![];
    for _ in 0..4 {
        let (seen, stop) = (seen.clone(), stop.clone());
        let client = gw.client();
        let url = gw.url("/apps/reports/");
        let cookie = alice.cookie_header();
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let res = client
                    .get(&url)
                    .header("cookie", &cookie)
                    .header("accept", "text/html")
                    .header("sec-fetch-dest", "document")
                    .send()
                    .await;
                match res.map(|r| r.status().as_u16()) {
                    Ok(200) => {
                        seen.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(s) => seen.bad.lock().unwrap().push((s, started.elapsed().as_secs_f32())),
                    Err(_) => seen.bad.lock().unwrap().push((0, started.elapsed().as_secs_f32())),
                }
                // Pacing, not synchronisation: a steady load rather than a flood.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    assert!(
        within(Duration::from_secs(20), || async {
            seen.ok.load(Ordering::Relaxed) >= 20
        })
        .await
        .is_some(),
        "the load does not get through before the outage"
    );

    // The outage.
    pg.stop();
    let down_at = Instant::now();
    let mut bob = gw.browser();
    let asked = Instant::now();
    let p = tokio::time::timeout(Duration::from_secs(20), bob.login("bob", PW, None))
        .await
        .expect("a sign-in during the outage is answered, not left hanging");
    assert_eq!(p.status, 503, "sign-in while the store is down: {}", p.body);
    assert!(
        p.body.contains("session store is unreachable") && p.body.contains("Try again in a minute"),
        "{}",
        p.body
    );
    let answered_in = asked.elapsed();
    let ok_during_before = seen.ok.load(Ordering::Relaxed);
    while down_at.elapsed() < outage() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ok_during = seen.ok.load(Ordering::Relaxed) - ok_during_before;
    assert!(ok_during > 0, "no signed-in request was served during the outage");
    pg.start_again();

    // After: sign-in works again without a restart.
    let mut bob = gw.browser();
    assert!(
        within(Duration::from_secs(60), || {
            let mut b = gw.browser();
            async move { b.login("bob", PW, None).await.status == 303 }
        })
        .await
        .is_some(),
        "sign-in does not work again after the store is back; log:\n{}",
        gw.log()
    );
    let back = bob.login("bob", PW, None).await;
    assert_eq!(back.status, 303);
    assert_eq!(bob.get("/apps/reports/").await.status, 200);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }

    let bad = seen.bad.lock().unwrap().clone();
    assert!(
        bad.is_empty(),
        "signed-in requests failed (status, seconds into the load; the outage began at {:.1} s): {bad:?}",
        (down_at - started).as_secs_f32()
    );

    // Nothing lost: every audit row from before is still there, unchanged, and every page
    // load served reached the usage table (the counts were kept and retried).
    let audit_after = psql(&pg.url(), "SELECT id, action, target FROM audit_log ORDER BY id");
    assert!(
        audit_after.starts_with(&audit_before),
        "audit rows from before the outage changed:\nbefore:\n{audit_before}\nafter:\n{audit_after}"
    );
    let served = seen.ok.load(Ordering::Relaxed) + 1; // + bob's page load after the outage
    let visits = || {
        psql(
            &pg.url(),
            "SELECT COALESCE(SUM(visits), 0) FROM usage_visits WHERE app = 'reports'",
        )
    };
    assert!(
        within(Duration::from_secs(30), || async {
            visits().parse::<usize>().unwrap_or(0) >= served
        })
        .await
        .is_some(),
        "visits lost: {} in the store, {served} page loads served",
        visits()
    );
    assert_eq!(visits().parse::<usize>().unwrap(), served, "visits counted twice");
    eprintln!(
        "outage {:?}: {ok_during} signed-in requests served during it, sign-in error page in {answered_in:?}",
        outage()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_identity_providers_leave_local_sign_in_and_sessions_alone() {
    let backend = Backend::start("app").await;
    // Nothing listens on these ports: an OIDC issuer and an LDAP directory that are down.
    let (oidc_port, ldap_port) = (free_port(), free_port());
    let gw = gatehouse()
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .raw(&format!(
            "[[providers]]\nid = \"local\"\nkind = \"local\"\n\n\
             [[providers]]\nid = \"corp\"\nkind = \"ldap\"\nurl = \"ldap://127.0.0.1:{ldap_port}\"\n\
             bind_dn = \"cn=svc,dc=example,dc=org\"\nbind_password = \"x\"\nuser_base = \"dc=example,dc=org\"\n\
             connect_timeout = \"2s\"\n\n\
             [[providers]]\nid = \"okta\"\nkind = \"oidc\"\nlabel = \"Okta\"\nissuer = \"http://127.0.0.1:{oidc_port}\"\n\
             client_id = \"gatehouse\"\nclient_secret = \"s\"\n"
        ))
        .user("alice", PW, false, &[])
        .start()
        .await;
    let mut alice = signed_in(&gw, "alice").await;
    assert_eq!(alice.get("/apps/any/").await.status, 200);

    // OIDC provider down: its button leads to a clear page, not a 500 or a hang.
    let mut b = gw.browser();
    let p = tokio::time::timeout(Duration::from_secs(30), b.get("/.gatehouse/oidc/okta/start"))
        .await
        .expect("answered");
    assert_eq!(p.status, 502, "{}", p.body);
    assert!(
        p.body.contains("cannot be reached") && p.body.contains("Try again"),
        "{}",
        p.body
    );

    // LDAP down: a directory user gets the directory's clear page; a local account still
    // signs in (providers are tried in order, a down one does not stop the others).
    let mut carol = gw.browser();
    let p = tokio::time::timeout(Duration::from_secs(30), carol.login("carol", PW, None))
        .await
        .expect("answered");
    assert_eq!(p.status, 503, "{}", p.body);
    assert!(p.body.contains("directory is unavailable"), "{}", p.body);
    let mut again = gw.browser();
    assert_eq!(
        again.login("alice", PW, None).await.status,
        303,
        "local sign-in unaffected"
    );

    // Existing sessions are unaffected.
    assert_eq!(alice.get("/apps/any/").await.status, 200);
}
