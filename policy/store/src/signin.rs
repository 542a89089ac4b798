//! Sign-in state every replica shares, so that any of them can finish a sign-in another
//! started: SSO login attempts in flight (`login_attempts`), assertion ids already used
//! (`seen_assertions`), and failed sign-ins for rate limits (`failed_signins`). Each entry
//! expires; [`Store::sweep_expired`] removes what has.

use std::time::Duration;

use sqlx::Any;

use crate::error::{db, db_unique};
use crate::{get, Store, StoreError};

/// How long [`Store::sweep_expired`] keeps failed sign-ins: rate-limit windows longer than
/// this see fewer failures than there were.
pub const FAILED_SIGNIN_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// An SSO sign-in in flight, as [`Store::take_login_attempt`] hands it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The provider id that started it.
    pub provider: String,
    /// What the provider saved (JSON text: state, PKCE verifier, nonce, return URL, …).
    pub data: String,
}

impl Store {
    /// Saves an SSO sign-in in flight under `key` (a random value the browser brings back,
    /// e.g. OIDC `state` or SAML `RelayState`) until `expires_at` (epoch seconds).
    /// `Err(Conflict)`: the key is in use.
    pub async fn put_login_attempt(
        &self,
        key: &str,
        provider: &str,
        data: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO login_attempts (key, provider, data, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(key.to_owned())
            .bind(provider.to_owned())
            .bind(data.to_owned())
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(db_unique("saving login attempt", || "login attempt".to_owned()))?;
        Ok(())
    }

    /// Takes the sign-in saved under `key`: it is deleted in the same statement, so of
    /// several concurrent calls (on any replica) exactly one gets it. `None`: no such key,
    /// already taken, or expired at `now` (an expired entry is deleted too).
    pub async fn take_login_attempt(&self, key: &str, now: i64) -> Result<Option<LoginAttempt>, StoreError> {
        let row = sqlx::query("DELETE FROM login_attempts WHERE key = $1 RETURNING provider, data, expires_at")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("taking login attempt"))?;
        let Some(row) = row else { return Ok(None) };
        if get::<i64>(&row, "expires_at")? <= now {
            return Ok(None);
        }
        Ok(Some(LoginAttempt {
            provider: get(&row, "provider")?,
            data: get(&row, "data")?,
        }))
    }

    /// Records that assertion `id` was used, remembered until `expires_at`. True only for
    /// the first sighting: false if it was seen before and has not expired at `now` (a
    /// replay). Atomic across replicas: of concurrent calls with one id exactly one is true.
    pub async fn first_sighting(&self, id: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO seen_assertions (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE \
             SET expires_at = excluded.expires_at WHERE seen_assertions.expires_at <= $3",
        )
        .bind(id.to_owned())
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("recording assertion id"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Counts a failed sign-in for `key` (e.g. `user:alice`, `ip:192.0.2.1`) at `at`.
    pub async fn record_failed_signin(&self, key: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO failed_signins (key, at) VALUES ($1, $2)")
            .bind(key.to_owned())
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db("recording failed sign-in"))?;
        Ok(())
    }

    /// How many failed sign-ins `key` had at or after `since`, on every replica.
    pub async fn failed_signins_since(&self, key: &str, since: i64) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Any, i64>("SELECT COUNT(*) FROM failed_signins WHERE key = $1 AND at >= $2")
            .bind(key.to_owned())
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting failed sign-ins"))
    }

    /// Forgets the failed sign-ins of `key` (after a successful one).
    pub async fn clear_failed_signins(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM failed_signins WHERE key = $1")
            .bind(key.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("clearing failed sign-ins"))?;
        Ok(())
    }

    /// Deletes login attempts and assertion ids expired at `now`, and failed sign-ins older
    /// than [`FAILED_SIGNIN_RETENTION`]; returns how many rows went.
    pub async fn sweep_expired(&self, now: i64) -> Result<u64, StoreError> {
        let retention = i64::try_from(FAILED_SIGNIN_RETENTION.as_secs()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db("sweeping expired sign-in state"))?;
        let mut swept = 0;
        for (statement, cutoff) in [
            ("DELETE FROM login_attempts WHERE expires_at <= $1", now),
            ("DELETE FROM seen_assertions WHERE expires_at <= $1", now),
            (
                "DELETE FROM failed_signins WHERE at < $1",
                now.saturating_sub(retention),
            ),
        ] {
            swept += sqlx::query(statement)
                .bind(cutoff)
                .execute(&mut *tx)
                .await
                .map_err(db("sweeping expired sign-in state"))?
                .rows_affected();
        }
        tx.commit().await.map_err(db("sweeping expired sign-in state"))?;
        Ok(swept)
    }
}
