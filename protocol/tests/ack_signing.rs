//! Signed acks: the server signs each ack for one device with its own key;
//! a device believes it only if it is for that device and one of its
//! trusted server keys verifies it. Forged, altered, unsigned, misdirected
//! and wrong-kind acks are each refused with their own reason.

mod common;

use common::*;
use protocol::{
    Ack, AckStatus, AckVerifyError, Message, RejectCode, SchemaVersion, canonical_bytes,
};
use serde_json::{Value, json};
use uuid::Uuid;

const DEV: &str = "hn-cg-edge-01";
const OTHER: &str = "hn-cg-edge-02";

fn id() -> Uuid {
    Uuid::from_u128(0x6f1c2a4e_8b3d_4c5f_9a7b_1e2d3c4b5a69)
}

/// Re-encodes `bytes` after `f` changed the JSON (no re-signing).
fn tamper(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_signed_ack_verifies_for_its_device_under_any_trusted_key() {
    let server = random_key();
    let old = random_key();
    for ack in [
        Ack::stored(id()),
        Ack::duplicate(id()),
        Ack::stored(id()).for_item("clip.mp4"),
        Ack::rejected(id(), RejectCode::EvidenceMismatch, "plate.jpg differs"),
    ] {
        let wire = ack.sign_for(DEV, &server).unwrap();
        let v = Ack::verify_signed(&wire, DEV, &[server.verifying_key()]).unwrap();
        assert_eq!((v.ack, v.key_index), (ack.clone(), 0));
        // Rotation: the new key second in the list still verifies, and says which.
        let v =
            Ack::verify_signed(&wire, DEV, &[old.verifying_key(), server.verifying_key()]).unwrap();
        assert_eq!((v.ack, v.key_index), (ack, 1));
    }
}

#[test]
fn the_wire_form_is_the_plain_ack_plus_kind_device_and_signature() {
    let server = readme_server_key();
    let wire = Ack::stored(id()).sign_for(DEV, &server).unwrap();
    let v: Value = serde_json::from_slice(&wire).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "device_id",
            "event_id",
            "kind",
            "schema_version",
            "signature",
            "status"
        ]
    );
    assert_eq!(v["kind"], "ack");
    assert_eq!(v["device_id"], DEV);
    assert_eq!(v["schema_version"], "1.2");
    assert_eq!(v["signature"].as_str().unwrap().len(), 128);
    // Canonical bytes on the wire, and reproducible by the README's rule.
    assert_eq!(canonical_bytes(&v).unwrap(), wire);
    let mut unsigned = v.clone();
    unsigned.as_object_mut().unwrap().remove("signature");
    let raw: Value = serde_json::from_slice(&sign_raw_ack(unsigned, &server)).unwrap();
    assert_eq!(raw, v);
}

#[test]
fn an_ack_signed_with_another_key_is_refused() {
    let rogue = random_key();
    let server = random_key();
    let wire = Ack::stored(id()).sign_for(DEV, &rogue).unwrap();
    let err = Ack::verify_signed(&wire, DEV, &[server.verifying_key()]).unwrap_err();
    assert!(
        matches!(err, AckVerifyError::BadSignature { keys: 1 }),
        "{err}"
    );
    assert_eq!(err.reason(), "bad_signature");
    // No trusted key at all: nothing verifies.
    let err = Ack::verify_signed(&wire, DEV, &[]).unwrap_err();
    assert!(
        matches!(err, AckVerifyError::BadSignature { keys: 0 }),
        "{err}"
    );
}

