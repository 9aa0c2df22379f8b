//! The signed envelope a device publishes:
//!
//! ```json
//! {"device_id":"hn-cg-01","kind":"violation_event","payload":{...},"signature":"<128 hex>"}
//! ```
//!
//! The signature is Ed25519 over the canonical bytes (see
//! [`crate::canonical`]) of the envelope object *without* its `signature`
//! member: `{"device_id":..,"kind":..,"payload":..}` plus any other members
//! a newer minor version adds. A receiver keeps the payload as the parsed
//! JSON value, unknown fields included, and verifies over that value, not
//! over its own re-serialisation of the typed struct; so a 1.1 sender's
//! extra fields are covered by the signature and still verify at a 1.0
//! receiver, which then ignores them. The typed message is read from the
//! very value that was verified.

use std::marker::PhantomData;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::canonical::canonical_bytes;
use crate::error::{ProtocolError, schema_error};
use crate::event::ViolationEvent;
use crate::heartbeat::Heartbeat;
use crate::message::DeviceMessage;
use crate::topics::TopicAddress;
use crate::version::SchemaVersion;

/// A signed violation event.
pub type SignedEvent = Signed<ViolationEvent>;
/// A signed heartbeat.
pub type SignedHeartbeat = Signed<Heartbeat>;

const KIND: &str = "kind";
const DEVICE_ID: &str = "device_id";
const PAYLOAD: &str = "payload";
const SIGNATURE: &str = "signature";

/// A device message with its Ed25519 signature, as it travels. Holds the
/// payload as raw JSON until [`verify`](Self::verify) turns it into a `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signed<T> {
    kind: String,
    device_id: String,
    payload: Map<String, Value>,
    /// Envelope members added by a newer minor version; signed, kept.
    extra: Map<String, Value>,
    signature: String,
    _message: PhantomData<fn() -> T>,
}

