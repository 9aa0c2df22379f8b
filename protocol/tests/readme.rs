//! The examples in README.md are real: they parse, the signed one verifies
//! under the documented key, they equal the test fixtures, and the signing
//! input test vector is exact. If the protocol changes, this fails until the
//! README is updated.

mod common;

use common::*;
use protocol::{Ack, AckStatus, Heartbeat, Message, RejectCode, SignedEvent, VerifyingKey};

const README: &str = include_str!("../README.md");

/// The fenced block right after `<!-- example: NAME -->`.
fn example(name: &str) -> &'static str {
    let marker = format!("<!-- example: {name} -->");
    let start = README
        .find(&marker)
        .unwrap_or_else(|| panic!("no example {name}"))
        + marker.len();
    let rest = &README[start..];
    let open = rest.find("```").unwrap();
    let body_start = open + rest[open..].find('\n').unwrap() + 1;
    let body_len = rest[body_start..].find("\n```").unwrap();
    &rest[body_start..body_start + body_len]
}

#[test]
fn signed_event_example_verifies() {
    let key = readme_key();
    let documented_pubkey = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
    assert_eq!(
        hex::encode(key.verifying_key().to_bytes()),
        documented_pubkey
    );
    assert!(README.contains(documented_pubkey));
    let pubkey: [u8; 32] = hex::decode(documented_pubkey).unwrap().try_into().unwrap();
    let vk = VerifyingKey::from_bytes(&pubkey).unwrap();

    let signed = SignedEvent::from_json(example("signed_event").as_bytes()).unwrap();
    assert_eq!(signed.verify(&vk).unwrap(), sample_event());
    assert_eq!(
        signed.signing_bytes().unwrap(),
        example("signing_input").as_bytes(),
        "README signing-input test vector is stale"
    );
    assert_eq!(
        signed.signature_hex(),
        sample_event().sign(&key).unwrap().signature_hex(),
        "README signature is stale"
    );
}

#[test]
fn heartbeat_example_parses() {
    let hb = Heartbeat::from_json(example("heartbeat").as_bytes()).unwrap();
    assert_eq!(hb, sample_heartbeat());
}

#[test]
fn ack_examples_parse() {
    let stored = Ack::from_json(example("ack_stored").as_bytes()).unwrap();
    assert_eq!(stored, Ack::stored(sample_event().event_id));
    let rejected = Ack::from_json(example("ack_rejected").as_bytes()).unwrap();
    assert!(matches!(
        rejected.status,
        AckStatus::Rejected {
            code: RejectCode::BadSignature,
            ..
        }
    ));
}

#[test]
fn ack_examples_are_signed_by_the_documented_server_key() {
    let key = readme_server_key();
    let documented = "fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618";
    assert_eq!(hex::encode(key.verifying_key().to_bytes()), documented);
    assert!(README.contains(documented));
    let trusted = [key.verifying_key()];
    let stored = example("ack_stored");
    let v = Ack::verify_signed(stored.as_bytes(), "hn-cg-edge-01", &trusted).unwrap();
    assert_eq!(v.ack, Ack::stored(sample_event().event_id));
    // The documented bytes are exactly what the server writes.
    let wire: serde_json::Value = serde_json::from_slice(
        &Ack::stored(sample_event().event_id)
            .sign_for("hn-cg-edge-01", &key)
            .unwrap(),
    )
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(stored).unwrap();
    assert_eq!(wire, doc, "README ack_stored signature is stale");
    let rejected = Ack::verify_signed(
        example("ack_rejected").as_bytes(),
        "hn-cg-edge-01",
        &trusted,
    )
    .unwrap()
    .ack;
    assert!(matches!(
        rejected.status,
        AckStatus::Rejected {
            code: RejectCode::BadSignature,
            ..
        }
    ));
}
