//! A private OpenLDAP `slapd` on free loopback ports with a seeded directory the test owns.
//!
//! ```ignore
//! let ldap = Slapd::start().await;            // ~0.5–1.5 s: CA, cn=config, 2,000+ entries
//! // ldap.url (ldap://127.0.0.1:port, StartTLS available), ldap.ldaps_url, ldap.ca_file, …
//! ldap.stop();                                // "directory down"
//! ldap.start_again();                         // same ports and data, ~0.1–0.3 s
//! ```
//!
//! The seed (tests/peers/ldap/seed.ldif, whose header lists every entry) has: the service
//! account [`SERVICE_DN`] / `service-pw`; users under `ou=people,dc=example,dc=org` with password
//! `<uid>-pw`: `alice` (finance, staff, `R&D, Europe`, `staff,admins`: one group each, commas
//! in their CNs), `bob` (staff; `memberUid` of the posixGroup `posix-staff`), `many` (staff +
//! `bulk-0000` … `bulk-1999`), `nested` (inner ∈ middle ∈ outer;
//! cycle-a ⇄ cycle-b), [`ODD_UID`] (password `odd-pw`, staff), `locked` (ppolicy-locked: binds
//! answer 49), and `dup` twice (also in `ou=contractors,dc=example,dc=org`, a sibling of
//! `ou=people`). `memberOf` holds direct groups only. [`ADMIN_DN`] / `admin-pw` is the rootdn.
//!
//! The scripts live in tests/peers/ldap/ (start.sh, stop.sh); OpenLDAP comes from
//! tests/peers/install.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The directory's suffix.
pub const BASE: &str = "dc=example,dc=org";
/// Where the users are (all but the second `uid=dup`, which is in `ou=contractors`).
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
/// Where the groups are.
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// The gateway's service account: reads everything but `userPassword`, no size limit.
pub const SERVICE_DN: &str = "cn=gatehouse,ou=services,dc=example,dc=org";
/// The service account's password.
pub const SERVICE_PASSWORD: &str = "service-pw";
/// The rootdn (not subject to ACLs or limits), for tests that change the directory.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
/// The rootdn's password.
pub const ADMIN_PASSWORD: &str = "admin-pw";
/// The uid with `'`, `(`, `)`, `*` and `\` (a literal backslash followed by `n`); its DN is
/// `uid=o'b(r)i*e\5Cn,ou=people,dc=example,dc=org` and its password `odd-pw`.
pub const ODD_UID: &str = r"o'b(r)i*e\n";

/// A running private slapd. Stopped when dropped (its folder is then deleted).
#[derive(Debug)]
pub struct Slapd {
    /// The instance folder: certificates, `slapd.d`, data, `slapd.log`, `slapd.pid`.
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub ldaps_port: u16,
    /// `ldap://127.0.0.1:port` (StartTLS available).
    pub url: String,
    /// `ldaps://127.0.0.1:ldaps_port`.
    pub ldaps_url: String,
    /// The CA that signed the server certificate (SAN `127.0.0.1`, `localhost`).
    pub ca_file: PathBuf,
    /// An unrelated CA: verifying the server against it must fail.
    pub wrong_ca_file: PathBuf,
    /// `dc=example,dc=org`.
    pub base: String,
    /// The service account's DN.
    pub bind_dn: String,
    /// The service account's password.
    pub bind_password: String,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ldap")
}

/// Is OpenLDAP (server and client tools) installed?
pub fn installed() -> bool {
    let found = |name: &str| {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(name).exists())
    };
    ["slapd", "slapadd", "ldapwhoami", "ldapsearch", "openssl"]
        .iter()
        .all(|t| found(t))
}

fn assert_installed() {
    assert!(
        installed(),
        "OpenLDAP (slapd, ldap-utils) is not installed: run tests/peers/install.sh"
    );
}

