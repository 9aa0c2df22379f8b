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
    ClockSync, Plate, PlateColour, PlateSource, ProtocolError, SchemaVersion, SignedEvent, Speed,
    ViolationEvent,
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
    // A read that cannot say where on the violator it was made is no
    // read to fine anyone on (the server refuses a readable plate without
    // its source): the case goes out unreadable, for a person to read.
    match (&p.text, plate_source(p)) {
        (Some(text), Some(source)) => Plate {
            readable: true,
            text: Some(text.clone()),
            display: p.display.clone(),
            confidence: Some(f64::from(p.confidence.clamp(0.0, 1.0))),
            colour,
            lines: p.lines,
            source: Some(source),
        },
        (Some(_), None) => {
            tracing::warn!("plate read without a valid source: sent as unreadable");
            Plate::unreadable(colour)
        }
        (None, _) => Plate::unreadable(colour),
    }
}

/// Where the plate was read, in whole pixels: the boxes grow outward to
/// whole pixels (and are cut at the frame's top-left edge). A source that
/// would not pass the protocol's check (a plate centre rounded onto the
/// vehicle box's very edge) is left out rather than failing the event.
fn plate_source(p: &ViolatorPlate) -> Option<PlateSource> {
    let px = |[x, y, w, h]: [f64; 4]| -> [u32; 4] {
        let (x0, y0) = (x.max(0.0).floor(), y.max(0.0).floor());
        let (x1, y1) = ((x + w).ceil(), (y + h).ceil());
        let side = |v: f64| v.clamp(0.0, f64::from(u32::MAX)) as u32;
        [side(x0), side(y0), side(x1 - x0), side(y1 - y0)]
    };
    let [x, y, w, h] = p.bbox?;
    let v = p.vehicle_bbox?;
    let source = PlateSource {
        frame: p.frame,
        plate_box: px([x, y, w, h].map(f64::from)),
        vehicle_box: px([v.x, v.y, v.w, v.h]),
    };
    match source.validate() {
        Ok(()) => Some(source),
        Err(e) => {
            tracing::warn!(error = %e, "plate source left out of the event");
            None
        }
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
            uncertainty_kmh: s.uncertainty_kmh.is_finite().then_some(s.uncertainty_kmh),
        }),
        signal: violation.signal.clone(),
        track,
        evidence: processed.evidence.clone(),
        software_version: crate::health::SOFTWARE_VERSION.into(),
        site_config_sha256: processed.site_sha256.clone(),
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
    // The signed copy first: should the outbox insert fail or the power go
    // now, the next start queues it from the spool (`recover.rs`). Not
    // keeping it costs only that safety net, so it does not stop the insert.
    if let Err(e) = crate::recover::keep_signed(dir, &signed) {
        tracing::warn!(event_id = %event.event_id, error = %e, "signed copy not kept in the spool");
    }
    outbox.enqueue(&signed, &event.camera_id, dir)?;
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;

    fn read(plate: [f32; 4], vehicle: BBox) -> ViolatorPlate {
        ViolatorPlate {
            text: Some("30A12345".into()),
            display: Some("30A-123.45".into()),
            confidence: 0.9,
            lines: Some(1),
            colour: "white".into(),
            frame: 42,
            bbox: Some(plate),
            vehicle_bbox: Some(vehicle),
            frames_read: 3,
            frames_agreeing: 3,
        }
    }

    #[test]
    fn plate_source_grows_to_whole_pixels_inside_the_frame() {
        let p = read(
            [10.4, 20.6, 30.2, 9.9],
            BBox::from_xywh(-3.5, 5.2, 60.0, 40.0),
        );
        let s = wire_plate(&p).source.unwrap();
        assert_eq!(s.frame, 42);
        assert_eq!(s.plate_box, [10, 20, 31, 11]);
        assert_eq!(s.vehicle_box, [0, 5, 57, 41]);
    }

    #[test]
    fn a_read_without_a_valid_source_goes_out_unreadable() {
        // A plate centred well outside the vehicle: never made by the
        // reader (`violator::inside`), but must not fail the event, nor
        // fine anyone on a read nobody can place on the violator.
        let p = read(
            [200.0, 200.0, 30.0, 10.0],
            BBox::from_xywh(0.0, 0.0, 60.0, 40.0),
        );
        let plate = wire_plate(&p);
        assert!(!plate.readable && plate.text.is_none() && plate.source.is_none());
        let mut unread = p.clone();
        unread.text = None;
        assert!(wire_plate(&unread).source.is_none());
    }
}
