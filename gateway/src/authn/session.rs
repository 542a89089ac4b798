//! Sessions: an opaque 256-bit random id in the cookie; the record (user, groups, provider,
//! times) in the store under the SHA-256 of the id, with a cache in front so the hot
//! path does no IO for a known session ([`super::session_table`], keyed by the id's 32-byte
//! digest; sessions with equal groups share one copy of them, and one of their provider
//! id). Idle and absolute timeouts; revocation removes the
//! record and the cache entry; a new id at every login.
//!
//! A cached session is re-read from the store once it is older than the cache's time to
//! live (or a resync asked for it). When the store cannot answer (down, or slower than
//! [`STORE_CHECK_TIMEOUT`]), the cached copy is honoured for up to
//! `session.store_outage_grace` after the store last confirmed it, and for 3 seconds
//! after a failure the store is not asked again, so that signed-in traffic neither stops
//! nor queues behind a dead database. A session whose deletion fails (sign-out, expiry,
//! while the store is down or refuses it) is refused here at once and its deletion retried
//! until the store has it or the session's absolute timeout has passed.

use std::collections::{BTreeSet, HashSet};

use super::session_table::SessionTable;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use gatehouse_policy::{GroupName, GroupSet, Identity, UserName};
use gatehouse_store::{Actor, SessionRecord, Store};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::GatewayError;

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch (freshness of cached sessions).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long a request waits for the store to confirm a cached session before the cached
/// copy is used (within the outage grace).
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// After a failed store read, how long (ms) cached sessions are used without asking again.
const STORE_RETRY_MS: i64 = 3_000;

/// How many sessions the cache holds ([`SessionTable`]).
const CACHE_CAPACITY: usize = 100_000;

/// How long after a failed deletion (store unavailable) it is first tried again.
const FIRST_RETRY_WAIT: Duration = Duration::from_secs(1);

/// The wait before the next try of a deletion that failed again: doubling, at most 30 s.
fn next_retry_wait(wait: Duration) -> Duration {
    (wait * 2).min(Duration::from_secs(30))
}

/// A signed-in person, as the proxy and pages see them.
#[derive(Debug)]
pub struct Session {
    /// SHA-256 of the cookie value: the cache key, and in hex the store key
    /// ([`Session::id_hash`]). The raw id is never kept.
    pub key: Key,
    pub identity: Identity,
    /// Boxed, not `String`: 16 bytes each instead of 24 keep a cached session within
    /// the allocator's 192-byte size class (BENCHMARKS.md, memory with 100,000 sessions).
    pub email: Option<Box<str>>,
    pub display_name: Option<Box<str>>,
    pub provider: Arc<str>,
    pub created_at: i64,
    /// A digest of everything an app is told about this session (user, groups, admin,
    /// email, name, provider), computed once when the session is loaded: what is prepared
    /// for it (`identity::Prepared`) is reused only while this is unchanged.
    pub fingerprint: u64,
    last_seen: AtomicI64,
    persisted_last_seen: AtomicI64,
    checked_at: AtomicI64,
    /// When the store last confirmed this session (ms since the epoch).
    verified_at: AtomicI64,
}

impl Session {
    fn from_record(r: SessionRecord, shared: &Shared) -> Session {
        let mut s = Session {
            identity: Identity {
                user: r.username,
                groups: shared.groups(r.groups.into_iter().collect()),
                admin: r.admin,
            },
            key: key_of_hash(&r.id_hash),
            email: r.email.map(String::into_boxed_str),
            display_name: r.display_name.map(String::into_boxed_str),
            provider: shared.provider(&r.provider),
            created_at: r.created_at,
            last_seen: AtomicI64::new(r.last_seen),
            persisted_last_seen: AtomicI64::new(r.last_seen),
            checked_at: AtomicI64::new(r.last_seen),
            verified_at: AtomicI64::new(now_ms()),
            fingerprint: 0,
        };
        s.fingerprint = s.digest();
        s
    }

    fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (&self.identity.user, &self.identity.groups, self.identity.admin).hash(&mut h);
        (&self.email, &self.display_name, &self.provider).hash(&mut h);
        h.finish()
    }

    /// A session that exists only in memory (tests, and requests judged without a store
    /// record): no id, no provider.
    pub fn detached(identity: Identity) -> Session {
        let t = now();
        let mut s = Session {
            key: [0; 32],
            identity,
            email: None,
            display_name: None,
            provider: Arc::from(""),
            created_at: t,
            last_seen: AtomicI64::new(t),
            persisted_last_seen: AtomicI64::new(t),
            checked_at: AtomicI64::new(t),
            verified_at: AtomicI64::new(now_ms()),
            fingerprint: 0,
        };
        s.fingerprint = s.digest();
        s
    }

    pub fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// When the store last confirmed this session (ms since the epoch).
    pub(crate) fn verified_at(&self) -> i64 {
        self.verified_at.load(Ordering::Relaxed)
    }

    /// A session with no store record ([`Session::detached`]).
    pub fn is_detached(&self) -> bool {
        self.key == [0; 32]
    }

    /// The store key: the hex of [`Session::key`] (on the stack; derefs to `&str`).
    pub fn id_hash(&self) -> IdHash {
        IdHash::of(&self.key)
    }

    /// A cached session with this key, last used at `last_seen` (s) and confirmed by the
    /// store at `verified_at` (ms): for tests of the table.
    #[cfg(test)]
    pub(crate) fn for_table(key: Key, last_seen: i64, verified_at: i64) -> Session {
        let s = Session::detached(Identity {
            user: UserName::new("t"),
            groups: GroupSet::default(),
            admin: false,
        });
        let s = Session { key, ..s };
        s.last_seen.store(last_seen, Ordering::Relaxed);
        s.verified_at.store(verified_at, Ordering::Relaxed);
        s
    }
}

/// A session's store key, lower-case hex of its 32-byte key, kept on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdHash([u8; 64]);

impl IdHash {
    fn of(key: &Key) -> IdHash {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(key) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        IdHash(out)
    }
}

impl std::ops::Deref for IdHash {
    type Target = str;
    fn deref(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for IdHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for IdHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// A session as it stands now ([`Sessions::current`]).
#[derive(Debug, Clone)]
pub enum Current {
    Live(Arc<Session>),
    /// Revoked, signed out, expired, or its account gone.
    Gone,
    /// The store could not be asked.
    Unknown,
}

/// What a provider established at sign-in.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
    pub provider: String,
}

/// What a provider says when a session is re-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rechecked {
    /// Still there; these are the current groups.
    Groups(Vec<String>),
    /// Removed or disabled: end the session.
    Gone,
    /// Could not ask (the directory is down): keep the session as it is.
    Unknown,
}

