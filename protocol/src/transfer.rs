//! How a violation and its evidence travel: the **event bundle** (the signed
//! event plus its stills, one MQTT message on the events topic, or one HTTPS
//! request body) and the **clip chunk** (a clip cut into pieces of at most
//! [`CLIP_CHUNK_BYTES`], each with its own SHA-256, on the evidence topic).
//!
//! Why two shapes: a violation and the stills that prove it must arrive
//! together, so that one message is one unit of work that a server replica
//! stores or rejects as a whole — no staging, no cross-replica assembly for
//! the part a case needs. Clips are ten times larger and not needed to open a
//! case; cutting them into chunks keeps every MQTT message small (brokers
//! hold queued messages in memory) and lets a lost piece be resent alone.
//! Integrity of the whole file always comes from the signed manifest: a
//! bundle's attachments and an assembled clip are checked against the
//! `evidence` entries the device signed. The per-chunk hash catches a damaged
//! piece on arrival, before assembly.
//!
//! Both are binary frames (no base64): a 4-byte magic, big-endian lengths,
//! JSON where structure matters, raw bytes where it does not. The layout is
//! written out in the crate's README.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::error::{ProtocolError, ValidationError};
use crate::event::ViolationEvent;
use crate::evidence::{EvidenceError, EvidenceItem, sha256_hex};
use crate::message::{Message, check_own_version};
use crate::signing::SignedEvent;
use crate::validate;
use crate::version::SchemaVersion;

/// First bytes of an event bundle.
pub const BUNDLE_MAGIC: &[u8; 4] = b"TVB1";
/// First bytes of a clip chunk.
pub const CHUNK_MAGIC: &[u8; 4] = b"TVC1";
/// Largest bundle accepted (event JSON plus stills).
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;
/// Largest signed-event JSON inside a bundle.
pub const MAX_EVENT_JSON_BYTES: usize = 256 * 1024;
/// Size of every clip chunk but the last.
pub const CLIP_CHUNK_BYTES: usize = 256 * 1024;
/// Largest chunk header JSON.
pub const MAX_CHUNK_HEADER_BYTES: usize = 4 * 1024;
/// Most chunks in one clip (caps a clip at 1 GiB).
pub const MAX_CHUNKS: u32 = 4096;

/// A frame that is not a well-formed bundle or chunk.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Does not start with the expected magic bytes.
    #[error("not a {what}: expected magic {expected:?}")]
    Magic {
        /// `event bundle` or `clip chunk`.
        what: &'static str,
        /// The expected magic, as text.
        expected: &'static str,
    },
    /// Ends before a length says it should.
    #[error("{what} truncated at byte {at}: {needed} more bytes expected")]
    Truncated {
        /// Which part was being read.
        what: &'static str,
        /// Offset where the read started.
        at: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A part is larger than the protocol allows.
    #[error("{what} is {size} bytes, limit {limit}")]
    TooLarge {
        /// Which part.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Something else is wrong with the frame's structure.
    #[error("{0}")]
    Invalid(String),
}

/// A file attached to a bundle: the bytes of one manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Name of the manifest entry it carries.
    pub name: String,
    /// The file's bytes.
    pub data: Vec<u8>,
}

/// The signed event and the evidence files that travel with it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBundle {
    /// The signed event (its manifest lists every file, attached or not).
    pub event: SignedEvent,
    /// Files carried in this bundle (stills); the rest (clips) come as chunks.
    pub attachments: Vec<Attachment>,
}

impl EventBundle {
    /// Encodes: `"TVB1"`, u32 length + signed-event JSON, then per attachment
    /// u16 length + name, u32 length + bytes. All lengths big-endian.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let json = self.event.to_json()?;
        let total = 8
            + json.len()
            + self
                .attachments
                .iter()
                .map(|a| 6 + a.name.len() + a.data.len())
                .sum::<usize>();
        if total > MAX_BUNDLE_BYTES {
            return Err(FrameError::TooLarge {
                what: "event bundle",
                size: total,
                limit: MAX_BUNDLE_BYTES,
            }
            .into());
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(BUNDLE_MAGIC);
        put_u32(&mut out, json.len());
        out.extend_from_slice(&json);
        for a in &self.attachments {
            let name_len = u16::try_from(a.name.len()).map_err(|_| {
                FrameError::Invalid(format!("attachment name too long: {}", a.name))
            })?;
            out.extend_from_slice(&name_len.to_be_bytes());
            out.extend_from_slice(a.name.as_bytes());
            put_u32(&mut out, a.data.len());
            out.extend_from_slice(&a.data);
        }
        Ok(out)
    }

