//! The ack the server publishes on a device's ack topic once it has dealt
//! with an event: `stored` (durably stored; the device may drop it from its
//! outbox), `duplicate` (already stored earlier; drop it too) or `rejected`
//! with a reason code and message (retrying will not help; the device moves
//! it aside).
//!
//! Since schema 1.1 the server signs every ack with its own Ed25519 key, for
//! one device: an ack tells a device to delete evidence from its outbox, so
//! a device must not believe an ack that any client of the broker could
//! have published. The signed ack is the plain ack plus three members,
//! `kind` (`"ack"`), `device_id` (the device it is for) and `signature`;
//! see [`Ack::sign_for`] and [`Ack::verify_signed`]. A 1.0 receiver ignores
//! the three members and reads the ack as before.
//!
//! Since schema 1.2 a rejection names the bytes it rejects
//! (`payload_sha256`, the SHA-256 of the message — a bundle or one clip
//! chunk frame — or of the assembled clip the server refused). A rejection tells a device to stop sending an
//! event, and anyone able to publish on the device's topic can make the
//! server reject *something* under the device's event id (an altered copy);
//! the device honours a rejection only of bytes it sent itself.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use uuid::Uuid;

use crate::canonical::canonical_bytes;
use crate::error::{ProtocolError, ValidationError};
use crate::message::{Message, check_own_version};
use crate::validate::{self, MAX_MESSAGE_TEXT, MAX_SHORT_TEXT};
use crate::version::SchemaVersion;

const KIND: &str = "kind";
const DEVICE_ID: &str = "device_id";
const SIGNATURE: &str = "signature";

/// Why the server rejected an event. Codes this build does not know (from a
/// newer server) are kept as [`RejectCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// Not JSON, or not the shape of the message, or a malformed version.
    Malformed,
    /// A major schema version the server does not speak.
    UnsupportedVersion,
    /// The signature is missing, malformed or does not verify.
    BadSignature,
    /// The server has no key for this device.
    UnknownDevice,
    /// Published on a topic that does not match the message.
    WrongTopic,
    /// A field failed validation.
    Invalid,
    /// Evidence did not match the manifest.
    EvidenceMismatch,
    /// The server could not process it for a reason of its own.
    Internal,
    /// A code this build does not know.
    #[serde(untagged)]
    Other(String),
}

/// What became of the event. Serialised flat into the ack: `"status"` plus,
/// for `rejected`, `"code"` and `"message"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AckStatus {
    /// Stored durably.
    Stored,
    /// Already stored before (same event id); nothing new stored.
    Duplicate,
    /// Refused; retrying the same bytes will not help.
    Rejected {
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable detail (at most 512 characters).
        message: String,
    },
}

/// The server's answer to one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Schema version.
    pub schema_version: SchemaVersion,
    /// The event this answers.
    pub event_id: Uuid,
    /// Present when the ack is about one evidence file sent as clip chunks
    /// (its manifest name) rather than the event bundle itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// SHA-256 (hex) of the bytes this answer is about: set on rejections
    /// (the refused message — bundle or chunk frame — or the assembled
    /// clip), so that a device can
    /// tell a rejection of what it sent from a rejection of a copy someone
    /// else altered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha256: Option<String>,
    /// What became of it.
    #[serde(flatten)]
    pub status: AckStatus,
}

impl Ack {
    /// The version acks are written with: 1.2. 1.1 added the server's
    /// signature (`kind`, `device_id`, `signature`), 1.2 `payload_sha256`.
    /// Events and heartbeats are 1.2 too ([`SchemaVersion::CURRENT`]); each
    /// message declares its own version.
    pub const VERSION: SchemaVersion = SchemaVersion::new(1, 2);

    /// The event was stored.
    pub fn stored(event_id: Uuid) -> Self {
        Self::new(event_id, AckStatus::Stored)
    }

    /// The event had already been stored.
    pub fn duplicate(event_id: Uuid) -> Self {
        Self::new(event_id, AckStatus::Duplicate)
    }

