//! Apps defined in the admin UI: the `apps` table.

use std::fmt;
use std::str::FromStr;

use gatehouse_policy::{GroupName, UserName};
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audit::{Actor, Entry};
use crate::error::db;
use crate::{
    flag, get, get_flag, get_groups, get_list, get_users, groups_json, to_json, users_json, Change, Store, StoreError,
};

/// Who may open an app, as stored (the allow-lists are beside it in [`AppRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Anyone signed in.
    Authenticated,
    /// Admins and the app's allow-listed groups and users.
    Restricted,
}

impl Access {
    /// The stored spelling: `public`, `authenticated` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Authenticated => "authenticated",
            Access::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = StoreError;

    /// Exactly `public`, `authenticated` or `restricted`; anything else is
    /// [`StoreError::Invalid`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Access::Public),
            "authenticated" => Ok(Access::Authenticated),
            "restricted" => Ok(Access::Restricted),
            _ => Err(StoreError::Invalid(format!(
                "access must be public, authenticated or restricted, not {s:?}"
            ))),
        }
    }
}

/// What a checked save expects to find ([`Store::save_app`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No app with this slug: a creation.
    Absent,
    /// The app as last read: its `updated_at`.
    Version(i64),
}

/// An app as configured in the admin UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub upstreams: Vec<String>,
    pub access: Access,
    /// Sorted and de-duplicated when stored.
    pub allow_groups: Vec<GroupName>,
    /// Sorted and de-duplicated when stored.
    pub allow_users: Vec<UserName>,
    /// People who manage this app (not gateway administrators). Sorted, de-duplicated.
    pub owner_users: Vec<UserName>,
    /// Groups whose members manage this app. Sorted, de-duplicated.
    pub owner_groups: Vec<GroupName>,
    /// Identity header options, as in `[[apps]] headers`: Authelia-style `Remote-*`,
    /// `Plotly-User-Data`, and which groups are sent (`all` or `referenced`).
    pub remote_headers: bool,
    pub plotly_user_data: bool,
    pub groups_sent: String,
    /// The App Portal lists it (to those who may open it). Default true.
    pub portal_visible: bool,
    /// Position on the App Portal: lower first; ties keep the file's order, then slug.
    pub portal_order: i64,
    /// Labels on the portal card, which the portal filters by (as typed; validated by the
    /// config crate's rules for `[[apps]] tags`).
    pub tags: Vec<String>,
    /// The portal card's picture: an `https://` URL or a path on the gateway; empty: none.
    pub thumbnail: String,
    /// `headers.dash_token`: a `kcIdToken` cookie for `dash_enterprise_auth`.
    pub dash_token: bool,
    /// Epoch seconds. [`Store::upsert_app`] keeps the first one.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

macro_rules! app_columns {
    () => {
        "slug, name, description, upstreams_json, access, allow_groups_json, allow_users_json, \
         owner_users_json, owner_groups_json, remote_headers, plotly_user_data, groups_sent, \
         portal_visible, portal_order, tags_json, thumbnail, dash_token, created_at, updated_at"
    };
}

/// Inserts an app or replaces every column but `created_at`; `$cond` may restrict the
/// replacement (a `WHERE` on the existing row).
macro_rules! app_upsert {
    ($cond:literal) => {
        concat!(
            "INSERT INTO apps (",
            app_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
             ON CONFLICT (slug) DO UPDATE SET \
             name = excluded.name, description = excluded.description, \
             upstreams_json = excluded.upstreams_json, access = excluded.access, \
             allow_groups_json = excluded.allow_groups_json, \
             allow_users_json = excluded.allow_users_json, owner_users_json = excluded.owner_users_json, \
             owner_groups_json = excluded.owner_groups_json, remote_headers = excluded.remote_headers, \
             plotly_user_data = excluded.plotly_user_data, groups_sent = excluded.groups_sent, \
             portal_visible = excluded.portal_visible, portal_order = excluded.portal_order, \
             tags_json = excluded.tags_json, thumbnail = excluded.thumbnail, dash_token = excluded.dash_token, \
             updated_at = excluded.updated_at",
            $cond
        )
    };
}

