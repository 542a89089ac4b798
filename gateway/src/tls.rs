//! TLS on the main listener with certificates that can change while running: the
//! certificate chain and key are read from `server.tls` at start, and again on `SIGHUP` or
//! when either file changes (checked every [`WATCH_INTERVAL`]). Each new handshake is served
//! the pair in force (openssl's certificate callback, through pingora's [`TlsAccept`]);
//! connections already open keep the certificate they were set up with and are not
//! disturbed. A pair that cannot be read or parsed, or whose key does not match the
//! certificate (say, the cert file was replaced but not yet the key), is refused with a
//! log line and the previous pair stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext::{ssl_add_chain_cert, ssl_use_certificate, ssl_use_private_key};
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;

use crate::GatewayError;

/// How often the certificate and key files are checked for a change.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A certificate (leaf first, then its chain) and the matching private key.
pub struct CertifiedKey {
    chain: Vec<X509>,
    key: PKey<Private>,
}

impl CertifiedKey {
    /// Parses PEM: one or more certificates (leaf first) and a private key (PKCS#8 or
    /// traditional). The key must belong to the leaf certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
        let chain = X509::stack_from_pem(cert_pem).map_err(|e| format!("certificate: {e}"))?;
        let leaf = chain.first().ok_or("certificate: no certificate in the file")?;
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| format!("key: {e}"))?;
        let public = leaf.public_key().map_err(|e| format!("certificate: {e}"))?;
        if !public.public_eq(&*key) {
            return Err("the key does not belong to the certificate".into());
        }
        Ok(CertifiedKey { chain, key })
    }

    /// The leaf certificate's SHA-256 fingerprint, hex (for the log).
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .and_then(|c| c.digest(pingora::tls::hash::MessageDigest::sha256()).ok())
            .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default()
    }
}

/// What a file looked like when last read: inode (a file replaced by a rename is a new
/// one), modification time and length.
type FileStamp = (u64, SystemTime, u64);
type Stamp = Option<(FileStamp, FileStamp)>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| -> Option<FileStamp> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.ino(), m.modified().ok()?, m.len()))
    };
    Some((one(cert)?, one(key)?))
}

/// The certificate in force for new handshakes, and the files it comes from.
pub struct Certificates {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let c = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let k = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    CertifiedKey::from_pem(&c, &k)
}

impl Certificates {
    /// Reads the pair now; an unusable pair stops the start.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Certificates>, GatewayError> {
        let seen = stamp(cert_path, key_path);
        let pair =
            read_pair(cert_path, key_path).map_err(|e| GatewayError::Tls(format!("{}: {e}", cert_path.display())))?;
        Ok(Arc::new(Certificates {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new(seen),
        }))
    }

    /// Pingora's TLS settings for the listener: Mozilla intermediate, with the certificate
    /// chosen per handshake from `self`.
    pub fn settings(self: &Arc<Self>) -> Result<TlsSettings, GatewayError> {
        TlsSettings::with_callbacks(Box::new(Callback(self.clone()))).map_err(|e| GatewayError::Tls(e.to_string()))
    }

    /// Reads the files again and puts the pair in force if it is good (`SIGHUP`). Returns
    /// whether a new pair is in force.
    pub fn reload(&self) -> bool {
        let seen = stamp(&self.cert_path, &self.key_path);
        match read_pair(&self.cert_path, &self.key_path) {
            Ok(pair) => {
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
                let fingerprint = pair.fingerprint();
                let changed = self.current.load().fingerprint() != fingerprint;
                self.current.store(Arc::new(pair));
                if changed {
                    tracing::info!(cert = %self.cert_path.display(), sha256 = %fingerprint, "TLS certificate reloaded; new connections get it");
                }
                changed
            }
            Err(e) => {
                // Remember the stamp anyway: the same broken files are not reported every tick.
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
                tracing::error!(cert = %self.cert_path.display(), error = %e, "TLS certificate not reloaded; the previous one stays in force");
                false
            }
        }
    }

    /// Reloads when either file changed since it was last read.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.cert_path, &self.key_path);
        let changed = *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now;
        changed && self.reload()
    }

    /// Checks the files every [`WATCH_INTERVAL`] until dropped (file reads happen off the
    /// proxy's workers).
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}

struct Callback(Arc<Certificates>);

#[async_trait]
impl TlsAccept for Callback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let pair = self.0.current.load_full();
        let Some(leaf) = pair.chain.first() else { return };
        let mut set = || {
            ssl_use_certificate(ssl, leaf)?;
            for c in &pair.chain[1..] {
                ssl_add_chain_cert(ssl, c)?;
            }
            ssl_use_private_key(ssl, &*pair.key)
        };
        if let Err(e) = set() {
            // The handshake then fails for this client only.
            tracing::error!(error = %e, "could not set the TLS certificate for a handshake");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let (c1, k1) = pair("a.test");
        let (_, k2) = pair("b.test");
        assert!(CertifiedKey::from_pem(c1.as_bytes(), k1.as_bytes()).is_ok());
        let e = CertifiedKey::from_pem(c1.as_bytes(), k2.as_bytes()).err().unwrap();
        assert!(e.contains("does not belong"), "{e}");
        assert!(CertifiedKey::from_pem(b"garbage", k1.as_bytes()).is_err());
        assert!(CertifiedKey::from_pem(c1.as_bytes(), b"").is_err());
    }

    #[test]
    fn a_bad_pair_on_disk_keeps_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (c1, k1) = pair("a.test");
        std::fs::write(&cp, &c1).unwrap();
        std::fs::write(&kp, &k1).unwrap();
        let certs = Certificates::load(&cp, &kp).unwrap();
        let first = certs.current.load().fingerprint();
        assert!(!certs.reload_if_changed(), "nothing changed");
        // The certificate replaced, the key not yet: refused, the old pair stays.
        let (c2, k2) = pair("b.test");
        std::fs::write(&cp, format!("{c2}\n")).unwrap();
        assert!(!certs.reload());
        assert_eq!(certs.current.load().fingerprint(), first);
        // Now the key too: taken.
        std::fs::write(&kp, &k2).unwrap();
        assert!(certs.reload());
        assert_ne!(certs.current.load().fingerprint(), first);
    }
}
