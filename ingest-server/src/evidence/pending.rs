//! Packs whose batch never committed: found through intent markers kept
//! in the object store itself, and deleted.
//!
//! A batch's pack is written durably **before** the database transaction
//! that indexes it (`crate::ingest`). If that transaction fails, or the
//! server stops between the two, the pack is never indexed; the device
//! resends, and the retry writes a second pack that is. Retention finds
//! bytes only through the index, so without more the first copy of those
//! stills (plates, sometimes faces) would stay for ever.
//!
//! So [`EvidenceStore::put_pack`] first writes a tiny marker, durably,
//! and only then the pack: for the pack `packs/YYYY-MM-DD/{uuid}.pack`,
//! the marker `pending/YYYY-MM-DD/{uuid}.pack` (its key with `packs/` for
//! `pending/`), holding the pack's key; [`EvidenceStore::pack_committed`] deletes the marker once the
//! batch's transaction has committed (best effort: a failure is logged
//! and left to the sweep). [`EvidenceStore::sweep_pending_packs`], run by
//! every retention run (`crate::retention`), takes each marker older than
//! [`PENDING_GRACE_MS`] (far longer than any batch, which commits or fails
//! within seconds) and:
//! - if any `evidence_index` row names its pack, the batch committed: only
//!   the marker goes;
//! - if the pack is not in the store (its write failed), the marker goes;
//! - if a file in the pack is named by a case whose evidence is kept (its
//!   files or a contest photo) or by a quarantined message, both stay,
//!   and, where that file lies in no indexed pack, the run reports it (a
//!   database restored from an older copy: run `evidence reindex`, which
//!   indexes the pack, and the next sweep deletes only its marker); the
//!   pack of a crashed batch whose retry was indexed stays this way until
//!   retention purges that case, then goes;
//! - otherwise the pack is deleted, then the marker.
//!
//! Why the markers live with the objects and not in the database: a
//! database restored from an old backup would bring back the markers of
//! batches that committed since, and their packs would look orphaned.
//! Kept in the store, a committed pack's marker is gone (deleted after
//! its commit) whatever the database is restored to. What is left: a
//! marker whose deletion failed, a database restored to before that
//! batch's commit, and a restored database that has no kept case or
//! quarantined message naming any file in the pack (the cases of that
//! batch are not in it): the sweep deletes that pack, even if `evidence
//! reindex` has not run yet. Its files belong to no case the database
//! holds. A header that does not parse is reported and its pack kept, for
//! a person to look at.

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use super::pack::{self, PackedFile};
use super::reindex::HeaderProblem;
use super::{EvidenceStore, EvidenceStoreError};

/// How old a marker must be before the sweep judges its pack (one hour):
/// a batch whose marker is younger may still be committing.
pub const PENDING_GRACE_MS: i64 = 3_600_000;

const PACKS: &str = "packs/";
const PENDING: &str = "pending/";

/// What one [`EvidenceStore::sweep_pending_packs`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PendingReport {
    /// Markers of batches that committed (the index names the pack), or
    /// whose pack was never written: deleted.
    pub markers_cleared: usize,
    /// Packs of batches that never committed, deleted with their marker.
    pub packs_deleted: usize,
    /// Packs that never committed but hold files something kept names:
    /// kept, with their marker, for a later sweep.
    pub packs_kept: usize,
    /// What needs a person (a pack whose header does not parse, files
    /// cases name that no index row reaches), each with its key.
    pub problems: Vec<String>,
}

/// The marker of pack `key` (`packs/…` → `pending/…`).
fn marker_for(key: &str) -> Option<ObjectPath> {
    key.strip_prefix(PACKS)
        .map(|rest| ObjectPath::from(format!("{PENDING}{rest}")))
}

/// The pack a marker stands for (`pending/…` → `packs/…`), if it is one.
fn pack_for(marker: &ObjectPath) -> Option<String> {
    marker
        .as_ref()
        .strip_prefix(PENDING)
        .filter(|rest| rest.ends_with(".pack"))
        .map(|rest| format!("{PACKS}{rest}"))
}

