//! The store against real databases: a SQLite file in a temporary directory and a throwaway
//! database on the PostgreSQL server named by `GATEHOUSE_TEST_PG_URL`. One suite, run on
//! both, so the shared SQL cannot drift apart.

use super::error::{percent_encode_path, redact_url, scrub};
use super::*;
use serde_json::json;
use sqlx::Connection;

mod feed;
mod outage;
mod portal;
mod signin;
mod tokens;
mod usage;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn user(name: &str, groups: &[&str]) -> NewUser {
    NewUser {
        username: UserName::new(name),
        password_hash: Some(format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}")),
        email: Some(format!("{}@example.org", name.to_lowercase())),
        display_name: Some(format!("{name} Example")),
        admin: false,
        groups: group_names(groups),
    }
}

/// The admin the suite acts as.
fn actor() -> Actor {
    Actor::new("root", Some("192.0.2.7".parse().unwrap()))
}

fn u(name: &str) -> UserName {
    UserName::new(name)
}

fn group_names(items: &[&str]) -> Vec<GroupName> {
    items.iter().map(|g| GroupName::new(g)).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn session(id: &str, username: &str, created_at: i64, last_seen: i64) -> SessionRecord {
    SessionRecord {
        id_hash: id.into(),
        username: u(username),
        email: None,
        display_name: Some("Someone".into()),
        groups: group_names(&["staff"]),
        admin: false,
        provider: "corp".into(),
        created_at,
        last_seen,
    }
}

fn key(kid: &str, created_at: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        private_pem: format!("-----BEGIN PRIVATE KEY-----\n{kid}\n-----END PRIVATE KEY-----\n"),
        public_jwk: format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}"}}"#),
        created_at,
        retired_at: None,
    }
}

fn app(slug: &str, at: i64) -> AppRecord {
    AppRecord {
        slug: slug.into(),
        name: format!("{slug} dashboard"),
        description: "numbers".into(),
        upstreams: strings(&["10.0.3.7:8050", "10.0.3.8:8050"]),
        access: Access::Restricted,
        allow_groups: group_names(&["finance"]),
        allow_users: vec![u("alice")],
        owner_users: vec![u("Olga")],
        owner_groups: group_names(&["Data Team"]),
        remote_headers: false,
        plotly_user_data: false,
        groups_sent: "all".into(),
        portal_visible: true,
        portal_order: 0,
        tags: strings(&["Finance", "dash"]),
        thumbnail: "https://cdn.example.com/sales.png".into(),
        dash_token: true,
        created_at: at,
        updated_at: at,
    }
}

/// Saves and deletes that name the version the editor saw: a compare-and-set, so of two
/// editors of one version exactly one wins, whatever the timing.
async fn checked_saves(store: &Store) {
    let mut ops = app("ops", 1_000);
    ops.portal_order = -3;
    assert!(matches!(
        store.save_app(&ops, Expect::Version(1_000), &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    store.save_app(&ops, Expect::Absent, &actor()).await.unwrap();
    assert_eq!(store.app("ops").await.unwrap().unwrap().portal_order, -3);
    assert!(matches!(
        store.save_app(&ops, Expect::Absent, &actor()).await,
        Err(StoreError::Conflict { .. })
    ));
    // Two editors of version 1000 at once: one saves, the other is told it changed.
    let mut tasks = tokio::task::JoinSet::new();
    for editor in 0..2 {
        let (store, mut mine) = (store.clone(), app("ops", 1_000));
        mine.name = format!("edit {editor}");
        mine.updated_at = 1_001;
        tasks.spawn(async move { store.save_app(&mine, Expect::Version(1_000), &actor()).await });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|o| matches!(o, Err(StoreError::Changed { .. }))));
    let updates = audit_rows(store, "app.update", "ops").await;
    assert_eq!(updates.len(), 1, "only the winner's change is audited");
    assert!(matches!(
        store.delete_app_at("ops", 1_000, &actor()).await,
        Err(StoreError::Changed { .. })
    ));
    assert!(store.delete_app_at("ops", 1_001, &actor()).await.unwrap());
    assert!(!store.delete_app_at("ops", 1_001, &actor()).await.unwrap());
}

/// Gateway-wide settings: saved as JSON, replaced, removed, each audited.
async fn settings(store: &Store) {
    assert_eq!(store.setting("branding").await.unwrap(), None);
    let mut feed = store.subscribe();
    let v = serde_json::json!({"name": "Acme", "accent": "#123456"});
    store.put_setting("branding", Some(&v), &actor()).await.unwrap();
    assert_eq!(store.setting("branding").await.unwrap(), Some(v.clone()));
    let w = serde_json::json!({"name": "Acme apps"});
    store.put_setting("branding", Some(&w), &actor()).await.unwrap();
    assert_eq!(store.setting("branding").await.unwrap(), Some(w.clone()));
    let rows = audit_rows(store, "setting.update", "branding").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].before, Some(v));
    assert_eq!(rows[0].after, Some(w));
    store.put_setting("branding", None, &actor()).await.unwrap();
    assert_eq!(store.setting("branding").await.unwrap(), None);
    let huge = serde_json::json!("x".repeat(MAX_SETTING_BYTES));
    assert!(matches!(
        store.put_setting("branding", Some(&huge), &actor()).await,
        Err(StoreError::Invalid(_))
    ));
    let announced = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Ok(Change::Settings) = feed.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(announced.is_ok(), "a settings change is announced on the feed");
}

