//! What the App Portal keeps per person: favourites (the `portal_favourites` table) and the
//! apps they opened recently (read from `usage_visits`, which the gateways fill from real
//! visits). Both are shared by every replica on the same store.

use crate::error::db;
use crate::{get, Store, StoreError};

/// Most favourites one person may keep (more than any portal lists).
pub const MAX_FAVOURITES: i64 = 1_000;

impl Store {
    /// The slugs `person` marked as favourites, in the order they were marked.
    pub async fn favourites(&self, person: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT app FROM portal_favourites WHERE person = $1 ORDER BY created_at, app")
            .bind(person.to_owned())
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading favourites"))?
            .iter()
            .map(|r| get(r, "app"))
            .collect()
    }

    /// Marks (`on`) or unmarks app `app` as a favourite of `person` at epoch second `now`.
    /// Idempotent: marking a favourite again keeps its first time. `Err(Invalid)` for an
    /// empty person or app, or a person who already has [`MAX_FAVOURITES`].
    pub async fn set_favourite(&self, person: &str, app: &str, on: bool, now: i64) -> Result<(), StoreError> {
        if person.is_empty() || app.is_empty() {
            return Err(StoreError::Invalid("a favourite needs a person and an app".into()));
        }
        if !on {
            sqlx::query("DELETE FROM portal_favourites WHERE person = $1 AND app = $2")
                .bind(person.to_owned())
                .bind(app.to_owned())
                .execute(&self.pool)
                .await
                .map_err(db("removing a favourite"))?;
            return Ok(());
        }
        let inserted = sqlx::query(
            "INSERT INTO portal_favourites (person, app, created_at) \
             SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM portal_favourites WHERE person = $4) < $5 \
             ON CONFLICT (person, app) DO NOTHING",
        )
        .bind(person.to_owned())
        .bind(app.to_owned())
        .bind(now)
        .bind(person.to_owned())
        .bind(MAX_FAVOURITES)
        .execute(&self.pool)
        .await
        .map_err(db("saving a favourite"))?
        .rows_affected();
        if inserted == 0 && !self.favourites(person).await?.iter().any(|a| a == app) {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_FAVOURITES} favourites per person"
            )));
        }
        Ok(())
    }

    /// The apps `person` opened on UTC day `since_day` or later, latest first, at most
    /// `limit`: (slug, epoch second of the latest visit). Only visits the gateways have
    /// already added to the store (see `Store::add_visits`).
    pub async fn recent_apps(
        &self,
        person: &str,
        since_day: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if person.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(
            "SELECT app, MAX(last_at) AS at FROM usage_visits WHERE person = $1 AND day >= $2 \
             GROUP BY app ORDER BY at DESC, app LIMIT $3",
        )
        .bind(person.to_owned())
        .bind(since_day)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading recent apps"))?
        .iter()
        .map(|r| Ok((get(r, "app")?, get(r, "at")?)))
        .collect()
    }
}
