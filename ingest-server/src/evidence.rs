//! The evidence store: files that back a case (stills, clips) and the raw
//! bytes of quarantined messages, kept through the `object_store` crate so
//! the same code writes to a local directory (the embedded default) or to
//! S3-compatible storage at city scale.
//!
//! Files are addressed **by content hash**: the same bytes are stored
//! once, a digest can never name other bytes, and every read is checked
//! against the digest before it is handed out. Where the bytes lie:
//! - the files of an ingest batch (stills, plate crops, the raw bytes of
//!   rejected messages) in one **pack** object per batch,
//!   `packs/YYYY-MM-DD/{uuid}.pack`, found through the `evidence_index`
//!   table (`pack.rs` says why and how), with a marker
//!   `pending/YYYY-MM-DD/{uuid}.pack` from before the pack is written
//!   until the batch's transaction has committed, so that the pack of a
//!   batch that never committed is found and deleted (`pending.rs`);
//! - anything else (assembled clips, evidence stored before packs) as one
//!   object under `sha256/ab/cdef…`.
//!
//! Clip chunks wait under `staging/{event}/{name}/{index}` until the clip is
//! complete and assembled, streamed, part by part (`assemble.rs`).
//!
//! Durability: on the local store every object is fsynced with its
//! directory before its write returns (one fsync per pack and one for its
//! `pending/` marker, so two per batch); on S3 (`[storage.s3]`, `s3.rs`) a PUT is answered 200 only once
//! the store holds the object durably (Garage: on its write quorum of
//! nodes; with `data_fsync` and `metadata_fsync` on in `garage.toml` also
//! flushed to their disks). The contract is the same on both backends:
//! every file of a batch is durably stored before the database commits and
//! before any device is answered; a failed write fails the batch, and
//! nothing in it is acknowledged.
//!
//! Which backend is chosen by `[storage]` (`config.rs`, `backend = "local"`
//! by default, or `"s3"`), through [`EvidenceStore::open`].

mod assemble;
pub mod config;
pub mod pack;
mod pending;
mod purge;
mod reindex;
mod s3;

pub use self::assemble::{Assembled, PART_BYTES};
pub use self::pending::{PENDING_GRACE_MS, PendingReport};
pub use self::purge::RemoveReport;
pub use self::reindex::ReindexReport;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use protocol::sha256_hex;
use sqlx::AnyPool;
use thiserror::Error;
use uuid::Uuid;

use self::config::{StorageBackend, StorageConfig};
use self::pack::PackedFile;

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
    /// The pack index could not be read.
    #[error("evidence index: {0}")]
    Index(#[from] sqlx::Error),
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
    /// The database holding `evidence_index` (where packed files lie).
    index: AnyPool,
}

/// Where the bytes of one file lie in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The object's key (below the store's prefix).
    pub key: ObjectPath,
    /// The file's bytes within the object: all of it, or its place in a
    /// pack.
    pub range: Option<Range<u64>>,
}

