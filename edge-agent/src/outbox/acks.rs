//! Which acks the outbox believes. An ack makes the outbox delete a
//! violation's evidence, and anyone who can publish on the broker can put
//! bytes on this device's ack topic; so an ack counts only if the server
//! signed it, with a key this box was given at installation
//! (`[server] public_keys`), for this device ([`protocol::Ack::verify_signed`]).
//! Anything else is refused with a reason, logged and counted by the
//! delivery loop, and changes nothing.
//!
//! A believed ack is then applied ([`Outbox::apply_ack`]); a rejection is
//! honoured only when it is bound to bytes this device sent. A rejection
//! whose code blames the device's or the server's state ([`state_at_fault`])
//! holds the row for a while ([`hold_for`]) and it is sent again; only one
//! that blames the content is final. A refused clip never undoes its
//! event's ack.
//!
//! Migration: with no server key configured the agent refuses to deliver
//! (the secure default). `accept_unsigned_acks = true` is the explicit lab
//! opt-out: unsigned acks (a server older than signed acks) are then
//! believed, each with a warning, and without any key signed acks are read
//! unverified too (still only for this device).

use super::{AckOutcome, Outbox, OutboxError, now_ms};
use protocol::{Ack, AckStatus, AckVerifyError, Message, RejectCode, VerifyingKey};
use rusqlite::{OptionalExtension, params};
use std::path::Path;
use uuid::Uuid;

/// The policy could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AckPolicyError {
    /// No server key and no explicit opt-out.
    #[error(
        "no server key: set [server] public_keys to the ingest server's public key \
         (`ingest-server key show`), or, in a lab only, accept_unsigned_acks = true"
    )]
    NoServerKey,
    /// A configured key is not one.
    #[error("[server] public_keys: {0}")]
    BadKey(String),
}

/// Why an ack's bytes changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// Not believed: unsigned, forged, for another device, malformed.
    #[error("ack refused ({reason}): {0}", reason = .0.reason())]
    Refused(AckVerifyError),
    /// Believed, but the outbox failed.
    #[error(transparent)]
    Outbox(#[from] super::OutboxError),
}

/// An ack the policy let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedAck {
    /// The ack.
    pub ack: Ack,
    /// Index of the server key that verified it; `None` when it was let
    /// through unverified (`accept_unsigned_acks`).
    pub signed_by: Option<usize>,
}

/// The acks this device believes.
#[derive(Debug, Clone)]
pub struct AckPolicy {
    device_id: String,
    keys: Vec<VerifyingKey>,
    accept_unsigned: bool,
}

impl AckPolicy {
    /// Acks for `device_id` signed by one of `keys`; with
    /// `accept_unsigned`, also unverified ones (lab only). No keys and no
    /// opt-out is [`AckPolicyError::NoServerKey`].
    pub fn new(
        device_id: &str,
        keys: Vec<VerifyingKey>,
        accept_unsigned: bool,
    ) -> Result<Self, AckPolicyError> {
        if keys.is_empty() && !accept_unsigned {
            return Err(AckPolicyError::NoServerKey);
        }
        Ok(Self {
            device_id: device_id.to_owned(),
            keys,
            accept_unsigned,
        })
    }

    /// From the agent's `[device]` and `[server]` configuration.
    pub fn from_config(cfg: &crate::config::AgentConfig) -> Result<Self, AckPolicyError> {
        let keys = cfg
            .server
            .verifying_keys()
            .map_err(AckPolicyError::BadKey)?;
        Self::new(&cfg.device.id, keys, cfg.server.accept_unsigned_acks)
    }

    /// Whether unverified acks are let through (lab mode).
    pub fn accepts_unsigned(&self) -> bool {
        self.accept_unsigned
    }