/// Exercises every method of [`Store`] on an empty, freshly migrated store.
async fn suite(store: &Store) {
    users(store).await;
    sessions(store).await;
    signing_keys(store).await;
    apps(store).await;
    grants(store).await;
    requests(store).await;
    audit(store).await;
    settings(store).await;
    concurrent_writes(store).await;
}

async fn users(store: &Store) {
    assert_eq!(store.user_count().await.unwrap(), 0);
    assert_eq!(store.users().await.unwrap(), vec![]);
    assert_eq!(store.user(&u("alice")).await.unwrap(), None);

    let before = now();
    let mut alice = user("Alice", &["Finance", " staff ", "finance"]);
    alice.admin = true;
    store.create_user(&alice, &actor()).await.unwrap();
    store.create_user(&user("bob", &[]), &actor()).await.unwrap();

    // Duplicates are refused whatever the case, and the first user is unchanged.
    for name in ["alice", "ALICE", " Alice "] {
        let err = store.create_user(&user(name, &["x"]), &actor()).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what, source: None } if what == "user \"alice\""),
            "{name}: {err:?}"
        );
        assert_eq!(err.to_string(), "user \"alice\" already exists");
    }
    assert!(matches!(
        store.create_user(&user("  ", &[]), &actor()).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.user_count().await.unwrap(), 2);

    let got = store.user(&u("aLiCe")).await.unwrap().expect("alice exists");
    assert_eq!(got.username.as_str(), "alice");
    assert_eq!(got.password_hash, alice.password_hash);
    assert_eq!(got.email.as_deref(), Some("alice@example.org"));
    assert_eq!(got.display_name.as_deref(), Some("Alice Example"));
    assert!(got.admin);
    assert!(!got.disabled);
    assert_eq!(got.groups, group_names(&["finance", "staff"]));
    assert!(got.created_at >= before && got.created_at <= now() + 1);
    assert!(!format!("{got:?}").contains("argon2"), "Debug hides the hash");
    assert!(!format!("{alice:?}").contains("argon2"), "Debug hides the hash");

    let bob = store.user(&u("BOB")).await.unwrap().unwrap();
    assert_eq!(bob.groups, vec![]);
    assert!(!bob.admin);
    let names: Vec<_> = store.users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, [u("alice"), u("bob")]);

    // Setters: NotFound for a missing user.
    let nobody = u("nobody");
    let missing =
        |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound { what }) if what == "user \"nobody\"");
    store
        .set_password_hash(&u("BOB"), "$argon2id$new", &actor())
        .await
        .unwrap();
    assert!(missing(
        store.set_password_hash(&nobody, "$argon2id$new", &actor()).await
    ));
    store.set_user_admin(&u("Bob"), true, &actor()).await.unwrap();
    assert!(missing(store.set_user_admin(&nobody, true, &actor()).await));
    store.set_user_disabled(&u("bob"), true, &actor()).await.unwrap();
    assert!(missing(store.set_user_disabled(&nobody, true, &actor()).await));
    store
        .set_user_groups(&u("BOB"), &group_names(&["Ops", "ops", "Dev", " "]), &actor())
        .await
        .unwrap();
    assert!(missing(store.set_user_groups(&nobody, &[], &actor()).await));
    let bob = store.user(&u("bob")).await.unwrap().unwrap();
    assert_eq!(bob.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(bob.admin);
    assert!(bob.disabled);
    assert_eq!(bob.groups, group_names(&["dev", "ops"]));
    store.set_user_disabled(&u("bob"), false, &actor()).await.unwrap();
    store.set_user_admin(&u("bob"), false, &actor()).await.unwrap();
    let bob = store.user(&u("bob")).await.unwrap().unwrap();
    assert!(!bob.admin && !bob.disabled);

    // delete_user removes that user's sessions, and only theirs.
    store
        .insert_session(&session("s-bob-1", "Bob", 100, 100))
        .await
        .unwrap();
    store
        .insert_session(&session("s-bob-2", "bob", 101, 101))
        .await
        .unwrap();
    store
        .insert_session(&session("s-alice", "alice", 100, 100))
        .await
        .unwrap();
    assert!(store.delete_user(&u("BOB"), &actor()).await.unwrap());
    assert!(!store.delete_user(&u("bob"), &actor()).await.unwrap());
    assert_eq!(store.user(&u("bob")).await.unwrap(), None);
    assert_eq!(store.sessions_of(&u("bob")).await.unwrap(), vec![]);
    assert_eq!(store.session("s-bob-1").await.unwrap(), None);
    assert!(store.session("s-alice").await.unwrap().is_some());
    // A missing user: nothing deleted, not even a same-named directory user's sessions.
    store
        .insert_session(&session("s-ldap", "carol", 100, 100))
        .await
        .unwrap();
    assert!(!store.delete_user(&u("carol"), &actor()).await.unwrap());
    assert!(store.session("s-ldap").await.unwrap().is_some());
    assert_eq!(store.user_count().await.unwrap(), 1);

    // Leave the session table empty for the next part.
    assert_eq!(store.delete_user_sessions(&u("alice"), &actor()).await.unwrap(), 1);
    assert_eq!(store.delete_user_sessions(&u("carol"), &actor()).await.unwrap(), 1);
}

