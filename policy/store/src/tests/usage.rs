//! Usage per app on both databases: batches add up (also from two "replicas"), the per-day,
//! per-app and last-visitor queries, anonymous visits counting as visits but not people,
//! and the retention sweep.

use super::*;

const DAY: i64 = 20_000; // 2024-10-04
const T: i64 = DAY * 86_400;

fn visit(app: &str, day: i64, person: &str, visits: i64, last_at: i64) -> VisitCount {
    VisitCount {
        app: app.into(),
        day,
        person: person.into(),
        visits,
        last_at,
    }
}

async fn usage_suite(store: &Store) {
    assert_eq!(store.usage_by_app(0, i64::MAX).await.unwrap(), vec![]);
    store.add_visits(&[]).await.unwrap();
    store
        .add_visits(&[
            visit("sales", DAY, "alice", 3, T + 100),
            visit("sales", DAY, "bob", 1, T + 50),
            visit("sales", DAY, "", 4, T + 10),
            visit("sales", DAY + 1, "alice", 2, T + 86_400 + 5),
            visit("hr", DAY + 1, "carol", 1, T + 86_400 + 9),
        ])
        .await
        .unwrap();
    // A second batch adds to the same keys and keeps the later last_at.
    store
        .add_visits(&[
            visit("sales", DAY, "bob", 2, T + 200),
            visit("sales", DAY, "alice", 1, T + 20),
        ])
        .await
        .unwrap();

    let days = store.usage_days("sales", DAY - 30, DAY + 1).await.unwrap();
    assert_eq!(
        days,
        vec![
            UsageDay {
                day: DAY,
                visits: 11,
                people: 2
            },
            UsageDay {
                day: DAY + 1,
                visits: 2,
                people: 1
            },
        ]
    );
    assert_eq!(store.usage_days("sales", DAY + 1, DAY + 1).await.unwrap().len(), 1);
    assert_eq!(store.usage_days("nobody", 0, DAY + 9).await.unwrap(), vec![]);

    let sales = store.app_usage("sales", DAY, DAY + 1).await.unwrap();
    assert_eq!((sales.visits, sales.people), (13, 2), "distinct people over the range");
    let none = store.app_usage("nobody", DAY, DAY + 1).await.unwrap();
    assert_eq!((none.app.as_str(), none.visits, none.people), ("nobody", 0, 0));

    let all = store.usage_by_app(DAY, DAY + 1).await.unwrap();
    assert_eq!(
        all,
        vec![
            AppUsage {
                app: "hr".into(),
                visits: 1,
                people: 1
            },
            AppUsage {
                app: "sales".into(),
                visits: 13,
                people: 2
            },
        ]
    );
    assert_eq!(store.usage_by_app(DAY + 1, DAY + 1).await.unwrap()[1].visits, 2);

    let last = store.last_visitors("sales", 10).await.unwrap();
    assert_eq!(
        last,
        vec![
            LastVisit {
                person: "alice".into(),
                at: T + 86_400 + 5
            },
            LastVisit {
                person: "bob".into(),
                at: T + 200
            },
        ],
        "latest first, anonymous left out"
    );
    assert_eq!(store.last_visitors("sales", 1).await.unwrap().len(), 1);

    assert_eq!(store.sweep_usage(DAY + 1).await.unwrap(), 3);
    assert_eq!(store.app_usage("sales", 0, DAY + 9).await.unwrap().visits, 2);
    assert_eq!(day_of(T + 86_399), DAY);
    assert_eq!(day_of(-1), -1);
}

/// More rows than one statement holds, in one batch.
async fn big_batch(store: &Store) {
    let batch: Vec<VisitCount> = (0..250)
        .map(|i| visit("big", DAY, &format!("user{i}"), 1, T + i))
        .collect();
    store.add_visits(&batch).await.unwrap();
    let u = store.app_usage("big", DAY, DAY).await.unwrap();
    assert_eq!((u.visits, u.people), (250, 250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_usage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("usage.db")).await.unwrap();
    usage_suite(&store).await;
    big_batch(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_usage() {
    on_postgres(|url| async move {
        let first = Store::open_postgres(&url).await.unwrap();
        usage_suite(&first).await;
        big_batch(&first).await;
        // Two replicas flushing the same keys at once: both counts land.
        let second = Store::open_postgres(&url).await.unwrap();
        let batch: Vec<VisitCount> = (0..20).map(|i| visit("both", DAY, &format!("p{i}"), 1, T)).collect();
        let tasks: Vec<_> = [first.clone(), second.clone(), first.clone(), second.clone()]
            .into_iter()
            .map(|s| {
                let b = batch.clone();
                tokio::spawn(async move { s.add_visits(&b).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let u = second.app_usage("both", DAY, DAY).await.unwrap();
        assert_eq!((u.visits, u.people), (80, 20));
        first.close().await;
        second.close().await;
    })
    .await;
}
