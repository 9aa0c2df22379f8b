//! Deleting evidence bytes for good: what `crate::retention` calls once a
//! case (or a quarantined message) no longer needs its files.
//!
//! A file stored as its own object (`sha256/ab/…`: clips) is deleted.
//! A file inside a pack shares that object with the other files of its
//! ingest batch, so dropping its index row alone would leave its bytes on
//! disk: the pack is **rewritten** without it. The files that stay are
//! read from the old pack, checked against their digests, written as a new
//! pack, and moved in the index in one transaction; only then is the old
//! pack deleted. A pack with nothing left is deleted after its rows are.
//!
//! Every step is safe to repeat. A stop between the index commit and the
//! deletion leaves an old pack that no index row names: an *orphan*, like
//! the pack of a batch whose database commit failed. [`EvidenceStore::
//! sweep_orphan_packs`] deletes orphans once they are old enough that no
//! batch can still be about to commit them.

use std::collections::{BTreeMap, HashSet};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use protocol::sha256_hex;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::pack::{self, PackedFile};
use super::{EvidenceStore, EvidenceStoreError};

/// What one [`EvidenceStore::remove`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    /// Files whose bytes are gone (or were already).
    pub removed: usize,
    /// Packs rewritten without the removed files.
    pub packs_rewritten: usize,
    /// Packs deleted because nothing in them was left.
    pub packs_deleted: usize,
    /// Files kept (moved to a new pack) while their pack was rewritten.
    pub files_moved: usize,
    /// Why some bytes could not be removed (a pack holding a file that no
    /// longer matches its digest is left as it is, for a person to look at).
    pub problems: Vec<String>,
    /// The digests among those problems, still stored.
    #[serde(skip)]
    pub not_removed: Vec<String>,
}

impl EvidenceStore {
    /// Deletes the bytes of `digests` from the store: own objects are
    /// deleted, packs are rewritten without them. Digests already gone
    /// count as removed. The caller has made sure nothing still needs them.
    pub async fn remove(&self, digests: &[String]) -> Result<RemoveReport, EvidenceStoreError> {
        let mut report = RemoveReport::default();
        let mut by_pack: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        for d in digests {
            let own = Self::key_for(d)?;
            match pack::lookup(&self.index, d).await? {
                Some(p) => {
                    by_pack.entry(p.pack).or_default().insert(d.clone());
                }
                None => {
                    delete_quietly(self.store.as_ref(), &own).await?;
                    report.removed += 1;
                }
            }
        }
        for (key, doomed) in by_pack {
            self.rewrite_without(&key, &doomed, &mut report).await?;
        }
        Ok(report)
    }

