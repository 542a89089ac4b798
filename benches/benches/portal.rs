//! The App Portal at its issue's scale: 500 apps, each with a description and tags, for a
//! signed-in person with 2,000 groups who may open all of them, 10 favourites and 6 recently
//! opened apps. `snapshot_portal`: the cards `evaluate` allows, in portal order
//! (`Snapshot::portal`); `portal_page`: the whole HTML page (`pages::portal`, which also
//! arranges the sections and counts the tags); `portal_page_filtered`: the same with
//! `?tag=` applied on the server. `cargo bench -p gatehouse-benches --bench portal`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_admin_ui::pages::{portal, PortalPage};
use gatehouse_admin_ui::portal::PortalMemory;
use gatehouse_admin_ui::{BrandingCell, Site, Viewer};
use gatehouse_benches::identity_in_groups;
use gatehouse_config::{Config, ProcessEnv};
use gatehouse_gateway::snapshot::Snapshot;

const APPS: usize = 500;

fn config() -> Config {
    let mut toml = String::new();
    for i in 0..APPS {
        toml.push_str(&format!(
            "[[apps]]\nslug = \"app-{i:03}\"\nname = \"Dashboard {i}\"\n\
             description = \"Numbers of team {i}, refreshed every morning\"\n\
             upstreams = [\"127.0.0.1:{port}\"]\naccess = \"authenticated\"\n\
             tags = [\"team-{t}\", \"{kind}\"]\nportal_order = {order}\nowner = \"Team {t}\"\n",
            port = 10_000 + i,
            t = i % 20,
            kind = ["dash", "streamlit", "shiny", "grafana"][i % 4],
            order = (i * 7) % 50,
        ));
    }
    Config::from_toml(&toml, Path::new("."), &ProcessEnv).expect("bench config is valid")
}

fn site(branding: gatehouse_config::Branding) -> Site {
    Site {
        branding: Arc::new(BrandingCell::new(branding)),
        session_cookie: "gatehouse_session".into(),
        csrf_cookie: "gatehouse_csrf".into(),
        secure: false,
        session_max_age: 3600,
        password_form: true,
        sso: vec![],
        login_cookie: "gatehouse_login".into(),
        origin: "http://127.0.0.1:8080".into(),
    }
}

fn bench(c: &mut Criterion) {
    let config = Arc::new(config());
    let site = site(config.branding.clone());
    let snapshot = Snapshot::compile(config, &[], None);
    let who = identity_in_groups("alice", 2_000, &[]);
    let memory = PortalMemory {
        favourites: (0..10).map(|i| format!("app-{:03}", i * 37)).collect(),
        recent: (0..6)
            .map(|i| (format!("app-{:03}", i * 11), 1_800_000_000 - i))
            .collect(),
    };
    let apps = snapshot.portal(Some(&who));
    assert_eq!(apps.len(), APPS);
    let viewer = Viewer {
        identity: who.clone(),
        display_name: Some("Alice Example".into()),
        token: None,
    };
    let page = |tag: &'static str| PortalPage {
        viewer: Some(&viewer),
        apps: &apps,
        memory: &memory,
        query: "",
        tag,
        requests: &[],
        csrf: "token",
        favourite_token: Some("token"),
    };
    let html = portal(&site, &page(""));
    assert_eq!(html.matches(r#"<li class="app""#).count(), APPS);

    let mut g = c.benchmark_group("portal_500_apps");
    g.bench_function("snapshot_portal", |b| b.iter(|| snapshot.portal(black_box(Some(&who)))));
    g.bench_function("portal_page", |b| b.iter(|| portal(&site, black_box(&page("")))));
    g.bench_function("portal_page_filtered", |b| {
        b.iter(|| portal(&site, black_box(&page("team-3"))))
    });
    g.finish();
}

criterion_group! {
    name = portal_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(portal_benches);
