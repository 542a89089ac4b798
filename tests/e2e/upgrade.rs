//! Zero-downtime binary upgrade under load: a second `gatehouse serve --upgrade-from <pid>`
//! takes the listening sockets over from the running one, which finishes its requests and
//! exits 0; keep-alive clients sending all along see not one failed request.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_tests::cluster::within;
use gatehouse_tests::Backend;

use crate::gatehouse;

/// Kills the successor when the test ends, however it ends.
struct Successor(Child);

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_under_load_fails_no_request() {
    let backend = Backend::start("app").await;
    let mut old = gatehouse()
        .app("app", &[backend.addr], "access = \"public\"")
        .start()
        .await;
    let old_pid = old.pid();

    // Eight keep-alive clients, each sending one request after another.
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = vec![];
    for _ in 0..8 {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        let client = old.client();
        let url = old.url("/apps/app/");
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.bytes().await {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failed.lock().unwrap().push(format!("body: {e:?}")),
                    },
                    Ok(r) => failed.lock().unwrap().push(format!("status {}", r.status())),
                    Err(e) => failed.lock().unwrap().push(format!("{e:?}")),
                }
                // Pacing, not synchronisation.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let served = |n: usize| {
        let ok = ok.clone();
        async move {
            within(Duration::from_secs(30), || {
                let ok = ok.clone();
                async move { ok.load(Ordering::Relaxed) >= n }
            })
            .await
            .is_some()
        }
    };
    assert!(served(100).await, "the load does not get through");

    // The new binary (here the same one) takes over.
    let log = std::fs::File::create(old.dir.path().join("successor.log")).unwrap();
    let new = Successor(
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("serve")
            .arg("--config")
            .arg(old.config_path())
            .arg("--upgrade-from")
            .arg(old_pid.to_string())
            .env("GATEHOUSE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let successor_path = old.dir.path().join("successor.log");
    let successor_log = || std::fs::read_to_string(&successor_path).unwrap_or_default();
    let exited = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(60)));
    assert!(
        exited.is_some_and(|s| s.success()),
        "the old process did not exit cleanly ({exited:?}); its log:\n{}\nthe new one's:\n{}",
        old.log(),
        successor_log()
    );
    let at_exit = ok.load(Ordering::Relaxed);
    assert!(
        served(at_exit + 200).await,
        "no traffic after the old process exited; the new one's log:\n{}",
        successor_log()
    );
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    let total = ok.load(Ordering::Relaxed) + failed.len();
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed during the upgrade: {failed:?}\nold log:\n{}\nnew log:\n{}",
        failed.len(),
        old.log(),
        successor_log()
    );
    assert!(successor_log().contains("gatehouse listening"), "{}", successor_log());
    eprintln!("upgrade under load: {total} requests, 0 failed");
    drop(new);
}