    /// The event was rejected (message truncated to 512 characters).
    pub fn rejected(event_id: Uuid, code: RejectCode, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = message
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_MESSAGE_TEXT)
            .collect();
        Self::new(event_id, AckStatus::Rejected { code, message })
    }

    /// The event was rejected because of `error` (code from
    /// [`ProtocolError::reject_code`], message from its text).
    pub fn rejected_for(event_id: Uuid, error: &ProtocolError) -> Self {
        Self::rejected(event_id, error.reject_code(), error.to_string())
    }

    fn new(event_id: Uuid, status: AckStatus) -> Self {
        Self {
            schema_version: Self::VERSION,
            event_id,
            item: None,
            payload_sha256: None,
            status,
        }
    }

    /// The same answer, about the bytes with this SHA-256 (hex).
    pub fn bound_to(mut self, sha256: impl Into<String>) -> Self {
        self.payload_sha256 = Some(sha256.into());
        self
    }

    /// The same answer, about evidence file `name` of the event (a clip sent
    /// in chunks) rather than about the event.
    pub fn for_item(mut self, name: impl Into<String>) -> Self {
        self.item = Some(name.into());
        self
    }

    /// Whether the device may drop the event from its outbox (stored or
    /// duplicate).
    pub fn is_durable(&self) -> bool {
        matches!(self.status, AckStatus::Stored | AckStatus::Duplicate)
    }
}

/// Why a signed ack was not believed. [`reason`](Self::reason) gives a
/// short stable code for logs and metrics.
#[derive(Debug, Error)]
pub enum AckVerifyError {
    /// Not JSON, not an ack, a version of another major, or a field that
    /// fails validation.
    #[error("malformed ack: {0}")]
    Malformed(#[from] ProtocolError),
    /// No `signature` member (a 1.0 server, or a forger).
    #[error("the ack is not signed")]
    Unsigned,
    /// `kind` is missing or is not `"ack"`.
    #[error("the signed message is not an ack (kind {0:?})")]
    WrongKind(String),
    /// The ack is for another device (or names none).
    #[error("the ack is for device {found:?}, not for {expected:?}")]
    WrongDevice {
        /// This device.
        expected: String,
        /// The `device_id` the ack names.
        found: String,
    },
    /// `signature` is not 128 hex characters.
    #[error("malformed ack signature: {0}")]
    SignatureEncoding(String),
    /// No trusted server key verifies the signature: forged, altered, or
    /// signed by a key this device was not given.
    #[error("the ack signature does not verify under any of the {keys} trusted server key(s)")]
    BadSignature {
        /// How many keys were tried.
        keys: usize,
    },
}

impl AckVerifyError {
    /// `malformed`, `unsigned`, `wrong_kind`, `wrong_device`,
    /// `bad_signature`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unsigned => "unsigned",
            Self::WrongKind(_) => "wrong_kind",
            Self::WrongDevice { .. } => "wrong_device",
            Self::SignatureEncoding(_) | Self::BadSignature { .. } => "bad_signature",
        }
    }
}

/// A signed ack that verified: the ack, and which of the trusted keys
/// signed it (an index into the slice given to [`Ack::verify_signed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAck {
    /// The ack.
    pub ack: Ack,
    /// Index of the key that verified it.
    pub key_index: usize,
}