async fn sessions(store: &Store) {
    assert_eq!(store.session("missing").await.unwrap(), None);

    // A user in 2,000 groups: one row, round-trips exactly.
    let groups: Vec<GroupName> = (0..2000).map(|i| GroupName::new(&format!("group-{i:04}"))).collect();
    let mut big = session("h-big", "Dana", 1_000, 1_000);
    big.groups = groups.clone();
    big.email = Some("dana@example.org".into());
    big.admin = true;
    store.insert_session(&big).await.unwrap();
    let mut expected = big.clone();
    expected.username = u("dana");
    assert_eq!(store.session("h-big").await.unwrap(), Some(expected.clone()));

    // Group names are folded, sorted and de-duplicated.
    let mut mixed = session("h-mixed", "dana", 1_100, 1_100);
    mixed.groups = group_names(&["Zeta", "alpha", "ALPHA", "", "Beta "]);
    store.insert_session(&mixed).await.unwrap();
    let got = store.session("h-mixed").await.unwrap().unwrap();
    assert_eq!(got.groups, group_names(&["alpha", "beta", "zeta"]));

    // Duplicate id: a conflict that keeps the database's error, and the original is
    // untouched.
    let err = store.insert_session(&session("h-big", "eve", 5, 5)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { what, source: Some(_) } if what == "session \"h-big\""),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(store.session("h-big").await.unwrap(), Some(expected.clone()));

    // touch_session only moves forward; a missing id is fine.
    store.touch_session("h-big", 1_500).await.unwrap();
    store.touch_session("h-big", 1_200).await.unwrap();
    store.touch_session("missing", 1_200).await.unwrap();
    assert_eq!(store.session("h-big").await.unwrap().unwrap().last_seen, 1_500);

    let fewer = group_names(&["Finance", "finance", "Staff"]);
    // A re-check moves the last activity forward to its request's time, never back.
    store.update_session_groups("h-big", &fewer, 1_400).await.unwrap();
    assert_eq!(store.session("h-big").await.unwrap().unwrap().last_seen, 1_500);
    store.update_session_groups("h-big", &fewer, 1_600).await.unwrap();
    assert_eq!(store.session("h-big").await.unwrap().unwrap().last_seen, 1_600);
    assert!(matches!(
        store.update_session_groups("missing", &fewer, 1_600).await,
        Err(StoreError::NotFound { .. })
    ));
    // Provider data (OIDC tokens) rides along with a session and goes with it.
    assert_eq!(store.session_provider_data("h-big").await.unwrap(), None);
    store
        .set_session_provider_data("h-big", "{\"id_token\":\"x\"}")
        .await
        .unwrap();
    assert_eq!(
        store.session_provider_data("h-big").await.unwrap().as_deref(),
        Some("{\"id_token\":\"x\"}")
    );
    assert!(matches!(
        store.set_session_provider_data("missing", "{}").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.session("h-big").await.unwrap().unwrap().groups,
        group_names(&["finance", "staff"])
    );
    store.update_session_groups("h-big", &groups, 1_600).await.unwrap();
    assert_eq!(store.session("h-big").await.unwrap().unwrap().groups, groups);

    let ids: Vec<_> = store
        .sessions_of(&u("DANA"))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id_hash)
        .collect();
    assert_eq!(ids, ["h-big", "h-mixed"]);
    assert_eq!(store.sessions_of(&u("nobody")).await.unwrap(), vec![]);

    assert!(store.delete_session("h-mixed", &actor()).await.unwrap());
    assert!(!store.delete_session("h-mixed", &actor()).await.unwrap());
    assert_eq!(store.delete_user_sessions(&u("DaNa"), &actor()).await.unwrap(), 1);
    assert_eq!(store.delete_user_sessions(&u("dana"), &actor()).await.unwrap(), 0);

    // Expiry: idle (last_seen < idle_before) OR too old (created_at < created_before).
    store.insert_session(&session("fresh", "u", 900, 990)).await.unwrap();
    store.insert_session(&session("idle", "u", 900, 949)).await.unwrap();
    store
        .insert_session(&session("idle-edge", "u", 900, 950))
        .await
        .unwrap();
    store.insert_session(&session("old", "u", 799, 999)).await.unwrap();
    store.insert_session(&session("old-edge", "u", 800, 999)).await.unwrap();
    assert_eq!(store.delete_expired_sessions(950, 800).await.unwrap(), 2);
    let left: Vec<_> = store
        .sessions_of(&u("u"))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id_hash)
        .collect();
    assert_eq!(left, ["old-edge", "fresh", "idle-edge"]);
    assert_eq!(store.delete_expired_sessions(950, 800).await.unwrap(), 0);
    assert_eq!(store.delete_expired_sessions(i64::MAX, 0).await.unwrap(), 3);
    assert_eq!(store.sessions_of(&u("u")).await.unwrap(), vec![]);
}