#[test]
fn an_ack_for_another_device_is_refused_even_with_a_good_signature() {
    let server = random_key();
    let trusted = [server.verifying_key()];
    let for_other = Ack::stored(id()).sign_for(OTHER, &server).unwrap();
    assert!(Ack::verify_signed(&for_other, OTHER, &trusted).is_ok());
    let err = Ack::verify_signed(&for_other, DEV, &trusted).unwrap_err();
    match &err {
        AckVerifyError::WrongDevice { expected, found } => {
            assert_eq!((expected.as_str(), found.as_str()), (DEV, OTHER));
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.reason(), "wrong_device");
    // Relabelled for this device: the signature covers device_id.
    let relabelled = tamper(&for_other, |v| v["device_id"] = json!(DEV));
    let err = Ack::verify_signed(&relabelled, DEV, &trusted).unwrap_err();
    assert!(matches!(err, AckVerifyError::BadSignature { .. }), "{err}");
    // No device at all.
    let none = tamper(&for_other, |v| {
        v.as_object_mut().unwrap().remove("device_id");
    });
    let err = Ack::verify_signed(&none, DEV, &trusted).unwrap_err();
    assert!(matches!(err, AckVerifyError::WrongDevice { .. }), "{err}");
}

#[test]
fn altered_acks_are_refused() {
    let server = random_key();
    let trusted = [server.verifying_key()];
    let rejected = Ack::rejected(id(), RejectCode::Invalid, "bad plate")
        .sign_for(DEV, &server)
        .unwrap();
    // A rejection turned into "stored" (would delete the event).
    let forged = tamper(&rejected, |v| {
        let m = v.as_object_mut().unwrap();
        m.remove("code");
        m.remove("message");
        m.insert("status".into(), json!("stored"));
    });
    let err = Ack::verify_signed(&forged, DEV, &trusted).unwrap_err();
    assert!(matches!(err, AckVerifyError::BadSignature { .. }), "{err}");
    // Another event id.
    let other_event = tamper(&rejected, |v| {
        v["event_id"] = json!(Uuid::from_u128(7).to_string());
    });
    assert!(Ack::verify_signed(&other_event, DEV, &trusted).is_err());
    // An item ack turned into an event ack.
    let item = Ack::stored(id())
        .for_item("clip.mp4")
        .sign_for(DEV, &server)
        .unwrap();
    let whole = tamper(&item, |v| {
        v.as_object_mut().unwrap().remove("item");
    });
    assert!(Ack::verify_signed(&whole, DEV, &trusted).is_err());
    // A flipped bit in the signature.
    let flipped = tamper(&item, |v| {
        let s = v["signature"].as_str().unwrap().to_owned();
        let first = if s.starts_with('0') { "1" } else { "0" };
        v["signature"] = json!(format!("{first}{}", &s[1..]));
    });
    assert!(matches!(
        Ack::verify_signed(&flipped, DEV, &trusted).unwrap_err(),
        AckVerifyError::BadSignature { .. }
    ));
}

#[test]
fn unsigned_malformed_and_wrong_kind_acks_are_refused() {
    let server = random_key();
    let trusted = [server.verifying_key()];
    let unsigned = Ack::stored(id()).to_json().unwrap();
    let err = Ack::verify_signed(&unsigned, DEV, &trusted).unwrap_err();
    assert!(matches!(err, AckVerifyError::Unsigned), "{err}");
    assert_eq!(err.reason(), "unsigned");

    let wire = Ack::stored(id()).sign_for(DEV, &server).unwrap();
    let heartbeat = tamper(&wire, |v| v["kind"] = json!("heartbeat"));
    let err = Ack::verify_signed(&heartbeat, DEV, &trusted).unwrap_err();
    assert!(
        matches!(err, AckVerifyError::WrongKind(ref k) if k == "heartbeat"),
        "{err}"
    );
    let no_kind = tamper(&wire, |v| {
        v.as_object_mut().unwrap().remove("kind");
    });
    assert_eq!(
        Ack::verify_signed(&no_kind, DEV, &trusted)
            .unwrap_err()
            .reason(),
        "wrong_kind"
    );

    for (bytes, reason) in [
        (b"{not json".to_vec(), "malformed"),
        (b"[1,2]".to_vec(), "malformed"),
        (
            tamper(&wire, |v| v["signature"] = json!("zz")),
            "bad_signature",
        ),
        (
            tamper(&wire, |v| v["signature"] = json!("abcd")),
            "bad_signature",
        ),
        (
            tamper(&wire, |v| v["signature"] = json!(12)),
            "bad_signature",
        ),
    ] {
        let err = Ack::verify_signed(&bytes, DEV, &trusted).unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
    }
    // Validly signed, but not a valid ack: refused as malformed.
    let mut bad = json!({"kind": "ack", "device_id": DEV, "schema_version": "1.1",
        "event_id": "not-a-uuid", "status": "stored"});
    let wire = sign_raw_ack(bad.take(), &server);
    let err = Ack::verify_signed(&wire, DEV, &trusted).unwrap_err();
    assert!(matches!(err, AckVerifyError::Malformed(_)), "{err}");
    // Another major version.
    let v2 = sign_raw_ack(
        json!({"kind": "ack", "device_id": DEV, "schema_version": "2.0",
            "event_id": id().to_string(), "status": "stored"}),
        &server,
    );
    let err = Ack::verify_signed(&v2, DEV, &trusted).unwrap_err();
    assert!(err.to_string().contains("2.0"), "{err}");
    // A payload hash that is not one: refused as malformed.
    let bad_hash = sign_raw_ack(
        json!({"kind": "ack", "device_id": DEV, "schema_version": "1.2",
            "event_id": id().to_string(), "status": "rejected", "code": "invalid",
            "message": "x", "payload_sha256": "ABC"}),
        &server,
    );
    let err = Ack::verify_signed(&bad_hash, DEV, &trusted).unwrap_err();
    assert!(err.to_string().contains("payload_sha256"), "{err}");
}

#[test]
fn a_rejection_names_the_bytes_it_rejects_under_the_signature() {
    let server = random_key();
    let trusted = [server.verifying_key()];
    let hash = protocol::sha256_hex(b"the bundle as the server got it");
    let ack = Ack::rejected(id(), RejectCode::BadSignature, "no").bound_to(hash.clone());
    let wire = ack.sign_for(DEV, &server).unwrap();
    let got = Ack::verify_signed(&wire, DEV, &trusted).unwrap();
    assert_eq!(got.ack.payload_sha256.as_deref(), Some(hash.as_str()));
    // Someone swaps the hash for the one of the device's own bundle: the
    // signature no longer verifies.
    let mut v: Value = serde_json::from_slice(&wire).unwrap();
    v["payload_sha256"] = json!(protocol::sha256_hex(b"the device's genuine bundle"));
    let swapped = serde_json::to_vec(&v).unwrap();
    let err = Ack::verify_signed(&swapped, DEV, &trusted).unwrap_err();
    assert_eq!(err.reason(), "bad_signature", "{err}");
}

#[test]
fn newer_minor_members_are_covered_by_the_signature_and_still_verify() {
    let server = random_key();
    let trusted = [server.verifying_key()];
    let wire = sign_raw_ack(
        json!({"kind": "ack", "device_id": DEV, "schema_version": "1.7",
            "event_id": id().to_string(), "status": "stored",
            "stored_at": "2025-03-14T01:15:31Z", "key_id": "ioc-2026"}),
        &server,
    );
    // Pretty-printed, members in another order: verifies (the canonical
    // form of the parsed value is what is signed).
    let v = Ack::verify_signed(&wire, DEV, &trusted).unwrap();
    assert_eq!(v.ack.status, AckStatus::Stored);
    assert_eq!(v.ack.schema_version, SchemaVersion::new(1, 7));
    let changed = tamper(&wire, |v| v["stored_at"] = json!("2025-03-14T01:15:32Z"));
    assert!(Ack::verify_signed(&changed, DEV, &trusted).is_err());
    let added = tamper(&wire, |v| v["relay"] = json!("added by attacker"));
    assert!(Ack::verify_signed(&added, DEV, &trusted).is_err());
}

#[test]
fn a_1_0_receiver_still_reads_a_signed_ack() {
    // What an edge built before signed acks does with the bytes: it ignores
    // kind, device_id and signature and reads the ack.
    let ack = Ack::rejected(id(), RejectCode::BadSignature, "no");
    let wire = ack.sign_for(DEV, &random_key()).unwrap();
    assert_eq!(Ack::from_json(&wire).unwrap(), ack);
}

#[test]
fn signing_checks_the_ack_and_the_device_id() {
    let key = random_key();
    assert!(Ack::stored(id()).sign_for("a/b", &key).is_err());
    assert!(Ack::stored(id()).sign_for("", &key).is_err());
    let bad_item = Ack::stored(id()).for_item("../etc/passwd");
    assert!(bad_item.sign_for(DEV, &key).is_err());
}
