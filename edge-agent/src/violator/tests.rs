//! Unit tests of the fusion of the violator's plate reads.

use super::fuse_violator_reads;
use plate_ocr::fuse::Read;

fn read(text: &str) -> Read {
    Read::uniform(text, 0.95)
}

#[test]
fn one_detector_read_stands_alone_and_agreeing_frames_are_answered() {
    let (text, conf, support) = fuse_violator_reads(&[read("30A12345")], false).unwrap();
    assert_eq!((text.as_str(), support), ("30A12345", 1));
    assert!(conf > 0.5);
    let two = [read("30A12345"), read("30A12345")];
    assert_eq!(fuse_violator_reads(&two, false).unwrap().2, 2);
}

#[test]
fn any_rival_plate_makes_it_unreadable_whatever_the_majority() {
    let reads = [
        read("30A12345"),
        read("51G67890"),
        read("51G67890"),
        read("51G67890"),
        read("51G67890"),
    ];
    assert!(fuse_violator_reads(&reads, false).is_err());
}

#[test]
fn a_window_search_read_needs_a_second_frame() {
    assert!(fuse_violator_reads(&[read("29B112345")], true).is_err());
    let two = [read("29B112345"), read("29B112345")];
    assert_eq!(fuse_violator_reads(&two, true).unwrap().0, "29B112345");
}

fn bbox(x: f64, y: f64, w: f64, h: f64) -> crate::geometry::BBox {
    crate::geometry::BBox { x, y, w, h }
}

#[test]
fn a_neighbours_plate_in_the_violators_box_is_not_the_violators() {
    use super::fits_violator;
    // Two motorbikes side by side, boxes overlapping by 20 px.
    let violator = bbox(100.0, 100.0, 60.0, 120.0);
    let alongside = bbox(140.0, 105.0, 60.0, 120.0);
    let theirs = (170.0, 207.0); // at the neighbour's bottom centre
    let mine = (130.0, 202.0);
    assert!(!fits_violator(theirs, &violator, &[alongside]));
    assert!(fits_violator(mine, &violator, &[alongside]));
    // Without a neighbour over it, a plate in the box is the box's.
    assert!(fits_violator(theirs, &violator, &[]));
    // A car following close behind covers the violator's lower part;
    // the violator's rear plate is high in the follower's box.
    let car = bbox(300.0, 100.0, 200.0, 160.0);
    let follower = bbox(290.0, 225.0, 220.0, 180.0);
    assert!(fits_violator((400.0, 236.0), &car, &[follower]));
}

/// A valid plate read at `bbox` (x, y, w, h in the crop).
fn plate_at(text: &str, bbox: [f32; 4]) -> plate_ocr::pipeline::PlateRead {
    plate_ocr::pipeline::PlateRead {
        text: Some(text.into()),
        display: None,
        confidence: 0.9,
        bbox,
        corners: [[0.0; 2]; 4],
        lines: Some(2),
        colour: plate_ocr::plate::PlateColour::White,
        valid: true,
        unreadable: false,
        raw: text.into(),
        layout: None,
        detector_score: 0.9,
        chars: Vec::new(),
        second_opinion: None,
        near_miss: None,
    }
}

#[test]
fn two_plates_in_the_violators_box_are_rivals_of_any_answer() {
    use super::{FrameReads, sort_reads};
    // Two vehicles merged into one box, no neighbour box: both plates
    // sit where the violator's could. The crop starts at (94, 88).
    let region = opencv::core::Rect::new(94, 88, 72, 144);
    let violator = bbox(100.0, 100.0, 60.0, 120.0);
    let reads = vec![
        plate_at("30A12345", [20.0, 100.0, 20.0, 12.0]),
        plate_at("51G67890", [38.0, 100.0, 20.0, 12.0]),
    ];
    let mut near_misses = Vec::new();
    let sorted = sort_reads(reads, region, &violator, &[], 0.25, &mut near_misses);
    assert!(matches!(sorted, FrameReads::Rivals(_)), "{sorted:?}");
    // So a frame reading only one of them cannot answer it alone.
    near_misses.sort();
    assert_eq!(near_misses, ["30A12345", "51G67890"]);
    let one = sort_reads(
        vec![plate_at("51G67890", [38.0, 100.0, 20.0, 12.0])],
        region,
        &violator,
        &[],
        0.25,
        &mut Vec::new(),
    );
    assert!(matches!(one, FrameReads::One(ref r) if r.text.as_deref() == Some("51G67890")));
}

#[test]
fn the_window_search_cannot_bring_back_a_neighbours_plate() {
    use super::{FrameReads, searched_read_fits, sort_reads};
    // Two motorbikes side by side; the neighbour's plate (centre x 152)
    // is nearer the neighbour's plate position than the violator's.
    let violator = bbox(100.0, 100.0, 60.0, 120.0);
    let alongside = bbox(140.0, 105.0, 60.0, 120.0);
    let region = opencv::core::Rect::new(94, 88, 72, 144);
    let theirs = plate_at("29B112345", [54.0, 106.0, 8.0, 8.0]);
    let sorted = sort_reads(
        vec![theirs],
        region,
        &violator,
        &[alongside],
        0.25,
        &mut Vec::new(),
    );
    let FrameReads::Nothing { theirs } = sorted else {
        panic!("{sorted:?}")
    };
    assert_eq!(theirs, ["29B112345"]);
    // A window holding that plate is centred nearer the violator's
    // plate position (frame x 127–156, centre 141.5).
    let window = plate_at("29B112345", [33.0, 100.0, 29.0, 16.0]);
    assert!(!searched_read_fits(
        &window,
        region,
        &violator,
        &[alongside],
        &theirs
    ));
    // The same window reading another plate is the violator's.
    let mine = plate_at("29B154321", [33.0, 100.0, 29.0, 16.0]);
    assert!(searched_read_fits(
        &mine,
        region,
        &violator,
        &[alongside],
        &theirs
    ));
}

#[test]
fn nothing_read_is_not_an_answer() {
    assert!(fuse_violator_reads(&[], false).is_err());
}