async fn signing_keys(store: &Store) {
    assert_eq!(store.signing_keys().await.unwrap(), vec![]);
    let (k1, k2, k3) = (key("k1", 100), key("k2", 200), key("k0", 300));
    // Inserted out of order; listed oldest first.
    store.insert_signing_key(&k2, &actor()).await.unwrap();
    store.insert_signing_key(&k3, &actor()).await.unwrap();
    store.insert_signing_key(&k1, &actor()).await.unwrap();
    assert!(matches!(
        store.insert_signing_key(&key("k1", 999), &actor()).await,
        Err(StoreError::Conflict { what, .. }) if what == "signing key \"k1\""
    ));
    assert_eq!(
        store.signing_keys().await.unwrap(),
        vec![k1.clone(), k2.clone(), k3.clone()]
    );
    assert!(!format!("{k1:?}").contains("PRIVATE KEY"), "Debug hides the key");

    store.retire_signing_key("k1", 250, &actor()).await.unwrap();
    store.retire_signing_key("k1", 400, &actor()).await.unwrap(); // already retired: kept
    assert!(matches!(
        store.retire_signing_key("nope", 250, &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys[0].retired_at, Some(250), "the first retirement time stays");
    assert_eq!(keys[1].retired_at, None);

    assert!(store.delete_signing_key("k1", &actor()).await.unwrap());
    assert!(!store.delete_signing_key("k1", &actor()).await.unwrap());
    let kids: Vec<_> = store.signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["k2", "k0"]);
}

async fn grants(store: &Store) {
    assert_eq!(store.grants().await.unwrap(), vec![]);
    let g = |name: &str, expires_at: Option<i64>| GrantRecord {
        app: "sales".into(),
        grantee: Grantee::Group(GroupName::new(name)),
        expires_at,
        created_by: "root".into(),
        created_at: 10,
    };
    store.put_grant(&g("Finance", Some(100)), &actor()).await.unwrap();
    store
        .put_grant(
            &GrantRecord {
                grantee: Grantee::User(u("Bob")),
                ..g("x", None)
            },
            &actor(),
        )
        .await
        .unwrap();
    // The same grantee again replaces the expiry.
    store.put_grant(&g("finance", Some(200)), &actor()).await.unwrap();
    let all = store.grants().await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].grantee, Grantee::Group(GroupName::new("finance")));
    assert_eq!(all[0].expires_at, Some(200));
    assert!(all[0].active(199) && !all[0].active(200), "the end is exclusive");
    assert!(all[1].active(i64::MAX - 1), "no expiry: until removed");
    let events = store
        .audit_events(&AuditFilter {
            action: Some("grant.add".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].target, "sales/group:finance");
    assert_eq!(
        events[0].before.as_ref().map(|b| b["expires_at"].clone()),
        Some(serde_json::json!(100))
    );
    assert!(store
        .delete_grant("sales", &Grantee::User(u("BOB")), &actor())
        .await
        .unwrap());
    assert!(!store
        .delete_grant("sales", &Grantee::User(u("bob")), &actor())
        .await
        .unwrap());
    assert!(store
        .delete_grant("sales", &Grantee::Group(GroupName::new("finance")), &actor())
        .await
        .unwrap());
    assert_eq!(store.grants().await.unwrap(), vec![]);
}

