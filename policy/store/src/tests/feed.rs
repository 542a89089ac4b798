//! The change feed, and audit rows that share their change's fate, on both databases. On
//! PostgreSQL also: changes made by another client (as `psql` would), `Resync` after the
//! listener's connection is killed, and the listener's end with the store.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::*;

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

fn app_changed(slug: &str) -> Change {
    Change::App { slug: slug.into() }
}

fn user_changed(name: &str) -> Change {
    Change::User { username: name.into() }
}

fn session_changed(id: &str) -> Change {
    Change::Session { id_hash: id.into() }
}

/// Receives exactly `expected` (in any order), then nothing for [`QUIET`].
async fn expect(rx: &mut Receiver<Change>, expected: &[Change]) {
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Ok(change)) => got.push(change),
            Ok(Err(e)) => panic!("feed failed ({e}) waiting for {expected:?}; got {got:?}"),
            Err(_) => panic!("waited {WAIT:?} for {expected:?}; got {got:?}"),
        }
    }
    if let Ok(more) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("expected only {expected:?}, then also got {more:?}");
    }
    let key = |c: &Change| format!("{c:?}");
    let mut want = expected.to_vec();
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
}

/// Every write method announces what it changed, once; reads and `last_seen` do not.
async fn feed_suite(store: &Store) {
    let mut rx = store.subscribe();
    let me = actor();

    store.create_user(&user("Alice", &["staff"]), &me).await.unwrap();
    expect(&mut rx, &[user_changed("alice")]).await;
    store
        .set_user_groups(&u("alice"), &group_names(&["ops"]), &me)
        .await
        .unwrap();
    expect(&mut rx, &[user_changed("alice")]).await;
    store.set_password_hash(&u("alice"), "$argon2id$x", &me).await.unwrap();
    store.set_user_admin(&u("alice"), true, &me).await.unwrap();
    store.set_user_disabled(&u("alice"), false, &me).await.unwrap();
    expect(
        &mut rx,
        &[user_changed("alice"), user_changed("alice"), user_changed("alice")],
    )
    .await;
    // Refused or missing: nothing changed, nothing announced.
    assert!(store.create_user(&user("ALICE", &[]), &me).await.is_err());
    assert!(store.set_user_admin(&u("nobody"), true, &me).await.is_err());
    assert!(!store.delete_user(&u("nobody"), &me).await.unwrap());
    let _ = store.user(&u("alice")).await.unwrap();
    expect(&mut rx, &[]).await;

    store.upsert_app(&app("sales", 1), &me).await.unwrap();
    store.upsert_app(&app("sales", 2), &me).await.unwrap();
    expect(&mut rx, &[app_changed("sales"), app_changed("sales")]).await;
    assert!(store.delete_app("sales", &me).await.unwrap());
    assert!(!store.delete_app("sales", &me).await.unwrap());
    expect(&mut rx, &[app_changed("sales")]).await;

    store.insert_signing_key(&key("k1", 1), &me).await.unwrap();
    store.retire_signing_key("k1", 2, &me).await.unwrap();
    assert!(store.delete_signing_key("k1", &me).await.unwrap());
    expect(
        &mut rx,
        &[Change::SigningKeys, Change::SigningKeys, Change::SigningKeys],
    )
    .await;

    // New sessions and activity are not news; group changes and every way of ending one are.
    for (id, name) in [("s1", "alice"), ("s2", "alice"), ("s3", "bob"), ("s4", "alice")] {
        store.insert_session(&session(id, name, 10, 10)).await.unwrap();
    }
    store.touch_session("s1", 20).await.unwrap();
    store.set_session_provider_data("s1", "{}").await.unwrap();
    expect(&mut rx, &[]).await;
    store
        .update_session_groups("s1", &group_names(&["x"]), 20)
        .await
        .unwrap();
    expect(&mut rx, &[session_changed("s1")]).await;
    assert!(store.delete_session("s1", &me).await.unwrap());
    expect(&mut rx, &[session_changed("s1")]).await;
    store.delete_session("s2", &me).await.unwrap();
    store.insert_session(&session("s2", "alice", 10, 10)).await.unwrap();
    expect(&mut rx, &[session_changed("s2")]).await;
    assert_eq!(store.delete_user_sessions(&u("alice"), &me).await.unwrap(), 2);
    expect(&mut rx, &[session_changed("s2"), session_changed("s4")]).await;
    store.insert_session(&session("s5", "alice", 10, 10)).await.unwrap();
    assert!(store.delete_user(&u("alice"), &me).await.unwrap());
    expect(&mut rx, &[user_changed("alice"), session_changed("s5")]).await;
    assert_eq!(store.delete_expired_sessions(i64::MAX, 0).await.unwrap(), 1);
    expect(&mut rx, &[session_changed("s3")]).await;
}

