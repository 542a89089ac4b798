//! Local accounts: argon2id hashes in the store. Unknown user and wrong password give the
//! same answer after the same work (a dummy hash is verified for unknown users); failures
//! are rate-limited per user and per client address. Verification runs on the blocking
//! pool, on all CPUs but one at most, in argon2 working memory that is kept between
//! sign-ins ([`WorkMemory`]) and given back after a quiet minute; new hashes use the same
//! memory.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use gatehouse_policy::UserName;
use gatehouse_store::{Store, StoreError};
use subtle::ConstantTimeEq;

use super::session::{now, NewIdentity};
use crate::GatewayError;

/// Hashes a password with argon2id (default parameters) and a fresh random salt, as a PHC
/// string, in this process's shared [`WorkMemory`]. CPU-heavy: call it off the async workers.
pub fn hash_password(password: &str) -> Result<String, GatewayError> {
    work_memory()
        .hash(password)
        .map_err(|e| GatewayError::Io(format!("cannot hash password: {e}")))
}

/// Whether `password` matches the PHC string `hash` (any argon2 variant and parameters).
/// A malformed hash never matches. Runs in this process's shared [`WorkMemory`]; CPU-heavy:
/// call it on the blocking pool ([`verify`] does).
pub fn verify_password(password: &str, hash: &str) -> bool {
    work_memory().verify(password, hash)
}

/// [`verify_password`] on the blocking pool, when one of the [`work_memory`]'s turns is free:
/// at most one hash per CPU but one runs at once, so a burst of sign-ins queues here instead
/// of each taking 19 MiB and a thread of its own, and leaves a CPU to proxied requests.
pub async fn verify(password: String, hash: String) -> bool {
    verify_in(work_memory(), password, hash).await
}

async fn verify_in(memory: &'static WorkMemory, password: String, hash: String) -> bool {
    let Ok(_turn) = memory.turns.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || memory.verify(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Gives back working memory unused for a minute; the gateway calls it periodically.
pub fn release_idle_memory() {
    work_memory().release_idle(WorkMemory::KEEP_IDLE);
}

/// Gives back all kept working memory now: after start-up's hashing (the demo's accounts,
/// the first admin), which is no rush of sign-ins to keep it for.
pub fn release_memory() {
    work_memory().release_idle(Duration::ZERO);
}

/// This process's argon2 working memory.
fn work_memory() -> &'static WorkMemory {
    static MEMORY: OnceLock<WorkMemory> = OnceLock::new();
    MEMORY.get_or_init(|| {
        WorkMemory::new(hashing_turns(
            std::thread::available_parallelism().map_or(2, usize::from),
        ))
    })
}

/// How many password hashes may run at once on `cpus` CPUs: all but one, so that sign-ins
/// never take every CPU from proxied requests (BENCHMARKS.md: p99 while sign-ins run).
fn hashing_turns(cpus: usize) -> usize {
    cpus.saturating_sub(1).max(1)
}

/// argon2's working memory (19 MiB with the default parameters), kept between
/// verifications. Allocated afresh each time, it is fresh pages to fault in wherever the
/// allocator has given freed ones back (BENCHMARKS.md: +14 ms of CPU per sign-in with
/// mimalloc purging at once); kept for ever, an idle gateway holds it. So buffers are reused
/// while sign-ins come and released after [`Self::KEEP_IDLE`] without use. `turns` bounds how many hashes
/// run at once, and with it how many buffers exist.
#[derive(Debug)]
struct WorkMemory {
    turns: tokio::sync::Semaphore,
    free: Mutex<Vec<(Vec<Block>, Instant)>>,
}

impl WorkMemory {
    /// How long an unused buffer is kept.
    const KEEP_IDLE: Duration = Duration::from_secs(60);
    /// Buffers larger than this (hashes with unusual parameters) are not kept.
    const MAX_KEPT_BLOCKS: usize = 64 * 1024;

    fn new(turns: usize) -> Self {
        WorkMemory {
            turns: tokio::sync::Semaphore::new(turns.max(1)),
            free: Mutex::new(Vec::new()),
        }
    }

    /// Whether `password` matches the PHC string `hash`, computed in a kept buffer.
    fn verify(&self, password: &str, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
            return false;
        };
        let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let blocks = params.block_count();
        let mut memory = self.take(blocks);
        let mut out = vec![0u8; expected.len()];
        let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..blocks],
        );
        self.give(memory);
        hashed.is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
    }

    /// A new argon2id PHC string of `password` (default parameters, random 16-byte salt),
    /// computed in a kept buffer, like verification: hashing at start-up (the demo's
    /// accounts, the first admin) and in the admin UI uses the one buffer too.
    fn hash(&self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let params = Params::default();
        let salt_bytes =
            argon2::password_hash::try_generate_salt().map_err(|_| argon2::password_hash::Error::Crypto)?;
        let salt = Salt::new(&salt_bytes)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let blocks = params.block_count();
        let mut memory = self.take(blocks);
        let hashed = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()).hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            &mut memory[..blocks],
        );
        self.give(memory);
        hashed?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(Output::new(&out)?),
        };
        Ok(phc.to_string())
    }

    /// A buffer of at least `blocks` blocks: a kept one if one is large enough.
    fn take(&self, blocks: usize) -> Vec<Block> {
        let kept = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.iter()
                .position(|(b, _)| b.len() >= blocks)
                .map(|i| free.swap_remove(i).0)
        };
        kept.unwrap_or_else(|| vec![Block::new(); blocks])
    }

    /// Keeps `memory` for the next verification (unless it is unusually large).
    fn give(&self, memory: Vec<Block>) {
        if memory.len() <= Self::MAX_KEPT_BLOCKS {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.push((memory, Instant::now()));
        }
    }

    /// Drops the buffers unused for `idle` or longer.
    fn release_idle(&self, idle: Duration) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.retain(|(_, since)| since.elapsed() < idle);
    }

    /// How many buffers are kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A PHC string verified for unknown users so that they cost the same as known ones: the
