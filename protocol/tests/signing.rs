//! Signed envelope: sign/verify, tampering, wrong keys, version tolerance.

mod common;

use common::*;
use protocol::{
    Channel, Message, ProtocolError, RejectCode, SignedEvent, SignedHeartbeat, TopicAddress,
    canonical_bytes,
};
use serde_json::{Value, json};

fn event_value() -> Value {
    serde_json::to_value(sample_event()).unwrap()
}

#[test]
fn signed_event_verifies_after_the_wire() {
    let key = random_key();
    let event = sample_event();
    let signed = event.sign(&key).unwrap();
    let wire = signed.to_json().unwrap();
    let received = SignedEvent::from_json(&wire).unwrap();
    assert_eq!(received.device_id(), "hn-cg-edge-01");
    assert_eq!(received.unverified_event_id(), Some(event.event_id));
    assert_eq!(received.verify(&key.verifying_key()).unwrap(), event);
    // The wire form is itself canonical.
    assert_eq!(
        wire,
        canonical_bytes(&serde_json::from_slice(&wire).unwrap()).unwrap()
    );
}

#[test]
fn signed_heartbeat_verifies() {
    let key = random_key();
    let hb = sample_heartbeat();
    let wire = hb.sign(&key).unwrap().to_json().unwrap();
    let back = SignedHeartbeat::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap();
    assert_eq!(back, hb);
}

#[test]
fn matches_independent_signer() {
    // Signed::sign and the README rule (implemented separately in
    // common::sign_raw) produce envelopes that verify the same way, and
    // Ed25519 is deterministic, so the signatures are identical.
    let key = readme_key();
    let ours = sample_event().sign(&key).unwrap();
    let theirs = SignedEvent::from_json(&sign_raw(
        "violation_event",
        "hn-cg-edge-01",
        event_value(),
        &[],
        &key,
    ))
    .unwrap();
    assert_eq!(ours.signature_hex(), theirs.signature_hex());
    assert!(theirs.verify(&key.verifying_key()).is_ok());
}

#[test]
fn key_order_and_whitespace_do_not_matter() {
    let key = random_key();
    let wire = sample_event().sign(&key).unwrap().to_json().unwrap();
    // Re-print with indentation and keys in reverse order (by hand, since
    // serde_json's Map sorts).
    fn reversed(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push_str("{\n  ");
                let items: Vec<_> = m.iter().rev().collect();
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n  ");
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push_str(" : ");
                    reversed(v, out);
                }
                out.push_str("\n}");
            }
            Value::Array(a) => {
                out.push_str("[ ");
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" , ");
                    }
                    reversed(v, out);
                }
                out.push_str(" ]");
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    reversed(&serde_json::from_slice(&wire).unwrap(), &mut text);
    assert_ne!(text.as_bytes(), &wire[..]);
    let event = SignedEvent::from_json(text.as_bytes())
        .unwrap()
        .verify(&key.verifying_key());
    assert_eq!(event.unwrap(), sample_event());
}

