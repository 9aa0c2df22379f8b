//! What every wire message has in common: the [`Message`] trait (kind name,
//! validation, and version-checked JSON decoding that tolerates unknown
//! fields) and [`DeviceMessage`], the messages an edge device signs and
//! publishes on its own topics.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::canonical::canonical_bytes_of;
use crate::error::{ProtocolError, ValidationError, schema_error};
use crate::topics::{Channel, TopicAddress};
use crate::version::SchemaVersion;

/// A message of this protocol.
pub trait Message: Serialize + DeserializeOwned {
    /// The message's name: `violation_event`, `heartbeat`, `ack`. Signed
    /// envelopes carry it as `kind`.
    const KIND: &'static str;

    /// The version the message declares.
    fn schema_version(&self) -> SchemaVersion;

    /// Sanity checks on every field; the error names the failing field.
    fn validate(&self) -> Result<(), ValidationError>;

    /// Decodes a message from an already-parsed JSON value: checks
    /// `schema_version` first (a different major is
    /// [`ProtocolError::UnsupportedVersion`]), then reads the fields (unknown
    /// ones are ignored), then [`validate`](Self::validate)s.
    fn from_value(value: &Value) -> Result<Self, ProtocolError> {
        SchemaVersion::check_value(Self::KIND, value)?;
        let message: Self =
            serde_path_to_error::deserialize(value).map_err(|e| schema_error(Self::KIND, e))?;
        message.validate()?;
        Ok(message)
    }

    /// Parses JSON bytes, then as [`from_value`](Self::from_value).
    fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let value: Value = serde_json::from_slice(bytes).map_err(ProtocolError::MalformedJson)?;
        Self::from_value(&value)
    }

    /// The message as canonical JSON bytes (the bytes an unsigned message,
    /// such as an ack, is published as).
    fn to_json(&self) -> Result<Vec<u8>, ProtocolError> {
        Ok(canonical_bytes_of(self)?)
    }
}

/// A message a device signs and publishes on its own topics.
pub trait DeviceMessage: Message {
    /// The channel it is published on.
    const CHANNEL: Channel;

    /// The device that made (and signs) it.
    fn device_id(&self) -> &str;

    /// The site the device is at.
    fn site(&self) -> &str;

    /// `Ok` if this message belongs on `topic`: same channel, site and device.
    fn check_topic(&self, topic: &TopicAddress) -> Result<(), ProtocolError> {
        if topic.channel != Self::CHANNEL {
            return Err(ProtocolError::TopicMismatch {
                field: "channel",
                topic: topic.channel.to_string(),
                message: Self::CHANNEL.to_string(),
            });
        }
        if topic.site != self.site() {
            return Err(ProtocolError::TopicMismatch {
                field: "site",
                topic: topic.site.clone(),
                message: self.site().to_owned(),
            });
        }
        if topic.device != self.device_id() {
            return Err(ProtocolError::TopicMismatch {
                field: "device",
                topic: topic.device.clone(),
                message: self.device_id().to_owned(),
            });
        }
        Ok(())
    }
}

/// Rejects a message whose own `schema_version` this build would not accept
/// (used before signing, so an edge never publishes what no one can read).
pub(crate) fn check_own_version(
    field: &str,
    version: SchemaVersion,
) -> Result<(), ValidationError> {
    if SchemaVersion::CURRENT.accepts(version) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "version {version} is not supported; this build speaks {}",
                SchemaVersion::CURRENT
            ),
        ))
    }
}