async fn requests(store: &Store) {
    let carol = u("Carol");
    let groups = [GroupName::new("finance")];
    store
        .request_access("sales", &carol, "first", &groups, &actor())
        .await
        .unwrap();
    store
        .request_access("sales", &carol, "renewed", &groups, &actor())
        .await
        .unwrap();
    let r = store.access_request("sales", &u("carol")).await.unwrap().unwrap();
    assert_eq!((r.reason.as_str(), r.status), ("renewed", RequestStatus::Pending));
    assert_eq!(r.groups, groups);
    store.request_access("hr", &u("dave"), "", &[], &actor()).await.unwrap();
    let grant = GrantRecord {
        app: "sales".into(),
        grantee: Grantee::Group(GroupName::new("finance")),
        expires_at: Some(1_000),
        created_by: "root".into(),
        created_at: 10,
    };
    assert!(store
        .decide_access_request("sales", &carol, Some(&grant), &actor())
        .await
        .unwrap());
    assert!(
        !store
            .decide_access_request("sales", &carol, None, &actor())
            .await
            .unwrap(),
        "decided once"
    );
    assert!(store
        .decide_access_request("hr", &u("dave"), None, &actor())
        .await
        .unwrap());
    assert_eq!(
        store.grants().await.unwrap(),
        vec![grant.clone()],
        "approval wrote its grant"
    );
    let all = store.access_requests(None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all
        .iter()
        .all(|r| r.status != RequestStatus::Pending && r.decided_by.is_some()));
    assert_eq!(
        store.access_requests(Some(&carol)).await.unwrap()[0].status,
        RequestStatus::Approved
    );
    // Asking again after a decision makes it pending again.
    store
        .request_access("hr", &u("dave"), "please", &[], &actor())
        .await
        .unwrap();
    assert_eq!(
        store.access_requests(None).await.unwrap()[0].status,
        RequestStatus::Pending,
        "pending first"
    );
    for action in ["access.request", "access.approve", "access.decline"] {
        let n = store
            .audit_events(&AuditFilter {
                action: Some(action.into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
            .len();
        assert!(n >= 1, "{action}");
    }
    store.delete_grant("sales", &grant.grantee, &actor()).await.unwrap();
}

async fn apps(store: &Store) {
    assert_eq!(store.apps().await.unwrap(), vec![]);
    assert_eq!(store.app("sales").await.unwrap(), None);

    let mut sales = app("sales", 100);
    sales.allow_groups = group_names(&["Finance", "finance", "Board"]);
    sales.allow_users = vec![u("Alice"), u("ALICE")];
    store.upsert_app(&sales, &actor()).await.unwrap();
    store.upsert_app(&app("hr", 150), &actor()).await.unwrap();
    let got = store.app("sales").await.unwrap().unwrap();
    assert_eq!(got.allow_groups, group_names(&["board", "finance"]));
    assert_eq!(got.allow_users, [u("alice")]);
    assert_eq!(got.upstreams, sales.upstreams);
    assert_eq!(got.created_at, 100);
    assert_eq!(
        (got.tags.clone(), got.thumbnail.as_str(), got.dash_token),
        (sales.tags.clone(), "https://cdn.example.com/sales.png", true),
        "the portal fields and the Dash token option round-trip"
    );

    // Update: every field replaced but created_at.
    let mut changed = app("sales", 500);
    changed.name = "Sales".into();
    changed.description = String::new();
    changed.upstreams = strings(&["127.0.0.1:9000"]);
    changed.access = Access::Authenticated;
    changed.allow_groups = vec![];
    changed.allow_users = vec![];
    changed.tags = vec![];
    changed.thumbnail = "/static/sales.svg".into();
    changed.dash_token = false;
    store.upsert_app(&changed, &actor()).await.unwrap();
    let got = store.app("sales").await.unwrap().unwrap();
    assert_eq!(
        got,
        AppRecord {
            created_at: 100,
            ..changed.clone()
        }
    );

    assert!(matches!(
        store.upsert_app(&app("", 1), &actor()).await,
        Err(StoreError::Invalid(_))
    ));

    let slugs: Vec<_> = store.apps().await.unwrap().into_iter().map(|a| a.slug).collect();
    assert_eq!(slugs, ["hr", "sales"]);
    checked_saves(store).await;
    assert!(store.delete_app("hr", &actor()).await.unwrap());
    assert!(!store.delete_app("hr", &actor()).await.unwrap());
    assert_eq!(store.apps().await.unwrap().len(), 1);
}

async fn audit_rows(store: &Store, action: &str, target: &str) -> Vec<AuditEvent> {
    store
        .audit_events(&AuditFilter {
            action: Some(action.into()),
            target: Some(target.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

/// The rows the changes above wrote in their transactions, then standalone events and the
/// reader's filters.
async fn audit(store: &Store) {
    let all = store
        .audit_events(&AuditFilter {
            limit: 10_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(all.len() > 20, "{}", all.len());
    for e in &all {
        assert_eq!(e.actor, "root", "{e:?}");
        assert_eq!(e.client.as_deref(), Some("192.0.2.7"), "{e:?}");
        assert!(e.at >= now() - 60 && e.at <= now() + 1, "{e:?}");
    }
    let text = format!("{all:?}");
    assert!(!text.contains("argon2"), "no password hash in the audit log");
    assert!(!text.contains("PRIVATE KEY"), "no private key in the audit log");

    // Created: no before; the after is the stored record (hash replaced by a flag).
    let created = audit_rows(store, "user.create", "alice").await;
    assert_eq!(created.len(), 1, "the refused duplicates left no row");
    assert_eq!(created[0].before, None);
    let after = created[0].after.clone().unwrap();
    assert_eq!(after["username"], "alice");
    assert_eq!(after["groups"], json!(["finance", "staff"]));
    assert_eq!(after["admin"], true);
    assert_eq!(after["has_password"], true);

    // Updates: before and after of the same row, oldest last.
    let groups = audit_rows(store, "user.set_groups", "bob").await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].before.as_ref().unwrap()["groups"], json!([]));
    assert_eq!(groups[0].after.as_ref().unwrap()["groups"], json!(["dev", "ops"]));
    let admin: Vec<_> = audit_rows(store, "user.set_admin", "bob")
        .await
        .into_iter()
        .map(|e| (e.before.unwrap()["admin"].clone(), e.after.unwrap()["admin"].clone()))
        .collect();
    assert_eq!(admin, [(json!(true), json!(false)), (json!(false), json!(true))]);
    assert_eq!(
        audit_rows(store, "user.set_admin", "nobody").await,
        vec![],
        "NotFound: no row"
    );
    assert_eq!(audit_rows(store, "user.set_password", "bob").await.len(), 1);

    // Deleted: no after; what went with it is in the detail.
    let deleted = audit_rows(store, "user.delete", "bob").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].after, None);
    assert_eq!(deleted[0].before.as_ref().unwrap()["username"], "bob");
    assert_eq!(deleted[0].detail, json!({ "sessions_ended": 2 }));
    assert_eq!(audit_rows(store, "user.delete", "carol").await, vec![]);

    // Sessions: revocations name the user; the groups and provider data stay out.
    let revoked = audit_rows(store, "session.delete", "dana").await;
    assert_eq!(revoked.len(), 1);
    let before = revoked[0].before.clone().unwrap();
    assert_eq!(before["id_hash"], "h-mixed");
    assert_eq!(before["provider"], "corp");
    assert!(before.get("groups").is_none() && before.get("provider_data").is_none());
    let all_of_dana = audit_rows(store, "user.sessions.delete", "dana").await;
    assert_eq!(all_of_dana.len(), 1, "the second call deleted nothing and left no row");
    assert_eq!(all_of_dana[0].detail, json!({ "count": 1 }));
    assert_eq!(all_of_dana[0].before.as_ref().unwrap()[0]["id_hash"], "h-big");

    // Keys: public half only.
    let retired = audit_rows(store, "signing_key.retire", "k1").await;
    assert_eq!(retired.len(), 2);
    assert_eq!(retired[1].before.as_ref().unwrap()["retired_at"], json!(null));
    assert_eq!(retired[1].after.as_ref().unwrap()["retired_at"], 250);
    assert_eq!(
        retired[0].after.as_ref().unwrap()["retired_at"],
        250,
        "the first time stays"
    );
    let created = audit_rows(store, "signing_key.create", "k1").await;
    assert_eq!(created.len(), 1, "the duplicate left no row");
    assert_eq!(created[0].after.as_ref().unwrap()["public_jwk"]["crv"], "P-256");
    assert_eq!(audit_rows(store, "signing_key.delete", "k1").await.len(), 1);

    // Apps: create, update (before → after), delete.
    assert_eq!(audit_rows(store, "app.create", "hr").await.len(), 1);
    let updated = audit_rows(store, "app.update", "sales").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].before.as_ref().unwrap()["name"], "sales dashboard");
    assert_eq!(updated[0].before.as_ref().unwrap()["access"], "restricted");
    assert_eq!(updated[0].after.as_ref().unwrap()["name"], "Sales");
    assert_eq!(updated[0].after.as_ref().unwrap()["access"], "authenticated");
    assert_eq!(updated[0].after.as_ref().unwrap()["created_at"], 100);
    let gone = audit_rows(store, "app.delete", "hr").await;
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].before.as_ref().unwrap()["allow_users"], json!(["alice"]));

    // Standalone events (sign-ins), written out of time order; two in the same second.
    let alice = Actor::new("alice", Some("2001:db8::1".parse().unwrap()));
    let event = |at: i64, action: &str| AuditEvent {
        at,
        detail: json!({"groups": ["finance"], "n": at, "note": "ünïcode"}),
        ..AuditEvent::new(&alice, action, "bob")
    };
    for (at, action) in [(10, "a"), (30, "c"), (20, "b"), (30, "d"), (5, "first")] {
        store.audit(&event(at, action)).await.unwrap();
    }
    let by_alice = |since: Option<i64>, limit: i64| AuditFilter {
        actor: Some("alice".into()),
        since,
        limit,
        ..AuditFilter::default()
    };
    let actions = |events: Vec<AuditEvent>| events.into_iter().map(|e| e.action).collect::<Vec<_>>();
    let recent = store.audit_events(&by_alice(None, 10)).await.unwrap();
    assert_eq!(recent[0], event(30, "d"));
    assert_eq!(recent[0].client.as_deref(), Some("2001:db8::1"));
    assert_eq!(actions(recent), ["d", "c", "b", "a", "first"]);
    assert_eq!(
        actions(store.audit_events(&by_alice(Some(20), 10)).await.unwrap()),
        ["d", "c", "b"]
    );
    assert_eq!(
        actions(store.audit_events(&by_alice(None, 2)).await.unwrap()),
        ["d", "c"]
    );
    assert_eq!(store.audit_events(&by_alice(None, 0)).await.unwrap(), vec![]);
    assert_eq!(store.audit_events(&by_alice(None, -1)).await.unwrap(), vec![]);
    let only_b = AuditFilter {
        action: Some("b".into()),
        ..AuditFilter::default()
    };
    assert_eq!(actions(store.audit_events(&only_b).await.unwrap()), ["b"]);
    // By app: the app's own events and its grants' and requests' (`<slug>/…`), not those
    // of an app whose slug merely starts the same.
    for (action, target) in [
        ("app.update", "ledger"),
        ("grant.add", "ledger/group:finance"),
        ("access.request", "ledger/user:bob"),
        ("grant.add", "ledger-old/user:bob"),
        ("app.update", "ledgers"),
    ] {
        store.audit(&AuditEvent::new(&alice, action, target)).await.unwrap();
    }
    let ledger = AuditFilter {
        app: Some("ledger".into()),
        ..AuditFilter::default()
    };
    let mut targets: Vec<String> = store
        .audit_events(&ledger)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.target)
        .collect();
    targets.sort();
    assert_eq!(targets, ["ledger", "ledger/group:finance", "ledger/user:bob"]);
}

