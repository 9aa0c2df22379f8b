//! The device's identity: its id and its Ed25519 signing key.
//!
//! The key is made by `edge-agent enroll` and kept in a file readable only
//! by the agent (mode 0600, written to a temp name, fsynced, renamed), so a
//! reboot keeps the identity the server enrolled and nobody else on the box
//! can sign as this device. `edge-agent enroll` prints the device id and
//! the public key for registration at the server. `run` and `deliver` only
//! load it ([`DeviceIdentity::load`]): a key they made silently would sign
//! violations with a key the server has never seen. The key file holds the 32-byte
//! seed as 64 hex characters and a newline; anything else is refused with
//! an error naming the file, never replaced silently (replacing a key would
//! orphan the device at the server).

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A key file problem.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// Reading, writing or creating the key file failed.
    #[error("device key {path}: {what}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but is not a key.
    #[error("device key {path}: {reason} (expected 64 hex characters; refusing to replace it)")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// There is no key file: the device was never enrolled on this box.
    #[error(
        "device key {path} does not exist: run `edge-agent enroll --config <agent.toml>` to make \
         it and register the public key it prints at the server"
    )]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// The key file can be read by others.
    #[error("device key {path}: mode {mode:o} lets others read it; run: chmod 600 {path}")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
}

/// Who this box is.
#[derive(Clone)]
pub struct DeviceIdentity {
    /// The device id (as enrolled at the server and used in topics).
    pub device_id: String,
    /// The device's site id.
    pub site: String,
    key: SigningKey,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .field("site", &self.site)
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

impl DeviceIdentity {
    /// Loads the key at `path`; a missing file is [`IdentityError::Missing`],
    /// never replaced by a new key.
    pub fn load(device_id: &str, site: &str, path: &Path) -> Result<Self, IdentityError> {
        if !path.exists() {
            return Err(IdentityError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::load_or_create(device_id, site, path).map(|(id, _)| id)
    }

    /// Loads the key at `path`, making it first if the file does not exist.
    /// Returns the identity and whether the key was just made.
    pub fn load_or_create(
        device_id: &str,
        site: &str,
        path: &Path,
    ) -> Result<(Self, bool), IdentityError> {
        let io = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, what, source }
        };
        let created = if path.exists() {
            false
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io("creating its directory"))?;
            }
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let tmp = path.with_extension("tmp");
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("creating"))?;
            writeln!(f, "{}", hex::encode(key.to_bytes())).map_err(io("writing"))?;
            f.sync_all().map_err(io("syncing"))?;
            fs::rename(&tmp, path).map_err(io("renaming into place"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("syncing its directory"))?;
            }
            true
        };
        let mode = fs::metadata(path)
            .map_err(io("reading metadata"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(IdentityError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = fs::read_to_string(path).map_err(io("reading"))?;
        let malformed = |reason: String| IdentityError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = hex::decode(text.trim()).map_err(|e| malformed(format!("not hex: {e}")))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| malformed(format!("{} bytes, not 32", b.len())))?;
        Ok((
            Self {
                device_id: device_id.to_owned(),
                site: site.to_owned(),
                key: SigningKey::from_bytes(&seed),
            },
            created,
        ))
    }

    /// An identity with a given key (tests, tools).
    pub fn with_key(device_id: &str, site: &str, key: SigningKey) -> Self {
        Self {
            device_id: device_id.to_owned(),
            site: site.to_owned(),
            key,
        }
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key the server verifies with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as 64 lowercase hex characters.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.verifying_key().to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_made_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/device.key");
        let (a, created) = DeviceIdentity::load_or_create("d1", "s1", &path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = DeviceIdentity::load_or_create("d1", "s1", &path).unwrap();
        assert!(!created);
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        assert!(!format!("{a:?}").contains(&hex::encode(a.signing_key().to_bytes())));
    }

    #[test]
    fn load_refuses_a_missing_key_and_makes_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let err = DeviceIdentity::load("d", "s", &path).unwrap_err();
        assert!(matches!(err, IdentityError::Missing { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("enroll"),
            "{text}"
        );
        assert!(!path.exists(), "no key was made");
        let (made, _) = DeviceIdentity::load_or_create("d", "s", &path).unwrap();
        let loaded = DeviceIdentity::load("d", "s", &path).unwrap();
        assert_eq!(made.public_key_hex(), loaded.public_key_hex());
    }

    #[test]
    fn bad_key_files_are_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = DeviceIdentity::load_or_create("d", "s", &path).unwrap_err();
        assert!(err.to_string().contains("not hex"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");

        fs::write(&path, "abcd\n").unwrap();
        let err = DeviceIdentity::load_or_create("d", "s", &path).unwrap_err();
        assert!(err.to_string().contains("2 bytes"), "{err}");

        fs::write(&path, format!("{}\n", "11".repeat(32))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = DeviceIdentity::load_or_create("d", "s", &path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
