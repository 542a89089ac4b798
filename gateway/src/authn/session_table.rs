//! The in-memory table of cached sessions ([`super::session::Sessions`]' cache): the
//! session, found by the 32-byte SHA-256 of its cookie value, which the session itself
//! holds. A slot is one pointer (the key is read from the session), sixteen shards each
//! behind a read-write lock keep the request path's reads from contending, and the hash is
//! the key's own first eight bytes: keys are SHA-256 digests, and only sessions the store
//! confirmed are ever inserted, so nobody can choose keys that collide.
//!
//! An entry is served for `ttl` after the store confirmed it (its `verified_at`); older
//! ones are dropped by [`SessionTable::sweep`] or replaced when the session is read again.
//! A shard holding more than its share of the capacity drops the eighth of its sessions
//! that were used longest ago (so the cost of making room is spread over many inserts).

use std::sync::{Arc, RwLock};

use hashbrown::HashTable;

use super::session::{Key, Session};

const SHARDS: usize = 16;

/// The cached sessions.
#[derive(Debug)]
pub(crate) struct SessionTable {
    shards: [RwLock<HashTable<Arc<Session>>>; SHARDS],
    /// Sessions one shard may hold.
    shard_capacity: usize,
    /// How long after its confirmation (ms) an entry is served.
    ttl_ms: i64,
}

/// The slot hash of a key: its first eight bytes (a digest's bytes are already uniform).
fn hash_of(key: &Key) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_le_bytes(first)
}

/// The shard of a key: from its last byte, independent of the slot hash.
fn shard_of(key: &Key) -> usize {
    usize::from(key[31]) % SHARDS
}

impl SessionTable {
    /// A table of about `capacity` sessions (each shard may hold an eighth more than its
    /// share, so that `capacity` sessions spread by their digests fit), each served for
    /// `ttl_ms` after its confirmation.
    pub(crate) fn new(capacity: usize, ttl_ms: i64) -> SessionTable {
        let share = capacity.div_ceil(SHARDS);
        SessionTable {
            shards: std::array::from_fn(|_| RwLock::new(HashTable::new())),
            shard_capacity: (share + share / 8).max(8),
            ttl_ms,
        }
    }

    fn live(&self, s: &Session, ms: i64) -> bool {
        ms - s.verified_at() < self.ttl_ms
    }

    /// The session cached under `key`, if it was confirmed within the time to live.
    pub(crate) fn get(&self, key: &Key, ms: i64) -> Option<Arc<Session>> {
        let shard = self.shards[shard_of(key)].read().unwrap_or_else(|e| e.into_inner());
        shard
            .find(hash_of(key), |s| s.key == *key)
            .filter(|s| self.live(s, ms))
            .cloned()
    }

