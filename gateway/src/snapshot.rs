//! The live access model. Everything a request is judged by — the routing table, each app's
//! policy, header options and upstream pool — is one immutable [`Snapshot`], compiled from
//! the config file and the store's app records by [`Snapshot::compile`] and published whole
//! through [`Live`] (an atomic swap). A request keeps the `Arc<AppRuntime>` it was routed to
//! for its whole life, so a swap never changes the app a request is served by; indices into
//! [`Snapshot::apps`] are only meaningful inside the snapshot they came from.
//!
//! Upstream pools are carried over from the previous snapshot when an app keeps the same
//! upstreams and health check, so health state survives every swap.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_admin_ui::PortalApp;
use gatehouse_config::{Access, App, AppDefinition, Config};
use gatehouse_policy::owners::Owners;
use gatehouse_policy::{evaluate, AppPolicy, GroupName, Identity, UserName};
use gatehouse_store::{AppRecord, GrantRecord, Grantee};

use crate::route::Router;
use crate::upstream::Pool;

/// Where an app was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSource {
    /// The config file: read-only at runtime (changed by editing the file and reloading).
    File,
    /// The store (admin UI, CLI): changes take effect at once on every replica.
    Store,
}

impl AppSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AppSource::File => "config file",
            AppSource::Store => "store",
        }
    }
}

/// One app as the proxy serves it: its validated definition, the policy `evaluate` sees,
/// and its upstream pool.
#[derive(Debug)]
pub struct AppRuntime {
    /// Unique for every compiled app, never reused: keys caches (assertion JWTs) so that
    /// an edited app is never served what was made for its earlier definition.
    pub id: u64,
    pub app: App,
    pub policy: AppPolicy,
    pub pool: Arc<Pool>,
    pub source: AppSource,
    /// The store record's `updated_at` (0 for file apps): the version admin edits check.
    pub version: i64,
    /// Who manages it besides administrators (store apps only).
    pub owners: Owners,
    /// Listed on the App Portal (file apps always are).
    pub portal_visible: bool,
    /// Position on the App Portal: lower first (file apps 0; ties keep snapshot order).
    pub portal_order: i64,
    /// The portal card's link.
    pub href: String,
    /// The people and groups on `policy`'s allow-lists only through a time-limited grant,
    /// with the end of that grant: between the end and the next compile (milliseconds,
    /// normally) [`AppRuntime::policy_now`] leaves them out, so an expired grant never
    /// lets anyone in, however late the recompile.
    pub timed: Vec<(Grantee, i64)>,
    /// The earliest end in `timed`.
    pub ends: Option<i64>,
    /// The definition's own allow-lists, without grants: what the admin form edits (`app`'s
    /// lists have the active grants merged in, for the policy and the groups sent).
    pub listed_groups: Vec<String>,
    pub listed_users: Vec<String>,
    /// This app's metric series, looked up once (on its first request) instead of by
    /// label on every request.
    pub metrics: std::sync::OnceLock<AppMetrics>,
}

/// An app's own metric series ([`crate::metrics::Metrics`] with its slug as the label).
#[derive(Debug)]
pub struct AppMetrics {
    /// `gatehouse_upstream_latency_seconds{app}`.
    pub upstream_latency: prometheus::Histogram,
    /// `gatehouse_requests_total{app, status="200"}`, the usual status (others by label).
    pub ok: prometheus::IntCounter,
}

impl AppRuntime {
    /// This app's metric series in `metrics` (resolved on first use).
    pub fn metrics(&self, metrics: &crate::metrics::Metrics) -> &AppMetrics {
        self.metrics.get_or_init(|| AppMetrics {
            upstream_latency: metrics.upstream_latency.with_label_values(&[self.app.slug.as_str()]),
            ok: metrics.requests.with_label_values(&[self.app.slug.as_str(), "200"]),
        })
    }

    /// The policy in force at `now`: `policy` without the time-limited grants that have
    /// ended. Borrowed (no work) until the first of them ends.
    pub fn policy_at(&self, now: i64) -> Cow<'_, AppPolicy> {
        match self.ends {
            Some(end) if now >= end => {
                let mut policy = self.policy.clone();
                if let gatehouse_policy::Access::Restricted { groups, users } = &mut policy.access {
                    for (grantee, _) in self.timed.iter().filter(|(_, end)| now >= *end) {
                        match grantee {
                            Grantee::User(u) => users.remove(u),
                            Grantee::Group(g) => groups.remove(g),
                        };
                    }
                }
                Cow::Owned(policy)
            }
            _ => Cow::Borrowed(&self.policy),
        }
    }

    /// [`AppRuntime::policy_at`] the current second; reads the clock only for an app with
    /// time-limited grants.
    pub fn policy_now(&self) -> Cow<'_, AppPolicy> {
        match self.ends {
            None => Cow::Borrowed(&self.policy),
            Some(_) => self.policy_at(crate::authn::session::now()),
        }
    }
}

