//! The hand-over from post-processing to delivery: a processed violation
//! (rule verdict, plate read on the violator, evidence files with their
//! hashes) becomes a [`ViolationEvent`], is signed with the device key, and
//! goes into the outbox — in that order, so nothing is sent that was not
//! first made durable, and the signature covers every evidence hash.
//!
//! What the event claims is only what the box measured: an unreadable plate
//! stays unreadable (a person reads it at the IOC), the clock's sync state is
//! stamped as it was, and the track summary is the violator's own boxes.

use crate::identity::DeviceIdentity;
use crate::outbox::{Outbox, OutboxError};
use crate::rules::Violation;
use crate::violator::{Processed, ViolatorPlate};
use protocol::{
    ClockSync, Plate, PlateColour, ProtocolError, SchemaVersion, SignedEvent, Speed, ViolationEvent,
};
use std::path::Path;
use uuid::Uuid;

/// Why a violation could not be reported.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The event failed validation or signing (a bug, or a value out of
    /// the protocol's range); the evidence stays in the spool.
    #[error("event {event_id}: {source}")]
    Event {
        /// The event.
        event_id: Uuid,
        /// What the protocol said.
        #[source]
        source: ProtocolError,
    },
    /// The outbox refused it.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// The wire plate for what the reader found on the violator.
pub fn wire_plate(p: &ViolatorPlate) -> Plate {
    let colour = match p.colour.as_str() {
        "white" => PlateColour::White,
        "yellow" => PlateColour::Yellow,
        "blue" => PlateColour::Blue,
        "red" => PlateColour::Red,
        _ => PlateColour::Unknown,
    };
    match &p.text {
        Some(text) => Plate {
            readable: true,
            text: Some(text.clone()),
            display: p.display.clone(),
            confidence: Some(f64::from(p.confidence.clamp(0.0, 1.0))),
            colour,
            lines: p.lines,
        },
        None => Plate::unreadable(colour),
    }
}

/// Builds the event for a processed violation.
pub fn violation_event(
    identity: &DeviceIdentity,
    camera_id: &str,
    event_id: Uuid,
    violation: &Violation,
    processed: &Processed,
    clock: ClockSync,
) -> ViolationEvent {
    let track = processed.track.clone();
    // Vietnamese local time in the record people read; the instant is the same.
    let local = time::UtcOffset::from_hms(7, 0, 0).unwrap_or(time::UtcOffset::UTC);
    ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id,
        device_id: identity.device_id.clone(),
        camera_id: camera_id.to_owned(),
        site: identity.site.clone(),
        event_time: violation.at().unwrap_or(track.last_seen).to_offset(local),
        clock,
        violation_type: violation.rule,
        vehicle_class: violation.class,
        plate: wire_plate(&processed.plate),
        speed: violation.speed.as_ref().map(|s| Speed {
            measured_kmh: s.measured_kmh,
            limit_kmh: s.limit_kmh,
        }),
        signal: violation.signal.clone(),
        track,
        evidence: processed.evidence.clone(),
        software_version: crate::health::SOFTWARE_VERSION.into(),
    }
}

/// Signs `event` and queues it with its evidence directory `dir`.
pub fn sign_and_queue(
    identity: &DeviceIdentity,
    outbox: &mut Outbox,
    event: &ViolationEvent,
    dir: &Path,
) -> Result<SignedEvent, ReportError> {
    let signed =
        SignedEvent::sign(event, identity.signing_key()).map_err(|source| ReportError::Event {
            event_id: event.event_id,
            source,
        })?;
    outbox.enqueue(&signed, &event.camera_id, dir)?;
    Ok(signed)
}