impl AppRecord {
    /// What the audit log keeps of an app: all of it.
    fn audit_json(&self) -> Value {
        json!({
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "upstreams": self.upstreams,
            "access": self.access,
            "allow_groups": self.allow_groups.iter().map(GroupName::as_str).collect::<Vec<_>>(),
            "allow_users": self.allow_users.iter().map(UserName::as_str).collect::<Vec<_>>(),
            "owner_users": self.owner_users.iter().map(UserName::as_str).collect::<Vec<_>>(),
            "owner_groups": self.owner_groups.iter().map(GroupName::as_str).collect::<Vec<_>>(),
            "remote_headers": self.remote_headers,
            "plotly_user_data": self.plotly_user_data,
            "groups_sent": self.groups_sent,
            "portal_visible": self.portal_visible,
            "portal_order": self.portal_order,
            "tags": self.tags,
            "thumbnail": self.thumbnail,
            "dash_token": self.dash_token,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

fn app_from_row(row: &AnyRow) -> Result<AppRecord, StoreError> {
    let access: String = get(row, "access")?;
    Ok(AppRecord {
        slug: get(row, "slug")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        upstreams: get_list(row, "upstreams_json")?,
        access: access.parse().map_err(|e| crate::error::bad_column("access", e))?,
        allow_groups: get_groups(row, "allow_groups_json")?,
        allow_users: get_users(row, "allow_users_json")?,
        owner_users: get_users(row, "owner_users_json")?,
        owner_groups: get_groups(row, "owner_groups_json")?,
        remote_headers: get_flag(row, "remote_headers")?,
        plotly_user_data: get_flag(row, "plotly_user_data")?,
        groups_sent: get(row, "groups_sent")?,
        portal_visible: get_flag(row, "portal_visible")?,
        portal_order: get(row, "portal_order")?,
        tags: get_list(row, "tags_json")?,
        thumbnail: get(row, "thumbnail")?,
        dash_token: get_flag(row, "dash_token")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

impl Store {
    /// Every app, by slug.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        sqlx::query(concat!("SELECT ", app_columns!(), " FROM apps ORDER BY slug"))
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing apps"))?
            .iter()
            .map(app_from_row)
            .collect()
    }

    /// The app with this slug (exact match), if any.
    pub async fn app(&self, slug: &str) -> Result<Option<AppRecord>, StoreError> {
        read_app(&mut *self.pool.acquire().await.map_err(db("reading app"))?, slug, None).await
    }

    /// Creates the app, or replaces every field of an existing one but `created_at`, with
    /// its `app.create` or `app.update` audit row, in one transaction. `Err(Invalid)` for an
    /// empty slug. For edits people make, [`Store::save_app`] checks the version first.
    pub async fn upsert_app(&self, app: &AppRecord, actor: &Actor) -> Result<(), StoreError> {
        self.write_app(app, None, actor).await
    }

    /// [`Store::upsert_app`] only if the app is as the editor saw it, checked and written in
    /// one statement (compare-and-set): [`Expect::Absent`] creates only a new slug
    /// (`Err(Conflict)` if taken); [`Expect::Version`] replaces only the row whose
    /// `updated_at` is that version (`Err(Changed)` if someone saved since, `Err(NotFound)`
    /// if it was deleted).
    pub async fn save_app(&self, app: &AppRecord, expect: Expect, actor: &Actor) -> Result<(), StoreError> {
        self.write_app(app, Some(expect), actor).await
    }

    async fn write_app(&self, app: &AppRecord, expect: Option<Expect>, actor: &Actor) -> Result<(), StoreError> {
        if app.slug.is_empty() {
            return Err(StoreError::Invalid("app slug is empty".into()));
        }
        let what = || format!("app {:?}", app.slug);
        let mut tx = self.begin_write("saving app").await?;
        let before = read_app(&mut tx, &app.slug, Some(self)).await?;
        if let (Some(Expect::Version(_)), None) = (expect, &before) {
            return Err(StoreError::NotFound { what: what() });
        }
        // The condition of the compare-and-set: the row may be replaced only if …
        let statement = match expect {
            None => app_upsert!(""),
            Some(Expect::Absent) => app_upsert!(" WHERE 1 = 0"),
            Some(Expect::Version(_)) => app_upsert!(" WHERE apps.updated_at = $20"),
        };
        let mut query = sqlx::query(statement)
            .bind(app.slug.clone())
            .bind(app.name.clone())
            .bind(app.description.clone())
            .bind(to_json(&app.upstreams)?)
            .bind(app.access.as_str())
            .bind(groups_json(&app.allow_groups)?)
            .bind(users_json(&app.allow_users)?)
            .bind(users_json(&app.owner_users)?)
            .bind(groups_json(&app.owner_groups)?)
            .bind(flag(app.remote_headers))
            .bind(flag(app.plotly_user_data))
            .bind(app.groups_sent.clone())
            .bind(flag(app.portal_visible))
            .bind(app.portal_order)
            .bind(to_json(&app.tags)?)
            .bind(app.thumbnail.clone())
            .bind(flag(app.dash_token))
            .bind(app.created_at)
            .bind(app.updated_at);
        if let Some(Expect::Version(v)) = expect {
            query = query.bind(v);
        }
        let written = query.execute(&mut *tx).await.map_err(db("saving app"))?.rows_affected();
        if written == 0 {
            return Err(match expect {
                Some(Expect::Absent) => StoreError::Conflict {
                    what: what(),
                    source: None,
                },
                _ => StoreError::Changed { what: what() },
            });
        }
        let after = read_app(&mut tx, &app.slug, None).await?;
        Entry {
            actor,
            action: if before.is_some() { "app.update" } else { "app.create" },
            target: &app.slug,
            detail: Value::Null,
            before: before.as_ref().map(AppRecord::audit_json),
            after: after.as_ref().map(AppRecord::audit_json),
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("saving app"))?;
        self.announce([Change::App { slug: app.slug.clone() }]);
        Ok(())
    }

    /// Deletes an app with its `app.delete` audit row, in one transaction. False: no such
    /// app (and no audit row).
    pub async fn delete_app(&self, slug: &str, actor: &Actor) -> Result<bool, StoreError> {
        self.remove_app(slug, None, actor).await
    }

    /// [`Store::delete_app`] only if the app is still at `version` (compare-and-set):
    /// `Err(Changed)` if someone saved it since; `Ok(false)` if it is gone.
    pub async fn delete_app_at(&self, slug: &str, version: i64, actor: &Actor) -> Result<bool, StoreError> {
        self.remove_app(slug, Some(version), actor).await
    }

    async fn remove_app(&self, slug: &str, version: Option<i64>, actor: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.begin_write("deleting app").await?;
        const ANY: &str = concat!("DELETE FROM apps WHERE slug = $1 RETURNING ", app_columns!());
        const AT: &str = concat!(
            "DELETE FROM apps WHERE slug = $1 AND updated_at = $2 RETURNING ",
            app_columns!()
        );
        let mut query = sqlx::query(if version.is_some() { AT } else { ANY }).bind(slug.to_owned());
        if let Some(v) = version {
            query = query.bind(v);
        }
        let Some(row) = query.fetch_optional(&mut *tx).await.map_err(db("deleting app"))? else {
            if version.is_some() && read_app(&mut tx, slug, None).await?.is_some() {
                return Err(StoreError::Changed {
                    what: format!("app {slug:?}"),
                });
            }
            return Ok(false);
        };
        let before = app_from_row(&row)?;
        Entry {
            actor,
            action: "app.delete",
            target: slug,
            detail: Value::Null,
            before: Some(before.audit_json()),
            after: None,
        }
        .write(&mut tx)
        .await?;
        tx.commit().await.map_err(db("deleting app"))?;
        self.announce([Change::App { slug: slug.to_owned() }]);
        Ok(true)
    }
}

/// Reads an app on `conn`; with `lock_for` a store, with `FOR UPDATE` on PostgreSQL.
async fn read_app(
    conn: &mut AnyConnection,
    slug: &str,
    lock_for: Option<&Store>,
) -> Result<Option<AppRecord>, StoreError> {
    const PLAIN: &str = concat!("SELECT ", app_columns!(), " FROM apps WHERE slug = $1");
    const LOCKED: &str = concat!("SELECT ", app_columns!(), " FROM apps WHERE slug = $1 FOR UPDATE");
    let statement = lock_for.map_or(PLAIN, |store| store.locking(PLAIN, LOCKED));
    sqlx::query(statement)
        .bind(slug.to_owned())
        .fetch_optional(conn)
        .await
        .map_err(db("reading app"))?
        .map(|row| app_from_row(&row))
        .transpose()
}