/// Many writers at once: SQLite serialises them (busy timeout), PostgreSQL does not care;
/// either way none may fail.
async fn concurrent_writes(store: &Store) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            let id = format!("c-{i}");
            store.insert_session(&session(&id, "crowd", i, i)).await?;
            store.touch_session(&id, i + 100).await?;
            store
                .update_session_groups(&id, &group_names(&["a", "b"]), i + 50)
                .await?;
            let seen = store.session(&id).await?.map(|s| s.last_seen);
            assert_eq!(seen, Some(i + 100));
            Ok::<_, StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(store.sessions_of(&u("crowd")).await.unwrap().len(), 40);
    assert_eq!(store.delete_user_sessions(&u("crowd"), &actor()).await.unwrap(), 40);
}

/// What the suite leaves behind, checked after reopening the database.
async fn check_left_over(store: &Store) {
    let names: Vec<_> = store.users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, [u("alice")]);
    assert_eq!(store.signing_keys().await.unwrap().len(), 2);
    assert_eq!(store.apps().await.unwrap()[0].name, "Sales");
    let by_alice = AuditFilter {
        actor: Some("alice".into()),
        ..AuditFilter::default()
    };
    assert_eq!(store.audit_events(&by_alice).await.unwrap().len(), 10);
    // Still usable for writes after the (no-op) migration run.
    assert!(matches!(
        store.create_user(&user("ALICE", &[]), &actor()).await,
        Err(StoreError::Conflict { .. })
    ));
}

