//! Micro-benches of the pure functions every proxied request goes through, in the order
//! `request_filter` calls them: canonicalise the path, route it to an app, decide access
//! with `gatehouse_policy::evaluate`, compute the forwarding headers, pick an upstream,
//! count the visit (`usage::is_visit`, `usage::Recorder::record`); then what a signed-in
//! request adds: the session lookup (a cache hit, and a miss read from SQLite) and the
//! identity headers with the JWT (`KeyRing::prepared`, a hit, and a build that signs).
//! Each bench is kept short (2 s of measurement) so the whole run takes about a minute on
//! two cores: `cargo bench -p gatehouse-benches`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gatehouse_benches::{apps_config, granted_apps_toml, identity_in_groups};
use gatehouse_gateway::forwarded::{forwarded, Incoming};
use gatehouse_gateway::route::{canonicalize, Router};
use gatehouse_gateway::snapshot::app_policy;
use gatehouse_gateway::upstream::Pool;
use gatehouse_policy::{evaluate, AppPolicy, Decision};

/// A typical asset request of a Dash app: nothing to decode or remove.
const CLEAN: &str = "/apps/app-042/_dash-component-suites/dash/deps/react@16.v2_9_3m1.min.js";
/// Empty and dot segments, encoded dots and unreserved escapes, a kept reserved escape and
/// a `;` parameter: every rewriting branch of `canonicalize`, still a valid path.
const DIRTY: &str = "/apps//app-042/./static/%2e%2e/_dash-component-suites/./dash/%64eps/x/../r%65act%4016.js;v=1%3F";

fn canonicalisation(c: &mut Criterion) {
    let mut g = c.benchmark_group("canonicalize");
    for (name, path) in [("clean", CLEAN), ("dot_segments_and_escapes", DIRTY)] {
        assert!(canonicalize(path).is_ok(), "{name} must be a valid path");
        g.bench_with_input(BenchmarkId::from_parameter(name), path, |b, p| {
            b.iter(|| canonicalize(black_box(p)))
        });
    }
    g.finish();
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("router_resolve");
    for apps in [10usize, 500] {
        let config = apps_config(apps).expect("bench config is valid");
        let router = Router::new(&config.apps, None);
        // Routes are found by hashing each `/`-prefix of the path, longest first, so the
        // cost follows the path's depth, not the number of apps: the first and the last app
        // cost the same, and a miss tries every prefix of its path before giving up.
        let last = format!("/apps/app-{:03}/page/1", apps - 1);
        assert!(router.resolve("127.0.0.1", &last).is_some());
        g.bench_with_input(BenchmarkId::new("last_app", apps), &last, |b, p| {
            b.iter(|| router.resolve(black_box("127.0.0.1"), black_box(p)))
        });
        g.bench_with_input(BenchmarkId::new("first_app", apps), "/apps/app-000/", |b, p| {
            b.iter(|| router.resolve(black_box("127.0.0.1"), black_box(p)))
        });
        g.bench_with_input(BenchmarkId::new("no_app", apps), "/apps/unknown/", |b, p| {
            b.iter(|| router.resolve(black_box("127.0.0.1"), black_box(p)))
        });
    }
    g.finish();
}

fn policy(c: &mut Criterion) {
    let config = apps_config(10).expect("bench config is valid");
    // Restricted to `team-7` and `all-staff`.
    let app: AppPolicy = app_policy(&config.apps[7]);
    let member = identity_in_groups("alice", 2000, &["team-7"]);
    let outsider = identity_in_groups("bob", 2000, &[]);
    assert!(evaluate(&app, Some(&member)).is_allowed());
    assert_eq!(
        evaluate(&app, Some(&outsider)),
        Decision::Deny(gatehouse_policy::Deny::NotAllowed)
    );
    let mut g = c.benchmark_group("policy_evaluate_2000_groups");
    g.bench_function("allowed_by_group", |b| {
        b.iter(|| evaluate(black_box(&app), black_box(Some(&member))))
    });
    g.bench_function("denied", |b| {
        b.iter(|| evaluate(black_box(&app), black_box(Some(&outsider))))
    });
    g.finish();
}

/// The performance target's scale: 1,000 apps, 10,000 grants, a user in 2,000 groups.
/// `evaluate` reads one app's policy, so the number of apps must not show.
fn policy_at_scale(c: &mut Criterion) {
    let text = granted_apps_toml(1000, 10);
    let config = gatehouse_config::Config::from_toml(&text, std::path::Path::new("."), &gatehouse_config::ProcessEnv)
        .expect("bench config is valid");
    let policies: Vec<AppPolicy> = config.apps.iter().map(app_policy).collect();
    let member = identity_in_groups("alice", 2000, &["grant-999-4"]);
    let listed = identity_in_groups("user-999-2", 2000, &[]);
    let outsider = identity_in_groups("bob", 2000, &[]);
    let last = &policies[999];
    assert!(evaluate(last, Some(&member)).is_allowed());
    assert!(evaluate(last, Some(&listed)).is_allowed());
    assert!(!evaluate(last, Some(&outsider)).is_allowed());
    let mut g = c.benchmark_group("policy_evaluate_1000_apps_10000_grants_2000_groups");
    g.bench_function("allowed_by_group", |b| {
        b.iter(|| evaluate(black_box(last), black_box(Some(&member))))
    });
    g.bench_function("allowed_by_user", |b| {
        b.iter(|| evaluate(black_box(last), black_box(Some(&listed))))
    });
    g.bench_function("denied", |b| {
        b.iter(|| evaluate(black_box(last), black_box(Some(&outsider))))
    });
    g.finish();
}

