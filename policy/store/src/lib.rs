//! Gatehouse's persistent store: local users, sessions, JWT signing keys, apps granted in
//! the admin UI, and the audit log. SQLite (one file, the default) or PostgreSQL (shared by
//! several gateway replicas), through sqlx's `Any` driver so that one set of SQL statements
//! serves both. Migrations are embedded and run by every `open`/`connect`.
//!
//! One module per table: [`users`](Store::create_user), [`sessions`](Store::insert_session),
//! [`signing keys`](Store::insert_signing_key), [`apps`](Store::upsert_app),
//! [`audit log`](Store::audit_events), [`API tokens`](Store::create_api_token) (by the
//! hash of their secret, never the secret), and the sign-in state every replica shares
//! ([`login attempts`](Store::put_login_attempt), [`assertion ids`](Store::first_sighting),
//! [`failed sign-ins`](Store::record_failed_signin)), usage per app
//! ([`visits`](Store::add_visits), added up from every replica's batches), and what the App
//! Portal keeps per person ([`favourites`](Store::favourites),
//! [`recently opened apps`](Store::recent_apps)). Errors are one
//! [`StoreError`].
//!
//! Every method that changes who may open what (users, apps, session revocation, signing
//! keys) takes the [`Actor`] and writes its audit row — the record before and after — in
//! the same transaction as the change: both happen or neither does. Every change is also
//! announced on the [change feed](Store::subscribe) once it has committed.
//!
//! Conventions, the same in both databases:
//! - user and group names are [`UserName`] and [`GroupName`] (case-folded), so lookups are
//!   case-insensitive and a name is unique whatever its case;
//! - times are epoch seconds (`i64`);
//! - lists (groups, upstreams, allow-lists) are JSON arrays in TEXT columns: a session of a
//!   user in thousands of groups is one row.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_policy::{GroupName, UserName};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

mod apps;
mod audit;
mod error;
mod feed;
mod grants;
mod keys;
mod portal;
mod requests;
mod sessions;
mod settings;
mod signin;
mod tokens;
mod usage;
mod users;

pub use apps::{Access, AppRecord, Expect};
pub use audit::{Actor, AuditEvent, AuditFilter};
pub use error::StoreError;
pub use feed::{Change, LISTENER_APPLICATION_NAME};
pub use grants::{GrantRecord, Grantee};
pub use keys::SigningKeyRecord;
pub use portal::MAX_FAVOURITES;
pub use requests::{AccessRequest, RequestStatus};
pub use sessions::SessionRecord;
pub use settings::MAX_SETTING_BYTES;
pub use signin::{LoginAttempt, FAILED_SIGNIN_RETENTION};
pub use tokens::{api_token_hash, ApiTokenRecord, TokenScope};
pub use usage::{day_of, AppUsage, LastVisit, UsageDay, VisitCount, USAGE_RETENTION_DAYS};
pub use users::{NewUser, UserRecord};

use error::{connect_error, db, percent_decode, percent_encode_path, redact_url};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// SQLite's page cache per pooled connection, in KiB (SQLite's default is 2,000). Session
/// lookups read a few pages by key; the operating system's file cache serves the rest in
/// microseconds, so a large per-connection cache only holds memory: with 100,000 sessions
/// and five connections the default kept ~10 MiB (BENCHMARKS.md, "Memory with 100,000
/// sessions").
pub const SQLITE_CACHE_KIB: u32 = 512;

/// How long a pooled connection may sit unused before it is closed (each SQLite connection
/// is a thread with its own page cache, each PostgreSQL one a server process); the pool
/// opens connections again when needed. The change feed's listener has a pool of its own.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Pool and timeout settings. The defaults suit one gateway process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections the pool opens. Default 5. SQLite serialises writers anyway; for
    /// PostgreSQL multiply by the number of replicas to size `max_connections` there.
    pub max_connections: u32,
    /// How long a query waits for a free connection (and PostgreSQL for the first one)
    /// before failing with [`StoreError::Unavailable`]. Default 10 s.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for another writer's lock. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 5,
            acquire_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database: cheap to clone, all clones share one connection pool and one
