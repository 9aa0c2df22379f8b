//! Arbitrary bytes as they could arrive on a device topic: parsing the
//! envelope, the signature check and the typed decoding must never panic,
//! and nothing a fuzzer writes may verify under a key it does not hold.
//! Whatever parses must re-serialise to bytes that parse to the same
//! envelope with the same signing bytes (the server stores the raw message
//! and re-verifies it later: this is what makes that sound).
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use protocol::topics::parse_topic;
use protocol::{SignedEvent, SignedHeartbeat};

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();

    // The first line, when there is one, is also tried as a topic.
    if let Some(pos) = data.iter().position(|&b| b == b'\n') {
        if let Ok(topic) = std::str::from_utf8(&data[..pos]) {
            if let Ok(address) = parse_topic(topic) {
                let again = parse_topic(&address.to_string()).expect("a printed topic parses");
                assert_eq!(again, address, "topic round trip");
            }
        }
    }

    if let Ok(event) = SignedEvent::from_json(data) {
        assert!(event.verify(&key).is_err(), "a forged event verified");
        let _ = event.unverified_event_id();
        check_round_trip(&event);
    }
    if let Ok(heartbeat) = SignedHeartbeat::from_json(data) {
        assert!(heartbeat.verify(&key).is_err(), "a forged heartbeat verified");
        check_round_trip(&heartbeat);
    }
});

fn check_round_trip<T: protocol::DeviceMessage>(envelope: &protocol::Signed<T>) {
    let (Ok(json), Ok(signing)) = (envelope.to_json(), envelope.signing_bytes()) else {
        return; // e.g. a number canonical JSON cannot write: refused, not a crash
    };
    let again = protocol::Signed::<T>::from_json(&json).expect("re-serialised envelope parses");
    assert_eq!(again.to_json().ok(), Some(json), "envelope round trip");
    assert_eq!(again.signing_bytes().ok(), Some(signing), "signing bytes are stable");
}
