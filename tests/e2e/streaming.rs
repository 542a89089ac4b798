//! Streaming both ways: WebSocket pass-through, server-sent events arriving as they are
//! sent, and a 1 GiB upload that streams through without growing the gateway's memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use gatehouse_tests::Backend;
use tokio_tungstenite::tungstenite::Message;

use crate::{gatehouse, json};

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_gateway() {
    let b = Backend::start("ws").await;
    let gw = gatehouse().app("live", &[b.addr], "access = \"public\"").start().await;
    let url = format!("ws://{}/apps/live/ws", gw.addr);
    let (mut ws, res) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("upgrade through gateway");
    assert_eq!(res.status(), 101);
    for i in 0..3 {
        ws.send(Message::Text(format!("hello {i}").into())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), format!("echo: hello {i}"));
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into())).await.unwrap();
    let got = ws.next().await.unwrap().unwrap();
    assert_eq!(got.into_data().as_ref(), &[0u8, 1, 2, 255]);
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_events_arrive_as_they_are_sent() {
    let b = Backend::start("sse").await;
    let gw = gatehouse().app("live", &[b.addr], "access = \"public\"").start().await;
    let res = gw.get("/apps/live/sse").await;
    assert_eq!(res.status(), 200);
    // From the response header on (a loaded machine may be slow to connect): a buffering
    // proxy would hold the first event until the stream ends, 1.2 s later.
    let t0 = Instant::now();
    let mut stream = res.bytes_stream();
    let mut arrivals = vec![];
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        while arrivals.len() < text.matches("data: event").count() {
            arrivals.push(t0.elapsed());
        }
    }
    assert_eq!(arrivals.len(), 5, "{text}");
    // The backend sends one event every 300 ms: buffering would deliver them together.
    assert!(
        arrivals[0] < Duration::from_millis(800),
        "first event late: {arrivals:?}"
    );
    assert!(
        arrivals[4] - arrivals[0] >= Duration::from_millis(900),
        "events bunched: {arrivals:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_gib_upload_streams_with_flat_memory() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let b = Backend::start("upload").await;
    let gw = gatehouse().app("files", &[b.addr], "access = \"public\"").start().await;
    // Warm up, then take the baseline.
    let _ = gw.get("/apps/files/").await;
    let baseline = gw.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), gw.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kib) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
    let body = futures_util::stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let t = Instant::now();
    let res = gw
        .client()
        .post(gw.url("/apps/files/upload"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["bytes"], (CHUNK * CHUNKS) as u64);
    let growth_mib = peak.load(Ordering::SeqCst).saturating_sub(baseline) / 1024;
    eprintln!(
        "1 GiB upload in {:?}; gateway RSS {baseline} KiB → peak +{growth_mib} MiB",
        t.elapsed()
    );
    assert!(
        growth_mib < 64,
        "gateway memory grew by {growth_mib} MiB during a 1 GiB upload"
    );
}
