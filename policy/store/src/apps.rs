//! Apps defined in the admin UI: the `apps` table.

use std::fmt;
use std::str::FromStr;

use gatehouse_policy::{GroupName, UserName};
use sqlx::any::AnyRow;

use crate::error::db;
use crate::{get, get_groups, get_list, get_users, groups_json, to_json, users_json, Store, StoreError};

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
    /// Epoch seconds. [`Store::upsert_app`] keeps the first one.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
}

macro_rules! app_columns {
    () => {
        "slug, name, description, upstreams_json, access, allow_groups_json, allow_users_json, \
         created_at, updated_at"
    };
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
        sqlx::query(concat!("SELECT ", app_columns!(), " FROM apps WHERE slug = $1"))
            .bind(slug.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading app"))?
            .map(|row| app_from_row(&row))
            .transpose()
    }

    /// Creates the app, or replaces every field of an existing one but `created_at`.
    /// `Err(Invalid)` for an empty slug.
    pub async fn upsert_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        if app.slug.is_empty() {
            return Err(StoreError::Invalid("app slug is empty".into()));
        }
        sqlx::query(concat!(
            "INSERT INTO apps (",
            app_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (slug) DO UPDATE SET \
             name = excluded.name, description = excluded.description, \
             upstreams_json = excluded.upstreams_json, access = excluded.access, \
             allow_groups_json = excluded.allow_groups_json, \
             allow_users_json = excluded.allow_users_json, updated_at = excluded.updated_at"
        ))
        .bind(app.slug.clone())
        .bind(app.name.clone())
        .bind(app.description.clone())
        .bind(to_json(&app.upstreams)?)
        .bind(app.access.as_str())
        .bind(groups_json(&app.allow_groups)?)
        .bind(users_json(&app.allow_users)?)
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&self.pool)
        .await
        .map_err(db("saving app"))?;
        Ok(())
    }

    /// Deletes an app. False: no such app.
    pub async fn delete_app(&self, slug: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM apps WHERE slug = $1")
            .bind(slug.to_owned())
            .execute(&self.pool)
            .await
            .map_err(db("deleting app"))?;
        Ok(result.rows_affected() > 0)
    }
}
