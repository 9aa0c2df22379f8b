//! Field validation: each bad value is rejected with its field's path.

mod common;

use common::*;
use protocol::{
    Alarm, ClockSync, EvidenceItem, EvidenceRole, Message, Plate, PlateColour, PlateSource,
    SchemaVersion, TrackPoint, ViolationEvent, ViolationType,
};

/// A mutation that should make the event invalid.
type Mutation = Box<dyn Fn(&mut ViolationEvent)>;

fn field_of(event: &ViolationEvent) -> String {
    event.validate().expect_err("should be invalid").field
}

#[test]
fn sample_is_valid() {
    sample_event().validate().unwrap();
    sample_heartbeat().validate().unwrap();
}

#[test]
fn each_bad_event_field_is_named() {
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "schema_version",
            Box::new(|e| e.schema_version = SchemaVersion::new(2, 0)),
        ),
        ("event_id", Box::new(|e| e.event_id = uuid::Uuid::nil())),
        ("device_id", Box::new(|e| e.device_id = String::new())),
        ("device_id", Box::new(|e| e.device_id = "edge/01".into())),
        ("camera_id", Box::new(|e| e.camera_id = "cam#1".into())),
        ("site", Box::new(|e| e.site = "x".repeat(65))),
        (
            "clock.offset_ms",
            Box::new(|e| e.clock = ClockSync::synced(90_000_000, "ntp")),
        ),
        (
            "plate.confidence",
            Box::new(|e| e.plate.confidence = Some(1.01)),
        ),
        (
            "plate.confidence",
            Box::new(|e| e.plate.confidence = Some(-0.1)),
        ),
        ("plate.confidence", Box::new(|e| e.plate.confidence = None)),
        (
            "plate.text",
            Box::new(|e| e.plate.text = Some("30a-12345".into())),
        ),
        ("plate.text", Box::new(|e| e.plate.text = None)),
        (
            "plate.text",
            Box::new(|e| {
                e.plate = Plate {
                    readable: false,
                    ..e.plate.clone()
                }
            }),
        ),
        ("plate.lines", Box::new(|e| e.plate.lines = Some(3))),
        (
            "plate.source.plate_box",
            Box::new(|e| {
                // The plate of the car beside the violator.
                e.plate.source = Some(PlateSource {
                    frame: 120372,
                    plate_box: [1300, 700, 90, 22],
                    vehicle_box: [800, 500, 300, 260],
                })
            }),
        ),
        (
            "plate.source.vehicle_box",
            Box::new(|e| {
                e.plate.source = Some(PlateSource {
                    frame: 120372,
                    plate_box: [900, 700, 90, 22],
                    vehicle_box: [800, 500, 0, 260],
                })
            }),
        ),
        (
            "plate.source.plate_box",
            Box::new(|e| {
                e.plate.source = Some(PlateSource {
                    frame: 120372,
                    plate_box: [u32::MAX - 5, 700, 90, 22],
                    vehicle_box: [800, 500, 300, 260],
                })
            }),
        ),
        (
            "plate.source.frame",
            Box::new(|e| {
                e.plate.source = Some(PlateSource {
                    frame: u64::MAX,
                    plate_box: [900, 700, 90, 22],
                    vehicle_box: [800, 500, 300, 260],
                })
            }),
        ),
        (
            "plate.source",
            Box::new(|e| {
                e.plate = Plate {
                    source: Some(PlateSource {
                        frame: 120372,
                        plate_box: [900, 700, 90, 22],
                        vehicle_box: [800, 500, 300, 260],
                    }),
                    ..Plate::unreadable(PlateColour::White)
                }
            }),
        ),
        (
            "plate.display",
            Box::new(|e| e.plate.display = Some("30A\n123".into())),
        ),
        (
            "speed",
            Box::new(|e| e.violation_type = ViolationType::Speeding),
        ),
        ("signal", Box::new(|e| e.signal = None)),
        (
            "track.last_seen",
            Box::new(|e| e.track.last_seen = e.track.first_seen - time::Duration::SECOND),
        ),
        (
            "track.points",
            Box::new(|e| {
                e.track.points = vec![
                    TrackPoint {
                        frame: 1,
                        x: 0,
                        y: 0
                    };
                    65
                ]
            }),
        ),
        ("track.track_id", Box::new(|e| e.track.track_id = u64::MAX)),
        (
            "track.points[0]",
            Box::new(|e| {
                e.track.points = vec![TrackPoint {
                    frame: 1,
                    x: u32::MAX,
                    y: 0,
                }]
            }),
        ),
        // No clock at all: past what a time zone shift can hold.
        (
            "event_time",
            Box::new(|e| {
                e.event_time = time::macros::datetime!(9999-12-31 23:59:59 UTC);
            }),
        ),
        (
            "event_time",
            Box::new(|e| e.event_time = time::macros::datetime!(1969-12-31 23:59:59 UTC)),
        ),
        (
            "track.first_seen",
            Box::new(|e| e.track.first_seen = time::macros::datetime!(2400-01-01 0:00 UTC)),
        ),
        ("track.riders", Box::new(|e| e.track.riders = Some(0))),
        (
            "speed.uncertainty_kmh",
            Box::new(|e| {
                e.speed = Some(protocol::Speed {
                    measured_kmh: 60.0,
                    limit_kmh: 50,
                    uncertainty_kmh: Some(-1.0),
                })
            }),
        ),
        ("track.riders", Box::new(|e| e.track.riders = Some(7))),
        ("evidence", Box::new(|e| e.evidence.clear())),
        (
            "evidence",
            Box::new(|e| {
                e.evidence = (0..17)
                    .map(|i| {
                        EvidenceItem::from_bytes(
                            format!("f{i}.jpg"),
                            "image/jpeg",
                            EvidenceRole::Frame,
                            b"x",
                        )
                    })
                    .collect()
            }),
        ),
        (
            "evidence[0].sha256",
            Box::new(|e| e.evidence[0].sha256 = "00".repeat(31)),
        ),
        (
            "evidence[0].sha256",
            Box::new(|e| e.evidence[0].sha256 = e.evidence[0].sha256.to_uppercase()),
        ),
        (
            "evidence[1].size_bytes",
            Box::new(|e| e.evidence[1].size_bytes = 1 << 40),
        ),
        (
            "evidence[2].name",
            Box::new(|e| e.evidence[2].name = "../../etc/passwd".into()),
        ),
        (
            "evidence[2].name",
            Box::new(|e| e.evidence[2].name = "overview.jpg".into()),
        ),
        (
            "evidence[0].media_type",
            Box::new(|e| e.evidence[0].media_type = "jpeg".into()),
        ),
        (
            "software_version",
            Box::new(|e| e.software_version = String::new()),
        ),
    ];
    for (want, mutate) in cases {
        let mut event = sample_event();
        mutate(&mut event);
        let err = event.validate().expect_err(want);
        assert_eq!(err.field, want, "{err}");
        assert!(!err.reason.is_empty());
    }
}

