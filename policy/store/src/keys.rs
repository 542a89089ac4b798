//! Keys the gateway signs assertion JWTs with: the `signing_keys` table.

use std::fmt;

use sqlx::any::AnyRow;

use crate::error::{db, db_unique};
use crate::{get, Store, StoreError};

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

    /// Saves a new signing key. `Err(Conflict)`: a key with this `kid` exists.
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
        .map_err(db_unique("saving signing key", || format!("signing key {:?}", key.kid)))?;
        Ok(())
    }

    /// Marks a key retired at `at` (still published, no longer used to sign). Retiring a
    /// retired key keeps the first time. `Err(NotFound)`: no such key.
    pub async fn retire_signing_key(&self, kid: &str, at: i64) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE signing_keys SET retired_at = COALESCE(retired_at, $2) WHERE kid = $1")
            .bind(kid.to_owned())
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db("retiring signing key"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("signing key {kid:?}"),
            });
        }
        Ok(())
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
}
