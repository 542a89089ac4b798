//! The persistent store: local users, sessions, JWT signing keys, apps granted in the admin
//! UI, and the audit log. SQLite (one file, the default) or PostgreSQL (shared by several
//! gateway replicas), through sqlx's `Any` driver so that one set of SQL statements serves
//! both. Migrations are embedded and run by every `open`/`connect`.
//!
//! Conventions, the same in both databases:
//! - user and group names are case-folded (as [`UserName::new`] and [`GroupName::new`]
//!   do), so lookups are case-insensitive and a name is unique whatever its case;
//! - times are epoch seconds (`i64`);
//! - lists (groups, upstreams, allow-lists) are JSON arrays in TEXT columns: a session of a
//!   user in thousands of groups is one row.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row};

use crate::{GroupName, UserName};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The one error type of this crate. Messages never carry a database password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement, or could not be reached.
    #[error("database error: {0}")]
    Database(String),
    /// The embedded migrations could not be applied (e.g. the database was migrated by a
    /// newer Gatehouse, or a migration was edited after it ran).
    #[error("database migration failed: {0}")]
    Migration(String),
    /// [`Store::create_user`]: a user of that name (compared case-insensitively) exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// The store URL or path is not one Gatehouse can open.
    #[error("bad store URL: {0}")]
    BadUrl(String),
    /// A value the store will not save (empty user name, unknown access mode, …).
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// Pool and timeout settings. The defaults suit one gateway process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections the pool opens. Default 5. SQLite serialises writers anyway; for
    /// PostgreSQL multiply by the number of replicas to size `max_connections` there.
    pub max_connections: u32,
    /// How long a query waits for a free connection (and PostgreSQL for the first one)
    /// before failing. Default 10 s.
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

/// A user to create with [`Store::create_user`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct NewUser {
    /// Case-folded before it is stored.
    pub username: String,
    /// A PHC string (argon2id); `None` for users who cannot sign in with a password.
    pub password_hash: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub admin: bool,
    /// Case-folded, sorted and de-duplicated before they are stored.
    pub groups: Vec<String>,
}

/// A local user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Case-folded.
    pub username: String,
    pub password_hash: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    /// Case-folded, sorted, no duplicates.
    pub groups: Vec<String>,
    /// Epoch seconds.
    pub created_at: i64,
}

/// A signed-in session. The cookie carries the session id; the store only ever sees a hash
/// of it, so a leaked database does not hand out live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    /// Case-folded when stored.
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Case-folded, sorted and de-duplicated when stored.
    pub groups: Vec<String>,
    pub admin: bool,
    /// The id of the provider that signed the user in.
    pub provider: String,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds; only moves forward (see [`Store::touch_session`]).
    pub last_seen: i64,
}

/// A key the gateway signs assertion JWTs with. Its `Debug` hides the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub private_pem: String,
    /// The public half as a JWK (JSON text), as published in the JWKS.
    pub public_jwk: String,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds; `None` while the key is current.
    pub retired_at: Option<i64>,
}

/// An app as configured in the admin UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub upstreams: Vec<String>,
    /// `public`, `authenticated` or `restricted`.
    pub access: String,
    /// Case-folded, sorted and de-duplicated when stored.
    pub allow_groups: Vec<String>,
    /// Case-folded, sorted and de-duplicated when stored.
    pub allow_users: Vec<String>,
    /// Epoch seconds. [`Store::upsert_app`] keeps the first one.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Epoch seconds.
    pub at: i64,
    /// Who did it (a user name, or e.g. `cli`).
    pub actor: String,
    /// What was done, e.g. `user.create`.
    pub action: String,
    /// What it was done to, e.g. a user name or app slug.
    pub target: String,
    /// Anything else worth keeping. Never put secrets here.
    pub detail: serde_json::Value,
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &self.password_hash.as_ref().map(|_| REDACTED))
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("admin", &self.admin)
            .field("groups", &self.groups)
            .finish()
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password_hash", &self.password_hash.as_ref().map(|_| REDACTED))
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("admin", &self.admin)
            .field("disabled", &self.disabled)
            .field("groups", &self.groups)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("private_pem", &REDACTED)
            .field("public_jwk", &self.public_jwk)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database: cheap to clone, all clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("connections", &self.pool.size())
            .finish()
    }
}

