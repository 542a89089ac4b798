//! Limits on hostile input over real sockets (issue 11): header count and size, body caps
//! of the sign-in form and the gateway's endpoints (the SAML ACS among them), slow clients
//! that never finish their headers, and floods of single sign-on starts. Each limit leaves
//! the gateway serving everyone else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::raw::{self, RawResponse};
use gatehouse_tests::saml::{sp_metadata, SamlIdp};
use gatehouse_tests::{reserve_port, Backend, Browser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gatehouse;

/// Writes `head` and `body` (ignoring a write cut short when the gateway answers early and
/// closes), then reads the answer until the gateway closes the connection. `None`: the
/// connection stayed open for 30 s after the answer started, or nothing came.
async fn send_and_close(addr: SocketAddr, head: String, body: Vec<u8>) -> Option<RawResponse> {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(head.as_bytes()).await;
        let _ = w.write_all(&body).await;
        w
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 16384];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    writer.abort();
    if read.is_err() || buf.is_empty() {
        return None;
    }
    Some(raw::parse_response(&buf))
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_are_refused_and_the_connection_closed() {
    let backend = Backend::start("open").await;
    let gw = gatehouse()
        .app("open", &[backend.addr], "access = \"public\"")
        .start()
        .await;
    let addr = gw.addr;
    let request = |headers: String| format!("GET /apps/open/ HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    // Measured: pingora refuses more than 256 header lines itself (400, connection closed).
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    // Over the gateway's 64 KiB: one 100 KB header, or many headers adding up.
    let big = format!("X-Big: {}\r\n", "a".repeat(100_000));
    let wide: String = (0..200).map(|i| format!("X-W{i}: {}\r\n", "b".repeat(400))).collect();
    let hits = backend.hits();
    let others = Arc::new(AtomicUsize::new(0));
    // Normal clients are served while the oversized requests arrive.
    let normal = {
        let others = others.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let r = raw::get(addr, "/apps/open/", &[]).await;
                assert_eq!(r.status, 200, "a normal request failed during the flood: {}", r.body);
                others.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    for _ in 0..5 {
        let r = send_and_close(addr, request(many.clone()), vec![])
            .await
            .expect("300 headers: answered and closed");
        assert_eq!(r.status, 400, "300 headers: {}", r.body);
        for (what, headers) in [("one 100 KB header", &big), ("200 headers of 400 bytes", &wide)] {
            let r = send_and_close(addr, request(headers.clone()), vec![])
                .await
                .unwrap_or_else(|| panic!("{what}: not answered and closed"));
            assert_eq!(r.status, 431, "{what}: {}", r.body);
            assert!(r.body.contains("Request headers too large"), "{what}: {}", r.body);
        }
    }
    normal.await.expect("normal client");
    assert_eq!(others.load(Ordering::SeqCst), 20);
    assert_eq!(backend.hits(), hits + 20, "an oversized request reached the app");
    // Headers within the limits pass: 50 headers of 800 bytes (40 KB; the test upstream,
    // hyper, takes at most 100 header lines).
    let fine: String = (0..50).map(|i| format!("X-F{i}: {}\r\n", "c".repeat(800))).collect();
    let r = raw::send(
        addr,
        format!("GET /apps/open/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{fine}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_sign_in_forms_and_endpoint_bodies_get_413_and_store_nothing() {
    let gw = gatehouse().user("alice", "alice-password", false, &[]).start().await;
    // Twelve oversized sign-in forms with alice's name and a wrong 40 KB password: each a
    // 413 page, and none counted as a failed sign-in (ten would lock alice out).
    let mut b = gw.browser();
    let page = b.get("/.gatehouse/login").await;
    let csrf = page.input_value("csrf").expect("csrf");
    let huge = "x".repeat(40 * 1024);
    for _ in 0..12 {
        let p = b
            .post_form(
                "/.gatehouse/login",
                &[("username", "alice"), ("password", &huge), ("csrf", &csrf), ("rd", "/")],
            )
            .await;
        assert_eq!(p.status, 413, "{}", p.body);
        assert!(p.body.contains("The sign-in form is too large"), "{}", p.body);
    }
    let p = gw.browser().login("alice", "alice-password", None).await;
    assert_eq!(
        p.status, 303,
        "alice was locked out by forms that were never read: {}",
        p.body
    );
    // Any gateway endpoint (the SAML ACS, the logout form, …): over 1 MiB is refused with a
    // page, whether the length is declared or the body is chunked, and the connection closed.
    let addr = gw.addr;
    let body = vec![b'a'; 2 * 1024 * 1024];
    let declared = format!(
        "POST /.gatehouse/saml/idp/acs HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let r = send_and_close(addr, declared, body.clone())
        .await
        .expect("answered and closed");
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.body.contains("The request is too large") && r.body.contains("1024 KiB"),
        "{}",
        r.body
    );
    let mut chunked = Vec::new();
    for piece in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /.gatehouse/logout HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let r = send_and_close(addr, head, chunked).await.expect("answered and closed");
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("too large"), "{}", r.body);
    assert_eq!(gw.get("/.gatehouse/healthz").await.status(), 200);
}

/// A connection that sends its request one byte every 200 ms and never finishes; returns
/// when the gateway closes it (or after 60 s: `false`).
async fn slow_client(addr: SocketAddr, closed: Arc<AtomicUsize>) -> bool {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let trickle = async move {
        let line = b"GET /apps/open/ HTTP/1.1\r\nX-Slow: ";
        for &byte in line.iter().chain(std::iter::repeat(&b'a')) {
            if w.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await
    };
    let until_closed = async move {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let ok = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            _ = trickle => {},
            _ = until_closed => {},
        }
    })
    .await
    .is_ok();
    if ok {
        closed.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_do_not_keep_others_waiting() {
    let backend = Backend::start("open").await;
    let gw = gatehouse()
        .server("limits = { header_timeout = \"2s\" }")
        .app("open", &[backend.addr], "access = \"public\"")
        .start()
        .await;
    let addr = gw.addr;
    let closed = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slow_client(addr, closed.clone())))
        .collect();
    // A connection that sends nothing at all is cut off too.
    let silent = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 16];
        // Closed by the 2 s header timeout; pingora alone would wait 60 s.
        tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
            .await
            .is_ok()
    });
    // While 200 slow clients hold connections, normal requests are served.
    for _ in 0..10 {
        let r = raw::get(addr, "/apps/open/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Every slow client is closed, long before pingora's per-read timeout (60 s) would.
    let all = within(Duration::from_secs(20), || {
        let closed = closed.clone();
        async move { closed.load(Ordering::SeqCst) == 200 }
    })
    .await;
    assert!(
        all.is_some(),
        "{} of 200 slow clients were closed within 20 s",
        closed.load(Ordering::SeqCst)
    );
    for s in slow {
        assert!(s.await.expect("slow client"));
    }
    assert!(silent.await.expect("silent client"), "a silent connection stayed open");
    // A kept-alive connection idle for longer than the header timeout between two
    // requests is not cut by it (idle connections follow the keep-alive timeout).
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET /apps/open/ HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for round in 0..2 {
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answered")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        if round == 0 {
            // Deliberately idle past the 2 s header timeout (the property under test).
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    // The next request on that connection starts a new header clock: one that stalls
    // halfway through its headers is cut off by it too (the clock's timer is only armed
    // when a read has to wait).
    s.write_all(b"GET /apps/open/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 65536];
    let cut = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // an error page, then the close
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "a stalled second request kept its connection for 15 s");
    // By its own 2 s clock: not at once (a clock left from the first request), not late.
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(10),
        "cut after {after:?}"
    );
    assert_eq!(gw.get("/.gatehouse/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_start_floods_are_capped_per_client_and_push_out_no_real_sign_in() {
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let entity = format!("{base}/.gatehouse/saml/idp/metadata");
    let idp = SamlIdp::start(
        &sp_metadata(&entity, &format!("{base}/.gatehouse/saml/idp/acs"), None, None),
        &[],
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let md: PathBuf = files.path().join("idp-metadata.xml");
    std::fs::write(&md, idp.metadata_xml().await).unwrap();
    let backend = Backend::start("app").await;
    let gw = gatehouse()
        .listen_port(port)
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .server("limits = { signin_starts_per_client = 50 }")
        .raw(&format!(
            "[[providers]]\nid = \"idp\"\nkind = \"saml\"\nidp_metadata = \"{}\"\nuser_attribute = \"uid\"\n",
            md.display()
        ))
        .app("any", &[backend.addr], "access = \"authenticated\"")
        .start()
        .await;
    let sp_xml = gw.get("/.gatehouse/saml/idp/metadata").await.text().await.unwrap();
    idp.register_sp(&sp_xml, &[]).await;

    // A real sign-in, started before the flood: at the IdP, its response not yet posted.
    let mut alice = gw.browser();
    let p = alice.get("/.gatehouse/saml/idp/start?rd=/apps/any/x").await;
    assert_eq!(p.status, 303, "{}", p.body);
    idp.clear_session();
    let (resp, relay, acs) = idp.login(p.location().unwrap(), "alice", "alice-pw").await;
    let acs = acs.strip_prefix(&base).expect("ACS on the gateway").to_string();

    // 3,000 unauthenticated starts from one address: 50 are taken, the rest refused.
    let client = gw.client();
    let start_url = gw.url("/.gatehouse/saml/idp/start");
    let flood = |from: String, n: usize| {
        let client = client.clone();
        let url = start_url.clone();
        async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let (client, url, from) = (client.clone(), url.clone(), from.clone());
                tasks.spawn(async move {
                    let from = from
                        .replace("{a}", &(i / 250).to_string())
                        .replace("{b}", &(i % 250).to_string());
                    client
                        .get(&url)
                        .header("x-forwarded-for", from)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                });
                if tasks.len() >= 64 {
                    let s = tasks.join_next().await.unwrap().unwrap();
                    *statuses.entry(s).or_default() += 1;
                }
            }
            while let Some(s) = tasks.join_next().await {
                *statuses.entry(s.unwrap()).or_default() += 1;
            }
            statuses
        }
    };
    let one = flood("198.51.100.7".into(), 3000).await;
    assert_eq!(one.get(&303), Some(&50), "{one:?}");
    assert_eq!(one.get(&429), Some(&2950), "{one:?}");
    // The same flood spread over 1,000 addresses of one IPv6 /64 counts as one client.
    let v6 = flood("2001:db8:7:7::{a}:{b}".into(), 1000).await;
    assert_eq!(v6.get(&303), Some(&50), "{v6:?}");
    // Others are unaffected: 500 other addresses start one sign-in each.
    let spread = flood("10.9.{a}.{b}".into(), 500).await;
    assert_eq!(spread.get(&303), Some(&500), "{spread:?}");

    // An oversized post naming the real sign-in's RelayState is refused unread: the
    // sign-in is not used up.
    let mut thief = gw.browser();
    let junk = "A".repeat(2 * 1024 * 1024);
    let mut form = vec![("SAMLResponse", junk.as_str())];
    if let Some(r) = relay.as_deref() {
        form.push(("RelayState", r));
    }
    assert_eq!(thief.post_form(&acs, &form).await.status, 413);

    // The sign-in started before the flood completes.
    let mut form = vec![("SAMLResponse", resp.as_str())];
    if let Some(r) = relay.as_deref() {
        form.push(("RelayState", r));
    }
    let p = alice.post_form(&acs, &form).await;
    assert_eq!(p.status, 303, "the real sign-in was pushed out: {}", p.body);
    assert_eq!(p.location(), Some("/apps/any/x"));
    assert_eq!(alice.get("/apps/any/x").await.status, 200);
    // And a new one from this (un-flooded) address works too.
    let mut bob: Browser = gw.browser();
    let p = bob.get("/.gatehouse/saml/idp/start?rd=/apps/any/").await;
    assert_eq!(p.status, 303, "{}", p.body);
    // The flooded address gets the clear page, not an error.
    let p = bob
        .get_with("/.gatehouse/saml/idp/start", &[("x-forwarded-for", "198.51.100.7")])
        .await;
    assert_eq!(p.status, 429);
    assert!(p.body.contains("Too many sign-in attempts"), "{}", p.body);
}
