//! Properties of the canonical form over arbitrary JSON values.

mod common;

use proptest::prelude::*;
use protocol::{SignedEvent, canonical_bytes};
use serde_json::{Map, Number, Value};

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (-1e6f64..1e6).prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        any::<String>().prop_map(Value::String),
        "[a-c\\u{e000}\\u{1f600}\"\\\\\\n]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)))]

    /// Never panics; when it succeeds, the output is valid JSON whose own
    /// canonical form is itself (idempotent).
    #[test]
    fn canonicalisation_is_idempotent(value in arb_json()) {
        if let Ok(bytes) = canonical_bytes(&value) {
            let reparsed: Value = serde_json::from_slice(&bytes).expect("canonical output is JSON");
            prop_assert_eq!(canonical_bytes(&reparsed).expect("re-canonicalises"), bytes);
        }
    }

    /// Any way of printing the same value (pretty, compact) canonicalises to
    /// the same bytes.
    #[test]
    fn printing_does_not_matter(value in arb_json()) {
        if let Ok(bytes) = canonical_bytes(&value) {
            for text in [serde_json::to_string(&value).unwrap(), serde_json::to_string_pretty(&value).unwrap()] {
                let reparsed: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(&canonical_bytes(&reparsed).unwrap(), &bytes);
            }
        }
    }

    /// Arbitrary bytes never panic the envelope parser.
    #[test]
    fn envelope_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = SignedEvent::from_json(&bytes);
    }

    /// Any finite confidence and speed survive sign → wire → verify bit for
    /// bit (needs correct float parsing; see Cargo.toml `float_roundtrip`).
    #[test]
    fn floats_survive_the_wire(conf in 0.0f64..=1.0, kmh in 0.0f64..400.0) {
        let key = common::readme_key();
        let mut event = common::sample_event();
        event.plate.confidence = Some(conf);
        event.speed = Some(protocol::Speed {
            measured_kmh: kmh,
            limit_kmh: 60,
            uncertainty_kmh: None,
        });
        let wire = event.sign(&key).unwrap().to_json().unwrap();
        let back = SignedEvent::from_json(&wire).unwrap().verify(&key.verifying_key()).unwrap();
        prop_assert_eq!(back.plate.confidence.map(f64::to_bits), Some(conf.to_bits()));
        prop_assert_eq!(back.speed.map(|s| s.measured_kmh.to_bits()), Some(kmh.to_bits()));
    }
}

#[test]
fn same_value_different_key_order_same_bytes() {
    let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"},"c":null}"#).unwrap();
    let b: Value =
        serde_json::from_str(r#"{ "c" : null, "a" : { "x" : "s", "y" : [ 1, 2 ] }, "b" : 1 }"#)
            .unwrap();
    assert_eq!(canonical_bytes(&a).unwrap(), canonical_bytes(&b).unwrap());
    assert_eq!(
        canonical_bytes(&a).unwrap(),
        br#"{"a":{"x":"s","y":[1,2]},"b":1,"c":null}"#
    );
}
