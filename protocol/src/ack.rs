//! The ack the server publishes on a device's ack topic once it has dealt
//! with an event: `stored` (durably stored; the device may drop it from its
//! outbox), `duplicate` (already stored earlier; drop it too) or `rejected`
//! with a reason code and message (retrying will not help; the device moves
//! it aside). Acks are not signed: they travel on the server's own
//! connection, protected by TLS and the broker's ACLs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ProtocolError, ValidationError};
use crate::message::{Message, check_own_version};
use crate::validate::{self, MAX_MESSAGE_TEXT, MAX_SHORT_TEXT};
use crate::version::SchemaVersion;

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
    /// What became of it.
    #[serde(flatten)]
    pub status: AckStatus,
}

impl Ack {
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
            schema_version: SchemaVersion::CURRENT,
            event_id,
            item: None,
            status,
        }
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
