//! Signed-in sessions: the `sessions` table.

use gatehouse_policy::{GroupName, UserName};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Any;

use crate::audit::{Actor, Entry};
use crate::error::{db, db_unique};
use crate::{flag, get, get_flag, get_groups, groups_json, Change, Store, StoreError};

/// A signed-in session. The cookie carries the session id; the store only ever sees a hash
/// of it, so a leaked database does not hand out live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub username: UserName,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// Sorted and de-duplicated when stored.
    pub groups: Vec<GroupName>,
    pub admin: bool,
    /// The id of the provider that signed the user in.
    pub provider: String,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds; only moves forward (see [`Store::touch_session`]).
    pub last_seen: i64,
}

macro_rules! session_columns {
    () => {
        "id_hash, username, email, display_name, groups_json, admin, provider, created_at, \
         last_seen"
    };
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: get(row, "id_hash")?,
        username: UserName::new(&get::<String>(row, "username")?),
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        groups: get_groups(row, "groups_json")?,
        admin: get_flag(row, "admin")?,
        provider: get(row, "provider")?,
        created_at: get(row, "created_at")?,
        last_seen: get(row, "last_seen")?,
    })
}

/// What the audit log keeps of a revoked session: who, how and when — not its groups (a
/// directory user may have thousands) nor its provider data (tokens).
fn audit_json(row: &AnyRow) -> Result<Value, StoreError> {
    Ok(json!({
        "id_hash": get::<String>(row, "id_hash")?,
        "username": get::<String>(row, "username")?,
        "provider": get::<String>(row, "provider")?,
        "created_at": get::<i64>(row, "created_at")?,
        "last_seen": get::<i64>(row, "last_seen")?,
    }))
}

fn changed(id_hash: String) -> Change {
    Change::Session { id_hash }
}

fn not_found(id_hash: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("session {id_hash:?}"),
    }
}

