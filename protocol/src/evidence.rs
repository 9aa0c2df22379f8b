//! The evidence manifest: one entry per file that backs a violation (overview
//! still, plate crop, clip, ...) with its name, media type, role, size and
//! SHA-256. The manifest sits inside the signed event, so the signature
//! covers the hashes and any file can later be checked against it with
//! [`EvidenceItem::check_bytes`]. A still or crop also names the camera
//! frame it was taken from ([`FrameStamp`]: number and device-clock time),
//! so the moment each picture shows is signed, not only burnt into the
//! annotated still.

use std::collections::HashSet;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use crate::error::ValidationError;
use crate::validate::{self, MAX_EVIDENCE_BYTES, MAX_EVIDENCE_ITEMS};

/// Longest evidence file name.
pub const MAX_EVIDENCE_NAME: usize = 128;
/// Longest media type.
pub const MAX_MEDIA_TYPE: usize = 100;
/// Furthest a still's frame may lie from the event's time, seconds: the
/// stills come from the few seconds of video kept around the violation.
pub const MAX_FRAME_OFFSET_S: i64 = 300;

/// What an evidence file shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceRole {
    /// Wide still of the scene at the moment of violation.
    Overview,
    /// Crop of the number plate.
    PlateCrop,
    /// Crop of the whole vehicle.
    VehicleCrop,
    /// Crop of the signal head showing its state.
    SignalCrop,
    /// Video clip around the violation.
    Clip,
    /// A single full frame from the sequence (other than the overview).
    Frame,
}

/// The camera frame a still or crop was taken from (schema 1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameStamp {
    /// The device's number of the frame for its camera (the numbering of
    /// `track.points` and `plate.source`; it starts again when the camera's
    /// stream is opened again, so the time is what places the frame).
    pub number: u64,
    /// The frame's time on the device clock (the clock of `clock`), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// One file of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceItem {
    /// File name, unique within the event: 1 to 128 characters from
    /// `A-Z a-z 0-9 - _ .`, not starting with `.`; e.g. `overview.jpg`.
    pub name: String,
    /// Media type, e.g. `image/jpeg`, `video/mp4`.
    pub media_type: String,
    /// What the file shows.
    pub role: EvidenceRole,
    /// Exact size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the file's bytes, 64 lowercase hex characters.
    pub sha256: String,
    /// For a still or a crop: the frame it shows (absent for a clip, and in
    /// events before schema 1.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameStamp>,
}

/// Evidence bytes that do not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvidenceError {
    /// The manifest has no entry of that name.
    #[error("evidence {name:?} is not in the event's manifest")]
    NotInManifest {
        /// The name looked for.
        name: String,
    },
    /// The file's size differs from the manifest's.
    #[error("evidence {name:?}: manifest says {expected} bytes, file has {actual}")]
    SizeMismatch {
        /// File name.
        name: String,
        /// Size in the manifest.
        expected: u64,
        /// Size of the bytes given.
        actual: u64,
    },
    /// The file's SHA-256 differs from the manifest's.
    #[error("evidence {name:?}: manifest sha256 {expected}, file sha256 {actual}")]
    HashMismatch {
        /// File name.
        name: String,
        /// Hash in the manifest.
        expected: String,
        /// Hash of the bytes given.
        actual: String,
    },
}

/// SHA-256 of `bytes` as 64 lowercase hex characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 (lowercase hex) and length of everything `reader` yields, for
/// files too large to hold in memory.
pub fn sha256_hex_reader<R: Read>(mut reader: R) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

impl EvidenceItem {
    /// A manifest entry for `bytes`, with their size and hash filled in.
    pub fn from_bytes(
        name: impl Into<String>,
        media_type: impl Into<String>,
        role: EvidenceRole,
        bytes: &[u8],
    ) -> Self {
        Self {
            name: name.into(),
            media_type: media_type.into(),
            role,
            size_bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            frame: None,
        }
    }

