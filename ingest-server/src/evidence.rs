//! The evidence store: files that back a case (stills, clips) and the raw
//! bytes of quarantined messages, kept through the `object_store` crate so
//! the same code writes to a local directory (the embedded default) or to
//! S3-compatible storage at city scale.
//!
//! Files are stored **by content hash**, under `sha256/ab/cdef…`: the same
//! bytes are stored once, a key can never point at other bytes, and every
//! read is checked against the hash in its key before it is handed out.
//! Clip chunks wait under `staging/{event}/{name}/{index}` until the clip is
//! complete and assembled.
//!
//! Durability: on the local store, writes are not fsynced one by one;
//! after the files of a batch are written, one `syncfs` on the evidence
//! directory's filesystem makes all of them (data, names, directories)
//! durable with a single journal commit and cache flush, before the batch's
//! database transaction commits and anything is acknowledged. This is the
//! group commit the disk rewards (one flush per batch instead of one per
//! file). `syncfs` also flushes unrelated dirty data on the same filesystem,
//! so the evidence directory belongs on its own volume in production.
//!
//! On S3 (`[storage.s3]`, `s3.rs`) there is nothing to sync: a PUT is
//! answered 200 only once the store holds the object durably (Garage: on
//! its write quorum of nodes; with `data_fsync` and `metadata_fsync` on in
//! `garage.toml` also flushed to their disks), so a completed put *is* the
//! durable write, and the batch's sync step is a no-op. The contract stays the
//! same on both backends: every file of a batch is durably stored before
//! the database commits and before any device is answered; a failed write
//! fails the batch, and nothing in it is acknowledged.
//!
//! Which backend is chosen by `[storage]` (`config.rs`, `backend = "local"`
//! by default, or `"s3"`), through [`EvidenceStore::open`].

pub mod config;
mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protocol::sha256_hex;
use thiserror::Error;
use uuid::Uuid;

use self::config::{StorageBackend, StorageConfig};

/// How many writes of one batch run at once.
const WRITE_CONCURRENCY: usize = 32;

/// Evidence store failures.
#[derive(Debug, Error)]
pub enum EvidenceStoreError {
    /// The backing store failed.
    #[error("evidence store: {0}")]
    Store(#[from] object_store::Error),
    /// The directory could not be created.
    #[error("evidence directory {path}: {source}")]
    Dir {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Stored bytes no longer match their hash.
    #[error("evidence {key} is corrupt: stored bytes hash to {actual}")]
    Corrupt {
        /// Key read.
        key: String,
        /// Hash of what was read.
        actual: String,
    },
    /// Not a SHA-256 hex digest.
    #[error("not a sha256 digest: {0:?}")]
    BadDigest(String),
    /// The configured store cannot be used (S3: endpoint, bucket or key).
    #[error("evidence store ({store}): {message}")]
    Setup {
        /// Which store (`s3 {endpoint} bucket {bucket}`; no secrets).
        store: String,
        /// What is wrong, naming the configuration field.
        message: String,
    },
}

/// Content-addressed evidence on any `object_store` backend.
#[derive(Clone, Debug)]
pub struct EvidenceStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store, synced after each batch of writes.
    local_root: Option<PathBuf>,
}

impl EvidenceStore {
    /// A local directory (created if missing), made durable by one
    /// `syncfs` per batch of writes.
    pub fn local(dir: PathBuf) -> Result<Self, EvidenceStoreError> {
        std::fs::create_dir_all(&dir).map_err(|source| EvidenceStoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        // Off Linux there is no syncfs: fsync each file instead.
        let fs = LocalFileSystem::new_with_prefix(&dir)?
            .with_fsync(!cfg!(target_os = "linux"))
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(fs),
            local_root: Some(dir),
        })
    }

    /// The store `[storage]` chooses: `{data_dir}/evidence` (local), or
    /// the S3 bucket of `[storage.s3]`, checked with one listing so that a
    /// wrong key, a missing bucket or an unreachable endpoint stops the
    /// server here, with the field named, rather than at the first event.
    pub async fn open(cfg: &StorageConfig, data_dir: &Path) -> Result<Self, EvidenceStoreError> {
        match (cfg.backend, &cfg.s3) {
            (StorageBackend::Local, _) => Self::local(data_dir.join("evidence")),
            (StorageBackend::S3, Some(s3_cfg)) => Ok(Self::new(s3::open(s3_cfg).await?)),
            (StorageBackend::S3, None) => Err(EvidenceStoreError::Setup {
                store: "s3".into(),
                message: "storage.s3: required with backend = \"s3\"".into(),
            }),
        }
    }

