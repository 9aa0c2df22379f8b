//! Event bundles and clip chunks: round trips, and every way a frame can be
//! bad (wrong magic, truncated, oversized, tampered bytes, wrong sizes).

mod common;

use common::{CLIP, OVERVIEW, PLATE_CROP, readme_key, sample_event};
use proptest::prelude::*;
use protocol::transfer::{CLIP_CHUNK_BYTES, MAX_BUNDLE_BYTES, chunk_count};
use protocol::{
    Ack, Attachment, ClipChunk, EventBundle, EvidenceItem, EvidenceRole, Message, ProtocolError,
    RejectCode, SignedEvent, check_attachments,
};

fn bundle() -> EventBundle {
    let event = SignedEvent::sign(&sample_event(), &readme_key()).unwrap();
    EventBundle {
        event,
        attachments: vec![
            Attachment {
                name: "overview.jpg".into(),
                data: OVERVIEW.to_vec(),
            },
            Attachment {
                name: "plate.jpg".into(),
                data: PLATE_CROP.to_vec(),
            },
        ],
    }
}

#[test]
fn bundle_round_trips_and_leaves_the_clip_to_chunks() {
    let b = bundle();
    let bytes = b.encode().unwrap();
    assert_eq!(&bytes[..4], b"TVB1");
    let back = EventBundle::decode(&bytes).unwrap();
    assert_eq!(back, b);
    let event = back.event.verify(&readme_key().verifying_key()).unwrap();
    let missing = check_attachments(&event, &back.attachments).unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].name, "clip.mp4");
}

#[test]
fn tampered_attachment_fails_the_manifest_check() {
    let mut b = bundle();
    b.attachments[0].data[10] ^= 1;
    let back = EventBundle::decode(&b.encode().unwrap()).unwrap();
    let event = back.event.verify(&readme_key().verifying_key()).unwrap();
    let err = check_attachments(&event, &back.attachments).unwrap_err();
    assert!(err.to_string().contains("overview.jpg"), "{err}");
}

#[test]
fn attachment_not_in_the_manifest_is_refused() {
    let mut b = bundle();
    b.attachments.push(Attachment {
        name: "extra.jpg".into(),
        data: vec![1, 2, 3],
    });
    let event = b.event.verify(&readme_key().verifying_key()).unwrap();
    let err = check_attachments(&event, &b.attachments).unwrap_err();
    assert!(err.to_string().contains("extra.jpg"), "{err}");
}

#[test]
fn tampered_event_json_in_a_bundle_fails_verification() {
    let bytes = bundle().encode().unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text.find("30A12345").unwrap();
    let mut bytes = bytes.clone();
    bytes[at + 2] = b'B';
    let back = EventBundle::decode(&bytes).unwrap();
    let err = back
        .event
        .verify(&readme_key().verifying_key())
        .unwrap_err();
    assert_eq!(err.reject_code(), RejectCode::BadSignature);
}

#[test]
fn malformed_bundles_are_errors_with_a_reason() {
    let good = bundle().encode().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "magic"),
        ("wrong magic", b"XXXX\0\0\0\0".to_vec(), "magic"),
        ("truncated length", good[..6].to_vec(), "truncated"),
        ("truncated event", good[..40].to_vec(), "truncated"),
        (
            "truncated attachment",
            good[..good.len() - 3].to_vec(),
            "truncated",
        ),
        (
            "huge event length",
            [b"TVB1".as_slice(), &u32::MAX.to_be_bytes()].concat(),
            "limit",
        ),
        (
            "not json",
            [b"TVB1".as_slice(), &3u32.to_be_bytes(), b"{{{"].concat(),
            "JSON",
        ),
    ];
    for (what, bytes, needle) in cases {
        let err = EventBundle::decode(&bytes).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "{what}: {err} should mention {needle}"
        );
        assert_eq!(err.reject_code(), RejectCode::Malformed, "{what}");
    }
    let oversized = vec![0u8; MAX_BUNDLE_BYTES + 1];
    assert!(
        EventBundle::decode(&oversized)
            .unwrap_err()
            .to_string()
            .contains("limit")
    );
}

