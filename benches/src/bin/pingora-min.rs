//! The floor of the load harness: a minimal pingora `ProxyHttp` that sends every request
//! to one upstream, with Gatehouse's server settings (threads, keep-alive pool, work
//! stealing) and nothing else — no routing, session, policy, headers, metrics or logging.
//! What Gatehouse costs above this row is Gatehouse's own; this row against nginx is
//! pingora's.
//!
//! `pingora-min <listen addr> <upstream addr> [threads] [nosteal]` — `nosteal`: pingora's
//! runtime without work stealing (one single-threaded runtime per thread), to compare.

#![forbid(unsafe_code)]

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

// The allocator Gatehouse uses, so the difference between the rows is code, not malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Min(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Min {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2).and_then(|a| a.parse().ok())) else {
        eprintln!("usage: pingora-min <listen addr> <upstream addr> [threads] [nosteal]");
        std::process::exit(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let conf = ServerConf {
        threads,
        upstream_keepalive_pool_size: 256,
        work_stealing: args.get(4).is_none_or(|a| a != "nosteal"),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Min(upstream));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
