//! Serialise → parse → equal, for every message, and the JSON shape of the
//! pieces other implementations depend on.

mod common;

use common::*;
use protocol::{
    Ack, AckStatus, Alarm, Heartbeat, Message, Plate, PlateColour, ProtocolError, RejectCode,
    Speed, ViolationEvent, ViolationType,
};
use serde_json::json;
use uuid::Uuid;

#[test]
fn event_round_trips() {
    let event = sample_event();
    let bytes = event.to_json().unwrap();
    assert_eq!(ViolationEvent::from_json(&bytes).unwrap(), event);
    let text = serde_json::to_string_pretty(&event).unwrap();
    assert_eq!(
        serde_json::from_str::<ViolationEvent>(&text).unwrap(),
        event
    );
}

#[test]
fn event_variants_round_trip() {
    let mut event = sample_event();
    event.violation_type = ViolationType::Speeding;
    event.signal = None;
    event.speed = Some(Speed {
        measured_kmh: 71.4,
        limit_kmh: 50,
        uncertainty_kmh: None,
    });
    event.plate = Plate::unreadable(PlateColour::Unknown);
    let bytes = event.to_json().unwrap();
    assert_eq!(ViolationEvent::from_json(&bytes).unwrap(), event);
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    // Absent optionals are omitted, not null.
    assert!(value.get("signal").is_none());
    assert_eq!(
        value["plate"],
        json!({ "readable": false, "colour": "unknown" })
    );
}

#[test]
fn event_json_shape() {
    let value = serde_json::to_value(sample_event()).unwrap();
    assert_eq!(value["schema_version"], "1.4");
    assert!(
        value["track"].get("riders").is_none(),
        "no riders seen: the member is left out, so 1.1 events keep their bytes"
    );
    let mut two = sample_event();
    two.track.riders = Some(2);
    let value2 = serde_json::to_value(&two).unwrap();
    assert_eq!(value2["track"]["riders"], 2);
    let back: protocol::ViolationEvent = serde_json::from_value(value2).unwrap();
    assert_eq!(back.track.riders, Some(2));
    assert_eq!(
        value["plate"]["source"],
        json!({ "frame": 120372, "plate_box": [903, 640, 90, 30], "vehicle_box": [798, 428, 300, 260] })
    );
    assert_eq!(value["event_id"], "6f1c2a4e-8b3d-4c5f-9a7b-1e2d3c4b5a69");
    assert_eq!(value["event_time"], "2025-03-14T08:15:30.25+07:00");
    assert_eq!(value["violation_type"], "red_light");
    assert_eq!(value["vehicle_class"], "car");
    assert_eq!(
        value["clock"],
        json!({ "status": "synced", "offset_ms": -3, "source": "ntp:10.20.0.1" })
    );
    assert_eq!(
        value["signal"],
        json!({ "state": "red", "red_for_ms": 4200 })
    );
    assert_eq!(value["evidence"][1]["role"], "plate_crop");
    assert_eq!(
        value["track"]["points"][0],
        json!({ "frame": 120340, "x": 912, "y": 1004 })
    );
}

#[test]
fn every_enum_value_round_trips() {
    for vt in [
        "red_light",
        "stop_line",
        "wrong_lane",
        "wrong_way",
        "speeding",
        "illegal_stopping",
        "no_helmet",
    ] {
        let parsed: ViolationType = serde_json::from_value(json!(vt)).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), vt);
    }
    for vc in ["car", "motorcycle", "bus", "truck"] {
        let parsed: protocol::VehicleClass = serde_json::from_value(json!(vc)).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), vc);
    }
    for c in ["white", "yellow", "blue", "red", "unknown"] {
        let parsed: PlateColour = serde_json::from_value(json!(c)).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), c);
    }
}

#[test]
fn heartbeat_round_trips() {
    let hb = sample_heartbeat();
    let bytes = hb.to_json().unwrap();
    assert_eq!(Heartbeat::from_json(&bytes).unwrap(), hb);
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value["cameras"][0]["state"], "streaming");
    assert!(value["cameras"][1].get("last_frame_time").is_none());
    assert_eq!(
        value["outbox"],
        json!({ "depth": 3, "oldest_age_s": 41, "evictions": 2 })
    );
    assert_eq!(value["alarms"], json!(["camera_stalled"]));
}

#[test]
fn unknown_alarm_is_kept() {
    let mut value = serde_json::to_value(sample_heartbeat()).unwrap();
    value["alarms"] = json!(["outbox_nearly_full", "fan_failure"]);
    let hb = Heartbeat::from_value(&value).unwrap();
    assert_eq!(
        hb.alarms,
        vec![Alarm::OutboxNearlyFull, Alarm::Other("fan_failure".into())]
    );
    assert_eq!(
        serde_json::to_value(&hb).unwrap()["alarms"],
        value["alarms"]
    );
}

