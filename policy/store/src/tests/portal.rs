//! The App Portal's per-person state on both databases: favourites (idempotent, per person,
//! capped) and recently opened apps read from usage.

use super::*;

const DAY: i64 = 20_000;
const T: i64 = DAY * 86_400;

fn visit(app: &str, day: i64, person: &str, last_at: i64) -> VisitCount {
    VisitCount {
        app: app.into(),
        day,
        person: person.into(),
        visits: 1,
        last_at,
    }
}

async fn portal_suite(store: &Store) {
    assert_eq!(store.favourites("alice").await.unwrap(), Vec::<String>::new());
    store.set_favourite("alice", "sales", true, 10).await.unwrap();
    store.set_favourite("alice", "hr", true, 20).await.unwrap();
    // Marking again keeps the first time (and its place).
    store.set_favourite("alice", "sales", true, 30).await.unwrap();
    store.set_favourite("bob", "hr", true, 5).await.unwrap();
    assert_eq!(store.favourites("alice").await.unwrap(), ["sales", "hr"]);
    assert_eq!(store.favourites("bob").await.unwrap(), ["hr"]);
    store.set_favourite("alice", "sales", false, 40).await.unwrap();
    store.set_favourite("alice", "sales", false, 41).await.unwrap();
    assert_eq!(store.favourites("alice").await.unwrap(), ["hr"]);
    assert_eq!(
        store.favourites("bob").await.unwrap(),
        ["hr"],
        "one person's change only"
    );
    assert!(matches!(
        store.set_favourite("", "hr", true, 1).await,
        Err(StoreError::Invalid(_))
    ));

    store
        .add_visits(&[
            visit("sales", DAY - 40, "alice", T - 40 * 86_400),
            visit("hr", DAY - 1, "alice", T - 100),
            visit("wiki", DAY, "alice", T + 50),
            visit("hr", DAY, "alice", T + 10),
            visit("grafana", DAY, "bob", T + 99),
            visit("grafana", DAY, "", T + 500),
        ])
        .await
        .unwrap();
    let recent = store.recent_apps("alice", DAY - 30, 10).await.unwrap();
    assert_eq!(
        recent,
        [("wiki".to_string(), T + 50), ("hr".to_string(), T + 10)],
        "latest visit per app first; older than the window left out"
    );
    assert_eq!(store.recent_apps("alice", DAY - 30, 1).await.unwrap().len(), 1);
    assert_eq!(
        store.recent_apps("", 0, 10).await.unwrap(),
        vec![],
        "anonymous has no recents"
    );
}

/// The cap: a person cannot pile up favourites without end.
async fn favourites_are_capped(store: &Store) {
    for i in 0..MAX_FAVOURITES {
        sqlx::query("INSERT INTO portal_favourites (person, app, created_at) VALUES ($1, $2, $3)")
            .bind("hoarder")
            .bind(format!("app{i}"))
            .bind(i)
            .execute(&store.pool)
            .await
            .unwrap();
    }
    assert!(matches!(
        store.set_favourite("hoarder", "one-more", true, 1).await,
        Err(StoreError::Invalid(_))
    ));
    store.set_favourite("hoarder", "app1", true, 1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_portal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("portal.db")).await.unwrap();
    portal_suite(&store).await;
    favourites_are_capped(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_portal() {
    on_postgres(|url| async move {
        let store = Store::open_postgres(&url).await.unwrap();
        portal_suite(&store).await;
        favourites_are_capped(&store).await;
        store.close().await;
    })
    .await;
}
