//! Rebuilding the pack index from the packs themselves
//! (`ingest-server evidence reindex`).
//!
//! A batch's stills lie in a pack and are found only through the
//! `evidence_index` table. If the database is restored from a backup older
//! than the evidence, or the index is damaged, the bytes are still there
//! but cases cannot reach them. Every pack says what it holds (a
//! `tvpack 1 {n}` line and a JSON index, `pack.rs`), so the index can be
//! rebuilt by listing `packs/` and reading each header: two small range
//! reads per pack, not the whole object.
//!
//! Nothing a pack says is trusted blindly: a header that does not parse,
//! names a file outside the object or a digest that is not one is reported
//! with the pack's key and skipped. With `verify`, every file is also read
//! and hashed, and only files whose bytes match their digest are indexed
//! (a corrupt one is reported); without it, reads check the hash anyway.
//! Rows already in the index keep their place (`ON CONFLICT DO NOTHING`),
//! so the command can run at any time, also while the server ingests.
//! Files that only cases purged under retention name (`crate::retention`)
//! are not indexed again: a pack a stopped purge left behind must not
//! bring deleted evidence back.

use std::ops::Range;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use protocol::sha256_hex;
use serde::Serialize;

use super::pack::{self, PackedFile};
use super::{EvidenceStore, EvidenceStoreError};

/// Longest first line a pack may have (`tvpack 1 ` and a length).
const MAX_LINE: u64 = 64;
/// Largest header JSON believed (a batch of 128 events is about 45 KB).
const MAX_HEADER: u64 = 16 * 1024 * 1024;

/// What a reindex found and did.
#[derive(Debug, Default, Serialize)]
pub struct ReindexReport {
    /// Pack objects read.
    pub packs: usize,
    /// Files their headers name.
    pub files: usize,
    /// Files added to the index (the rest were there already).
    pub added: usize,
    /// Files not indexed because only purged cases name them.
    pub purged_skipped: usize,
    /// Files read and found to match their digest (with `verify`).
    pub verified: usize,
    /// Packs or files that could not be used, each with its key and why.
    pub problems: Vec<String>,
}

impl EvidenceStore {
    /// Reads every pack's header and indexes the files it names that the
    /// index lacks; with `verify`, reads and hashes each file first.
    pub async fn reindex(&self, verify: bool) -> Result<ReindexReport, EvidenceStoreError> {
        let mut report = ReindexReport::default();
        let prefix = ObjectPath::from("packs");
        let mut objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        for meta in objects {
            if !meta.location.as_ref().ends_with(".pack") {
                continue;
            }
            report.packs += 1;
            let key = meta.location.to_string();
            let placed = match self.read_header(&meta.location, meta.size).await {
                Ok(p) => p,
                Err(HeaderProblem::Store(e)) => return Err(e),
                Err(HeaderProblem::Bad(why)) => {
                    report.problems.push(format!("{key}: {why}"));
                    continue;
                }
            };
            report.files += placed.len();
            // One read of the whole pack, not one ranged read per file: on
            // S3 a pack of 400 stills would otherwise cost 400 requests.
            let whole = if verify {
                Some(self.store.get(&meta.location).await?.bytes().await?)
            } else {
                None
            };
            let mut good = Vec::with_capacity(placed.len());
            for p in placed {
                if let Some(whole) = &whole {
                    let range = usize::try_from(p.offset)
                        .ok()
                        .zip(usize::try_from(p.offset + p.length).ok())
                        .and_then(|(a, b)| whole.get(a..b));
                    let Some(data) = range else {
                        report.problems.push(format!(
                            "{key}: file at {}+{} lies past the {} bytes read; not indexed",
                            p.offset,
                            p.length,
                            whole.len()
                        ));
                        continue;
                    };
                    let actual = sha256_hex(data);
                    if actual != p.sha256 {
                        report.problems.push(format!(
                            "{key}: file at {}+{} should hash to {} but hashes to {actual}; not indexed",
                            p.offset, p.length, p.sha256
                        ));
                        continue;
                    }
                    report.verified += 1;
                }
                good.push(p);
            }
            let digests: Vec<&str> = good.iter().map(|p| p.sha256.as_str()).collect();
            let known = pack::known(&self.index, &digests).await?;
            let purged = pack::only_purged(&self.index, &digests).await?;
            report.purged_skipped += purged.len();
            let new: Vec<PackedFile> = good
                .into_iter()
                .filter(|p| !known.contains(&p.sha256) && !purged.contains(&p.sha256))
                .collect();
            if new.is_empty() {
                continue;
            }
            let mut tx = self.index.begin().await?;
            pack::record(&mut tx, &new).await?;
            tx.commit().await?;
            report.added += new.len();
        }
        Ok(report)
    }

