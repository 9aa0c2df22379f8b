//! Reads the pipeline must leave to a person rather than answer: each was
//! answered once as a plate that may belong to someone else.

use opencv::core::{CV_8UC3, Mat, Scalar};
use plate_ocr::crosscheck::CrossCheck;
use plate_ocr::pipeline::{Pipeline, PipelineConfig, PlateRead};

mod fake;

use fake::Scored;

fn read_with(p: &Pipeline) -> PlateRead {
    let crop = Mat::new_rows_cols_with_default(40, 160, CV_8UC3, Scalar::all(255.0)).unwrap();
    p.read_crop(&crop, None).unwrap()
}

fn read(r: Scored) -> PlateRead {
    read_with(&Pipeline::new(
        None,
        Box::new(r.lines(None)),
        PipelineConfig::default(),
    ))
}

/// A car's `30A-812.34` with its `8` read as `B` is `30AB1234`: valid only
/// as an old two-letter motorbike plate, a layout the grammar data marks
/// unconfirmed. Read with certainty, it is still a person's to read.
#[test]
fn a_plate_only_an_unconfirmed_layout_fits_is_left_to_a_person() {
    let r = read(Scored::certain("30AB1234"));
    assert!(r.text.is_none() && r.unreadable, "{r:?}");
    assert_eq!(r.near_miss.as_deref(), Some("30AB1234"));
    // Confirmed layouts read with certainty are answered.
    for plate in ["30A12345", "30A1234", "29B112345", "29MĐ112345"] {
        assert_eq!(read(Scored::certain(plate)).text.as_deref(), Some(plate));
    }
}

/// `30AO2345` with an unsure `O`: the grammar reads it as `30A02345` or
/// `30AD2345` alike and refuses to choose. Dropping the `O` as spurious
/// found a third plate, `30A2345` (the plate was `30A12345`), and answered
/// it at 0.57.
#[test]
fn a_tie_between_two_plates_is_not_settled_by_dropping_a_character() {
    let mut chars: Vec<(char, f32)> = "30AO2345".chars().map(|c| (c, 0.97)).collect();
    chars[3].1 = 0.3;
    let r = read(Scored::new(chars));
    assert!(r.text.is_none() && r.unreadable, "{r:?}");
    // A stray character read beside a whole plate is still dropped.
    let mut chars: Vec<(char, f32)> = "30A12345K".chars().map(|c| (c, 0.97)).collect();
    chars[8].1 = 0.2;
    let r = read(Scored::new(chars));
    assert_eq!(r.text.as_deref(), Some("30A12345"), "{r:?}");
}

/// A corrected character is scored at the correction factor (0.5), the
/// default threshold too: a read that needed a correction, however sure
/// the model was of the rest, must not pass by reaching the threshold.
#[test]
fn a_read_exactly_at_the_threshold_is_not_answered() {
    let r = read(Scored::certain("3OA12345"));
    assert!(r.text.is_none(), "{r:?}");
    assert_eq!(r.near_miss.as_deref(), Some("30A12345"));
    assert!((r.confidence - 0.5).abs() < 1e-6, "{r:?}");
}

/// With a cross-check, a second recogniser that reads a different valid
/// plate as surely as a near miss (here 0.3, the near-miss floor being
/// 0.25) leaves the crop to a person; a much weaker dissent only lowers
/// the answer's confidence.
#[test]
fn a_cross_check_dissent_as_sure_as_a_near_miss_is_not_outvoted() {
    let sure = |text: &str, p: f32| Scored::uniform(text, p).lines(None);
    let p = Pipeline::new(
        None,
        Box::new(sure("30A12345", 0.995)),
        PipelineConfig::default(),
    )
    .with_cross_check(Box::new(sure("30A12346", 0.86)), CrossCheck::default());
    let r = read_with(&p);
    assert!(r.text.is_none(), "{r:?}");
    assert_eq!(r.near_miss.as_deref(), Some("30A12346"));
    let p = Pipeline::new(
        None,
        Box::new(sure("30A12345", 0.995)),
        PipelineConfig::default(),
    )
    .with_cross_check(Box::new(sure("30A12346", 0.7)), CrossCheck::default());
    let r = read_with(&p);
    assert_eq!(r.text.as_deref(), Some("30A12345"), "{r:?}");
}
