//! The gateway's side of the admin UI (`gatehouse_admin_ui::admin::AdminGate`): apps from
//! the live snapshot, store apps saved through the same validation as the config file's,
//! "who can open this" and "check a person" from `gatehouse_policy`, sessions, the audit
//! log and usage per app (`usage::report`) from the store. Every change goes to the store
//! with the admin as its actor (audited in the same transaction); the change feed then
//! updates every replica. Provider status, the LDAP test lookup and name suggestions are in
//! `crate::providers`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use async_trait::async_trait;
use gatehouse_admin_ui::admin::{
    expiry, AdminApp, AdminError, AdminGate, AppInput, AuditRow, AuditSearch, BrandingInput, BrandingView, Check,
    DecisionInput, GrantInput, GrantRow, RequestRow, SessionRow, UserInput, UserRow,
};
use gatehouse_admin_ui::admin::{TokenInput, TokenRow};
use gatehouse_admin_ui::admin::{UsageReport, UsageRow};
use gatehouse_admin_ui::Viewer;
use gatehouse_config::{Access, AppDefinition};
use gatehouse_policy::{evaluate, who_can_open, why, Decision, GroupName, GroupSet, Identity, UserName};
use gatehouse_store::{
    AccessRequest, Actor, AppRecord, AuditFilter, Expect, GrantRecord, Grantee, NewUser, StoreError,
};

use crate::authn::session::now;
use crate::authn::Authn;
use crate::snapshot::AppSource;

fn access_word(a: Access) -> &'static str {
    match a {
        Access::Public => "public",
        Access::Authenticated => "authenticated",
        Access::Restricted => "restricted",
    }
}

/// Lines or comma-separated items, trimmed, without empties or repeats (first kept).
pub fn items(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter(|s| seen.insert(s.to_lowercase()))
        .map(str::to_string)
        .collect()
}

/// The form field a config problem path (`app.upstreams[0]`) is about.
/// The portal position typed in the app form: a whole number (empty: 0).
fn portal_order(typed: &str) -> Result<i64, AdminError> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(0);
    }
    typed
        .parse::<i64>()
        .ok()
        .filter(|n| n.abs() <= 1_000_000)
        .ok_or_else(|| {
            AdminError::Invalid(vec![(
                "portal_order".into(),
                format!("{typed:?} is not a whole number between -1000000 and 1000000 (e.g. 10)"),
            )])
        })
}

/// A session's name on the admin pages: a one-way digest of its store key, which itself
/// never leaves the server (the admin forms' tokens are derived from it).
fn session_reference(id_hash: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::new()
        .chain_update(b"gatehouse-session-ref\0")
        .chain_update(id_hash.as_bytes())
        .finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn field_of(path: &str) -> &'static str {
    let key = path.strip_prefix("app.").unwrap_or(path);
    match key.split(['.', '[']).next().unwrap_or("") {
        "slug" | "path" | "host" => "slug",
        "name" => "name",
        "upstreams" => "upstreams",
        "access" => "access",
        "allow_groups" => "allow_groups",
        "allow_users" => "allow_users",
        "headers" => "groups_sent",
        "tags" => "tags",
        "thumbnail" => "thumbnail",
        "portal_order" => "portal_order",
        _ => "slug",
    }
}

fn unavailable(e: StoreError) -> AdminError {
    AdminError::Unavailable(e.to_string())
}

impl Authn {
    fn actor(by: &Viewer, client: Option<IpAddr>) -> Actor {
        crate::api_tokens::actor(by, client)
    }

    /// Who last changed `slug`, for "changed by X meanwhile".
    async fn last_editor(&self, slug: &str) -> String {
        let filter = AuditFilter {
            target: Some(slug.to_string()),
            limit: 1,
            ..AuditFilter::default()
        };
        self.store
            .audit_events(&filter)
            .await
            .ok()
            .and_then(|e| e.into_iter().next())
            .map(|e| e.actor)
            .unwrap_or_else(|| "someone".to_string())
    }