/// Providers that can refresh a session's groups.
pub trait Recheck: Send + Sync + std::fmt::Debug {
    /// How often sessions of `provider` are re-checked; `None`: never.
    fn interval(&self, provider: &str) -> Option<Duration>;
    fn recheck(
        &self,
        id_hash: String,
        username: String,
        provider: String,
    ) -> futures_util::future::BoxFuture<'static, Rechecked>;
}

/// A session's cache key: the SHA-256 of its cookie value, whose hex is the store key.
pub type Key = [u8; 32];

fn key_of_cookie(cookie_value: &str) -> Key {
    Sha256::digest(cookie_value.as_bytes()).into()
}

/// The cache key of a store key (lower-case hex). Store keys are always that; any other
/// text gets a key of its own that no session has.
pub(crate) fn key_of_hash(id_hash: &str) -> Key {
    let b = id_hash.as_bytes();
    let mut key = [0u8; 32];
    if b.len() == 64 {
        for (k, pair) in key.iter_mut().zip(b.chunks_exact(2)) {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(h), Some(l)) => *k = (h << 4) + l,
                _ => return key_of_cookie(id_hash),
            }
        }
        return key;
    }
    key_of_cookie(id_hash)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// What cached sessions share. The group sets, one copy per distinct set: most people
/// share their groups with many others, and a set is the largest part of a session (a
/// B-tree node of ~300 bytes for even one group). Sets no session holds any more are
/// dropped whenever the table has doubled since the last such sweep. And the provider ids,
/// of which a configuration has a handful.
#[derive(Debug, Default)]
struct Shared {
    table: Mutex<(HashSet<GroupSet>, usize)>,
    providers: Mutex<HashSet<Arc<str>>>,
}

impl Shared {
    /// The shared provider id equal to `id`.
    fn provider(&self, id: &str) -> Arc<str> {
        let mut providers = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = providers.get(id) {
            return p.clone();
        }
        let p: Arc<str> = Arc::from(id);
        providers.insert(p.clone());
        p
    }

    /// The shared copy equal to `set` (which becomes it if there is none yet).
    fn groups(&self, set: GroupSet) -> GroupSet {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let (sets, swept_at) = &mut *table;
        if let Some(shared) = sets.get(&set) {
            return shared.clone();
        }
        if sweep_due(sets.len(), *swept_at) {
            sets.retain(|s| s.holders() > 1);
            *swept_at = sets.len();
        }
        sets.insert(set.clone());
        set
    }
}

/// Whether a table of `len` group sets, `swept_at` long after its last sweep, is swept now:
/// once it has doubled (at least 1,024 sets), so sweeping costs O(1) per insert over time.
fn sweep_due(len: usize, swept_at: usize) -> bool {
    len >= (swept_at * 2).max(1_024)
}

/// The session service.
#[derive(Debug)]
pub struct Sessions {
    recheck: Option<Arc<dyn Recheck>>,
    store: Arc<Store>,
    cache: Arc<SessionTable>,
    shared: Shared,
    idle: i64,
    absolute: i64,
    /// Provider ids of local accounts (see [`Sessions::with_local_providers`]).
    local_providers: Vec<String>,
    /// A cached session older than this (ms) is confirmed with the store again.
    fresh_ms: i64,
    /// How long (ms) after its last confirmation a cached session is honoured while the
    /// store cannot answer.
    grace_ms: i64,
    /// Sessions confirmed before this (ms) are confirmed again (a resync: changes may have
    /// been missed).
    resync_at: AtomicI64,
    /// The last failed store read (ms; 0: none since the last success).
    store_failed_at: AtomicI64,
    /// Sessions ended while the store was down, whose deletion is still being retried:
    /// refused here meanwhile.
    ending: Arc<Mutex<HashSet<Key>>>,
}

/// What the store said about a session.
enum Confirmed {
    Live(Arc<Session>),
    Gone,
    /// No answer (down or too slow).
    Unknown,
}

/// Hex SHA-256 of a cookie value.
pub fn hash_id(id: &str) -> String {
    IdHash::of(&key_of_cookie(id)).to_string()
}