/// A signed-in request's extra work: the session (cache hit; cache miss read from SQLite)
/// and its identity headers + JWT (prepared hit; a build that signs).
fn signed_in(c: &mut Criterion) {
    use gatehouse_gateway::authn::session::{hash_id, NewIdentity, Sessions};
    use gatehouse_gateway::identity::{KeyRing, Keys};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        rt.block_on(gatehouse_store::Store::open_sqlite(&dir.path().join("bench.db")))
            .expect("store"),
    );
    let sessions = Sessions::new(
        store.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(86400),
        Duration::from_secs(60),
        Duration::from_secs(300),
    );
    let groups: Vec<String> = (0..2000).map(|i| format!("dir-group-{i:04}")).collect();
    let cookie = rt
        .block_on(sessions.create(NewIdentity {
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: Some("Alice".into()),
            groups,
            admin: false,
            provider: "ldap".into(),
        }))
        .expect("session");
    let id_hash = hash_id(&cookie);
    let session = rt.block_on(sessions.lookup(&cookie)).expect("a live session");
    let mut g = c.benchmark_group("session_lookup_2000_groups");
    g.bench_function("cache_hit", |b| {
        b.iter(|| rt.block_on(sessions.lookup(black_box(&cookie))))
    });
    g.bench_function("cache_miss_sqlite", |b| {
        b.iter(|| {
            rt.block_on(async {
                sessions.forget(&id_hash).await;
                sessions.lookup(black_box(&cookie)).await
            })
        })
    });
    g.finish();

    let keys = KeyRing::new(rt.block_on(Keys::load(&store, "https://gatehouse.test")).expect("keys"));
    let config = apps_config(1).expect("bench config is valid");
    let app = &config.apps[0];
    let mut g = c.benchmark_group("identity_headers_2000_groups");
    keys.prepared(app, 1, &session).expect("prepared");
    g.bench_function("prepared_hit", |b| {
        b.iter(|| keys.prepared(black_box(app), 1, black_box(&session)))
    });
    let mut n = 1u64;
    g.bench_function("build_and_sign", |b| {
        b.iter(|| {
            n += 1;
            keys.prepared(black_box(app), n, black_box(&session))
        })
    });
    g.finish();
}

fn forwarding_and_upstream(c: &mut Criterion) {
    let peer = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    let incoming = Incoming {
        x_forwarded_for: Some("203.0.113.9"),
        host: Some("apps.example.com"),
        ..Incoming::default()
    };
    c.bench_function("forwarded_untrusted_peer", |b| {
        b.iter(|| forwarded(black_box(peer), false, &[], black_box(incoming)))
    });
    let config = apps_config(1).expect("bench config is valid");
    let app = &config.apps[0];
    let mut upstreams = app.upstreams.clone();
    upstreams.extend(app.upstreams.iter().cloned());
    upstreams.extend(app.upstreams.iter().cloned());
    let pool = Pool::new(&upstreams, app.health_check.clone());
    c.bench_function("upstream_select_3_members", |b| b.iter(|| pool.select(black_box(&[]))));
}

fn usage(c: &mut Criterion) {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "accept",
        http::HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
    );
    let asset = {
        let mut h = headers.clone();
        h.insert("sec-fetch-dest", http::HeaderValue::from_static("script"));
        h
    };
    c.bench_function("usage_is_visit_page", |b| {
        b.iter(|| gatehouse_gateway::usage::is_visit(&http::Method::GET, black_box(&headers)))
    });
    c.bench_function("usage_is_visit_asset", |b| {
        b.iter(|| gatehouse_gateway::usage::is_visit(&http::Method::GET, black_box(&asset)))
    });
    let recorder = gatehouse_gateway::usage::Recorder::new(&gatehouse_config::Usage::default()).expect("recorder");
    let now = 1_795_000_000;
    // A key already held (every visit after a person's first in a flush interval).
    recorder.record("app-042", "alice", now);
    c.bench_function("usage_record_known_key", |b| {
        b.iter(|| recorder.record(black_box("app-042"), black_box("alice"), black_box(now)))
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        // The bootstrap runs single-threaded here; 100,000 resamples (the default) took
        // longer than the measurements themselves.
        .nresamples(10_000);
    targets = canonicalisation, routing, policy, policy_at_scale, forwarding_and_upstream, usage, signed_in
}
criterion_main!(hot_path);
