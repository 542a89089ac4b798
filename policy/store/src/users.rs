//! Local users: the `users` table.

use std::fmt;

use gatehouse_policy::{GroupName, UserName};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection};

use crate::audit::{Actor, Entry};
use crate::error::db;
use crate::{flag, get, get_flag, get_groups, groups_json, now, Change, Store, StoreError};

/// A user to create with [`Store::create_user`]. Its `Debug` hides the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Must not be empty.
    pub username: UserName,
    /// A PHC string (argon2id); `None` for users who cannot sign in with a password.
    pub password_hash: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub admin: bool,
    /// Sorted and de-duplicated before they are stored.
    pub groups: Vec<GroupName>,
}

/// A local user as stored. Its `Debug` hides the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: UserName,
    pub password_hash: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    /// Sorted, no duplicates.
    pub groups: Vec<GroupName>,
    /// Epoch seconds.
    pub created_at: i64,
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

// sqlx 0.9 takes only `'static` SQL unless told otherwise; column lists are macros so that
// `concat!` can splice them into literal statements.
macro_rules! user_columns {
    () => {
        "username, password_hash, email, display_name, admin, disabled, groups_json, created_at"
    };
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        username: UserName::new(&get::<String>(row, "username")?),
        password_hash: get(row, "password_hash")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        admin: get_flag(row, "admin")?,
        disabled: get_flag(row, "disabled")?,
        groups: get_groups(row, "groups_json")?,
        created_at: get(row, "created_at")?,
    })
}

fn not_found(username: &UserName) -> StoreError {
    StoreError::NotFound {
        what: format!("user {:?}", username.as_str()),
    }
}

impl UserRecord {
    /// What the audit log keeps of a user: everything but the password hash (only whether
    /// there is one).
    fn audit_json(&self) -> Value {
        json!({
            "username": self.username.as_str(),
            "email": self.email,
            "display_name": self.display_name,
            "admin": self.admin,
            "disabled": self.disabled,
            "groups": self.groups.iter().map(GroupName::as_str).collect::<Vec<_>>(),
            "has_password": self.password_hash.is_some(),
            "created_at": self.created_at,
        })
    }
}

