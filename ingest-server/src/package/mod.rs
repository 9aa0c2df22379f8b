//! The court evidence package of one case: a ZIP that a court (or the
//! police, or the owner's lawyer) can check on its own, without this server.
//! Evidence that holds up needs the original files, proof of which device
//! made them (its Ed25519 signature over the event, which includes every
//! file's SHA-256), hashes checked again before use, and the chain of
//! custody (who reviewed, who confirmed, when, why).
//!
//! Contents (see `README.txt` inside, written by `text.rs`):
//! - `originals/<name>`: every file of the signed manifest, looked up in
//!   the store by its signed hash whatever the `stored` flag says, which
//!   checks it against that hash; an `evidence` row whose hash is not the
//!   signed one, or a case row whose machine columns differ from the signed
//!   event (`integrity::differences`), stops the export, as does a corrupt
//!   file or one listed as stored that is missing (with no purge recorded):
//!   a package is never made around a bad file or an altered record;
//! - `annotated/<name>`: the full-frame stills with the vehicle marked
//!   (`annotate.rs`);
//! - `event.json`: the signed event exactly as stored;
//! - `signature.txt`: the signature checked now with the device's enrolled
//!   key, with the key, enrolment and revocation;
//! - `audit.jsonl`, `transitions.json`: the case's audit entries and the
//!   check of the whole audit chain; its state changes;
//! - `summary.pdf`: a printable summary in Vietnamese (`summary.rs`);
//! - `VERIFY.txt`: how to check the package offline: the server's public
//!   key, what it signed, what the audit chain proves and what it does not
//!   (`text.rs`);
//! - `SHA256SUMS`: every file above (`sha256sum -c SHA256SUMS`), and the
//!   manifest's hashes as comments, saying of a file not in `originals/`
//!   whether the server never received it or deleted it under retention
//!   (only where the audit log holds retention's `evidence.purge`);
//! - `SHA256SUMS.sig`: the server's Ed25519 signature over the exact bytes
//!   of `SHA256SUMS` (hex), with the key that signs its acks
//!   ([`crate::server_key::ServerKey`], passed in): without it anyone could
//!   edit a transition or an audit line and compute `SHA256SUMS` again.
//!
//! The owner's personal data is not in the package: the court gets it from
//! the police through the vehicle registry.

mod annotate;
mod font;
mod pdf;
mod record;
mod summary;
mod text;
pub(crate) mod vi;

use std::io::Write as _;
use std::path::PathBuf;

use image::ImageFormat;
use protocol::{Signed, ViolationEvent, sha256_hex};
use thiserror::Error;
use time::OffsetDateTime;
use zip::write::SimpleFileOptions;

use crate::audit::{self, Verification};
use crate::db::{Db, DbError};
use crate::devices::Device;
use crate::evidence::{EvidenceStore, EvidenceStoreError};
use crate::server_key::ServerKey;
use record::Loaded;

/// Where the summary's font is read from by default (Debian's
/// `fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// How to build a package.
#[derive(Debug, Clone)]
pub struct Options {
    /// TrueType font with Vietnamese letters for `summary.pdf`.
    pub font: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            font: PathBuf::from(DEFAULT_FONT),
        }
    }
}