    /// The form as a validated store record, or the fields that are wrong.
    fn record(&self, input: &AppInput, create: bool) -> Result<AppRecord, AdminError> {
        let snap = self.live.load();
        let slug = input.slug.trim().to_string();
        let order = portal_order(&input.portal_order)?;
        let def = AppDefinition {
            slug: slug.clone(),
            name: Some(input.name.trim().to_string()).filter(|n| !n.is_empty()),
            description: Some(input.description.trim().to_string()),
            upstreams: items(&input.upstreams),
            access: Some(input.access.trim().to_string()),
            allow_groups: items(&input.allow_groups),
            allow_users: items(&input.allow_users),
            remote_headers: input.remote_headers.is_some(),
            plotly_user_data: input.plotly_user_data.is_some(),
            groups_sent: Some(input.groups_sent.trim().to_string()).filter(|g| !g.is_empty()),
            dash_token: input.dash_token.is_some(),
            tags: items(&input.tags),
            thumbnail: Some(input.thumbnail.trim().to_string()).filter(|t| !t.is_empty()),
            portal_order: order,
            ..AppDefinition::default()
        };
        let app = gatehouse_config::validate_app(def, "app", &snap.config.server).map_err(|problems| {
            AdminError::Invalid(
                problems
                    .0
                    .iter()
                    .map(|p| {
                        let msg = match &p.hint {
                            Some(h) => format!("{} (e.g. {})", p.message, h.trim_start_matches("e.g. ")),
                            None => p.message.clone(),
                        };
                        (field_of(&p.path).to_string(), msg)
                    })
                    .collect(),
            )
        })?;
        let clash = snap.apps.iter().find(|a| {
            a.source == AppSource::File
                && (a.app.slug == app.slug || (a.app.path == app.path && a.app.host == app.host))
        });
        if let Some(c) = clash {
            return Err(AdminError::Invalid(vec![(
                "slug".into(),
                format!("{} is taken by the app {:?} from the config file", app.path, c.app.slug),
            )]));
        }
        if create && slug.is_empty() {
            return Err(AdminError::Invalid(vec![("slug".into(), "a slug is required".into())]));
        }
        Ok(AppRecord {
            slug: app.slug,
            name: app.name,
            description: app.description,
            upstreams: app.upstreams.iter().map(|u| u.address.clone()).collect(),
            access: match app.access {
                Access::Public => gatehouse_store::Access::Public,
                Access::Authenticated => gatehouse_store::Access::Authenticated,
                Access::Restricted => gatehouse_store::Access::Restricted,
            },
            allow_groups: app.allow_groups.iter().map(|g| GroupName::new(g)).collect(),
            allow_users: app.allow_users.iter().map(|u| UserName::new(u)).collect(),
            owner_users: items(&input.owner_users).iter().map(|u| UserName::new(u)).collect(),
            owner_groups: items(&input.owner_groups).iter().map(|g| GroupName::new(g)).collect(),
            remote_headers: app.headers.remote_headers,
            plotly_user_data: app.headers.plotly_user_data,
            groups_sent: app.headers.groups_sent.as_str().into(),
            portal_visible: input.portal_visible.is_some(),
            portal_order: app.portal_order,
            tags: app.tags,
            thumbnail: app.thumbnail.unwrap_or_default(),
            dash_token: app.headers.dash_token,
            created_at: 0,
            updated_at: 0,
        })
    }

    /// The groups `user` would be judged with: the local account's, else those of their
    /// latest session, else none.
    async fn identity_of(&self, user: &UserName) -> (Identity, String) {
        if let Ok(Some(u)) = self.store.user(user).await {
            let basis = if u.disabled {
                "local account, disabled"
            } else {
                "local account"
            };
            let who = Identity {
                user: user.clone(),
                groups: u.groups.into_iter().collect(),
                admin: u.admin && !u.disabled,
            };
            return (who, basis.to_string());
        }
        let latest = self
            .store
            .sessions_of(user)
            .await
            .ok()
            .and_then(|s| s.into_iter().max_by_key(|s| s.last_seen));
        match latest {
            Some(s) => (
                Identity {
                    user: user.clone(),
                    groups: s.groups.into_iter().collect(),
                    admin: s.admin,
                },
                format!("groups from their latest sign-in with {}", s.provider),
            ),
            None => (
                Identity {
                    user: user.clone(),
                    groups: GroupSet::default(),
                    admin: false,
                },
                "never signed in here: judged without groups".to_string(),
            ),
        }
    }
}

