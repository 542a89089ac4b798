//! Shared sign-in state on both databases: single-use login attempts, the assertion replay
//! cache, failed sign-in counters and the sweep — including races between "replicas"
//! (several tasks on several connections).

use super::*;

const NOW: i64 = 1_000_000;

async fn login_attempts(store: &Store) {
    store
        .put_login_attempt("state-1", "corp", r#"{"nonce":"n1"}"#, NOW + 600)
        .await
        .unwrap();
    assert!(matches!(
        store.put_login_attempt("state-1", "other", "{}", NOW + 600).await,
        Err(StoreError::Conflict { .. })
    ));
    // Single use: the first take gets it, the second nothing.
    assert_eq!(
        store.take_login_attempt("state-1", NOW).await.unwrap(),
        Some(LoginAttempt {
            provider: "corp".into(),
            data: r#"{"nonce":"n1"}"#.into()
        })
    );
    assert_eq!(store.take_login_attempt("state-1", NOW).await.unwrap(), None);
    assert_eq!(store.take_login_attempt("never", NOW).await.unwrap(), None);

    // Expired (expires_at <= now): None, and gone.
    store.put_login_attempt("old", "corp", "{}", NOW).await.unwrap();
    assert_eq!(store.take_login_attempt("old", NOW).await.unwrap(), None);
    store.put_login_attempt("old", "corp", "{}", NOW + 1).await.unwrap();
    assert!(store.take_login_attempt("old", NOW).await.unwrap().is_some());

    // Many replicas racing for one attempt: exactly one wins.
    for round in 0..5 {
        let key = format!("race-{round}");
        store.put_login_attempt(&key, "corp", "{}", NOW + 60).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (store, key) = (store.clone(), key.clone());
            tasks.spawn(async move { store.take_login_attempt(&key, NOW).await.unwrap().is_some() });
        }
        let winners = tasks.join_all().await.into_iter().filter(|won| *won).count();
        assert_eq!(winners, 1, "round {round}");
    }
}

async fn sightings(store: &Store) {
    assert!(store.first_sighting("_a1", NOW + 300, NOW).await.unwrap());
    assert!(!store.first_sighting("_a1", NOW + 300, NOW).await.unwrap(), "a replay");
    assert!(!store.first_sighting("_a1", NOW + 900, NOW + 299).await.unwrap());
    // Once expired the id may be used again, and is then remembered anew.
    assert!(store.first_sighting("_a1", NOW + 900, NOW + 300).await.unwrap());
    assert!(!store.first_sighting("_a1", NOW + 900, NOW + 301).await.unwrap());

    for round in 0..5 {
        let id = format!("_race-{round}");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (store, id) = (store.clone(), id.clone());
            tasks.spawn(async move { store.first_sighting(&id, NOW + 60, NOW).await.unwrap() });
        }
        let first = tasks.join_all().await.into_iter().filter(|f| *f).count();
        assert_eq!(first, 1, "round {round}");
    }
}

async fn failed_signins(store: &Store) {
    assert_eq!(store.failed_signins_since("user:alice", 0).await.unwrap(), 0);
    for at in [NOW - 20, NOW - 10, NOW] {
        store.record_failed_signin("user:alice", at).await.unwrap();
    }
    store.record_failed_signin("ip:192.0.2.1", NOW).await.unwrap();
    assert_eq!(store.failed_signins_since("user:alice", NOW - 20).await.unwrap(), 3);
    assert_eq!(store.failed_signins_since("user:alice", NOW - 10).await.unwrap(), 2);
    assert_eq!(store.failed_signins_since("user:alice", NOW + 1).await.unwrap(), 0);
    assert_eq!(store.failed_signins_since("ip:192.0.2.1", 0).await.unwrap(), 1);

    // Counted from every replica at once: none lost.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move { store.record_failed_signin("user:bob", NOW + i).await.unwrap() });
    }
    tasks.join_all().await;
    assert_eq!(store.failed_signins_since("user:bob", NOW).await.unwrap(), 20);

    store.clear_failed_signins("user:alice").await.unwrap();
    assert_eq!(store.failed_signins_since("user:alice", 0).await.unwrap(), 0);
    assert_eq!(store.failed_signins_since("ip:192.0.2.1", 0).await.unwrap(), 1);
    store.clear_failed_signins("user:bob").await.unwrap();
}

async fn sweep(store: &Store) {
    let day = i64::try_from(FAILED_SIGNIN_RETENTION.as_secs()).unwrap();
    // Left by the parts above: login attempts race-0..4 (NOW + 60), sightings _a1
    // (NOW + 900) and _race-0..4 (NOW + 60), one failure of ip:192.0.2.1 at NOW.
    store
        .put_login_attempt("later", "corp", "{}", NOW + 10_000)
        .await
        .unwrap();
    store.record_failed_signin("ip:old", NOW - day - 1).await.unwrap();
    store.record_failed_signin("ip:old", NOW - day).await.unwrap();

    // Nothing has expired at NOW but the failure older than the retention.
    assert_eq!(store.sweep_expired(NOW).await.unwrap(), 1);
    assert_eq!(store.failed_signins_since("ip:old", 0).await.unwrap(), 1);
    // At NOW + 60: the five race sightings, and the other ip:old failure is now too old.
    assert_eq!(store.sweep_expired(NOW + 60).await.unwrap(), 6);
    assert_eq!(store.sweep_expired(NOW + 60).await.unwrap(), 0);
    // At NOW + 901: _a1.
    assert_eq!(store.sweep_expired(NOW + 901).await.unwrap(), 1);
    assert!(store.take_login_attempt("later", NOW + 901).await.unwrap().is_some());
    assert!(store.first_sighting("_a1", NOW + 2_000, NOW + 901).await.unwrap());
    assert_eq!(store.failed_signins_since("ip:192.0.2.1", 0).await.unwrap(), 1);
    assert_eq!(store.sweep_expired(NOW + day + 1).await.unwrap(), 2);
    assert_eq!(store.failed_signins_since("ip:192.0.2.1", 0).await.unwrap(), 0);
}

async fn signin_suite(store: &Store) {
    login_attempts(store).await;
    sightings(store).await;
    failed_signins(store).await;
    sweep(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_signin_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("signin.db")).await.unwrap();
    signin_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_signin_state() {
    on_postgres(|url| async move {
        // Two stores, as two replicas would have.
        let first = Store::open_postgres(&url).await.unwrap();
        signin_suite(&first).await;
        let second = Store::open_postgres(&url).await.unwrap();
        second.put_login_attempt("cross", "corp", "{}", NOW + 60).await.unwrap();
        assert!(first.take_login_attempt("cross", NOW).await.unwrap().is_some());
        assert!(second.take_login_attempt("cross", NOW).await.unwrap().is_none());
        assert!(second.first_sighting("_x", NOW + 60, NOW).await.unwrap());
        assert!(!first.first_sighting("_x", NOW + 60, NOW).await.unwrap());
        first.close().await;
        second.close().await;
    })
    .await;
}
