//! Usage per app, counted on the access path and added to the store off it.
//!
//! A *visit* ([`is_visit`]) is a proxied request (the gatekeeper said `Serve`) that a
//! browser makes to show a page: a `GET` whose `Sec-Fetch-Dest` is `document`, or — from
//! a client that sends no `Sec-Fetch-Dest` — one whose `Accept` names `text/html` and
//! that is neither an XHR (`X-Requested-With`) nor a WebSocket upgrade. Assets, API
//! calls and WebSockets are not visits.
//!
//! The proxy calls [`Recorder::record`] for each visit: one short lock (never held across
//! an await) and three hash lookups; memory is allocated only the first time a key (UTC
//! day, app, person) is seen between two flushes. At most `usage.max_keys` keys are held;
//! visits of further keys are dropped and counted (`gatehouse_usage_dropped_total`).
//! [`Flusher`] (a background service) takes the counts every `usage.flush_seconds` and adds
//! them to the store with [`Store::add_visits`] (an additive upsert, so replicas sharing a
//! PostgreSQL store add up); when the store is down it keeps them, still bounded by
//! `max_keys`, and tries again next time. On shutdown `server::run` flushes what is left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_admin_ui::admin::{UsageDayRow, UsageReport, UsageRow};
use gatehouse_store::{day_of, Store, StoreError, VisitCount, USAGE_RETENTION_DAYS};
use http::{HeaderMap, Method};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounter, Registry};

/// Whether a request to an app is a visit (see the module comment).
pub fn is_visit(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET || headers.contains_key(http::header::UPGRADE) {
        return false;
    }
    if let Some(dest) = headers.get(&crate::identity::names::SEC_FETCH_DEST) {
        return dest.as_bytes().eq_ignore_ascii_case(b"document");
    }
    if headers.contains_key(&crate::identity::names::X_REQUESTED_WITH) {
        return false;
    }
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|v| contains_ignore_case(v.as_bytes(), b"text/html"))
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Visits of one key since the last flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub visits: u64,
    /// Epoch seconds of the latest.
    pub last_at: i64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.visits += other.visits;
        self.last_at = self.last_at.max(other.last_at);
    }
}

/// Counts by UTC day, then app, then person (`""`: anonymous). Nested so that a lookup
/// borrows `&str` keys and allocates nothing; usually one day is present.
#[derive(Debug, Default)]
struct Counts {
    keys: usize,
    days: Vec<(i64, ByApp)>,
}

/// App → person → visits.
type ByApp = HashMap<String, HashMap<String, Tally>>;

/// The in-memory visit counter the proxy writes to.
#[derive(Debug)]
pub struct Recorder {
    enabled: bool,
    max_keys: usize,
    counts: Mutex<Counts>,
    dropped: IntCounter,
}

impl Recorder {
    /// A recorder for `usage`; its drop counter is `gatehouse_usage_dropped_total`
    /// (registered by [`Recorder::register`]).
    pub fn new(usage: &gatehouse_config::Usage) -> Result<Recorder, prometheus::Error> {
        Ok(Recorder {
            enabled: usage.enabled,
            max_keys: usage.max_keys as usize,
            counts: Mutex::new(Counts::default()),
            dropped: IntCounter::new(
                "gatehouse_usage_dropped_total",
                "Visits not counted because usage.max_keys distinct keys were already held",
            )?,
        })
    }