    /// The files a pack's header names, each checked to lie inside the
    /// object after the header and to carry a SHA-256 digest (also read by
    /// the sweep of packs that never committed, `pending.rs`).
    pub(super) async fn read_header(
        &self,
        key: &ObjectPath,
        size: u64,
    ) -> Result<Vec<PackedFile>, HeaderProblem> {
        let head = self.store.get_range(key, 0..size.min(MAX_LINE)).await?;
        let Some(line_end) = head.iter().position(|&b| b == b'\n') else {
            return Err(HeaderProblem::Bad("no `tvpack` line".into()));
        };
        let n = std::str::from_utf8(&head[..line_end])
            .ok()
            .and_then(|l| l.strip_prefix("tvpack 1 "))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| HeaderProblem::Bad("first line is not `tvpack 1 {length}`".into()))?;
        let start = line_end as u64 + 1;
        if n > MAX_HEADER || start + n > size {
            return Err(HeaderProblem::Bad(format!(
                "header of {n} bytes does not fit the {size}-byte object"
            )));
        }
        let json = self.store.get_range(key, start..start + n).await?;
        let entries = pack::parse_header(&json).map_err(HeaderProblem::Bad)?;
        let body: Range<u64> = start + n..size;
        entries
            .into_iter()
            .map(|(sha256, offset, length)| {
                EvidenceStore::key_for(&sha256).map_err(|_| {
                    HeaderProblem::Bad(format!("{sha256:?} is not a sha256 digest"))
                })?;
                match offset.checked_add(length) {
                    Some(end) if offset >= body.start && end <= body.end => Ok(PackedFile {
                        sha256,
                        pack: key.to_string(),
                        offset,
                        length,
                    }),
                    _ => Err(HeaderProblem::Bad(format!(
                        "file {sha256} at {offset}+{length} lies outside the pack's body {body:?}"
                    ))),
                }
            })
            .collect()
    }
}

/// Why a header could not be used: the pack is bad (reported, skipped), or
/// the store failed (the command stops).
pub(super) enum HeaderProblem {
    Bad(String),
    Store(EvidenceStoreError),
}

impl From<object_store::Error> for HeaderProblem {
    fn from(e: object_store::Error) -> Self {
        HeaderProblem::Store(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::test_support::{files, local_store as store};

    fn not_found(e: &EvidenceStoreError) -> bool {
        matches!(
            e,
            EvidenceStoreError::Store(object_store::Error::NotFound { .. })
        )
    }

    /// Packs written but never indexed (the database lost them) become
    /// readable again; packs whose header is garbage or points outside
    /// the object are reported by key and skipped; a second run adds
    /// nothing.
    #[tokio::test]
    async fn the_index_is_rebuilt_from_the_packs_and_bad_packs_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let a = files(&["overview a", "plate a", "before a"]);
        let b = files(&["overview b", "plate b"]);
        store.put_pack(a.clone()).await.unwrap();
        store.put_pack(b.clone()).await.unwrap();
        assert!(not_found(&store.get(&a[0].0).await.unwrap_err()));

        let bad = dir.path().join("evidence/packs/2026-01-01");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("garbage.pack"), b"not a pack at all").unwrap();
        let outside = format!(
            "{{\"files\":[{{\"sha256\":\"{}\",\"offset\":9999,\"length\":5}}]}}",
            sha256_hex(b"x")
        );
        std::fs::write(
            bad.join("outside.pack"),
            format!("tvpack 1 {}\n{outside}hello", outside.len()),
        )
        .unwrap();

        let report = store.reindex(false).await.unwrap();
        assert_eq!((report.packs, report.files, report.added), (4, 5, 5));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(report.problems.iter().any(|p| p.contains("garbage.pack")));
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("outside.pack") && p.contains("outside the pack"))
        );
        for (digest, data) in a.iter().chain(&b) {
            assert_eq!(&store.get(digest).await.unwrap(), data);
        }
        let again = store.reindex(false).await.unwrap();
        assert_eq!((again.files, again.added), (5, 0));
    }

    /// With `verify`, a file whose bytes no longer match its digest is
    /// reported and left out of the index; the others are indexed.
    #[tokio::test]
    async fn verify_indexes_only_files_that_still_match_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let f = files(&["overview", "plate"]);
        let placed = store.put_pack(f.clone()).await.unwrap();
        let path = dir.path().join("evidence").join(&placed[1].pack);
        let mut body = std::fs::read(&path).unwrap();
        body[placed[1].offset as usize] ^= 0x01;
        std::fs::write(&path, body).unwrap();

        let report = store.reindex(true).await.unwrap();
        assert_eq!((report.files, report.verified, report.added), (2, 1, 1));
        assert_eq!(report.problems.len(), 1);
        assert!(
            report.problems[0].contains(&f[1].0),
            "{:?}",
            report.problems
        );
        assert_eq!(store.get(&f[0].0).await.unwrap(), f[0].1);
        assert!(not_found(&store.get(&f[1].0).await.unwrap_err()));
    }
}
