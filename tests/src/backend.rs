//! An upstream app for tests, on a free loopback port. It echoes what it received and has
//! paths for streaming behaviour, chosen by the last path segment:
//! - `…/sse`: five server-sent events, 300 ms apart;
//! - `…/events`: server-sent events, 200 ms apart, until the client goes away;
//! - `…/ws`: WebSocket echo;
//! - `…/upload`: counts the request body bytes as they stream in, answers `{"bytes": n}`;
//! - `…/slow?ms=N`: answers after N ms;
//! - `…/set-cookie?set=a,b`: sets a cookie of each name;
//! - anything else: `{"backend", "method", "path", "headers"}` as JSON.
//!
//! [`Backend::stop`] closes the listener and every open connection, like a crashed app;
//! [`Backend::stop_gracefully`] stops accepting, finishes the requests in flight and closes
//! idle connections, like an app restarted by its process manager.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinSet;

/// A running test upstream.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    draining: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
struct Shared {
    name: String,
    hits: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
}

/// Counts an open WebSocket or event stream for as long as it lives.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(count: &Arc<AtomicUsize>) -> OpenStream {
        count.fetch_add(1, Ordering::SeqCst);
        OpenStream(count.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend {
    /// Starts on a free port.
    pub async fn start(name: &str) -> Backend {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), name).await
    }

    /// Starts on `addr` (to bring a stopped backend back on its port).
    pub async fn start_on(addr: SocketAddr, name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            name: name.to_string(),
            hits: hits.clone(),
            streams: streams.clone(),
        };
        let (draining, drain) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the task drops the set and kills them.
            let mut conns = JoinSet::new();
            let mut stop = drain.clone();
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => break,
                };
                let Ok((stream, _)) = accepted else {
                    continue;
                };
                let mut drain = drain.clone();
                let shared = shared.clone();
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(shared, req.map(Body::new)).await) }
                });
                conns.spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = drain.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
                while conns.try_join_next().is_some() {}
            }
            drop(listener);
            while conns.join_next().await.is_some() {}
        });
        Backend {
            addr,
            name: name.to_string(),
            hits,
            streams,
            task,
            draining,
        }
    }

    /// WebSockets (`…/ws`) and event streams (`…/events`) open now, as this app sees them.
    pub fn open_streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets the requests in flight finish and closes every connection as
    /// it goes idle (at most 5 s, then as [`Backend::stop`]).
    pub async fn stop_gracefully(mut self) -> SocketAddr {
        let _ = self.draining.send(true);
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        self.addr
    }

    /// Closes the listener and all connections.
    pub async fn stop(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

async fn handle(shared: Shared, req: Request) -> Response {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let last = path.rsplit('/').next().unwrap_or("").to_string();
    match last.as_str() {
        "sse" => {
            let events = futures_util::stream::unfold(0u32, |i| async move {
                if i >= 5 {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Some((Ok::<_, Infallible>(format!("data: event {i}\n\n")), i + 1))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(events))
                .unwrap_or_default()
        }
        "events" => {
            let open = OpenStream::new(&shared.streams);
            let events = futures_util::stream::unfold((0u64, open), |(i, open)| async move {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some((Ok::<_, Infallible>(format!("data: tick {i}\n\n")), (i + 1, open)))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(events))
                .unwrap_or_default()
        }
        "ws" => match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => {
                let open = OpenStream::new(&shared.streams);
                ws.on_upgrade(|mut socket| async move {
                    let _open = open;
                    while let Some(Ok(msg)) = socket.recv().await {
                        let reply = match msg {
                            Message::Text(t) => Message::Text(format!("echo: {}", t.as_str()).into()),
                            Message::Binary(b) => Message::Binary(b),
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if socket.send(reply).await.is_err() {
                            break;
                        }
                    }
                })
                .into_response()
            }
            Err(e) => e.into_response(),
        },
        "upload" => {
            let mut stream = req.into_body().into_data_stream();
            let mut n: u64 = 0;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => n += c.len() as u64,
                    Err(_) => break,
                }
            }
            axum::Json(serde_json::json!({ "bytes": n })).into_response()
        }
        "set-cookie" => {
            // Sets a cookie for each name in `?set=a,b,c` (an app trying to set any cookie).
            let names: Vec<String> = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("set="))
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let mut res = axum::Json(serde_json::json!({ "backend": shared.name })).into_response();
            for n in names {
                if let Ok(v) = http::HeaderValue::from_str(&format!("{n}=from-app; Path=/")) {
                    res.headers_mut().append(http::header::SET_COOKIE, v);
                }
            }
            res
        }
        "slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            axum::Json(serde_json::json!({ "backend": shared.name, "slept_ms": ms })).into_response()
        }
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in req.headers() {
                headers
                    .entry(k.as_str().to_string())
                    .or_default()
                    .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
            }
            axum::Json(serde_json::json!({
                "backend": shared.name,
                "method": req.method().as_str(),
                "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
                "headers": headers,
            }))
            .into_response()
        }
    }
}
