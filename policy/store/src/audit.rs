//! The audit log: the `audit_log` table.

use sqlx::any::AnyRow;

use crate::error::db;
use crate::{get, Store, StoreError};

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

macro_rules! audit_columns {
    () => {
        "at, actor, action, target, detail_json"
    };
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    let detail: String = get(row, "detail_json")?;
    Ok(AuditEvent {
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        detail: serde_json::from_str(&detail).map_err(|e| crate::error::bad_column("detail_json", e))?,
    })
}

impl Store {
    /// Appends to the audit log.
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO audit_log (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(event.at)
        .bind(event.actor.clone())
        .bind(event.action.clone())
        .bind(event.target.clone())
        .bind(crate::to_json(&event.detail)?)
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