// sqlx 0.9 takes only `'static` SQL unless told otherwise; column lists are macros so that
// `concat!` can splice them into literal statements.
macro_rules! user_columns {
    () => {
        "username, password_hash, email, display_name, admin, disabled, groups_json, created_at"
    };
}
macro_rules! session_columns {
    () => {
        "id_hash, username, email, display_name, groups_json, admin, provider, created_at, \
         last_seen"
    };
}
macro_rules! key_columns {
    () => {
        "kid, private_pem, public_jwk, created_at, retired_at"
    };
}
macro_rules! app_columns {
    () => {
        "slug, name, description, upstreams_json, access, allow_groups_json, allow_users_json, \
         created_at, updated_at"
    };
}
macro_rules! audit_columns {
    () => {
        "at, actor, action, target, detail_json"
    };
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
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open SQLite file {shown}: {e}")))?;
        // WAL lets readers (session lookups) proceed while a writer commits. It is a
        // property of the file: set once, every later connection uses it.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await
            .map_err(db("enabling WAL"))?;
        let store = Store {
            pool,
            backend: Backend::Sqlite,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:pass@host/db`) with
    /// default [`StoreOptions`]. Runs pending migrations (under PostgreSQL's advisory lock,
    /// so replicas starting together do not race).
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
        let pool = pool_options(options).connect(url).await.map_err(|e| {
            let message = scrub(&e.to_string(), url);
            StoreError::Database(format!(
                "cannot connect to PostgreSQL at {}: {message}",
                redact_url(url)
            ))
        })?;
        let store = Store {
            pool,
            backend: Backend::Postgres,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// True when the store is PostgreSQL (several replicas may share it).
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Closes every connection; waits for queries in flight. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----- users -----

    /// Creates a local user. `Err(UserExists)` if the name, compared case-insensitively,
    /// is taken.
    pub async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let username = user_name(&user.username)?;
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, email, display_name, admin, disabled, \
             groups_json, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(username.clone())
        .bind(user.password_hash.clone())
        .bind(user.email.clone())
        .bind(user.display_name.clone())
        .bind(flag(user.admin))
        .bind(groups_json(&user.groups)?)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db("creating user"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::UserExists(username));
        }
        Ok(())
    }

    /// The user named `username` (any case), if any.
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
            .bind(fold_user(username))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading user"))?
            .map(|row| user_from_row(&row))
            .transpose()
    }

    /// Every local user, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing users"))?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// How many local users exist (0 on a fresh install: time to bootstrap an admin).
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Any, i64>("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting users"))
    }

    /// Replaces the user's password hash. False: no such user.
    pub async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET password_hash = $2 WHERE username = $1")
            .bind(fold_user(username))
            .bind(hash.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("setting password"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Grants or revokes Gatehouse administration. False: no such user.
    pub async fn set_user_admin(&self, username: &str, admin: bool) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET admin = $2 WHERE username = $1")
            .bind(fold_user(username))
            .bind(flag(admin))
            .execute(&self.pool)
            .await
            .map_err(db("setting admin flag"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Disables (true) or re-enables a user. Existing sessions are left alone; revoke them
    /// with [`Store::delete_user_sessions`]. False: no such user.
    pub async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET disabled = $2 WHERE username = $1")
            .bind(fold_user(username))
            .bind(flag(disabled))
            .execute(&self.pool)
            .await
            .map_err(db("setting disabled flag"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Replaces the user's groups. False: no such user.
    pub async fn set_user_groups(&self, username: &str, groups: &[String]) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET groups_json = $2 WHERE username = $1")
            .bind(fold_user(username))
            .bind(groups_json(groups)?)
            .execute(&self.pool)
            .await
            .map_err(db("setting groups"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes the user and, in the same transaction, every session of that user name.
    /// False (and nothing deleted): no such user.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let username = fold_user(username);
        let mut tx = self.pool.begin().await.map_err(db("deleting user"))?;
        let deleted = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username.clone())
            .execute(&mut *tx)
            .await
            .map_err(db("deleting user"))?
            .rows_affected();
        if deleted == 0 {
            tx.rollback().await.map_err(db("deleting user"))?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(db("deleting user's sessions"))?;
        tx.commit().await.map_err(db("deleting user"))?;
        Ok(true)
    }

    // ----- sessions -----

    /// Saves a new session. Its user name and groups are case-folded.
    pub async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(session.id_hash.clone())
        .bind(fold_user(&session.username))
        .bind(session.email.clone())
        .bind(session.display_name.clone())
        .bind(groups_json(&session.groups)?)
        .bind(flag(session.admin))
        .bind(session.provider.clone())
        .bind(session.created_at)
        .bind(session.last_seen)
        .execute(&self.pool)
        .await
        .map_err(db("saving session"))?;
        Ok(())
    }

    /// The session whose id hashes to `id_hash`, if any. Expiry is the caller's business
    /// (compare `created_at` and `last_seen` with the configured timeouts).
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id_hash = $1"
        ))
        .bind(id_hash.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading session"))?
        .map(|row| session_from_row(&row))
        .transpose()
    }

    /// Records activity: sets `last_seen` to `last_seen` unless it is already later (replicas
    /// may report out of order). A missing session is not an error.
    pub async fn touch_session(&self, id_hash: &str, last_seen: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $2 WHERE id_hash = $1 AND last_seen < $2")
            .bind(id_hash.to_owned())
            .bind(last_seen)
            .execute(&self.pool)
            .await
            .map_err(db("touching session"))?;
        Ok(())
    }

    /// Replaces a session's groups (e.g. after a directory refresh). False: no such session.
    pub async fn update_session_groups(&self, id_hash: &str, groups: &[String]) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE sessions SET groups_json = $2 WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .bind(groups_json(groups)?)
            .execute(&self.pool)
            .await
            .map_err(db("updating session groups"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Stores what a provider needs later for a session (e.g. an OIDC refresh token and ID
    /// token), as JSON text. False: no such session.
    pub async fn set_session_provider_data(&self, id_hash: &str, data: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE sessions SET provider_data = $2 WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .bind(data.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("saving session provider data"))?;
        Ok(result.rows_affected() > 0)
    }

    /// What [`Store::set_session_provider_data`] stored for a session, if anything.
    pub async fn session_provider_data(&self, id_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT provider_data FROM sessions WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading session provider data"))?;
        match row {
            Some(r) => sqlx::Row::try_get::<Option<String>, _>(&r, "provider_data")
                .map_err(db("reading session provider data")),
            None => Ok(None),
        }
    }

    /// Deletes one session (logout, revocation). False: no such session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("deleting session"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes every session of `username` (any case); returns how many there were.
    pub async fn delete_user_sessions(&self, username: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(fold_user(username))
            .execute(&self.pool)
            .await
            .map_err(db("deleting user's sessions"))?;
        Ok(result.rows_affected())
    }

    /// The sessions of `username` (any case), oldest first.
    pub async fn sessions_of(&self, username: &str) -> Result<Vec<SessionRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE username = $1 ORDER BY created_at, id_hash"
        ))
        .bind(fold_user(username))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing sessions"))?
        .iter()
        .map(session_from_row)
        .collect()
    }

    /// Deletes sessions idle since before `idle_before` or created before `created_before`
    /// (both epoch seconds, exclusive); returns how many.
    pub async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await
            .map_err(db("deleting expired sessions"))?;
        Ok(result.rows_affected())
    }

    // ----- signing keys -----

    /// Every signing key, retired ones included, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys ORDER BY created_at, kid"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing signing keys"))?
        .iter()
        .map(key_from_row)
        .collect()
    }

    /// Saves a new signing key. A duplicate `kid` is a [`StoreError::Database`].
    pub async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO signing_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(key.kid.clone())
        .bind(key.private_pem.clone())
        .bind(key.public_jwk.clone())
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&self.pool)
        .await
        .map_err(db("saving signing key"))?;
        Ok(())
    }

    /// Marks a key retired at `at` (still published, no longer used to sign). Retiring a
    /// retired key keeps the first time. False: no such key.
    pub async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE signing_keys SET retired_at = COALESCE(retired_at, $2) WHERE kid = $1")
            .bind(kid.to_owned())
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db("retiring signing key"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes a key for good. False: no such key.
    pub async fn delete_signing_key(&self, kid: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("deleting signing key"))?;
        Ok(result.rows_affected() > 0)
    }

    // ----- apps -----

    /// Every app, by slug.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", app_columns!(), " FROM apps ORDER BY slug"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing apps"))?
            .iter()
            .map(app_from_row)
            .collect()
    }

    /// The app with this slug (exact match), if any.
    pub async fn app(&self, slug: &str) -> Result<Option<AppRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", app_columns!(), " FROM apps WHERE slug = $1"))
            .bind(slug.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading app"))?
            .map(|row| app_from_row(&row))
            .transpose()
    }

    /// Creates the app, or replaces every field of an existing one but `created_at`.
    /// `Err(Invalid)` for an empty slug or an access other than `public`,
    /// `authenticated`, `restricted`.
    pub async fn upsert_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        if app.slug.is_empty() {
            return Err(StoreError::Invalid("app slug is empty".into()));
        }
        if !matches!(app.access.as_str(), "public" | "authenticated" | "restricted") {
            return Err(StoreError::Invalid(format!(
                "access of app {:?} must be public, authenticated or restricted, not {:?}",
                app.slug, app.access
            )));
        }
        sqlx::query(concat!(
            "INSERT INTO apps (",
            app_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (slug) DO UPDATE SET \
             name = excluded.name, description = excluded.description, \
             upstreams_json = excluded.upstreams_json, access = excluded.access, \
             allow_groups_json = excluded.allow_groups_json, \
             allow_users_json = excluded.allow_users_json, updated_at = excluded.updated_at"
        ))
        .bind(app.slug.clone())
        .bind(app.name.clone())
        .bind(app.description.clone())
        .bind(to_json(&app.upstreams)?)
        .bind(app.access.clone())
        .bind(groups_json(&app.allow_groups)?)
        .bind(users_json(&app.allow_users)?)
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db("saving app"))?;
        Ok(())
    }

    /// Deletes an app. False: no such app.
    pub async fn delete_app(&self, slug: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM apps WHERE slug = $1")
            .bind(slug.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("deleting app"))?;
        Ok(result.rows_affected() > 0)
    }

    // ----- audit log -----

    /// Appends to the audit log.
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let detail =
            serde_json::to_string(&event.detail).map_err(|e| StoreError::Invalid(format!("audit detail: {e}")))?;
        sqlx::query(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(event.at)
        .bind(event.actor.clone())
        .bind(event.action.clone())
        .bind(event.target.clone())
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(db("writing audit log"))?;
        Ok(())
    }

    /// The `limit` latest audit events, newest first (same second: last written first).
    pub async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log ORDER BY at DESC, id DESC LIMIT $1"
        ))
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading audit log"))?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

fn pool_options(options: &StoreOptions) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(options.acquire_timeout)
}

fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Database(format!("{context}: {e}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn flag(value: bool) -> i64 {
    i64::from(value)
}

fn fold_user(name: &str) -> String {
    UserName::new(name).as_str().to_owned()
}

fn user_name(name: &str) -> Result<String, StoreError> {
    let folded = fold_user(name);
    if folded.is_empty() {
        return Err(StoreError::Invalid("user name is empty".into()));
    }
    Ok(folded)
}

/// Case-folds, drops empty names, sorts and de-duplicates.
fn fold_all(names: &[String], fold: impl Fn(&str) -> String) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|n| fold(n)).filter(|n| !n.is_empty()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn to_json(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn groups_json(groups: &[String]) -> Result<String, StoreError> {
    to_json(&fold_all(groups, |g| GroupName::new(g).as_str().to_owned()))
}

fn users_json(users: &[String]) -> Result<String, StoreError> {
    to_json(&fold_all(users, fold_user))
}

fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Database(format!("reading column {column}: {e}")))
}

fn get_flag(row: &AnyRow, column: &str) -> Result<bool, StoreError> {
    Ok(get::<i64>(row, column)? != 0)
}

fn get_list(row: &AnyRow, column: &str) -> Result<Vec<String>, StoreError> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Database(format!("column {column} does not hold a JSON list: {e}")))
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: get(row, "username")?,
        password_hash: get(row, "password_hash")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        admin: get_flag(row, "admin")?,
        disabled: get_flag(row, "disabled")?,
        groups: get_list(row, "groups_json")?,
        created_at: get(row, "created_at")?,
    })
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: get(row, "id_hash")?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        groups: get_list(row, "groups_json")?,
        admin: get_flag(row, "admin")?,
        provider: get(row, "provider")?,
        created_at: get(row, "created_at")?,
        last_seen: get(row, "last_seen")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: get(row, "kid")?,
        private_pem: get(row, "private_pem")?,
        public_jwk: get(row, "public_jwk")?,
        created_at: get(row, "created_at")?,
        retired_at: get(row, "retired_at")?,
    })
}

fn app_from_row(row: &AnyRow) -> Result<AppRecord, StoreError> {
    Ok(AppRecord {
        slug: get(row, "slug")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        upstreams: get_list(row, "upstreams_json")?,
        access: get(row, "access")?,
        allow_groups: get_list(row, "allow_groups_json")?,
        allow_users: get_list(row, "allow_users_json")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let detail: String = get(row, "detail_json")?;
    Ok(AuditEvent {
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StoreError::Database(format!("audit detail is not valid JSON: {e}")))?,
    })
}

/// The password in a URL's user-info (`scheme://user:password@host/…`), if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `url` with its password, if any, replaced by `***`: fit for logs and error messages.
pub(crate) fn redact_url(url: &str) -> String {
    match url_password(url) {
        Some(password) => {
            let start = url.find("://").map_or(0, |i| i + 3);
            let at = start + url[start..].find(password).unwrap_or(0);
            format!("{}***{}", &url[..at], &url[at + password.len()..])
        }
        None => url.to_owned(),
    }
}

/// `message` with every copy of `url`'s password (raw or percent-decoded) replaced.
fn scrub(message: &str, url: &str) -> String {
    let Some(password) = url_password(url) else {
        return message.to_owned();
    };
    let mut out = message.replace(password, "***");
    if let Some(decoded) = percent_decode(password) {
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything in a path but unreserved characters and `/`, so that sqlx
/// reads back exactly this file name (`?`, `#`, `%` and spaces included).
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