/// change feed (on PostgreSQL, one listener task that stops with the last clone).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    feed: Arc<feed::Feed>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl Store {
    /// Opens the store at `url`: `sqlite://<path>` (or `sqlite:<path>`; the file is created
    /// if missing) or `postgres://…` / `postgresql://…`, with default [`StoreOptions`].
    /// Runs pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// [`Store::connect`] with explicit pool settings.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "sqlite" => {
                let rest = url["sqlite:".len()..].trim_start_matches("//");
                if rest.contains('?') || rest.contains('#') {
                    return Err(StoreError::BadUrl(format!(
                        "{url}: query parameters are not supported; give a plain file path"
                    )));
                }
                let path = percent_decode(rest)
                    .ok_or_else(|| StoreError::BadUrl(format!("{url}: invalid percent-encoding")))?;
                if path.is_empty() || path == ":memory:" {
                    return Err(StoreError::BadUrl(format!("{url}: give the path of a database file")));
                }
                Self::open_sqlite_with(Path::new(&path), options).await
            }
            "postgres" | "postgresql" => Self::open_postgres_with(url, options).await,
            _ => Err(StoreError::BadUrl(format!(
                "{}: expected sqlite://<path> or postgres://…",
                redact_url(url)
            ))),
        }
    }

    /// Opens (creating it if missing) the SQLite database file at `path`, in WAL mode,
    /// with default [`StoreOptions`]. Runs pending migrations. The parent directory must
    /// exist.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Self::open_sqlite_with(path, &StoreOptions::default()).await
    }

    /// [`Store::open_sqlite`] with explicit pool settings.
    pub async fn open_sqlite_with(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let absolute = std::path::absolute(path).map_err(|e| StoreError::BadUrl(format!("{shown}: {e}")))?;
        let absolute = absolute
            .to_str()
            .ok_or_else(|| StoreError::BadUrl(format!("{shown}: path is not valid UTF-8")))?;
        let url = format!("sqlite://{}?mode=rwc", percent_encode_path(absolute));

        sqlx::any::install_default_drivers();
        let busy_ms = options.busy_timeout.as_millis().min(i32::MAX as u128);
        let pool = pool_options(options)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // The Any driver exposes no SQLite connect options, so set it here.
                    let pragma = format!("PRAGMA busy_timeout = {busy_ms}");
                    conn.execute(sqlx::AssertSqlSafe(pragma)).await?;
                    let pragma = format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}");
                    conn.execute(sqlx::AssertSqlSafe(pragma)).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| error::classify(format!("opening SQLite file {shown}"), e))?;
        // WAL lets readers (session lookups) proceed while a writer commits. It is a
        // property of the file: set once, every later connection uses it.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .map_err(db("enabling WAL"))?;
        let store = Store {
            pool,
            backend: Backend::Sqlite,
            feed: Arc::new(feed::Feed::new()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:pass@host/db`) with
    /// default [`StoreOptions`]. Runs pending migrations (under PostgreSQL's advisory lock,
    /// so replicas starting together do not race), then starts listening for changes on a
    /// dedicated connection (see [`Store::subscribe`]).
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Self::open_postgres_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open_postgres`] with explicit pool settings.
    pub async fn open_postgres_with(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            return Err(StoreError::BadUrl(format!(
                "{}: expected postgres://…",
                redact_url(url)
            )));
        }
        sqlx::any::install_default_drivers();
        let pool = pool_options(options)
            .connect(url)
            .await
            .map_err(|e| connect_error(format!("connecting to PostgreSQL at {}", redact_url(url)), e, url))?;
        let store = Store {
            pool,
            backend: Backend::Postgres,
            feed: Arc::new(feed::Feed::new()),
        };
        store.migrate().await?;
        store.feed.start_listener(url, options.acquire_timeout).await;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(StoreError::Migration)
    }

    /// Changes to apps, users, sessions and signing keys from now on, each once it has
    /// committed. On PostgreSQL: every client's changes (triggers and `LISTEN`), this
    /// process's included, plus [`Change::Resync`] after the listener had to reconnect. On
    /// SQLite: this process's changes only. A receiver that falls more than 1,024 changes
    /// behind gets `RecvError::Lagged` and should reload everything, as for `Resync`.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    /// Announces changes this process committed. On PostgreSQL the triggers' notifications
    /// do it (and come back to this process too), so nothing is sent here: every change is
    /// announced exactly once whichever client made it.
    fn announce(&self, changes: impl IntoIterator<Item = Change>) {
        if self.backend == Backend::Sqlite {
            for change in changes {
                self.feed.send(change);
            }
        }
    }

    /// A transaction for a read-then-write: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`, waiting up to the busy timeout) so that two writers cannot both
    /// read and then fail to upgrade; on PostgreSQL the rows are locked with `FOR UPDATE`
    /// (see [`Store::locking`]).
    async fn begin_write(&self, context: &'static str) -> Result<Transaction<'static, Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(db(context))
    }

    /// `sqlite` for SQLite, `postgres` (the same statement with `FOR UPDATE`) for PostgreSQL.
    fn locking(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }

    /// True when the store is PostgreSQL (several replicas may share it).
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Stops the change feed's listener and closes every connection; waits for queries in
    /// flight. Later calls fail with [`StoreError::Unavailable`]; subscribers hear nothing
    /// more.
    pub async fn close(&self) {
        self.feed.stop().await;
        self.pool.close().await;
    }
}

fn pool_options(options: &StoreOptions) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .min_connections(0)
        .idle_timeout(POOL_IDLE_TIMEOUT)
        .acquire_timeout(options.acquire_timeout)
        // A connection that still counts a transaction as open is not handed out again but
        // closed (the pool opens a fresh one). That happens when a transaction's rollback
        // itself failed: after SQLite's `SQLITE_FULL` (a full disk) the database already
        // rolled back, sqlx's `ROLLBACK` then fails and its count stays at one, and every
        // later transaction on that connection would fail even with space again.
        .before_acquire(|conn, _| Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) }))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn flag(value: bool) -> i64 {
    i64::from(value)
}

/// JSON array text of `names`, sorted, de-duplicated, without empty names (what `new`
/// folds a blank name to).
fn names_json<'a>(names: impl Iterator<Item = &'a str>) -> Result<String, StoreError> {
    let mut names: Vec<&str> = names.filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    to_json(&names)
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn groups_json(groups: &[GroupName]) -> Result<String, StoreError> {
    names_json(groups.iter().map(GroupName::as_str))
}

fn users_json(users: &[UserName]) -> Result<String, StoreError> {
    names_json(users.iter().map(UserName::as_str))
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column).map_err(|e| StoreError::Database {
        context: format!("reading column {column}"),
        source: e,
    })
}

fn get_flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    Ok(get::<i64>(row, column)? != 0)
}

fn get_list(row: &AnyRow, column: &str) -> Result<Vec<String>, StoreError> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| error::bad_column(column, e))
}

fn get_groups(row: &AnyRow, column: &str) -> Result<Vec<GroupName>, StoreError> {
    Ok(get_list(row, column)?.iter().map(|g| GroupName::new(g)).collect())
}

fn get_users(row: &AnyRow, column: &str) -> Result<Vec<UserName>, StoreError> {
    Ok(get_list(row, column)?.iter().map(|u| UserName::new(u)).collect())
}

#[cfg(test)]
mod tests;
