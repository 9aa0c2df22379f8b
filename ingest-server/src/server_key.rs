//! The server's own Ed25519 identity key, which signs every ack it sends to
//! a device. An ack makes a device delete evidence from its outbox, so the
//! device must be able to tell the server's acks from anyone else's: it
//! trusts only acks signed by a key it was given at installation (`ingest-
//! server key show`, or the enrolment answer).
//!
//! The key is made on first start (or by `key show`) in the data directory
//! (`server-ed25519.key`, or `mqtt.server_key_file`), like a device's key:
//! 32-byte seed as 64 hex characters and a newline, mode 0600, written to a
//! temporary name, fsynced and renamed. A malformed key file, or one others
//! can read, stops the server with an error naming the file; it is never
//! replaced (a new key would make every device refuse the server's acks).
//! Replicas either share one key file or each have their own; every key a
//! server starts with is registered in `server_keys`, and an enrolment
//! hands out all keys not retired.
//!
//! The same key signs the court evidence packages (`crate::package`), so
//! the public key a court checks one with is one the city published (`key
//! show`, `server_keys`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use protocol::{SigningKey, VerifyingKey};
use thiserror::Error;

use crate::config::Config;
use crate::db::{Db, DbError, now_ms};

/// The key file's name in the data directory.
pub const DEFAULT_FILE: &str = "server-ed25519.key";

/// A key file or key registry problem.
#[derive(Debug, Error)]
pub enum ServerKeyError {
    /// Reading, writing or creating the key file failed.
    #[error("server key {path}: {what}: {source}")]
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
    #[error("server key {path}: {reason} (expected 64 hex characters; refusing to replace it)")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file can be read by others.
    #[error("server key {path}: mode {mode:o} lets others read it; run: chmod 600 {path}")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A public key given to `key retire` is not one.
    #[error("not an Ed25519 public key (64 hex characters): {0}")]
    BadPublicKey(String),
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for ServerKeyError {
    fn from(e: sqlx::Error) -> Self {
        ServerKeyError::Db(DbError::Sqlx(e))
    }
}

/// The server's signing key.
pub struct ServerKey {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("path", &self.path)
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

/// Where the key file is for `cfg`.
pub fn key_path(cfg: &Config) -> PathBuf {
    cfg.mqtt
        .server_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join(DEFAULT_FILE))
}

impl ServerKey {
    /// Loads the key at `path`, making it first if the file does not exist.
    /// Returns the key and whether it was just made.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), ServerKeyError> {
        let io = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| ServerKeyError::Io { path, what, source }
        };
        let created = if path.exists() {
            false
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io("creating its directory"))?;
            }
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io("creating"))?;
            writeln!(f, "{}", hex::encode(key.to_bytes())).map_err(io("writing"))?;
            f.sync_all().map_err(io("syncing"))?;
            // A hard link, unlike a rename, never replaces: if another
            // process (a replica, `key show`) made the key meanwhile, its
            // key wins and is read below.
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            let made = match linked {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => return Err(io("putting it in place")(e)),
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io("syncing its directory"))?;
            }
            made
        };
        let mode = fs::metadata(path)
            .map_err(io("reading metadata"))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(ServerKeyError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = fs::read_to_string(path).map_err(io("reading"))?;
        let malformed = |reason: String| ServerKeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = hex::decode(text.trim()).map_err(|e| malformed(format!("not hex: {e}")))?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed(format!("{} bytes, expected 32", bytes.len())))?;
        let key = Self {
            key: SigningKey::from_bytes(&seed),
            path: path.to_path_buf(),
        };
        if created {
            tracing::warn!(path = %path.display(), public_key = %key.public_key_hex(),
                "made a new server key: give its public key to every edge (`ingest-server key show`)");
        }
        Ok((key, created))
    }

    /// Loads (or makes) the key `cfg` names and registers its public half
    /// in `server_keys`.
    pub async fn open(cfg: &Config, db: &Db) -> Result<Self, ServerKeyError> {
        let (key, _) = Self::load_or_create(&key_path(cfg))?;
        register(db, &key.verifying_key()).await?;
        Ok(key)
    }

    /// The key acks are signed with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Its public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Its public half as 64 hex characters (what edges are configured with).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.verifying_key().to_bytes())
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Records `key` as one the server signs with (again: a retired key that
/// is in use again is un-retired).
pub async fn register(db: &Db, key: &VerifyingKey) -> Result<(), ServerKeyError> {
    let hex_key = hex::encode(key.to_bytes());
    sqlx::query(
        "INSERT INTO server_keys (public_key, registered_at) VALUES ($1, $2) \
         ON CONFLICT (public_key) DO UPDATE SET retired_at = NULL",
    )
    .bind(&hex_key)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The keys an enrolment tells a device to trust: every registered key not
/// retired, oldest first.
pub async fn trusted(db: &Db) -> Result<Vec<String>, ServerKeyError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT public_key FROM server_keys WHERE retired_at IS NULL \
         ORDER BY registered_at, public_key",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Every registered key with when it was registered and retired (Unix ms).
pub async fn list(db: &Db) -> Result<Vec<(String, i64, Option<i64>)>, ServerKeyError> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT public_key, registered_at, retired_at FROM server_keys \
         ORDER BY registered_at, public_key",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Stops handing out `public_key` at enrolment (after a rotation, once
/// every edge trusts the new key). Returns whether a key was retired.
pub async fn retire(db: &Db, public_key: &str) -> Result<bool, ServerKeyError> {
    let key = crate::devices::parse_public_key(public_key)
        .map_err(|e| ServerKeyError::BadPublicKey(e.to_string()))?;
    let done = sqlx::query(
        "UPDATE server_keys SET retired_at = $1 WHERE public_key = $2 AND retired_at IS NULL",
    )
    .bind(now_ms())
    .bind(hex::encode(key.to_bytes()))
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reloaded_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k").join(DEFAULT_FILE);
        let (a, made) = ServerKey::load_or_create(&path).unwrap();
        assert!(made);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, made) = ServerKey::load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(a.public_key_hex(), b.public_key_hex());

        fs::write(&path, "not a key\n").unwrap();
        let err = ServerKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, ServerKeyError::Malformed { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");

        fs::write(&path, format!("{}\n", hex::encode([5u8; 32]))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = ServerKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
