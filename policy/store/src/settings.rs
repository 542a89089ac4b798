//! Gateway-wide settings made in the admin UI (the `settings` table): one JSON value per
//! name, e.g. `branding`. They take precedence over the config file's; removing one falls
//! back to the file. The store keeps them opaque: the gateway validates what it saves and
//! what it reads. A change announces [`Change::Settings`].

use serde_json::{json, Value};
use sqlx::Row;

use crate::audit::{Actor, Entry};
use crate::error::db;
use crate::{Change, Store, StoreError};

/// Longest value the store accepts, bytes.
pub const MAX_SETTING_BYTES: usize = 16 * 1024;

impl Store {
    /// The value of setting `name`, if one was saved.
    pub async fn setting(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a setting"))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("value").map_err(db("reading a setting"))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Invalid(format!("setting {name:?} is not JSON: {e}")))
    }

    /// Saves (`Some`) or removes (`None`) setting `name`, with its `setting.update` audit
    /// row (before → after) in the same transaction.
    pub async fn put_setting(&self, name: &str, value: Option<&Value>, actor: &Actor) -> Result<(), StoreError> {
        let text = value.map(Value::to_string);
        if name.is_empty() || text.as_ref().is_some_and(|t| t.len() > MAX_SETTING_BYTES) {
            return Err(StoreError::Invalid(format!(
                "setting {name:?}: empty name or value over {MAX_SETTING_BYTES} bytes"
            )));
        }
        let mut tx = self.begin_write("saving a setting").await?;
        let before: Option<String> = sqlx::query(self.locking(
            "SELECT value FROM settings WHERE name = $1",
            "SELECT value FROM settings WHERE name = $1 FOR UPDATE",
        ))
        .bind(name.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("saving a setting"))?
        .map(|r| r.try_get("value"))
        .transpose()
        .map_err(db("saving a setting"))?;
        match &text {
            Some(t) => sqlx::query(
                "INSERT INTO settings (name, value, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(name.to_owned())
            .bind(t.clone())
            .bind(actor.name.clone())
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .map_err(db("saving a setting"))?,
            None => sqlx::query("DELETE FROM settings WHERE name = $1")
                .bind(name.to_owned())
                .execute(&mut *tx)
                .await
                .map_err(db("saving a setting"))?,
        };
        let parse = |t: &String| serde_json::from_str::<Value>(t).unwrap_or_else(|_| json!(t));
        Entry {
            actor,
            action: "setting.update",
            target: name,
            detail: Value::Null,
            before: before.as_ref().map(parse),
            after: value.cloned(),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("saving a setting"))?;
        self.announce([Change::Settings]);
        Ok(())
    }
}
