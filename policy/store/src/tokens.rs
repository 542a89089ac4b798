//! API tokens for the JSON admin API (the `api_tokens` table). The store never sees a
//! token's secret: callers hand it the SHA-256 (`secret_hash`), and a token is found by that
//! hash. Revoking keeps the row (listed as revoked) and is audited; so is creating.

use serde_json::{json, Value};
use sqlx::any::AnyRow;

use crate::audit::{Actor, Entry};
use crate::error::{db, db_unique};
use crate::{get, Store, StoreError};

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenScope {
    /// Everything an administrator may do.
    Admin,
    /// What the owners of this app (slug) may do for it, nothing else.
    App(String),
}

impl TokenScope {
    /// `admin` or `app:<slug>`, as stored and shown.
    pub fn as_string(&self) -> String {
        match self {
            TokenScope::Admin => "admin".to_owned(),
            TokenScope::App(slug) => format!("app:{slug}"),
        }
    }

    /// The scope written as [`TokenScope::as_string`] does; `None` for anything else.
    pub fn parse(text: &str) -> Option<TokenScope> {
        match text.trim() {
            "admin" => Some(TokenScope::Admin),
            t => t
                .strip_prefix("app:")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| TokenScope::App(s.to_owned())),
        }
    }
}

/// One API token as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Short public id (in the UI and revoke forms); not a secret.
    pub id: String,
    pub name: String,
    pub scope: TokenScope,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    pub created_by: String,
    pub created_at: i64,
    /// Epoch seconds from which it is refused; `None`: until revoked.
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

impl ApiTokenRecord {
    /// Whether it may be used at `now`: not revoked, not expired (the end is exclusive).
    pub fn usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }

    fn audit_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "scope": self.scope.as_string(),
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        })
    }
}

/// The hash stored for (and looked up by) a token secret: lower-case hex SHA-256. A plain
/// hash suffices because secrets are long random strings, not passwords.
pub fn api_token_hash(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const COLUMNS: &str =
    "id, name, scope, secret_hash, created_by, created_at, expires_at, last_used_at, revoked_at, revoked_by";

fn token_from_row(row: &AnyRow) -> Result<ApiTokenRecord, StoreError> {
    let scope: String = get(row, "scope")?;
    Ok(ApiTokenRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        scope: TokenScope::parse(&scope).ok_or_else(|| StoreError::Invalid(format!("token scope {scope:?}")))?,
        secret_hash: get(row, "secret_hash")?,
        created_by: get(row, "created_by")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        last_used_at: get(row, "last_used_at")?,
        revoked_at: get(row, "revoked_at")?,
        revoked_by: get(row, "revoked_by")?,
    })
}

impl Store {
    /// Saves a new token with its `token.create` audit row. [`StoreError::Conflict`]: a live
    /// (unrevoked) token has that name, or the id or hash exists.
    pub async fn create_api_token(&self, token: &ApiTokenRecord, actor: &Actor) -> Result<(), StoreError> {
        if token.name.trim().is_empty() || token.id.is_empty() || token.secret_hash.is_empty() {
            return Err(StoreError::Invalid("a token needs an id, a name and a hash".into()));
        }
        let mut tx = self.begin_write("creating API token").await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, scope, secret_hash, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id.clone())
        .bind(token.name.clone())
        .bind(token.scope.as_string())
        .bind(token.secret_hash.clone())
        .bind(token.created_by.clone())
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_unique("creating API token", || {
            format!("API token {:?}", token.name)
        }))?;
        Entry {
            actor,
            action: "token.create",
            target: &format!("token:{}", token.name),
            detail: Value::Null,
            before: None,
            after: Some(token.audit_json()),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("creating API token"))?;
        Ok(())
    }

    /// The token whose secret hashes to `secret_hash`, revoked and expired ones too (see
    /// [`ApiTokenRecord::usable`]).
    pub async fn api_token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE secret_hash = $1"
        )))
        .bind(secret_hash.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading API token"))?
        .map(|r| token_from_row(&r))
        .transpose()
    }

    /// Every token, live ones first, newest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END, \
             created_at DESC, name LIMIT 1000"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing API tokens"))?
        .iter()
        .map(token_from_row)
        .collect()
    }

    /// Revokes token `id` with its `token.revoke` audit row. False: no such live token.
    pub async fn revoke_api_token(&self, id: &str, now: i64, actor: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("revoking API token").await?;
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL \
             RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(actor.name.clone())
        .bind(id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("revoking API token"))?
        else {
            return Ok(false);
        };
        let after = token_from_row(&row)?;
        let before = ApiTokenRecord {
            revoked_at: None,
            revoked_by: None,
            ..after.clone()
        };
        Entry {
            actor,
            action: "token.revoke",
            target: &format!("token:{}", after.name),
            detail: Value::Null,
            before: Some(before.audit_json()),
            after: Some(after.audit_json()),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("revoking API token"))?;
        Ok(true)
    }

    /// Records that token `id` was used at `now` (at most one write a minute per token: API
    /// calls are not slowed by it). Not audited; the changes made with it are.
    pub async fn touch_api_token(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(now)
        .bind(id.to_owned())
        .bind(now - 60)
        .execute(&self.pool)
        .await
        .map_err(db("recording API token use"))?;
        Ok(())
    }
}