/// One change to an existing user.
enum Update<'a> {
    Password(&'a str),
    Admin(bool),
    Disabled(bool),
    Groups(&'a [GroupName]),
}

impl Store {
    /// Creates a local user and its `user.create` audit row, in one transaction.
    /// `Err(Conflict)` if the name is taken, `Err(Invalid)` if it is empty.
    pub async fn create_user(&self, user: &NewUser, actor: &Actor) -> Result<(), StoreError> {
        if user.username.as_str().is_empty() {
            return Err(StoreError::Invalid("user name is empty".into()));
        }
        let mut tx = self.begin_write("creating user").await?;
        let result = sqlx::query(
            "INSERT INTO users (username, password_hash, email, display_name, admin, disabled, \
             groups_json, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(user.username.as_str().to_owned())
        .bind(user.password_hash.clone())
        .bind(user.email.clone())
        .bind(user.display_name.clone())
        .bind(flag(user.admin))
        .bind(groups_json(&user.groups)?)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db("creating user"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: format!("user {:?}", user.username.as_str()),
                source: None,
            });
        }
        let after = read_user(&mut tx, user.username.as_str(), None)
            .await?
            .ok_or_else(|| not_found(&user.username))?;
        Entry {
            actor,
            action: "user.create",
            target: user.username.as_str(),
            detail: Value::Null,
            before: None,
            after: Some(after.audit_json()),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("creating user"))?;
        self.announce([changed(&user.username)]);
        Ok(())
    }

    /// The user named `username`, if any.
    pub async fn user(&self, username: &UserName) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
            .bind(username.as_str().to_owned())
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

    /// Replaces the user's password hash (audit action `user.set_password`; the hash is
    /// never logged). Existing sessions are left alone. `Err(NotFound)`: no such user.
    pub async fn set_password_hash(&self, username: &UserName, hash: &str, actor: &Actor) -> Result<(), StoreError> {
        self.update_user(username, Update::Password(hash), actor).await
    }

    /// Grants or revokes Gatehouse administration (`user.set_admin`). `Err(NotFound)`: no
    /// such user.
    pub async fn set_user_admin(&self, username: &UserName, admin: bool, actor: &Actor) -> Result<(), StoreError> {
        self.update_user(username, Update::Admin(admin), actor).await
    }

    /// Disables (true) or re-enables a user (`user.set_disabled`). Existing sessions are
    /// left alone; revoke them with [`Store::delete_user_sessions`]. `Err(NotFound)`: no
    /// such user.
    pub async fn set_user_disabled(
        &self,
        username: &UserName,
        disabled: bool,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        self.update_user(username, Update::Disabled(disabled), actor).await
    }

    /// Replaces the user's groups (`user.set_groups`). `Err(NotFound)`: no such user.
    pub async fn set_user_groups(
        &self,
        username: &UserName,
        groups: &[GroupName],
        actor: &Actor,
    ) -> Result<(), StoreError> {
        self.update_user(username, Update::Groups(groups), actor).await
    }

    async fn update_user(&self, username: &UserName, update: Update<'_>, actor: &Actor) -> Result<(), StoreError> {
        let (action, context, statement) = match update {
            Update::Password(_) => (
                "user.set_password",
                "setting password",
                "UPDATE users SET password_hash = $2 WHERE username = $1",
            ),
            Update::Admin(_) => (
                "user.set_admin",
                "setting admin flag",
                "UPDATE users SET admin = $2 WHERE username = $1",
            ),
            Update::Disabled(_) => (
                "user.set_disabled",
                "setting disabled flag",
                "UPDATE users SET disabled = $2 WHERE username = $1",
            ),
            Update::Groups(_) => (
                "user.set_groups",
                "setting groups",
                "UPDATE users SET groups_json = $2 WHERE username = $1",
            ),
        };
        let mut tx = self.begin_write(context).await?;
        let before = read_user(&mut tx, username.as_str(), Some(self))
            .await?
            .ok_or_else(|| not_found(username))?;
        let query = sqlx::query(statement).bind(username.as_str().to_owned());
        let query = match update {
            Update::Password(hash) => query.bind(hash.to_owned()),
            Update::Admin(admin) => query.bind(flag(admin)),
            Update::Disabled(disabled) => query.bind(flag(disabled)),
            Update::Groups(groups) => query.bind(groups_json(groups)?),
        };
        query.execute(&mut *tx).await.map_err(db(context))?;
        let after = read_user(&mut tx, username.as_str(), None)
            .await?
            .ok_or_else(|| not_found(username))?;
        Entry {
            actor,
            action,
            target: username.as_str(),
            detail: Value::Null,
            before: Some(before.audit_json()),
            after: Some(after.audit_json()),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db(context))?;
        self.announce([changed(username)]);
        Ok(())
    }

    /// Deletes the user and, in the same transaction, every session of that user name and
    /// the `user.delete` audit row. False (and nothing deleted): no such user.
    pub async fn delete_user(&self, username: &UserName, actor: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("deleting user").await?;
        let Some(before) = sqlx::query(concat!(
            "DELETE FROM users WHERE username = $1 RETURNING ",
            user_columns!()
        ))
        .bind(username.as_str().to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("deleting user"))?
        else {
            return Ok(false);
        };
        let before = user_from_row(&before)?;
        let ended: Vec<String> =
            sqlx::query_scalar::<Any, String>("DELETE FROM sessions WHERE username = $1 RETURNING id_hash")
                .bind(username.as_str().to_owned())
                .fetch_all(&mut *tx)
                .await
                .map_err(db("deleting user's sessions"))?;
        Entry {
            actor,
            action: "user.delete",
            target: username.as_str(),
            detail: json!({ "sessions_ended": ended.len() }),
            before: Some(before.audit_json()),
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("deleting user"))?;
        self.announce(
            std::iter::once(changed(username)).chain(ended.into_iter().map(|id_hash| Change::Session { id_hash })),
        );
        Ok(true)
    }
}

fn changed(username: &UserName) -> Change {
    Change::User {
        username: username.as_str().to_owned(),
    }
}

/// Reads a user on `conn`; with `lock_for` a store, with `FOR UPDATE` on PostgreSQL, so
/// that the audit's "before" is the row the update replaces.
async fn read_user(
    conn: &mut AnyConnection,
    username: &str,
    lock_for: Option<&Store>,
) -> Result<Option<UserRecord>, StoreError> {
    const PLAIN: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1");
    const LOCKED: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1 FOR UPDATE");
    let statement = lock_for.map_or(PLAIN, |store| store.locking(PLAIN, LOCKED));
    sqlx::query(statement)
        .bind(username.to_owned())
        .fetch_optional(conn)
        .await
        .map_err(db("reading user"))?
        .map(|row| user_from_row(&row))
        .transpose()
}
