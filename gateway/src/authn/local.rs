//! Local accounts: argon2id hashes in the store. Unknown user and wrong password give the
//! same answer after the same work (a dummy hash is verified for unknown users); failures
//! are rate-limited per user and per client address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use gatehouse_policy::UserName;
use gatehouse_store::Store;

use super::session::NewIdentity;
use crate::GatewayError;

/// Hashes a password with argon2id (default parameters), as a PHC string.
pub fn hash_password(password: &str) -> Result<String, GatewayError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| GatewayError::Io(format!("cannot hash password: {e}")))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A hash of a random password, verified for unknown users so that they cost the same.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&format!("{:x}", rand::random::<u128>())).unwrap_or_default())
}

/// Computes the dummy hash now, so the first unknown-user sign-in is not slower than the
/// others.
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

/// Failure counters per user and per client address over a window.
#[derive(Debug)]
pub struct RateLimit {
    failures: moka::sync::Cache<String, Arc<AtomicU32>>,
    window: Duration,
    per_user: u32,
    per_client: u32,
}

impl RateLimit {
    pub fn new(window: Duration, per_user: u32, per_client: u32) -> RateLimit {
        RateLimit {
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
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

    /// Whether another attempt is allowed now.
    pub fn allowed(&self, user: &UserName, client: Option<IpAddr>) -> bool {
        let (u, c) = Self::keys(user, client);
        let count = |k: &str| self.failures.get(k).map(|n| n.load(Ordering::Relaxed)).unwrap_or(0);
        count(&u) < self.per_user && c.is_none_or(|c| count(&c) < self.per_client)
    }

    pub fn record_failure(&self, user: &UserName, client: Option<IpAddr>) {
        let (u, c) = Self::keys(user, client);
        for k in std::iter::once(u).chain(c) {
            self.failures
                .get_with(k, || Arc::new(AtomicU32::new(0)))
                .fetch_add(1, Ordering::Relaxed);
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
    let pw = password.to_string();
    let matched = tokio::task::spawn_blocking(move || !pw.is_empty() && verify_password(&pw, &hash))
        .await
        .unwrap_or(false);
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

    #[test]
    fn hashes_verify_and_garbage_never_matches() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(!verify_password("", &h));
    }

    fn name(n: &str) -> UserName {
        UserName::new(n)
    }

    #[test]
    fn limits_per_user_and_per_client() {
        let l = RateLimit::new(Duration::from_secs(60), 3, 5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.allowed(&name("Alice"), Some(ip)));
            l.record_failure(&name("alice"), Some(ip));
        }
        assert!(!l.allowed(&name("ALICE"), None), "per user, case-insensitive");
        assert!(l.allowed(&name("bob"), Some(ip)));
        l.record_failure(&name("bob"), Some(ip));
        l.record_failure(&name("carol"), Some(ip));
        assert!(!l.allowed(&name("dave"), Some(ip)), "per client address");
        assert!(l.allowed(&name("dave"), Some("192.0.2.2".parse().unwrap())));
    }

    /// Failures spread over spellings of one name lock every spelling.
    #[test]
    fn spellings_of_one_name_share_one_counter() {
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
        let l = RateLimit::new(Duration::from_secs(60), variants.len() as u32, 1000);
        for v in variants {
            assert!(l.allowed(&name(v), None), "{v:?}");
            l.record_failure(&name(v), None);
        }
        for v in variants {
            assert!(!l.allowed(&name(v), None), "{v:?} is still allowed");
        }
        assert!(l.allowed(&name("caroline"), None));
    }
}