/// Why no package was made.
#[derive(Debug, Error)]
pub enum PackageError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// A file the database lists as stored is not in the evidence store.
    #[error(
        "evidence {name} of case {event_id} (sha256 {sha256}) is listed as stored but missing from the evidence store"
    )]
    EvidenceMissing {
        /// Case.
        event_id: String,
        /// File name.
        name: String,
        /// Its hash.
        sha256: String,
    },
    /// A stored file no longer matches its hash (or its recorded size).
    #[error(
        "evidence {name} of case {event_id} is corrupt: expected sha256 {sha256}, the stored bytes hash to {actual}"
    )]
    EvidenceCorrupt {
        /// Case.
        event_id: String,
        /// File name.
        name: String,
        /// Expected hash.
        sha256: String,
        /// Hash (or size) of what was read.
        actual: String,
    },
    /// The case row's machine columns (plate, time, type, camera, site, ...)
    /// differ from the signed event (`integrity::differences`): a package
    /// would put the altered facts before a court beside the signed ones.
    #[error("case {event_id} was altered after it was received: {differences}")]
    RecordAltered {
        /// Case.
        event_id: String,
        /// Every difference, named.
        differences: String,
    },
    /// The evidence rows and the signed manifest disagree.
    #[error(
        "evidence {name} of case {event_id}: the database says sha256 {stored}, the signed manifest says {signed}"
    )]
    ManifestMismatch {
        /// Case.
        event_id: String,
        /// File name.
        name: String,
        /// Hash in the evidence table.
        stored: String,
        /// Hash in the signed event (or `not listed`).
        signed: String,
    },
    /// The stored signed event does not parse.
    #[error("the stored event of case {event_id} does not parse: {reason}")]
    StoredEvent {
        /// Case.
        event_id: String,
        /// Why.
        reason: String,
    },
    /// The evidence store failed otherwise.
    #[error(transparent)]
    Store(EvidenceStoreError),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The summary's font is missing or unusable.
    #[error("font {path}: {reason} (install fonts-dejavu-core: scripts/setup-system.sh)")]
    Font {
        /// Path tried.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A still does not decode as its media type says.
    #[error("evidence {name} does not decode as an image: {source}")]
    Image {
        /// File name.
        name: String,
        /// Cause.
        source: image::ImageError,
    },
    /// Writing the PDF or the ZIP failed.
    #[error("writing the package: {0}")]
    Write(String),
}

impl From<sqlx::Error> for PackageError {
    fn from(e: sqlx::Error) -> Self {
        PackageError::Db(DbError::Sqlx(e))
    }
}

impl From<zip::result::ZipError> for PackageError {
    fn from(e: zip::result::ZipError) -> Self {
        PackageError::Write(e.to_string())
    }
}

/// The signature as checked for the package.
#[derive(Debug, Clone)]
pub(crate) struct SignatureCheck {
    /// Whether it verified.
    pub valid: bool,
    /// What the check said.
    pub detail: String,
    /// The enrolled key, hex.
    pub key_hex: Option<String>,
    /// The device row.
    pub device: Option<Device>,
    /// When.
    pub checked_at: OffsetDateTime,
}

impl SignatureCheck {
    pub(crate) fn result_en(&self) -> &'static str {
        if self.valid { "VALID" } else { "INVALID" }
    }

    pub(crate) fn result_vi(&self) -> String {
        if self.valid {
            "HỢP LỆ: chữ ký Ed25519 của thiết bị khớp nội dung sự kiện".into()
        } else {
            format!("KHÔNG HỢP LỆ: {}", self.detail)
        }
    }

    pub(crate) fn enrolment_text(&self) -> String {
        match &self.device {
            None => "thiết bị không có trong danh sách ghi danh".into(),
            Some(d) => {
                let mut s = format!("ghi danh lúc {} tại {}", vi::ms_text(d.enrolled_at), d.site);
                match d.revoked_at {
                    None => s.push_str("; chưa bị thu hồi"),
                    Some(at) => s.push_str(&format!(
                        "; THU HỒI lúc {} ({})",
                        vi::ms_text(at),
                        d.revoked_reason.as_deref().unwrap_or("không ghi lý do")
                    )),
                }
                s
            }
        }
    }
}

/// The evidence package of case `event_id` as ZIP bytes, with the default
/// [`Options`].
pub async fn build(
    db: &Db,
    evidence: &EvidenceStore,
    event_id: &str,
    key: &ServerKey,
) -> Result<Vec<u8>, PackageError> {
    build_with(db, evidence, event_id, key, &Options::default()).await
}

