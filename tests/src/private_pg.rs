//! A PostgreSQL server of the test's own (Debian's `postgresql` binaries, `initdb` and
//! `pg_ctl` in a temporary folder, its own loopback port), for tests that stop and start the
//! database under a running gateway. The machine's shared server on 5432 is never touched.
//!
//! `initdb` and `pg_ctl` refuse to run as root; as root they run as the `postgres` user
//! (`runuser`), which owns the data folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::free_port;

/// Where Debian 12 puts the server binaries (`postgresql-15`); `GATEHOUSE_TEST_PG_BIN`
/// overrides it.
pub fn pg_bin() -> PathBuf {
    std::env::var_os("GATEHOUSE_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// A running private server. Stopped (immediately) and deleted when dropped.
#[derive(Debug)]
pub struct PrivatePg {
    pub port: u16,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePg {
    /// Creates a cluster (trust authentication for `postgres` on 127.0.0.1) and starts it.
    pub fn start() -> PrivatePg {
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let pg = PrivatePg {
            port: free_port(),
            dir,
            as_postgres,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb ({}): {}",
            pg_bin().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = pg_bin().join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let data = self.data();
        let sock = self.dir.path().to_string_lossy().into_owned();
        let opts = format!(
            "-p {} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=50",
            self.port
        );
        let log = self.log_path();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server the way an administrator or a failover would (`-m fast`: clients
    /// are disconnected, committed work is kept) and waits until it is down.
    pub fn stop(&self) {
        self.stop_with("fast");
    }

    fn stop_with(&self, mode: &str) {
        let data = self.data();
        let out = self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", mode, "-w", "-t", "60", "stop"],
        );
        assert!(
            out.status.success() || mode == "immediate",
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The folder the cluster lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let _ = self.run(
                "pg_ctl",
                &["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"],
            );
        }
    }
}
