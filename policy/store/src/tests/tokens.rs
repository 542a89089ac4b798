//! API tokens on both databases: create, find by hash, revoke, expire, last use — and the
//! secret itself is never stored.

use super::*;

const NOW: i64 = 2_000_000;
/// What a caller would hand out: the store only ever receives its hash.
const SECRET: &str = "ghk_thisIsTheSecretItselfAndMustNeverBeStored0123";

fn token(id: &str, name: &str, hash: &str, scope: TokenScope, expires_at: Option<i64>) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        name: name.into(),
        scope,
        secret_hash: hash.into(),
        created_by: "root".into(),
        created_at: NOW,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
    }
}

async fn tokens(store: &Store) {
    let hash = api_token_hash(SECRET);
    assert_eq!(hash.len(), 64);
    assert_ne!(api_token_hash("ghk_a"), api_token_hash("ghk_b"));
    let ci = token("t1", "ci-deploy", &hash, TokenScope::Admin, None);
    store.create_api_token(&ci, &actor()).await.unwrap();
    let sales = token(
        "t2",
        "sales-bot",
        "h2",
        TokenScope::App("sales".into()),
        Some(NOW + 100),
    );
    store.create_api_token(&sales, &actor()).await.unwrap();
    // A second live token of the same name, or the same hash: refused.
    assert!(matches!(
        store
            .create_api_token(&token("t3", "ci-deploy", "h3", TokenScope::Admin, None), &actor())
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .create_api_token(&token("t4", "other", &hash, TokenScope::Admin, None), &actor())
            .await,
        Err(StoreError::Conflict { .. })
    ));

    // Found by hash; unknown hash: none.
    let found = store.api_token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(found, ci);
    assert!(found.usable(NOW));
    assert_eq!(store.api_token_by_hash("nope").await.unwrap(), None);
    let s = store.api_token_by_hash("h2").await.unwrap().unwrap();
    assert_eq!(s.scope, TokenScope::App("sales".into()));
    assert!(s.usable(NOW + 99) && !s.usable(NOW + 100), "expiry is exclusive");

    // Last use: recorded, at most once a minute.
    store.touch_api_token("t1", NOW + 5).await.unwrap();
    store.touch_api_token("t1", NOW + 30).await.unwrap();
    assert_eq!(
        store.api_token_by_hash(&hash).await.unwrap().unwrap().last_used_at,
        Some(NOW + 5)
    );
    store.touch_api_token("t1", NOW + 70).await.unwrap();
    assert_eq!(
        store.api_token_by_hash(&hash).await.unwrap().unwrap().last_used_at,
        Some(NOW + 70)
    );

    // Revoked: still found (listed as revoked), no longer usable, revoking again: false.
    assert!(store.revoke_api_token("t1", NOW + 80, &actor()).await.unwrap());
    assert!(!store.revoke_api_token("t1", NOW + 81, &actor()).await.unwrap());
    assert!(!store.revoke_api_token("none", NOW + 81, &actor()).await.unwrap());
    let revoked = store.api_token_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(NOW + 80));
    assert_eq!(revoked.revoked_by.as_deref(), Some("root"));
    assert!(!revoked.usable(NOW + 80));
    // Its name is free again for a new token.
    store
        .create_api_token(&token("t5", "ci-deploy", "h5", TokenScope::Admin, None), &actor())
        .await
        .unwrap();
    let listed: Vec<(String, bool)> = store
        .api_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.revoked_at.is_none()))
        .collect();
    assert_eq!(listed.len(), 3);
    assert!(listed[..2].iter().all(|(_, live)| *live), "live first: {listed:?}");
    assert_eq!(listed[2], ("t1".into(), false));

    // Audited: creation and revocation, never the hash.
    let created = audit_rows(store, "token.create", "token:ci-deploy").await;
    assert_eq!(created.len(), 2);
    let revokes = audit_rows(store, "token.revoke", "token:ci-deploy").await;
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].after.as_ref().unwrap()["revoked_at"], json!(NOW + 80));
    for e in created.iter().chain(&revokes) {
        let text = format!("{:?}{:?}{:?}", e.detail, e.before, e.after);
        assert!(!text.contains(&hash), "{text}");
    }

    // An actor with a token: its name lands in every audit row's detail.
    let via = Actor::new("token:ci-deploy", None).with_token(Some("ci-deploy".into()));
    store
        .put_grant(
            &GrantRecord {
                app: "tokened".into(),
                grantee: Grantee::User(u("zed")),
                expires_at: None,
                created_by: "token:ci-deploy".into(),
                created_at: NOW,
            },
            &via,
        )
        .await
        .unwrap();
    let rows = audit_rows(store, "grant.add", "tokened/user:zed").await;
    assert_eq!(rows[0].detail, json!({"token": "ci-deploy"}));
    assert_eq!(rows[0].actor, "token:ci-deploy");

    // The secret is never stored: no column of any row equals (or contains) it.
    let rows = sqlx::query("SELECT id, name, scope, secret_hash, created_by, revoked_by FROM api_tokens")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    for row in &rows {
        for col in ["id", "name", "scope", "secret_hash", "created_by", "revoked_by"] {
            let v: Option<String> = row.try_get(col).unwrap();
            assert!(!v.unwrap_or_default().contains(SECRET), "{col} holds the secret");
        }
    }
}

#[tokio::test]
async fn tokens_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("tokens.db")).await.unwrap();
    tokens(&store).await;
    store.close().await;
}

#[tokio::test]
async fn tokens_on_postgres() {
    on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        tokens(&store).await;
        store.close().await;
    })
    .await;
}