    /// Caches `session` under its key, replacing what was there.
    pub(crate) fn insert(&self, session: Arc<Session>, ms: i64) {
        let key = session.key;
        let hash = hash_of(&key);
        let mut shard = self.shards[shard_of(&key)].write().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut slot) = shard.find_entry(hash, |s| s.key == key) {
            *slot.get_mut() = session;
            return;
        }
        if shard.len() >= self.shard_capacity {
            self.make_room(&mut shard, ms);
        }
        shard.insert_unique(hash, session, |s| hash_of(&s.key));
    }

    /// Drops the expired entries of a full shard and, if that was not enough, the eighth
    /// of its sessions used longest ago.
    fn make_room(&self, shard: &mut HashTable<Arc<Session>>, ms: i64) {
        shard.retain(|s| self.live(s, ms));
        if shard.len() < self.shard_capacity {
            return;
        }
        let mut seen: Vec<i64> = shard.iter().map(|s| s.last_seen()).collect();
        let cut = (seen.len() / 8).max(1);
        let (_, oldest_kept, _) = seen.select_nth_unstable(cut);
        let oldest_kept = *oldest_kept;
        let mut to_drop = cut;
        shard.retain(|s| {
            // Sessions seen exactly at the cut are dropped only until `cut` are gone.
            if s.last_seen() < oldest_kept || (s.last_seen() == oldest_kept && to_drop > 0) {
                to_drop = to_drop.saturating_sub(1);
                return false;
            }
            true
        });
    }

    /// Drops the session cached under `key`.
    pub(crate) fn invalidate(&self, key: &Key) {
        let mut shard = self.shards[shard_of(key)].write().unwrap_or_else(|e| e.into_inner());
        if let Ok(slot) = shard.find_entry(hash_of(key), |s| s.key == *key) {
            slot.remove();
        }
    }

    /// The keys of the cached sessions that `matches`.
    pub(crate) fn keys_where(&self, matches: impl Fn(&Session) -> bool) -> Vec<Key> {
        let mut keys = Vec::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            keys.extend(shard.iter().filter(|s| matches(s)).map(|s| s.key));
        }
        keys
    }

    /// Drops every entry past its time to live, and gives back the room they took.
    pub(crate) fn sweep(&self, ms: i64) {
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(|e| e.into_inner());
            shard.retain(|s| self.live(s, ms));
            shard.shrink_to_fit(|s| hash_of(&s.key));
        }
    }

    /// How many sessions are cached (expired ones included until swept).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32, shard: u8) -> Key {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_le_bytes());
        k[31] = shard;
        k
    }

    fn session(k: Key, last_seen: i64, verified_at: i64) -> Arc<Session> {
        Arc::new(Session::for_table(k, last_seen, verified_at))
    }

    #[test]
    fn sessions_are_found_by_their_key_until_invalidated() {
        let t = SessionTable::new(1_000, 60_000);
        for n in 0..100 {
            t.insert(session(key(n, n as u8), 0, 1_000), 1_000);
        }
        assert_eq!(t.len(), 100);
        let found = t.get(&key(7, 7), 1_000).expect("cached");
        assert_eq!(found.key, key(7, 7));
        assert!(t.get(&key(7, 8), 1_000).is_none(), "another shard, same hash");
        assert!(t.get(&key(100, 7), 1_000).is_none());
        // Same first eight bytes (slot hash) but another key: not confused.
        let mut twin = key(7, 7);
        twin[20] = 1;
        assert!(t.get(&twin, 1_000).is_none());
        t.insert(session(twin, 0, 1_000), 1_000);
        assert_eq!(t.get(&twin, 1_000).unwrap().key, twin);
        assert_eq!(t.get(&key(7, 7), 1_000).unwrap().key, key(7, 7));

        // A newer copy replaces the old one.
        t.insert(session(key(7, 7), 5, 2_000), 2_000);
        assert_eq!(t.get(&key(7, 7), 2_000).unwrap().last_seen(), 5);
        assert_eq!(t.len(), 101);

        t.invalidate(&key(7, 7));
        t.invalidate(&key(999, 7));
        assert!(t.get(&key(7, 7), 2_000).is_none());
        assert!(t.get(&twin, 2_000).is_some());
        assert_eq!(t.len(), 100);
        let mut odd = t.keys_where(|s| s.key[0] % 2 == 1);
        odd.sort();
        assert_eq!(odd.len(), 50);
        assert!(odd.iter().all(|k| k[0] % 2 == 1));
    }

    #[test]
    fn entries_are_served_for_their_time_to_live_and_swept_after() {
        let t = SessionTable::new(1_000, 60_000);
        t.insert(session(key(1, 1), 0, 10_000), 10_000);
        t.insert(session(key(2, 1), 0, 40_000), 40_000);
        assert!(t.get(&key(1, 1), 69_999).is_some());
        assert!(t.get(&key(1, 1), 70_000).is_none(), "60 s after its confirmation");
        assert!(t.get(&key(2, 1), 70_000).is_some());
        assert_eq!(t.len(), 2, "kept until swept");
        t.sweep(70_000);
        assert_eq!(t.len(), 1);
        assert!(t.get(&key(2, 1), 70_000).is_some());
    }

    #[test]
    fn a_full_shard_drops_expired_entries_then_the_least_recently_used() {
        // 16 shards of 8 + 1 each: fill shard 3 only.
        let t = SessionTable::new(128, 60_000);
        let cap = t.shard_capacity;
        assert_eq!(cap, 9);
        for n in 0..cap as u32 {
            // Session n was last used at second n; the first two have expired.
            let verified = if n < 2 { 0 } else { 100_000 };
            t.insert(session(key(n, 3), i64::from(n), verified), 100_000);
        }
        assert_eq!(t.len(), cap);
        t.insert(session(key(100, 3), 100, 100_000), 100_000);
        assert_eq!(t.len(), cap - 1, "the two expired ones made room");
        assert!(t.get(&key(2, 3), 100_000).is_some());

        t.insert(session(key(101, 3), 101, 100_000), 100_000);
        assert_eq!(t.len(), cap);
        // Full of live sessions: the least recently used one goes (an eighth of 9 is 1).
        t.insert(session(key(102, 3), 102, 100_000), 100_000);
        assert_eq!(t.len(), cap);
        assert!(t.get(&key(2, 3), 100_000).is_none(), "used longest ago");
        for n in [3, 4, 8, 100, 101, 102] {
            assert!(t.get(&key(n, 3), 100_000).is_some(), "session {n}");
        }
        // Other shards are not affected by this one being full.
        t.insert(session(key(0, 4), 0, 100_000), 100_000);
        assert!(t.get(&key(0, 4), 100_000).is_some());
    }

    #[test]
    fn a_large_shard_drops_an_eighth_of_its_sessions_at_once() {
        let t = SessionTable::new(16 * 64, 60_000);
        let cap = t.shard_capacity;
        assert_eq!(cap, 72);
        // Every session seen at the same second: ties are broken, exactly an eighth goes.
        for n in 0..cap as u32 {
            t.insert(session(key(n, 0), 50, 1_000), 1_000);
        }
        t.insert(session(key(1_000, 0), 60, 1_000), 1_000);
        assert_eq!(t.len(), cap - cap / 8 + 1);
        assert!(t.get(&key(1_000, 0), 1_000).is_some());
    }
}