#[tokio::test]
async fn sqlite_change_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feed.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    feed_suite(&store).await;

    // SQLite has no notifications: another process (here, another pool) is not heard.
    let other = Store::open_sqlite(&path).await.unwrap();
    let mut rx = store.subscribe();
    other.upsert_app(&app("elsewhere", 1), &actor()).await.unwrap();
    expect(&mut rx, &[]).await;
}

/// `sql` run by a client of its own, as an operator's `psql` would.
async fn psql(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.unwrap();
}

/// How many change-feed listeners are connected to the database at `url`.
async fn listeners(url: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let n = sqlx::query_scalar::<sqlx::Postgres, i64>(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}

async fn wait_for_listeners(url: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = listeners(url).await;
        if n == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} listeners, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn postgres_change_feed() {
    on_postgres(|url| async move {
        let store = Store::open_postgres(&url).await.unwrap();
        assert_eq!(listeners(&url).await, 1, "one listener, connected before open returns");
        feed_suite(&store).await;

        // Changes by any other client are heard too.
        let mut rx = store.subscribe();
        psql(
            &url,
            "INSERT INTO apps (slug, name, access, created_at, updated_at) \
             VALUES ('ext', 'External', 'public', 0, 0)",
        )
        .await;
        expect(&mut rx, &[app_changed("ext")]).await;
        store.create_user(&user("eve", &[]), &actor()).await.unwrap();
        expect(&mut rx, &[user_changed("eve")]).await;
        psql(&url, "UPDATE users SET admin = 1 WHERE username = 'eve'").await;
        expect(&mut rx, &[user_changed("eve")]).await;
        store.insert_session(&session("e1", "eve", 10, 10)).await.unwrap();
        psql(&url, "UPDATE sessions SET last_seen = 99 WHERE id_hash = 'e1'").await;
        expect(&mut rx, &[]).await;
        psql(&url, "UPDATE sessions SET groups_json = '[]' WHERE id_hash = 'e1'").await;
        expect(&mut rx, &[session_changed("e1")]).await;
        psql(&url, "DELETE FROM sessions WHERE id_hash = 'e1'").await;
        expect(&mut rx, &[session_changed("e1")]).await;
        psql(
            &url,
            "INSERT INTO signing_keys (kid, private_pem, public_jwk, created_at) VALUES ('x', 'p', '{}', 0)",
        )
        .await;
        expect(&mut rx, &[Change::SigningKeys]).await;
        // A renamed key announces both names.
        psql(&url, "UPDATE apps SET slug = 'ext2' WHERE slug = 'ext'").await;
        expect(&mut rx, &[app_changed("ext"), app_changed("ext2")]).await;
        // One transaction: identical announcements are delivered once; a rolled-back one
        // never.
        psql(
            &url,
            "BEGIN; UPDATE apps SET name = 'a' WHERE slug = 'ext2'; \
             UPDATE apps SET name = 'b' WHERE slug = 'ext2'; COMMIT",
        )
        .await;
        expect(&mut rx, &[app_changed("ext2")]).await;
        psql(&url, "BEGIN; DELETE FROM apps; ROLLBACK").await;
        expect(&mut rx, &[]).await;
        // What a payload cannot carry means "reload everything".
        psql(&url, "TRUNCATE apps").await;
        expect(&mut rx, &[Change::Resync]).await;
        psql(
            &url,
            "INSERT INTO users (username, created_at) VALUES (repeat('x', 8000), 0)",
        )
        .await;
        expect(&mut rx, &[Change::Resync]).await;

        // The listener's connection dies: it comes back and says Resync, and hears again.
        psql(
            &url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'gatehouse-change-feed' AND datname = current_database()",
        )
        .await;
        expect(&mut rx, &[Change::Resync]).await;
        wait_for_listeners(&url, 1).await;
        store.upsert_app(&app("after", 1), &actor()).await.unwrap();
        expect(&mut rx, &[app_changed("after")]).await;

        // close() ends the listener.
        store.close().await;
        wait_for_listeners(&url, 0).await;

        // So does dropping the last clone; subscribers then see the feed closed.
        let again = Store::open_postgres(&url).await.unwrap();
        let clone = again.clone();
        let mut rx = clone.subscribe();
        wait_for_listeners(&url, 1).await;
        drop(again);
        tokio::time::sleep(QUIET).await;
        assert_eq!(listeners(&url).await, 1, "a clone is left: still listening");
        drop(clone);
        wait_for_listeners(&url, 0).await;
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Err(RecvError::Closed)) => {}
            other => panic!("expected the feed to close, got {other:?}"),
        }
    })
    .await;
}

