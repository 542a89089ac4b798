//! The store when the database cannot do the work: SQLite with a full database (a real
//! `SQLITE_FULL`, made with `PRAGMA max_page_count` since filling a disk needs root) and the
//! error codes of a PostgreSQL server being stopped are "unavailable" (try again later,
//! nothing changed), as are the driver's errors of reaching the database; a change that
//! could not be written leaves neither the change nor its audit row behind, and once there
//! is space again changes succeed without a restart.

use super::*;

#[test]
fn codes_of_a_stopping_server_or_a_full_disk_are_unavailable() {
    for code in ["08006", "08001", "57P01", "57P02", "57P03", "13"] {
        assert!(error::unavailable_code(code), "{code}");
    }
    // A unique violation, a missing table, SQLite's constraint or corruption: not.
    for code in ["23505", "42P01", "19", "2067", "11", "57014", "1"] {
        assert!(!error::unavailable_code(code), "{code}");
    }
}

#[test]
fn errors_of_reaching_the_database_are_unavailable_and_of_the_statement_are_not() {
    use sqlx::Error as E;
    let reaching = [
        E::PoolTimedOut,
        E::PoolClosed,
        E::WorkerCrashed,
        E::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        E::Tls("handshake failed".into()),
        // What sqlx says when a proxy accepts the connection of a server that is down and
        // closes it at once (seen through tests/src/link.rs).
        E::Protocol("unexpected response from SSLRequest: 0x00".into()),
    ];
    for e in reaching {
        let shown = format!("{e:?}");
        assert!(error::classify("reading".into(), e).is_unavailable(), "{shown}");
    }
    let statement = [
        E::RowNotFound,
        E::ColumnNotFound("groups_json".into()),
        E::Configuration("bad url".into()),
        E::Decode("not a number".into()),
    ];
    for e in statement {
        let shown = format!("{e:?}");
        assert!(!error::classify("reading".into(), e).is_unavailable(), "{shown}");
    }
}

#[tokio::test]
async fn a_full_sqlite_database_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        // One connection, so that the page limit below applies to every statement.
        max_connections: 1,
        ..StoreOptions::default()
    };
    let store = Store::open_sqlite_with(&dir.path().join("full.db"), &options)
        .await
        .unwrap();
    store.create_user(&user("alice", &["staff"]), &actor()).await.unwrap();
    let pages: i64 = sqlx::query_scalar::<Any, i64>("PRAGMA page_count")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    sqlx::query::<Any>(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
        .execute(&store.pool)
        .await
        .unwrap();

    // Users with long display names until the database is full.
    let mut failed = None;
    for i in 0..200 {
        let mut who = user(&format!("filler{i}"), &["staff"]);
        who.display_name = Some("x".repeat(4000));
        if let Err(e) = store.create_user(&who, &actor()).await {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("the database never filled up");
    assert!(e.is_unavailable(), "a full database is 'unavailable, try later': {e:?}");
    // The user that did not fit and its audit row are both absent.
    let missing = format!("filler{i}");
    assert!(store.user(&u(&missing)).await.unwrap().is_none());
    let rows = store
        .audit_events(&AuditFilter {
            target: Some(missing.clone()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(rows.is_empty(), "an audit row for a change that failed: {rows:?}");
    // Reads still work: the rows written before are there.
    assert!(store.user(&u("alice")).await.unwrap().is_some());

    // Space again (the page limit was a setting of the connection that hit it): the next
    // change succeeds without a restart. The connection whose rollback failed after
    // SQLITE_FULL still counted a transaction as open and would fail every later one
    // (`InvalidSavePointStatement`); the pool closes such connections instead of reusing them.
    store
        .create_user(&user("bob", &["staff"]), &actor())
        .await
        .expect("a change after the database was full, without a restart");
    assert!(store.user(&u("bob")).await.unwrap().is_some());
}
