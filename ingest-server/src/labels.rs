//! Labelled plate crops for retraining the plate recogniser on a
//! deployment's own cameras: every plate crop whose text a person has
//! checked, written as `images/<event_id>.<ext>` with `labels.csv`
//! (`image,text`), the layout `make -C models finetune-recogniser DATA=dir`
//! reads (models/README.md).
//!
//! Which crops count as checked by a person: the case went past review
//! with its plate (state accepted, confirmed, notice_issued, paid,
//! contested or overdue), or it was closed without having been rejected.
//! A correction alone does not count: one still in review may be half
//! done, and one police sent back (state `in_review` again, the wrong
//! `reviewed_plate` kept) was refused; a label taught wrong is a misread
//! taught to every camera. A case rejected with `plate_unreadable` is never
//! used. The text is the corrected plate if there is one, else the machine
//! read that the person let stand, in canonical form.
//!
//! Every crop is read through the evidence store, so a corrupt one is found;
//! it is skipped (with its reason in [`LabelExport::skipped`] and an error
//! in the log), as is a crop the server never received. No personal data:
//! only the crop and its plate text.

use std::io::Write as _;
use std::path::Path;

use sqlx::Row;
use thiserror::Error;

use crate::db::{Db, DbError};
use crate::evidence::{EvidenceStore, EvidenceStoreError};

/// Which cases' crops are exported (see the module doc).
const SELECT: &str = "SELECT e.event_id, e.plate_text, e.reviewed_plate, v.name, v.media_type, \
     v.sha256, v.stored FROM events e \
     JOIN evidence v ON v.event_id = e.event_id AND v.role = 'plate_crop' \
     WHERE (e.state IN ('accepted', 'confirmed', 'notice_issued', 'paid', 'contested', 'overdue') \
        OR (e.state = 'closed' AND e.reject_code IS NULL)) \
       AND (e.reject_code IS NULL OR e.reject_code <> 'plate_unreadable') \
     ORDER BY e.event_time_ms, e.event_id, v.name";

/// Why a crop was left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The device listed the crop but the server never received it.
    NotStored,
    /// The stored bytes no longer match their hash.
    Corrupt,
    /// Listed as stored but not in the store.
    Missing,
    /// Not a JPEG or PNG.
    NotAnImage,
    /// Neither a corrected plate nor a machine read.
    NoText,
}

/// One crop left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Case.
    pub event_id: String,
    /// Evidence file name.
    pub name: String,
    /// Why.
    pub reason: SkipReason,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LabelExport {
    /// Crops written (rows of `labels.csv`).
    pub written: usize,
    /// Of those, how many carry a corrected plate.
    pub corrected: usize,
    /// Crops left out, each with its reason.
    pub skipped: Vec<Skipped>,
}

impl LabelExport {
    /// How many were skipped for `reason`.
    pub fn skipped_for(&self, reason: &SkipReason) -> usize {
        self.skipped.iter().filter(|s| &s.reason == reason).count()
    }
}