/// [`build`] with a chosen font.
pub async fn build_with(
    db: &Db,
    evidence: &EvidenceStore,
    event_id: &str,
    key: &ServerKey,
    opts: &Options,
) -> Result<Vec<u8>, PackageError> {
    // Fail early on a missing font, before reading any evidence.
    let font_path = opts.font.clone();
    let font = tokio::task::spawn_blocking(move || font::Font::load(&font_path))
        .await
        .map_err(|e| PackageError::Write(e.to_string()))?
        .map_err(|reason| PackageError::Font {
            path: opts.font.display().to_string(),
            reason,
        })?;
    let signer = key.signing_key().clone();
    let mut loaded = record::load(db, event_id)
        .await?
        .ok_or_else(|| PackageError::NotFound(event_id.to_string()))?;
    let stored_event = |reason: String| PackageError::StoredEvent {
        event_id: event_id.to_string(),
        reason,
    };
    let signed = Signed::<ViolationEvent>::from_json(loaded.case.signed_json.as_bytes())
        .map_err(|e| stored_event(e.to_string()))?;
    let event: ViolationEvent =
        serde_json::from_value(serde_json::Value::Object(signed.payload().clone()))
            .map_err(|e| stored_event(e.to_string()))?;
    let signature = check_signature(&signed, loaded.device.clone());
    let diffs = crate::integrity::check(db.pool(), event_id)
        .await?
        .unwrap_or_default();
    if !diffs.is_empty() {
        return Err(PackageError::RecordAltered {
            event_id: event_id.to_string(),
            differences: crate::integrity::describe(&diffs),
        });
    }

    // Every evidence row must be the signed manifest's, whatever its
    // `stored` flag says.
    for row in &loaded.evidence {
        let signed_sha = event.evidence_item(&row.name).map(|i| i.sha256.clone());
        if signed_sha.as_deref() != Some(row.sha256.as_str()) {
            return Err(PackageError::ManifestMismatch {
                event_id: event_id.to_string(),
                name: row.name.clone(),
                stored: row.sha256.clone(),
                signed: signed_sha.unwrap_or_else(|| "not listed".into()),
            });
        }
    }
    let case_audit = audit::for_subject(db, &format!("case:{event_id}")).await?;
    // A file is "deleted under retention" only where retention recorded
    // the purge in the audit log, not because a column says so.
    loaded.purge_recorded_at = case_audit
        .iter()
        .find(|a| a.action == "evidence.purge")
        .map(|a| a.at);
    // Every file the device signed is looked for by its signed hash,
    // whatever the `stored` flag says: a flag turned off does not hide a
    // file the store has.
    let mut originals = Vec::new();
    for item in &event.evidence {
        let row = loaded.evidence.iter().find(|r| r.name == item.name);
        let signed_row = record::EvidenceRow {
            name: item.name.clone(),
            role: crate::ingest::enum_text(&item.role),
            media_type: item.media_type.clone(),
            size_bytes: i64::try_from(item.size_bytes).unwrap_or(i64::MAX),
            sha256: item.sha256.clone(),
            stored: true,
            stored_at: row.and_then(|r| r.stored_at),
        };
        match read_checked(evidence, event_id, &signed_row).await? {
            Some(bytes) => {
                loaded.present.insert(item.name.clone());
                originals.push((signed_row, bytes));
            }
            // Listed as stored, not in the store, and no purge recorded:
            // lost, and no package is made around it.
            None if row.is_some_and(|r| r.stored) && loaded.purge_recorded_at.is_none() => {
                return Err(PackageError::EvidenceMissing {
                    event_id: event_id.to_string(),
                    name: item.name.clone(),
                    sha256: item.sha256.clone(),
                });
            }
            None => {}
        }
    }
    let chain = audit::verify(db).await?;
    tokio::task::spawn_blocking(move || {
        assemble(Parts {
            loaded,
            event,
            signed,
            signature,
            originals,
            case_audit,
            chain,
            font,
            signer,
        })
    })
    .await
    .map_err(|e| PackageError::Write(e.to_string()))?
}

/// Reads one evidence file, checked against its hash and size; `None`
/// when the store does not have it.
async fn read_checked(
    evidence: &EvidenceStore,
    event_id: &str,
    row: &record::EvidenceRow,
) -> Result<Option<Vec<u8>>, PackageError> {
    let corrupt = |actual: String| PackageError::EvidenceCorrupt {
        event_id: event_id.to_string(),
        name: row.name.clone(),
        sha256: row.sha256.clone(),
        actual,
    };
    match evidence.get(&row.sha256).await {
        Ok(b) if b.len() as i64 == row.size_bytes => Ok(Some(b.to_vec())),
        Ok(b) => Err(corrupt(format!(
            "{} (size {} bytes, the manifest says {})",
            sha256_hex(&b),
            b.len(),
            row.size_bytes
        ))),
        Err(EvidenceStoreError::Corrupt { actual, .. }) => Err(corrupt(actual)),
        Err(EvidenceStoreError::Store(object_store::Error::NotFound { .. })) => Ok(None),
        Err(e) => Err(PackageError::Store(e)),
    }
}

