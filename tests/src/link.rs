//! A loopback TCP link to a real server that a test can break: it forwards bytes both ways
//! until told to go [`LinkState::Down`] (every open connection is closed and new ones are
//! closed as soon as they are accepted — a server that went away) or
//! [`LinkState::Stalled`] (connections stay open but nothing passes either way — a server
//! or network that hangs). Back to [`LinkState::Up`], connections made from then on work
//! again; the ones broken or stalled meanwhile are closed, as after a real outage.
//!
//! ```ignore
//! let link = Link::to("127.0.0.1:5432".parse().unwrap()).await;
//! // connect to link.addr instead of the server …
//! link.set(LinkState::Stalled).await;
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does with bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Up,
    Down,
    Stalled,
}

/// A running link; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct Link {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    state: watch::Sender<LinkState>,
    /// Connections forwarding bytes right now.
    carrying: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// A link on a free loopback port to `target`, up.
    pub async fn to(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind link");
        let addr = listener.local_addr().expect("link address");
        let (state, watching) = watch::channel(LinkState::Up);
        let carrying = Arc::new(AtomicUsize::new(0));
        let counted = carrying.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut watching = watching.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    // Counted before the state is read, so `set` cannot miss it.
                    counted.fetch_add(1, Ordering::SeqCst);
                    if *watching.borrow_and_update() == LinkState::Up {
                        carry(client, target, &mut watching, &counted).await;
                    } else {
                        counted.fetch_sub(1, Ordering::SeqCst);
                        hold(client, &mut watching).await;
                    }
                });
            }
        });
        Link {
            addr,
            state,
            carrying,
            task,
        }
    }

    /// Changes what the link does, for open connections and new ones. Taking the link down
    /// or stalling it returns once no connection forwards a byte any more.
    pub async fn set(&self, to: LinkState) {
        self.state.send_replace(to);
        if to == LinkState::Up {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.carrying.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "the link's connections did not stop within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        self.state.send_replace(LinkState::Down);
    }
}

/// Forwards between `client` and `target` until the link leaves [`LinkState::Up`]; then
/// holds the connection the way the new state says.
async fn carry(
    mut client: TcpStream,
    target: SocketAddr,
    watching: &mut watch::Receiver<LinkState>,
    carrying: &AtomicUsize,
) {
    let left = match TcpStream::connect(target).await {
        Ok(mut server) => tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => None,
            r = watching.wait_for(|s| *s != LinkState::Up) => r.is_ok().then_some(server),
        },
        Err(_) => None,
    };
    carrying.fetch_sub(1, Ordering::SeqCst);
    if let Some(server) = left {
        drop(server);
        hold(client, watching).await;
    }
}

/// A connection accepted or caught while the link is not up: closed at once when it is
/// down; kept open without a byte passing while it is stalled, and closed when the link
/// leaves that state.
async fn hold(mut client: TcpStream, watching: &mut watch::Receiver<LinkState>) {
    if *watching.borrow_and_update() == LinkState::Stalled {
        let _ = watching.wait_for(|s| *s != LinkState::Stalled).await;
    }
    let _ = client.shutdown().await;
}
