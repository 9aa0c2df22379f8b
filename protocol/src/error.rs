//! The crate's error types: [`ProtocolError`], what every parse, verify and
//! sign operation returns, and [`ValidationError`], which names the field that
//! failed a sanity check and why. [`ProtocolError::reject_code`] maps an error
//! to the reason code the server puts in a rejecting [`Ack`](crate::Ack).

use thiserror::Error;

use crate::ack::RejectCode;
use crate::canonical::CanonicalError;
use crate::evidence::EvidenceError;
use crate::topics::TopicError;
use crate::transfer::FrameError;
use crate::version::{SchemaVersion, VersionError};

/// A field failed a sanity check: `field` is its JSON path (for example
/// `evidence[1].sha256`), `reason` says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `plate.confidence`.
    pub field: String,
    /// Human-readable reason, e.g. `must be within 0..=1, got 1.2`.
    pub reason: String,
}

impl ValidationError {
    /// A validation error for `field`, saying `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong parsing, verifying or signing a message.
/// None of these is ever a panic: bad input always ends up here.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The bytes are not JSON at all (the message includes line and column).
    #[error("malformed JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),

    /// The JSON is well formed but does not match the message's shape: a
    /// missing field, a wrong type, an enum value this build does not know.
    #[error("invalid {kind}: at `{path}`: {message}")]
    Schema {
        /// Which message (`violation_event`, `heartbeat`, `ack`, `envelope`).
        kind: &'static str,
        /// JSON path of the field that failed (`.` for the whole message).
        path: String,
        /// What serde said about it.
        message: String,
    },

    /// The message has no `schema_version` member.
    #[error("invalid {kind}: missing `schema_version` (expected \"MAJOR.MINOR\")")]
    MissingVersion {
        /// Which message.
        kind: &'static str,
    },

    /// `schema_version` is present but is not `"MAJOR.MINOR"`.
    #[error(transparent)]
    Version(#[from] VersionError),

    /// The message's major version differs from the one this build speaks.
    #[error(
        "unsupported schema_version {received}: this build speaks {supported}; \
         only messages with major version {} are accepted",
        supported.major
    )]
    UnsupportedVersion {
        /// The version the message declared.
        received: SchemaVersion,
        /// The version this build implements.
        supported: SchemaVersion,
    },

    /// A signed envelope of one kind was handed to the verifier of another
    /// (for example a heartbeat envelope parsed as a `SignedEvent`).
    #[error("expected a `{expected}` envelope, got `{found}`")]
    WrongKind {
        /// The kind the caller asked for.
        expected: &'static str,
        /// The kind the envelope declares.
        found: String,
    },

    /// The signed envelope itself is malformed (missing member, wrong type).
    #[error("malformed envelope: {0}")]
    Envelope(String),

    /// The `signature` member is not 128 hex characters (64 bytes).
    #[error("malformed signature: {0}")]
    SignatureEncoding(String),

    /// The signature does not verify under the given key: the payload was
    /// changed, or it was signed by another key.
    #[error("signature verification failed for device `{device_id}`")]
    BadSignature {
        /// The device the envelope claims to come from.
        device_id: String,
    },

    /// The envelope's `device_id` differs from the payload's.
    #[error("envelope device_id `{envelope}` does not match payload device_id `{payload}`")]
    DeviceMismatch {
        /// `device_id` in the envelope.
        envelope: String,
        /// `device_id` in the payload.
        payload: String,
    },

    /// The message arrived on a topic that does not belong to it.
    #[error("{field} mismatch: topic says `{topic}`, message says `{message}`")]
    TopicMismatch {
        /// Which part disagrees: `site`, `device` or `channel`.
        field: &'static str,
        /// The value in the topic.
        topic: String,
        /// The value in the message.
        message: String,
    },

    /// A field failed a sanity check.
    #[error("invalid field {0}")]
    Invalid(#[from] ValidationError),

    /// The value cannot be put in canonical form (for example an integer
    /// beyond ±(2^53 − 1)).
    #[error(transparent)]
    Canonical(#[from] CanonicalError),

    /// A topic or topic segment is malformed.
    #[error(transparent)]
    Topic(#[from] TopicError),

    /// Evidence bytes do not match their manifest entry.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),

    /// A bundle or clip chunk frame is malformed.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ProtocolError {
    /// The reason code a server should put in a rejecting ack for this error.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Self::MalformedJson(_) | Self::Schema { .. } | Self::Envelope(_) | Self::Frame(_) => {
                RejectCode::Malformed
            }
            Self::MissingVersion { .. } | Self::Version(_) => RejectCode::Malformed,
            Self::UnsupportedVersion { .. } => RejectCode::UnsupportedVersion,
            Self::WrongKind { .. } | Self::TopicMismatch { .. } | Self::Topic(_) => {
                RejectCode::WrongTopic
            }
            Self::SignatureEncoding(_)
            | Self::BadSignature { .. }
            | Self::DeviceMismatch { .. } => RejectCode::BadSignature,
            Self::Invalid(_) | Self::Canonical(_) => RejectCode::Invalid,
            Self::Evidence(_) => RejectCode::EvidenceMismatch,
        }
    }
}

/// Deserialization outcome helper: turns a `serde_path_to_error` failure into
/// a [`ProtocolError::Schema`] naming the message kind and the field path.
pub(crate) fn schema_error(
    kind: &'static str,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> ProtocolError {
    ProtocolError::Schema {
        kind,
        path: err.path().to_string(),
        message: err.into_inner().to_string(),
    }
}
