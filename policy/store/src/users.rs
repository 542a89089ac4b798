//! Local users: the `users` table.

use std::fmt;

use gatehouse_policy::{GroupName, UserName};
use sqlx::any::AnyRow;
use sqlx::Any;

use crate::error::db;
use crate::{flag, get, get_flag, get_groups, groups_json, now, Store, StoreError};

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

impl Store {
    /// Creates a local user. `Err(Conflict)` if the name is taken, `Err(Invalid)` if it is
    /// empty.
    pub async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        if user.username.as_str().is_empty() {
            return Err(StoreError::Invalid("user name is empty".into()));
        }
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
        .execute(&self.pool)
        .await
        .map_err(db("creating user"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: format!("user {:?}", user.username.as_str()),
                source: None,
            });
        }
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

    /// Replaces the user's password hash. `Err(NotFound)`: no such user.
    pub async fn set_password_hash(&self, username: &UserName, hash: &str) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE users SET password_hash = $2 WHERE username = $1")
            .bind(username.as_str().to_owned())
            .bind(hash.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("setting password"))?;
        found(result.rows_affected(), username)
    }

    /// Grants or revokes Gatehouse administration. `Err(NotFound)`: no such user.
    pub async fn set_user_admin(&self, username: &UserName, admin: bool) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE users SET admin = $2 WHERE username = $1")
            .bind(username.as_str().to_owned())
            .bind(flag(admin))
            .execute(&self.pool)
            .await
            .map_err(db("setting admin flag"))?;
        found(result.rows_affected(), username)
    }

    /// Disables (true) or re-enables a user. Existing sessions are left alone; revoke them
    /// with [`Store::delete_user_sessions`]. `Err(NotFound)`: no such user.
    pub async fn set_user_disabled(&self, username: &UserName, disabled: bool) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE users SET disabled = $2 WHERE username = $1")
            .bind(username.as_str().to_owned())
            .bind(flag(disabled))
            .execute(&self.pool)
            .await
            .map_err(db("setting disabled flag"))?;
        found(result.rows_affected(), username)
    }

    /// Replaces the user's groups. `Err(NotFound)`: no such user.
    pub async fn set_user_groups(&self, username: &UserName, groups: &[GroupName]) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE users SET groups_json = $2 WHERE username = $1")
            .bind(username.as_str().to_owned())
            .bind(groups_json(groups)?)
            .execute(&self.pool)
            .await
            .map_err(db("setting groups"))?;
        found(result.rows_affected(), username)
    }

    /// Deletes the user and, in the same transaction, every session of that user name.
    /// False (and nothing deleted): no such user.
    pub async fn delete_user(&self, username: &UserName) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("deleting user"))?;
        let deleted = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db("deleting user"))?
            .rows_affected();
        if deleted == 0 {
            tx.rollback().await.map_err(db("deleting user"))?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(username.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db("deleting user's sessions"))?;
        tx.commit().await.map_err(db("deleting user"))?;
        Ok(true)
    }
}

fn found(rows: u64, username: &UserName) -> Result<(), StoreError> {
    if rows == 0 {
        Err(not_found(username))
    } else {
        Ok(())
    }
}