    /// The same entry, naming the frame it shows.
    pub fn with_frame(mut self, number: u64, time: OffsetDateTime) -> Self {
        self.frame = Some(FrameStamp { number, time });
        self
    }

    /// `Ok` if `bytes` are exactly the file this entry describes (same size,
    /// same SHA-256).
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<(), EvidenceError> {
        let actual = bytes.len() as u64;
        if actual != self.size_bytes {
            return Err(EvidenceError::SizeMismatch {
                name: self.name.clone(),
                expected: self.size_bytes,
                actual,
            });
        }
        self.check_digest(&sha256_hex(bytes))
    }

    /// `Ok` if a SHA-256 computed elsewhere (e.g. by [`sha256_hex_reader`])
    /// matches this entry. Compares case-insensitively.
    pub fn check_digest(&self, sha256: &str) -> Result<(), EvidenceError> {
        if self.sha256.eq_ignore_ascii_case(sha256) {
            Ok(())
        } else {
            Err(EvidenceError::HashMismatch {
                name: self.name.clone(),
                expected: self.sha256.clone(),
                actual: sha256.to_owned(),
            })
        }
    }

    /// Checks name, media type, size and hash shape; `field` is this entry's
    /// JSON path (e.g. `evidence[0]`), used in the error.
    pub fn validate_at(&self, field: &str) -> Result<(), ValidationError> {
        check_file_name(&format!("{field}.name"), &self.name)?;
        check_media_type(&format!("{field}.media_type"), &self.media_type)?;
        if self.size_bytes == 0 || self.size_bytes > MAX_EVIDENCE_BYTES {
            return Err(ValidationError::new(
                format!("{field}.size_bytes"),
                format!(
                    "must be within 1..={MAX_EVIDENCE_BYTES}, got {}",
                    self.size_bytes
                ),
            ));
        }
        validate::check_sha256_hex(&format!("{field}.sha256"), &self.sha256)?;
        if let Some(f) = &self.frame {
            if self.role == EvidenceRole::Clip {
                return Err(ValidationError::new(
                    format!("{field}.frame"),
                    "a clip spans many frames and names none",
                ));
            }
            validate::check_safe_integer(&format!("{field}.frame.number"), f.number)?;
        }
        Ok(())
    }
}

