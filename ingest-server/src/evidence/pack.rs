//! Evidence packs: the files of one ingest batch written as one object.
//!
//! A batch of 128 violations carries about 400 stills. Written as 400
//! objects, file creation alone (inode allocation, directory entries, a
//! temporary file renamed into place for each) took most of the server's
//! time; on S3 it is 400 PUTs. Written as one pack it is one object, one
//! PUT, one flush. Where each file lies (pack, offset, length) goes into the
//! `evidence_index` table in the same transaction as the batch's cases, so
//! a committed case never names bytes that are not durably stored. Before
//! the pack, a tiny marker under `pending/` is written (one more small
//! object per batch), and deleted after that transaction commits, so that a pack whose batch never committed is
//! found and deleted (`pending.rs`).
//!
//! A pack is self-describing, so that the index could be rebuilt from the
//! packs alone: it opens with one line `tvpack 1 {n}\n` followed by `n`
//! bytes of JSON (`{"files":[{"sha256","offset","length"}]}`, offsets from
//! the start of the object), then the files back to back. Nothing reads
//! the header in normal operation: reads go through the index and are
//! checked against the hash like every other read; `reindex.rs` reads the
//! headers to rebuild the index.

use std::collections::HashSet;

use bytes::Bytes;
use object_store::PutPayload;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool, Row};

/// Rows per multi-row statement: 4 parameters each, under SQLite's
/// oldest limit of 999 bound parameters.
const ROWS_PER_STATEMENT: usize = 200;

/// Where one file of a pack lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedFile {
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// Key of the pack object (below the store's prefix).
    pub pack: String,
    /// Offset of the file's first byte in the pack.
    pub offset: u64,
    /// Length of the file in bytes.
    pub length: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    files: Vec<HeaderEntry>,
}

#[derive(Serialize, Deserialize)]
struct HeaderEntry {
    sha256: String,
    offset: u64,
    length: u64,
}

/// Lays out `files` (distinct digests) as the pack `key`: the payload to
/// write (the files are not copied) and where each one lands.
pub(crate) fn layout(key: &str, files: Vec<(String, Bytes)>) -> (PutPayload, Vec<PackedFile>) {
    // The header's length depends on the offsets, which depend on the
    // header's length: lay out with a guess, then again until it is stable
    // (at most twice more, since only the digits of the offsets change).
    let mut header_len = 0u64;
    loop {
        let mut offset = header_len;
        let entries: Vec<HeaderEntry> = files
            .iter()
            .map(|(sha256, data)| {
                let e = HeaderEntry {
                    sha256: sha256.clone(),
                    offset,
                    length: data.len() as u64,
                };
                offset += e.length;
                e
            })
            .collect();
        let header = Header { files: entries };
        // A struct of strings and integers always serialises.
        let json = serde_json::to_vec(&header).unwrap_or_default();
        let mut head = format!("tvpack 1 {}\n", json.len()).into_bytes();
        head.extend_from_slice(&json);
        if head.len() as u64 == header_len {
            let placed = header
                .files
                .into_iter()
                .map(|e| PackedFile {
                    sha256: e.sha256,
                    pack: key.to_owned(),
                    offset: e.offset,
                    length: e.length,
                })
                .collect();
            let mut chunks = Vec::with_capacity(files.len() + 1);
            chunks.push(Bytes::from(head));
            chunks.extend(files.into_iter().map(|(_, data)| data));
            return (PutPayload::from_iter(chunks), placed);
        }
        header_len = head.len() as u64;
    }
}

/// The files a pack header's JSON names, as `(sha256, offset, length)`;
/// the caller checks them against the object (`reindex.rs`).
pub(crate) fn parse_header(json: &[u8]) -> Result<Vec<(String, u64, u64)>, String> {
    let header: Header = serde_json::from_slice(json).map_err(|e| format!("header JSON: {e}"))?;
    Ok(header
        .files
        .into_iter()
        .map(|e| (e.sha256, e.offset, e.length))
        .collect())
}

/// Which of `digests` the index already holds (their bytes are stored, so
/// the batch need not write them again: a redelivered event).
pub(crate) async fn known(
    pool: &AnyPool,
    digests: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    select_digests(pool, digests, |marks| {
        format!("SELECT sha256 FROM evidence_index WHERE sha256 IN ({marks})")
    })
    .await
}

/// Which of `digests` only cases whose evidence was purged name
/// (`crate::retention`): bytes that must not be indexed again.
pub(crate) async fn only_purged(
    pool: &AnyPool,
    digests: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    select_digests(pool, digests, |marks| {
        format!(
            "SELECT DISTINCT v.sha256 FROM evidence v JOIN events e ON e.event_id = v.event_id \
             WHERE v.sha256 IN ({marks}) AND e.evidence_purged_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM evidence w JOIN events f ON f.event_id = w.event_id \
                             WHERE w.sha256 = v.sha256 AND f.evidence_purged_at IS NULL)"
        )
    })
    .await
}

