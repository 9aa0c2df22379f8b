//! Unit tests of `package/mod.rs`: the signature verdict.

use ed25519_dalek::{Signer, SigningKey};

use super::*;

/// A signed event the device really signed but that fails a field
/// check (here: a time outside today's bounds) is reported as a valid
/// signature with the failed check named, not as "invalid"; a signature
/// by another key is invalid.
#[test]
fn a_field_check_is_not_a_bad_signature() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let payload = serde_json::json!({
        "schema_version": "1.0",
        "event_id": "6f1c2a4e-8b3d-4c5f-9a7b-1e2d3c4b5a69",
        "device_id": "d", "camera_id": "c", "site": "s",
        "event_time": "2300-03-14T08:15:30+07:00",
        "clock": {"status": "synced"},
        "violation_type": "red_light", "vehicle_class": "car",
        "plate": {"readable": false, "colour": "white"},
        "track": {"track_id": 1, "first_seen": "2300-03-14T08:15:29+07:00",
                  "last_seen": "2300-03-14T08:15:30+07:00", "frame_count": 1, "points": []},
        "evidence": [], "software_version": "t"
    });
    let envelope = |signature: String| {
        serde_json::json!({
            "kind": "violation_event", "device_id": "d",
            "payload": payload.clone(), "signature": signature,
        })
    };
    let unsigned = Signed::<ViolationEvent>::from_value(envelope(String::new())).unwrap();
    let sig = key.sign(&unsigned.signing_bytes().unwrap());
    let signed =
        Signed::<ViolationEvent>::from_value(envelope(hex::encode(sig.to_bytes()))).unwrap();
    let device = |k: &SigningKey| Device {
        device_id: "d".into(),
        site: "s".into(),
        public_key: hex::encode(k.verifying_key().to_bytes()),
        enrolled_at: 0,
        revoked_at: None,
        revoked_reason: None,
    };
    let c = check_signature(&signed, Some(device(&key)));
    assert!(c.valid, "{}", c.detail);
    assert!(c.detail.contains("field checks"), "{}", c.detail);
    let other = SigningKey::from_bytes(&[8; 32]);
    let c = check_signature(&signed, Some(device(&other)));
    assert!(!c.valid, "{}", c.detail);
}
