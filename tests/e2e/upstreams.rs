//! Upstream failure handling: clean error pages within the timeout, failover to a healthy
//! upstream, and recovery.

use std::time::{Duration, Instant};

use gatehouse_tests::{free_port, Backend};

use crate::{gatehouse, json};

#[tokio::test(flavor = "multi_thread")]
async fn down_upstream_gives_a_clean_error_quickly() {
    let closed: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // A listener that accepts but never answers: the read timeout must end the request.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = gatehouse()
        .app(
            "down",
            &[closed],
            "name = \"Down app\"\naccess = \"public\"\nhealth_check = { interval = \"60s\" }",
        )
        .app(
            "silent",
            &[silent_addr],
            "name = \"Silent app\"\naccess = \"public\"\ntimeouts = { read = \"1s\", connect = \"1s\" }",
        )
        .start()
        .await;

    let t = Instant::now();
    let r = gw
        .client()
        .get(gw.url("/apps/down/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let page = r.text().await.unwrap();
    // Its only member refuses connections, so it is (or, after the refused connect, becomes)
    // unhealthy: the 503 page naming the app, not the 502 "could not be reached" one.
    assert_eq!(status, 503, "{page}");
    assert!(page.contains("<h1>The app is unavailable</h1>"), "{page}");
    assert!(
        page.contains("Down app has no healthy server right now. Try again in a minute"),
        "{page}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    // Passive health took it out: now an immediate 503.
    let r = gw.get("/apps/down/").await;
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(page.contains("Down app has no healthy server right now"), "{page}");

    let t = Instant::now();
    let r = gw.get("/apps/silent/").await;
    assert_eq!(r.status(), 504);
    let took = t.elapsed();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<h1>The app took too long</h1>") && page.contains("Silent app did not answer in time"),
        "{page}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_and_recovery() {
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let gw = gatehouse()
        .app(
            "app",
            &[one.addr, two.addr],
            "access = \"public\"\nhealth_check = { interval = \"200ms\", timeout = \"200ms\" }",
        )
        .start()
        .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(
            json(gw.get("/apps/app/").await).await["backend"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "round robin uses both: {seen:?}");

    let one_addr = one.stop().await;
    for i in 0..10 {
        let r = gw.get("/apps/app/").await;
        assert_eq!(r.status(), 200, "request {i} after one upstream died");
        assert_eq!(json(r).await["backend"], "two");
    }
    let m = gw.metrics_text().await;
    assert!(
        m.contains(&format!(
            "gatehouse_upstream_healthy{{app=\"app\",upstream=\"{one_addr}\"}} 0"
        )),
        "{m}"
    );

    let one = Backend::start_on(one_addr, "one").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = gw.get("/apps/app/").await;
        if one.hits() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "recovered upstream never used again");
    }
    drop(two);
}

/// Panic routing: when every upstream of an app is marked down, the gateway still tries
/// them, so an app that comes back (a restart, a deploy) is served at once — not after its
/// next health check — and restarting two upstreams in turn under load fails no request.
#[tokio::test(flavor = "multi_thread")]
async fn restarted_apps_are_served_as_soon_as_they_listen() {
    // One upstream, health checks a minute apart: only panic routing can bring it back fast.
    let solo = Backend::start("solo").await;
    let gw = gatehouse()
        .app(
            "solo",
            &[solo.addr],
            "access = \"public\"\nhealth_check = { interval = \"60s\", unhealthy_after = 1 }",
        )
        .start()
        .await;
    assert_eq!(gw.get("/apps/solo/").await.status(), 200);
    let addr = solo.stop().await;
    for _ in 0..3 {
        assert_eq!(gw.get("/apps/solo/").await.status(), 503, "down, and said so");
    }
    let m = gw.metrics_text().await;
    assert!(
        m.contains(&format!(
            "gatehouse_upstream_healthy{{app=\"solo\",upstream=\"{addr}\"}} 0"
        )),
        "marked down: {m}"
    );
    let back = Backend::start_on(addr, "solo").await;
    // The very first request after it listens again is served: nothing waits for the next
    // health check (a minute away), so "back" is one request's latency after listening.
    let r = gw.get("/apps/solo/").await;
    assert_eq!(r.status(), 200, "served by the first request after it listens again");
    assert_eq!(back.hits(), 1);

    // Two upstreams restarted one after the other while four clients keep asking.
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let gw = gatehouse()
        .app(
            "pair",
            &[one.addr, two.addr],
            "access = \"public\"\nhealth_check = { interval = \"60s\", unhealthy_after = 1 }",
        )
        .start()
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = gw.url("/apps/pair/");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, stop) = (gw.client(), url.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(r.status().to_string()),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let pause = || tokio::time::sleep(Duration::from_millis(300));
    pause().await;
    // Restarted as a process manager does (requests in flight finish), not crashed.
    let one_addr = one.stop_gracefully().await;
    pause().await;
    let one = Backend::start_on(one_addr, "one").await;
    pause().await;
    let two_addr = two.stop_gracefully().await;
    pause().await;
    let two = Backend::start_on(two_addr, "two").await;
    pause().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut served, mut failures) = (0, Vec::new());
    for c in clients {
        let (ok, failed) = c.await.expect("client");
        served += ok;
        failures.extend(failed);
    }
    assert!(served > 50, "the load ran: {served}");
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        served,
        &failures[..failures.len().min(5)]
    );
    assert!(one.hits() > 0 && two.hits() > 0, "both served after their restart");
}