/// Why the export failed.
#[derive(Debug, Error)]
pub enum LabelError {
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The evidence store failed (other than a corrupt or missing file).
    #[error(transparent)]
    Store(EvidenceStoreError),
    /// Writing the output.
    #[error("writing {path}: {source}")]
    Io {
        /// What.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Writing the ZIP.
    #[error("writing the zip: {0}")]
    Zip(String),
}

impl From<sqlx::Error> for LabelError {
    fn from(e: sqlx::Error) -> Self {
        LabelError::Db(DbError::Sqlx(e))
    }
}

/// The labelled set in memory: (relative path, bytes) of each image, and
/// the CSV.
async fn collect(
    db: &Db,
    evidence: &EvidenceStore,
) -> Result<(Vec<(String, Vec<u8>)>, Vec<u8>, LabelExport), LabelError> {
    let rows = sqlx::query(SELECT).fetch_all(db.pool()).await?;
    let mut report = LabelExport::default();
    let mut images = Vec::new();
    let mut csv = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| LabelError::Io {
        path: "labels.csv".into(),
        source: std::io::Error::other(e.to_string()),
    };
    csv.write_record(["image", "text"]).map_err(csv_err)?;
    for r in &rows {
        let event_id: String = r.try_get(0)?;
        let plate_text: Option<String> = r.try_get(1)?;
        let reviewed: Option<String> = r.try_get(2)?;
        let name: String = r.try_get(3)?;
        let media_type: String = r.try_get(4)?;
        let sha256: String = r.try_get(5)?;
        let stored: i64 = r.try_get(6)?;
        let mut skip = |reason| {
            report.skipped.push(Skipped {
                event_id: event_id.clone(),
                name: name.clone(),
                reason,
            })
        };
        let ext = match media_type.to_ascii_lowercase().as_str() {
            "image/jpeg" => "jpg",
            "image/png" => "png",
            _ => {
                skip(SkipReason::NotAnImage);
                continue;
            }
        };
        let Some(text) = reviewed.clone().or(plate_text).filter(|t| !t.is_empty()) else {
            skip(SkipReason::NoText);
            continue;
        };
        if stored == 0 {
            skip(SkipReason::NotStored);
            continue;
        }
        let bytes = match evidence.get(&sha256).await {
            Ok(b) => b,
            Err(EvidenceStoreError::Corrupt { key, actual }) => {
                tracing::error!(%event_id, %name, %key, %actual, "plate crop is corrupt; left out of the label export");
                skip(SkipReason::Corrupt);
                continue;
            }
            Err(EvidenceStoreError::Store(object_store::Error::NotFound { .. })) => {
                tracing::error!(%event_id, %name, %sha256, "plate crop is missing from the store; left out of the label export");
                skip(SkipReason::Missing);
                continue;
            }
            Err(e) => return Err(LabelError::Store(e)),
        };
        // One crop per case is the rule; a second one gets a suffix.
        let taken = images
            .iter()
            .filter(|(p, _): &&(String, Vec<u8>)| p.starts_with(&format!("images/{event_id}")))
            .count();
        let file = if taken == 0 {
            format!("images/{event_id}.{ext}")
        } else {
            format!("images/{event_id}_{}.{ext}", taken + 1)
        };
        csv.write_record([file.as_str(), text.as_str()])
            .map_err(csv_err)?;
        images.push((file, bytes.to_vec()));
        report.written += 1;
        if reviewed.is_some() {
            report.corrected += 1;
        }
    }
    let csv = csv.into_inner().map_err(|e| LabelError::Io {
        path: "labels.csv".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok((images, csv, report))
}

/// Writes the labelled crops under `out_dir` (`images/…`, `labels.csv`,
/// replacing a `labels.csv` already there).
pub async fn export(
    db: &Db,
    evidence: &EvidenceStore,
    out_dir: &Path,
) -> Result<LabelExport, LabelError> {
    let (images, csv, report) = collect(db, evidence).await?;
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| LabelError::Io { path, source }
    };
    let dir = out_dir.join("images");
    tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
    for (rel, bytes) in &images {
        let path = out_dir.join(rel);
        tokio::fs::write(&path, bytes).await.map_err(io(&path))?;
    }
    let path = out_dir.join("labels.csv");
    tokio::fs::write(&path, &csv).await.map_err(io(&path))?;
    Ok(report)
}

/// The same set as a ZIP (`labels.csv` and `images/…` at its root).
pub async fn export_zip(db: &Db, evidence: &EvidenceStore) -> Result<Vec<u8>, LabelError> {
    Ok(export_zip_report(db, evidence).await?.0)
}

/// [`export_zip`] with its report.
pub async fn export_zip_report(
    db: &Db,
    evidence: &EvidenceStore,
) -> Result<(Vec<u8>, LabelExport), LabelError> {
    let (images, csv, report) = collect(db, evidence).await?;
    let zip_err = |e: &dyn std::fmt::Display| LabelError::Zip(e.to_string());
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    let deflated = stored.compression_method(zip::CompressionMethod::Deflated);
    z.start_file("labels.csv", deflated)
        .map_err(|e| zip_err(&e))?;
    z.write_all(&csv).map_err(|e| zip_err(&e))?;
    for (rel, bytes) in &images {
        z.start_file(rel.as_str(), stored)
            .map_err(|e| zip_err(&e))?;
        z.write_all(bytes).map_err(|e| zip_err(&e))?;
    }
    let bytes = z.finish().map_err(|e| zip_err(&e))?.into_inner();
    Ok((bytes, report))
}
