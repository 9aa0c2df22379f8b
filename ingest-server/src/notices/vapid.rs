//! The application server's identity for Web Push (VAPID, RFC 8292): a
//! P-256 key pair kept in a PKCS#8 PEM file, and the short-lived ES256 JWT
//! that goes with every push request.
//!
//! Why: a browser subscription is bound to the key the citizen app gave
//! when subscribing (`applicationServerKey`, [`Vapid::public_key`]); the
//! push service accepts messages for it only with a JWT signed by that key,
//! so nobody who learns a subscription's endpoint can push to it.
//!
//! The key is made on first start (mode 0600, written to a temporary file
//! and linked into place, so two replicas starting together end up with
//! one key) or read from `notices.vapid.key_file` (e.g. made by `openssl
//! genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`). Every replica
//! must use the same file: a new key orphans every subscription.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

/// How long a VAPID JWT is valid (RFC 8292: at most 24 hours).
pub const JWT_TTL_S: i64 = 12 * 3600;

/// The key pair and the contact.
pub struct Vapid {
    key: EcdsaKeyPair,
    public: String,
    subject: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public)
            .field("subject", &self.subject)
            .finish()
    }
}

impl Vapid {
    /// Reads the key from `path`, making it first when the file does not
    /// exist.
    pub fn load_or_create(path: &Path, subject: &str) -> Result<Vapid, String> {
        let rng = SystemRandom::new();
        let pem = match std::fs::read_to_string(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, &rng)?,
            Err(e) => return Err(format!("VAPID key `{}`: {e}", path.display())),
        };
        let der = pem_decode(&pem)
            .ok_or_else(|| format!("VAPID key `{}`: not a PKCS#8 PEM file", path.display()))?;
        Self::from_pkcs8(&der, subject).map_err(|e| format!("VAPID key `{}`: {e}", path.display()))
    }

    /// From PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8], subject: &str) -> Result<Vapid, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not a P-256 key pair in PKCS#8 ({e})"))?;
        let public = B64.encode(key.public_key().as_ref());
        Ok(Vapid {
            key,
            public,
            subject: subject.to_string(),
            rng,
        })
    }

    /// The public key, base64url (no padding) of the 65-byte uncompressed
    /// point: the citizen app's `applicationServerKey`.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a push to `endpoint` at `now_s`:
    /// `vapid t=<JWT>, k=<public key>`.
    pub fn authorization(&self, endpoint: &url::Url, now_s: i64) -> Result<String, String> {
        let aud = endpoint.origin().ascii_serialization();
        let mut claims = serde_json::json!({"aud": aud, "exp": now_s + JWT_TTL_S});
        if !self.subject.is_empty() {
            claims["sub"] = self.subject.clone().into();
        }
        let signing_input = format!(
            "{}.{}",
            B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "ES256 signing failed".to_string())?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            B64.encode(sig.as_ref()),
            self.public
        ))
    }
}

/// Makes a key pair and links it into `path` unless someone else did
/// first; returns the PEM now at `path`.
fn create(path: &Path, rng: &SystemRandom) -> Result<String, String> {
    let at = |e: std::io::Error| format!("VAPID key `{}`: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(at)?;
    }
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| "cannot make a P-256 key pair".to_string())?;
    let pem = pem_encode(pkcs8.as_ref());
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new();
        f.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
        let mut f = f.open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()
    };
    let linked = write().and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "made the VAPID key pair for Web Push");
            Ok(pem)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(at)
        }
        Err(e) => Err(at(e)),
    }
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = pem[start..].find("-----END PRIVATE KEY-----")? + start;
    let b64: String = pem[start..end].split_whitespace().collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn key_is_made_once_private_and_signs_the_jwt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/vapid.pem");
        let a = Vapid::load_or_create(&path, "mailto:ioc@example.gov.vn").unwrap();
        let b = Vapid::load_or_create(&path, "mailto:ioc@example.gov.vn").unwrap();
        assert_eq!(
            a.public_key(),
            b.public_key(),
            "the second start reads the same key"
        );
        assert_eq!(B64.decode(a.public_key()).unwrap().len(), 65);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ep = url::Url::parse("https://fcm.googleapis.com/fcm/send/abc").unwrap();
        let h = a.authorization(&ep, 1_700_000_000).unwrap();
        let rest = h.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, a.public_key());
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://fcm.googleapis.com");
        assert_eq!(claims["exp"], 1_700_000_000 + JWT_TTL_S);
        assert_eq!(claims["sub"], "mailto:ioc@example.gov.vn");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, B64.decode(k).unwrap())
            .verify(input.as_bytes(), &B64.decode(sig).unwrap())
            .unwrap();
        std::fs::write(&path, "not a key").unwrap();
        assert!(Vapid::load_or_create(&path, "").is_err());
    }
}
