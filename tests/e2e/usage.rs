//! Usage per app over real sockets: page loads by signed-in people are counted (assets,
//! XHR/fetch calls and WebSockets are not), flushed to the store in the background and
//! shown on the app's admin page (numbers parsed out of it), in the apps list and in the
//! overview's rankings; counts pending at shutdown are written; two replicas sharing a
//! PostgreSQL store add up.

use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::{Backend, Browser, Gateway};

use crate::gatehouse;

pub(crate) const PW: &str = "correct horse battery staple";

pub(crate) async fn signed_in(gw: &Gateway, user: &str) -> Browser {
    let mut b = gw.browser();
    assert_eq!(b.login(user, PW, None).await.status, 303, "{user} signs in");
    b
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The number in the element with `id` (`<dd id="usage-visits-7">6</dd>`).
fn number(body: &str, id: &str) -> Option<i64> {
    let start = body.find(&format!(r#"id="{id}">"#))? + id.len() + 6;
    let rest = &body[start..];
    rest[..rest.find('<')?].trim().parse().ok()
}

/// The people of the "last opened by" list, in order.
fn last_opened(body: &str) -> Vec<String> {
    let Some(start) = body.find(r#"id="usage-last">"#) else {
        return vec![];
    };
    let list = &body[start..body[start..].find("</ol>").map_or(body.len(), |e| start + e)];
    list.split(r#"<span class="person">"#)
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(str::to_string)
        .collect()
}

/// The app slugs of the overview table `id`, in rank order.
fn ranking(body: &str, id: &str) -> Vec<String> {
    let Some(start) = body.find(&format!(r#"<table id="{id}">"#)) else {
        return vec![];
    };
    let table = &body[start..body[start..].find("</table>").map_or(body.len(), |e| start + e)];
    table
        .split(r#"<tr data-app=""#)
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

/// Waits (up to 10 s) until app `slug`'s page shows `visits` visits over 7 days; returns
/// the page.
async fn page_with_visits(root: &Browser, slug: &str, visits: i64) -> String {
    let path = format!("/.gatehouse/admin/apps/{slug}");
    let shown = within(Duration::from_secs(10), || async {
        number(&root.clone().get(&path).await.body, "usage-visits-7") == Some(visits)
    })
    .await;
    let body = root.clone().get(&path).await.body;
    assert!(
        shown.is_some(),
        "{slug}: expected {visits} visits, page shows {:?}",
        number(&body, "usage-visits-7")
    );
    body
}

/// Requests to an app that are not visits: an asset, an XHR, a fetch() of HTML, a POST.
async fn not_visits(b: &mut Browser, app: &str) {
    let asset = format!("/apps/{app}/static/app.js");
    let api = format!("/apps/{app}/api/data");
    for (path, headers) in [
        (&asset, vec![("accept", "*/*"), ("sec-fetch-dest", "script")]),
        (&asset, vec![("accept", "*/*")]),
        (&api, vec![("accept", "application/json")]),
        (
            &api,
            vec![("accept", "text/html, */*"), ("x-requested-with", "XMLHttpRequest")],
        ),
        (&api, vec![("accept", "text/html"), ("sec-fetch-dest", "empty")]),
    ] {
        assert_eq!(b.get_with(path, &headers).await.status, 200, "{path} {headers:?}");
    }
    let origin = b.origin();
    b.post_form_with(
        &format!("/apps/{app}/form"),
        &[("a", "b")],
        &[("origin", origin.as_str())],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn visits_and_people_are_shown_on_the_app_page_the_list_and_the_overview() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app("reports", &[backend.addr], "access = \"authenticated\"")
        .app("wiki", &[backend.addr], "access = \"authenticated\"")
        .app("idle", &[backend.addr], "access = \"authenticated\"")
        .raw("[usage]\nflush_seconds = 1\n")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &[])
        .user("bob", PW, false, &[])
        .user("carol", PW, false, &[])
        .start()
        .await;
    let mut alice = signed_in(&gw, "alice").await;
    let mut bob = signed_in(&gw, "bob").await;
    let mut carol = signed_in(&gw, "carol").await;

    // reports: 6 visits by 3 people (alice 3, bob 2 with Sec-Fetch-Dest, carol last).
    for _ in 0..3 {
        assert_eq!(alice.get("/apps/reports/").await.status, 200);
    }
    not_visits(&mut alice, "reports").await;
    for p in ["/apps/reports/", "/apps/reports/page2"] {
        let page = bob
            .get_with(p, &[("sec-fetch-dest", "document"), ("accept", "text/html")])
            .await;
        assert_eq!(page.status, 200);
    }
    not_visits(&mut bob, "reports").await;
    // wiki: 2 visits, both bob's.
    for _ in 0..2 {
        assert_eq!(bob.get("/apps/wiki/").await.status, 200);
    }
    // Anonymous requests are sent to sign in, not served: not visits.
    assert_eq!(gw.browser().get("/apps/reports/").await.status, 302);
    // Carol opens reports last, in a later second than the others (times are seconds).
    let t0 = unix_now();
    assert!(within(Duration::from_secs(2), || async { unix_now() > t0 })
        .await
        .is_some());
    assert_eq!(carol.get("/apps/reports/").await.status, 200);

    let root = signed_in(&gw, "root").await;
    let body = page_with_visits(&root, "reports", 6).await;
    assert_eq!(number(&body, "usage-people-7"), Some(3), "three distinct people");
    assert_eq!(number(&body, "usage-visits-30"), Some(6));
    assert_eq!(number(&body, "usage-people-30"), Some(3));
    let last = last_opened(&body);
    assert_eq!(last.first().map(String::as_str), Some("carol"), "{last:?}");
    let mut sorted = last.clone();
    sorted.sort();
    assert_eq!(sorted, ["alice", "bob", "carol"]);
    // Two charts of 30 bars each, with text for screen readers and a table of the numbers.
    assert_eq!(body.matches("<rect ").count(), 60);
    assert!(body.contains("6 visits from "), "the chart's description has the total");
    assert!(body.contains("Numbers per day"));

    let wiki = page_with_visits(&root, "wiki", 2).await;
    assert_eq!(number(&wiki, "usage-people-7"), Some(1));
    let idle = root.clone().get("/.gatehouse/admin/apps/idle").await.body;
    assert_eq!(number(&idle, "usage-visits-7"), Some(0));
    assert!(last_opened(&idle).is_empty());

    // The apps list's column.
    let list = root.clone().get("/.gatehouse/admin/apps").await.body;
    assert!(list.contains("Visits (7 days)"));
    for (slug, n) in [("reports", 6), ("wiki", 2), ("idle", 0)] {
        let cell = format!(r#"data-visits="{n}"><a href="/.gatehouse/admin/apps/{slug}#usage">{n}</a>"#);
        assert!(list.contains(&cell), "{slug}: {n} visits in the list");
    }

    // The overview ranks by visits and by people.
    let overview = root.clone().get("/.gatehouse/admin/usage").await;
    assert_eq!(overview.status, 200);
    assert_eq!(ranking(&overview.body, "top-visits"), ["reports", "wiki"]);
    assert_eq!(ranking(&overview.body, "top-people"), ["reports", "wiki"]);
    let month = root.clone().get("/.gatehouse/admin/usage?days=30").await;
    assert_eq!(ranking(&month.body, "top-visits"), ["reports", "wiki"]);
    assert_eq!(root.clone().get("/.gatehouse/admin/usage?days=9").await.status, 400);

    // Three more people open wiki once each: wiki has more people (4 to 3) but fewer
    // visits (5 to 6) than reports, so the two rankings differ.
    for mut b in [alice.clone(), carol.clone(), root.clone()] {
        assert_eq!(b.get("/apps/wiki/").await.status, 200);
    }
    let wiki = page_with_visits(&root, "wiki", 5).await;
    assert_eq!(number(&wiki, "usage-people-7"), Some(4));
    let overview = root.clone().get("/.gatehouse/admin/usage").await.body;
    assert_eq!(ranking(&overview, "top-visits"), ["reports", "wiki"]);
    assert_eq!(ranking(&overview, "top-people"), ["wiki", "reports"]);

    // Not for people who are neither administrators nor owners.
    assert_eq!(alice.get("/.gatehouse/admin/usage").await.status, 403);
    assert_eq!(alice.get("/.gatehouse/admin/apps/reports").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_sees_the_usage_of_their_app_only() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app("pub", &[backend.addr], "access = \"public\"")
        .raw("[usage]\nflush_seconds = 1\n")
        .user("root", PW, true, &[])
        .user("olga", PW, false, &[])
        .start()
        .await;
    let mut root = signed_in(&gw, "root").await;
    let token = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let origin = root.origin();
    let form = [
        ("csrf", token.as_str()),
        ("version", "0"),
        ("slug", "owned"),
        ("name", "Owned app"),
        ("upstreams", up.as_str()),
        ("access", "authenticated"),
        ("owner_users", "olga"),
        ("portal_visible", "1"),
    ];
    let p = root
        .post_form_with("/.gatehouse/admin/apps/new", &form, &[("origin", origin.as_str())])
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let mut olga = signed_in(&gw, "olga").await;
    let served = within(Duration::from_secs(2), || async {
        olga.clone().get("/apps/owned/").await.status == 200
    })
    .await;
    assert!(served.is_some());
    // Anonymous visits to a public app count as visits, not as people.
    let mut anon = gw.browser();
    assert_eq!(anon.get("/apps/pub/").await.status, 200);
    assert_eq!(anon.get("/apps/pub/").await.status, 200);

    let body = page_with_visits(&olga, "owned", 1).await;
    assert_eq!(number(&body, "usage-people-7"), Some(1));
    assert_eq!(last_opened(&body), ["olga"]);
    let pubpage = page_with_visits(&root, "pub", 2).await;
    assert_eq!(number(&pubpage, "usage-people-7"), Some(0));
    assert!(last_opened(&pubpage).is_empty());
    // Her list shows her app's visits; the overview and other apps are not hers.
    let list = olga.get("/.gatehouse/admin/apps").await.body;
    assert!(list.contains(r#"data-visits="1"><a href="/.gatehouse/admin/apps/owned#usage">"#));
    assert!(!list.contains("/.gatehouse/admin/apps/pub#usage"));
    assert_eq!(olga.get("/.gatehouse/admin/apps/pub").await.status, 403);
    assert_eq!(olga.get("/.gatehouse/admin/usage").await.status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn visits_pending_at_shutdown_are_written() {
    let backend = Backend::start("app").await;
    let mut gw = gatehouse()
        .app("reports", &[backend.addr], "access = \"authenticated\"")
        .raw("[usage]\nflush_seconds = 3600\n")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &[])
        .start()
        .await;
    let mut alice = signed_in(&gw, "alice").await;
    for _ in 0..2 {
        assert_eq!(alice.get("/apps/reports/").await.status, 200);
    }
    let root = signed_in(&gw, "root").await;
    let before = root.clone().get("/.gatehouse/admin/apps/reports").await.body;
    assert_eq!(number(&before, "usage-visits-7"), Some(0), "not flushed yet (hourly)");
    gw.restart().await;
    let root = signed_in(&gw, "root").await;
    let after = root.clone().get("/.gatehouse/admin/apps/reports").await.body;
    assert_eq!(number(&after, "usage-visits-7"), Some(2), "written at shutdown");
    assert_eq!(last_opened(&after), ["alice"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn visits_on_two_replicas_add_up() {
    let backend = Backend::start("app").await;
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let shared = format!("[store]\nurl = \"{}\"\n[usage]\nflush_seconds = 1\n", db.url);
    let first = gatehouse()
        .app("reports", &[backend.addr], "access = \"authenticated\"")
        .raw(&shared)
        .user("root", PW, true, &[])
        .user("alice", PW, false, &[])
        .user("bob", PW, false, &[])
        .start()
        .await;
    let second = gatehouse()
        .app("reports", &[backend.addr], "access = \"authenticated\"")
        .raw(&shared)
        .start()
        .await;
    let mut alice = signed_in(&first, "alice").await;
    let mut bob_on_second = {
        let mut bob = signed_in(&first, "bob").await;
        let mut b = second.browser();
        b.cookies = std::mem::take(&mut bob.cookies);
        b
    };
    for _ in 0..2 {
        assert_eq!(alice.get("/apps/reports/").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(bob_on_second.get("/apps/reports/").await.status, 200);
    }
    not_visits(&mut bob_on_second, "reports").await;
    let root = signed_in(&first, "root").await;
    let body = page_with_visits(&root, "reports", 5).await;
    assert_eq!(number(&body, "usage-people-7"), Some(2));
    // A second round on both: still one sum.
    assert_eq!(alice.get("/apps/reports/").await.status, 200);
    assert_eq!(bob_on_second.get("/apps/reports/").await.status, 200);
    page_with_visits(&root, "reports", 7).await;
}