impl<T: DeviceMessage> Signed<T> {
    /// Validates `message`, then signs it with the device's `key`.
    pub fn sign(message: &T, key: &SigningKey) -> Result<Self, ProtocolError> {
        message.validate()?;
        let payload = match serde_json::to_value(message) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(ProtocolError::Envelope(
                    "message did not serialise to a JSON object".into(),
                ));
            }
            Err(e) => return Err(crate::canonical::CanonicalError::Serialize(e.to_string()).into()),
        };
        let mut signed = Self {
            kind: T::KIND.to_owned(),
            device_id: message.device_id().to_owned(),
            payload,
            extra: Map::new(),
            signature: String::new(),
            _message: PhantomData,
        };
        let signature = key.sign(&signed.signing_bytes()?);
        signed.signature = hex::encode(signature.to_bytes());
        Ok(signed)
    }

    /// Parses an envelope from JSON bytes. Checks only its shape; nothing is
    /// trusted until [`verify`](Self::verify).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let value: Value = serde_json::from_slice(bytes).map_err(ProtocolError::MalformedJson)?;
        Self::from_value(value)
    }

    /// Parses an envelope from a JSON value (see [`from_json`](Self::from_json)).
    pub fn from_value(value: Value) -> Result<Self, ProtocolError> {
        let Value::Object(mut map) = value else {
            return Err(ProtocolError::Envelope("expected a JSON object".into()));
        };
        let mut take_string = |name: &str| match map.remove(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ProtocolError::Envelope(format!(
                "`{name}` must be a string"
            ))),
            None => Err(ProtocolError::Envelope(format!("missing `{name}`"))),
        };
        let kind = take_string(KIND)?;
        let device_id = take_string(DEVICE_ID)?;
        let signature = take_string(SIGNATURE)?;
        let payload = match map.remove(PAYLOAD) {
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(ProtocolError::Envelope(
                    "`payload` must be an object".into(),
                ));
            }
            None => return Err(ProtocolError::Envelope("missing `payload`".into())),
        };
        Ok(Self {
            kind,
            device_id,
            payload,
            extra: map,
            signature,
            _message: PhantomData,
        })
    }

    /// Checks, in order: the envelope's kind is `T`'s; the payload's
    /// `schema_version` has this build's major; the signature verifies under
    /// `key`; the payload reads as a `T`; the envelope's and payload's
    /// device ids agree; the message validates. Returns the message.
    pub fn verify(&self, key: &VerifyingKey) -> Result<T, ProtocolError> {
        if self.kind != T::KIND {
            return Err(ProtocolError::WrongKind {
                expected: T::KIND,
                found: crate::validate::truncate(&self.kind, 40),
            });
        }
        let payload = Value::Object(self.payload.clone());
        SchemaVersion::check_value(T::KIND, &payload)?;

        let signature = self.decode_signature()?;
        key.verify_strict(&self.signing_bytes()?, &signature)
            .map_err(|_| ProtocolError::BadSignature {
                device_id: crate::validate::truncate(&self.device_id, 80),
            })?;

        let message: T =
            serde_path_to_error::deserialize(&payload).map_err(|e| schema_error(T::KIND, e))?;
        if message.device_id() != self.device_id {
            return Err(ProtocolError::DeviceMismatch {
                envelope: self.device_id.clone(),
                payload: message.device_id().to_owned(),
            });
        }
        message.validate()?;
        Ok(message)
    }

    /// [`verify`](Self::verify), then checks the message belongs on the
    /// topic it arrived on (channel, site and device all match).
    pub fn verify_for_topic(
        &self,
        key: &VerifyingKey,
        topic: &TopicAddress,
    ) -> Result<T, ProtocolError> {
        if topic.device != self.device_id {
            return Err(ProtocolError::TopicMismatch {
                field: "device",
                topic: topic.device.clone(),
                message: crate::validate::truncate(&self.device_id, 80),
            });
        }
        let message = self.verify(key)?;
        message.check_topic(topic)?;
        Ok(message)
    }

    /// The exact bytes the signature is over: the canonical form of the
    /// envelope without `signature`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        Ok(canonical_bytes(&Value::Object(self.unsigned_members()))?)
    }

    /// The envelope as canonical JSON bytes, ready to publish.
    pub fn to_json(&self) -> Result<Vec<u8>, ProtocolError> {
        Ok(canonical_bytes(&self.to_value())?)
    }

    /// The envelope as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut map = self.unsigned_members();
        map.insert(SIGNATURE.into(), Value::String(self.signature.clone()));
        Value::Object(map)
    }

    /// The envelope's `kind` (unverified).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The device the envelope claims to come from (unverified): use it to
    /// look up the key to verify with.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The payload exactly as received, unknown fields included
    /// (unverified until [`verify`](Self::verify) succeeds).
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The signature, hex as received.
    pub fn signature_hex(&self) -> &str {
        &self.signature
    }

    fn unsigned_members(&self) -> Map<String, Value> {
        let mut map = self.extra.clone();
        map.insert(KIND.into(), Value::String(self.kind.clone()));
        map.insert(DEVICE_ID.into(), Value::String(self.device_id.clone()));
        map.insert(PAYLOAD.into(), Value::Object(self.payload.clone()));
        map
    }

    fn decode_signature(&self) -> Result<Signature, ProtocolError> {
        let bytes = hex::decode(&self.signature)
            .map_err(|e| ProtocolError::SignatureEncoding(format!("not hex: {e}")))?;
        Signature::from_slice(&bytes).map_err(|_| {
            ProtocolError::SignatureEncoding(format!(
                "expected 64 bytes (128 hex characters), got {} bytes",
                bytes.len()
            ))
        })
    }
}

impl Signed<ViolationEvent> {
    /// The payload's `event_id`, unverified: lets a server address a
    /// rejecting ack even when verification fails. `None` if absent or not
    /// a UUID.
    pub fn unverified_event_id(&self) -> Option<Uuid> {
        match self.payload.get("event_id") {
            Some(Value::String(s)) => Uuid::parse_str(s).ok(),
            _ => None,
        }
    }
}

impl<T: DeviceMessage> Serialize for Signed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de, T: DeviceMessage> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}