    /// Rewrites pack `key` without the files in `doomed`.
    async fn rewrite_without(
        &self,
        key: &str,
        doomed: &HashSet<String>,
        report: &mut RemoveReport,
    ) -> Result<(), EvidenceStoreError> {
        let rows = sqlx::query(
            "SELECT sha256, byte_offset, byte_length FROM evidence_index WHERE pack = $1",
        )
        .bind(key)
        .fetch_all(&self.index)
        .await?;
        let mut keep = Vec::new();
        for r in rows {
            let sha: String = r.try_get(0)?;
            if doomed.contains(&sha) {
                continue;
            }
            let offset = u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(u64::MAX);
            let length = u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(u64::MAX);
            keep.push((sha, offset, length));
        }
        let old = ObjectPath::from(key);
        if keep.is_empty() {
            let mut tx = self.index.begin().await?;
            sqlx::query("DELETE FROM evidence_index WHERE pack = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            delete_quietly(self.store.as_ref(), &old).await?;
            report.packs_deleted += 1;
            report.removed += doomed.len();
            return Ok(());
        }
        let whole = self.store.get(&old).await?.bytes().await?;
        let mut files = Vec::with_capacity(keep.len());
        for (sha, offset, length) in &keep {
            let data = usize::try_from(*offset)
                .ok()
                .zip(usize::try_from(offset.saturating_add(*length)).ok())
                .and_then(|(a, b)| whole.get(a..b));
            match data {
                Some(data) if sha256_hex(data) == *sha => {
                    files.push((sha.clone(), whole.slice_ref(data)))
                }
                _ => {
                    // Rewriting would lose a file that is already damaged
                    // or make its damage invisible: leave the pack alone.
                    report.problems.push(format!(
                        "{key}: file {sha} at {offset}+{length} does not match its digest; \
                         pack left as it is, {} file(s) in it not removed",
                        doomed.len()
                    ));
                    report.not_removed.extend(doomed.iter().cloned());
                    return Ok(());
                }
            }
        }
        let day = time::OffsetDateTime::now_utc().date();
        let new_key = format!("packs/{day}/{}.pack", Uuid::new_v4());
        let (payload, placed): (_, Vec<PackedFile>) = pack::layout(&new_key, files);
        self.store
            .put(&ObjectPath::from(new_key.as_str()), payload)
            .await?;
        // The new pack is durable before the index points at it.
        let mut tx = self.index.begin().await?;
        sqlx::query("DELETE FROM evidence_index WHERE pack = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        pack::record(&mut tx, &placed).await?;
        tx.commit().await?;
        delete_quietly(self.store.as_ref(), &old).await?;
        report.packs_rewritten += 1;
        report.files_moved += placed.len();
        report.removed += doomed.len();
        Ok(())
    }

    /// Deletes packs that no index row names and that were last written
    /// before `before_ms` (Unix ms): left by a rewrite that stopped before
    /// its deletion, or by a batch whose database commit failed (its
    /// events are resent and packed again). Returns how many were deleted.
    pub async fn sweep_orphan_packs(&self, before_ms: i64) -> Result<usize, EvidenceStoreError> {
        let prefix = ObjectPath::from("packs");
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut deleted = 0;
        for meta in objects {
            let key = meta.location.to_string();
            if !key.ends_with(".pack") || meta.last_modified.timestamp_millis() >= before_ms {
                continue;
            }
            let named = sqlx::query("SELECT 1 FROM evidence_index WHERE pack = $1 LIMIT 1")
                .bind(&key)
                .fetch_optional(&self.index)
                .await?;
            if named.is_none() {
                delete_quietly(self.store.as_ref(), &meta.location).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// Deletes `key`; already gone is fine.
async fn delete_quietly(
    store: &dyn ObjectStore,
    key: &ObjectPath,
) -> Result<(), EvidenceStoreError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::test_support::{files, local_store as store};
    use bytes::Bytes;

    async fn record(store: &EvidenceStore, files: Vec<(String, Bytes)>) -> String {
        let placed = store.put_pack(files).await.unwrap();
        let mut conn = store.index.acquire().await.unwrap();
        pack::record(&mut conn, &placed).await.unwrap();
        placed[0].pack.clone()
    }

    /// A pack holding a file that no longer matches its digest is not
    /// rewritten (that would hide the damage or lose the file): the files
    /// asked for stay, named in the report; the rest of the call goes on.
    #[tokio::test]
    async fn a_damaged_pack_is_left_alone_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let damaged = files(&["doomed one", "kept but damaged"]);
        let fine = files(&["doomed two", "kept two"]);
        let key = record(&store, damaged.clone()).await;
        record(&store, fine.clone()).await;
        let path = dir.path().join("evidence").join(&key);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();

        let report = store
            .remove(&[damaged[0].0.clone(), fine[0].0.clone()])
            .await
            .unwrap();
        assert_eq!(report.not_removed, [damaged[0].0.clone()]);
        assert!(report.problems[0].contains(&key), "{:?}", report.problems);
        assert_eq!((report.removed, report.packs_rewritten), (1, 1));
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it is");
        assert_eq!(store.get(&fine[1].0).await.unwrap(), fine[1].1);
        assert!(!store.contains(&fine[0].0).await.unwrap());
        assert!(store.contains(&damaged[0].0).await.unwrap());
    }

    /// Packs no index row names go once they are older than the cutoff.
    #[tokio::test]
    async fn orphan_packs_are_swept_only_when_old_enough() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        store.put_pack(files(&["never committed"])).await.unwrap();
        let kept = record(&store, files(&["committed"])).await;
        let now = crate::db::now_ms();
        assert_eq!(store.sweep_orphan_packs(now - 60_000).await.unwrap(), 0);
        assert_eq!(store.sweep_orphan_packs(now + 60_000).await.unwrap(), 1);
        assert!(dir.path().join("evidence").join(kept).exists());
    }
}