async fn applied_migrations(store: &Store) -> i64 {
    sqlx::query_scalar::<Any, i64>("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    // A space and a `#` in the path: the file name must survive URL encoding.
    let path = dir.path().join("gate house#1.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    assert!(path.exists(), "created on first start");
    assert!(!store.is_postgres());

    let mode: String = sqlx::query_scalar::<Any, String>("PRAGMA journal_mode")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let busy: i64 = sqlx::query_scalar::<Any, i64>("PRAGMA busy_timeout")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(busy, 5000);
    let cache: i64 = sqlx::query_scalar::<Any, i64>("PRAGMA cache_size")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        cache,
        -i64::from(crate::SQLITE_CACHE_KIB),
        "every connection's page cache is small"
    );

    suite(&store).await;
    let migrations = applied_migrations(&store).await;
    assert!(migrations >= 1);
    store.close().await;

    // Reopen through a URL: data kept, migrations not applied twice.
    let url = format!("sqlite://{}", percent_encode_path(path.to_str().unwrap()));
    let options = StoreOptions {
        max_connections: 2,
        ..StoreOptions::default()
    };
    let reopened = Store::connect_with(&url, &options).await.unwrap();
    assert_eq!(applied_migrations(&reopened).await, migrations);
    check_left_over(&reopened).await;
    reopened.close().await;
    let again = Store::open_sqlite(&path).await.unwrap();
    check_left_over(&again).await;
}

#[tokio::test]
async fn bad_urls_are_refused_without_leaking_passwords() {
    for url in [
        "mysql://u@h/db",
        "",
        "sqlite://",
        "sqlite::memory:",
        "sqlite://x.db?mode=ro",
    ] {
        assert!(matches!(Store::connect(url).await, Err(StoreError::BadUrl(_))), "{url}");
    }
    let err = Store::connect("mysql://gate:s3cr%2Ft@db/x").await.unwrap_err();
    assert!(!err.to_string().contains("s3cr"), "{err}");

    // Nothing listens on port 1: a connection error, with the password scrubbed.
    let options = StoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let err = Store::connect_with("postgres://gate:s3cret@127.0.0.1:1/x", &options)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
    assert!(err.to_string().contains("gate:***@127.0.0.1:1"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no/such/dir/g.db");
    assert!(matches!(
        Store::open_sqlite(&missing_dir).await,
        Err(StoreError::Database { .. })
    ));
}

#[test]
fn url_helpers() {
    assert_eq!(
        redact_url("postgres://gate:pw@db:5432/g?sslmode=require"),
        "postgres://gate:***@db:5432/g?sslmode=require"
    );
    assert_eq!(redact_url("postgres://gate@db/g"), "postgres://gate@db/g");
    assert_eq!(redact_url("postgres://db/g"), "postgres://db/g");
    assert_eq!(
        scrub("bad password p@ss/w", "postgres://u:p%40ss%2Fw@h/d"),
        "bad password ***"
    );
    assert_eq!(percent_decode("a%20b%23"), Some("a b#".into()));
    assert_eq!(percent_decode("a%2"), None);
    assert_eq!(percent_decode("a%+1"), None, "a sign is not a hex digit");
    assert_eq!(percent_decode("a%-f"), None);
    assert_eq!(percent_encode_path("/tmp/a b#?%.db"), "/tmp/a%20b%23%3F%25.db");
}

/// `admin_url` pointing at database `name` instead, keeping user, host and parameters.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// Runs `test` with the URL of a fresh database on the PostgreSQL server named by
/// `GATEHOUSE_TEST_PG_URL` (default: the local one), and drops that database afterwards,
/// even when the test fails.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let admin_url = std::env::var("GATEHOUSE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
    let shown = redact_url(&admin_url);
    let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "PostgreSQL at {shown} is not usable ({}); run tests/peers/postgres.sh \
             (or set GATEHOUSE_TEST_PG_URL to a URL that may create databases)",
            scrub(&e.to_string(), &admin_url)
        ),
    };
    let name = format!("gatehouse_test_{}", random_hex());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database at {shown}: {e}; run tests/peers/postgres.sh"));

    // Run in a task so that a failed assertion still drops the database below.
    let outcome = tokio::spawn(test(with_database(&admin_url, &name))).await;

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn postgres_store() {
    on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        assert!(store.is_postgres());
        suite(&store).await;
        let migrations = applied_migrations(&store).await;
        assert!(migrations >= 1);
        store.close().await;

        let reopened = Store::open_postgres(&url).await.unwrap();
        assert_eq!(applied_migrations(&reopened).await, migrations);
        check_left_over(&reopened).await;
        reopened.close().await;
    })
    .await;
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h?sslmode=disable", "t1"),
        "postgres://u:p@h/t1?sslmode=disable"
    );
}

