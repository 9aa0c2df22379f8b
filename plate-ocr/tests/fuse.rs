//! Fusion of many reads of one vehicle: agree, refuse, outliers, empty input.
//! All plates here are made up for the tests.

use plate_ocr::fuse::{FuseConfig, Fused, Read, fuse, fuse_with_grammar};
use plate_ocr::plate::PlateGrammar;
use proptest::prelude::*;

fn reads(list: &[(&str, f32)]) -> Vec<Read> {
    list.iter().map(|(t, c)| Read::uniform(t, *c)).collect()
}

fn cfg() -> FuseConfig {
    FuseConfig::default()
}

#[test]
fn consistent_reads_agree() {
    let r = reads(&[("30A12345", 0.9), ("30A12345", 0.95), ("30A12345", 0.85)]);
    match fuse(&r, &cfg()) {
        Fused::Agreed {
            text,
            confidence,
            support,
            total,
        } => {
            assert_eq!(text, "30A12345");
            assert_eq!((support, total), (3, 3));
            // Agreement 1 times the mean confidence of the voters.
            assert!((confidence - 0.9).abs() < 1e-5, "{confidence}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn display_forms_are_canonicalised() {
    let r = reads(&[("30A-123.45", 0.9), ("30a12345", 0.9), ("30A 123 45", 0.9)]);
    assert_eq!(fuse(&r, &cfg()).agreed(), Some("30A12345"));
    // The grammar's separators, en dash included.
    let r = reads(&[("30A–123.45", 0.9), ("30A—12345", 0.9), ("30A·123·45", 0.9)]);
    assert_eq!(fuse(&r, &cfg()).agreed(), Some("30A12345"));
}

/// A character that is neither a plate's nor a separator is a character
/// not read: dropping it would make a shorter, different plate (`30A1245`).
#[test]
fn a_read_with_a_foreign_character_is_not_used() {
    let r = reads(&[("30A12?45", 0.9), ("30A12?45", 0.9), ("30A12?45", 0.9)]);
    assert!(
        matches!(fuse(&r, &cfg()), Fused::NotEnough { reads: 0, .. }),
        "{:?}",
        fuse(&r, &cfg())
    );
    let r = reads(&[("30A1245", 0.9), ("30A12３45", 0.9), ("29-B1·123.45", 0.9)]);
    assert!(matches!(
        fuse(&r, &cfg()),
        Fused::NotEnough { reads: 2, .. }
    ));
}

#[test]
fn two_conflicting_plates_are_refused() {
    let r = reads(&[
        ("30A12345", 0.9),
        ("51G67890", 0.9),
        ("30A12345", 0.9),
        ("51G67890", 0.9),
    ]);
    match fuse(&r, &cfg()) {
        Fused::Disagree { candidates } => {
            assert_eq!(candidates.len(), 2);
            assert!((candidates[0].1 - 0.5).abs() < 1e-5);
        }
        other => panic!("{other:?}"),
    }
    // Two against one: still refused.
    let r = reads(&[("30A12345", 0.9), ("30A12346", 0.9), ("30A12345", 0.9)]);
    assert!(matches!(fuse(&r, &cfg()), Fused::Disagree { .. }));
}

#[test]
fn a_valid_rival_plate_with_substantial_support_is_refused() {
    // Per position the vote is 7 to 4 (agreement 0.64, enough here), but four
    // frames read another valid plate whole: two plates, both supported.
    let mut list = vec![("29B112345", 0.9); 7];
    list.extend([("29B112346", 0.9); 4]);
    let r = reads(&list);
    let loose = FuseConfig {
        min_agreement: 0.6,
        ..cfg()
    };
    assert!(matches!(fuse(&r, &loose), Fused::Disagree { .. }));
    let g = PlateGrammar::builtin();
    assert!(matches!(
        fuse_with_grammar(&r, &loose, g),
        Fused::Disagree { .. }
    ));
    // The same reads with the rival read as an invalid text: only the valid
    // plate counts as a rival when a grammar is given.
    let mut list = vec![("29B112345", 0.9); 7];
    list.extend([("10B112346", 0.9); 4]);
    let r = reads(&list);
    let loose = FuseConfig {
        min_agreement: 0.6,
        max_rival_share: 0.3,
        ..cfg()
    };
    assert!(matches!(fuse(&r, &loose), Fused::Disagree { .. }));
    assert_eq!(fuse_with_grammar(&r, &loose, g).agreed(), Some("29B112345"));
}

#[test]
fn a_single_outlier_frame_is_outvoted() {
    let r = reads(&[
        ("29B112345", 0.9),
        ("29B112345", 0.9),
        ("29B112345", 0.9),
        ("29B112345", 0.9),
        ("29B712345", 0.9),
    ]);
    match fuse(&r, &cfg()) {
        Fused::Agreed {
            text,
            confidence,
            support,
            total,
        } => {
            assert_eq!(text, "29B112345");
            assert_eq!((support, total), (4, 5));
            assert!((confidence - 0.8 * 0.9).abs() < 1e-5, "{confidence}");
        }
        other => panic!("{other:?}"),
    }
    // An outlier of another length counts against every position, and is outvoted.
    let mut r = r;
    r[4] = Read::uniform("29B11234", 0.9);
    assert_eq!(fuse(&r, &cfg()).agreed(), Some("29B112345"));
}

#[test]
fn errors_at_different_positions_are_voted_out() {
    let r = reads(&[
        ("29B112345", 0.9),
        ("29B112345", 0.9),
        ("29B812345", 0.9),
        ("29B112845", 0.9),
        ("29B112343", 0.9),
    ]);
    match fuse(&r, &cfg()) {
        Fused::Agreed { text, support, .. } => {
            assert_eq!(text, "29B112345");
            assert_eq!(support, 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_and_too_few_reads() {
    assert_eq!(
        fuse(&[], &cfg()),
        Fused::NotEnough {
            reads: 0,
            needed: 3
        }
    );
    let r = reads(&[("30A12345", 0.9), ("30A12345", 0.9)]);
    assert_eq!(
        fuse(&r, &cfg()),
        Fused::NotEnough {
            reads: 2,
            needed: 3
        }
    );
    // Unusable reads do not count.
    let r = reads(&[
        ("30A12345", 0.9),
        ("30A12345", 0.9),
        ("", 0.9),
        ("30A12345", f32::NAN),
    ]);
    assert!(matches!(
        fuse(&r, &cfg()),
        Fused::NotEnough { reads: 2, .. }
    ));
    let lax = FuseConfig {
        min_reads: 0,
        ..cfg()
    };
    assert!(matches!(fuse(&[], &lax), Fused::NotEnough { reads: 0, .. }));
}

#[test]
fn weak_agreement_is_low_confidence() {
    let r = reads(&[("30A12345", 0.3), ("30A12345", 0.4), ("30A12345", 0.35)]);
    match fuse(&r, &cfg()) {
        Fused::LowConfidence {
            text, confidence, ..
        } => {
            assert_eq!(text, "30A12345");
            assert!(confidence < 0.5);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn char_confidence_weights_the_vote() {
    // Two reads say 7 at the last position weakly, one says 5 strongly.
    let strong = Read {
        text: "30A12345".into(),
        char_conf: vec![0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.99],
        confidence: 0.9,
    };
    let weak = |t: &str| Read {
        text: t.into(),
        char_conf: vec![0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1],
        confidence: 0.9,
    };
    let r = vec![strong, weak("30A12347"), weak("30A12347")];
    let lax = FuseConfig {
        min_agreement: 0.7,
        min_confidence: 0.0,
        max_rival_share: 1.0,
        ..cfg()
    };
    match fuse(&r, &lax) {
        Fused::Agreed { text, support, .. } => {
            assert_eq!(text, "30A12345");
            assert_eq!(support, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn with_a_grammar_the_answer_is_a_valid_plate() {
    let g = PlateGrammar::builtin();
    let r = reads(&[("29B112345", 0.9), ("29B112345", 0.9), ("29B112345", 0.9)]);
    assert_eq!(fuse_with_grammar(&r, &cfg(), g).agreed(), Some("29B112345"));
    // Consistent but invalid reads (unknown local code 10): refused.
    let r = reads(&[("10A12345", 0.9), ("10A12345", 0.9), ("10A12345", 0.9)]);
    assert_eq!(fuse(&r, &cfg()).agreed(), Some("10A12345"));
    assert!(matches!(
        fuse_with_grammar(&r, &cfg(), g),
        Fused::Disagree { .. }
    ));
    // The grammar picks the valid character where the vote's top one is invalid,
    // but agreement is still measured, so a weak position is refused.
    let r = reads(&[("29B112345", 0.9), ("29812345", 0.9), ("29B112345", 0.9)]);
    assert!(fuse_with_grammar(&r, &cfg(), g).agreed().is_none());
}

#[test]
fn outcome_serialises_with_a_tag() {
    let f = Fused::NotEnough {
        reads: 1,
        needed: 3,
    };
    let s = toml::to_string(&f).unwrap_or_default();
    assert!(s.contains("outcome = \"not_enough\""), "{s}");
}

proptest! {
    #[test]
    fn fuse_never_panics(
        list in prop::collection::vec(
            (any::<String>(), prop::collection::vec(any::<f32>(), 0..12), any::<f32>()),
            0..8,
        ),
        min_reads in 0usize..4,
    ) {
        let reads: Vec<Read> = list
            .into_iter()
            .map(|(text, char_conf, confidence)| Read { text, char_conf, confidence })
            .collect();
        let cfg = FuseConfig { min_reads, ..FuseConfig::default() };
        let out = fuse(&reads, &cfg);
        if let Fused::Agreed { confidence, support, total, .. } = &out {
            prop_assert!((0.0..=1.0).contains(confidence));
            prop_assert!(support <= total);
        }
        let _ = fuse_with_grammar(&reads, &cfg, PlateGrammar::builtin());
    }

    #[test]
    fn identical_valid_reads_always_agree(n in 3usize..10, conf in 0.6f32..1.0) {
        let reads: Vec<Read> = (0..n).map(|_| Read::uniform("51G67890", conf)).collect();
        let out = fuse_with_grammar(&reads, &FuseConfig::default(), PlateGrammar::builtin());
        prop_assert_eq!(out.agreed(), Some("51G67890"));
    }
}

#[test]
fn a_plate_no_frame_read_whole_is_not_answered() {
    // Each read differs from 30A12345 at one place, each at another: the
    // per-position winners spell a plate nobody read.
    let reads = [
        Read::uniform("30A12346", 0.9),
        Read::uniform("30A12375", 0.9),
        Read::uniform("30A12845", 0.9),
        Read::uniform("30A19345", 0.9),
    ];
    assert!(
        matches!(fuse(&reads, &FuseConfig::default()), Fused::Disagree { .. }),
        "{:?}",
        fuse(&reads, &FuseConfig::default())
    );
}

#[test]
fn fusing_one_read_does_not_raise_its_confidence() {
    // Eight characters at 0.92 each: a 0.51 plate.
    let read = Read {
        text: "30A12345".into(),
        char_conf: vec![0.92; 8],
        confidence: 0.513,
    };
    let cfg = FuseConfig {
        min_reads: 1,
        min_confidence: 0.0,
        ..FuseConfig::default()
    };
    match fuse(&[read], &cfg) {
        Fused::Agreed { confidence, .. } => assert!(confidence <= 0.513 + 1e-6, "{confidence}"),
        other => panic!("{other:?}"),
    }
}