/// Everything requests are judged by, at one moment. Immutable; replaced whole.
#[derive(Debug)]
pub struct Snapshot {
    /// The config file this snapshot was compiled from.
    pub config: Arc<Config>,
    pub router: Router,
    /// Config apps in file order, then store apps by slug.
    pub apps: Vec<Arc<AppRuntime>>,
    /// Store apps that could not be served (slug or route clash, invalid definition), each
    /// with the reason; logged at every compile and shown to admins.
    pub problems: Vec<String>,
    /// When the next grant in this snapshot expires (epoch seconds): the snapshot must be
    /// recompiled then.
    pub next_expiry: Option<i64>,
}

/// An app on its way into a snapshot: its definition (allow-lists with the active grants
/// merged in), where it comes from, and what else the store says of it.
type Defined = (App, AppSource, Extras);

/// What an app carries besides its definition.
struct Extras {
    version: i64,
    owners: Owners,
    portal_visible: bool,
    portal_order: i64,
    timed: Vec<(Grantee, i64)>,
    listed_groups: Vec<String>,
    listed_users: Vec<String>,
}

impl Extras {
    /// A file app's: no store record, no grants.
    fn of_file(app: &App) -> Extras {
        Extras {
            version: 0,
            owners: Owners::default(),
            portal_visible: true,
            portal_order: app.portal_order,
            timed: Vec::new(),
            listed_groups: app.allow_groups.clone(),
            listed_users: app.allow_users.clone(),
        }
    }
}

static NEXT_APP_ID: AtomicU64 = AtomicU64::new(1);

/// The policy `evaluate` sees for a validated app.
pub fn app_policy(app: &App) -> AppPolicy {
    let access = match app.access {
        Access::Public => gatehouse_policy::Access::Public,
        Access::Authenticated => gatehouse_policy::Access::Authenticated,
        Access::Restricted => gatehouse_policy::Access::Restricted {
            groups: app.allow_groups.iter().map(|g| GroupName::new(g)).collect(),
            users: app.allow_users.iter().map(|u| UserName::new(u)).collect(),
        },
    };
    AppPolicy {
        slug: app.slug.clone(),
        access,
    }
}

/// A store record in the terms of an `[[apps]]` entry, for the same validation.
pub fn definition(r: &AppRecord) -> AppDefinition {
    AppDefinition {
        slug: r.slug.clone(),
        name: Some(r.name.clone()),
        description: Some(r.description.clone()),
        upstreams: r.upstreams.clone(),
        access: Some(r.access.as_str().to_string()),
        allow_groups: r.allow_groups.iter().map(|g| g.as_str().to_string()).collect(),
        allow_users: r.allow_users.iter().map(|u| u.as_str().to_string()).collect(),
        remote_headers: r.remote_headers,
        plotly_user_data: r.plotly_user_data,
        groups_sent: Some(r.groups_sent.clone()),
        dash_token: r.dash_token,
        tags: r.tags.clone(),
        thumbnail: Some(r.thumbnail.clone()).filter(|t| !t.is_empty()),
        portal_order: r.portal_order,
        ..AppDefinition::default()
    }
}

impl Snapshot {
    /// Compiles `config` and the store's app records into a snapshot. Store apps are
    /// validated by the same rules as the file's; one whose slug or route is taken by a
    /// file app (or that is invalid) is left out and reported in `problems`. Pools of
    /// `previous` are reused where an app's upstreams and health check are unchanged.
    pub fn compile(config: Arc<Config>, stored: &[AppRecord], previous: Option<&Snapshot>) -> Snapshot {
        Self::compile_with_grants(config, stored, &[], 0, previous)
    }