impl Ack {
    /// Signs this ack for `device_id` with the server's key and returns the
    /// canonical JSON bytes to publish on that device's ack topic.
    ///
    /// The signed object is the ack's own members plus `"kind": "ack"` and
    /// `"device_id"`; the signature is Ed25519 over the canonical bytes
    /// (JCS, as for device envelopes) of that object, and is added as
    /// `signature` (128 hex characters).
    pub fn sign_for(&self, device_id: &str, key: &SigningKey) -> Result<Vec<u8>, ProtocolError> {
        self.validate()?;
        crate::topics::validate_id("device", device_id).map_err(|e| {
            ProtocolError::Invalid(ValidationError::new("device_id", e.to_string()))
        })?;
        let mut map = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(ProtocolError::Envelope(
                    "ack did not serialise to a JSON object".into(),
                ));
            }
            Err(e) => return Err(crate::canonical::CanonicalError::Serialize(e.to_string()).into()),
        };
        map.insert(KIND.into(), Value::String(<Self as Message>::KIND.into()));
        map.insert(DEVICE_ID.into(), Value::String(device_id.into()));
        let signature = key.sign(&canonical_bytes(&Value::Object(map.clone()))?);
        map.insert(
            SIGNATURE.into(),
            Value::String(hex::encode(signature.to_bytes())),
        );
        Ok(canonical_bytes(&Value::Object(map))?)
    }

    /// Reads a signed ack and believes it only if it is an ack, for
    /// `device_id`, and its signature verifies (strictly) under one of
    /// `trusted` (several keys: server replicas, or a key rotation). The
    /// signature is checked over the canonical bytes of the object *as
    /// received* minus `signature`, so members a newer minor version adds
    /// are covered and still verify. Checks, in order: JSON object;
    /// `signature` present; `kind`; `device_id`; signature; then the ack
    /// itself (version major, fields, validation).
    pub fn verify_signed(
        bytes: &[u8],
        device_id: &str,
        trusted: &[VerifyingKey],
    ) -> Result<VerifiedAck, AckVerifyError> {
        let value: Value = serde_json::from_slice(bytes).map_err(ProtocolError::MalformedJson)?;
        let Value::Object(mut map) = value else {
            return Err(ProtocolError::Envelope("an ack must be a JSON object".into()).into());
        };
        let signature = match map.remove(SIGNATURE) {
            None => return Err(AckVerifyError::Unsigned),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(AckVerifyError::SignatureEncoding(
                    "`signature` must be a string".into(),
                ));
            }
        };
        match map.get(KIND) {
            Some(Value::String(k)) if k == <Self as Message>::KIND => {}
            other => {
                return Err(AckVerifyError::WrongKind(short(other)));
            }
        }
        match map.get(DEVICE_ID) {
            Some(Value::String(d)) if d == device_id => {}
            other => {
                return Err(AckVerifyError::WrongDevice {
                    expected: device_id.to_owned(),
                    found: short(other),
                });
            }
        }
        let signature = decode_signature(&signature)?;
        let signed = canonical_bytes(&Value::Object(map.clone())).map_err(ProtocolError::from)?;
        let key_index = trusted
            .iter()
            .position(|k| k.verify_strict(&signed, &signature).is_ok())
            .ok_or(AckVerifyError::BadSignature {
                keys: trusted.len(),
            })?;
        let ack = Self::from_value(&Value::Object(map))?;
        Ok(VerifiedAck { ack, key_index })
    }
}

/// A JSON member's value for an error message: the string itself, or its
/// JSON text, at most 80 characters; `missing` when absent.
fn short(v: Option<&Value>) -> String {
    match v {
        None => "missing".into(),
        Some(Value::String(s)) => validate::truncate(s, 80),
        Some(other) => validate::truncate(&other.to_string(), 80),
    }
}

fn decode_signature(hex_text: &str) -> Result<Signature, AckVerifyError> {
    let bytes = hex::decode(hex_text)
        .map_err(|e| AckVerifyError::SignatureEncoding(format!("not hex: {e}")))?;
    Signature::from_slice(&bytes).map_err(|_| {
        AckVerifyError::SignatureEncoding(format!(
            "expected 64 bytes (128 hex characters), got {} bytes",
            bytes.len()
        ))
    })
}

impl Message for Ack {
    const KIND: &'static str = "ack";

    fn schema_version(&self) -> SchemaVersion {
        self.schema_version
    }

    fn validate(&self) -> Result<(), ValidationError> {
        check_own_version("schema_version", self.schema_version)?;
        if let Some(item) = &self.item {
            crate::evidence::check_file_name("item", item)?;
        }
        if let Some(h) = &self.payload_sha256 {
            validate::check_sha256_hex("payload_sha256", h)?;
        }
        if let AckStatus::Rejected { code, message } = &self.status {
            if let RejectCode::Other(other) = code {
                validate::check_ascii_text("code", other, MAX_SHORT_TEXT)?;
                // `Other("invalid")` would read back as `Invalid`.
                let reparsed =
                    serde_json::from_value::<RejectCode>(serde_json::Value::String(other.clone()));
                if !matches!(reparsed, Ok(RejectCode::Other(_))) {
                    return Err(ValidationError::new(
                        "code",
                        format!("{other:?} is a known code; use its own variant, not Other"),
                    ));
                }
            }
            validate::check_text("message", message, MAX_MESSAGE_TEXT)?;
        }
        Ok(())
    }
}