#[async_trait]
impl AdminGate for Authn {
    fn admin_apps(&self) -> Vec<AdminApp> {
        let snap = self.live.peek();
        snap.apps
            .iter()
            .map(|a| AdminApp {
                slug: a.app.slug.clone(),
                name: a.app.name.clone(),
                description: a.app.description.clone(),
                route: format!("{}{}", a.app.host.as_deref().unwrap_or(""), a.app.path),
                upstreams: a
                    .pool
                    .members
                    .iter()
                    .map(|m| (m.upstream.address.clone(), m.is_healthy()))
                    .collect(),
                access: access_word(a.app.access).to_string(),
                allow_groups: a.listed_groups.clone(),
                allow_users: a.listed_users.clone(),
                editable: a.source == AppSource::Store,
                source: a.source.as_str().to_string(),
                audience: who_can_open(&a.policy_now()).to_string(),
                version: a.version,
                owner_users: a.owners.users.iter().map(|u| u.as_str().to_string()).collect(),
                owner_groups: a.owners.groups.iter().map(|g| g.as_str().to_string()).collect(),
                remote_headers: a.app.headers.remote_headers,
                plotly_user_data: a.app.headers.plotly_user_data,
                groups_sent: a.app.headers.groups_sent.as_str().into(),
                portal_visible: a.portal_visible,
                portal_order: a.portal_order,
                dash_token: a.app.headers.dash_token,
                tags: a.app.tags.clone(),
                thumbnail: a.app.thumbnail.clone().unwrap_or_default(),
            })
            .collect()
    }

    fn manages(&self, who: &Identity, slug: &str) -> bool {
        who.admin
            || self
                .live
                .peek()
                .app(slug)
                .is_some_and(|a| gatehouse_policy::owners::manages(&a.owners, who))
    }

    fn admin_problems(&self) -> Vec<String> {
        self.live.peek().problems.clone()
    }

    async fn people_counts(&self) -> Result<std::collections::HashMap<String, usize>, AdminError> {
        let people: Vec<Identity> = self
            .users()
            .await?
            .into_iter()
            .filter(|u| !u.disabled)
            .map(|u| Identity {
                user: UserName::new(&u.user),
                groups: u.groups.iter().map(|g| GroupName::new(g)).collect(),
                admin: u.admin,
            })
            .collect();
        let snap = self.live.peek();
        Ok(snap
            .apps
            .iter()
            .map(|a| {
                let policy = a.policy_now();
                let n = people
                    .iter()
                    .filter(|who| evaluate(&policy, Some(who)).is_allowed())
                    .count();
                (a.app.slug.clone(), n)
            })
            .collect())
    }