/// parameters, salt length and output length of [`hash_password`]'s hashes, with a random
/// salt and a random output. Verifying it runs the whole argon2 computation; no password
/// matches it but by chance (2^-256), and a match would not sign anyone in (there is no
/// account). Made without hashing anything, so start-up spends no CPU or 19 MiB on it.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = rand::random::<[u8; 16]>();
        let output = rand::random::<[u8; Params::DEFAULT_OUTPUT_LEN]>();
        let phc = || -> Result<String, argon2::password_hash::Error> {
            Ok(PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&Params::default())?,
                salt: Some(Salt::new(&salt)?),
                hash: Some(Output::new(&output)?),
            }
            .to_string())
        };
        phc().unwrap_or_default()
    })
}

/// Makes the dummy hash now (cheap: nothing is hashed).
pub fn warm_up() {
    let _ = dummy_hash();
}

/// Why a password sign-in failed. `Invalid` covers unknown user, wrong password and a
/// disabled account alike: the page must not tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    Invalid,
    RateLimited { retry_after: Duration },
    Unavailable,
}

/// Failure counters per user and per client address over a window, kept in the store so
/// that every replica counts the same failures (a balancer spreading guesses over replicas
/// gains nothing).
#[derive(Debug)]
pub struct RateLimit {
    store: Arc<Store>,
    window: Duration,
    per_user: u32,
    per_client: u32,
}

impl RateLimit {
    pub fn new(store: Arc<Store>, window: Duration, per_user: u32, per_client: u32) -> RateLimit {
        RateLimit {
            store,
            window,
            per_user,
            per_client,
        }
    }

    /// The counters' keys. The user's is the normalised name ([`UserName::new`]), so
    /// `' carol'`, `'CAROL\u{a0}'` and `'ｃａｒｏｌ'` share carol's counter: the spelling
    /// authentication and sessions use too. Callers parse typed names with
    /// [`UserName::parse`], which bounds their length, so keys stay small.
    fn keys(user: &UserName, client: Option<IpAddr>) -> (String, Option<String>) {
        (format!("u:{user}"), client.map(|c| format!("c:{c}")))
    }

    /// Whether another attempt is allowed now. `Err`: the store cannot say.
    pub async fn allowed(&self, user: &UserName, client: Option<IpAddr>) -> Result<bool, StoreError> {
        let (u, c) = Self::keys(user, client);
        let since = now() - self.window.as_secs() as i64;
        if self.store.failed_signins_since(&u, since).await? >= i64::from(self.per_user) {
            return Ok(false);
        }
        match c {
            Some(c) => Ok(self.store.failed_signins_since(&c, since).await? < i64::from(self.per_client)),
            None => Ok(true),
        }
    }