impl EvidenceStore {
    /// A local directory (created if missing); every object is fsynced
    /// (with its directory) before its write returns.
    pub fn local(dir: PathBuf, index: AnyPool) -> Result<Self, EvidenceStoreError> {
        std::fs::create_dir_all(&dir).map_err(|source| EvidenceStoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(&dir)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs), index))
    }

    /// The store `[storage]` chooses: `{data_dir}/evidence` (local), or
    /// the S3 bucket of `[storage.s3]`, checked with one listing so that a
    /// wrong key, a missing bucket or an unreachable endpoint stops the
    /// server here, with the field named, rather than at the first event.
    /// `index` is the database holding the pack index.
    pub async fn open(
        cfg: &StorageConfig,
        data_dir: &Path,
        index: AnyPool,
    ) -> Result<Self, EvidenceStoreError> {
        match (cfg.backend, &cfg.s3) {
            (StorageBackend::Local, _) => Self::local(data_dir.join("evidence"), index),
            (StorageBackend::S3, Some(s3_cfg)) => Ok(Self::new(s3::open(s3_cfg).await?, index)),
            (StorageBackend::S3, None) => Err(EvidenceStoreError::Setup {
                store: "s3".into(),
                message: "storage.s3: required with backend = \"s3\"".into(),
            }),
        }
    }

    /// Any object store (S3, memory, ...) whose put returns only once the
    /// store has the object durably.
    pub fn new(store: Arc<dyn ObjectStore>, index: AnyPool) -> Self {
        Self { store, index }
    }

    /// The key of an unpacked file with this digest.
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

    /// Stores `data` as one object under its hash (skipped if already
    /// there), durably; returns the digest. For files that arrive alone
    /// (an assembled clip); a batch's files go into a pack.
    pub async fn put(&self, data: Bytes) -> Result<String, EvidenceStoreError> {
        let digest = sha256_hex(&data);
        let key = Self::key_for(&digest)?;
        match self.store.head(&key).await {
            Ok(meta) if meta.size == data.len() as u64 => return Ok(digest),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.put(&key, PutPayload::from_bytes(data)).await?;
        Ok(digest)
    }

    /// Writes the files of one batch durably as one pack and says where
    /// each lies; the caller records that with [`pack::record`] in the
    /// batch's transaction, then calls [`EvidenceStore::pack_committed`].
    /// The pack's `pending/` marker is written durably before the pack
    /// (`pending.rs`): a pack whose batch never commits is deleted by the
    /// retention sweep. Each file comes with its SHA-256, already
    /// checked by the caller (against the signed manifest), so it is not
    /// hashed again here (a wrong digest would be caught on every read).
    /// Files the index already holds (a redelivery) and repeats within the
    /// batch are written once; nothing to write writes nothing.
    pub async fn put_pack(
        &self,
        files: Vec<(String, Bytes)>,
    ) -> Result<Vec<PackedFile>, EvidenceStoreError> {
        let mut distinct: HashMap<String, Bytes> = HashMap::with_capacity(files.len());
        let mut order = Vec::with_capacity(files.len());
        for (digest, data) in files {
            Self::key_for(&digest)?;
            if let std::collections::hash_map::Entry::Vacant(slot) = distinct.entry(digest) {
                order.push(slot.key().clone());
                slot.insert(data);
            }
        }
        let digests: Vec<&str> = order.iter().map(String::as_str).collect();
        let stored = pack::known(&self.index, &digests).await?;
        let files: Vec<(String, Bytes)> = order
            .iter()
            .filter(|d| !stored.contains(*d))
            .filter_map(|d| Some((d.clone(), distinct.remove(d)?)))
            .collect();
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let day = time::OffsetDateTime::now_utc().date();
        let key = format!("packs/{day}/{}.pack", Uuid::new_v4());
        let (payload, placed) = pack::layout(&key, files);
        // The marker first: a pack must never exist without one until its
        // batch has committed. A failed pack write leaves the marker to the
        // sweep (the write may have happened after all).
        self.mark_pending(&key).await?;
        self.store.put(&ObjectPath::from(key), payload).await?;
        Ok(placed)
    }

    /// Where the file with this digest lies: in a pack (through the
    /// index), or as its own object.
    pub async fn locate(&self, sha256: &str) -> Result<Location, EvidenceStoreError> {
        let own = Self::key_for(sha256)?;
        Ok(match pack::lookup(&self.index, sha256).await? {
            Some(p) => Location {
                key: ObjectPath::from(p.pack),
                range: Some(p.offset..p.offset + p.length),
            },
            None => Location {
                key: own,
                range: None,
            },
        })
    }

    /// Whether content with this digest is stored (indexed in a pack, or
    /// its own object exists); not a check of its bytes, which every read
    /// makes.
    pub async fn contains(&self, sha256: &str) -> Result<bool, EvidenceStoreError> {
        let at = self.locate(sha256).await?;
        match self.store.head(&at.key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the content with this digest, checking it still hashes to it.
    pub async fn get(&self, sha256: &str) -> Result<Bytes, EvidenceStoreError> {
        let at = self.locate(sha256).await?;
        let data = match &at.range {
            Some(range) => self.store.get_range(&at.key, range.clone()).await?,
            None => self.store.get(&at.key).await?.bytes().await?,
        };
        let actual = sha256_hex(&data);
        if actual != sha256 {
            return Err(EvidenceStoreError::Corrupt {
                key: at.key.to_string(),
                actual,
            });
        }
        Ok(data)
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
        Ok(())
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

/// What the store's own tests share: a local store over a fresh SQLite
/// index, and named test files with their digests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::db::Db;

    pub async fn local_store(dir: &Path) -> EvidenceStore {
        let db = Db::connect(&Db::sqlite_url(&dir.join("db.sqlite")))
            .await
            .unwrap();
        EvidenceStore::local(dir.join("evidence"), db.pool().clone()).unwrap()
    }

    pub fn files(names: &[&str]) -> Vec<(String, Bytes)> {
        names
            .iter()
            .map(|s| (sha256_hex(s.as_bytes()), Bytes::from(s.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    async fn store(dir: &Path) -> (EvidenceStore, Db) {
        let db = Db::connect(&Db::sqlite_url(&dir.join("db.sqlite")))
            .await
            .unwrap();
        let store = EvidenceStore::local(dir.join("evidence"), db.pool().clone()).unwrap();
        (store, db)
    }

    #[tokio::test]
    async fn stores_by_hash_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = store(dir.path()).await;
        let digest = store.put(Bytes::from_static(b"still")).await.unwrap();
        assert_eq!(digest, sha256_hex(b"still"));
        let again = store.put(Bytes::from_static(b"still")).await.unwrap();
        assert_eq!(again, digest);
        assert_eq!(&store.get(&digest).await.unwrap()[..], b"still");
        let file = dir
            .path()
            .join("evidence/sha256")
            .join(&digest[..2])
            .join(&digest[2..]);
        assert!(file.exists(), "{}", file.display());
        std::fs::write(&file, b"tampered").unwrap();
        let err = store.get(&digest).await.unwrap_err();
        assert!(matches!(err, EvidenceStoreError::Corrupt { .. }), "{err}");
        assert!(EvidenceStore::key_for("../etc").is_err());
    }

    #[tokio::test]
    async fn a_batch_is_one_pack_read_back_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = store(dir.path()).await;
        let files: Vec<(String, Bytes)> = ["overview", "plate", "overview", "clip"]
            .iter()
            .map(|s| (sha256_hex(s.as_bytes()), Bytes::from(s.to_string())))
            .collect();
        let placed = store.put_pack(files.clone()).await.unwrap();
        // The repeat within the batch is written once, into one object.
        assert_eq!(placed.len(), 3);
        assert!(placed.iter().all(|p| p.pack == placed[0].pack));
        let mut conn = db.pool().acquire().await.unwrap();
        pack::record(&mut conn, &placed).await.unwrap();
        drop(conn);
        for (digest, data) in &files {
            assert_eq!(store.get(digest).await.unwrap(), data);
        }
        // A redelivery writes nothing new.
        assert!(
            store
                .put_pack(files[..2].to_vec())
                .await
                .unwrap()
                .is_empty()
        );
        let packs = std::fs::read_dir(dir.path().join("evidence/packs"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .count();
        assert_eq!(packs, 1);

        // One changed byte inside the pack: that file's read is an error,
        // the others still read.
        let at = store.locate(&files[1].0).await.unwrap();
        let range = at.range.clone().unwrap();
        let path = dir.path().join("evidence").join(at.key.as_ref());
        let mut body = std::fs::read(&path).unwrap();
        body[range.start as usize] ^= 0x20;
        std::fs::write(&path, body).unwrap();
        let err = store.get(&files[1].0).await.unwrap_err();
        assert!(
            matches!(&err, EvidenceStoreError::Corrupt { key, .. } if key.ends_with(".pack")),
            "{err}"
        );
        assert_eq!(store.get(&files[0].0).await.unwrap(), files[0].1);
        // A digest nobody stored is not found.
        let err = store.get(&sha256_hex(b"never")).await.unwrap_err();
        assert!(
            matches!(
                err,
                EvidenceStoreError::Store(object_store::Error::NotFound { .. })
            ),
            "{err}"
        );
    }
}