/// Checks a whole manifest: 1 to [`MAX_EVIDENCE_ITEMS`] valid entries with
/// unique names, each still's frame within [`MAX_FRAME_OFFSET_S`] of
/// `event_time`; `field` is the manifest's JSON path (`evidence`).
pub fn validate_manifest(
    field: &str,
    items: &[EvidenceItem],
    event_time: OffsetDateTime,
) -> Result<(), ValidationError> {
    validate::check_count(field, items.len(), 1, MAX_EVIDENCE_ITEMS)?;
    let mut names = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        item.validate_at(&at)?;
        if let Some(f) = &item.frame {
            let off = (f.time - event_time).whole_seconds();
            if off.abs() > MAX_FRAME_OFFSET_S {
                return Err(ValidationError::new(
                    format!("{at}.frame.time"),
                    format!(
                        "must lie within {MAX_FRAME_OFFSET_S} s of event_time, is {off} s away"
                    ),
                ));
            }
        }
        if !names.insert(item.name.as_str()) {
            return Err(ValidationError::new(
                format!("{at}.name"),
                format!("duplicate evidence name {:?}", item.name),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_file_name(field: &str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_EVIDENCE_NAME {
        return Err(ValidationError::new(
            field,
            format!(
                "must be 1 to {MAX_EVIDENCE_NAME} characters, got {}",
                name.len()
            ),
        ));
    }
    if name.starts_with('.') {
        return Err(ValidationError::new(field, "must not start with '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(ValidationError::new(
            field,
            format!("may only contain ASCII letters, digits, '-', '_' and '.', found {c:?}"),
        ));
    }
    Ok(())
}

/// `type/subtype`, each a non-empty run of RFC 6838 name characters.
fn check_media_type(field: &str, value: &str) -> Result<(), ValidationError> {
    let token_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    let ok = value.len() <= MAX_MEDIA_TYPE
        && value
            .split_once('/')
            .is_some_and(|(t, s)| token_ok(t) && token_ok(s));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "must be a media type like \"image/jpeg\", got {:?}",
                validate::truncate(value, 80)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (h, n) = sha256_hex_reader(&b"abc"[..]).unwrap();
        assert_eq!((h.as_str(), n), (sha256_hex(b"abc").as_str(), 3));
    }

    #[test]
    fn checks_bytes() {
        let item = EvidenceItem::from_bytes("a.jpg", "image/jpeg", EvidenceRole::Overview, b"jpeg");
        assert!(item.check_bytes(b"jpeg").is_ok());
        assert!(matches!(
            item.check_bytes(b"jpe"),
            Err(EvidenceError::SizeMismatch { .. })
        ));
        assert!(matches!(
            item.check_bytes(b"JPEG"),
            Err(EvidenceError::HashMismatch { .. })
        ));
    }

    #[test]
    fn validates_entries() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let good = EvidenceItem::from_bytes("a.jpg", "image/jpeg", EvidenceRole::Overview, b"x");
        assert!(validate_manifest("evidence", std::slice::from_ref(&good), t).is_ok());
        assert!(validate_manifest("evidence", &[], t).is_err());
        let dup = validate_manifest("evidence", &[good.clone(), good.clone()], t).unwrap_err();
        assert_eq!(dup.field, "evidence[1].name");
        for (name, media) in [
            ("../x", "image/jpeg"),
            (".x", "image/jpeg"),
            ("a.jpg", "jpeg"),
        ] {
            let mut bad = good.clone();
            bad.name = name.into();
            bad.media_type = media.into();
            assert!(bad.validate_at("e").is_err(), "{name} {media}");
        }
        let mut empty = good.clone();
        empty.size_bytes = 0;
        assert_eq!(empty.validate_at("e").unwrap_err().field, "e.size_bytes");
    }

    #[test]
    fn a_stills_frame_is_near_the_event_and_a_clip_names_none() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let item = |role, secs: i64| {
            EvidenceItem::from_bytes("a.jpg", "image/jpeg", role, b"x")
                .with_frame(120_372, t + time::Duration::seconds(secs))
        };
        let near = item(EvidenceRole::Frame, -MAX_FRAME_OFFSET_S);
        assert!(validate_manifest("evidence", &[near], t).is_ok());
        let far = item(EvidenceRole::Overview, MAX_FRAME_OFFSET_S + 1);
        let err = validate_manifest("evidence", &[far], t).unwrap_err();
        assert_eq!(err.field, "evidence[0].frame.time");
        let clip = item(EvidenceRole::Clip, 0);
        assert_eq!(clip.validate_at("e").unwrap_err().field, "e.frame");
        let mut huge = item(EvidenceRole::Overview, 0);
        huge.frame = Some(FrameStamp {
            number: u64::MAX,
            time: t,
        });
        assert_eq!(huge.validate_at("e").unwrap_err().field, "e.frame.number");
        // Absent, the member is left out, so events before 1.4 keep their bytes.
        let plain = EvidenceItem::from_bytes("a.jpg", "image/jpeg", EvidenceRole::Overview, b"x");
        let v = serde_json::to_value(&plain).unwrap();
        assert!(v.get("frame").is_none());
        let stamped = serde_json::to_value(item(EvidenceRole::Overview, 0)).unwrap();
        assert_eq!(stamped["frame"]["number"], 120_372);
        let back: EvidenceItem = serde_json::from_value(stamped).unwrap();
        assert_eq!(back.frame.map(|f| f.number), Some(120_372));
    }
}
