//! The wire protocol between edge agents and the ingest server: the messages
//! that cross MQTT (violation event with its evidence manifest, heartbeat,
//! ack; and a signal controller's [`SignalPhase`] to the edge), their schema version, the canonical byte form they are signed over,
//! the Ed25519 signed envelope, and the topic names. Nothing else lives here:
//! no I/O, no MQTT client, no storage.
//!
//! The typical flows:
//!
//! * edge: build a [`ViolationEvent`], [`ViolationEvent::sign`] it, publish
//!   [`Signed::to_json`] on [`topics::events_topic`].
//! * server: [`topics::parse_topic`] the topic, [`SignedEvent::from_json`] the
//!   bytes, look up the device's key by [`Signed::device_id`], then
//!   [`Signed::verify_for_topic`]; store; answer with an [`Ack`], signed
//!   for the device with the server's key ([`Ack::sign_for`]), on
//!   [`topics::ack_topic`] (use [`ProtocolError::reject_code`] for rejects).
//! * edge: believe an ack only through [`Ack::verify_signed`] with the
//!   server key(s) it was given at installation.
//!
//! The rules (versioning, canonical bytes, signature input) are written out
//! in the crate's `README.md`, precisely enough for another implementation.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod ack;
pub mod canonical;
pub mod clock;
pub mod error;
pub mod event;
pub mod evidence;
pub mod heartbeat;
pub mod message;
pub mod phase;
pub mod signing;
pub mod topics;
pub mod transfer;
pub mod validate;
pub mod version;

pub use ack::{Ack, AckStatus, AckVerifyError, RejectCode, VerifiedAck};
pub use canonical::{CanonicalError, canonical_bytes, canonical_bytes_of};
pub use clock::{ClockSync, ClockSyncStatus};
pub use error::{ProtocolError, ValidationError};
pub use event::{
    MAX_RIDERS, Plate, PlateColour, PlateSource, SignalObservation, SignalState, Speed, TrackPoint,
    TrackSummary, VehicleClass, ViolationEvent, ViolationType,
};
pub use evidence::{
    EvidenceError, EvidenceItem, EvidenceRole, FrameStamp, sha256_hex, sha256_hex_reader,
};
pub use heartbeat::{Alarm, BootSeq, CameraState, CameraStatus, Heartbeat, OutboxStatus};
pub use message::{DeviceMessage, Message};
pub use phase::SignalPhase;
pub use signing::{Signed, SignedEvent, SignedHeartbeat};
pub use topics::{Channel, TopicAddress, TopicError};
pub use transfer::{
    Attachment, ChunkHeader, ClipChunk, EventBundle, FrameError, check_attachments,
};
pub use version::{SchemaVersion, VersionError};

/// Re-exported so callers name the same key types this crate signs with.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