    async fn save_app(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: &AppInput,
        create: bool,
    ) -> Result<(), AdminError> {
        let mut record = self.record(input, create)?;
        let existing = self.store.app(&record.slug).await.map_err(unavailable)?;
        let t = now();
        let taken = || {
            AdminError::Invalid(vec![(
                "slug".into(),
                format!("an app {:?} exists already", record.slug),
            )])
        };
        match (&existing, create) {
            (Some(_), true) => return Err(taken()),
            (None, false) => return Err(AdminError::NotFound),
            _ => {}
        }
        record.created_at = existing.as_ref().map(|e| e.created_at).unwrap_or(t);
        // Only administrators name owners; an owner's save keeps them as they were.
        if !by.identity.admin {
            if let Some(e) = &existing {
                record.owner_users = e.owner_users.clone();
                record.owner_groups = e.owner_groups.clone();
            }
        }
        // Strictly newer than the version the form saw, even within one second.
        record.updated_at = existing.as_ref().map(|e| t.max(e.updated_at + 1)).unwrap_or(t);
        // Checked and written in one statement: of two editors of one version, one wins.
        let expect = if create {
            Expect::Absent
        } else {
            Expect::Version(input.version)
        };
        match self.store.save_app(&record, expect, &Self::actor(by, client)).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => return Err(taken()),
            Err(StoreError::Changed { .. }) => return Err(AdminError::Conflict(self.last_editor(&record.slug).await)),
            Err(StoreError::NotFound { .. }) => return Err(AdminError::NotFound),
            Err(e) => return Err(unavailable(e)),
        }
        self.live.rebuilt().await;
        Ok(())
    }

    async fn delete_app(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        version: i64,
    ) -> Result<(), AdminError> {
        let snap = self.live.load();
        if snap.app(slug).is_some_and(|a| a.source == AppSource::File) {
            return Err(AdminError::ReadOnly);
        }
        match self.store.delete_app_at(slug, version, &Self::actor(by, client)).await {
            Ok(true) => {
                self.live.rebuilt().await;
                Ok(())
            }
            Ok(false) => Err(AdminError::NotFound),
            Err(StoreError::Changed { .. }) => Err(AdminError::Conflict(self.last_editor(slug).await)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn check(&self, slug: &str, user: &str) -> Option<Check> {
        let policy = self.live.peek().app(slug)?.policy_now().into_owned();
        let name = UserName::new(user);
        let (who, basis) = self.identity_of(&name).await;
        let (allowed, reason) = match why(&policy, Some(&who)) {
            Decision::Allow(a) => (true, a.to_string()),
            Decision::Deny(d) => (false, d.to_string()),
        };
        Some(Check {
            user: name.as_str().to_string(),
            allowed,
            reason,
            basis,
        })
    }

    async fn sessions(&self) -> Result<Vec<SessionRow>, AdminError> {
        let rows = self.store.recent_sessions(500).await.map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|s| SessionRow {
                reference: session_reference(&s.id_hash),
                user: s.username.as_str().to_string(),
                provider: s.provider,
                groups: s.groups.len(),
                admin: s.admin,
                created_at: s.created_at,
                last_seen: s.last_seen,
            })
            .collect())
    }

    async fn revoke_session(&self, by: &Viewer, client: Option<IpAddr>, reference: &str) -> Result<(), AdminError> {
        let rows = self.store.recent_sessions(5_000).await.map_err(unavailable)?;
        let Some(s) = rows.iter().find(|s| session_reference(&s.id_hash) == reference) else {
            return Err(AdminError::NotFound);
        };
        if !self
            .store
            .delete_session(&s.id_hash, &Self::actor(by, client))
            .await
            .map_err(unavailable)?
        {
            return Err(AdminError::NotFound);
        }
        // This replica at once; the others through the change feed.
        self.sessions.forget(&s.id_hash).await;
        Ok(())
    }

    async fn revoke_user(&self, by: &Viewer, client: Option<IpAddr>, user: &str) -> Result<u64, AdminError> {
        let name = UserName::new(user);
        let n = self
            .store
            .delete_user_sessions(&name, &Self::actor(by, client))
            .await
            .map_err(unavailable)?;
        // This replica at once; the others through the change feed.
        self.sessions.forget_user(name.as_str()).await;
        Ok(n)
    }

    async fn grants(&self, slug: &str) -> Result<Vec<GrantRow>, AdminError> {
        let t = now();
        Ok(self
            .store
            .grants()
            .await
            .map_err(unavailable)?
            .into_iter()
            .filter(|g| g.app == slug)
            .map(|g| GrantRow {
                active: g.active(t),
                kind: match &g.grantee {
                    Grantee::User(_) => "user".into(),
                    Grantee::Group(_) => "group".into(),
                },
                name: match &g.grantee {
                    Grantee::User(u) => u.as_str().to_string(),
                    Grantee::Group(gr) => gr.as_str().to_string(),
                },
                expires_at: g.expires_at,
                created_by: g.created_by,
            })
            .collect())
    }

    async fn add_grant(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        input: &GrantInput,
    ) -> Result<(), AdminError> {
        let editable = self.live.peek().app(slug).map(|a| a.source == AppSource::Store);
        match editable {
            None => return Err(AdminError::NotFound),
            Some(false) => return Err(AdminError::ReadOnly),
            Some(true) => {}
        }
        let name = input.name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(invalid("name", "name a person or a group (at most 256 bytes)"));
        }
        let grantee = match input.kind.as_str() {
            "user" => Grantee::User(UserName::parse(name).map_err(|e| invalid("name", e.to_string()))?),
            "group" => Grantee::Group(GroupName::new(name)),
            other => return Err(invalid("kind", format!("unknown kind {other:?}"))),
        };
        let t = now();
        let expires_at = expiry(&input.duration, &input.until, t).map_err(|m| invalid("until", m))?;
        let grant = GrantRecord {
            app: slug.to_string(),
            grantee,
            expires_at,
            created_by: by.identity.user.as_str().to_string(),
            created_at: t,
        };
        self.store
            .put_grant(&grant, &Self::actor(by, client))
            .await
            .map_err(unavailable)?;
        self.live.rebuilt().await;
        Ok(())
    }

    async fn remove_grant(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        kind: &str,
        name: &str,
    ) -> Result<(), AdminError> {
        let grantee = match kind {
            "user" => Grantee::User(UserName::new(name)),
            "group" => Grantee::Group(GroupName::new(name)),
            _ => return Err(AdminError::NotFound),
        };
        let removed = self
            .store
            .delete_grant(slug, &grantee, &Self::actor(by, client))
            .await
            .map_err(unavailable)?;
        self.live.rebuilt().await;
        if removed {
            Ok(())
        } else {
            Err(AdminError::NotFound)
        }
    }

    async fn request_access(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        slug: &str,
        reason: &str,
    ) -> Result<String, AdminError> {
        let (href, denied) = {
            let snap = self.live.peek();
            let app = snap.app(slug).ok_or(AdminError::NotFound)?;
            if app.source != AppSource::Store {
                return Err(AdminError::ReadOnly);
            }
            (
                app.href.clone(),
                !evaluate(&app.policy_now(), Some(&by.identity)).is_allowed(),
            )
        };
        if !denied {
            return Err(invalid("app", "you can already open this app"));
        }
        let groups: Vec<GroupName> = by.identity.groups.iter().take(200).cloned().collect();
        self.store
            .request_access(slug, &by.identity.user, reason, &groups, &Self::actor(by, client))
            .await
            .map_err(unavailable)?;
        tracing::info!(user = %by.identity.user, app = %slug, "access requested");
        Ok(href)
    }

    async fn requests(&self) -> Result<Vec<RequestRow>, AdminError> {
        let rows = self.store.access_requests(None).await.map_err(unavailable)?;
        Ok(self.request_rows(rows))
    }

    async fn my_requests(&self, user: &str) -> Vec<RequestRow> {
        let rows = self
            .store
            .access_requests(Some(&UserName::new(user)))
            .await
            .unwrap_or_default();
        self.request_rows(rows)
    }

    async fn decide(&self, by: &Viewer, client: Option<IpAddr>, input: &DecisionInput) -> Result<(), AdminError> {
        let user = UserName::new(&input.user);
        let request = self
            .store
            .access_request(&input.app, &user)
            .await
            .map_err(unavailable)?
            .filter(|r| r.status == gatehouse_store::RequestStatus::Pending)
            .ok_or(AdminError::NotFound)?;
        let grant = match input.decision.as_str() {
            "decline" => None,
            "approve" => {
                let grantee = match input.grant_to.strip_prefix("group:") {
                    // Only a group the requester is in: an approval never widens beyond them.
                    Some(g) => {
                        let g = GroupName::new(g);
                        if !request.groups.contains(&g) {
                            return Err(invalid("grant_to", format!("{user} is not in group {g}")));
                        }
                        Grantee::Group(g)
                    }
                    None => Grantee::User(user.clone()),
                };
                let t = now();
                Some(GrantRecord {
                    app: input.app.clone(),
                    grantee,
                    expires_at: expiry(&input.duration, &input.until, t).map_err(|m| invalid("until", m))?,
                    created_by: by.identity.user.as_str().to_string(),
                    created_at: t,
                })
            }
            other => return Err(invalid("decision", format!("unknown decision {other:?}"))),
        };
        let decided = self
            .store
            .decide_access_request(&input.app, &user, grant.as_ref(), &Self::actor(by, client))
            .await
            .map_err(unavailable)?;
        if !decided {
            return Err(AdminError::NotFound);
        }
        self.live.rebuilt().await;
        Ok(())
    }

    async fn users(&self) -> Result<Vec<UserRow>, AdminError> {
        let local = self.store.users().await.map_err(unavailable)?;
        let sessions = self.store.recent_sessions(2000).await.map_err(unavailable)?;
        let seen = |u: &UserName| sessions.iter().filter(|s| &s.username == u).map(|s| s.last_seen).max();
        let mut rows: Vec<UserRow> = local
            .iter()
            .map(|u| UserRow {
                user: u.username.as_str().to_string(),
                display_name: u.display_name.clone().unwrap_or_default(),
                email: u.email.clone().unwrap_or_default(),
                provider: "local".into(),
                local: true,
                admin: u.admin,
                disabled: u.disabled,
                groups: u.groups.iter().map(|g| g.as_str().to_string()).collect(),
                last_seen: seen(&u.username),
            })
            .collect();
        let mut others: Vec<&gatehouse_store::SessionRecord> = Vec::new();
        for s in &sessions {
            let known =
                local.iter().any(|u| u.username == s.username) || others.iter().any(|o| o.username == s.username);
            if !known {
                others.push(s);
            }
        }
        rows.extend(others.into_iter().map(|s| UserRow {
            user: s.username.as_str().to_string(),
            display_name: s.display_name.clone().unwrap_or_default(),
            email: s.email.clone().unwrap_or_default(),
            provider: s.provider.clone(),
            local: false,
            admin: s.admin,
            disabled: false,
            groups: s.groups.iter().map(|g| g.as_str().to_string()).collect(),
            last_seen: Some(s.last_seen),
        }));
        Ok(rows)
    }

    async fn save_user(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: &UserInput,
        create: bool,
    ) -> Result<(), AdminError> {
        if create {
            self.create_account(by, client, input).await
        } else {
            self.update_account(by, client, input).await
        }
    }

    async fn audit(&self, q: &AuditSearch) -> Result<Vec<AuditRow>, AdminError> {
        let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        let filter = AuditFilter {
            actor: some(&q.actor),
            action: some(&q.action),
            target: some(&q.target),
            app: some(&q.app),
            since: q.since,
            until: q.until,
            limit: q.limit,
            offset: q.offset,
        };
        let json = |v: Option<serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_default();
        Ok(self
            .store
            .audit_events(&filter)
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|e| AuditRow {
                at: e.at,
                actor: e.actor,
                client: e.client.unwrap_or_default(),
                action: e.action,
                target: e.target,
                detail: if e.detail.is_null() {
                    String::new()
                } else {
                    e.detail.to_string()
                },
                before: json(e.before),
                after: json(e.after),
            })
            .collect())
    }
    async fn branding_view(&self) -> BrandingView {
        let saved = crate::branding::saved(&self.store).await.ok().flatten().is_some();
        BrandingView {
            current: (*self.site.branding.get()).clone(),
            saved,
        }
    }

    async fn save_branding(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: Option<&BrandingInput>,
    ) -> Result<(), AdminError> {
        let branding = match input {
            None => None,
            Some(i) => Some(
                gatehouse_config::check_branding(&i.name, &i.accent, &i.logo_url).map_err(|problems| {
                    AdminError::Invalid(problems.into_iter().map(|(f, m)| (f.to_string(), m)).collect())
                })?,
            ),
        };
        let value = branding.as_ref().map(crate::branding::to_json);
        self.store
            .put_setting(crate::branding::SETTING, value.as_ref(), &Self::actor(by, client))
            .await
            .map_err(unavailable)?;
        // This replica at once; the others through the change feed.
        let file = self.live.peek().config.branding.clone();
        self.site.branding.set(branding.unwrap_or(file));
        Ok(())
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, AdminError> {
        self.api_tokens().await
    }

    async fn create_token(
        &self,
        by: &Viewer,
        client: Option<IpAddr>,
        input: &TokenInput,
    ) -> Result<String, AdminError> {
        self.create_api_token(by, &Self::actor(by, client), input).await
    }

    async fn revoke_token(&self, by: &Viewer, client: Option<IpAddr>, id: &str) -> Result<(), AdminError> {
        self.revoke_api_token(&Self::actor(by, client), id).await
    }

    async fn token_for(&self, secret: &str) -> Result<Option<TokenRow>, AdminError> {
        self.api_token_for(secret).await
    }

    async fn provider_statuses(&self) -> Vec<gatehouse_admin_ui::admin::ProviderStatus> {
        self.probe_providers().await
    }

    fn ldap_providers(&self) -> Vec<(String, String)> {
        self.ldap_ids()
    }

    async fn ldap_lookup(&self, provider: Option<&str>, user: &str) -> gatehouse_admin_ui::admin::LdapLookup {
        self.lookup_in_directory(provider, user).await
    }

    async fn suggest(
        &self,
        kind: gatehouse_admin_ui::admin::SuggestKind,
        q: &str,
    ) -> Vec<gatehouse_admin_ui::admin::Suggestion> {
        self.find_names(kind, q).await
    }

    async fn seen_names(&self, kind: gatehouse_admin_ui::admin::SuggestKind, limit: usize) -> Vec<String> {
        self.seen_name_list(kind, limit).await
    }

    async fn app_usage(&self, slug: &str) -> Result<UsageReport, AdminError> {
        crate::usage::report(&self.store, slug, now())
            .await
            .map_err(unavailable)
    }

    async fn usage_by_app(&self, days: i64) -> Result<Vec<UsageRow>, AdminError> {
        crate::usage::by_app(&self.store, days, now())
            .await
            .map_err(unavailable)
    }
}