impl EvidenceStore {
    /// Writes the marker of pack `key`, durably, before the pack itself.
    pub(super) async fn mark_pending(&self, key: &str) -> Result<(), EvidenceStoreError> {
        if let Some(marker) = marker_for(key) {
            let body = PutPayload::from(key.as_bytes().to_vec());
            self.store.put(&marker, body).await?;
        }
        Ok(())
    }

    /// Says that the pack [`EvidenceStore::put_pack`] wrote for `placed`
    /// is indexed (the batch's transaction committed). Its index rows were
    /// written `ON CONFLICT DO NOTHING`: where another replica packed the
    /// same bytes at the same moment and committed first, the index names
    /// that replica's pack, and this pack's copy of those files is named
    /// by nothing (retention, which finds bytes through the index, would
    /// never delete it). So: every file indexed here, the marker goes; none
    /// (the whole batch lost the race), the pack goes, then the marker;
    /// some, the pack is rewritten with only its indexed files
    /// (`purge::rewrite_without`), then the marker goes. Best effort: on a
    /// failure the marker stays, logged, and the retention sweep judges
    /// the pack later (`sweep_pending_packs`). Nothing placed, nothing to do.
    pub async fn pack_committed(&self, placed: &[PackedFile]) {
        let Some(key) = placed.first().map(|p| p.pack.clone()) else {
            return;
        };
        let Some(marker) = marker_for(&key) else {
            return;
        };
        match self.settle_committed(&key, placed).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(pack = %key, error = %e,
                    "pack committed but not settled; its pending marker stays for the retention sweep");
                return;
            }
        }
        match self.store.delete(&marker).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(
                marker = %marker,
                error = %e,
                "pack committed but its pending marker was not deleted; the retention sweep will"
            ),
        }
    }

    /// Removes from pack `key` the copies of files whose index row names
    /// another pack (see [`EvidenceStore::pack_committed`]).
    async fn settle_committed(
        &self,
        key: &str,
        placed: &[PackedFile],
    ) -> Result<(), EvidenceStoreError> {
        let here: std::collections::HashSet<String> =
            sqlx::query_scalar::<_, String>("SELECT sha256 FROM evidence_index WHERE pack = $1")
                .bind(key)
                .fetch_all(&self.index)
                .await?
                .into_iter()
                .collect();
        let lost: std::collections::HashSet<String> = placed
            .iter()
            .filter(|p| !here.contains(&p.sha256))
            .map(|p| p.sha256.clone())
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        tracing::info!(pack = %key, lost = lost.len(), indexed = here.len(),
            "another replica indexed the same files first: this pack's copies go");
        if here.is_empty() {
            return self.delete_if_there(&ObjectPath::from(key)).await;
        }
        let mut report = super::purge::RemoveReport::default();
        self.rewrite_without(key, &lost, &mut report).await?;
        if report.problems.is_empty() {
            Ok(())
        } else {
            Err(EvidenceStoreError::Setup {
                store: key.to_string(),
                message: report.problems.join("; "),
            })
        }
    }

    /// Judges every marker older than [`PENDING_GRACE_MS`] at `now` (Unix
    /// ms): see the module's documentation.
    pub async fn sweep_pending_packs(&self, now: i64) -> Result<PendingReport, EvidenceStoreError> {
        let mut report = PendingReport::default();
        let prefix = ObjectPath::from(PENDING.trim_end_matches('/'));
        let mut markers: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        markers.sort_by(|a, b| a.location.cmp(&b.location));
        for meta in markers {
            if now.saturating_sub(meta.last_modified.timestamp_millis()) < PENDING_GRACE_MS {
                continue;
            }
            let Some(key) = pack_for(&meta.location) else {
                report.problems.push(format!(
                    "{}: not the marker of a pack; left as it is",
                    meta.location
                ));
                continue;
            };
            if self.judge(&key, &mut report).await? {
                self.delete_if_there(&meta.location).await?;
            }
        }
        Ok(report)
    }

    /// Settles pack `key` of an old marker; true if the marker can go.
    async fn judge(
        &self,
        key: &str,
        report: &mut PendingReport,
    ) -> Result<bool, EvidenceStoreError> {
        let indexed = sqlx::query("SELECT 1 FROM evidence_index WHERE pack = $1 LIMIT 1")
            .bind(key)
            .fetch_optional(&self.index)
            .await?
            .is_some();
        if indexed {
            report.markers_cleared += 1;
            return Ok(true);
        }
        let path = ObjectPath::from(key);
        let size = match self.store.head(&path).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                report.markers_cleared += 1;
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        let files = match self.read_header(&path, size).await {
            Ok(files) => files,
            Err(HeaderProblem::Store(e)) => return Err(e),
            Err(HeaderProblem::Bad(why)) => {
                report.problems.push(format!(
                    "{key}: never indexed and its header cannot be read ({why}); kept"
                ));
                return Ok(false);
            }
        };
        let digests: Vec<&str> = files.iter().map(|p| p.sha256.as_str()).collect();
        let named = pack::still_named(&self.index, &digests).await?;
        if named.is_empty() {
            self.delete_if_there(&path).await?;
            report.packs_deleted += 1;
            return Ok(true);
        }
        report.packs_kept += 1;
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        let known = pack::known(&self.index, &named).await?;
        let unreachable = named.len() - known.len();
        if unreachable > 0 {
            report.problems.push(format!(
                "{key}: never indexed, but {unreachable} file(s) in it that cases or quarantined \
                 messages name lie in no indexed pack (a database restored from an older copy?); \
                 kept: run `evidence reindex`"
            ));
        }
        Ok(false)
    }

    /// Deletes `key`; already gone is fine.
    async fn delete_if_there(&self, key: &ObjectPath) -> Result<(), EvidenceStoreError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::test_support::{files, local_store as store};

    /// Markers younger than the grace are left alone; an old one whose
    /// pack the index names goes alone; an old one whose pack nothing
    /// indexes or names takes its pack; one whose pack was never written
    /// goes. (A pack whose files a kept case names: `tests/retention.rs`.)
    #[tokio::test]
    async fn old_markers_take_only_packs_that_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let at = |k: &str| dir.path().join("evidence").join(k);
        let marker = |k: &str| at(&k.replacen(PACKS, PENDING, 1));

        let orphan = store.put_pack(files(&["never committed"])).await.unwrap();
        let leftover = store.put_pack(files(&["marker kept"])).await.unwrap();
        let settled = store.put_pack(files(&["settled"])).await.unwrap();
        let mut conn = store.index.acquire().await.unwrap();
        pack::record(&mut conn, &leftover).await.unwrap();
        pack::record(&mut conn, &settled).await.unwrap();
        drop(conn);
        store.pack_committed(&settled).await;
        store.pack_committed(&[]).await;
        let (orphan, leftover) = (&orphan[0].pack, &leftover[0].pack);
        assert!(marker(orphan).exists() && marker(leftover).exists());
        assert!(!marker(&settled[0].pack).exists());
        let never_written = "packs/2026-01-01/never-written.pack";
        store.mark_pending(never_written).await.unwrap();

        let now = crate::db::now_ms();
        assert_eq!(
            store.sweep_pending_packs(now).await.unwrap(),
            PendingReport::default(),
            "too young"
        );
        assert!(at(orphan).exists() && marker(orphan).exists());

        let later = now + PENDING_GRACE_MS + 60_000;
        let r = store.sweep_pending_packs(later).await.unwrap();
        assert_eq!(
            (r.packs_deleted, r.markers_cleared, r.packs_kept),
            (1, 2, 0)
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(!at(orphan).exists() && !marker(orphan).exists());
        assert!(at(leftover).exists() && !marker(leftover).exists());
        assert!(!marker(never_written).exists());
        let kept = protocol::sha256_hex(b"marker kept");
        assert_eq!(&store.get(&kept).await.unwrap()[..], b"marker kept");
        assert_eq!(
            store.sweep_pending_packs(later).await.unwrap(),
            PendingReport::default()
        );
    }
}