#[test]
fn duplicate_attachment_names_are_refused() {
    let mut b = bundle();
    b.attachments[1].name = "overview.jpg".into();
    let err = EventBundle::decode(&b.encode().unwrap()).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

fn clip_of(len: usize) -> (EvidenceItem, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    (
        EvidenceItem::from_bytes("clip.mp4", "video/mp4", EvidenceRole::Clip, &bytes),
        bytes,
    )
}

#[test]
fn clip_splits_into_chunks_that_reassemble_to_the_manifest_hash() {
    let id = sample_event().event_id;
    for len in [
        1,
        CLIP_CHUNK_BYTES - 1,
        CLIP_CHUNK_BYTES,
        2 * CLIP_CHUNK_BYTES + 17,
    ] {
        let (item, bytes) = clip_of(len);
        let chunks = ClipChunk::split(id, &item.name, &bytes);
        assert_eq!(chunks.len() as u32, chunk_count(len as u64));
        let mut assembled = vec![0u8; len];
        for c in &chunks {
            let wire = c.encode().unwrap();
            let back = ClipChunk::decode(&wire).unwrap();
            assert_eq!(&back, c);
            let at = back.offset() as usize;
            assembled[at..at + back.data.len()].copy_from_slice(&back.data);
        }
        item.check_bytes(&assembled).unwrap();
    }
    // The sample clip fits one chunk.
    let item = &sample_event().evidence[2];
    assert_eq!(ClipChunk::split(id, &item.name, CLIP).len(), 1);
}

#[test]
fn damaged_or_inconsistent_chunks_are_refused() {
    let (item, bytes) = clip_of(CLIP_CHUNK_BYTES + 100);
    let chunks = ClipChunk::split(sample_event().event_id, &item.name, &bytes);

    let mut flipped = chunks[1].encode().unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    let err = ClipChunk::decode(&flipped).unwrap_err();
    assert_eq!(err.reject_code(), RejectCode::EvidenceMismatch, "{err}");

    let mut short = chunks[1].clone();
    short.data.pop();
    let err = ClipChunk::decode(&short.encode().unwrap()).unwrap_err();
    assert!(err.to_string().contains("expected 100"), "{err}");

    let mut bad_count = chunks[0].clone();
    bad_count.header.count = 5;
    let err = ClipChunk::decode(&bad_count.encode().unwrap()).unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");

    let mut bad_index = chunks[0].clone();
    bad_index.header.index = 2;
    let err = ClipChunk::decode(&bad_index.encode().unwrap()).unwrap_err();
    assert!(err.to_string().contains("index"), "{err}");

    let mut bad_name = chunks[0].clone();
    bad_name.header.name = "../etc/passwd".into();
    let err = ClipChunk::decode(&bad_name.encode().unwrap()).unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");

    assert!(ClipChunk::decode(b"TVB1").is_err());
}

#[test]
fn item_acks_round_trip_and_plain_acks_omit_the_item() {
    let id = sample_event().event_id;
    let plain = serde_json::to_string(&Ack::stored(id)).unwrap();
    assert!(!plain.contains("item"), "{plain}");
    let ack = Ack::stored(id).for_item("clip.mp4");
    let json = serde_json::to_vec(&ack).unwrap();
    assert_eq!(Ack::from_json(&json).unwrap(), ack);
    let bad = Ack::stored(id).for_item("../x");
    let json = serde_json::to_vec(&bad).unwrap();
    assert!(matches!(
        Ack::from_json(&json),
        Err(ProtocolError::Invalid(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// Arbitrary bytes, or a good frame with bytes changed, never panic the decoders.
    #[test]
    fn decoders_never_panic(
        noise in proptest::collection::vec(any::<u8>(), 0..512),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let _ = EventBundle::decode(&noise);
        let _ = ClipChunk::decode(&noise);
        let mut good = bundle().encode().unwrap();
        for (at, v) in &flips {
            let i = at % good.len();
            good[i] ^= v;
        }
        let cut = cut % (good.len() + 1);
        let _ = EventBundle::decode(&good[..cut]);
        let (item, bytes) = clip_of(300);
        let mut chunk = ClipChunk::split(sample_event().event_id, &item.name, &bytes)[0].encode().unwrap();
        for (at, v) in &flips {
            let i = at % chunk.len();
            chunk[i] ^= v;
        }
        let _ = ClipChunk::decode(&chunk[..cut.min(chunk.len())]);
    }
}
