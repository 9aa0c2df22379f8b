//! Deleting evidence bytes for good: what `crate::retention` calls once a
//! case (or a quarantined message) no longer needs its files.
//!
//! A file stored as its own object (`sha256/ab/…`: clips) is deleted.
//! A file inside a pack shares that object with the other files of its
//! ingest batch, so dropping its index row alone would leave its bytes on
//! disk: the pack is **rewritten** without it. The files that stay are
//! read from the old pack, checked against their digests, written as a new
//! pack, and moved in the index in one transaction that also records the
//! old pack in `superseded_packs`; only then is the old pack deleted, and
//! its record with it. A pack with nothing left goes the same way.
//!
//! Every step is safe to repeat. A stop between the commit and the
//! deletion leaves a superseded pack that [`EvidenceStore::
//! sweep_superseded_packs`] deletes on the next run. Packs are never
//! deleted just because no index row names them: after a database restore
//! that is exactly what live packs look like until `evidence reindex` runs
//! (the pack of a batch that never committed is found by its marker in
//! the store instead, `pending.rs`).
//! Two purges rewriting the same pack at once cannot both win: the one
//! whose `DELETE` no longer finds the rows it read rolls back, deletes its
//! new pack, and reports the files as not removed (the next run retries).

use std::collections::{BTreeMap, HashSet};

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
            // The same bytes may also lie as their own object (written
            // alone by `put`, or before packs): that copy goes too.
            delete_quietly(self.store.as_ref(), &Self::key_for(d)?).await?;
            match pack::lookup(&self.index, d).await? {
                Some(p) => {
                    by_pack.entry(p.pack).or_default().insert(d.clone());
                }
                None => report.removed += 1,
            }
        }
        for (key, doomed) in by_pack {
            self.rewrite_without(&key, &doomed, &mut report).await?;
        }
        Ok(report)
    }

    /// Rewrites pack `key` without the files in `doomed` (and without any
    /// file the index does not name in it: only indexed files are kept).
    pub(super) async fn rewrite_without(
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
        // The rows read: what the index must still hold when the rewrite
        // commits (another purge moved none of them meanwhile).
        let read = rows.len();
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
            if !self.supersede(&mut tx, key, read).await? {
                tx.rollback().await?;
                raced(key, doomed, report);
                return Ok(());
            }
            tx.commit().await?;
            self.delete_superseded(key).await?;
            report.packs_deleted += 1;
            report.removed += doomed.len();
            return Ok(());
        }
        let whole = match self.store.get(&old).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                report.problems.push(format!(
                    "{key}: the index names this pack but the store does not have it; \
                     {} file(s) in it not removed (run `evidence reindex --verify`)",
                    doomed.len()
                ));
                report.not_removed.extend(doomed.iter().cloned());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
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
        let new_path = ObjectPath::from(new_key.as_str());
        self.store.put(&new_path, payload).await?;
        // The new pack is durable before the index points at it.
        let mut tx = self.index.begin().await?;
        if !self.supersede(&mut tx, key, read).await? {
            tx.rollback().await?;
            delete_quietly(self.store.as_ref(), &new_path).await?;
            raced(key, doomed, report);
            return Ok(());
        }
        pack::record(&mut tx, &placed).await?;
        tx.commit().await?;
        self.delete_superseded(key).await?;
        report.packs_rewritten += 1;
        report.files_moved += placed.len();
        report.removed += doomed.len();
        Ok(())
    }

    /// In `tx`: drops the index rows of pack `key` and records it as
    /// superseded. False if the rows are no longer the `read` ones (another
    /// purge moved them first).
    async fn supersede(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        key: &str,
        read: usize,
    ) -> Result<bool, EvidenceStoreError> {
        let gone = sqlx::query("DELETE FROM evidence_index WHERE pack = $1")
            .bind(key)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if usize::try_from(gone).ok() != Some(read) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO superseded_packs (pack, at) VALUES ($1, $2) ON CONFLICT (pack) DO NOTHING",
        )
        .bind(key)
        .bind(crate::db::now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(true)
    }

    /// Deletes a superseded pack, then its record.
    async fn delete_superseded(&self, key: &str) -> Result<(), EvidenceStoreError> {
        delete_quietly(self.store.as_ref(), &ObjectPath::from(key)).await?;
        sqlx::query("DELETE FROM superseded_packs WHERE pack = $1")
            .bind(key)
            .execute(&self.index)
            .await?;
        Ok(())
    }

    /// Deletes the packs a rewrite superseded but a stop kept it from
    /// deleting. Returns how many.
    pub async fn sweep_superseded_packs(&self) -> Result<usize, EvidenceStoreError> {
        let rows = sqlx::query("SELECT pack FROM superseded_packs ORDER BY pack")
            .fetch_all(&self.index)
            .await?;
        for r in &rows {
            self.delete_superseded(&r.try_get::<String, _>(0)?).await?;
        }
        Ok(rows.len())
    }
}

/// The report of a rewrite another purge got to first.
fn raced(key: &str, doomed: &HashSet<String>, report: &mut RemoveReport) {
    report.problems.push(format!(
        "{key}: rewritten by another purge at the same time; {} file(s) left for the next run",
        doomed.len()
    ));
    report.not_removed.extend(doomed.iter().cloned());
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

    /// A pack superseded by a rewrite that stopped before deleting it goes
    /// on the next sweep; a pack no index row names but nothing superseded
    /// (what live packs look like after a database restore, before
    /// `evidence reindex`) is never touched.
    #[tokio::test]
    async fn only_superseded_packs_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let unindexed = store.put_pack(files(&["not in the index"])).await.unwrap();
        let stopped = record(&store, files(&["rewritten, then a stop"])).await;
        let mut tx = store.index.begin().await.unwrap();
        assert!(store.supersede(&mut tx, &stopped, 1).await.unwrap());
        tx.commit().await.unwrap();
        let at = |k: &str| dir.path().join("evidence").join(k);
        assert!(at(&stopped).exists());
        assert_eq!(store.sweep_superseded_packs().await.unwrap(), 1);
        assert!(!at(&stopped).exists());
        assert!(at(&unindexed[0].pack).exists());
        assert_eq!(store.sweep_superseded_packs().await.unwrap(), 0);
    }

    /// A pack the index names but the store lost stops nothing: its files
    /// are reported as not removed, and the other packs are rewritten.
    #[tokio::test]
    async fn a_missing_pack_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let lost = files(&["lost a", "lost b"]);
        let fine = files(&["gone", "stays"]);
        let key = record(&store, lost.clone()).await;
        record(&store, fine.clone()).await;
        std::fs::remove_file(dir.path().join("evidence").join(&key)).unwrap();
        let r = store
            .remove(&[lost[0].0.clone(), fine[0].0.clone()])
            .await
            .unwrap();
        assert_eq!(r.not_removed, [lost[0].0.clone()]);
        assert!(
            r.problems[0].contains("does not have it"),
            "{:?}",
            r.problems
        );
        assert_eq!((r.removed, r.packs_rewritten), (1, 1));
        assert_eq!(store.get(&fine[1].0).await.unwrap(), fine[1].1);
    }

    /// The guard against two purges rewriting one pack: the rows must be
    /// exactly those that were read.
    #[tokio::test]
    async fn a_pack_whose_rows_changed_is_not_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let key = record(&store, files(&["one", "two", "three"])).await;
        let mut tx = store.index.begin().await.unwrap();
        assert!(!store.supersede(&mut tx, &key, 2).await.unwrap());
        tx.rollback().await.unwrap();
        assert!(store.contains(&protocol::sha256_hex(b"two")).await.unwrap());
    }
}
