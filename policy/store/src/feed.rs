//! The change feed: what changed in the store, so that gateways rebuild their snapshot,
//! drop cached sessions and reload keys at once instead of waiting for a periodic reload.
//!
//! - **PostgreSQL**: triggers (migration `*_change_feed.sql`) on `apps`, `users`, `sessions`
//!   (deletes, and updates of `groups_json`/`admin`) and `signing_keys` call
//!   `pg_notify('gatehouse_changes', …)` inside the writing transaction, so a change made
//!   by any client — another gateway, the CLI, `psql` — is heard once it commits. Each store
//!   runs one listener task on a dedicated connection (application name
//!   [`LISTENER_APPLICATION_NAME`]). When that connection is lost the task reconnects with
//!   exponential backoff (100 ms doubling to 5 s) and then broadcasts [`Change::Resync`],
//!   because notifications sent meanwhile are gone. This process's own writes are *not*
//!   broadcast directly: their notification comes back through the listener like anyone
//!   else's, so each change is announced exactly once.
//! - **SQLite**: there are no notifications; every write method broadcasts its changes
//!   after its transaction commits. Other processes writing the same file are not heard
//!   (the gateway's periodic full reload covers them).
//!
//! The task stops when the last clone of the [`Store`](crate::Store) is dropped, or on
//! [`Store::close`](crate::Store::close).

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::error::scrub;

/// The channel the triggers notify on.
pub(crate) const CHANNEL: &str = "gatehouse_changes";

/// The `application_name` of the listener's connection, so that operators (and tests) can
/// find it in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "gatehouse-change-feed";

/// How many changes a subscriber may fall behind before it gets
/// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) (and should reload everything).
const CAPACITY: usize = 1024;
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// What changed in the store; gateways rebuild or invalidate accordingly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An `apps` row was inserted, updated or deleted.
    App { slug: String },
    /// A `users` row changed (groups, admin, disabled, password) or was created or deleted.
    User { username: String },
    /// A session was deleted (revoked, signed out, expired) or its groups or admin flag
    /// changed: drop it from caches.
    Session { id_hash: String },
    /// Signing keys changed (a key created, retired or deleted: rotation).
    SigningKeys,
    /// A gateway-wide setting (the branding) changed.
    Settings,
    /// Changes may have been missed (the listener reconnected, a table was truncated): reload
    /// everything.
    Resync,
}

impl Change {
    /// Parses a notification payload: `apps:<slug>`, `grants:<app slug>`, `users:<username>`,
    /// `sessions:<id_hash>`, `signing_keys`, `settings`, `resync`. Anything else is [`Change::Resync`]:
    /// an unknown payload means something changed that this version cannot name.
    pub(crate) fn from_payload(payload: &str) -> Change {
        let (table, key) = payload.split_once(':').unwrap_or((payload, ""));
        match table {
            // A grant changes what its app's policy allows.
            "apps" | "grants" if !key.is_empty() => Change::App { slug: key.to_owned() },
            "users" if !key.is_empty() => Change::User {
                username: key.to_owned(),
            },
            "sessions" if !key.is_empty() => Change::Session {
                id_hash: key.to_owned(),
            },
            "signing_keys" => Change::SigningKeys,
            "settings" => Change::Settings,
            _ => Change::Resync,
        }
    }
}

/// The in-process side of the feed, shared by every clone of one store.
pub(crate) struct Feed {
    tx: broadcast::Sender<Change>,
    /// PostgreSQL only. Dropping it (with the last store clone) stops the task.
    listener: Mutex<Option<ListenerTask>>,
}

struct ListenerTask {
    stop: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

impl Feed {
    pub(crate) fn new() -> Feed {
        Feed {
            tx: broadcast::channel(CAPACITY).0,
            listener: Mutex::new(None),
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// Broadcasts in this process; nobody listening is fine.
    pub(crate) fn send(&self, change: Change) {
        let _ = self.tx.send(change);
    }

    /// Starts the PostgreSQL listener for the database at `url`. The first connection is
    /// made before this returns, so changes committed after `open` are heard; if it fails,
    /// the task keeps trying and broadcasts [`Change::Resync`] once it gets through.
    pub(crate) async fn start_listener(&self, url: &str, connect_timeout: Duration) {
        let first = match Connected::open(url, connect_timeout).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %scrub(&e.to_string(), url), "change feed cannot listen yet; retrying");
                None
            }
        };
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(listen(url.to_owned(), connect_timeout, self.tx.clone(), first, stopped));
        let previous = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(ListenerTask { stop, done });
        if let Some(previous) = previous {
            previous.done.abort();
        }
    }

    /// Stops the listener, if any, and waits until its connection is closed.
    pub(crate) async fn stop(&self) {
        let task = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.stop.send(());
            let _ = task.done.await;
        }
    }
}

/// A listening connection and the one-connection pool it lives in.
struct Connected {
    listener: PgListener,
    pool: PgPool,
}

impl Connected {
    async fn open(url: &str, timeout: Duration) -> Result<Connected, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name(LISTENER_APPLICATION_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        // This task decides when and how often to reconnect, and says Resync when it has.
        listener.eager_reconnect(false);
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        Ok(Connected { listener, pool })
    }

    async fn close(self) {
        drop(self.listener);
        self.pool.close().await;
    }
}

/// The listener task: forwards notifications until told to stop (or every store handle is
/// gone), reconnecting with backoff when the connection is lost.
async fn listen(
    url: String,
    timeout: Duration,
    tx: broadcast::Sender<Change>,
    mut connected: Option<Connected>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        match connected.as_mut() {
            Some(c) => {
                tokio::select! {
                    _ = &mut stop => break,
                    received = c.listener.try_recv() => match received {
                        Ok(Some(n)) => {
                            let _ = tx.send(Change::from_payload(n.payload()));
                        }
                        // Ok(None): the connection was lost. Either way, start afresh.
                        Ok(None) | Err(_) => {
                            tracing::warn!("change feed connection lost; reconnecting");
                            if let Some(c) = connected.take() {
                                c.close().await;
                            }
                        }
                    },
                }
            }
            None => {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(retry) => {}
                }
                let attempt = tokio::select! {
                    _ = &mut stop => break,
                    attempt = Connected::open(&url, timeout) => attempt,
                };
                match attempt {
                    Ok(c) => {
                        connected = Some(c);
                        retry = FIRST_RETRY;
                        tracing::info!("change feed listening again; announcing a full reload");
                        let _ = tx.send(Change::Resync);
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %scrub(&e.to_string(), &url),
                            retry_in_ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX),
                            "change feed cannot listen"
                        );
                        retry = (retry * 2).min(LAST_RETRY);
                    }
                }
            }
        }
    }
    if let Some(c) = connected {
        c.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(Change::from_payload("apps:sales"), Change::App { slug: "sales".into() });
        assert_eq!(
            Change::from_payload("users:a:b"),
            Change::User { username: "a:b".into() }
        );
        assert_eq!(
            Change::from_payload("sessions:ab12"),
            Change::Session { id_hash: "ab12".into() }
        );
        assert_eq!(Change::from_payload("signing_keys"), Change::SigningKeys);
        assert_eq!(Change::from_payload("grants:x"), Change::App { slug: "x".into() });
        for other in ["resync", "garbage", "", "apps:", "users", "grants:"] {
            assert_eq!(Change::from_payload(other), Change::Resync, "{other:?}");
        }
    }
}
