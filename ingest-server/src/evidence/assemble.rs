//! Assembling a clip from its staged chunks without holding it in memory.
//!
//! A clip arrives as chunks (`crate::clips`), each staged under
//! `staging/{event}/{name}/{index}`. Once all are in, they are read back in
//! order and written as one multipart upload to
//! `staging/{event}/{name}/assembled`, hashed on the way, so memory holds
//! one chunk and at most three parts of [`PART_BYTES`] (two uploading, one
//! filling) whatever the clip's size (the protocol allows 1 GiB). Only then is the digest known, and the object is
//! copied to its content address `sha256/ab/cdef…` (a server-side copy on
//! S3, a hard link on the local store; skipped where that content is
//! already stored) and the assembled staging object removed.
//!
//! The caller compares the digest with the one the device signed: a clip
//! that hashes otherwise is still stored under its own digest, so the
//! quarantine entry can point at exactly the bytes that were refused.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{EvidenceStore, EvidenceStoreError};

/// Size of the parts of the multipart upload (S3 wants at least 5 MiB for
/// all but the last).
pub const PART_BYTES: usize = 8 << 20;

/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// A file assembled and stored under its content address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// SHA-256 (hex) of the assembled bytes.
    pub sha256: String,
    /// Their length.
    pub size: u64,
}

impl EvidenceStore {
    fn assembled_key(event_id: Uuid, name: &str) -> ObjectPath {
        ObjectPath::from(format!("staging/{event_id}/{name}/assembled"))
    }

    /// Concatenates the `count` staged chunks of `name` of `event_id`, in
    /// order, into one object stored durably under its content hash, and
    /// says what that hash is. The chunks stay staged (the caller deletes
    /// them once the database says the clip is stored).
    pub async fn assemble_chunks(
        &self,
        event_id: Uuid,
        name: &str,
        count: u32,
    ) -> Result<Assembled, EvidenceStoreError> {
        let staged = Self::assembled_key(event_id, name);
        let upload = self.store.put_multipart(&staged).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        for index in 0..count {
            let chunk = match self.get_chunk(event_id, name, index).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            writer.put(chunk);
        }
        writer.finish().await?;
        let sha256 = hex::encode(hasher.finalize());
        let placed = self.place(&staged, &sha256, size).await;
        // The staged copy goes whatever happened (it can be up to 1 GiB and
        // nothing else sweeps `staging/`); a failure to place the clip is
        // answered by the device sending it again.
        let removed = match self.store.delete(&staged).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        placed?;
        removed?;
        Ok(Assembled { sha256, size })
    }

    /// Copies the assembled object at `staged` to the content address of
    /// `sha256`, unless that content is already there.
    async fn place(
        &self,
        staged: &ObjectPath,
        sha256: &str,
        size: u64,
    ) -> Result<(), EvidenceStoreError> {
        let key = Self::key_for(sha256)?;
        let present = match self.store.head(&key).await {
            Ok(meta) => meta.size == size,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if !present {
            self.store.copy(staged, &key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::evidence::test_support::local_store;

    /// Chunks of a clip larger than one part come back as one object, by
    /// content hash, byte for byte; the staging copy is gone; assembling
    /// the same content again stores nothing new.
    #[tokio::test]
    async fn assembles_by_content_hash_across_parts() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path()).await;
        let event = Uuid::new_v4();
        let chunk_len = 3 << 20;
        let chunks: Vec<Bytes> = (0..4u8)
            .map(|i| Bytes::from(vec![i.wrapping_mul(37).wrapping_add(1); chunk_len]))
            .collect();
        for (i, c) in chunks.iter().enumerate() {
            store
                .put_chunk(event, "clip.mp4", i as u32, c.clone())
                .await
                .unwrap();
        }
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert!(whole.len() > PART_BYTES);
        let a = store.assemble_chunks(event, "clip.mp4", 4).await.unwrap();
        assert_eq!(a.sha256, protocol::sha256_hex(&whole));
        assert_eq!(a.size, whole.len() as u64);
        assert_eq!(store.get(&a.sha256).await.unwrap(), Bytes::from(whole));
        let staged = EvidenceStore::assembled_key(event, "clip.mp4");
        assert!(matches!(
            store.store.head(&staged).await,
            Err(object_store::Error::NotFound { .. })
        ));
        let again = store.assemble_chunks(event, "clip.mp4", 4).await.unwrap();
        assert_eq!(again, a);
    }

    /// A missing chunk fails the assembly and leaves no object behind.
    #[tokio::test]
    async fn a_missing_chunk_fails_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path()).await;
        let event = Uuid::new_v4();
        store
            .put_chunk(event, "clip.mp4", 0, Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert!(store.assemble_chunks(event, "clip.mp4", 2).await.is_err());
        let staged = EvidenceStore::assembled_key(event, "clip.mp4");
        assert!(matches!(
            store.store.head(&staged).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