fn run_script(name: &str, args: &[&str]) -> Output {
    let script = scripts().join(name);
    Command::new("bash")
        .arg(&script)
        .args(args)
        // Ends slapd if this test process dies without dropping the Slapd.
        .env("GATEHOUSE_LDAP_OWNER_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Slapd {
    /// Builds and starts a fresh instance on free loopback ports; returns once the service
    /// account can bind. Panics with the script's output (and slapd's log) if that fails.
    pub async fn start() -> Slapd {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// [`Slapd::start`] for code that is not async.
    pub fn start_blocking() -> Slapd {
        assert_installed();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-slapd-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_str().expect("utf-8 temp path").to_string();
        // free_port() releases the port before slapd binds it; retry on the rare collision.
        let mut attempt = 0;
        let (port, ldaps_port) = loop {
            attempt += 1;
            let (port, ldaps_port) = (crate::free_port(), crate::free_port());
            if port == ldaps_port {
                continue;
            }
            let out = run_script("start.sh", &[&path, &port.to_string(), &ldaps_port.to_string()]);
            if out.status.success() {
                break (port, ldaps_port);
            }
            let text = output_text(&out);
            if attempt < 3 && text.contains("Address already in use") {
                continue;
            }
            panic!(
                "tests/peers/ldap/start.sh {path} {port} {ldaps_port} failed ({}):\n{text}",
                out.status
            );
        };
        Slapd {
            ca_file: dir.path().join("ca.pem"),
            wrong_ca_file: dir.path().join("wrong-ca.pem"),
            dir,
            port,
            ldaps_port,
            url: format!("ldap://127.0.0.1:{port}"),
            ldaps_url: format!("ldaps://127.0.0.1:{ldaps_port}"),
            base: BASE.to_string(),
            bind_dn: SERVICE_DN.to_string(),
            bind_password: SERVICE_PASSWORD.to_string(),
        }
    }

    fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// Stops slapd (SIGTERM) and waits until it has exited; the data stays.
    pub fn stop(&self) {
        let out = run_script("stop.sh", &[self.dir_str()]);
        assert!(
            out.status.success(),
            "tests/peers/ldap/stop.sh failed ({}):\n{}",
            out.status,
            output_text(&out)
        );
    }

    /// Starts slapd again after [`Slapd::stop`], on the same ports with the same data; returns
    /// once the service account can bind. A no-op (but for the bind check) if it is running.
    pub fn start_again(&self) {
        let out = run_script(
            "start.sh",
            &[self.dir_str(), &self.port.to_string(), &self.ldaps_port.to_string()],
        );
        assert!(
            out.status.success(),
            "tests/peers/ldap/start.sh (again) failed ({}):\n{}",
            out.status,
            output_text(&out)
        );
    }

    /// slapd's log so far (`-d stats`: every connection, bind, search filter and result).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Applies an LDIF change (`changetype: modify`, `add`, `delete`, …) as the rootdn with
    /// `ldapmodify`; panics if it fails. For tests that disable, remove or regroup someone.
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = self
            .client("ldapmodify")
            .args(["-x", "-H", &self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write LDIF");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify failed ({}):\n{}",
            out.status,
            output_text(&out)
        );
    }

    /// An OpenLDAP client tool (`ldapsearch`, `ldapwhoami`, …) set up to ignore the machine's and
    /// the user's ldap.conf and to trust this instance's CA.
    pub fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("LDAPCONF", "/dev/null")
            .env("LDAPRC", "gatehouse-tests-no-ldaprc")
            .env("LDAPTLS_CACERT", &self.ca_file)
            .env("LDAPTLS_REQCERT", "demand")
            .stdin(Stdio::null());
        c
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = run_script("stop.sh", &[self.dir_str()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn run(mut c: Command) -> (i32, String) {
        let out = c.output().expect("run OpenLDAP client");
        (out.status.code().unwrap_or(-1), output_text(&out))
    }

    fn whoami(ldap: &Slapd, url: &str, dn: &str, pw: &str, extra: &[&str]) -> (i32, String) {
        let mut c = ldap.client("ldapwhoami");
        c.args(["-x", "-o", "nettimeout=5", "-H", url, "-D", dn, "-w", pw])
            .args(extra);
        run(c)
    }

    /// `ldapsearch` as the service account, one line per value (no wrapping).
    fn search(ldap: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> String {
        let mut c = ldap.client("ldapsearch");
        c.args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &ldap.url])
            .args(["-D", &ldap.bind_dn, "-w", &ldap.bind_password])
            .args(["-E", "pr=500/noprompt", "-b", base, filter])
            .args(attrs);
        let (code, text) = run(c);
        assert_eq!(code, 0, "ldapsearch -b {base} {filter}: {text}");
        text
    }

    fn values<'a>(ldif: &'a str, attr: &str) -> Vec<&'a str> {
        let prefix = format!("{attr}: ");
        ldif.lines().filter_map(|l| l.strip_prefix(&prefix)).collect()
    }

    #[tokio::test]
    async fn seeded_directory_is_right() {
        let t = Instant::now();
        let ldap = Slapd::start().await;
        eprintln!("fresh slapd ready in {:?}", t.elapsed());
        let user = |uid: &str| format!("uid={uid},{PEOPLE}");

        // The service account binds; alice binds with her password, not with a wrong or empty one.
        let (code, text) = whoami(&ldap, &ldap.url, &ldap.bind_dn, &ldap.bind_password, &[]);
        assert_eq!(code, 0, "service bind: {text}");
        let (code, text) = whoami(&ldap, &ldap.url, &user("alice"), "alice-pw", &[]);
        assert_eq!(code, 0, "alice bind: {text}");
        assert!(text.contains("dn:uid=alice,ou=people,dc=example,dc=org"), "{text}");
        let (code, _) = whoami(&ldap, &ldap.url, &user("alice"), "wrong", &[]);
        assert_eq!(code, 49, "alice with a wrong password");
        let (code, _) = whoami(&ldap, &ldap.url, &user("alice"), "", &[]);
        assert_ne!(code, 0, "alice with an empty password");

        // The locked account has the right password and still cannot bind (ppolicy: 49).
        let (code, text) = whoami(&ldap, &ldap.url, &user("locked"), "locked-pw", &[]);
        assert_eq!(code, 49, "locked bind must fail with invalidCredentials: {text}");

        // The odd uid: DN-escaped in the DN, found by an RFC 4515-escaped filter, binds.
        let odd_dn = format!(r"uid=o'b(r)i*e\5Cn,{PEOPLE}");
        let (code, text) = whoami(&ldap, &ldap.url, &odd_dn, "odd-pw", &[]);
        assert_eq!(code, 0, "odd bind: {text}");
        let found = search(&ldap, PEOPLE, r"(uid=o\27b\28r\29i\2ae\5cn)", &["uid"]);
        assert_eq!(found.matches("dn: ").count(), 1, "{found}");
        // ldapsearch may print the value base64-encoded ("bydiKHIpaSplXG4=" is ODD_UID).
        assert!(
            found.contains(&format!("uid: {ODD_UID}\n")) || found.contains("uid:: bydiKHIpaSplXG4=\n"),
            "{found}"
        );

        // uid=dup matches two entries from the base.
        let dups = search(&ldap, BASE, "(uid=dup)", &["1.1"]);
        assert_eq!(dups.matches("dn: ").count(), 2, "{dups}");

        // alice: direct groups, including the one whose DN needs escaping; no userPassword for
        // the service account.
        let alice = search(
            &ldap,
            &user("alice"),
            "(objectClass=*)",
            &["memberOf", "mail", "cn", "userPassword"],
        );
        let groups = values(&alice, "memberOf");
        for g in ["cn=finance", "cn=staff", r"cn=R&D\, Europe", r"cn=staff\,admins"] {
            assert!(
                groups.contains(&format!("{g},{GROUPS}").as_str()),
                "alice lacks {g}: {alice}"
            );
        }
        assert_eq!(groups.len(), 4, "{alice}");
        assert_eq!(values(&alice, "mail"), ["alice@example.org"]);
        assert_eq!(values(&alice, "cn"), ["Alice Able"]);
        assert!(!alice.to_lowercase().contains("userpassword"), "{alice}");

        // many: 2,000 bulk groups + staff, on the entry and by group search.
        let many = search(&ldap, &user("many"), "(objectClass=*)", &["memberOf"]);
        let n = values(&many, "memberOf").len();
        assert!(n >= 2000, "uid=many has {n} memberOf values");
        assert_eq!(n, 2001);
        let by_member = search(&ldap, GROUPS, &format!("(member={})", user("many")), &["1.1"]);
        assert_eq!(by_member.matches("dn: ").count(), 2001);
        // Without paging: the service account has no size limit.
        let mut c = ldap.client("ldapsearch");
        c.args([
            "-x",
            "-LLL",
            "-H",
            &ldap.url,
            "-D",
            &ldap.bind_dn,
            "-w",
            &ldap.bind_password,
        ])
        .args(["-b", GROUPS, &format!("(member={})", user("many")), "1.1"]);
        let (code, text) = run(c);
        assert_eq!(
            code,
            0,
            "unpaged search of 2,001 groups: {}",
            &text[text.len().saturating_sub(300)..]
        );
        assert_eq!(text.matches("dn: ").count(), 2001);

        // nested: only direct groups in memberOf; nesting is visible on the groups.
        let nested = search(&ldap, &user("nested"), "(objectClass=*)", &["memberOf"]);
        let mut direct = values(&nested, "memberOf");
        direct.sort_unstable();
        assert_eq!(direct, [format!("cn=cycle-a,{GROUPS}"), format!("cn=inner,{GROUPS}")]);
        for (group, parent) in [
            ("inner", "middle"),
            ("middle", "outer"),
            ("cycle-a", "cycle-b"),
            ("cycle-b", "cycle-a"),
        ] {
            let e = search(&ldap, &format!("cn={group},{GROUPS}"), "(objectClass=*)", &["memberOf"]);
            assert_eq!(values(&e, "memberOf"), [format!("cn={parent},{GROUPS}")], "{group}");
        }

        // posixGroup with memberUid.
        let posix = search(&ldap, GROUPS, "(&(objectClass=posixGroup)(memberUid=bob))", &["cn"]);
        assert_eq!(values(&posix, "cn"), ["posix-staff"]);

        // Anonymous users see nothing.
        let mut c = ldap.client("ldapsearch");
        c.args(["-x", "-LLL", "-H", &ldap.url, "-b", BASE, "(uid=alice)", "1.1"]);
        let (_, text) = run(c);
        assert!(!text.contains("uid=alice"), "anonymous search found alice: {text}");

        // LDAPS with the test CA works, with the wrong CA it does not; StartTLS works.
        let (code, text) = whoami(&ldap, &ldap.ldaps_url, &ldap.bind_dn, &ldap.bind_password, &[]);
        assert_eq!(code, 0, "ldaps with the test CA: {text}");
        let mut c = ldap.client("ldapwhoami");
        c.env("LDAPTLS_CACERT", &ldap.wrong_ca_file)
            .args(["-x", "-o", "nettimeout=5", "-H", &ldap.ldaps_url])
            .args(["-D", &ldap.bind_dn, "-w", &ldap.bind_password]);
        let (code, text) = run(c);
        assert_ne!(code, 0, "ldaps with the wrong CA must fail: {text}");
        let (code, text) = whoami(&ldap, &ldap.url, &ldap.bind_dn, &ldap.bind_password, &["-ZZ"]);
        assert_eq!(code, 0, "StartTLS with the test CA: {text}");
        let mut c = ldap.client("ldapwhoami");
        c.env("LDAPTLS_CACERT", &ldap.wrong_ca_file)
            .args(["-x", "-ZZ", "-o", "nettimeout=5", "-H", &ldap.url])
            .args(["-D", &ldap.bind_dn, "-w", &ldap.bind_password]);
        let (code, text) = run(c);
        assert_ne!(code, 0, "StartTLS with the wrong CA must fail: {text}");
    }

    #[tokio::test]
    async fn stop_and_start_again_keep_ports_and_data() {
        let ldap = Slapd::start().await;
        ldap.modify(&format!(
            "dn: cn=outer,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=bob,{PEOPLE}\n"
        ));

        let t = Instant::now();
        ldap.stop();
        eprintln!("slapd stopped in {:?}", t.elapsed());
        let (code, _) = whoami(&ldap, &ldap.url, &ldap.bind_dn, &ldap.bind_password, &[]);
        assert_ne!(code, 0, "slapd still answers after stop()");
        ldap.stop(); // idempotent

        let t = Instant::now();
        ldap.start_again();
        eprintln!("slapd restarted in {:?}", t.elapsed());
        let (code, text) = whoami(&ldap, &ldap.url, "uid=bob,ou=people,dc=example,dc=org", "bob-pw", &[]);
        assert_eq!(code, 0, "bob after restart: {text}");
        // The change made before the restart is still there, maintained by the memberof overlay.
        let bob = search(&ldap, &format!("uid=bob,{PEOPLE}"), "(objectClass=*)", &["memberOf"]);
        assert!(
            values(&bob, "memberOf").contains(&format!("cn=outer,{GROUPS}").as_str()),
            "{bob}"
        );
        assert!(ldap.log().contains("slapd starting"));
    }
}
