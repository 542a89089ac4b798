//! The App Portal through the real gateway: the admin-set order (config file and admin
//! form), tags and the `?tag=`/`?q=` filter, favourites set with the card's form (plain and
//! JSON; token, Origin and access checked; per person), "recently opened" from real visits,
//! and both shared by two replicas on one PostgreSQL store.

use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::{Backend, Browser, Page};

use crate::gatehouse;
use crate::usage::{signed_in, unix_now, PW};

/// The slugs of the cards in `body` (or only inside the list with id `list`), in page
/// order, with whether each is hidden.
fn cards(body: &str, list: Option<&str>) -> Vec<(String, bool)> {
    let body = match list {
        Some(id) => {
            let start = body.find(&format!(r#"<ul class="apps" id="{id}">"#)).expect("the list");
            &body[start..start + body[start..].find("</ul></section>").expect("its end")]
        }
        None => body,
    };
    body.split(r#"<li class="app"#)
        .skip(1)
        .map(|li| {
            let tag = &li[..li.find('>').unwrap()];
            let slug = tag.split(r#"data-slug=""#).nth(1).unwrap().split('"').next().unwrap();
            (slug.to_string(), tag.ends_with(" hidden"))
        })
        .collect()
}

/// The slugs shown (not hidden), in page order.
fn shown(body: &str, list: Option<&str>) -> Vec<String> {
    cards(body, list)
        .into_iter()
        .filter(|(_, hidden)| !hidden)
        .map(|(s, _)| s)
        .collect()
}

/// The hrefs of the "Recently opened" strip.
fn recent(body: &str) -> Vec<String> {
    let Some(start) = body.find(r#"<ul class="recent-list">"#) else {
        return vec![];
    };
    let list = &body[start..start + body[start..].find("</ul>").unwrap()];
    list.split(r#"<li><a href=""#)
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

/// The favourite forms' token on a portal page.
fn favourite_token(page: &Page) -> String {
    let marker = r#"action="/.gatehouse/portal/favourite"><input type="hidden" name="csrf" value=""#;
    let start = page.body.find(marker).expect("a favourite form") + marker.len();
    page.body[start..start + page.body[start..].find('"').unwrap()].to_string()
}

async fn favourite(b: &mut Browser, token: &str, app: &str, on: bool, headers: &[(&str, &str)]) -> Page {
    let flag = if on { "1" } else { "0" };
    b.post_form_with(
        "/.gatehouse/portal/favourite",
        &[("csrf", token), ("app", app), ("favourite", flag)],
        headers,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn order_tags_favourites_and_recent_apps_on_the_portal() {
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .app(
            "wiki",
            &[backend.addr],
            "access = \"authenticated\"\nportal_order = 5\ntags = [\"docs\"]",
        )
        .app(
            "sales",
            &[backend.addr],
            "name = \"Sales\"\naccess = \"authenticated\"\nportal_order = -1\ntags = [\"Finance\", \"dash\"]\n\
             thumbnail = \"https://cdn.example.com/sales.png\"\nowner = \"Finance team\"",
        )
        .app(
            "hr",
            &[backend.addr],
            "access = \"restricted\"\nallow_groups = [\"hr\"]",
        )
        .app(
            "ops",
            &[backend.addr],
            "access = \"authenticated\"\ntags = [\"finance\"]",
        )
        .raw("[usage]\nflush_seconds = 3600\n")
        .user("root", PW, true, &[])
        .user("alice", PW, false, &[])
        .user("bob", PW, false, &[])
        .start()
        .await;
    let mut alice = signed_in(&gw, "alice").await;
    let mut bob = signed_in(&gw, "bob").await;

    // Order: portal_order, then file order; hr is not hers.
    let page = alice.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(shown(&page.body, None), ["sales", "ops", "wiki"]);
    assert!(page.body.contains(r#"src="https://cdn.example.com/sales.png""#));
    assert!(page.body.contains("Owner: Finance team"));
    assert!(page
        .body
        .contains(r#"data-tag="finance">Finance <span class="count">2</span>"#));
    let csp = page.headers["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("img-src 'self' https: data:"), "{csp}");

    // The filter without script: the server hides what does not match.
    let finance = alice.get("/?tag=FINANCE").await.body;
    assert_eq!(shown(&finance, None), ["sales", "ops"]);
    assert!(finance.contains(r#"<input type="hidden" name="tag" value="FINANCE">"#));
    assert_eq!(shown(&alice.get("/?q=wiki").await.body, None), ["wiki"]);
    assert_eq!(shown(&alice.get("/?q=finance%20team").await.body, None), ["sales"]);
    let none = alice.get("/?q=nothing-like-it").await.body;
    assert!(shown(&none, None).is_empty() && none.contains(r#"<div class="empty" id="no-match">"#));

    // A favourite with the card's form: back to the card, then first on the portal.
    let token = favourite_token(&page);
    let origin = alice.origin();
    let with_origin = [("origin", origin.as_str())];
    let p = favourite(&mut alice, &token, "wiki", true, &with_origin).await;
    assert_eq!((p.status, p.location()), (303, Some("/#app-wiki")), "{}", p.body);
    let page = alice.get("/").await;
    assert_eq!(shown(&page.body, Some("favourites")), ["wiki"]);
    assert_eq!(shown(&page.body, Some("apps")), ["sales", "ops"]);
    assert!(page
        .body
        .contains(r#"aria-pressed="true" aria-label="Remove from favourites: wiki""#));
    // Bob's portal is his own.
    let bobs = bob.get("/").await.body;
    assert!(shown(&bobs, Some("favourites")).is_empty());
    assert_eq!(shown(&bobs, None), ["sales", "ops", "wiki"]);

    // Refused, and nothing changes: no Origin, another session's token, an app she cannot
    // open, nobody signed in.
    let p = favourite(&mut alice, &token, "sales", true, &[]).await;
    assert_eq!(p.status, 403, "no Origin");
    let bobs_token = favourite_token(&bob.get("/").await);
    let p = favourite(&mut alice, &bobs_token, "sales", true, &with_origin).await;
    assert_eq!(p.status, 403, "a token bound to bob's session");
    let p = favourite(&mut alice, &token, "hr", true, &with_origin).await;
    assert_eq!(p.status, 404, "not an app she may open");
    let mut anon = gw.browser();
    let anon_origin = anon.origin();
    let p = favourite(&mut anon, &token, "sales", true, &[("origin", anon_origin.as_str())]).await;
    assert_eq!(p.status, 401);
    assert_eq!(shown(&alice.get("/").await.body, Some("favourites")), ["wiki"]);

    // The script's way: JSON in, JSON out.
    let p = favourite(
        &mut alice,
        &token,
        "wiki",
        false,
        &[("origin", origin.as_str()), ("accept", "application/json")],
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.json(), serde_json::json!({"app": "wiki", "favourite": false}));
    let page = alice.get("/").await.body;
    assert!(shown(&page, Some("favourites")).is_empty());
    assert!(page.contains(r#"id="favourites-section" aria-labelledby="favourites-h" hidden"#));

    // Recently opened: a page load through the gateway shows at once (not flushed yet).
    assert!(recent(&page).is_empty());
    assert_eq!(alice.get("/apps/ops/").await.status, 200);
    assert_eq!(alice.get("/apps/ops/static/app.js").await.status, 200);
    // The next visit in a later second (visit times are seconds).
    let t0 = unix_now();
    assert!(within(Duration::from_secs(2), || async { unix_now() > t0 })
        .await
        .is_some());
    let wiki_page = alice
        .get_with(
            "/apps/wiki/x",
            &[("sec-fetch-dest", "document"), ("accept", "text/html")],
        )
        .await;
    assert_eq!(wiki_page.status, 200);
    assert_eq!(recent(&alice.get("/").await.body), ["/apps/wiki/", "/apps/ops/"]);
    assert!(recent(&bobs).is_empty() && recent(&bob.get("/").await.body).is_empty());

    // An administrator places a store app with the admin form: first, with its tags.
    let mut root = signed_in(&gw, "root").await;
    let csrf = root
        .get("/.gatehouse/admin/apps/new")
        .await
        .input_value("csrf")
        .expect("token");
    let up = backend.addr.to_string();
    let root_origin = root.origin();
    let p = root
        .post_form_with(
            "/.gatehouse/admin/apps/new",
            &[
                ("csrf", csrf.as_str()),
                ("version", "0"),
                ("slug", "board"),
                ("name", "Board pack"),
                ("upstreams", up.as_str()),
                ("access", "authenticated"),
                ("portal_visible", "1"),
                ("portal_order", "-10"),
                ("tags", "finance, Board\nboard"),
                ("thumbnail", "/apps/board/card.png"),
                ("owner_users", "olga"),
            ],
            &[("origin", root_origin.as_str())],
        )
        .await;
    assert_eq!(p.status, 303, "{}", p.body);
    let placed = within(Duration::from_secs(3), || async {
        shown(&alice.clone().get("/").await.body, None)
            .first()
            .map(String::as_str)
            == Some("board")
    })
    .await;
    assert!(placed.is_some(), "the store app comes first");
    let page = alice.get("/?tag=board").await.body;
    assert_eq!(shown(&page, None), ["board"]);
    assert!(page.contains(r#"src="/apps/board/card.png""#) && page.contains("Owner: olga"));
    // A thumbnail that is neither https:// nor a path is refused next to its field.
    let p = root
        .post_form_with(
            "/.gatehouse/admin/apps/new",
            &[
                ("csrf", csrf.as_str()),
                ("version", "0"),
                ("slug", "bad"),
                ("upstreams", up.as_str()),
                ("access", "authenticated"),
                ("thumbnail", "http://cdn.example.com/x.png"),
            ],
            &[("origin", root_origin.as_str())],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains(r#"id="thumbnail-error""#), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_portal_says_what_to_do() {
    let gw = gatehouse()
        .user("root", PW, true, &[])
        .user("alice", PW, false, &[])
        .start()
        .await;
    let anon = gw.browser().get("/").await.body;
    assert!(anon.contains("No apps are open without signing in."), "{anon}");
    let alice = signed_in(&gw, "alice").await.get("/").await.body;
    assert!(
        alice.contains("as soon as an administrator gives you access"),
        "{alice}"
    );
    let root = signed_in(&gw, "root").await.get("/").await.body;
    assert!(root.contains(r#"href="/.gatehouse/admin/apps/new""#), "{root}");
}

#[tokio::test(flavor = "multi_thread")]
async fn favourites_and_recent_apps_are_shared_by_replicas() {
    let backend = Backend::start("app").await;
    let db = gatehouse_tests::cluster::PgDatabase::create();
    let shared = format!("[store]\nurl = \"{}\"\n[usage]\nflush_seconds = 1\n", db.url);
    let apps = |b: gatehouse_tests::GatewayBuilder| {
        b.app("wiki", &[backend.addr], "access = \"authenticated\"")
            .app("ops", &[backend.addr], "access = \"authenticated\"")
            .raw(&shared)
    };
    let first = apps(gatehouse()).user("alice", PW, false, &[]).start().await;
    let second = apps(gatehouse()).start().await;
    let mut on_first = signed_in(&first, "alice").await;
    let mut on_second = signed_in(&second, "alice").await;

    let token = favourite_token(&on_first.get("/").await);
    let origin = on_first.origin();
    let p = favourite(&mut on_first, &token, "ops", true, &[("origin", origin.as_str())]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        shown(&on_second.get("/").await.body, Some("favourites")),
        ["ops"],
        "the other replica shows her favourite at once"
    );

    assert_eq!(on_first.get("/apps/wiki/").await.status, 200);
    let seen = within(Duration::from_secs(10), || async {
        recent(&on_second.clone().get("/").await.body) == ["/apps/wiki/"]
    })
    .await;
    assert!(seen.is_some(), "the visit reaches the other replica through the store");
}

/// 500 apps: every card is on the page, in order, and `?tag=` filters them. Prints how long
/// the portal takes through the gateway (recorded in BENCHMARKS.md; no limit asserted).
#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_apps_on_one_portal() {
    let backend = Backend::start("app").await;
    let mut builder = gatehouse()
        .user("alice", PW, false, &["staff"])
        .raw("[usage]\nflush_seconds = 1\n");
    for i in 0..500 {
        builder = builder.app(
            &format!("app-{i:03}"),
            &[backend.addr],
            &format!(
                "name = \"Dashboard {i}\"\ndescription = \"Numbers of team {i}\"\naccess = \"restricted\"\n\
                 allow_groups = [\"staff\"]\ntags = [\"team-{t}\", \"{kind}\"]\nportal_order = {order}",
                t = i % 20,
                kind = ["dash", "streamlit", "shiny", "grafana"][i % 4],
                order = 499 - i,
            ),
        );
    }
    let gw = builder.start().await;
    let mut alice = signed_in(&gw, "alice").await;
    let token = favourite_token(&alice.get("/").await);
    let origin = alice.origin();
    for slug in ["app-100", "app-200", "app-300"] {
        let p = favourite(&mut alice, &token, slug, true, &[("origin", origin.as_str())]).await;
        assert_eq!(p.status, 303);
    }
    assert_eq!(alice.get("/apps/app-042/").await.status, 200);

    let page = alice.get("/").await;
    let all = shown(&page.body, None);
    assert_eq!(all.len(), 500);
    // Favourites first (in portal order: higher slugs first here), then the rest.
    assert_eq!(&all[..4], ["app-300", "app-200", "app-100", "app-499"]);
    assert_eq!(recent(&page.body), ["/apps/app-042/"]);
    let team3 = shown(&alice.get("/?tag=team-3").await.body, None);
    assert_eq!(team3.len(), 25);

    let mut times = Vec::new();
    for path in ["/", "/?tag=team-3"] {
        let mut took: Vec<Duration> = Vec::new();
        for _ in 0..20 {
            let t = std::time::Instant::now();
            assert_eq!(alice.get(path).await.status, 200);
            took.push(t.elapsed());
        }
        took.sort();
        times.push(format!(
            "GET {path}: min {:?}, median {:?}, max {:?}",
            took[0], took[10], took[19]
        ));
    }
    println!(
        "portal with 500 apps ({} KiB of HTML): {}",
        page.body.len() / 1024,
        times.join("; ")
    );
}