    /// How many server keys are trusted.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Reads `bytes` from the ack topic and says whether to believe them.
    pub fn check(&self, bytes: &[u8]) -> Result<CheckedAck, AckVerifyError> {
        match Ack::verify_signed(bytes, &self.device_id, &self.keys) {
            Ok(v) => Ok(CheckedAck {
                ack: v.ack,
                signed_by: Some(v.key_index),
            }),
            // Lab mode: a 1.0 server's unsigned ack, or, with no key to
            // check against, a signed one (kind and device were checked
            // before the signature).
            Err(AckVerifyError::Unsigned) if self.accept_unsigned => Ok(CheckedAck {
                ack: Ack::from_json(bytes)?,
                signed_by: None,
            }),
            Err(AckVerifyError::BadSignature { keys: 0 }) if self.accept_unsigned => {
                Ok(CheckedAck {
                    ack: Ack::from_json(bytes)?,
                    signed_by: None,
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl Outbox {
    /// Deletes the stills of event `id`, delivered with its bundle, while
    /// its clip waits: they no longer count against the byte limit, which
    /// otherwise evicted them — a false `evidence_evicted` — before
    /// undelivered evidence. A still left out of the bundle to fit its
    /// limit was not delivered and stays ([`Outbox::keep_unsent_stills`]).
    fn drop_delivered_stills(&mut self, id: &str, dir: &str) -> Result<(), OutboxError> {
        let unsent = self.unsent_of(id)?;
        let names: String = self
            .conn
            .query_row(
                "SELECT stills FROM events WHERE event_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        for name in serde_json::from_str::<Vec<String>>(&names).unwrap_or_default() {
            if unsent.contains(&name) {
                continue;
            }
            let path = Path::new(dir).join(&name);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not delete a delivered still");
            }
        }
        self.conn
            .execute(
                "UPDATE events SET stills_bytes = 0 WHERE event_id = ?1",
                params![id],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Applies the server's ack (already parsed from the ack topic).
    pub fn apply_ack(&mut self, ack: &Ack) -> Result<AckOutcome, OutboxError> {
        let id = ack.event_id.to_string();
        type Row = (String, String, String, Option<String>, Option<String>, i64);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT state, clip_state, dir, sent_sha256, clip_name, holds FROM events
                 WHERE event_id = ?1 AND done_at IS NULL",
                params![id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(self.db())?;
        let Some((state, clip_state, dir, sent_sha256, clip_name, holds)) = row else {
            return Ok(AckOutcome::Unknown);
        };
        let now = now_ms();
        match (&ack.status, &ack.item) {
            (AckStatus::Rejected { code, message }, item) => {
                // Only a rejection of what this device sent: the bundle
                // last published, or the clip file as it is on disk (or
                // one of the chunks it is sent as).
                let ours = match (item, ack.payload_sha256.as_deref()) {
                    (_, None) => false,
                    (None, Some(rejected)) => sent_sha256.as_deref() == Some(rejected),
                    (Some(name), Some(rejected)) if clip_name.as_deref() == Some(name.as_str()) => {
                        clip_was_sent_as(ack.event_id, name, &Path::new(&dir).join(name), rejected)
                    }
                    (Some(_), Some(_)) => false,
                };
                if !ours {
                    return Ok(AckOutcome::ForeignRejection);
                }
                let code_text = serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let clip = item.is_some();
                if state == "acked" && !clip {
                    // The event itself is delivered: a late refusal of
                    // the bundle (another copy, sent after its ack timeout)
                    // changes nothing, whatever its code — a retry code
                    // would otherwise queue a delivered event again.
                    return Ok(AckOutcome::Unknown);
                }
                if state_at_fault(code) {
                    // Not the event's fault: it waits and goes again.
                    let retry_at = now + hold_for(holds).as_millis() as i64;
                    let set = if clip {
                        "clip_state = 'pending'"
                    } else {
                        "state = 'queued'"
                    };
                    self.conn
                        .execute(
                            &format!(
                                "UPDATE events SET {set}, retry_at = ?2, holds = holds + 1,
                                     reject_code = ?3, reject_message = ?4 WHERE event_id = ?1"
                            ),
                            params![id, retry_at, code_text, message],
                        )
                        .map_err(self.db())?;
                    return Ok(AckOutcome::Held { retry_at });
                }
                if state == "acked" {
                    // The event itself is delivered: a refusal of its clip
                    // gives up the clip only, and the event is done — its
                    // directory goes as a delivered one's does (kept, it
                    // sat outside every limit for ever).
                    self.conn
                        .execute(
                            "UPDATE events SET clip_state = 'rejected', reject_code = ?2,
                                 reject_message = ?3, done_at = ?4 WHERE event_id = ?1",
                            params![id, code_text, message, now],
                        )
                        .map_err(self.db())?;
                    self.finish_dir(&id, &dir)?;
                    return Ok(AckOutcome::ClipRejected);
                }
                self.conn
                    .execute(
                        "UPDATE events SET state = 'rejected', reject_code = ?2, reject_message = ?3,
                             done_at = ?4 WHERE event_id = ?1",
                        params![id, code_text, message, now],
                    )
                    .map_err(self.db())?;
                Ok(AckOutcome::Rejected)
            }
            (_, None) => {
                if state == "acked" {
                    return Ok(AckOutcome::Delivered { done: false });
                }
                let done = matches!(clip_state.as_str(), "none" | "evicted" | "acked");
                self.conn
                    .execute(
                        "UPDATE events SET state = 'acked', done_at = ?2, retry_at = NULL, holds = 0
                         WHERE event_id = ?1",
                        params![id, done.then_some(now)],
                    )
                    .map_err(self.db())?;
                if done {
                    self.finish_dir(&id, &dir)?;
                } else {
                    self.drop_delivered_stills(&id, &dir)?;
                }
                Ok(AckOutcome::Delivered { done })
            }
            (_, Some(_item)) => {
                let done = state == "acked";
                self.conn
                    .execute(
                        "UPDATE events SET clip_state = 'acked', done_at = ?2, retry_at = NULL,
                             holds = 0 WHERE event_id = ?1",
                        params![id, done.then_some(now)],
                    )
                    .map_err(self.db())?;
                if done {
                    self.finish_dir(&id, &dir)?;
                } else {
                    self.drop_delivered_stills(&id, &dir)?;
                }
                Ok(AckOutcome::Delivered { done })
            }
        }
    }

    /// Applies the bytes that arrived on the ack topic, if `policy`
    /// believes them (signed by a trusted server key, for this device);
    /// otherwise nothing changes and the refusal says why.
    pub fn apply_ack_bytes(
        &mut self,
        bytes: &[u8],
        policy: &AckPolicy,
    ) -> Result<(AckOutcome, CheckedAck), AckError> {
        let checked = policy.check(bytes).map_err(AckError::Refused)?;
        let outcome = self.apply_ack(&checked.ack)?;
        Ok((outcome, checked))
    }
}

/// Whether a rejection says the device's or the server's state is at
/// fault rather than the event's content: the device not enrolled (yet) or
/// revoked (`unknown_device`; the server sends it for both), a signature
/// that does not verify with the key the server holds for this device
/// (this device signed the very bytes the rejection is bound to, so the
/// server holds another key: an enrolment to correct), or a server error.
/// Such an event is held and sent again ([`hold_for`]): a box that starts
/// before it is enrolled must not lose what it sees meanwhile.
pub fn state_at_fault(code: &RejectCode) -> bool {
    match code {
        RejectCode::UnknownDevice | RejectCode::BadSignature | RejectCode::Internal => true,
        RejectCode::Other(c) => matches!(c.as_str(), "revoked_device" | "unknown_device"),
        _ => false,
    }
}

/// How long a row waits after its `holds`-th refusal for a state at
/// fault: a minute, doubling, at most an hour — long enough not to flood
/// a server that refuses the device, short enough that an enrolment done
/// in the afternoon brings the morning's violations in.
pub fn hold_for(holds: i64) -> std::time::Duration {
    let secs = 60u64 << holds.clamp(0, 6);
    std::time::Duration::from_millis((secs * 1000).min(super::due::MAX_HOLD_MS as u64))
}

/// Whether `rejected` (the hash a rejecting item ack is bound to) names
/// bytes this device sent for clip `name`: the whole file (the server
/// refuses an assembled clip that disagrees with the signed manifest) or
/// one of the chunk frames it is cut into (a chunk refused on arrival).
/// Chunking is deterministic, so the frames are rebuilt from the file
/// rather than remembered; this runs only when a rejection arrives.
fn clip_was_sent_as(event_id: Uuid, name: &str, path: &Path, rejected: &str) -> bool {
    let Ok(file) = std::fs::read(path) else {
        return false;
    };
    if protocol::sha256_hex(&file) == rejected {
        return true;
    }
    protocol::ClipChunk::split(event_id, name, &file)
        .iter()
        .filter_map(|c| c.encode().ok())
        .any(|frame| protocol::sha256_hex(&frame) == rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::SigningKey;
    use uuid::Uuid;

    fn server() -> SigningKey {
        SigningKey::from_bytes(&[0x5e; 32])
    }

    #[test]
    fn no_key_without_the_opt_out_is_an_error() {
        assert!(matches!(
            AckPolicy::new("dev-1", vec![], false),
            Err(AckPolicyError::NoServerKey)
        ));
    }

    #[test]
    fn the_secure_policy_believes_only_signed_acks_for_this_device() {
        let p = AckPolicy::new("dev-1", vec![server().verifying_key()], false).unwrap();
        let id = Uuid::from_u128(9);
        let good = Ack::stored(id).sign_for("dev-1", &server()).unwrap();
        assert_eq!(p.check(&good).unwrap().signed_by, Some(0));
        let unsigned = Ack::stored(id).to_json().unwrap();
        assert_eq!(p.check(&unsigned).unwrap_err().reason(), "unsigned");
        let other = Ack::stored(id).sign_for("dev-2", &server()).unwrap();
        assert_eq!(p.check(&other).unwrap_err().reason(), "wrong_device");
        let rogue = Ack::stored(id)
            .sign_for("dev-1", &SigningKey::from_bytes(&[1; 32]))
            .unwrap();
        assert_eq!(p.check(&rogue).unwrap_err().reason(), "bad_signature");
    }

    #[test]
    fn the_lab_policy_lets_unsigned_acks_through_but_not_misdirected_or_forged_ones() {
        let id = Uuid::from_u128(9);
        let unsigned = Ack::stored(id).to_json().unwrap();
        let lab = AckPolicy::new("dev-1", vec![], true).unwrap();
        assert_eq!(lab.check(&unsigned).unwrap().signed_by, None);
        let signed = Ack::stored(id).sign_for("dev-1", &server()).unwrap();
        assert_eq!(lab.check(&signed).unwrap().signed_by, None);
        let other = Ack::stored(id).sign_for("dev-2", &server()).unwrap();
        assert!(lab.check(&other).is_err());
        // With a key, a signature that fails is still refused.
        let keyed = AckPolicy::new("dev-1", vec![server().verifying_key()], true).unwrap();
        assert_eq!(keyed.check(&unsigned).unwrap().signed_by, None);
        let rogue = Ack::stored(id)
            .sign_for("dev-1", &SigningKey::from_bytes(&[1; 32]))
            .unwrap();
        assert!(keyed.check(&rogue).is_err());
    }
}