fn check_signature(signed: &Signed<ViolationEvent>, device: Option<Device>) -> SignatureCheck {
    let checked_at = OffsetDateTime::now_utc();
    let Some(d) = device else {
        return SignatureCheck {
            valid: false,
            detail: format!("device {} is not enrolled", signed.device_id()),
            key_hex: None,
            device: None,
            checked_at,
        };
    };
    let (valid, detail) = match d.verifying_key() {
        Err(e) => (false, format!("the enrolled key is unusable: {e}")),
        Ok(key) => match signed.verify(&key) {
            Ok(_) => (
                true,
                "the Ed25519 signature verifies under the device's enrolled key".to_string(),
            ),
            // `verify` checks the signature before the fields: a field
            // check added since the event was stored (a bound) does not
            // make the device's signature invalid, and the court is told
            // which it is.
            Err(protocol::ProtocolError::Invalid(v)) => (
                true,
                format!(
                    "the Ed25519 signature verifies under the device's enrolled key; the \
                     event no longer passes this server's field checks: {v}"
                ),
            ),
            Err(e) => (false, e.to_string()),
        },
    };
    SignatureCheck {
        valid,
        detail,
        key_hex: Some(d.public_key.clone()),
        device: Some(d),
        checked_at,
    }
}

/// What the blocking half of the build works on.
struct Parts {
    loaded: Loaded,
    event: ViolationEvent,
    signed: Signed<ViolationEvent>,
    signature: SignatureCheck,
    originals: Vec<(record::EvidenceRow, Vec<u8>)>,
    case_audit: Vec<audit::AuditEntry>,
    chain: Verification,
    font: font::Font,
    /// The server key that signs `SHA256SUMS`.
    signer: protocol::SigningKey,
}

fn is_jpeg(row: &record::EvidenceRow) -> bool {
    row.media_type.eq_ignore_ascii_case("image/jpeg")
}

fn decode(row: &record::EvidenceRow, bytes: &[u8]) -> Result<image::RgbImage, PackageError> {
    image::load_from_memory_with_format(bytes, ImageFormat::Jpeg)
        .map(|i| i.to_rgb8())
        .map_err(|source| PackageError::Image {
            name: row.name.clone(),
            source,
        })
}

fn jpeg_bytes(img: &image::RgbImage, name: &str) -> Result<Vec<u8>, PackageError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .map_err(|source| PackageError::Image {
            name: name.to_string(),
            source,
        })?;
    Ok(out)
}