/// SQL that makes the audit insert fail for targets starting with `victim`, and SQL that
/// undoes it.
fn refuse_audit(store: &Store) -> (&'static str, &'static str) {
    if store.is_postgres() {
        (
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.target LIKE 'victim%' THEN RAISE EXCEPTION 'audit refused'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
            "DROP TRIGGER refuse_audit ON audit_log; DROP FUNCTION refuse_audit()",
        )
    } else {
        (
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
             WHEN NEW.target LIKE 'victim%' BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
            "DROP TRIGGER refuse_audit",
        )
    }
}

/// When the audit row cannot be written, the change it records does not happen either
/// (and is not announced).
async fn audit_failure_undoes_the_change(store: &Store) {
    let me = actor();
    store.create_user(&user("victim", &["staff"]), &me).await.unwrap();
    store.upsert_app(&app("victim", 1), &me).await.unwrap();
    store.insert_signing_key(&key("victim-key", 1), &me).await.unwrap();
    store
        .insert_session(&session("victim-session", "victim", 1, 1))
        .await
        .unwrap();
    let before = (
        store.user(&u("victim")).await.unwrap(),
        store.app("victim").await.unwrap(),
        store.signing_keys().await.unwrap(),
        store.sessions_of(&u("victim")).await.unwrap(),
    );
    let rows = store.audit_events(&AuditFilter::default()).await.unwrap().len();
    let mut rx = store.subscribe();

    let (refuse, allow) = refuse_audit(store);
    sqlx::raw_sql(sqlx::AssertSqlSafe(refuse))
        .execute(&store.pool)
        .await
        .unwrap();
    let refused = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Database { source, .. }) => {
            assert!(source.to_string().contains("audit refused"), "{what}: {source}")
        }
        other => panic!("{what}: expected the audit failure, got {other:?}"),
    };
    let victim = u("victim");
    refused(store.set_user_admin(&victim, true, &me).await, "set_user_admin");
    refused(store.set_user_groups(&victim, &[], &me).await, "set_user_groups");
    refused(store.delete_user(&victim, &me).await.map(drop), "delete_user");
    refused(store.create_user(&user("victim2", &[]), &me).await, "create_user");
    let mut renamed = app("victim", 1);
    renamed.name = "Renamed".into();
    refused(store.upsert_app(&renamed, &me).await, "upsert_app");
    refused(store.delete_app("victim", &me).await.map(drop), "delete_app");
    refused(
        store.retire_signing_key("victim-key", 5, &me).await,
        "retire_signing_key",
    );
    refused(
        store.insert_signing_key(&key("victim-new", 1), &me).await,
        "insert_signing_key",
    );
    refused(
        store.delete_user_sessions(&victim, &me).await.map(drop),
        "delete_user_sessions",
    );

    let after = (
        store.user(&u("victim")).await.unwrap(),
        store.app("victim").await.unwrap(),
        store.signing_keys().await.unwrap(),
        store.sessions_of(&u("victim")).await.unwrap(),
    );
    assert_eq!(before, after, "every change was rolled back with its audit row");
    assert_eq!(store.user(&u("victim2")).await.unwrap(), None);
    assert_eq!(store.audit_events(&AuditFilter::default()).await.unwrap().len(), rows);
    expect(&mut rx, &[]).await;

    // Once audit rows can be written again, the same changes go through.
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow))
        .execute(&store.pool)
        .await
        .unwrap();
    store.set_user_admin(&victim, true, &me).await.unwrap();
    expect(&mut rx, &[user_changed("victim")]).await;
    let rows = audit_rows(store, "user.set_admin", "victim").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].before.as_ref().unwrap()["admin"], false);
    assert_eq!(rows[0].after.as_ref().unwrap()["admin"], true);
}

#[tokio::test]
async fn sqlite_audit_failure_undoes_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("audit.db")).await.unwrap();
    audit_failure_undoes_the_change(&store).await;
}

#[tokio::test]
async fn postgres_audit_failure_undoes_the_change() {
    on_postgres(|url| async move {
        let store = Store::open_postgres(&url).await.unwrap();
        audit_failure_undoes_the_change(&store).await;
        store.close().await;
    })
    .await;
}
