//! Keys the gateway signs assertion JWTs with: the `signing_keys` table.

use std::fmt;

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audit::{Actor, Entry};
use crate::error::{db, db_unique};
use crate::{get, Change, Store, StoreError};

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

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("private_pem", &"<redacted>")
            .field("public_jwk", &self.public_jwk)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

macro_rules! key_columns {
    () => {
        "kid, private_pem, public_jwk, created_at, retired_at"
    };
}

impl SigningKeyRecord {
    /// What the audit log keeps of a key: everything but the private half.
    fn audit_json(&self) -> Value {
        let public: Value =
            serde_json::from_str(&self.public_jwk).unwrap_or_else(|_| Value::String(self.public_jwk.clone()));
        json!({
            "kid": self.kid,
            "public_jwk": public,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        })
    }
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

impl Store {
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

    /// Saves a new signing key with its `signing_key.create` audit row (public half only),
    /// in one transaction. `Err(Conflict)`: a key with this `kid` exists.
    pub async fn insert_signing_key(&self, key: &SigningKeyRecord, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin_write("saving signing key").await?;
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
        .execute(&mut *tx)
        .await
        .map_err(db_unique("saving signing key", || format!("signing key {:?}", key.kid)))?;
        Entry {
            actor,
            action: "signing_key.create",
            target: &key.kid,
            detail: Value::Null,
            before: None,
            after: Some(key.audit_json()),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("saving signing key"))?;
        self.announce([Change::SigningKeys]);
        Ok(())
    }

    /// Marks a key retired at `at` (still published, no longer used to sign), with its
    /// `signing_key.retire` audit row, in one transaction. Retiring a retired key keeps the
    /// first time. `Err(NotFound)`: no such key.
    pub async fn retire_signing_key(&self, kid: &str, at: i64, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin_write("retiring signing key").await?;
        let before = read_key(&mut tx, kid, Some(self))
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("signing key {kid:?}"),
            })?;
        sqlx::query("UPDATE signing_keys SET retired_at = COALESCE(retired_at, $2) WHERE kid = $1")
            .bind(kid.to_owned())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db("retiring signing key"))?;
        let after = read_key(&mut tx, kid, None).await?;
        Entry {
            actor,
            action: "signing_key.retire",
            target: kid,
            detail: Value::Null,
            before: Some(before.audit_json()),
            after: after.as_ref().map(SigningKeyRecord::audit_json),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("retiring signing key"))?;
        self.announce([Change::SigningKeys]);
        Ok(())
    }

    /// Deletes a key for good (it stops being published), with its `signing_key.delete`
    /// audit row, in one transaction. False: no such key.
    pub async fn delete_signing_key(&self, kid: &str, actor: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("deleting signing key").await?;
        let Some(row) = sqlx::query(concat!(
            "DELETE FROM signing_keys WHERE kid = $1 RETURNING ",
            key_columns!()
        ))
        .bind(kid.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("deleting signing key"))?
        else {
            return Ok(false);
        };
        let before = key_from_row(&row)?;
        Entry {
            actor,
            action: "signing_key.delete",
            target: kid,
            detail: Value::Null,
            before: Some(before.audit_json()),
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("deleting signing key"))?;
        self.announce([Change::SigningKeys]);
        Ok(true)
    }
}

/// Reads a key on `conn`; with `lock_for` a store, with `FOR UPDATE` on PostgreSQL.
async fn read_key(
    conn: &mut AnyConnection,
    kid: &str,
    lock_for: Option<&Store>,
) -> Result<Option<SigningKeyRecord>, StoreError> {
    const PLAIN: &str = concat!("SELECT ", key_columns!(), " FROM signing_keys WHERE kid = $1");
    const LOCKED: &str = concat!(
        "SELECT ",
        key_columns!(),
        " FROM signing_keys WHERE kid = $1 FOR UPDATE"
    );
    let statement = lock_for.map_or(PLAIN, |store| store.locking(PLAIN, LOCKED));
    sqlx::query(statement)
        .bind(kid.to_owned())
        .fetch_optional(conn)
        .await
        .map_err(db("reading signing key"))?
        .map(|row| key_from_row(&row))
        .transpose()
}