impl Authn {
    fn request_rows(&self, rows: Vec<AccessRequest>) -> Vec<RequestRow> {
        let snap = self.live.peek();
        rows.into_iter()
            .map(|r| RequestRow {
                app_name: snap
                    .app(&r.app)
                    .map(|a| a.app.name.clone())
                    .unwrap_or_else(|| r.app.clone()),
                app: r.app,
                user: r.username.as_str().to_string(),
                reason: r.reason,
                groups: r.groups.iter().map(|g| g.as_str().to_string()).collect(),
                status: r.status.as_str().to_string(),
                created_at: r.created_at,
                decided_by: r.decided_by,
                decided_at: r.decided_at,
            })
            .collect()
    }
}

/// Shortest password an admin may set for a local account.
pub const MIN_PASSWORD: usize = 12;

fn invalid(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid(vec![(field.to_string(), message.into())])
}

/// Hashes on the blocking pool: argon2 is deliberately slow and must not stall requests.
async fn hash(password: &str) -> Result<String, AdminError> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || crate::authn::local::hash_password(&pw))
        .await
        .map_err(|e| AdminError::Unavailable(e.to_string()))?
        .map_err(|e| AdminError::Unavailable(e.to_string()))
}

impl Authn {
    async fn create_account(&self, by: &Viewer, client: Option<IpAddr>, input: &UserInput) -> Result<(), AdminError> {
        let mut errors = vec![];
        let name = UserName::parse(&input.username);
        match &name {
            Err(e) => errors.push(("username".to_string(), e.to_string())),
            Ok(n) if n.as_str().is_empty() => errors.push(("username".to_string(), "a user name is required".into())),
            Ok(_) => {}
        }
        let email = input.email.trim();
        if !email.is_empty() && (!email.contains('@') || email.contains(char::is_whitespace)) {
            errors.push(("email".to_string(), format!("{email:?} is not an email address")));
        }
        if input.password.chars().count() < MIN_PASSWORD {
            errors.push(("password".to_string(), format!("at least {MIN_PASSWORD} characters")));
        }
        let (Ok(username), true) = (name, errors.is_empty()) else {
            return Err(AdminError::Invalid(errors));
        };
        let user = NewUser {
            username,
            password_hash: Some(hash(&input.password).await?),
            email: Some(email.to_string()).filter(|e| !e.is_empty()),
            display_name: Some(input.display_name.trim().to_string()).filter(|d| !d.is_empty()),
            admin: input.admin.is_some(),
            groups: items(&input.groups).iter().map(|g| GroupName::new(g)).collect(),
        };
        match self.store.create_user(&user, &Self::actor(by, client)).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(invalid("username", "an account of that name exists")),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn update_account(&self, by: &Viewer, client: Option<IpAddr>, input: &UserInput) -> Result<(), AdminError> {
        let name = UserName::new(&input.username);
        let Some(current) = self.store.user(&name).await.map_err(unavailable)? else {
            return Err(AdminError::NotFound);
        };
        let (admin, disabled) = (input.admin.is_some(), input.disabled.is_some());
        if name == by.identity.user && (!admin || disabled) {
            return Err(AdminError::Conflict(
                "You cannot remove your own administrator rights or disable your own account: ask another administrator."
                    .into(),
            ));
        }
        if !input.password.is_empty() && input.password.chars().count() < MIN_PASSWORD {
            return Err(invalid("password", format!("at least {MIN_PASSWORD} characters")));
        }
        let actor = Self::actor(by, client);
        let groups: Vec<GroupName> = {
            let mut g: Vec<GroupName> = items(&input.groups).iter().map(|g| GroupName::new(g)).collect();
            g.sort();
            g.dedup();
            g
        };
        if groups != current.groups {
            self.store
                .set_user_groups(&name, &groups, &actor)
                .await
                .map_err(unavailable)?;
        }
        if admin != current.admin {
            self.store
                .set_user_admin(&name, admin, &actor)
                .await
                .map_err(unavailable)?;
        }
        if disabled != current.disabled {
            self.store
                .set_user_disabled(&name, disabled, &actor)
                .await
                .map_err(unavailable)?;
        }
        let new_password = !input.password.is_empty();
        if new_password {
            let h = hash(&input.password).await?;
            self.store
                .set_password_hash(&name, &h, &actor)
                .await
                .map_err(unavailable)?;
        }
        if (disabled && !current.disabled) || new_password {
            // Ends them on every replica at once (the change feed), not only at next re-read.
            self.store
                .delete_user_sessions(&name, &actor)
                .await
                .map_err(unavailable)?;
        }
        // This replica re-reads the account with the next request; others hear of it
        // through the change feed.
        self.sessions.forget_user(name.as_str()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_fields() {
        assert_eq!(items(" a\nb, c\n\n A ,d"), ["a", "b", "c", "d"]);
        assert!(items(" \n ,").is_empty());
    }

    #[test]
    fn problem_paths_name_fields() {
        assert_eq!(field_of("app.upstreams[1]"), "upstreams");
        assert_eq!(field_of("app.slug"), "slug");
        assert_eq!(field_of("app.path"), "slug");
        assert_eq!(field_of("app.allow_groups"), "allow_groups");
        assert_eq!(field_of("app.access"), "access");
    }
}