    /// Adds the drop counter to `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.dropped.clone()))
    }

    /// Whether visits are counted (`usage.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts one visit of `person` (`""`: anonymous) to app `app` at epoch second `now`.
    /// Dropped (and counted as dropped) when `max_keys` other keys are already held.
    pub fn record(&self, app: &str, person: &str, now: i64) {
        if !self.enabled {
            return;
        }
        let day = day_of(now);
        let visit = Tally {
            visits: 1,
            last_at: now,
        };
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let full = c.keys >= self.max_keys;
        let Counts { keys, days } = &mut *c;
        let i = match days.iter().position(|(d, _)| *d == day) {
            Some(i) => i,
            None if full => return self.dropped.inc(),
            None => {
                days.push((day, HashMap::new()));
                days.len() - 1
            }
        };
        let apps = &mut days[i].1;
        let people = match apps.get_mut(app) {
            Some(p) => p,
            None if full => return self.dropped.inc(),
            None => apps.entry(app.to_owned()).or_default(),
        };
        match people.get_mut(person) {
            Some(t) => t.add(visit),
            None if full => self.dropped.inc(),
            None => {
                people.insert(person.to_owned(), visit);
                *keys += 1;
            }
        }
    }

    /// Everything counted since the last call, leaving the recorder empty.
    pub fn take(&self) -> Vec<VisitCount> {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::with_capacity(counts.keys);
        for (day, apps) in counts.days {
            for (app, people) in apps {
                for (person, t) in people {
                    out.push(VisitCount {
                        app: app.clone(),
                        day,
                        person,
                        visits: i64::try_from(t.visits).unwrap_or(i64::MAX),
                        last_at: t.last_at,
                    });
                }
            }
        }
        out
    }

    /// The apps `person` visited since the last flush, each with its latest visit (epoch
    /// seconds); none for `""` (anonymous). Walks what is held (at most `max_keys`).
    pub fn recent_of(&self, person: &str) -> Vec<(String, i64)> {
        if person.is_empty() {
            return Vec::new();
        }
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, i64)> = Vec::new();
        for (_, apps) in &c.days {
            for (app, people) in apps {
                if let Some(t) = people.get(person) {
                    merge_one(&mut out, app, t.last_at);
                }
            }
        }
        out
    }

    /// Distinct keys held now.
    pub fn keys(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).keys
    }

    /// Visits dropped so far because the recorder (or the flusher's retry batch) was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// Adds (app, at) to `list`, keeping one entry per app with its latest time.
fn merge_one(list: &mut Vec<(String, i64)>, app: &str, at: i64) {
    match list.iter_mut().find(|(a, _)| a == app) {
        Some((_, t)) => *t = (*t).max(at),
        None => list.push((app.to_owned(), at)),
    }
}