impl Store {
    /// Saves a new session. `Err(Conflict)`: a session with this id hash exists. Not
    /// announced on the change feed (nothing can have cached it yet).
    pub async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO sessions (",
            session_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(session.id_hash.clone())
        .bind(session.username.as_str().to_owned())
        .bind(session.email.clone())
        .bind(session.display_name.clone())
        .bind(groups_json(&session.groups)?)
        .bind(flag(session.admin))
        .bind(session.provider.clone())
        .bind(session.created_at)
        .bind(session.last_seen)
        .execute(&self.pool)
        .await
        .map_err(db_unique("saving session", || format!("session {:?}", session.id_hash)))?;
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
    /// may report out of order). A missing session is not an error. Not announced.
    pub async fn touch_session(&self, id_hash: &str, last_seen: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $2 WHERE id_hash = $1 AND last_seen < $2")
            .bind(id_hash.to_owned())
            .bind(last_seen)
            .execute(&self.pool)
            .await
            .map_err(db("touching session"))?;
        Ok(())
    }

    /// Replaces a session's groups after its provider re-checked them (not an admin
    /// change: no audit row), for a request at `seen_at`, which becomes the session's
    /// last activity if it is later than the stored one (a replica reading the session back
    /// then counts the re-check interval from there). Announced as [`Change::Session`] so
    /// replicas drop their cached copy. `Err(NotFound)`: no such session.
    pub async fn update_session_groups(
        &self,
        id_hash: &str,
        groups: &[GroupName],
        seen_at: i64,
    ) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE sessions SET groups_json = $2, \
             last_seen = CASE WHEN last_seen < $3 THEN $3 ELSE last_seen END WHERE id_hash = $1",
        )
        .bind(id_hash.to_owned())
        .bind(groups_json(groups)?)
        .bind(seen_at)
        .execute(&self.pool)
        .await
        .map_err(db("updating session groups"))?;
        if result.rows_affected() == 0 {
            return Err(not_found(id_hash));
        }
        self.announce([changed(id_hash.to_owned())]);
        Ok(())
    }

    /// Stores what a provider needs later for a session (e.g. an OIDC refresh token and ID
    /// token), as JSON text. `Err(NotFound)`: no such session.
    pub async fn set_session_provider_data(&self, id_hash: &str, data: &str) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE sessions SET provider_data = $2 WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .bind(data.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("saving session provider data"))?;
        if result.rows_affected() == 0 {
            return Err(not_found(id_hash));
        }
        Ok(())
    }

    /// What [`Store::set_session_provider_data`] stored for a session, if anything.
    pub async fn session_provider_data(&self, id_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT provider_data FROM sessions WHERE id_hash = $1")
            .bind(id_hash.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading session provider data"))?;
        match row {
            Some(r) => get(&r, "provider_data"),
            None => Ok(None),
        }
    }

    /// Deletes one session (sign-out, revocation, expiry) with its `session.delete` audit
    /// row, in one transaction. False: no such session (and no audit row).
    pub async fn delete_session(&self, id_hash: &str, actor: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("deleting session").await?;
        let Some(row) = sqlx::query(concat!(
            "DELETE FROM sessions WHERE id_hash = $1 RETURNING ",
            session_columns!()
        ))
        .bind(id_hash.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("deleting session"))?
        else {
            return Ok(false);
        };
        let username: String = get(&row, "username")?;
        Entry {
            actor,
            action: "session.delete",
            target: &username,
            detail: Value::Null,
            before: Some(audit_json(&row)?),
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("deleting session"))?;
        self.announce([changed(id_hash.to_owned())]);
        Ok(true)
    }

    /// Deletes every session of `username` (revocation) with one `user.sessions.delete`
    /// audit row listing them, in one transaction; returns how many there were (none: no
    /// audit row).
    pub async fn delete_user_sessions(&self, username: &UserName, actor: &Actor) -> Result<u64, StoreError> {
        let mut tx = self.begin_write("deleting user's sessions").await?;
        let rows = sqlx::query(concat!(
            "DELETE FROM sessions WHERE username = $1 RETURNING ",
            session_columns!()
        ))
        .bind(username.as_str().to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(db("deleting user's sessions"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let before = rows.iter().map(audit_json).collect::<Result<Vec<_>, _>>()?;
        let ids = rows
            .iter()
            .map(|r| get::<String>(r, "id_hash"))
            .collect::<Result<Vec<_>, _>>()?;
        Entry {
            actor,
            action: "user.sessions.delete",
            target: username.as_str(),
            detail: json!({ "count": ids.len() }),
            before: Some(Value::Array(before)),
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("deleting user's sessions"))?;
        let n = ids.len() as u64;
        self.announce(ids.into_iter().map(changed));
        Ok(n)
    }

    /// The sessions of `username`, oldest first.
    pub async fn sessions_of(&self, username: &UserName) -> Result<Vec<SessionRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE username = $1 ORDER BY created_at, id_hash"
        ))
        .bind(username.as_str().to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing sessions"))?
        .iter()
        .map(session_from_row)
        .collect()
    }

    /// The `limit` most recently active sessions, newest first (admin view).
    pub async fn recent_sessions(&self, limit: i64) -> Result<Vec<SessionRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions ORDER BY last_seen DESC, id_hash LIMIT $1"
        ))
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing sessions"))?
        .iter()
        .map(session_from_row)
        .collect()
    }

    /// Deletes sessions idle since before `idle_before` or created before `created_before`
    /// (both epoch seconds, exclusive); returns how many. Housekeeping: no audit rows, but
    /// each deletion is announced.
    pub async fn delete_expired_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar::<Any, String>(
            "DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2 RETURNING id_hash",
        )
        .bind(idle_before)
        .bind(created_before)
        .fetch_all(&self.pool)
        .await
        .map_err(db("deleting expired sessions"))?;
        let n = ids.len() as u64;
        self.announce(ids.into_iter().map(changed));
        Ok(n)
    }
}