    /// Decodes a bundle. Checks the framing and the envelope's shape; the
    /// signature is checked later by [`SignedEvent::verify`] with the device's
    /// key, and the attachments by [`check_attachments`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(FrameError::TooLarge {
                what: "event bundle",
                size: bytes.len(),
                limit: MAX_BUNDLE_BYTES,
            }
            .into());
        }
        let mut r = Reader::new(bytes, "event bundle");
        r.magic(BUNDLE_MAGIC, "TVB1")?;
        let json_len = r.u32("event length")?;
        if json_len > MAX_EVENT_JSON_BYTES {
            return Err(FrameError::TooLarge {
                what: "event JSON",
                size: json_len,
                limit: MAX_EVENT_JSON_BYTES,
            }
            .into());
        }
        let json = r.take(json_len, "event JSON")?;
        let event = SignedEvent::from_json(json)?;
        let mut attachments = Vec::new();
        while !r.done() {
            if attachments.len() >= validate::MAX_EVIDENCE_ITEMS {
                return Err(FrameError::Invalid(format!(
                    "more than {} attachments",
                    validate::MAX_EVIDENCE_ITEMS
                ))
                .into());
            }
            let name_len = r.u16("attachment name length")?;
            let name = std::str::from_utf8(r.take(name_len, "attachment name")?)
                .map_err(|_| FrameError::Invalid("attachment name is not UTF-8".into()))?
                .to_owned();
            let data_len = r.u32("attachment length")?;
            let data = r.take(data_len, "attachment data")?.to_vec();
            if attachments.iter().any(|a: &Attachment| a.name == name) {
                return Err(
                    FrameError::Invalid(format!("attachment {name:?} appears twice")).into(),
                );
            }
            attachments.push(Attachment { name, data });
        }
        Ok(Self { event, attachments })
    }
}

/// Checks a verified event's attachments against its manifest: each
/// attachment must be a manifest entry with the same size and SHA-256.
/// Returns the manifest entries that were *not* attached (clips to come as
/// chunks).
pub fn check_attachments<'a>(
    event: &'a ViolationEvent,
    attachments: &[Attachment],
) -> Result<Vec<&'a EvidenceItem>, EvidenceError> {
    for a in attachments {
        let item = event
            .evidence
            .iter()
            .find(|i| i.name == a.name)
            .ok_or_else(|| EvidenceError::NotInManifest {
                name: a.name.clone(),
            })?;
        item.check_bytes(&a.data)?;
    }
    Ok(event
        .evidence
        .iter()
        .filter(|i| !attachments.iter().any(|a| a.name == i.name))
        .collect())
}

/// What a clip chunk says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// Schema version.
    pub schema_version: SchemaVersion,
    /// The event whose manifest lists the file.
    pub event_id: Uuid,
    /// The manifest entry's name.
    pub name: String,
    /// 0-based index of this chunk.
    pub index: u32,
    /// Number of chunks of the file.
    pub count: u32,
    /// Size of the whole file (as in the manifest).
    pub total_size: u64,
    /// SHA-256 of this chunk's bytes.
    pub sha256: String,
}

impl Message for ChunkHeader {
    const KIND: &'static str = "clip_chunk";