fn assemble(p: Parts) -> Result<Vec<u8>, PackageError> {
    let case = &p.loaded.case;
    let made_at = OffsetDateTime::now_utc().to_offset(vi::VN);
    let server_key = hex::encode(p.signer.verifying_key().to_bytes());
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    files.push((
        "README.txt".into(),
        text::readme(case.event_id.as_str()).into_bytes(),
    ));
    files.push(("event.json".into(), case.signed_json.clone().into_bytes()));
    files.push(("signature.txt".into(), text::signature(&p).into_bytes()));
    for (row, bytes) in &p.originals {
        files.push((format!("originals/{}", row.name), bytes.clone()));
    }

    // Annotated full frames; the overview also keeps its overlay for the PDF.
    // The edge's crop of the lower half of the violator's box on the
    // overview frame. Since schema 1.1 the edge also sends
    // `plate_vehicle.jpg` (vehicle_crop too: the frame the plate was read
    // on, around the violator, boxes drawn), which must not be searched for.
    let crop = p
        .originals
        .iter()
        .filter(|(r, _)| r.role == "vehicle_crop" && is_jpeg(r) && r.name != "plate_vehicle.jpg")
        .min_by_key(|(r, _)| r.name != "vehicle.jpg")
        .map(|(r, b)| decode(r, b))
        .transpose()?;
    let mut overview = None;
    for (row, bytes) in &p.originals {
        if !is_jpeg(row) || !matches!(row.role.as_str(), "overview" | "frame") {
            continue;
        }
        let mut img = decode(row, bytes)?;
        let ov = if row.role == "overview" {
            annotate::overlay(&p.event, &img, crop.as_ref())
        } else {
            annotate::Overlay {
                path: p.event.track.points.iter().map(|t| (t.x, t.y)).collect(),
                marker: None,
                vehicle_box: None,
                note: String::new(),
            }
        };
        annotate::draw(&mut img, &ov);
        files.push((
            format!("annotated/{}", row.name),
            jpeg_bytes(&img, &row.name)?,
        ));
        if row.role == "overview" && overview.is_none() {
            let original = pdf::Jpeg::parse(bytes.clone());
            let jpeg = match original {
                Some(j) => j,
                // Not embeddable as it is (e.g. CMYK): the decoded pixels.
                None => pdf::Jpeg::parse(jpeg_bytes(&decode(row, bytes)?, &row.name)?)
                    .ok_or_else(|| PackageError::Write("re-encoded overview".into()))?,
            };
            overview = Some((jpeg, row.name.clone(), row.sha256.clone(), ov));
        }
    }

    let mut audit_lines = String::new();
    for e in &p.case_audit {
        let line = serde_json::to_string(e).map_err(|e| PackageError::Write(e.to_string()))?;
        audit_lines.push_str(&line);
        audit_lines.push('\n');
    }
    let chain_json = match &p.chain {
        Verification::Intact { entries, head } => serde_json::json!({
            "chain_verification": {"scope": "whole audit log", "result": "intact",
                "entries": entries, "head": head, "checked_at": made_at.unix_timestamp() * 1000}
        }),
        Verification::Broken { seq, problem } => serde_json::json!({
            "chain_verification": {"scope": "whole audit log", "result": "broken",
                "seq": seq, "problem": problem, "checked_at": made_at.unix_timestamp() * 1000}
        }),
    };
    audit_lines.push_str(&chain_json.to_string());
    audit_lines.push('\n');
    files.push(("audit.jsonl".into(), audit_lines.into_bytes()));
    let transitions = serde_json::to_vec_pretty(&p.loaded.transitions)
        .map_err(|e| PackageError::Write(e.to_string()))?;
    files.push(("transitions.json".into(), transitions));

    let pdf = summary::render(
        p.font,
        summary::Facts {
            loaded: &p.loaded,
            event: &p.event,
            signature: &p.signature,
            chain: &p.chain,
            case_entries: p.case_audit.len(),
            overview,
            made_at,
            server_key: &server_key,
        },
    )
    .map_err(PackageError::Write)?;
    files.push(("summary.pdf".into(), pdf));
    files.push(("VERIFY.txt".into(), text::verify(&server_key).into_bytes()));
    let sums = text::sums(&files, &p.event, &p.loaded).into_bytes();
    let signature = ed25519_dalek::Signer::sign(&p.signer, &sums);
    files.push(("SHA256SUMS".into(), sums));
    files.push((
        "SHA256SUMS.sig".into(),
        format!("{}\n", hex::encode(signature.to_bytes())).into_bytes(),
    ));
    zip_files(&files, made_at)
}

fn zip_files(files: &[(String, Vec<u8>)], at: OffsetDateTime) -> Result<Vec<u8>, PackageError> {
    let when = zip::DateTime::from_date_and_time(
        u16::try_from(at.year()).unwrap_or(1980),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
    )
    .unwrap_or_default();
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in files {
        let packed = name.starts_with("originals/")
            || name.starts_with("annotated/")
            || name.ends_with(".pdf");
        let method = if packed {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(when)
            .unix_permissions(0o644);
        z.start_file(name.as_str(), options)?;
        z.write_all(bytes)
            .map_err(|e| PackageError::Write(e.to_string()))?;
    }
    Ok(z.finish()?.into_inner())
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
