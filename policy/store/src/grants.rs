//! Grants: one user or group allowed into one app, optionally until a time (the `grants`
//! table). They add to the app's allow-lists; the gateway leaves expired ones out of its
//! snapshot and recompiles it the moment the next one expires.

use gatehouse_policy::{GroupName, UserName};
use serde_json::{json, Value};
use sqlx::any::AnyRow;

use crate::audit::{Actor, Entry};
use crate::error::db;
use crate::{get, Change, Store, StoreError};

/// Whom a grant lets in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grantee {
    User(UserName),
    Group(GroupName),
}

impl Grantee {
    fn kind(&self) -> &'static str {
        match self {
            Grantee::User(_) => "user",
            Grantee::Group(_) => "group",
        }
    }

    fn name(&self) -> &str {
        match self {
            Grantee::User(u) => u.as_str(),
            Grantee::Group(g) => g.as_str(),
        }
    }
}

/// One grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub app: String,
    pub grantee: Grantee,
    /// Epoch seconds after which it no longer lets anyone in; `None`: until removed.
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl GrantRecord {
    /// Whether it lets people in at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }

    pub(crate) fn audit_json(&self) -> Value {
        json!({
            "app": self.app,
            "kind": self.grantee.kind(),
            "name": self.grantee.name(),
            "expires_at": self.expires_at,
        })
    }

    /// The audit target: `app/kind:name`.
    fn target(&self) -> String {
        format!("{}/{}:{}", self.app, self.grantee.kind(), self.grantee.name())
    }
}

fn grant_from_row(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    let kind: String = get(row, "kind")?;
    let name: String = get(row, "name")?;
    let grantee = match kind.as_str() {
        "user" => Grantee::User(UserName::new(&name)),
        "group" => Grantee::Group(GroupName::new(&name)),
        other => return Err(StoreError::Invalid(format!("grant kind {other:?}"))),
    };
    Ok(GrantRecord {
        app: get(row, "app")?,
        grantee,
        expires_at: get(row, "expires_at")?,
        created_by: get(row, "created_by")?,
        created_at: get(row, "created_at")?,
    })
}

/// Inserts or replaces a grant inside a caller's transaction.
pub(crate) async fn insert_grant(conn: &mut sqlx::AnyConnection, grant: &GrantRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO grants (app, kind, name, expires_at, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (app, kind, name) DO UPDATE SET expires_at = excluded.expires_at, \
         created_by = excluded.created_by, created_at = excluded.created_at",
    )
    .bind(grant.app.clone())
    .bind(grant.grantee.kind())
    .bind(grant.grantee.name().to_owned())
    .bind(grant.expires_at)
    .bind(grant.created_by.clone())
    .bind(grant.created_at)
    .execute(conn)
    .await
    .map_err(db("saving grant"))?;
    Ok(())
}

impl Store {
    /// Every grant (expired ones too), by app, kind and name.
    pub async fn grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        sqlx::query("SELECT app, kind, name, expires_at, created_by, created_at FROM grants ORDER BY app, kind, name")
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing grants"))?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    /// Adds a grant, or replaces the one for the same app and grantee (a new expiry), with
    /// its `grant.add` audit row in one transaction.
    pub async fn put_grant(&self, grant: &GrantRecord, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.begin_write("saving grant").await?;
        let before = sqlx::query(
            "SELECT app, kind, name, expires_at, created_by, created_at FROM grants WHERE app = $1 AND kind = $2 AND name = $3",
        )
        .bind(grant.app.clone())
        .bind(grant.grantee.kind())
        .bind(grant.grantee.name().to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("saving grant"))?
        .map(|r| grant_from_row(&r))
        .transpose()?;
        insert_grant(&mut tx, grant).await?;
        Entry {
            actor,
            action: "grant.add",
            target: &grant.target(),
            detail: Value::Null,
            before: before.as_ref().map(GrantRecord::audit_json),
            after: Some(grant.audit_json()),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("saving grant"))?;
        self.announce([Change::App {
            slug: grant.app.clone(),
        }]);
        Ok(())
    }

    /// Removes a grant with its `grant.remove` audit row. False: there was none.
    pub async fn delete_grant(&self, app: &str, grantee: &Grantee, actor: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("removing grant").await?;
        let Some(row) = sqlx::query(
            "DELETE FROM grants WHERE app = $1 AND kind = $2 AND name = $3 \
             RETURNING app, kind, name, expires_at, created_by, created_at",
        )
        .bind(app.to_owned())
        .bind(grantee.kind())
        .bind(grantee.name().to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("removing grant"))?
        else {
            return Ok(false);
        };
        let before = grant_from_row(&row)?;
        Entry {
            actor,
            action: "grant.remove",
            target: &before.target(),
            detail: Value::Null,
            before: Some(before.audit_json()),
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("removing grant"))?;
        self.announce([Change::App { slug: app.to_owned() }]);
        Ok(true)
    }
}