    fn schema_version(&self) -> SchemaVersion {
        self.schema_version
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_own_version("schema_version", self.schema_version)?;
        crate::evidence::check_file_name("name", &self.name)?;
        if self.count == 0 || self.count > MAX_CHUNKS {
            return Err(ValidationError::new(
                "count",
                format!("must be within 1..={MAX_CHUNKS}, got {}", self.count),
            ));
        }
        if self.index >= self.count {
            return Err(ValidationError::new(
                "index",
                format!("must be below count {}, got {}", self.count, self.index),
            ));
        }
        if chunk_count(self.total_size) != self.count {
            return Err(ValidationError::new(
                "count",
                format!(
                    "a file of {} bytes has {} chunks of {CLIP_CHUNK_BYTES}, not {}",
                    self.total_size,
                    chunk_count(self.total_size),
                    self.count
                ),
            ));
        }
        validate::check_sha256_hex("sha256", &self.sha256)
    }
}

/// Number of chunks a file of `size` bytes is cut into.
pub fn chunk_count(size: u64) -> u32 {
    let n = size.div_ceil(CLIP_CHUNK_BYTES as u64).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One piece of a clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipChunk {
    /// What the piece is.
    pub header: ChunkHeader,
    /// Its bytes.
    pub data: Vec<u8>,
}

impl ClipChunk {
    /// Cuts `file` (the bytes of manifest entry `name`) into chunks for
    /// `event_id`.
    pub fn split(event_id: Uuid, name: &str, file: &[u8]) -> Vec<ClipChunk> {
        let count = chunk_count(file.len() as u64);
        file.chunks(CLIP_CHUNK_BYTES)
            .enumerate()
            .map(|(i, data)| ClipChunk {
                header: ChunkHeader {
                    schema_version: SchemaVersion::CURRENT,
                    event_id,
                    name: name.to_owned(),
                    index: i as u32,
                    count,
                    total_size: file.len() as u64,
                    sha256: sha256_hex(data),
                },
                data: data.to_vec(),
            })
            .collect()
    }

    /// Byte offset of this chunk in the file.
    pub fn offset(&self) -> u64 {
        u64::from(self.header.index) * CLIP_CHUNK_BYTES as u64
    }

    /// Encodes: `"TVC1"`, u32 length + header JSON, then the bytes to the end.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let header = serde_json::to_vec(&self.header).map_err(ProtocolError::MalformedJson)?;
        let mut out = Vec::with_capacity(8 + header.len() + self.data.len());
        out.extend_from_slice(CHUNK_MAGIC);
        put_u32(&mut out, header.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    /// Decodes a chunk and checks its header, its size against its place in
    /// the file, and its bytes against its hash.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(bytes, "clip chunk");
        r.magic(CHUNK_MAGIC, "TVC1")?;
        let header_len = r.u32("header length")?;
        if header_len > MAX_CHUNK_HEADER_BYTES {
            return Err(FrameError::TooLarge {
                what: "chunk header",
                size: header_len,
                limit: MAX_CHUNK_HEADER_BYTES,
            }
            .into());
        }
        let header = ChunkHeader::from_json(r.take(header_len, "chunk header")?)?;
        let data = r.rest().to_vec();
        let start = u64::from(header.index) * CLIP_CHUNK_BYTES as u64;
        let expected = header
            .total_size
            .saturating_sub(start)
            .min(CLIP_CHUNK_BYTES as u64);
        if data.len() as u64 != expected {
            return Err(FrameError::Invalid(format!(
                "chunk {} of {:?} has {} bytes, expected {expected}",
                header.index,
                header.name,
                data.len()
            ))
            .into());
        }
        let actual = sha256_hex(&data);
        if actual != header.sha256 {
            return Err(EvidenceError::HashMismatch {
                name: format!("{}#{}", header.name, header.index),
                expected: header.sha256.clone(),
                actual,
            }
            .into());
        }
        Ok(Self { header, data })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Callers bound every length far below 4 GiB (MAX_BUNDLE_BYTES).
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

/// Bounds-checked reading of a frame.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, at: 0, what }
    }

    fn magic(&mut self, magic: &[u8; 4], text: &'static str) -> Result<(), FrameError> {
        if self.bytes.len() < 4 || &self.bytes[..4] != magic {
            return Err(FrameError::Magic {
                what: self.what,
                expected: text,
            });
        }
        self.at = 4;
        Ok(())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(FrameError::Truncated {
                what,
                at: self.at,
                needed: n - left,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<usize, FrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u16(&mut self, what: &'static str) -> Result<usize, FrameError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}