    /// [`Snapshot::compile`], adding the grants active at `now` to their store apps'
    /// allow-lists (restricted apps only; grants never widen a file app).
    pub fn compile_with_grants(
        config: Arc<Config>,
        stored: &[AppRecord],
        grants: &[GrantRecord],
        now: i64,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let tls = config.server.tls.is_some();
        let mut problems = Vec::new();
        let mut defined: Vec<Defined> = config
            .apps
            .iter()
            .map(|a| (a.clone(), AppSource::File, Extras::of_file(a)))
            .collect();
        let mut stored: Vec<&AppRecord> = stored.iter().collect();
        stored.sort_by(|a, b| a.slug.cmp(&b.slug));
        for r in stored {
            let at = format!("store.apps[{:?}]", r.slug);
            match gatehouse_config::validate_app(definition(r), &at, &config.server) {
                Err(p) => problems.push(format!("{at} is not served: {}", p.to_string().trim_end())),
                Ok(app) => {
                    if let Some((clash, source, ..)) = defined.iter().find(|(a, ..)| a.slug == app.slug) {
                        problems.push(format!(
                            "{at} is not served: the slug {:?} is taken by the app of the same slug in the {}",
                            clash.slug,
                            source.as_str()
                        ));
                    } else if let Some((clash, source, ..)) =
                        defined.iter().find(|(a, ..)| a.path == app.path && a.host == app.host)
                    {
                        problems.push(format!(
                            "{at} is not served: its route {}{} is taken by app {:?} from the {}",
                            app.host.as_deref().unwrap_or(""),
                            app.path,
                            clash.slug,
                            source.as_str()
                        ));
                    } else {
                        let mut app = app;
                        let (listed_groups, listed_users) = (app.allow_groups.clone(), app.allow_users.clone());
                        let mut timed = Vec::new();
                        if app.access == Access::Restricted {
                            let listed_users: BTreeSet<UserName> =
                                app.allow_users.iter().map(|u| UserName::new(u)).collect();
                            let listed_groups: BTreeSet<GroupName> =
                                app.allow_groups.iter().map(|g| GroupName::new(g)).collect();
                            for g in grants.iter().filter(|g| g.app == app.slug && g.active(now)) {
                                let listed = match &g.grantee {
                                    Grantee::User(u) => listed_users.contains(u),
                                    Grantee::Group(gr) => listed_groups.contains(gr),
                                };
                                if let (Some(end), false) = (g.expires_at, listed) {
                                    timed.push((g.grantee.clone(), end));
                                }
                                match &g.grantee {
                                    Grantee::User(u) => app.allow_users.push(u.as_str().to_string()),
                                    Grantee::Group(gr) => app.allow_groups.push(gr.as_str().to_string()),
                                }
                            }
                        }
                        let owners = Owners {
                            users: r.owner_users.iter().cloned().collect(),
                            groups: r.owner_groups.iter().cloned().collect(),
                        };
                        let extras = Extras {
                            version: r.updated_at,
                            owners,
                            portal_visible: r.portal_visible,
                            portal_order: app.portal_order,
                            timed,
                            listed_groups,
                            listed_users,
                        };
                        defined.push((app, AppSource::Store, extras));
                    }
                }
            }
        }
        for p in &problems {
            tracing::warn!(problem = %p, "app from the store not served");
        }
        let plain: Vec<App> = defined.iter().map(|(a, ..)| a.clone()).collect();
        let router = Router::new(&plain, config.server.app_domain.as_deref());
        let apps: Vec<Arc<AppRuntime>> = defined
            .into_iter()
            .map(|(app, source, x)| {
                let pool = previous
                    .and_then(|prev| {
                        prev.apps.iter().find(|p| {
                            p.app.slug == app.slug
                                && p.app.upstreams == app.upstreams
                                && p.app.health_check == app.health_check
                        })
                    })
                    .map(|p| p.pool.clone())
                    .unwrap_or_else(|| Arc::new(Pool::new(&app.upstreams, app.health_check.clone())));
                let href = match &app.host {
                    Some(h) => format!("{}://{h}{}", if tls { "https" } else { "http" }, app.path),
                    None => app.path.clone(),
                };
                Arc::new(AppRuntime {
                    id: NEXT_APP_ID.fetch_add(1, Ordering::Relaxed),
                    policy: app_policy(&app),
                    pool,
                    source,
                    version: x.version,
                    owners: x.owners,
                    portal_visible: x.portal_visible,
                    portal_order: x.portal_order,
                    href,
                    ends: x.timed.iter().map(|(_, end)| *end).min(),
                    timed: x.timed,
                    listed_groups: x.listed_groups,
                    listed_users: x.listed_users,
                    metrics: std::sync::OnceLock::new(),
                    app,
                })
            })
            .collect();
        let served: Vec<&str> = stored_slugs(&apps);
        let next_expiry = grants
            .iter()
            .filter(|g| served.contains(&g.app.as_str()))
            .filter_map(|g| g.expires_at.filter(|t| *t > now))
            .min();
        Snapshot {
            config,
            router,
            apps,
            problems,
            next_expiry,
        }
    }