#[test]
fn plate_with_dj_is_valid_and_verifies() {
    let mut event = sample_event();
    event.vehicle_class = protocol::VehicleClass::Motorcycle;
    event.plate.text = Some("29MĐ112345".into());
    event.plate.display = Some("29-MĐ1 123.45".into());
    event.plate.lines = Some(2);
    event.validate().unwrap();
    let key = random_key();
    let wire = event.sign(&key).unwrap().to_json().unwrap();
    let back = protocol::SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap();
    assert_eq!(back, event);
    event.plate.text = Some("29MÐ112345".into()); // U+00D0, not canonical
    assert_eq!(field_of(&event), "plate.text");
}

#[test]
fn plate_source_is_signed_and_read_back_and_a_1_0_event_has_none() {
    let mut event = sample_event();
    // A plate on the vehicle's bottom edge: its centre is inside the box.
    event.plate.source = Some(PlateSource {
        frame: 120372,
        plate_box: [905, 745, 90, 30],
        vehicle_box: [800, 500, 300, 260],
    });
    event.validate().unwrap();
    let key = random_key();
    let wire = event.sign(&key).unwrap().to_json().unwrap();
    assert!(String::from_utf8_lossy(&wire).contains("\"vehicle_box\":[800,500,300,260]"));
    let back = protocol::SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap();
    assert_eq!(back.plate.source, event.plate.source);

    let mut old = sample_event();
    old.schema_version = SchemaVersion::new(1, 0);
    old.plate.source = None;
    let wire = old.sign(&key).unwrap().to_json().unwrap();
    let back = protocol::SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap();
    assert_eq!(back.plate.source, None);
    assert_eq!(back.schema_version, SchemaVersion::new(1, 0));
}

#[test]
fn unreadable_plate_is_valid_without_text() {
    let mut event = sample_event();
    event.plate = Plate::unreadable(PlateColour::Yellow);
    event.validate().unwrap();
    event.plate.confidence = Some(0.2);
    event.validate().unwrap();
    event.plate.display = Some("30A-123.45".into());
    assert_eq!(field_of(&event), "plate.display");
}

#[test]
fn heartbeat_fields_are_named() {
    let mut hb = sample_heartbeat();
    hb.cameras[1].camera_id = hb.cameras[0].camera_id.clone();
    assert_eq!(hb.validate().unwrap_err().field, "cameras[1].camera_id");
    let mut hb = sample_heartbeat();
    hb.cameras[0].analysed_fps = f64::INFINITY;
    assert_eq!(hb.validate().unwrap_err().field, "cameras[0].analysed_fps");
    let mut hb = sample_heartbeat();
    hb.alarms.push(Alarm::Other(String::new()));
    assert_eq!(hb.validate().unwrap_err().field, "alarms[1]");
    let mut hb = sample_heartbeat();
    hb.alarms.push(Alarm::Other("disk_low".into()));
    assert_eq!(hb.validate().unwrap_err().field, "alarms[1]");
    let mut hb = sample_heartbeat();
    hb.disk_free_bytes = u64::MAX;
    assert_eq!(hb.validate().unwrap_err().field, "disk_free_bytes");
    let mut hb = sample_heartbeat();
    hb.boot.as_mut().unwrap().seq = 0;
    assert_eq!(hb.validate().unwrap_err().field, "boot.seq");
    hb.boot.as_mut().unwrap().seq = u64::MAX;
    assert_eq!(hb.validate().unwrap_err().field, "boot.seq");
    // Older agents send none.
    hb.boot = None;
    hb.validate().unwrap();
}

/// A time taken from a recording played back is marked as such, and is
/// nobody's synchronised clock.
#[test]
fn a_recordings_time_says_so() {
    let c = protocol::ClockSync::recording();
    assert!(c.is_recording());
    assert!(c.validate_at("clock").is_ok());
    assert_eq!(c.status, protocol::ClockSyncStatus::Unknown);
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"status": "unknown", "source": "recording"})
    );
    assert!(!protocol::ClockSync::unknown().is_recording());
    assert!(!protocol::ClockSync::synced(3, "recording").is_recording());
}