/// Group names as a provider gave them: folded, sorted, without duplicates or blanks.
fn group_names(groups: &[String]) -> Vec<GroupName> {
    groups
        .iter()
        .map(|g| GroupName::new(g))
        .filter(|g| !g.as_str().is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Whether a cookie value has the shape of our ids (43 base64url characters), so that
/// garbage never reaches the store.
pub fn well_formed(id: &str) -> bool {
    id.len() == 43 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Sessions {
    /// `cache_ttl` bounds how long another replica's revocation may go unseen here;
    /// `outage_grace` how long a cached session is honoured while the store cannot answer
    /// (counted from the store's last confirmation).
    pub fn new(
        store: Arc<Store>,
        idle: Duration,
        absolute: Duration,
        cache_ttl: Duration,
        outage_grace: Duration,
    ) -> Sessions {
        Sessions {
            recheck: None,
            local_providers: Vec::new(),
            store,
            cache: Arc::new(SessionTable::new(
                CACHE_CAPACITY,
                cache_ttl.max(outage_grace).as_millis() as i64,
            )),
            idle: idle.as_secs().max(1) as i64,
            absolute: absolute.as_secs().max(1) as i64,
            fresh_ms: cache_ttl.as_millis() as i64,
            grace_ms: outage_grace.as_millis() as i64,
            resync_at: AtomicI64::new(0),
            store_failed_at: AtomicI64::new(0),
            ending: Arc::new(Mutex::new(HashSet::new())),
            shared: Shared::default(),
        }
    }

    /// Re-checks sessions with `r` at the intervals it gives.
    pub fn with_recheck(mut self, r: Arc<dyn Recheck>) -> Sessions {
        self.recheck = Some(r);
        self
    }

    /// Creates a session for `who` and returns the cookie value (a fresh random id).
    pub async fn create(&self, who: NewIdentity) -> Result<String, GatewayError> {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let t = now();
        let record = SessionRecord {
            id_hash: hash_id(&id),
            username: UserName::new(&who.username),
            email: who.email,
            display_name: who.display_name,
            groups: group_names(&who.groups),
            admin: who.admin,
            provider: who.provider,
            created_at: t,
            last_seen: t,
        };
        self.store.insert_session(&record).await?;
        let session = Session::from_record(record, &self.shared);
        self.cache.insert(Arc::new(session), now_ms());
        Ok(id)
    }

    /// The live session for a cookie value, or `None` (unknown, malformed, expired or
    /// revoked). Expired sessions are deleted. Refreshes the idle timer.
    pub async fn lookup(&self, cookie_value: &str) -> Option<Arc<Session>> {
        if !well_formed(cookie_value) {
            return None;
        }
        let key = key_of_cookie(cookie_value);
        if self.is_ending(&key) {
            return None;
        }
        let ms = now_ms();
        let cached = self.cache.get(&key, ms);
        let session = match cached {
            Some(s) if self.is_fresh(&s, ms) => s,
            cached => match self.confirm(&IdHash::of(&key), &key, cached.as_ref(), ms).await {
                Confirmed::Live(s) => s,
                Confirmed::Gone => return None,
                Confirmed::Unknown => match cached {
                    Some(s) if ms - s.verified_at.load(Ordering::Relaxed) < self.grace_ms => s,
                    Some(_) => {
                        tracing::warn!("session store unreachable for longer than session.store_outage_grace; a cached session is no longer honoured");
                        return None;
                    }
                    None => return None,
                },
            },
        };
        let t = now();
        if self.expired(&session, t) {
            self.revoke_hash(&session.id_hash()).await;
            return None;
        }
        session.last_seen.store(t, Ordering::Relaxed);
        self.maybe_recheck(&session, t);
        // Persist the idle timer now and then, not on every request.
        let threshold = (self.idle / 4).clamp(1, 60);
        let persisted = session.persisted_last_seen.load(Ordering::Relaxed);
        if t - persisted >= threshold
            && session
                .persisted_last_seen
                .compare_exchange(persisted, t, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let store = self.store.clone();
            let h = session.id_hash();
            tokio::spawn(async move {
                if let Err(e) = store.touch_session(&h, t).await {
                    tracing::warn!(error = %e, "could not record session activity");
                }
            });
        }
        Some(session)
    }

    /// Whether the store confirmed `s` recently enough (and after the last resync).
    fn is_fresh(&self, s: &Session, ms: i64) -> bool {
        let v = s.verified_at.load(Ordering::Relaxed);
        ms - v < self.fresh_ms && v > self.resync_at.load(Ordering::Relaxed)
    }

    /// Reads the session from the store (at most [`STORE_CHECK_TIMEOUT`]); a cached copy is
    /// not asked about again within 3 seconds of a failure.
    async fn confirm(&self, id_hash: &str, key: &Key, cached: Option<&Arc<Session>>, ms: i64) -> Confirmed {
        // `store_failed_at` is 0 when the last read succeeded: `ms - 0` is never short.
        if cached.is_some() && ms - self.store_failed_at.load(Ordering::Relaxed) < STORE_RETRY_MS {
            return Confirmed::Unknown;
        }
        let read = tokio::time::timeout(STORE_CHECK_TIMEOUT, self.store.session(id_hash)).await;
        let record = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.store_failed(&e.to_string());
                return Confirmed::Unknown;
            }
            Err(_) => {
                self.store_failed("no answer within the session check timeout");
                return Confirmed::Unknown;
            }
        };
        self.store_answered();
        let Some(r) = record else {
            self.cache.invalidate(key);
            return Confirmed::Gone;
        };
        let mut s = Session::from_record(r, &self.shared);
        if self.local_providers.iter().any(|p| **p == *s.provider) && !self.with_current_account(&mut s).await {
            self.end(id_hash, &Actor::gateway()).await;
            return Confirmed::Gone;
        }
        if let Some(c) = cached {
            // This replica's idle timer and re-check time may be ahead of the store's.
            s.last_seen.fetch_max(c.last_seen(), Ordering::Relaxed);
            s.persisted_last_seen
                .fetch_max(c.persisted_last_seen.load(Ordering::Relaxed), Ordering::Relaxed);
            s.checked_at
                .fetch_max(c.checked_at.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let s = Arc::new(s);
        self.cache.insert(s.clone(), now_ms());
        Confirmed::Live(s)
    }

    /// The store answered: no failure to remember (logged once, after an outage).
    fn store_answered(&self) {
        if self.store_failed_at.swap(0, Ordering::Relaxed) > 0 {
            tracing::info!("session store reachable again");
        }
    }

    fn store_failed(&self, why: &str) {
        if self.store_failed_at.swap(now_ms(), Ordering::Relaxed) == 0 {
            tracing::error!(error = %why, grace_seconds = self.grace_ms / 1000, "session store unavailable; cached sessions are honoured for the outage grace, new sign-ins fail");
        }
    }

    fn is_ending(&self, key: &Key) -> bool {
        let ending = self.ending.lock().unwrap_or_else(|e| e.into_inner());
        !ending.is_empty() && ending.contains(key)
    }

    /// Past its idle or absolute timeout at `t`.
    fn expired(&self, s: &Session, t: i64) -> bool {
        t - s.created_at >= self.absolute || t - s.last_seen() >= self.idle
    }

    /// The session as it stands now, by its store key, for an open stream judged again
    /// (`streams`): like [`Sessions::lookup`] (a fresh cached copy, else the store) but it
    /// does not refresh the idle timer — only requests do; an open stream does not keep its
    /// session alive.
    pub async fn current(&self, id_hash: &str) -> Current {
        let key = key_of_hash(id_hash);
        if self.is_ending(&key) {
            return Current::Gone;
        }
        let ms = now_ms();
        let cached = self.cache.get(&key, ms);
        let session = match cached {
            Some(s) if self.is_fresh(&s, ms) => s,
            cached => match self.confirm(id_hash, &key, cached.as_ref(), ms).await {
                Confirmed::Live(s) => s,
                Confirmed::Gone => return Current::Gone,
                Confirmed::Unknown => return Current::Unknown,
            },
        };
        if self.expired(&session, now()) {
            self.revoke_hash(id_hash).await;
            return Current::Gone;
        }
        Current::Live(session)
    }

    fn maybe_recheck(&self, session: &Arc<Session>, t: i64) {
        let Some(r) = &self.recheck else { return };
        let Some(interval) = r.interval(&session.provider) else {
            return;
        };
        let checked = session.checked_at.load(Ordering::Relaxed);
        if t - checked < interval.as_secs().max(1) as i64
            || session
                .checked_at
                .compare_exchange(checked, t, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let id_hash = session.id_hash().to_string();
        let fut = r.recheck(
            id_hash.clone(),
            session.identity.user.as_str().to_string(),
            session.provider.to_string(),
        );
        let (store, cache, h, key) = (self.store.clone(), self.cache.clone(), id_hash, session.key);
        tokio::spawn(async move {
            match fut.await {
                Rechecked::Gone => {
                    tracing::info!("account gone from its directory; ending its session");
                    cache.invalidate(&key);
                    let _ = store.delete_session(&h, &Actor::gateway()).await;
                }
                Rechecked::Groups(groups) => {
                    // `t` (this request's time) is stored as the session's last activity, so
                    // that a copy read back from the store counts its interval from this
                    // re-check instead of re-checking again at once.
                    if store.update_session_groups(&h, &group_names(&groups), t).await.is_ok() {
                        cache.invalidate(&key);
                    }
                }
                Rechecked::Unknown => {}
            }
        });
    }

    /// Ends a session by its cookie value (sign-out: the audit log names its user when this
    /// replica has the session cached, else the gateway).
    pub async fn revoke(&self, cookie_value: &str) {
        if well_formed(cookie_value) {
            let key = key_of_cookie(cookie_value);
            let actor = match self.cache.get(&key, now_ms()) {
                Some(s) => Actor::user(&s.identity.user, None),
                None => Actor::gateway(),
            };
            self.end(&IdHash::of(&key), &actor).await;
        }
    }

    /// Ends a session by its store key (expiry, single logout, re-check); takes effect on
    /// this replica at once.
    pub async fn revoke_hash(&self, id_hash: &str) {
        self.end(id_hash, &Actor::gateway()).await;
    }

    async fn end(&self, id_hash: &str, actor: &Actor) {
        let key = key_of_hash(id_hash);
        self.cache.invalidate(&key);
        match self.store.delete_session(id_hash, actor).await {
            Ok(_) => {}
            Err(e) => {
                // Refused here from now on, and the deletion (with its audit row) retried
                // until the store takes it, so the session does not come back with the
                // store: fail closed whatever the error (an outage, or a database refusing
                // the statement for a while).
                tracing::warn!(error = %e, "could not delete a session; refusing it here and retrying");
                let first = self.ending.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
                if first {
                    let (store, ending, h, actor) = (
                        self.store.clone(),
                        self.ending.clone(),
                        id_hash.to_string(),
                        actor.clone(),
                    );
                    // Past the absolute timeout the session is dead anyway.
                    let give_up = now() + self.absolute;
                    tokio::spawn(async move {
                        let mut wait = FIRST_RETRY_WAIT;
                        loop {
                            tokio::time::sleep(wait).await;
                            match store.delete_session(&h, &actor).await {
                                Err(_) if now() < give_up => {
                                    wait = next_retry_wait(wait);
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "could not delete a session before its absolute timeout; it has expired anyway");
                                    break;
                                }
                                Ok(_) => {
                                    tracing::info!("a session whose deletion failed earlier is now deleted");
                                    break;
                                }
                            }
                        }
                        ending.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                    });
                }
            }
        }
    }

    /// Ends every session of `username`.
    pub async fn revoke_user(&self, username: &str) -> u64 {
        let n = self
            .store
            .delete_user_sessions(&UserName::new(username), &Actor::gateway())
            .await
            .unwrap_or(0);
        // Other replicas hear of it through the store's change feed; this one at once.
        self.forget_user(username).await;
        n
    }

    /// A local account's session carries the account as it is now: groups and admin flag
    /// changed by an administrator apply from the next read of the session (the change
    /// feed drops the cached copies at once). False: the account is gone or disabled.
    async fn with_current_account(&self, s: &mut Session) -> bool {
        match self.store.user(&s.identity.user).await {
            Ok(Some(u)) if !u.disabled => {
                s.identity.groups = self.shared.groups(u.groups.into_iter().collect());
                s.identity.admin = u.admin;
                true
            }
            Ok(_) => false,
            // The store just answered for the session; keep it as signed in.
            Err(_) => true,
        }
    }

    /// Sessions of these providers are local accounts, re-read with the session.
    pub fn with_local_providers(mut self, ids: Vec<String>) -> Sessions {
        self.local_providers = ids;
        self
    }

    /// Drops a session from this replica's cache (the store changed it: revoked, logged out
    /// or re-checked elsewhere); the next request reads the store again.
    pub async fn forget(&self, id_hash: &str) {
        self.cache.invalidate(&key_of_hash(id_hash));
    }

    /// Drops every cached session of `username` (the account changed).
    pub async fn forget_user(&self, username: &str) {
        let user = UserName::new(username);
        for k in self.cache.keys_where(|s| s.identity.user == user) {
            self.cache.invalidate(&k);
        }
    }

    /// Change notifications may have been missed: every cached session is confirmed with
    /// the store again at its next use (and kept, within the outage grace, if the store
    /// cannot answer).
    pub fn forget_all(&self) {
        self.resync_at.store(now_ms(), Ordering::Relaxed);
    }

    /// Deletes sessions past their timeouts from the store, and drops cached copies past
    /// their time to live.
    pub async fn sweep(&self) {
        self.cache.sweep(now_ms());
        let t = now();
        match self
            .store
            .delete_expired_sessions(t - self.idle, t - self.absolute)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "expired sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove expired sessions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached session with its `Arc` counts fits the allocator's 192-byte size class (the
    /// next is 224): 100,000 sessions are 3 MiB less (BENCHMARKS.md, "Results: memory").
    #[test]
    fn a_cached_session_fits_192_bytes() {
        let arc_counts = 2 * std::mem::size_of::<usize>();
        assert!(
            std::mem::size_of::<Session>() + arc_counts <= 192,
            "{}",
            std::mem::size_of::<Session>()
        );
    }

    #[test]
    fn ids_are_checked_before_the_store() {
        assert!(well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJK-_0123"));
        assert!(!well_formed("short"));
        assert!(!well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJK-_01'3"));
        assert!(!well_formed(&"a".repeat(44)));
        assert_eq!(hash_id("x").len(), 64);
        // Known vector (SHA-256 of "abc"), so the store key cannot silently change.
        assert_eq!(
            hash_id("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cache_keys_are_the_store_keys_bytes() {
        for cookie in ["abc", "", &"z".repeat(43)] {
            let key = key_of_cookie(cookie);
            assert_eq!(&*IdHash::of(&key), hash_id(cookie));
            assert_eq!(key_of_hash(&hash_id(cookie)), key);
        }
        // Not a store key (upper case, wrong length, not hex): a key of its own, never
        // the session's whose hex it resembles.
        let h = hash_id("abc");
        for other in [
            h.to_uppercase(),
            h[..62].to_string(),
            format!("{}g", &h[..63]),
            format!("{h}0"),
        ] {
            assert_ne!(key_of_hash(&other), key_of_cookie("abc"), "{other}");
        }
    }

    #[test]
    fn the_group_set_table_is_swept_when_it_has_doubled() {
        for (len, swept_at, due) in [
            (1_023, 0, false),
            (1_024, 0, true),
            (1_199, 600, false),
            (1_200, 600, true),
            (3_999, 2_000, false),
            (4_000, 2_000, true),
        ] {
            assert_eq!(
                sweep_due(len, swept_at),
                due,
                "{len} sets, {swept_at} after the last sweep"
            );
        }
    }

    #[test]
    fn equal_group_sets_are_shared_and_unheld_ones_are_swept() {
        let sets = Shared::default();
        let set = |names: &[&str]| names.iter().map(|n| GroupName::new(n)).collect::<GroupSet>();
        let a = sets.groups(set(&["staff", "ops"]));
        let b = sets.groups(set(&["ops", "staff"]));
        let c = sets.groups(set(&["staff"]));
        assert!(a.shares(&b));
        assert!(!a.shares(&c));
        assert_eq!(b.iter().map(GroupName::as_str).collect::<Vec<_>>(), ["ops", "staff"]);
        // Sets nobody holds any more do not pile up.
        for i in 0..10_000 {
            sets.groups(set(&[&format!("g{i}")]));
        }
        let table = sets.table.lock().unwrap();
        assert!(table.0.len() <= 2_048, "{} sets kept", table.0.len());
        assert!(table.0.contains(&a) && table.0.contains(&c), "held sets are kept");
    }

    #[test]
    fn provider_ids_are_shared() {
        let shared = Shared::default();
        let a = shared.provider("corp-ldap");
        let b = shared.provider(&String::from("corp-ldap"));
        let c = shared.provider("okta");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((&*a, &*c), ("corp-ldap", "okta"));
    }

    #[test]
    fn the_store_key_is_the_hex_of_the_cache_key() {
        let key = key_of_cookie("some cookie");
        let id = IdHash::of(&key);
        let expected: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&*id, expected);
        assert_eq!(key_of_hash(&id), key);
        assert_eq!(format!("{id}"), &*id);
        assert_eq!(format!("{id:?}"), format!("{:?}", &*id));
    }

    #[test]
    fn group_names_are_folded_sorted_unique_and_never_blank() {
        let names = group_names(&["Staff".into(), "".into(), "admins".into(), "staff".into()]);
        let names: Vec<&str> = names.iter().map(GroupName::as_str).collect();
        assert_eq!(names, ["admins", "staff"]);
    }

    // The tests below run against a real SQLite store in a temporary folder.

    async fn sessions(idle: u64, absolute: u64, cache_ttl_ms: u64) -> (Sessions, Arc<Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_sqlite(&dir.path().join("s.db")).await.unwrap());
        let s = Sessions::new(
            store.clone(),
            Duration::from_secs(idle),
            Duration::from_secs(absolute),
            Duration::from_millis(cache_ttl_ms),
            Duration::from_secs(30),
        );
        (s, store, dir)
    }

    fn carol(provider: &str) -> NewIdentity {
        NewIdentity {
            username: "Carol".into(),
            email: Some("carol@example.test".into()),
            display_name: Some("Carol C".into()),
            groups: vec!["Staff".into(), "".into(), "staff".into(), "admins".into()],
            admin: false,
            provider: provider.into(),
        }
    }

    #[tokio::test]
    async fn timeouts_end_a_session_at_their_second() {
        let (sessions, _store, _dir) = sessions(10, 100, 0).await;
        let s = Session::detached(Identity {
            user: UserName::new("carol"),
            groups: GroupSet::default(),
            admin: false,
        });
        let c = s.created_at;
        // Idle: counted from the last request.
        assert!(!sessions.expired(&s, c + 9));
        assert!(sessions.expired(&s, c + 10));
        // Absolute: counted from sign-in, however busy the session is.
        s.last_seen.store(c + 95, Ordering::Relaxed);
        assert!(!sessions.expired(&s, c + 99));
        assert!(sessions.expired(&s, c + 100));
    }

    #[tokio::test]
    async fn freshness_is_the_cache_ttl_and_a_resync_ends_it() {
        let (sessions, _store, _dir) = sessions(600, 3600, 1_000).await;
        let s = Session::detached(Identity {
            user: UserName::new("carol"),
            groups: GroupSet::default(),
            admin: false,
        });
        let v = s.verified_at.load(Ordering::Relaxed);
        assert!(sessions.is_fresh(&s, v));
        assert!(sessions.is_fresh(&s, v + 999));
        assert!(!sessions.is_fresh(&s, v + 1_000));
        sessions.resync_at.store(v, Ordering::Relaxed);
        assert!(
            !sessions.is_fresh(&s, v),
            "confirmed at the resync's millisecond: not after it"
        );
        sessions.resync_at.store(v - 1, Ordering::Relaxed);
        assert!(sessions.is_fresh(&s, v));
    }

    #[tokio::test]
    async fn a_session_is_found_by_its_cookie_only_until_it_ends() {
        let (sessions, store, _dir) = sessions(600, 3600, 60_000).await;
        let id = sessions.create(carol("local")).await.unwrap();
        let other = sessions.create(carol("local")).await.unwrap();
        assert!(well_formed(&id));
        assert_ne!(id, other, "a new id at every sign-in");
        let s = sessions.lookup(&id).await.expect("a new session is live");
        assert_eq!(s.identity.user.as_str(), "carol");
        let groups: Vec<&str> = s.identity.groups.iter().map(GroupName::as_str).collect();
        assert_eq!(groups, ["admins", "staff"]);
        assert_eq!(s.email.as_deref(), Some("carol@example.test"));
        assert_eq!(&*s.id_hash(), hash_id(&id));
        // The record is under the hash; the raw id is nowhere in it.
        let record = store.session(&hash_id(&id)).await.unwrap().unwrap();
        assert_eq!(record.username.as_str(), "carol");
        assert!(store.session(&id).await.unwrap().is_none());
        // Unknown and malformed cookies.
        assert!(sessions.lookup(&id[1..]).await.is_none());
        assert!(sessions.lookup(&format!("{}A", &id[1..])).await.is_none());
        assert!(sessions.lookup("").await.is_none());
        // Sign-out ends this one session, here and in the store.
        sessions.revoke(&id).await;
        assert!(sessions.lookup(&id).await.is_none());
        assert!(store.session(&hash_id(&id)).await.unwrap().is_none());
        assert!(sessions.lookup(&other).await.is_some());
        assert_eq!(sessions.revoke_user("CAROL").await, 1);
        assert!(sessions.lookup(&other).await.is_none());
    }

    #[tokio::test]
    async fn sessions_of_people_in_the_same_groups_share_one_copy_of_them() {
        let (sessions, _store, _dir) = sessions(600, 3600, 0).await;
        let carol = sessions.create(carol("sso")).await.unwrap();
        let mut dave = self::carol("sso");
        dave.username = "dave".into();
        dave.groups = vec!["admins".into(), "STAFF".into()];
        let dave = sessions.create(dave).await.unwrap();
        // Read back from the store (cache TTL 0), as after a restart.
        let (c, d) = (
            sessions.lookup(&carol).await.unwrap(),
            sessions.lookup(&dave).await.unwrap(),
        );
        assert_eq!(c.identity.user.as_str(), "carol");
        assert_eq!(d.identity.user.as_str(), "dave");
        assert!(c.identity.groups.shares(&d.identity.groups));
    }

    #[tokio::test]
    async fn an_expired_session_is_refused_and_deleted() {
        let (sessions, store, _dir) = sessions(600, 3600, 60_000).await;
        let id = sessions.create(carol("local")).await.unwrap();
        let s = sessions.lookup(&id).await.unwrap();
        s.last_seen.store(now() - 600, Ordering::Relaxed);
        assert!(sessions.lookup(&id).await.is_none(), "idle for the idle timeout");
        assert!(
            store.session(&hash_id(&id)).await.unwrap().is_none(),
            "deleted when found expired"
        );
        assert!(matches!(sessions.current(&hash_id(&id)).await, Current::Gone));
    }

    #[tokio::test]
    async fn a_revocation_elsewhere_is_seen_once_the_cached_copy_is_stale() {
        // Cache TTL 0: every lookup confirms with the store.
        let (sessions, store, _dir) = sessions(600, 3600, 0).await;
        let id = sessions.create(carol("sso")).await.unwrap();
        assert!(sessions.lookup(&id).await.is_some());
        store.delete_session(&hash_id(&id), &Actor::gateway()).await.unwrap();
        assert!(sessions.lookup(&id).await.is_none());
        assert!(matches!(sessions.current(&hash_id(&id)).await, Current::Gone));
        // A long TTL keeps the cached copy until the change feed says to forget it.
        let (sessions, store, _dir) = sessions_with_ttl(60_000).await;
        let id = sessions.create(carol("sso")).await.unwrap();
        store.delete_session(&hash_id(&id), &Actor::gateway()).await.unwrap();
        assert!(sessions.lookup(&id).await.is_some(), "cached, not yet confirmed again");
        sessions.forget(&hash_id(&id)).await;
        assert!(sessions.lookup(&id).await.is_none());
        // …or a resync asks for every cached session to be confirmed again.
        let id = sessions.create(carol("sso")).await.unwrap();
        store.delete_session(&hash_id(&id), &Actor::gateway()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        sessions.forget_all();
        assert!(sessions.lookup(&id).await.is_none());
    }

    async fn sessions_with_ttl(ms: u64) -> (Sessions, Arc<Store>, tempfile::TempDir) {
        sessions(600, 3600, ms).await
    }

    #[tokio::test]
    async fn a_local_accounts_session_follows_the_account() {
        let (sessions, store, _dir) = sessions(600, 3600, 0).await;
        let sessions = sessions.with_local_providers(vec!["local".into()]);
        let user = gatehouse_store::NewUser {
            username: UserName::new("carol"),
            password_hash: None,
            email: None,
            display_name: None,
            admin: false,
            groups: vec![GroupName::new("ops")],
        };
        store.create_user(&user, &Actor::gateway()).await.unwrap();
        let id = sessions.create(carol("local")).await.unwrap();
        let s = sessions.lookup(&id).await.unwrap();
        let groups: Vec<&str> = s.identity.groups.iter().map(GroupName::as_str).collect();
        assert_eq!(groups, ["ops"], "the account's groups, not those at sign-in");
        store
            .set_user_disabled(&UserName::new("carol"), true, &Actor::gateway())
            .await
            .unwrap();
        assert!(
            sessions.lookup(&id).await.is_none(),
            "a disabled account's session ends"
        );
        assert!(store.session(&hash_id(&id)).await.unwrap().is_none());
        // A session of another provider with the same name is not a local account's.
        let sso = sessions.create(carol("sso")).await.unwrap();
        assert!(sessions.lookup(&sso).await.is_some());
    }

    #[tokio::test]
    async fn current_does_not_refresh_the_idle_timer_and_lookup_does() {
        let (sessions, _store, _dir) = sessions(600, 3600, 60_000).await;
        let id = sessions.create(carol("sso")).await.unwrap();
        let s = sessions.lookup(&id).await.unwrap();
        s.last_seen.store(now() - 100, Ordering::Relaxed);
        match sessions.current(&hash_id(&id)).await {
            Current::Live(c) => assert!(c.last_seen() <= now() - 100),
            other => panic!("{other:?}"),
        }
        let s = sessions.lookup(&id).await.unwrap();
        assert!(s.last_seen() >= now() - 1);
        assert!(matches!(sessions.current(&hash_id("unknown")).await, Current::Gone));
    }

    fn record(id: &str, created_at: i64, last_seen: i64) -> SessionRecord {
        SessionRecord {
            id_hash: hash_id(id),
            username: UserName::new("carol"),
            email: None,
            display_name: None,
            groups: Vec::new(),
            admin: false,
            provider: "sso".into(),
            created_at,
            last_seen,
        }
    }

    #[tokio::test]
    async fn the_idle_timer_reaches_the_store_and_the_sweep_deletes_what_expired() {
        let (sessions, store, _dir) = sessions(8, 3600, 60_000).await;
        // Last used 5 s ago (by another replica, say): the store's timer is written at most
        // every idle/4 = 2 s, so this request writes it.
        let id = "a".repeat(43);
        store.insert_session(&record(&id, now() - 5, now() - 5)).await.unwrap();
        sessions.lookup(&id).await.expect("live");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.session(&hash_id(&id)).await.unwrap().unwrap().last_seen < now() - 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the idle timer never reached the store"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Written at most every idle/4 (at most 60 s): a session whose timer the store had
        // 30 s ago, under a 600 s idle timeout (every 60 s), is not written again yet. An
        // absence: the spawned write, if any, is given 300 ms to land.
        let (quiet, quiet_store, _quiet_dir) = sessions_with_ttl(60_000).await;
        let recent = "d".repeat(43);
        quiet_store
            .insert_session(&record(&recent, now() - 30, now() - 30))
            .await
            .unwrap();
        quiet.lookup(&recent).await.expect("live");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stored = quiet_store.session(&hash_id(&recent)).await.unwrap().unwrap().last_seen;
        assert!(stored <= now() - 29, "written again after 30 s of a 60 s interval");
        let idle = "b".repeat(43);
        store
            .insert_session(&record(&idle, now() - 20, now() - 20))
            .await
            .unwrap();
        let old = "c".repeat(43);
        store.insert_session(&record(&old, now() - 4000, now())).await.unwrap();
        sessions.sweep().await;
        assert!(store.session(&hash_id(&id)).await.unwrap().is_some(), "active: kept");
        assert!(
            store.session(&hash_id(&idle)).await.unwrap().is_none(),
            "idle past the timeout: swept"
        );
        assert!(
            store.session(&hash_id(&old)).await.unwrap().is_none(),
            "past the absolute timeout: swept"
        );
    }

    #[tokio::test]
    async fn while_the_store_is_down_cached_sessions_last_the_grace_and_ended_ones_stay_ended() {
        // Cache TTL 0: every lookup asks the store; outage grace 30 s.
        let (sessions, store, _dir) = sessions(600, 3600, 0).await;
        let kept = sessions.create(carol("sso")).await.unwrap();
        let ended = sessions.create(carol("sso")).await.unwrap();
        let stale = sessions.create(carol("sso")).await.unwrap();
        sessions
            .lookup(&stale)
            .await
            .unwrap()
            .verified_at
            .store(now_ms() - 31_000, Ordering::Relaxed);
        store.close().await;
        // Confirmed by the store within the grace: honoured, and the failure is remembered
        // (the next lookups do not wait for the store again).
        assert!(sessions.lookup(&kept).await.is_some());
        assert!(sessions.store_failed_at.load(Ordering::Relaxed) > 0);
        assert!(sessions.lookup(&kept).await.is_some());
        // An open stream's re-judgement hears "could not ask" (and keeps the stream).
        assert!(matches!(sessions.current(&hash_id(&kept)).await, Current::Unknown));
        // Last confirmed longer ago than the grace: refused.
        assert!(sessions.lookup(&stale).await.is_none());
        // Not cached here: nothing to honour.
        assert!(sessions.lookup(&"z".repeat(43)).await.is_none());
        assert!(matches!(
            sessions.current(&hash_id(&"z".repeat(43))).await,
            Current::Unknown
        ));
        // Signed out during the outage: refused at once, though the store still has it.
        sessions.revoke(&ended).await;
        assert!(sessions.is_ending(&key_of_cookie(&ended)));
        assert!(sessions.lookup(&ended).await.is_none());
        assert!(matches!(sessions.current(&hash_id(&ended)).await, Current::Gone));
        assert!(sessions.lookup(&kept).await.is_some(), "the others are not affected");
    }

    #[test]
    fn a_deletion_is_retried_doubling_the_wait_up_to_30_seconds() {
        let mut waits = vec![FIRST_RETRY_WAIT];
        for _ in 0..6 {
            waits.push(next_retry_wait(*waits.last().unwrap()));
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
    }

    /// A directory for re-checks: answers what the test sets, and notes when it was asked.
    #[derive(Debug)]
    struct Directory {
        answer: Mutex<Rechecked>,
        asked: Mutex<Vec<(i64, String)>>,
    }

    impl Directory {
        fn new(answer: Rechecked) -> Arc<Directory> {
            Arc::new(Directory {
                answer: Mutex::new(answer),
                asked: Mutex::new(Vec::new()),
            })
        }

        fn answer(&self, a: Rechecked) {
            *self.answer.lock().unwrap() = a;
        }

        fn asked(&self) -> Vec<(i64, String)> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Recheck for Directory {
        /// Sessions of `ldap` every second; no others.
        fn interval(&self, provider: &str) -> Option<Duration> {
            (provider == "ldap").then_some(Duration::from_secs(1))
        }

        fn recheck(
            &self,
            _id_hash: String,
            username: String,
            provider: String,
        ) -> futures_util::future::BoxFuture<'static, Rechecked> {
            assert_eq!(provider, "ldap", "only sessions of providers with an interval");
            self.asked.lock().unwrap().push((now(), username));
            let answer = self.answer.lock().unwrap().clone();
            Box::pin(async move { answer })
        }
    }

    /// Looks `ids` up every 50 ms for `secs` seconds (as requests would).
    async fn requests(sessions: &Sessions, ids: &[&str], secs: f64) {
        let until = std::time::Instant::now() + Duration::from_secs_f64(secs);
        while std::time::Instant::now() < until {
            for id in ids {
                sessions.lookup(id).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to 5 s for `cond`.
    async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cond().await {
            assert!(std::time::Instant::now() < deadline, "{what}: not within 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn group_list(s: &Session) -> Vec<&str> {
        s.identity.groups.iter().map(GroupName::as_str).collect()
    }

    #[tokio::test]
    async fn a_session_is_rechecked_once_per_interval_and_its_new_groups_apply() {
        // Idle 600 s: the idle timer reaches the store only every 60 s, far less often than
        // the 1 s re-check interval.
        let (sessions, store, _dir) = sessions(600, 3600, 60_000).await;
        let dir = Directory::new(Rechecked::Groups(vec!["Auditors".into(), "staff".into()]));
        let sessions = sessions.with_recheck(dir.clone());
        let ldap = sessions.create(carol("ldap")).await.unwrap();
        let local = sessions.create(carol("local")).await.unwrap();
        let created = sessions.lookup(&ldap).await.unwrap().created_at;

        requests(&sessions, &[&ldap, &local], 3.2).await;
        let asked = dir.asked();
        let seconds: Vec<i64> = asked.iter().map(|(t, _)| t - created).collect();
        // Once at each second after sign-in (a request arrives every 50 ms), never twice in
        // one: the new groups are stored with the re-check's time, so the copy read back
        // does not look overdue.
        assert!(seconds.len() >= 3, "re-checked at seconds {seconds:?} after sign-in");
        assert_eq!(seconds, (1..=seconds.len() as i64).collect::<Vec<_>>());
        assert!(asked.iter().all(|(_, user)| user == "carol"), "{asked:?}");

        // The directory's groups, in the cache and in the store; the other provider's
        // session is untouched.
        let now_groups = sessions.lookup(&ldap).await.unwrap();
        assert_eq!(group_list(&now_groups), ["auditors", "staff"]);
        let stored = store.session(&hash_id(&ldap)).await.unwrap().unwrap();
        assert_eq!(stored.groups, [GroupName::new("auditors"), GroupName::new("staff")]);
        assert_eq!(group_list(&sessions.lookup(&local).await.unwrap()), ["admins", "staff"]);
    }

    #[tokio::test]
    async fn a_recheck_that_cannot_ask_keeps_the_session_and_one_that_finds_it_gone_ends_it() {
        let (sessions, store, _dir) = sessions(600, 3600, 60_000).await;
        let dir = Directory::new(Rechecked::Unknown);
        let sessions = sessions.with_recheck(dir.clone());
        let ldap = sessions.create(carol("ldap")).await.unwrap();

        eventually("asked once the interval passed", async || {
            sessions.lookup(&ldap).await.is_some() && !dir.asked().is_empty()
        })
        .await;
        let kept = sessions
            .lookup(&ldap)
            .await
            .expect("the directory could not answer: kept");
        assert_eq!(group_list(&kept), ["admins", "staff"], "groups as they were");

        dir.answer(Rechecked::Gone);
        eventually(
            "the session ends after the directory says the account is gone",
            async || sessions.lookup(&ldap).await.is_none(),
        )
        .await;
        assert!(store.session(&hash_id(&ldap)).await.unwrap().is_none());
    }

    // The tests below reach a real PostgreSQL through a link the test breaks (the store
    // stopped answering, or hanging), and restores.

    use gatehouse_store::StoreOptions;
    use gatehouse_tests::cluster::PgDatabase;
    use gatehouse_tests::link::{Link, LinkState};

    /// `acquire_timeout`: how long the pool tries to connect (through a link that is down)
    /// before the store says "unavailable".
    async fn sessions_over_link(absolute: u64, acquire_timeout: u64) -> (Sessions, Arc<Store>, Link, PgDatabase) {
        let db = PgDatabase::create();
        let link = Link::to(db.server_addr()).await;
        let options = StoreOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(acquire_timeout),
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::connect_with(&db.url_via(link.addr), &options).await.unwrap());
        // Cache TTL 0: every lookup asks the store; outage grace 60 s.
        let sessions = Sessions::new(
            store.clone(),
            Duration::from_secs(600),
            Duration::from_secs(absolute),
            Duration::ZERO,
            Duration::from_secs(60),
        );
        (sessions, store, link, db)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_session_ended_while_the_store_is_down_is_deleted_once_it_is_back() {
        let (sessions, store, link, _db) = sessions_over_link(3600, 1).await;
        let id = sessions.create(carol("sso")).await.unwrap();
        let h = hash_id(&id);
        link.set(LinkState::Down).await;
        let down = std::time::Instant::now();
        sessions.revoke(&id).await;
        assert!(
            sessions.is_ending(&key_of_hash(&h)),
            "the deletion failed and is being retried"
        );
        // Down across the first retry (after 1 s, failing within the 1 s acquire timeout).
        tokio::time::sleep(Duration::from_millis(2_500).saturating_sub(down.elapsed())).await;
        assert!(sessions.is_ending(&key_of_hash(&h)));
        link.set(LinkState::Up).await;
        eventually("the retried deletion succeeds", async || {
            !sessions.is_ending(&key_of_hash(&h))
        })
        .await;
        assert!(store.session(&h).await.unwrap().is_none(), "deleted from the store");
        assert!(sessions.lookup(&id).await.is_none());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_sign_out_the_database_refuses_is_refused_here_and_retried() {
        let (sessions, store, _link, db) = sessions_over_link(3600, 1).await;
        let id = sessions.create(carol("sso")).await.unwrap();
        let h = hash_id(&id);
        // Not an outage: the database answers, with an error, to every deletion.
        db.sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'deletions refused'; END $$; \
             CREATE TRIGGER refuse BEFORE DELETE ON sessions FOR EACH ROW EXECUTE FUNCTION refuse();",
        );
        sessions.revoke(&id).await;
        assert!(store.session(&h).await.unwrap().is_some(), "the store still has it");
        assert!(sessions.lookup(&id).await.is_none(), "signed out here all the same");
        db.sql("DROP TRIGGER refuse ON sessions");
        eventually("the retried deletion succeeds", async || {
            store.session(&h).await.unwrap().is_none()
        })
        .await;
        eventually("and is no longer pending", async || {
            !sessions.is_ending(&key_of_hash(&h))
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_retried_deletion_stops_at_the_absolute_timeout() {
        // Absolute timeout 2 s: past it the session is dead whatever the store holds.
        let (sessions, store, link, _db) = sessions_over_link(2, 1).await;
        let id = sessions.create(carol("sso")).await.unwrap();
        let h = hash_id(&id);
        link.set(LinkState::Down).await;
        sessions.revoke(&id).await;
        assert!(sessions.is_ending(&key_of_hash(&h)));
        // Retries at about 1 s and 3 s; the second is past the timeout: given up, while the
        // store is still down.
        eventually("the retries give up", async || !sessions.is_ending(&key_of_hash(&h))).await;
        link.set(LinkState::Up).await;
        assert!(store.session(&h).await.unwrap().is_some(), "never deleted");
        assert!(sessions.lookup(&id).await.is_none(), "but expired");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_hanging_store_is_waited_for_once_per_3_seconds_and_never_for_uncached_sessions() {
        let (sessions, store, link, _db) = sessions_over_link(3600, 10).await;
        let cached = sessions.create(carol("sso")).await.unwrap();
        let elsewhere = sessions.create(carol("sso")).await.unwrap();
        // As if signed in on another replica: only in the store.
        sessions.forget(&hash_id(&elsewhere)).await;

        let timed = async |id: &str| {
            let started = std::time::Instant::now();
            let found = sessions.lookup(id).await.is_some();
            (found, started.elapsed())
        };
        link.set(LinkState::Stalled).await;
        // The first request waits for the store up to the check timeout, then is served
        // from the cache (within the outage grace).
        let (found, took) = timed(&cached).await;
        assert!(found);
        assert!(took >= STORE_CHECK_TIMEOUT - Duration::from_millis(100), "{took:?}");
        let failed = std::time::Instant::now();
        // The next ones within 3 s do not wait.
        let (found, took) = timed(&cached).await;
        assert!(found && took < Duration::from_millis(500), "{took:?}");
        // After 3 s the store is asked (and waited for) again.
        tokio::time::sleep(Duration::from_millis(3_100).saturating_sub(failed.elapsed())).await;
        let (found, took) = timed(&cached).await;
        assert!(found);
        assert!(took >= STORE_CHECK_TIMEOUT - Duration::from_millis(100), "{took:?}");

        // Within 3 s of that failure the store is back: a session not cached here is read
        // from it, not refused for the short-cut.
        link.set(LinkState::Up).await;
        let (found, took) = timed(&elsewhere).await;
        assert!(found, "read from the store ({took:?})");
        // The store answered, so the short-cut is over: a revocation made meanwhile on
        // another replica is seen at the next request, not up to 3 s later.
        store
            .delete_session(&hash_id(&cached), &Actor::gateway())
            .await
            .unwrap();
        assert!(sessions.lookup(&cached).await.is_none(), "revoked elsewhere");
    }
}