fn tamper(wire: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(wire).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn assert_bad_signature(result: Result<protocol::ViolationEvent, ProtocolError>) {
    match result {
        Err(e @ ProtocolError::BadSignature { .. }) => {
            assert_eq!(e.reject_code(), RejectCode::BadSignature);
            assert!(e.to_string().contains("hn-cg-edge-01"), "{e}");
        }
        other => panic!("expected BadSignature, got {other:?}"),
    }
}

#[test]
fn tampered_field_fails() {
    let key = random_key();
    let wire = sample_event().sign(&key).unwrap().to_json().unwrap();
    let bad = tamper(&wire, |v| v["payload"]["plate"]["text"] = json!("30A12346"));
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
    let bad = tamper(&wire, |v| {
        v["payload"]["plate"]["confidence"] = json!(0.974)
    });
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
    let bad = tamper(&wire, |v| {
        v["payload"]["event_time"] = json!("2025-03-14T08:15:30.26+07:00")
    });
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
}

#[test]
fn tampered_evidence_hash_fails() {
    let key = random_key();
    let wire = sample_event().sign(&key).unwrap().to_json().unwrap();
    let bad = tamper(&wire, |v| {
        v["payload"]["evidence"][1]["sha256"] = json!(protocol::sha256_hex(b"a different crop"))
    });
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
}

#[test]
fn added_or_removed_member_fails() {
    let key = random_key();
    let wire = sample_event().sign(&key).unwrap().to_json().unwrap();
    let bad = tamper(&wire, |v| v["payload"]["note"] = json!("added by attacker"));
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
    let bad = tamper(&wire, |v| {
        v["payload"].as_object_mut().unwrap().remove("signal");
    });
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
    let bad = tamper(&wire, |v| v["relay"] = json!("added by attacker"));
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
}

#[test]
fn wrong_key_fails() {
    let signed = sample_event().sign(&random_key()).unwrap();
    assert_bad_signature(signed.verify(&random_key().verifying_key()));
}

#[test]
fn malformed_signature_is_clear() {
    let key = random_key();
    let wire = sample_event().sign(&key).unwrap().to_json().unwrap();
    for sig in [json!("zz"), json!("abcd"), json!("")] {
        let bad = tamper(&wire, |v| v["signature"] = sig.clone());
        let err = SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key())
            .unwrap_err();
        assert!(matches!(err, ProtocolError::SignatureEncoding(_)), "{err}");
    }
    let bad = tamper(&wire, |v| v["signature"] = json!(12));
    let err = SignedEvent::from_json(&bad).unwrap_err();
    assert!(
        err.to_string().contains("`signature` must be a string"),
        "{err}"
    );
    let bad = tamper(&wire, |v| {
        v.as_object_mut().unwrap().remove("signature");
    });
    assert!(
        SignedEvent::from_json(&bad)
            .unwrap_err()
            .to_string()
            .contains("missing `signature`")
    );
}

#[test]
fn wrong_kind_is_rejected() {
    let key = random_key();
    let wire = sample_heartbeat().sign(&key).unwrap().to_json().unwrap();
    let err = SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap_err();
    assert!(matches!(err, ProtocolError::WrongKind { .. }), "{err}");
    assert!(err.to_string().contains("heartbeat"));
}

#[test]
fn envelope_device_must_match_payload() {
    let key = random_key();
    let wire = sign_raw("violation_event", "someone-else", event_value(), &[], &key);
    let err = SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap_err();
    assert!(matches!(err, ProtocolError::DeviceMismatch { .. }), "{err}");
}

#[test]
fn newer_minor_fields_tolerated_and_verified() {
    let key = random_key();
    let mut payload = event_value();
    payload["schema_version"] = json!("1.4");
    payload["weather"] = json!({ "condition": "rain", "lux": 812.5 });
    payload["plate"]["province"] = json!("Hà Nội");
    payload["evidence"][0]["width_px"] = json!(3840);
    let wire = sign_raw(
        "violation_event",
        "hn-cg-edge-01",
        payload.clone(),
        &[("key_id", json!("2025-01"))],
        &key,
    );
    let signed = SignedEvent::from_json(&wire).unwrap();
    let event = signed.verify(&key.verifying_key()).unwrap();
    assert_eq!(event.schema_version.to_string(), "1.4");
    assert_eq!(event.plate.text.as_deref(), Some("30A12345"));
    // The raw payload keeps what this build does not understand.
    assert_eq!(signed.payload()["weather"]["condition"], "rain");
    // Re-publishing keeps the unknown members, and still verifies.
    let again = SignedEvent::from_json(&signed.to_json().unwrap()).unwrap();
    assert!(again.verify(&key.verifying_key()).is_ok());
    // Changing an unknown field still breaks the signature.
    let bad = tamper(&wire, |v| {
        v["payload"]["weather"]["condition"] = json!("sun")
    });
    assert_bad_signature(
        SignedEvent::from_json(&bad)
            .unwrap()
            .verify(&key.verifying_key()),
    );
    // An older minor is accepted too.
    payload["schema_version"] = json!("1.0");
    let wire = sign_raw("violation_event", "hn-cg-edge-01", payload, &[], &key);
    assert!(
        SignedEvent::from_json(&wire)
            .unwrap()
            .verify(&key.verifying_key())
            .is_ok()
    );
}

#[test]
fn newer_major_rejected_clearly() {
    let key = random_key();
    // A 2.0 payload may look nothing like 1.x; the version is what's reported.
    let payload = json!({ "schema_version": "2.0", "id": "whatever", "shape": ["new"] });
    let wire = sign_raw("violation_event", "hn-cg-edge-01", payload, &[], &key);
    let err = SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::UnsupportedVersion { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("2.0") && text.contains("speaks 1.4"),
        "{text}"
    );
    assert_eq!(err.reject_code(), RejectCode::UnsupportedVersion);
}

