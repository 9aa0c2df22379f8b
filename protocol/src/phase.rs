//! A traffic-signal controller's phase message: what a junction's
//! controller (or the adapter in its cabinet) publishes for one lane group,
//! on the topic a site file names for that group (`[[signals]]
//! mqtt_topic`, conventionally `signals/v1/{site}/{group}`). The edge
//! judges red-light running in that group's lanes by it instead of reading
//! lamps from the image.
//!
//! The contract, for whoever writes a controller adapter:
//! - one JSON object per message, at most [`SignalPhase::MAX_BYTES`]:
//!   `{"group":"east-west","state":"red","since":"2026-11-24T08:30:12.400Z",
//!   "sent":"2026-11-24T08:30:15.000Z"}`; members this version does not
//!   know are ignored;
//! - `since` is when the state began and `sent` when the message left, both
//!   by the controller's clock (kept by NTP, like the edge's), UTC RFC 3339;
//! - published on every change of state **and repeated at least every
//!   second**: an edge takes a group it has not heard from for its site's
//!   `feed_silence_s` (3 s by default) as unknown, so a dead controller or
//!   a cut link never leaves a red on the board, and nobody is fined on it.
//!
//! - **signed** by the controller's own Ed25519 key, whose public half the
//!   site file names (`controller_key`): `signature` is 128 hex characters
//!   over `"signal_phase\n"`, the topic it is published on and `"\n"`,
//!   followed by the canonical bytes (as for events, `crate::canonical`) of
//!   the message as sent without its `signature` member — the topic in the
//!   signed bytes, so a phase of one junction replayed on another's topic
//!   is refused even where both controllers share a key. A red-light fine rests on the phase, and a broker login alone
//!   (any box's, on a broker without topic ACLs) must not be able to say
//!   "red"; the brokers' ACLs (only the `signals` account publishes under
//!   `signals/v1/#`) are a second fence, not the only one.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::canonical::canonical_bytes;
use crate::error::{ProtocolError, ValidationError, schema_error};
use crate::event::SignalState;
use crate::topics::id_problem;

/// One lane group's signal state, as its controller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalPhase {
    /// The lane group (the site file's `[[signals]] group`).
    pub group: String,
    /// The state now.
    pub state: SignalState,
    /// When the state began, by the controller's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// When the message was sent, by the controller's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub sent: OffsetDateTime,
}

/// What a phase's signature is over, before the canonical bytes.
const SIGNING_CONTEXT: &[u8] = b"signal_phase\n";

/// The signing input of a phase message given as a JSON object (without
/// its `signature`), published on `topic`.
fn signing_input(
    object: &serde_json::Map<String, Value>,
    topic: &str,
) -> Result<Vec<u8>, ProtocolError> {
    let mut input = SIGNING_CONTEXT.to_vec();
    input.extend_from_slice(topic.as_bytes());
    input.push(b'\n');
    input.extend(canonical_bytes(&Value::Object(object.clone()))?);
    Ok(input)
}

impl SignalPhase {
    /// Largest message accepted, bytes.
    pub const MAX_BYTES: usize = 1024;

    /// The message signed with the controller's `key` for `topic`, as JSON
    /// bytes.
    pub fn to_signed_json(&self, key: &SigningKey, topic: &str) -> Result<Vec<u8>, ProtocolError> {
        let Value::Object(mut object) =
            serde_json::to_value(self).map_err(ProtocolError::MalformedJson)?
        else {
            return Err(ProtocolError::Envelope("a phase is a JSON object".into()));
        };
        let signature = key.sign(&signing_input(&object, topic)?);
        object.insert(
            "signature".into(),
            Value::String(hex::encode(signature.to_bytes())),
        );
        serde_json::to_vec(&object).map_err(ProtocolError::MalformedJson)
    }

