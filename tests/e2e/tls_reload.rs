//! The main listener's certificate changes while running: after the files are replaced and
//! `SIGHUP` is sent (or without a signal, once the change is noticed), new connections get
//! the new certificate, while a keep-alive connection opened before keeps working on the
//! old one. A certificate whose key does not match is refused and the one in force stays.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use gatehouse_tests::cluster::within;
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

use crate::gatehouse;

/// A TLS connection that keeps its socket between requests (HTTP/1.1 keep-alive).
struct Conn {
    tls: BufReader<SslStream<TcpStream>>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        // The test reads which certificate it is served; trust is not the point here.
        b.set_verify(SslVerifyMode::NONE);
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let tls = b.build().connect("localhost", tcp).unwrap();
        Conn {
            tls: BufReader::new(tls),
        }
    }

    /// SHA-256 of the certificate the server presented on this connection.
    fn served(&self) -> Vec<u8> {
        let cert = self
            .tls
            .get_ref()
            .ssl()
            .peer_certificate()
            .expect("a server certificate");
        cert.digest(openssl::hash::MessageDigest::sha256()).unwrap().to_vec()
    }

    /// One GET on this connection; its status.
    fn get(&mut self, path: &str) -> u16 {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.tls.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        self.tls.read_line(&mut status).unwrap();
        let code = status.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.tls.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        self.tls.read_exact(&mut body).unwrap();
        code
    }
}

fn digest_of(pem: &str) -> Vec<u8> {
    openssl::x509::X509::from_pem(pem.as_bytes())
        .unwrap()
        .digest(openssl::hash::MessageDigest::sha256())
        .unwrap()
        .to_vec()
}

/// Writes a fresh certificate and key for `localhost` into `dir` (each file replaced whole,
/// as deployment tools do); returns the certificate's digest.
fn new_pair(dir: &Path) -> (Vec<u8>, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = c.key_pair.serialize_pem();
    replace(&dir.join("tls.key"), &key);
    replace(&dir.join("tls.crt"), &c.cert.pem());
    (digest_of(&c.cert.pem()), key)
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn fresh_connection_serves(addr: SocketAddr, want: &[u8]) -> bool {
    let want = want.to_vec();
    within(Duration::from_secs(15), || {
        let want = want.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut c = Conn::open(addr);
                c.served() == want && c.get("/.gatehouse/healthz") == 200
            })
            .await
            .unwrap()
        }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_certificate_is_served_to_new_connections_and_old_ones_keep_working() {
    let gw = gatehouse().tls(false).start().await;
    let addr = gw.addr;
    let dir = gw.dir.path().to_path_buf();
    let first = digest_of(gw.ca_pem.as_deref().unwrap());

    let mut old = tokio::task::block_in_place(|| {
        let mut c = Conn::open(addr);
        assert_eq!(c.served(), first);
        assert_eq!(c.get("/.gatehouse/healthz"), 200);
        c
    });

    // Replaced and announced with SIGHUP.
    let (second, _) = new_pair(&dir);
    gw.signal("HUP");
    assert!(
        fresh_connection_serves(addr, &second).await,
        "new connections do not get the new certificate after SIGHUP; log:\n{}",
        gw.log()
    );
    tokio::task::block_in_place(|| {
        assert_eq!(
            old.get("/.gatehouse/healthz"),
            200,
            "the keep-alive connection was dropped"
        );
        assert_eq!(old.served(), first, "an open connection keeps its certificate");
    });

    // Replaced without a signal: noticed by the file check.
    let (third, third_key) = new_pair(&dir);
    assert!(
        fresh_connection_serves(addr, &third).await,
        "a changed certificate file is not picked up without SIGHUP; log:\n{}",
        gw.log()
    );

    // A certificate whose key is not its own: refused, the pair in force stays.
    let mismatched = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let refusals = || gw.log().matches("TLS certificate not reloaded").count();
    let before = refusals();
    replace(&dir.join("tls.crt"), &mismatched.cert.pem());
    replace(&dir.join("tls.key"), &third_key);
    gw.signal("HUP");
    assert!(
        within(Duration::from_secs(15), || async { refusals() > before })
            .await
            .is_some(),
        "a mismatched pair is not reported; log:\n{}",
        gw.log()
    );
    tokio::task::block_in_place(|| {
        let mut c = Conn::open(addr);
        assert_eq!(c.served(), third, "a bad pair replaced the good one");
        assert_eq!(c.get("/.gatehouse/healthz"), 200);
        assert_eq!(old.get("/.gatehouse/healthz"), 200, "the first connection still works");
    });
}