#[test]
fn malformed_or_missing_version_is_clear() {
    let key = random_key();
    for (version, needle) in [
        (json!("1"), "malformed schema_version \"1\""),
        (json!("1.0.0"), "malformed schema_version"),
        (json!("one.zero"), "decimal digits"),
        (json!(1.0), "must be a string"),
    ] {
        let mut payload = event_value();
        payload["schema_version"] = version;
        let wire = sign_raw("violation_event", "hn-cg-edge-01", payload, &[], &key);
        let err = SignedEvent::from_json(&wire)
            .unwrap()
            .verify(&key.verifying_key())
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(err.reject_code(), RejectCode::Malformed);
    }
    let mut payload = event_value();
    payload.as_object_mut().unwrap().remove("schema_version");
    let wire = sign_raw("violation_event", "hn-cg-edge-01", payload, &[], &key);
    let err = SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap_err();
    assert!(matches!(err, ProtocolError::MissingVersion { .. }), "{err}");
}

#[test]
fn unknown_enum_value_names_the_field() {
    let key = random_key();
    let mut payload = event_value();
    payload["schema_version"] = json!("1.4");
    payload["violation_type"] = json!("no_seatbelt");
    let wire = sign_raw("violation_event", "hn-cg-edge-01", payload, &[], &key);
    let err = SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("violation_type") && text.contains("no_seatbelt"),
        "{text}"
    );
}

#[test]
fn signed_but_invalid_is_rejected_with_field() {
    let key = random_key();
    let mut payload = event_value();
    payload["plate"]["confidence"] = json!(1.5);
    let wire = sign_raw("violation_event", "hn-cg-edge-01", payload, &[], &key);
    let err = SignedEvent::from_json(&wire)
        .unwrap()
        .verify(&key.verifying_key())
        .unwrap_err();
    assert!(err.to_string().contains("plate.confidence"), "{err}");
    assert_eq!(err.reject_code(), RejectCode::Invalid);
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    for bytes in [
        &b""[..],
        b"{",
        b"null",
        b"[]",
        b"{\"kind\":1}",
        b"\xff\xfe",
        b"{\"kind\":\"violation_event\",\"device_id\":\"d\",\"payload\":[],\"signature\":\"\"}",
    ] {
        let err = SignedEvent::from_json(bytes).unwrap_err();
        assert_eq!(err.reject_code(), RejectCode::Malformed, "{err}");
    }
    let err = SignedEvent::from_json(b"{\"kind\": }").unwrap_err();
    assert!(err.to_string().starts_with("malformed JSON"), "{err}");
    assert!(err.to_string().contains("column"), "{err}");
}

#[test]
fn signing_an_invalid_event_fails() {
    let mut event = sample_event();
    event.evidence[0].sha256 = "nothex".into();
    let err = event.sign(&random_key()).unwrap_err();
    assert!(err.to_string().contains("evidence[0].sha256"), "{err}");
    let mut event = sample_event();
    event.plate.confidence = Some(f64::NAN);
    assert!(event.sign(&random_key()).is_err());
}

#[test]
fn verify_for_topic_checks_site_device_channel() {
    let key = random_key();
    let signed = sample_event().sign(&key).unwrap();
    let vk = key.verifying_key();
    let good = TopicAddress::new("hn-caugiay-xuanthuy", "hn-cg-edge-01", Channel::Events).unwrap();
    assert!(signed.verify_for_topic(&vk, &good).is_ok());
    for (site, device, channel, field) in [
        ("other-site", "hn-cg-edge-01", Channel::Events, "site"),
        (
            "hn-caugiay-xuanthuy",
            "other-dev",
            Channel::Events,
            "device",
        ),
        (
            "hn-caugiay-xuanthuy",
            "hn-cg-edge-01",
            Channel::Heartbeat,
            "channel",
        ),
    ] {
        let topic = TopicAddress::new(site, device, channel).unwrap();
        match signed.verify_for_topic(&vk, &topic) {
            Err(ProtocolError::TopicMismatch { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected {field} mismatch, got {other:?}"),
        }
    }
}

#[test]
fn signed_envelope_serde_round_trip() {
    let signed = sample_event().sign(&random_key()).unwrap();
    let text = serde_json::to_string(&signed).unwrap();
    let back: SignedEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(back, signed);
    assert_eq!(back.kind(), <protocol::ViolationEvent as Message>::KIND);
}