    /// Parses a phase message that arrived on `topic`, checks its signature
    /// under the controller's `key` (over the topic and every member it
    /// carries), then its fields.
    pub fn from_signed_json(
        bytes: &[u8],
        key: &VerifyingKey,
        topic: &str,
    ) -> Result<SignalPhase, ProtocolError> {
        let phase = Self::from_json(bytes)?;
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(bytes) else {
            return Err(ProtocolError::Envelope("a phase is a JSON object".into()));
        };
        let Some(Value::String(hex_sig)) = object.remove("signature") else {
            return Err(ProtocolError::SignatureEncoding(
                "the phase carries no `signature`".into(),
            ));
        };
        let raw: [u8; 64] = hex::decode(&hex_sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                ProtocolError::SignatureEncoding("`signature` is not 128 hex characters".into())
            })?;
        key.verify_strict(
            &signing_input(&object, topic)?,
            &Signature::from_bytes(&raw),
        )
        .map_err(|_| ProtocolError::BadSignature {
            device_id: format!("controller of {}", phase.group),
        })?;
        Ok(phase)
    }

    /// Parses and checks a phase message (its signature is not looked at:
    /// [`SignalPhase::from_signed_json`] is what a receiver uses).
    pub fn from_json(bytes: &[u8]) -> Result<SignalPhase, ProtocolError> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(ValidationError::new(
                ".",
                format!(
                    "a phase message is at most {} bytes, got {}",
                    Self::MAX_BYTES,
                    bytes.len()
                ),
            )
            .into());
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(ProtocolError::MalformedJson)?;
        let phase: SignalPhase =
            serde_path_to_error::deserialize(value).map_err(|e| schema_error("signal_phase", e))?;
        phase.validate()?;
        Ok(phase)
    }

    /// The message's JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, ProtocolError> {
        serde_json::to_vec(self).map_err(ProtocolError::MalformedJson)
    }

    /// Checks the fields: a usable group id, a state begun no later than
    /// the message was sent.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(why) = id_problem(&self.group) {
            return Err(ValidationError::new("group", why));
        }
        if self.since > self.sent {
            return Err(ValidationError::new(
                "since",
                format!(
                    "the state cannot begin ({}) after the message was sent ({})",
                    self.since, self.sent
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "signals/v1/hn-caugiay/east-west";

    const RED: &str = r#"{"group":"east-west","state":"red","since":"2026-11-24T08:30:12.400Z","sent":"2026-11-24T08:30:15Z"}"#;

    #[test]
    fn a_phase_parses_and_round_trips() {
        let p = SignalPhase::from_json(RED.as_bytes()).unwrap();
        assert_eq!(p.group, "east-west");
        assert_eq!(p.state, SignalState::Red);
        assert_eq!(p.since.millisecond(), 400);
        let again = SignalPhase::from_json(&p.to_json().unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn unknown_members_are_ignored() {
        let text = RED.replace("{", r#"{"controller":"ctl-7","#);
        assert!(SignalPhase::from_json(text.as_bytes()).is_ok());
    }

    #[test]
    fn bad_messages_are_refused_with_the_field() {
        let cases = [
            ("not json", "malformed JSON"),
            (&RED.replace("red", "blue"), "state"),
            (&RED.replace("east-west", "east west"), "group"),
            (&RED.replace("08:30:15Z", "08:30:12Z"), "since"),
            (
                &RED.replace(r#","sent":"2026-11-24T08:30:15Z""#, ""),
                "sent",
            ),
            (
                &RED.replace("2026-11-24T08:30:12.400Z", "yesterday"),
                "since",
            ),
        ];
        for (text, field) in cases {
            let e = SignalPhase::from_json(text.as_bytes())
                .expect_err(text)
                .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let big = format!("{}{}", RED, " ".repeat(SignalPhase::MAX_BYTES));
        assert!(SignalPhase::from_json(big.as_bytes()).is_err());
    }

    #[test]
    fn only_the_controllers_signature_over_the_whole_message_is_believed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let phase = SignalPhase::from_json(RED.as_bytes()).unwrap();
        let signed = phase.to_signed_json(&key, T).unwrap();
        let read = SignalPhase::from_signed_json(&signed, &key.verifying_key(), T).unwrap();
        assert_eq!(read, phase);
        let text = String::from_utf8(signed.clone()).unwrap();
        let refused_on = |bytes: &[u8], topic: &str| {
            SignalPhase::from_signed_json(bytes, &key.verifying_key(), topic)
                .unwrap_err()
                .to_string()
        };
        let refused = |bytes: &[u8], vk: &VerifyingKey| {
            SignalPhase::from_signed_json(bytes, vk, T)
                .unwrap_err()
                .to_string()
        };
        // Another key, a changed colour, an added member, no signature.
        assert!(refused(&signed, &other.verifying_key()).contains("signature"));
        let green = text.replace("\"red\"", "\"green\"");
        assert!(refused(green.as_bytes(), &key.verifying_key()).contains("signature"));
        let added = text.replacen('{', r#"{"note":"x","#, 1);
        assert!(refused(added.as_bytes(), &key.verifying_key()).contains("signature"));
        assert!(refused(RED.as_bytes(), &key.verifying_key()).contains("no `signature`"));
        // The same phase on another junction's topic.
        let elsewhere = "signals/v1/other/east-west";
        assert!(refused_on(&signed, elsewhere).contains("signature"));
        // Members in another order are the same message.
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        let mut members: Vec<_> = v.as_object().unwrap().iter().collect();
        members.reverse();
        let reordered = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(k, v)| format!("{:?}:{}", k, v))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            SignalPhase::from_signed_json(reordered.as_bytes(), &key.verifying_key(), T).is_ok()
        );
    }
}