    /// Counts a failed sign-in for the user and the client address.
    pub async fn record_failure(&self, user: &UserName, client: Option<IpAddr>) {
        let (u, c) = Self::keys(user, client);
        let at = now();
        for k in std::iter::once(u).chain(c) {
            if let Err(e) = self.store.record_failed_signin(&k, at).await {
                tracing::warn!(error = %e, "could not count a failed sign-in");
            }
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Checks a user name (already normalised: [`UserName::parse`]) and password against the
/// local accounts. Rate limits are the caller's (they span every password provider).
pub async fn authenticate(
    store: &Store,
    provider_id: &str,
    username: &UserName,
    password: &str,
) -> Result<NewIdentity, LoginFailure> {
    let user = if username.as_str().is_empty() {
        None
    } else {
        store.user(username).await.map_err(|e| {
            tracing::error!(error = %e, "store unavailable during sign-in");
            LoginFailure::Unavailable
        })?
    };
    let hash = user
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_string());
    let matched = verify(password.to_string(), hash).await && !password.is_empty();
    match user {
        Some(u) if matched && !u.disabled && u.password_hash.is_some() => Ok(NewIdentity {
            username: u.username.to_string(),
            email: u.email,
            display_name: u.display_name,
            groups: u.groups.iter().map(ToString::to_string).collect(),
            admin: u.admin,
            provider: provider_id.to_string(),
        }),
        _ => Err(LoginFailure::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    #[test]
    fn hashes_verify_and_garbage_never_matches() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("", &h));
    }

    /// New hashes are argon2id with the default parameters and a fresh salt, computed in the
    /// kept buffer, and the argon2 crate's own verifier agrees with them.
    #[test]
    fn hashing_uses_kept_memory_and_a_fresh_salt() {
        use argon2::password_hash::PasswordVerifier;
        let memory = WorkMemory::new(1);
        let a = memory.hash("correct horse").unwrap();
        let b = memory.hash("correct horse").unwrap();
        assert_ne!(a, b, "each hash has its own salt");
        for h in [&a, &b] {
            assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
            let parsed = PasswordHash::new(h).unwrap();
            assert_eq!(parsed.salt.unwrap().len(), 16);
            assert_eq!(parsed.hash.unwrap().len(), 32);
            assert!(Argon2::default().verify_password(b"correct horse", h.as_str()).is_ok());
            assert!(Argon2::default().verify_password(b"correct hors", h.as_str()).is_err());
            assert!(memory.verify("correct horse", h));
        }
        assert_eq!(memory.kept(), 1, "hashing and verifying share one buffer");
    }

    /// The unknown users' dummy hash costs what a real one costs: same algorithm, version,
    /// parameters, salt and output lengths; nothing matches it.
    #[test]
    fn the_dummy_hash_is_shaped_like_a_real_one() {
        let real = hash_password("correct horse").unwrap();
        let (real, dummy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(dummy_hash()).unwrap(),
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.salt.unwrap().len(), real.salt.unwrap().len());
        assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
        assert_eq!(
            Params::try_from(&dummy).unwrap().block_count(),
            Params::default().block_count()
        );
        for password in ["", "correct horse", "admin"] {
            assert!(!verify_password(password, dummy_hash()));
        }
    }

    /// Hashes of other variants and parameters verify too, in buffers kept from earlier
    /// verifications (larger or smaller than they need), and a kept buffer's old contents
    /// change no answer.
    #[test]
    fn kept_memory_verifies_any_parameters() {
        let memory = WorkMemory::new(2);
        let small = Params::new(64, 1, 1, Some(16)).unwrap();
        let variants = [
            (Algorithm::Argon2id, Version::V0x13, Params::default()),
            (Algorithm::Argon2i, Version::V0x13, small.clone()),
            (
                Algorithm::Argon2d,
                Version::V0x10,
                Params::new(256, 3, 2, None).unwrap(),
            ),
            (Algorithm::Argon2id, Version::V0x13, small),
        ];
        let hashes: Vec<String> = variants
            .into_iter()
            .map(|(a, v, p)| {
                Argon2::new(a, v, p)
                    .hash_password_with_salt(b"correct horse", b"0123456789abcdef")
                    .unwrap()
                    .to_string()
            })
            .collect();
        for round in 0..2 {
            for h in &hashes {
                assert!(memory.verify("correct horse", h), "round {round}: {h}");
                assert!(!memory.verify("correct hors", h), "round {round}: {h}");
                assert_eq!(memory.kept(), 1, "one buffer, reused (and grown once)");
            }
        }
        for broken in [
            "",
            "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg",
            "$argon2id$v=19$m=64,t=1,p=1",
            "$argon2id$v=99$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA",
            "$scrypt$ln=16,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=1,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!memory.verify("correct horse", broken), "{broken:?}");
        }
        assert_eq!(memory.kept(), 1, "refused hashes take no memory");
    }

    /// Buffers are kept between verifications and released once idle; oversized ones are
    /// not kept.
    #[test]
    fn kept_memory_is_released_when_idle() {
        let memory = WorkMemory::new(1);
        memory.give(memory.take(1024));
        memory.give(vec![Block::new(); 8]);
        assert_eq!(memory.kept(), 2);
        assert_eq!(memory.take(512).len(), 1024, "the large one serves a smaller need");
        memory.give(vec![Block::new(); WorkMemory::MAX_KEPT_BLOCKS + 1]);
        assert_eq!(memory.kept(), 1, "oversized buffers are dropped");
        memory.release_idle(Duration::from_secs(3600));
        assert_eq!(memory.kept(), 1, "not idle long enough");
        memory.release_idle(Duration::ZERO);
        assert_eq!(memory.kept(), 0);
    }

    #[test]
    fn hashing_leaves_a_cpu_to_the_proxy() {
        assert_eq!(hashing_turns(0), 1);
        assert_eq!(hashing_turns(1), 1);
        assert_eq!(hashing_turns(2), 1);
        assert_eq!(hashing_turns(8), 7);
    }

    /// At most `turns` verifications run at once; the others wait for a turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifications_take_turns() {
        let h = hash_password("correct horse").unwrap();
        let turns = 2;
        let memory: &'static WorkMemory = Box::leak(Box::new(WorkMemory::new(turns)));
        let all: Vec<_> = (0..turns + 3)
            .map(|_| tokio::spawn(verify_in(memory, "correct horse".into(), h.clone())))
            .collect();
        for v in all {
            assert!(v.await.unwrap());
        }
        assert!(memory.kept() <= turns, "no more buffers than turns: {}", memory.kept());
    }

    fn name(n: &str) -> UserName {
        UserName::new(n)
    }

    async fn limits(per_user: u32, per_client: u32) -> (RateLimit, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        (
            RateLimit::new(Arc::new(store), Duration::from_secs(60), per_user, per_client),
            dir,
        )
    }

    #[tokio::test]
    async fn limits_per_user_and_per_client() {
        let (l, _dir) = limits(3, 5).await;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allowed(&name("Alice"), Some(ip)).await.unwrap());
            l.record_failure(&name("alice"), Some(ip)).await;
        }
        assert!(
            !l.allowed(&name("ALICE"), None).await.unwrap(),
            "per user, case-insensitive"
        );
        assert!(l.allowed(&name("bob"), Some(ip)).await.unwrap());
        l.record_failure(&name("bob"), Some(ip)).await;
        l.record_failure(&name("carol"), Some(ip)).await;
        assert!(!l.allowed(&name("dave"), Some(ip)).await.unwrap(), "per client address");
        assert!(l
            .allowed(&name("dave"), Some("192.0.2.2".parse().unwrap()))
            .await
            .unwrap());
    }

    /// Failures spread over spellings of one name lock every spelling.
    #[tokio::test]
    async fn spellings_of_one_name_share_one_counter() {
        let variants = [
            "carol",
            " carol",
            "carol ",
            "Carol",
            "\u{a0}carol",
            "carol\u{3000}",
            "ＣＡＲＯＬ",
            "car\u{200b}ol",
            "\tCAROL\u{202f}",
        ];
        let (l, _dir) = limits(variants.len() as u32, 1000).await;
        for v in variants {
            assert!(l.allowed(&name(v), None).await.unwrap(), "{v:?}");
            l.record_failure(&name(v), None).await;
        }
        for v in variants {
            assert!(!l.allowed(&name(v), None).await.unwrap(), "{v:?} is still allowed");
        }
        assert!(l.allowed(&name("caroline"), None).await.unwrap());
    }
}