#[test]
fn access_spellings() {
    for (access, text) in [
        (Access::Public, "public"),
        (Access::Authenticated, "authenticated"),
        (Access::Restricted, "restricted"),
    ] {
        assert_eq!(access.as_str(), text);
        assert_eq!(access.to_string(), text);
        assert_eq!(text.parse::<Access>().unwrap(), access);
        assert_eq!(serde_json::to_string(&access).unwrap(), format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Access>(&format!("\"{text}\"")).unwrap(), access);
    }
    for bad in ["everyone", "Public", "", "restricted "] {
        assert!(matches!(bad.parse::<Access>(), Err(StoreError::Invalid(_))), "{bad:?}");
    }
}

/// Apps saved before `groups_sent = "auto"` existed said "all", the old default, only because
/// nothing else was offered; the migration moves them to the new default and leaves other
/// choices alone. Checked by running the migration again over such rows.
#[tokio::test]
async fn apps_saved_with_the_old_default_move_to_auto() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    for (slug, sent) in [("old", "all"), ("chosen", "referenced")] {
        store
            .save_app(&app(slug, 1_000), Expect::Absent, &actor())
            .await
            .unwrap();
        sqlx::query::<Any>("UPDATE apps SET groups_sent = $1 WHERE slug = $2")
            .bind(sent)
            .bind(slug)
            .execute(&store.pool)
            .await
            .unwrap();
    }
    // As if the database were from before the migration.
    sqlx::query::<Any>("DELETE FROM _sqlx_migrations WHERE version = 20261127000012")
        .execute(&store.pool)
        .await
        .unwrap();
    store.close().await;
    let store = Store::open_sqlite(&path).await.unwrap();
    let sent = |slug: &'static str| {
        let store = store.clone();
        async move {
            store
                .apps()
                .await
                .unwrap()
                .into_iter()
                .find(|a| a.slug == slug)
                .map(|a| a.groups_sent)
        }
    };
    assert_eq!(sent("old").await.as_deref(), Some("auto"));
    assert_eq!(sent("chosen").await.as_deref(), Some("referenced"));
}
