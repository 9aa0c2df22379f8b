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
//! Phase messages are not signed: a controller is not an enrolled device.
//! The broker's ACL is what lets only the controller's account publish on
//! the signal topics (`deploy/mosquitto/acl`, `deploy/emqx/acl.conf`); the
//! evidence of each red-light case still carries the stills with the
//! junction in them, for a person to check against.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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

impl SignalPhase {
    /// Largest message accepted, bytes.
    pub const MAX_BYTES: usize = 1024;

    /// Parses and checks a phase message.
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
}