/// Which of `digests` something kept names: a file or a contest photo of
/// a case whose evidence is not purged, or a quarantined message (what
/// `crate::retention` keeps): bytes an unindexed pack must keep
/// (`pending.rs`).
pub(crate) async fn still_named(
    pool: &AnyPool,
    digests: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut out = select_digests(pool, digests, |marks| {
        format!(
            "SELECT DISTINCT v.sha256 FROM evidence v JOIN events e ON e.event_id = v.event_id \
             WHERE v.sha256 IN ({marks}) AND e.evidence_purged_at IS NULL"
        )
    })
    .await?;
    out.extend(
        select_digests(pool, digests, |marks| {
            format!(
                "SELECT DISTINCT c.photo_sha256 FROM contests c \
                 JOIN events e ON e.event_id = c.event_id \
                 WHERE c.photo_sha256 IN ({marks}) AND e.evidence_purged_at IS NULL"
            )
        })
        .await?,
    );
    out.extend(
        select_digests(pool, digests, |marks| {
            format!(
                "SELECT DISTINCT payload_sha256 FROM quarantine WHERE payload_sha256 IN ({marks})"
            )
        })
        .await?,
    );
    Ok(out)
}

/// Runs `sql(marks)`, whose first column is a digest, over `digests` in
/// statements of bounded size (`marks` is `$1, $2, …`; the digests are
/// bound, only placeholders are formatted in).
async fn select_digests(
    pool: &AnyPool,
    digests: &[&str],
    sql: impl Fn(&str) -> String,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut out = HashSet::new();
    for part in digests.chunks(ROWS_PER_STATEMENT * 4) {
        let marks: Vec<String> = (1..=part.len()).map(|i| format!("${i}")).collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql(&marks.join(", "))));
        for d in part {
            q = q.bind(*d);
        }
        for row in q.fetch_all(pool).await? {
            out.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(out)
}

/// Records where the files of a written pack lie, inside the batch's
/// transaction. A digest already indexed keeps its first place (another
/// replica may have packed the same bytes at the same moment).
pub async fn record(conn: &mut AnyConnection, placed: &[PackedFile]) -> Result<(), sqlx::Error> {
    for part in placed.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..part.len())
            .map(|i| {
                let b = i * 4;
                format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4)
            })
            .collect();
        let sql = format!(
            "INSERT INTO evidence_index (sha256, pack, byte_offset, byte_length) VALUES {} \
             ON CONFLICT (sha256) DO NOTHING",
            rows.join(", ")
        );
        // Only placeholders are formatted in; the values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in part {
            q = q
                .bind(&p.sha256)
                .bind(&p.pack)
                .bind(i64::try_from(p.offset).unwrap_or(i64::MAX))
                .bind(i64::try_from(p.length).unwrap_or(i64::MAX));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Where the file with this digest lies, if it is in a pack.
pub(crate) async fn lookup(
    pool: &AnyPool,
    sha256: &str,
) -> Result<Option<PackedFile>, sqlx::Error> {
    let row =
        sqlx::query("SELECT pack, byte_offset, byte_length FROM evidence_index WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(pool)
            .await?;
    row.map(|r| {
        Ok(PackedFile {
            sha256: sha256.to_owned(),
            pack: r.try_get(0)?,
            offset: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            length: u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_describes_where_each_file_lies() {
        // Sizes chosen so that offsets cross a power of ten (the header's
        // own length changes while it is laid out).
        let files: Vec<(String, Bytes)> = (0..40u8)
            .map(|i| {
                let data = Bytes::from(vec![i; 37 * usize::from(i) + 1]);
                (protocol::sha256_hex(&data), data)
            })
            .collect();
        let (payload, placed) = layout("packs/x.pack", files.clone());
        let body: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
        for (p, (sha, data)) in placed.iter().zip(&files) {
            let range = p.offset as usize..(p.offset + p.length) as usize;
            assert_eq!(&body[range], &data[..]);
            assert_eq!(&p.sha256, sha);
            assert_eq!(p.pack, "packs/x.pack");
        }
        // The header, read back by itself, says the same.
        let line_end = body.iter().position(|&b| b == b'\n').unwrap();
        let line = std::str::from_utf8(&body[..line_end]).unwrap();
        let n: usize = line.strip_prefix("tvpack 1 ").unwrap().parse().unwrap();
        let header: Header = serde_json::from_slice(&body[line_end + 1..line_end + 1 + n]).unwrap();
        assert_eq!(header.files.len(), 40);
        assert_eq!(header.files[0].offset as usize, line_end + 1 + n);
    }
}