    /// The app of this snapshot with slug `slug`.
    pub fn app(&self, slug: &str) -> Option<&Arc<AppRuntime>> {
        self.apps.iter().find(|a| a.app.slug == slug)
    }

    /// The portal cards of the apps `who` may open, decided by `evaluate`, by portal
    /// position (ties: config apps in file order, then store apps by slug). A card's owner
    /// is the store app's owners (people, then groups) or the file app's `owner`; its
    /// update time the store record's, or the config file's modification time.
    pub fn portal(&self, who: Option<&Identity>) -> Vec<PortalApp> {
        let mut shown: Vec<&Arc<AppRuntime>> = self
            .apps
            .iter()
            .filter(|a| a.portal_visible && evaluate(&a.policy_now(), who).is_allowed())
            .collect();
        shown.sort_by_key(|a| a.portal_order);
        shown
            .into_iter()
            .map(|a| {
                let (owner, updated_at) = match a.source {
                    AppSource::Store => {
                        let people = a.owners.users.iter().map(UserName::as_str);
                        let groups = a.owners.groups.iter().map(GroupName::as_str);
                        (people.chain(groups).collect::<Vec<_>>().join(", "), Some(a.version))
                    }
                    AppSource::File => (a.app.owner.clone().unwrap_or_default(), self.config.modified),
                };
                PortalApp {
                    slug: a.app.slug.clone(),
                    name: a.app.name.clone(),
                    description: a.app.description.clone(),
                    href: a.href.clone(),
                    tags: a.app.tags.clone(),
                    thumbnail: a.app.thumbnail.clone(),
                    owner,
                    updated_at,
                }
            })
            .collect()
    }
}

/// A request to rebuild the snapshot now; answered once the new one is published.
pub type RebuildRequest = tokio::sync::oneshot::Sender<()>;

fn stored_slugs(apps: &[Arc<AppRuntime>]) -> Vec<&str> {
    apps.iter()
        .filter(|a| a.source == AppSource::Store)
        .map(|a| a.app.slug.as_str())
        .collect()
}

/// The published snapshot. Readers take it with one atomic load; writers swap it whole.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Snapshot>,
    /// Where [`Live::rebuilt`] asks the reloader (once it runs) for a rebuild.
    rebuilds: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<RebuildRequest>>>,
}

impl Live {
    pub fn new(first: Snapshot) -> Live {
        Live {
            current: ArcSwap::from_pointee(first),
            rebuilds: std::sync::Mutex::new(None),
        }
    }

