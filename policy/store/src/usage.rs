//! Usage per app (the `usage_visits` table): how many visits each app had per UTC day, from
//! whom, and when each person last opened it. Gateways count visits in memory and add
//! their counts here in batches ([`Store::add_visits`]): an upsert that adds, so several
//! replicas sharing one PostgreSQL database add up. Anonymous visits (public apps) are
//! stored under the person `""`: they count as visits, never as people.
//!
//! Days are whole days since 1970-01-01 UTC ([`day_of`]); ranges are inclusive.

use sqlx::any::AnyRow;
use sqlx::AssertSqlSafe;

use crate::error::db;
use crate::{get, Store, StoreError};

/// How many days of usage are kept; [`Store::sweep_usage`] removes older rows.
pub const USAGE_RETENTION_DAYS: i64 = 400;

/// Rows per `INSERT` statement of a batch (5 bound values each: well inside every
/// database's limit on parameters).
const ROWS_PER_STATEMENT: usize = 100;

/// The UTC day (days since 1970-01-01) of epoch second `t`.
pub fn day_of(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// Visits of one person (or anonymous: `""`) to one app on one day, as a gateway counted
/// them since its last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitCount {
    pub app: String,
    /// Days since 1970-01-01 UTC.
    pub day: i64,
    /// The user name; `""`: not signed in.
    pub person: String,
    pub visits: i64,
    /// Epoch seconds of the latest of these visits.
    pub last_at: i64,
}

/// One day of one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageDay {
    pub day: i64,
    pub visits: i64,
    /// Distinct signed-in people that day.
    pub people: i64,
}

/// One app's usage over a range of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUsage {
    pub app: String,
    pub visits: i64,
    /// Distinct signed-in people over the whole range (not a sum of days).
    pub people: i64,
}

/// A person's latest visit to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastVisit {
    pub person: String,
    /// Epoch seconds.
    pub at: i64,
}

impl Store {
    /// Adds a batch of counts: each row's visits are added to what the store has for its
    /// app, day and person (created if missing), and its `last_at` kept if later. One
    /// transaction: all of the batch or none of it. Rows must not repeat a key.
    pub async fn add_visits(&self, batch: &[VisitCount]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write("adding usage").await?;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 5;
                    format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5)
                })
                .collect();
            let sql = format!(
                "INSERT INTO usage_visits (app, day, person, visits, last_at) VALUES {} \
                 ON CONFLICT (app, day, person) DO UPDATE SET visits = usage_visits.visits + excluded.visits, \
                 last_at = CASE WHEN excluded.last_at > usage_visits.last_at THEN excluded.last_at \
                 ELSE usage_visits.last_at END",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for v in chunk {
                q = q
                    .bind(v.app.clone())
                    .bind(v.day)
                    .bind(v.person.clone())
                    .bind(v.visits)
                    .bind(v.last_at);
            }
            q.execute(&mut *tx).await.map_err(db("adding usage"))?;
        }
        tx.commit().await.map_err(db("adding usage"))
    }

    /// App `app`'s visits and people per day from `from` to `to` (inclusive), only the days
    /// that had visits, oldest first.
    pub async fn usage_days(&self, app: &str, from: i64, to: i64) -> Result<Vec<UsageDay>, StoreError> {
        sqlx::query(
            "SELECT day, CAST(SUM(visits) AS BIGINT) AS visits, \
             CAST(COUNT(CASE WHEN person <> '' THEN 1 END) AS BIGINT) AS people \
             FROM usage_visits WHERE app = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day",
        )
        .bind(app.to_owned())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading usage"))?
        .iter()
        .map(|r| {
            Ok(UsageDay {
                day: get(r, "day")?,
                visits: get(r, "visits")?,
                people: get(r, "people")?,
            })
        })
        .collect()
    }

    /// Every app's visits and distinct people from day `from` to `to` (inclusive); apps
    /// without visits are left out. Ordered by app.
    pub async fn usage_by_app(&self, from: i64, to: i64) -> Result<Vec<AppUsage>, StoreError> {
        sqlx::query(
            "SELECT app, CAST(SUM(visits) AS BIGINT) AS visits, \
             CAST(COUNT(DISTINCT CASE WHEN person <> '' THEN person END) AS BIGINT) AS people \
             FROM usage_visits WHERE day >= $1 AND day <= $2 GROUP BY app ORDER BY app",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading usage"))?
        .iter()
        .map(app_usage)
        .collect()
    }

    /// App `app`'s visits and distinct people from day `from` to `to` (inclusive).
    pub async fn app_usage(&self, app: &str, from: i64, to: i64) -> Result<AppUsage, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(visits), 0) AS BIGINT) AS visits, \
             CAST(COUNT(DISTINCT CASE WHEN person <> '' THEN person END) AS BIGINT) AS people \
             FROM usage_visits WHERE app = $1 AND day >= $2 AND day <= $3",
        )
        .bind(app.to_owned())
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading usage"))?;
        Ok(AppUsage {
            app: app.to_owned(),
            visits: get(&row, "visits")?,
            people: get(&row, "people")?,
        })
    }

    /// The last `limit` signed-in people who opened app `app`, latest first, each with
    /// their latest visit.
    pub async fn last_visitors(&self, app: &str, limit: i64) -> Result<Vec<LastVisit>, StoreError> {
        sqlx::query(
            "SELECT person, MAX(last_at) AS at FROM usage_visits WHERE app = $1 AND person <> '' \
             GROUP BY person ORDER BY at DESC, person LIMIT $2",
        )
        .bind(app.to_owned())
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading usage"))?
        .iter()
        .map(|r| {
            Ok(LastVisit {
                person: get(r, "person")?,
                at: get(r, "at")?,
            })
        })
        .collect()
    }

    /// Removes the usage of days before `before` (see [`USAGE_RETENTION_DAYS`]); returns
    /// how many rows.
    pub async fn sweep_usage(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM usage_visits WHERE day < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db("removing old usage"))?;
        Ok(done.rows_affected())
    }
}

fn app_usage(r: &AnyRow) -> Result<AppUsage, StoreError> {
    Ok(AppUsage {
        app: get(r, "app")?,
        visits: get(r, "visits")?,
        people: get(r, "people")?,
    })
}
