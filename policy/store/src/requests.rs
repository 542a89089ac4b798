//! Access requests (`access_requests`): a signed-in person asks for an app from its 403 page;
//! an administrator approves — with a grant, written in the same transaction — or declines.
//! One request per app and person; asking again makes it pending again.

use gatehouse_policy::{GroupName, UserName};
use serde_json::{json, Value};
use sqlx::any::AnyRow;

use crate::audit::{Actor, Entry};
use crate::error::db;
use crate::grants::GrantRecord;
use crate::{get, get_groups, groups_json, now, Change, Store, StoreError};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Approved,
    Declined,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Declined => "declined",
        }
    }
}

/// One access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub app: String,
    pub username: UserName,
    pub reason: String,
    /// The requester's groups when they asked (so a group can be granted instead).
    pub groups: Vec<GroupName>,
    pub status: RequestStatus,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

const COLUMNS: &str = "app, username, reason, groups_json, status, created_at, decided_by, decided_at";

fn request_from_row(row: &AnyRow) -> Result<AccessRequest, StoreError> {
    let status: String = get(row, "status")?;
    Ok(AccessRequest {
        app: get(row, "app")?,
        username: UserName::new(&get::<String>(row, "username")?),
        reason: get(row, "reason")?,
        groups: get_groups(row, "groups_json")?,
        status: match status.as_str() {
            "pending" => RequestStatus::Pending,
            "approved" => RequestStatus::Approved,
            "declined" => RequestStatus::Declined,
            other => return Err(StoreError::Invalid(format!("request status {other:?}"))),
        },
        created_at: get(row, "created_at")?,
        decided_by: get(row, "decided_by")?,
        decided_at: get(row, "decided_at")?,
    })
}

impl Store {
    /// Records (or renews, as pending) `user`'s request for `app`, audited as
    /// `access.request` by the requester.
    pub async fn request_access(
        &self,
        app: &str,
        user: &UserName,
        reason: &str,
        groups: &[GroupName],
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write("saving access request").await?;
        sqlx::query(
            "INSERT INTO access_requests (app, username, reason, groups_json, status, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (app, username) DO UPDATE SET \
             reason = excluded.reason, groups_json = excluded.groups_json, status = 'pending', \
             created_at = excluded.created_at, decided_by = NULL, decided_at = NULL",
        )
        .bind(app.to_owned())
        .bind(user.as_str().to_owned())
        .bind(reason.to_owned())
        .bind(groups_json(groups)?)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(db("saving access request"))?;
        Entry {
            actor,
            action: "access.request",
            target: &format!("{app}/user:{}", user.as_str()),
            detail: json!({ "reason": reason }),
            before: None,
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("saving access request"))?;
        Ok(())
    }

    /// `user`'s request for `app`, if any.
    pub async fn access_request(&self, app: &str, user: &UserName) -> Result<Option<AccessRequest>, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM access_requests WHERE app = $1 AND username = $2"
        )))
        .bind(app.to_owned())
        .bind(user.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("reading access request"))?
        .map(|r| request_from_row(&r))
        .transpose()
    }

    /// Requests, pending first (oldest first), then the latest decisions; `user`: only theirs.
    pub async fn access_requests(&self, user: Option<&UserName>) -> Result<Vec<AccessRequest>, StoreError> {
        let rows = match user {
            Some(u) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM access_requests WHERE username = $1 ORDER BY created_at DESC LIMIT 200"
                )))
                .bind(u.as_str().to_owned())
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM access_requests ORDER BY CASE status WHEN 'pending' THEN 0 ELSE 1 END, \
                 CASE status WHEN 'pending' THEN created_at ELSE -COALESCE(decided_at, 0) END LIMIT 500"
                )))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db("listing access requests"))?;
        rows.iter().map(request_from_row).collect()
    }

    /// Decides a pending request: approved with `grant` (written in the same transaction)
    /// or declined (`grant` None). Audited as `access.approve` / `access.decline`. False: no
    /// pending request of `user` for `app`.
    pub async fn decide_access_request(
        &self,
        app: &str,
        user: &UserName,
        grant: Option<&GrantRecord>,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let status = if grant.is_some() { "approved" } else { "declined" };
        let mut tx = self.begin_write("deciding access request").await?;
        let updated = sqlx::query(
            "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3 \
             WHERE app = $4 AND username = $5 AND status = 'pending'",
        )
        .bind(status)
        .bind(actor.name.clone())
        .bind(now())
        .bind(app.to_owned())
        .bind(user.as_str().to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db("deciding access request"))?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        let detail = match grant {
            Some(g) => {
                crate::grants::insert_grant(&mut tx, g).await?;
                json!({ "grant": g.audit_json() })
            }
            None => Value::Null,
        };
        Entry {
            actor,
            action: if grant.is_some() {
                "access.approve"
            } else {
                "access.decline"
            },
            target: &format!("{app}/user:{}", user.as_str()),
            detail,
            before: None,
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("deciding access request"))?;
        if grant.is_some() {
            self.announce([Change::App { slug: app.to_owned() }]);
        }
        Ok(true)
    }
}
