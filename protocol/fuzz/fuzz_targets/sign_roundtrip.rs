//! Any JSON object as a payload, signed by a device: after the envelope is
//! written, sent and parsed again, the signature must still verify over the
//! receiver's signing bytes (canonical JSON must be a fixed point: this is
//! where a non-idempotent number format was once found by property tests),
//! and flipping any one byte of the payload's canonical form must not.
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use protocol::SignedEvent;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let unsigned = json!({
        "device_id": "fuzz-01",
        "kind": "violation_event",
        "payload": Value::Object(payload),
        "signature": "",
    });
    let Ok(envelope) = SignedEvent::from_value(unsigned.clone()) else {
        return;
    };
    let Ok(signing) = envelope.signing_bytes() else {
        return; // not representable canonically: refused by the sender too
    };
    let signature = hex(&key.sign(&signing).to_bytes());
    let mut signed = unsigned;
    signed["signature"] = Value::String(signature);
    let sent = SignedEvent::from_value(signed).expect("signed envelope parses");
    let wire = sent.to_json().expect("signed envelope serialises");

    let received = SignedEvent::from_json(&wire).expect("sent envelope parses");
    let bytes = received.signing_bytes().expect("received envelope has signing bytes");
    assert_eq!(bytes, signing, "signing bytes changed in transit");
    let sig = ed25519_dalek::Signature::from_slice(&decode_hex(received.signature_hex()))
        .expect("signature length");
    key.verifying_key()
        .verify_strict(&bytes, &sig)
        .expect("signature verifies after the round trip");

    // Any change to the signed bytes breaks the signature.
    let mut tampered = bytes.clone();
    let i = data.len() % tampered.len();
    tampered[i] ^= 0x01;
    assert!(key.verifying_key().verify_strict(&tampered, &sig).is_err());
});

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}