    /// The reloader's side: rebuild requests arrive on the returned receiver.
    pub fn serve_rebuilds(&self) -> tokio::sync::mpsc::Receiver<RebuildRequest> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        *self.rebuilds.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// After a change this process wrote to the store: waits (at most 2 s) until this
    /// replica's snapshot includes it, so the admin's next page shows it. Other replicas
    /// follow through the change feed.
    pub async fn rebuilt(&self) {
        let tx = self.rebuilds.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else { return };
        let (ack, done) = tokio::sync::oneshot::channel();
        if tx.send(ack).await.is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), done).await;
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A cheap, short-lived view of the current snapshot (hot path: no reference count
    /// change). Hold it only briefly; clone what must outlive it.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Publishes `next`; requests already routed keep the apps they hold.
    pub fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        let next = Arc::new(next);
        self.current.store(next.clone());
        next
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gatehouse_config::ProcessEnv;
    use gatehouse_store::Access as StoredAccess;

    use super::*;

    fn config(apps: &str) -> Arc<Config> {
        Arc::new(Config::from_toml(apps, Path::new("."), &ProcessEnv).expect("valid config"))
    }

    fn record(slug: &str, upstream: &str, access: StoredAccess, groups: &[&str]) -> AppRecord {
        AppRecord {
            slug: slug.into(),
            name: format!("{slug} app"),
            description: String::new(),
            upstreams: vec![upstream.into()],
            access,
            allow_groups: groups.iter().map(|g| GroupName::new(g)).collect(),
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
        }
    }

    const FILE: &str = r#"
[[apps]]
slug = "sales"
upstreams = ["127.0.0.1:9"]
access = "authenticated"
"#;

    #[test]
    fn store_apps_join_file_apps_and_clashes_are_reported() {
        let stored = [
            record("sales", "127.0.0.1:10", StoredAccess::Public, &[]),
            record("hr", "127.0.0.1:11", StoredAccess::Restricted, &["hr"]),
            record("bad", "not an address", StoredAccess::Public, &[]),
        ];
        let s = Snapshot::compile(config(FILE), &stored, None);
        let slugs: Vec<&str> = s.apps.iter().map(|a| a.app.slug.as_str()).collect();
        assert_eq!(slugs, ["sales", "hr"]);
        assert_eq!(s.app("sales").map(|a| a.source), Some(AppSource::File));
        assert_eq!(s.app("hr").map(|a| a.source), Some(AppSource::Store));
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(s
            .problems
            .iter()
            .any(|p| p.contains("\"sales\"") && p.contains("config file")));
        assert!(s
            .problems
            .iter()
            .any(|p| p.contains("\"bad\"") && p.contains("upstreams[0]")));
        // The file's definition is the one served.
        assert_eq!(s.app("sales").map(|a| a.app.access), Some(Access::Authenticated));
    }

    #[test]
    fn store_apps_are_validated_like_file_apps() {
        let hr = record("hr", "127.0.0.1:11", StoredAccess::Restricted, &["HR"]);
        let s = Snapshot::compile(config(FILE), &[hr], None);
        let app = s.app("hr").expect("hr served");
        assert_eq!(app.app.path, "/apps/hr/");
        assert_eq!(app.app.timeouts, s.config.server.timeouts);
        let Some(crate::route::RouteMatch::App { app: i, .. }) = s.router.resolve("x", "/apps/hr/a") else {
            panic!("hr routed")
        };
        assert_eq!(s.apps[i].app.slug, "hr");
    }

    #[test]
    fn pools_survive_a_swap_when_upstreams_are_unchanged() {
        let hr = record("hr", "127.0.0.1:11", StoredAccess::Public, &[]);
        let first = Snapshot::compile(config(FILE), std::slice::from_ref(&hr), None);
        first.app("hr").expect("hr").pool.record_failure(0);
        let second = Snapshot::compile(config(FILE), std::slice::from_ref(&hr), Some(&first));
        let (a, b) = (first.app("hr").expect("hr"), second.app("hr").expect("hr"));
        assert!(Arc::ptr_eq(&a.pool, &b.pool));
        assert!(!b.pool.members[0].is_healthy(), "health state carried over");
        assert_ne!(a.id, b.id, "each compile gives apps new ids");
        let moved = record("hr", "127.0.0.1:12", StoredAccess::Public, &[]);
        let third = Snapshot::compile(config(FILE), &[moved], Some(&second));
        assert!(!Arc::ptr_eq(
            &second.app("hr").expect("hr").pool,
            &third.app("hr").expect("hr").pool
        ));
    }

    #[test]
    fn a_request_keeps_its_app_across_a_swap() {
        let live = Live::new(Snapshot::compile(
            config(FILE),
            &[record("hr", "127.0.0.1:11", StoredAccess::Public, &[])],
            None,
        ));
        let held = live.load().app("hr").cloned().expect("hr");
        live.publish(Snapshot::compile(config(FILE), &[], Some(&live.load())));
        assert!(live.load().app("hr").is_none());
        assert_eq!(held.app.slug, "hr");
        assert_eq!(held.app.upstreams[0].port, 11);
    }

    #[test]
    fn portal_lists_what_evaluate_allows() {
        let stored = [
            record("hr", "127.0.0.1:11", StoredAccess::Restricted, &["hr"]),
            record("pub", "127.0.0.1:12", StoredAccess::Public, &[]),
        ];
        let s = Snapshot::compile(config(FILE), &stored, None);
        let names = |who: Option<&Identity>| -> Vec<String> { s.portal(who).into_iter().map(|p| p.name).collect() };
        assert_eq!(names(None), ["pub app"]);
        let bob = Identity {
            user: UserName::new("bob"),
            groups: [GroupName::new("HR")].into_iter().collect(),
            admin: false,
        };
        assert_eq!(names(Some(&bob)), ["sales", "hr app", "pub app"]);
        // Positions: lower first, around the file's apps at 0.
        let mut first = record("pub", "127.0.0.1:12", StoredAccess::Public, &[]);
        first.portal_order = -1;
        let mut last = record("hr", "127.0.0.1:11", StoredAccess::Restricted, &["hr"]);
        last.portal_order = 5;
        let s = Snapshot::compile(config(FILE), &[last, first], None);
        let names: Vec<String> = s.portal(Some(&bob)).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["pub app", "sales", "hr app"]);
    }

    #[test]
    fn portal_cards_carry_position_tags_owner_and_update_time() {
        let file = config(
            r#"
[[apps]]
slug = "late"
upstreams = ["127.0.0.1:9"]
access = "public"
portal_order = 7
owner = "Data team"
tags = ["finance"]

[[apps]]
slug = "early"
upstreams = ["127.0.0.1:9"]
access = "public"
portal_order = -2
thumbnail = "https://cdn.example.com/e.png"
"#,
        );
        let mut file = Arc::try_unwrap(file).expect("one owner");
        file.modified = Some(1_700_000_000);
        let mut stored = record("mid", "127.0.0.1:12", StoredAccess::Public, &[]);
        stored.portal_order = 3;
        stored.tags = vec!["Board".into()];
        stored.owner_users = vec![UserName::new("olga")];
        stored.owner_groups = vec![GroupName::new("Data Team")];
        stored.updated_at = 1_800_000_000;
        let s = Snapshot::compile(Arc::new(file), &[stored], None);
        let cards = s.portal(None);
        let slugs: Vec<&str> = cards.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(
            slugs,
            ["early", "mid", "late"],
            "config and store apps ordered together"
        );
        assert_eq!(cards[0].thumbnail.as_deref(), Some("https://cdn.example.com/e.png"));
        assert_eq!(
            (cards[0].owner.as_str(), cards[0].updated_at),
            ("", Some(1_700_000_000))
        );
        assert_eq!(
            (cards[1].owner.as_str(), cards[1].updated_at, cards[1].tags.clone()),
            ("olga, data team", Some(1_800_000_000), vec!["Board".to_string()])
        );
        assert_eq!(
            (cards[2].owner.as_str(), cards[2].tags.clone()),
            ("Data team", vec!["finance".to_string()])
        );
    }

    #[test]
    fn a_time_limited_grant_stops_at_its_end_without_a_recompile() {
        let grant = |grantee: Grantee, expires_at: Option<i64>| GrantRecord {
            app: "hr".into(),
            grantee,
            expires_at,
            created_by: "test".into(),
            created_at: 0,
        };
        let grants = [
            grant(Grantee::User(UserName::new("bob")), Some(1_000)),
            grant(Grantee::Group(GroupName::new("temps")), Some(2_000)),
            // Listed on the record as well: the end of the grant does not remove it.
            grant(Grantee::Group(GroupName::new("hr")), Some(1_000)),
            grant(Grantee::User(UserName::new("carol")), None),
        ];
        let stored = [record("hr", "127.0.0.1:11", StoredAccess::Restricted, &["hr"])];
        let s = Snapshot::compile_with_grants(config(FILE), &stored, &grants, 900, None);
        let hr = s.app("hr").expect("hr");
        assert_eq!(hr.ends, Some(1_000));
        // The admin form edits the record's own lists, never the grants merged for the policy.
        assert_eq!(hr.listed_groups, ["hr"]);
        assert!(hr.listed_users.is_empty());
        assert!(hr.app.allow_users.contains(&"carol".to_string()));
        assert_eq!(s.next_expiry, Some(1_000));
        let person = |user: &str, group: &str| Identity {
            user: UserName::new(user),
            groups: [GroupName::new(group)].into_iter().collect(),
            admin: false,
        };
        let allowed = |now: i64, who: &Identity| evaluate(&hr.policy_at(now), Some(who)).is_allowed();
        let (bob, temp, staff, carol) = (
            person("bob", "none"),
            person("t", "temps"),
            person("s", "hr"),
            person("carol", "none"),
        );
        assert!(allowed(999, &bob) && allowed(999, &temp));
        assert!(
            matches!(hr.policy_at(999), Cow::Borrowed(_)),
            "no work before the first end"
        );
        assert!(!allowed(1_000, &bob), "out at the second the grant ends");
        assert!(allowed(1_000, &temp) && !allowed(2_000, &temp));
        assert!(allowed(5_000, &staff), "the record's own allow-list stays");
        assert!(allowed(5_000, &carol), "a grant without an end stays");
    }
}
