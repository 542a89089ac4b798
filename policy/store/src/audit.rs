//! The audit log: the `audit_log` table. Changes to access write their row in their own
//! transaction (`record`); sign-ins and other standalone events use [`Store::audit`].

use std::net::IpAddr;

use gatehouse_policy::UserName;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::error::db;
use crate::{get, now, to_json, Store, StoreError};

/// Who makes a change: written to the audit row of every change to access.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    /// A user name, `gateway` for the gateway's own housekeeping, or `cli:<os user>`.
    pub name: String,
    /// The client address of the request that asked for it, if it came over HTTP.
    pub client: Option<IpAddr>,
    /// The API token it acted with, if any: written into every audit row's detail as
    /// `"token": <name>`.
    pub token: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, client: Option<IpAddr>) -> Actor {
        Actor {
            name: name.into(),
            client,
            token: None,
        }
    }

    /// The same actor acting with API token `token` (its name), if any.
    pub fn with_token(mut self, token: Option<String>) -> Actor {
        self.token = token;
        self
    }

    /// A signed-in person acting from `client`.
    pub fn user(name: &UserName, client: Option<IpAddr>) -> Actor {
        Actor::new(name.as_str(), client)
    }

    /// The gateway itself: sign-out, expiry, re-checks, key creation at start.
    pub fn gateway() -> Actor {
        Actor::new("gateway", None)
    }

    /// The command line, as the operating-system user running it (`$USER`, else
    /// `$LOGNAME`, else `unknown`): `cli:alice`.
    pub fn cli() -> Actor {
        let user = ["USER", "LOGNAME", "USERNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".to_owned());
        Actor::new(format!("cli:{user}"), None)
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Epoch seconds.
    pub at: i64,
    /// Who did it (see [`Actor::name`]).
    pub actor: String,
    /// The client address of the request, if any.
    pub client: Option<String>,
    /// What was done, e.g. `user.create`, `signin.failure`.
    pub action: String,
    /// What it was done to, e.g. a user name or app slug.
    pub target: String,
    /// Anything else worth keeping (`null` if nothing). Never put secrets here.
    pub detail: Value,
    /// The record before the change; `None` when it was created (or for standalone events).
    /// Never holds password hashes, private keys or provider tokens.
    pub before: Option<Value>,
    /// The record after the change; `None` when it was deleted (or for standalone events).
    pub after: Option<Value>,
}

impl AuditEvent {
    /// A standalone event by `actor`, now, with no detail and no before/after.
    pub fn new(actor: &Actor, action: impl Into<String>, target: impl Into<String>) -> AuditEvent {
        AuditEvent {
            at: now(),
            actor: actor.name.clone(),
            client: actor.client.map(|c| c.to_string()),
            action: action.into(),
            target: target.into(),
            detail: match &actor.token {
                Some(t) => serde_json::json!({ "token": t }),
                None => Value::Null,
            },
            before: None,
            after: None,
        }
    }
}

/// Which audit events [`Store::audit_events`] returns. Fields left `None` match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exactly this actor name.
    pub actor: Option<String>,
    /// Exactly this action, e.g. `user.set_groups`.
    pub action: Option<String>,
    /// Exactly this target.
    pub target: Option<String>,
    /// Events about this app: its own (target = the slug) and those of its grants and
    /// access requests (target `<slug>/…`).
    pub app: Option<String>,
    /// At or after this time (epoch seconds).
    pub since: Option<i64>,
    /// Before this time (epoch seconds, exclusive).
    pub until: Option<i64>,
    /// At most this many events (negative: none). Default 100.
    pub limit: i64,
    /// Skip this many of the newest matching events first (pages). Default 0.
    pub offset: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            actor: None,
            action: None,
            target: None,
            app: None,
            since: None,
            until: None,
            limit: 100,
            offset: 0,
        }
    }
}

macro_rules! audit_columns {
    () => {
        "at, actor, client, action, target, detail_json, before_json, after_json"
    };
}

fn json_column(row: &AnyRow, column: &str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = get(row, column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| crate::error::bad_column(column, e)))
        .transpose()
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        client: get(row, "client")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        detail: json_column(row, "detail_json")?.unwrap_or(Value::Null),
        before: json_column(row, "before_json")?,
        after: json_column(row, "after_json")?,
    })
}

/// Writes `event` on `conn` (inside the caller's transaction, for changes).
async fn insert(conn: &mut AnyConnection, event: &AuditEvent) -> Result<(), StoreError> {
    let optional = |v: &Option<Value>| v.as_ref().map(to_json).transpose();
    sqlx::query(concat!(
        "INSERT INTO audit_log (",
        audit_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(event.at)
    .bind(event.actor.clone())
    .bind(event.client.clone())
    .bind(event.action.clone())
    .bind(event.target.clone())
    .bind(to_json(&event.detail)?)
    .bind(optional(&event.before)?)
    .bind(optional(&event.after)?)
    .execute(conn)
    .await
    .map_err(db("writing audit log"))?;
    Ok(())
}

/// The audit row of a change, written in the change's transaction.
pub(crate) struct Entry<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) action: &'static str,
    pub(crate) target: &'a str,
    pub(crate) detail: Value,
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
}

impl Entry<'_> {
    pub(crate) async fn write(self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        let mut event = AuditEvent::new(self.actor, self.action, self.target);
        event.detail = match (self.detail, event.detail) {
            (Value::Null, token) => token,
            (Value::Object(mut d), Value::Object(token)) => {
                d.extend(token);
                Value::Object(d)
            }
            (d, Value::Null) => d,
            (d, token) => serde_json::json!({ "detail": d, "token": token["token"] }),
        };
        event.before = self.before;
        event.after = self.after;
        insert(conn, &event).await
    }
}

impl Store {
    /// Appends a standalone event (sign-in success or failure, sign-out, …). Changes to
    /// access write their own rows; do not log them again here.
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db("writing audit log"))?;
        insert(&mut conn, event).await
    }

    /// The latest audit events matching `filter`, newest first (same second: last written
    /// first).
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR target = $3) AND at >= $4 AND at < $5 \
             AND ($8 IS NULL OR target = $8 OR substr(target, 1, length($8) + 1) = $8 || '/') \
             ORDER BY at DESC, id DESC LIMIT $6 OFFSET $7"
        ))
        .bind(filter.actor.clone())
        .bind(filter.action.clone())
        .bind(filter.target.clone())
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .bind(filter.app.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading audit log"))?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}