    /// Any object store (S3, memory, ...) whose put returns only once the
    /// store has the object durably; nothing is synced after it.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
        }
    }

    /// Makes every write so far durable: on the local store one `syncfs`;
    /// on S3 (or any store made with [`EvidenceStore::new`]) nothing, since
    /// each put returned only once the object was durably stored (a
    /// completed PUT), so there is nothing left to flush.
    async fn sync(&self) -> Result<(), EvidenceStoreError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        let dir = root.display().to_string();
        tokio::task::spawn_blocking(move || {
            let d = std::fs::File::open(&root)?;
            sync_filesystem(&d)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| EvidenceStoreError::Dir { path: dir, source })
    }

    /// The key of content with this digest.
    pub fn key_for(sha256: &str) -> Result<ObjectPath, EvidenceStoreError> {
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(EvidenceStoreError::BadDigest(sha256.to_owned()));
        }
        Ok(ObjectPath::from(format!(
            "sha256/{}/{}",
            &sha256[..2],
            &sha256[2..]
        )))
    }

    /// Stores `data` under its hash (skipped if already there) durably;
    /// returns the digest.
    pub async fn put(&self, data: Bytes) -> Result<String, EvidenceStoreError> {
        let digest = sha256_hex(&data);
        self.put_unsynced(digest.clone(), data).await?;
        self.sync().await?;
        Ok(digest)
    }

    async fn put_unsynced(&self, digest: String, data: Bytes) -> Result<(), EvidenceStoreError> {
        let key = Self::key_for(&digest)?;
        match self.store.head(&key).await {
            Ok(meta) if meta.size == data.len() as u64 => return Ok(()),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.put(&key, PutPayload::from_bytes(data)).await?;
        Ok(())
    }

    /// Stores many files at once (one batch), durably with one sync. Each
    /// comes with its SHA-256, already checked by the caller (against the
    /// signed manifest), so it is not hashed a second time; a wrong digest
    /// would be caught on every read.
    pub async fn put_all_hashed(
        &self,
        files: Vec<(String, Bytes)>,
    ) -> Result<(), EvidenceStoreError> {
        let results: Vec<_> = futures::stream::iter(
            files
                .into_iter()
                .map(|(digest, data)| self.put_unsynced(digest, data)),
        )
        .buffered(WRITE_CONCURRENCY)
        .collect()
        .await;
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        self.sync().await
    }

    /// Reads the content with this digest, checking it still hashes to it.
    pub async fn get(&self, sha256: &str) -> Result<Bytes, EvidenceStoreError> {
        let key = Self::key_for(sha256)?;
        let data = self.store.get(&key).await?.bytes().await?;
        let actual = sha256_hex(&data);
        if actual != sha256 {
            return Err(EvidenceStoreError::Corrupt {
                key: key.to_string(),
                actual,
            });
        }
        Ok(data)
    }

    /// Whether content with this digest is stored.
    pub async fn contains(&self, sha256: &str) -> Result<bool, EvidenceStoreError> {
        match self.store.head(&Self::key_for(sha256)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn staging_key(event_id: Uuid, name: &str, index: u32) -> ObjectPath {
        ObjectPath::from(format!("staging/{event_id}/{name}/{index:05}"))
    }

    /// Stages one clip chunk (already checked against its own hash).
    pub async fn put_chunk(
        &self,
        event_id: Uuid,
        name: &str,
        index: u32,
        data: Bytes,
    ) -> Result<(), EvidenceStoreError> {
        self.store
            .put(
                &Self::staging_key(event_id, name, index),
                PutPayload::from_bytes(data),
            )
            .await?;
        self.sync().await
    }

    /// Reads one staged chunk.
    pub async fn get_chunk(
        &self,
        event_id: Uuid,
        name: &str,
        index: u32,
    ) -> Result<Bytes, EvidenceStoreError> {
        Ok(self
            .store
            .get(&Self::staging_key(event_id, name, index))
            .await?
            .bytes()
            .await?)
    }

    /// Removes staged chunks once the clip is assembled (missing ones are
    /// fine).
    pub async fn delete_chunks(
        &self,
        event_id: Uuid,
        name: &str,
        count: u32,
    ) -> Result<(), EvidenceStoreError> {
        for index in 0..count {
            match self
                .store
                .delete(&Self::staging_key(event_id, name, index))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Flushes the filesystem holding `dir` (Linux: `syncfs`, one journal
/// commit for everything written; elsewhere each file was fsynced already).
#[cfg(target_os = "linux")]
fn sync_filesystem(dir: &std::fs::File) -> std::io::Result<()> {
    rustix::fs::syncfs(dir).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_dir: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_by_hash_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::local(dir.path().to_path_buf()).unwrap();
        let digest = store.put(Bytes::from_static(b"still")).await.unwrap();
        assert_eq!(digest, sha256_hex(b"still"));
        let again = store.put(Bytes::from_static(b"still")).await.unwrap();
        assert_eq!(again, digest);
        assert_eq!(&store.get(&digest).await.unwrap()[..], b"still");
        let file = dir
            .path()
            .join("sha256")
            .join(&digest[..2])
            .join(&digest[2..]);
        assert!(file.exists(), "{}", file.display());
        std::fs::write(&file, b"tampered").unwrap();
        let err = store.get(&digest).await.unwrap_err();
        assert!(matches!(err, EvidenceStoreError::Corrupt { .. }), "{err}");
        assert!(EvidenceStore::key_for("../etc").is_err());
    }
}
