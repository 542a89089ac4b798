//! Debian's nginx as an app server behind the gateway: started on a free loopback port with a
//! tiny config and nginx's default header buffers (`large_client_header_buffers 4 8k`), it
//! answers every request 200 with the `X-Forwarded-Groups` it was sent as the body — or 400
//! when a header line does not fit its buffers, as any app behind nginx would.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running nginx, stopped when dropped.
#[derive(Debug)]
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `nginx` (from PATH or /usr/sbin) and waits (10 s at most) until it answers.
    pub async fn start() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let d = dir.path().display();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
                 scgi_temp_path {d}/scgi;\n  server {{\n    listen {addr};\n    \
                 location / {{ default_type text/plain; return 200 \"$http_x_forwarded_groups\"; }}\n  }}\n}}\n"
            ),
        )
        .expect("nginx.conf");
        let binary = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|b| !b.starts_with('/') || std::path::Path::new(b).exists())
            .unwrap_or("nginx");
        let child = Command::new(binary)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx (Debian package nginx): {e}"));
        let mut nginx = Nginx { addr, child, dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}); log:\n{}", nginx.log());
            }
            if let Ok(r) = client.get(format!("http://{addr}/")).send().await {
                if r.status() == 200 {
                    return nginx;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not answer within 10 s; log:\n{}", nginx.log());
    }

    /// nginx's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
