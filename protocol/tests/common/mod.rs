//! Shared fixtures for the integration tests: a sample event, heartbeat and
//! keys, plus an independent implementation of the envelope signing rule
//! written from the README, used to sign raw JSON values.

#![allow(dead_code)]

use ed25519_dalek::{Signer, SigningKey};
use protocol::{
    Alarm, BootSeq, CameraState, CameraStatus, ClockSync, EvidenceItem, EvidenceRole, Heartbeat,
    OutboxStatus, Plate, PlateColour, PlateSource, SchemaVersion, SignalObservation, SignalState,
    TrackPoint, TrackSummary, VehicleClass, ViolationEvent, ViolationType, canonical_bytes,
};
use serde_json::{Value, json};
use time::macros::datetime;
use uuid::Uuid;

pub const OVERVIEW: &[u8] = b"\xff\xd8\xff\xe0 pretend this is the overview jpeg";
pub const PLATE_CROP: &[u8] = b"\xff\xd8\xff\xe0 pretend this is the plate crop";
pub const CLIP: &[u8] = b"\x00\x00\x00\x18ftypmp42 pretend clip";

/// The fixed test key used in README examples: 32 bytes of 0x07.
pub fn readme_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

pub fn random_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

pub fn sample_event() -> ViolationEvent {
    ViolationEvent {
        schema_version: SchemaVersion::CURRENT,
        event_id: Uuid::from_u128(0x6f1c_2a4e_8b3d_4c5f_9a7b_1e2d_3c4b_5a69),
        device_id: "hn-cg-edge-01".into(),
        camera_id: "cam-north".into(),
        site: "hn-caugiay-xuanthuy".into(),
        event_time: datetime!(2025-03-14 08:15:30.25 +07:00),
        clock: ClockSync::synced(-3, "ntp:10.20.0.1"),
        violation_type: ViolationType::RedLight,
        vehicle_class: VehicleClass::Car,
        plate: Plate {
            readable: true,
            text: Some("30A12345".into()),
            display: Some("30A-123.45".into()),
            confidence: Some(0.973),
            colour: PlateColour::White,
            lines: Some(1),
            source: Some(PlateSource {
                frame: 120372,
                plate_box: [903, 640, 90, 30],
                vehicle_box: [798, 428, 300, 260],
            }),
        },
        speed: None,
        signal: Some(SignalObservation {
            state: SignalState::Red,
            red_for_ms: Some(4200),
        }),
        track: TrackSummary {
            track_id: 18422,
            first_seen: datetime!(2025-03-14 08:15:28.9 +07:00),
            last_seen: datetime!(2025-03-14 08:15:31.6 +07:00),
            frame_count: 68,
            points: vec![
                TrackPoint {
                    frame: 120_340,
                    x: 912,
                    y: 1004,
                },
                TrackPoint {
                    frame: 120_372,
                    x: 948,
                    y: 688,
                },
                TrackPoint {
                    frame: 120_407,
                    x: 1010,
                    y: 402,
                },
            ],
            riders: None,
        },
        evidence: vec![
            EvidenceItem::from_bytes(
                "overview.jpg",
                "image/jpeg",
                EvidenceRole::Overview,
                OVERVIEW,
            )
            .with_frame(120_372, datetime!(2025-03-14 08:15:30.25 +07:00)),
            EvidenceItem::from_bytes(
                "plate.jpg",
                "image/jpeg",
                EvidenceRole::PlateCrop,
                PLATE_CROP,
            )
            .with_frame(120_372, datetime!(2025-03-14 08:15:30.25 +07:00)),
            EvidenceItem::from_bytes("clip.mp4", "video/mp4", EvidenceRole::Clip, CLIP),
        ],
        software_version: "edge-agent 0.1.0".into(),
        site_config_sha256: None,
    }
}

pub fn sample_heartbeat() -> Heartbeat {
    Heartbeat {
        schema_version: SchemaVersion::CURRENT,
        device_id: "hn-cg-edge-01".into(),
        site: "hn-caugiay-xuanthuy".into(),
        time: datetime!(2025-03-14 08:16:00 +07:00),
        software_version: "edge-agent 0.1.0".into(),
        uptime_s: 86_412,
        cameras: vec![
            CameraStatus {
                camera_id: "cam-north".into(),
                state: CameraState::Streaming,
                last_frame_time: Some(datetime!(2025-03-14 08:15:59.96 +07:00)),
                analysed_fps: 12.5,
            },
            CameraStatus {
                camera_id: "cam-south".into(),
                state: CameraState::Stalled,
                last_frame_time: None,
                analysed_fps: 0.0,
            },
        ],
        outbox: OutboxStatus {
            depth: 3,
            oldest_age_s: Some(41),
            evictions: Some(2),
        },
        disk_free_bytes: 48_318_382_080,
        alarms: vec![Alarm::CameraStalled],
        clock: ClockSync::synced(-3, "ntp:10.20.0.1"),
        boot: Some(BootSeq {
            boot_id: Uuid::from_u128(0x5f0c_8a3e_2b7d_4c1e_9a6f_3d2e_1b0c_9a87),
            seq: 7202,
        }),
    }
}

/// Signs a raw payload value the way README describes, independently of the
/// crate's `Signed::sign`: Ed25519 over the canonical bytes of
/// `{"device_id", "kind", "payload"}` plus `extra` members.
pub fn sign_raw(
    kind: &str,
    device_id: &str,
    payload: Value,
    extra: &[(&str, Value)],
    key: &SigningKey,
) -> Vec<u8> {
    let mut envelope = json!({ "kind": kind, "device_id": device_id, "payload": payload });
    for (k, v) in extra {
        envelope[*k] = v.clone();
    }
    let signature = key.sign(&canonical_bytes(&envelope).unwrap());
    envelope["signature"] = Value::String(hex::encode(signature.to_bytes()));
    serde_json::to_vec_pretty(&envelope).unwrap()
}

/// The fixed server test key used in the README's signed-ack example: 32
/// bytes of 0x09.
pub fn readme_server_key() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

/// Signs a raw ack object the way README describes, independently of
/// `Ack::sign_for`: Ed25519 over the canonical bytes of the object (which
/// must already hold `kind` and `device_id`), added as `signature`.
pub fn sign_raw_ack(mut ack: Value, key: &SigningKey) -> Vec<u8> {
    let signature = key.sign(&canonical_bytes(&ack).unwrap());
    ack["signature"] = Value::String(hex::encode(signature.to_bytes()));
    serde_json::to_vec_pretty(&ack).unwrap()
}