/// A person's recently opened apps: what the store has and what this process counted but
/// has not flushed yet, one entry per app with its latest visit, latest first (ties by
/// slug), at most `limit`.
pub fn merge_recent(stored: Vec<(String, i64)>, unflushed: Vec<(String, i64)>, limit: usize) -> Vec<(String, i64)> {
    let mut out = stored;
    for (app, at) in unflushed {
        merge_one(&mut out, &app, at);
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.truncate(limit);
    out
}

type Key = (String, i64, String);

/// Adds the recorder's counts to the store, keeping them for a retry when the store fails.
#[derive(Debug)]
pub struct Flusher {
    recorder: Arc<Recorder>,
    store: Arc<Store>,
    every: Duration,
    /// Counts taken from the recorder but not yet in the store (bounded by `max_keys`).
    pending: tokio::sync::Mutex<HashMap<Key, Tally>>,
}

impl Flusher {
    pub fn new(recorder: Arc<Recorder>, store: Arc<Store>, usage: &gatehouse_config::Usage) -> Flusher {
        Flusher {
            recorder,
            store,
            every: usage.flush_interval,
            pending: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Takes the recorder's counts and adds them, with any left from a failed attempt, to
    /// the store. Returns how many keys were written. On error the counts stay pending.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let mut pending = self.pending.lock().await;
        for v in self.recorder.take() {
            let t = Tally {
                visits: u64::try_from(v.visits).unwrap_or(0),
                last_at: v.last_at,
            };
            let key = (v.app, v.day, v.person);
            if let Some(held) = pending.get_mut(&key) {
                held.add(t);
            } else if pending.len() < self.recorder.max_keys {
                pending.insert(key, t);
            } else {
                self.recorder.dropped.inc_by(t.visits);
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        let batch: Vec<VisitCount> = pending
            .iter()
            .map(|((app, day, person), t)| VisitCount {
                app: app.clone(),
                day: *day,
                person: person.clone(),
                visits: i64::try_from(t.visits).unwrap_or(i64::MAX),
                last_at: t.last_at,
            })
            .collect();
        self.store.add_visits(&batch).await?;
        pending.clear();
        Ok(batch.len())
    }

    /// Keys waiting for the store (after a failed flush).
    pub async fn pending(&self) -> usize {
        self.pending.lock().await.len()
    }

    /// Flushes every `usage.flush_seconds` until shutdown; removes usage older than
    /// [`USAGE_RETENTION_DAYS`] once an hour.
    async fn run(&self) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        let mut last_sweep = 0;
        loop {
            tick.tick().await;
            match self.flush().await {
                Ok(n) => {
                    if failing {
                        tracing::info!(keys = n, "usage counts written again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        let pending = self.pending().await;
                        tracing::warn!(error = %e, pending, "could not write usage counts; keeping them and retrying");
                    }
                    failing = true;
                }
            }
            let now = crate::authn::session::now();
            if !failing && now - last_sweep >= 3600 {
                last_sweep = now;
                match self.store.sweep_usage(day_of(now) - USAGE_RETENTION_DAYS).await {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "old usage removed"),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "could not remove old usage"),
                }
            }
        }
    }
}

/// App `slug`'s usage for its admin page at epoch second `now`: the last 30 UTC days
/// (today last, zeros filled in), totals over 7 and 30 days, the last 10 people.
pub async fn report(store: &Store, slug: &str, now: i64) -> Result<UsageReport, StoreError> {
    let today = day_of(now);
    let stored = store.usage_days(slug, today - 29, today).await?;
    let days = (today - 29..=today)
        .map(|day| {
            let d = stored.iter().find(|d| d.day == day);
            UsageDayRow {
                day,
                visits: d.map_or(0, |d| d.visits),
                people: d.map_or(0, |d| d.people),
            }
        })
        .collect();
    let week = store.app_usage(slug, today - 6, today).await?;
    let month = store.app_usage(slug, today - 29, today).await?;
    let last = store
        .last_visitors(slug, 10)
        .await?
        .into_iter()
        .map(|v| (v.person, v.at))
        .collect();
    Ok(UsageReport {
        days,
        visits_7: week.visits,
        people_7: week.people,
        visits_30: month.visits,
        people_30: month.people,
        last,
    })
}

/// Every app's visits and people over the last `days` UTC days (today included).
pub async fn by_app(store: &Store, days: i64, now: i64) -> Result<Vec<UsageRow>, StoreError> {
    let today = day_of(now);
    Ok(store
        .usage_by_app(today - (days.max(1) - 1), today)
        .await?
        .into_iter()
        .map(|u| UsageRow {
            app: u.app,
            visits: u.visits,
            people: u.people,
        })
        .collect())
}

/// The flusher as a pingora background service.
pub struct FlushService(pub Arc<Flusher>);

#[async_trait]
impl BackgroundService for FlushService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = self.0.run() => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(max_keys: u32) -> Recorder {
        Recorder::new(&gatehouse_config::Usage {
            enabled: true,
            flush_interval: Duration::from_secs(5),
            max_keys,
        })
        .unwrap()
    }

    fn sorted(mut v: Vec<VisitCount>) -> Vec<(String, i64, String, i64, i64)> {
        v.sort_by(|a, b| (&a.app, a.day, &a.person).cmp(&(&b.app, b.day, &b.person)));
        v.into_iter()
            .map(|c| (c.app, c.day, c.person, c.visits, c.last_at))
            .collect()
    }

    const T: i64 = 20_000 * 86_400;

    #[test]
    fn recently_opened_merges_the_store_with_unflushed_visits() {
        let r = recorder(100);
        r.record("sales", "alice", T + 10);
        r.record("sales", "alice", T + 86_400 + 5);
        r.record("hr", "alice", T + 20);
        r.record("wiki", "bob", T + 99);
        r.record("wiki", "", T + 99);
        let mut mine = r.recent_of("alice");
        mine.sort();
        assert_eq!(
            mine,
            [("hr".to_string(), T + 20), ("sales".to_string(), T + 86_400 + 5)]
        );
        assert!(r.recent_of("").is_empty());
        let stored = vec![("grafana".to_string(), T + 50), ("hr".to_string(), T + 1)];
        let merged = merge_recent(stored.clone(), mine.clone(), 10);
        assert_eq!(
            merged,
            [
                ("sales".to_string(), T + 86_400 + 5),
                ("grafana".to_string(), T + 50),
                ("hr".to_string(), T + 20),
            ],
            "latest first, one entry per app with its latest visit"
        );
        assert_eq!(merge_recent(stored, mine, 1).len(), 1);
    }

    #[test]
    fn counts_by_day_app_and_person() {
        let r = recorder(100);
        r.record("sales", "alice", T + 10);
        r.record("sales", "alice", T + 30);
        r.record("sales", "alice", T + 20);
        r.record("sales", "", T + 5);
        r.record("hr", "alice", T + 7);
        r.record("sales", "alice", T + 86_400 + 1);
        assert_eq!(r.keys(), 4);
        assert_eq!(
            sorted(r.take()),
            vec![
                ("hr".into(), 20_000, "alice".into(), 1, T + 7),
                ("sales".into(), 20_000, "".into(), 1, T + 5),
                ("sales".into(), 20_000, "alice".into(), 3, T + 30),
                ("sales".into(), 20_001, "alice".into(), 1, T + 86_400 + 1),
            ]
        );
        assert_eq!(r.keys(), 0, "a flush empties it");
        assert!(r.take().is_empty());
        assert_eq!(r.dropped(), 0);
    }

    #[test]
    fn bounded_and_counts_drops() {
        let r = recorder(3);
        for p in ["a", "b", "c"] {
            r.record("app", p, T);
        }
        r.record("app", "d", T);
        r.record("other", "a", T);
        r.record("app", "a", T + 86_400);
        assert_eq!(r.keys(), 3, "no fourth key");
        assert_eq!(r.dropped(), 3);
        // Keys already held still count.
        r.record("app", "a", T + 1);
        assert_eq!(r.dropped(), 3);
        let taken = sorted(r.take());
        assert_eq!(taken[0], ("app".into(), 20_000, "a".into(), 2, T + 1));
        assert_eq!(taken.len(), 3);
        // Empty again: new keys fit.
        r.record("app", "d", T);
        assert_eq!(r.keys(), 1);
        assert_eq!(r.dropped(), 3);
    }

    #[test]
    fn disabled_counts_nothing() {
        let r = Recorder::new(&gatehouse_config::Usage {
            enabled: false,
            ..gatehouse_config::Usage::default()
        })
        .unwrap();
        r.record("app", "a", T);
        assert!(r.take().is_empty());
    }

    #[tokio::test]
    async fn flusher_keeps_counts_while_the_store_is_down_and_writes_them_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_sqlite(&dir.path().join("u.db")).await.unwrap());
        let usage = gatehouse_config::Usage {
            max_keys: 2,
            ..gatehouse_config::Usage::default()
        };
        let r = Arc::new(Recorder::new(&usage).unwrap());
        let f = Flusher::new(r.clone(), store.clone(), &usage);
        r.record("app", "a", T);
        r.record("app", "a", T + 1);
        assert_eq!(f.flush().await.ok(), Some(1));
        assert_eq!(f.flush().await.ok(), Some(0), "nothing new");

        store.close().await;
        r.record("app", "a", T + 2);
        r.record("app", "b", T + 3);
        assert!(f.flush().await.is_err());
        assert_eq!(f.pending().await, 2, "kept for the retry");
        r.record("app", "c", T + 4);
        r.record("app", "b", T + 5);
        assert!(f.flush().await.is_err());
        assert_eq!(f.pending().await, 2, "still bounded");
        assert_eq!(r.dropped(), 1, "c did not fit");

        let reopened = Arc::new(Store::open_sqlite(&dir.path().join("u.db")).await.unwrap());
        let f2 = Flusher {
            store: reopened.clone(),
            pending: tokio::sync::Mutex::new(std::mem::take(&mut *f.pending.lock().await)),
            ..Flusher::new(r.clone(), reopened.clone(), &usage)
        };
        assert_eq!(f2.flush().await.ok(), Some(2));
        let u = reopened.app_usage("app", 20_000, 20_000).await.unwrap();
        assert_eq!((u.visits, u.people), (5, 2));
    }

    #[test]
    fn what_is_a_visit() {
        fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, http::HeaderValue::from_static(v));
            }
            m
        }
        let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let yes = [
            h(&[("sec-fetch-dest", "document"), ("accept", html)]),
            h(&[("sec-fetch-dest", "Document")]),
            h(&[("accept", html)]),
            h(&[("accept", "TEXT/HTML")]),
        ];
        for m in &yes {
            assert!(is_visit(&Method::GET, m), "{m:?}");
        }
        let no = [
            h(&[("sec-fetch-dest", "script"), ("accept", "*/*")]),
            h(&[("sec-fetch-dest", "empty"), ("accept", html)]),
            h(&[("sec-fetch-dest", "iframe"), ("accept", html)]),
            h(&[("accept", "*/*")]),
            h(&[("accept", "application/json")]),
            h(&[]),
            h(&[("accept", html), ("x-requested-with", "XMLHttpRequest")]),
            h(&[("accept", html), ("upgrade", "websocket"), ("connection", "upgrade")]),
            h(&[("sec-fetch-dest", "document"), ("upgrade", "websocket")]),
        ];
        for m in &no {
            assert!(!is_visit(&Method::GET, m), "{m:?}");
        }
        assert!(!is_visit(&Method::POST, &yes[0]));
        assert!(!is_visit(&Method::HEAD, &yes[2]));
    }
}