#[test]
fn ack_round_trips_and_is_flat() {
    let id = Uuid::from_u128(42);
    for ack in [
        Ack::stored(id),
        Ack::duplicate(id),
        Ack::rejected(
            id,
            RejectCode::BadSignature,
            "signature verification failed",
        ),
        Ack::rejected(id, RejectCode::Other("quota".into()), "too many"),
    ] {
        let bytes = ack.to_json().unwrap();
        assert_eq!(Ack::from_json(&bytes).unwrap(), ack);
    }
    let value = serde_json::to_value(Ack::rejected(
        id,
        RejectCode::Invalid,
        "plate.confidence: bad",
    ))
    .unwrap();
    assert_eq!(
        value,
        json!({
            "schema_version": "1.2",
            "event_id": "00000000-0000-0000-0000-00000000002a",
            "status": "rejected",
            "code": "invalid",
            "message": "plate.confidence: bad"
        })
    );
    assert!(Ack::stored(id).is_durable() && Ack::duplicate(id).is_durable());
    assert!(!Ack::rejected(id, RejectCode::Internal, "").is_durable());
}

#[test]
fn ack_tolerates_newer_minor_fields() {
    let text = br#"{"schema_version":"1.4","event_id":"00000000-0000-0000-0000-00000000002a",
        "status":"stored","stored_at":"2025-03-14T01:15:31Z","shard":7}"#;
    let ack = Ack::from_json(text).unwrap();
    assert_eq!(ack.status, AckStatus::Stored);
    let text = br#"{"schema_version":"1.4","event_id":"00000000-0000-0000-0000-00000000002a",
        "status":"rejected","code":"rate_limited","message":"slow down","retry_after_s":30}"#;
    let ack = Ack::from_json(text).unwrap();
    assert_eq!(
        ack.status,
        AckStatus::Rejected {
            code: RejectCode::Other("rate_limited".into()),
            message: "slow down".into()
        }
    );
}

#[test]
fn ack_errors_are_clear() {
    let err = Ack::from_json(br#"{"schema_version":"2.1","event_id":"x"}"#).unwrap_err();
    assert!(
        matches!(err, ProtocolError::UnsupportedVersion { .. }),
        "{err}"
    );
    let err = Ack::from_json(br#"{"schema_version":"1.0","event_id":"00000000-0000-0000-0000-00000000002a","status":"lost"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("lost"), "{err}");
    let err = Ack::from_json(b"{\"schema_version\":\"1.0\",").unwrap_err();
    assert!(matches!(err, ProtocolError::MalformedJson(_)), "{err}");
}

#[test]
fn rejected_for_uses_error_code() {
    let err = ViolationEvent::from_json(b"not json").unwrap_err();
    let ack = Ack::rejected_for(Uuid::from_u128(1), &err);
    match ack.status {
        AckStatus::Rejected { code, message } => {
            assert_eq!(code, RejectCode::Malformed);
            assert!(message.starts_with("malformed JSON"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn schema_errors_name_the_path() {
    let mut value = serde_json::to_value(sample_event()).unwrap();
    value["evidence"][2]["size_bytes"] = json!("big");
    let err = ViolationEvent::from_value(&value).unwrap_err();
    assert!(err.to_string().contains("evidence[2].size_bytes"), "{err}");
    let mut value = serde_json::to_value(sample_event()).unwrap();
    value.as_object_mut().unwrap().remove("camera_id");
    let err = ViolationEvent::from_value(&value).unwrap_err();
    assert!(err.to_string().contains("camera_id"), "{err}");
    let mut value = serde_json::to_value(sample_event()).unwrap();
    value["event_time"] = json!("2025-03-14 08:15:30");
    let err = ViolationEvent::from_value(&value).unwrap_err();
    assert!(err.to_string().contains("event_time"), "{err}");
}

#[test]
fn evidence_checks_against_manifest() {
    let event = sample_event();
    assert_eq!(
        event.check_evidence("plate.jpg", PLATE_CROP).unwrap().name,
        "plate.jpg"
    );
    assert!(event.check_evidence("plate.jpg", OVERVIEW).is_err());
    assert!(event.check_evidence("missing.jpg", OVERVIEW).is_err());
    let (hash, len) = protocol::sha256_hex_reader(CLIP).unwrap();
    let item = event.evidence_item("clip.mp4").unwrap();
    assert_eq!((item.size_bytes, item.check_digest(&hash)), (len, Ok(())));
}

/// The site file's hash (schema 1.4) is left out when absent, so earlier
/// events keep their bytes, and must be a SHA-256 in hex when present.
#[test]
fn the_site_files_hash_is_optional_and_checked() {
    let plain = serde_json::to_value(sample_event()).unwrap();
    assert!(plain.get("site_config_sha256").is_none());
    let mut e = sample_event();
    e.site_config_sha256 = Some("ab".repeat(32));
    assert!(e.validate().is_ok());
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["site_config_sha256"], "ab".repeat(32));
    e.site_config_sha256 = Some("AB".repeat(32));
    assert_eq!(e.validate().unwrap_err().field, "site_config_sha256");
}
