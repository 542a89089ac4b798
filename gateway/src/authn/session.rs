//! Sessions: an opaque 256-bit random id in the cookie; the record (user, groups, provider,
//! times) in the store under the SHA-256 of the id, with a moka cache in front so the hot
//! path does no IO for a known session. Idle and absolute timeouts; revocation removes the
//! record and the cache entry; a new id at every login.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use gatehouse_policy::{GroupName, Identity, UserName};
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

/// A signed-in person, as the proxy and pages see them.
#[derive(Debug)]
pub struct Session {
    /// SHA-256 of the cookie value, hex: the store key. The raw id is never kept.
    pub id_hash: String,
    pub identity: Identity,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub provider: String,
    pub created_at: i64,
    /// A digest of everything an app is told about this session (user, groups, admin,
    /// email, name, provider), computed once when the session is loaded: what is prepared
    /// for it (`identity::Prepared`) is reused only while this is unchanged.
    pub fingerprint: u64,
    last_seen: AtomicI64,
    persisted_last_seen: AtomicI64,
    checked_at: AtomicI64,
}

impl Session {
    fn from_record(r: SessionRecord) -> Session {
        let mut s = Session {
            identity: Identity {
                user: r.username,
                groups: r.groups.into_iter().collect(),
                admin: r.admin,
            },
            id_hash: r.id_hash,
            email: r.email,
            display_name: r.display_name,
            provider: r.provider,
            created_at: r.created_at,
            last_seen: AtomicI64::new(r.last_seen),
            persisted_last_seen: AtomicI64::new(r.last_seen),
            checked_at: AtomicI64::new(r.last_seen),
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
            id_hash: String::new(),
            identity,
            email: None,
            display_name: None,
            provider: String::new(),
            created_at: t,
            last_seen: AtomicI64::new(t),
            persisted_last_seen: AtomicI64::new(t),
            checked_at: AtomicI64::new(t),
            fingerprint: 0,
        };
        s.fingerprint = s.digest();
        s
    }

    pub fn last_seen(&self) -> i64 {
        self.last_seen.load(Ordering::Relaxed)
    }
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

/// The session service.
#[derive(Debug)]
pub struct Sessions {
    recheck: Option<Arc<dyn Recheck>>,
    store: Arc<Store>,
    cache: moka::future::Cache<String, Arc<Session>>,
    idle: i64,
    absolute: i64,
    /// Provider ids of local accounts (see [`Sessions::with_local_providers`]).
    local_providers: Vec<String>,
}

/// Hex SHA-256 of a cookie value.
pub fn hash_id(id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(id.as_bytes());
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
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
    /// `cache_ttl` bounds how long another replica's revocation may go unseen here.
    pub fn new(store: Arc<Store>, idle: Duration, absolute: Duration, cache_ttl: Duration) -> Sessions {
        Sessions {
            recheck: None,
            local_providers: Vec::new(),
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
            idle: idle.as_secs().max(1) as i64,
            absolute: absolute.as_secs().max(1) as i64,
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
        self.cache
            .insert(record.id_hash.clone(), Arc::new(Session::from_record(record)))
            .await;
        Ok(id)
    }

    /// The live session for a cookie value, or `None` (unknown, malformed, expired or
    /// revoked). Expired sessions are deleted. Refreshes the idle timer.
    pub async fn lookup(&self, cookie_value: &str) -> Option<Arc<Session>> {
        if !well_formed(cookie_value) {
            return None;
        }
        let id_hash = hash_id(cookie_value);
        let session = match self.cache.get(&id_hash).await {
            Some(s) => s,
            None => match self.store.session(&id_hash).await {
                Ok(Some(r)) => {
                    let mut s = Session::from_record(r);
                    if self.local_providers.contains(&s.provider) && !self.with_current_account(&mut s).await {
                        self.end(&id_hash, &Actor::gateway()).await;
                        return None;
                    }
                    let s = Arc::new(s);
                    self.cache.insert(id_hash.clone(), s.clone()).await;
                    s
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "session store unavailable");
                    return None;
                }
            },
        };
        let t = now();
        if t - session.created_at >= self.absolute || t - session.last_seen() >= self.idle {
            self.revoke_hash(&id_hash).await;
            return None;
        }
        session.last_seen.store(t, Ordering::Relaxed);
        self.maybe_recheck(&session, &id_hash, t);
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
            let h = id_hash.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_session(&h, t).await {
                    tracing::warn!(error = %e, "could not record session activity");
                }
            });
        }
        Some(session)
    }

    fn maybe_recheck(&self, session: &Arc<Session>, id_hash: &str, t: i64) {
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
        let fut = r.recheck(
            id_hash.to_string(),
            session.identity.user.as_str().to_string(),
            session.provider.clone(),
        );
        let (store, cache, h) = (self.store.clone(), self.cache.clone(), id_hash.to_string());
        tokio::spawn(async move {
            match fut.await {
                Rechecked::Gone => {
                    tracing::info!("account gone from its directory; ending its session");
                    cache.invalidate(&h).await;
                    let _ = store.delete_session(&h, &Actor::gateway()).await;
                }
                Rechecked::Groups(groups) => {
                    if store.update_session_groups(&h, &group_names(&groups)).await.is_ok() {
                        cache.invalidate(&h).await;
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
            let id_hash = hash_id(cookie_value);
            let actor = match self.cache.get(&id_hash).await {
                Some(s) => Actor::user(&s.identity.user, None),
                None => Actor::gateway(),
            };
            self.end(&id_hash, &actor).await;
        }
    }

    /// Ends a session by its store key (expiry, single logout, re-check); takes effect on
    /// this replica at once.
    pub async fn revoke_hash(&self, id_hash: &str) {
        self.end(id_hash, &Actor::gateway()).await;
    }

    async fn end(&self, id_hash: &str, actor: &Actor) {
        self.cache.invalidate(id_hash).await;
        if let Err(e) = self.store.delete_session(id_hash, actor).await {
            tracing::error!(error = %e, "could not delete session");
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
                s.identity.groups = u.groups.into_iter().collect();
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
        self.cache.invalidate(id_hash).await;
    }

    /// Drops every cached session of `username` (the account changed).
    pub async fn forget_user(&self, username: &str) {
        let user = UserName::new(username);
        let stale: Vec<String> = self
            .cache
            .iter()
            .filter(|(_, s)| s.identity.user == user)
            .map(|(k, _)| (*k).clone())
            .collect();
        for k in stale {
            self.cache.invalidate(&k).await;
        }
    }

    /// Drops every cached session (change notifications may have been missed).
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// Deletes sessions past their timeouts from the store.
    pub async fn sweep(&self) {
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

    #[test]
    fn ids_are_checked_before_the_store() {
        assert!(well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJK-_0123"));
        assert!(!well_formed("short"));
        assert!(!well_formed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJK-_01'3"));
        assert!(!well_formed(&"a".repeat(44)));
        assert_eq!(hash_id("x").len(), 64);
    }
}
