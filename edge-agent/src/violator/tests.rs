//! Unit tests of the fusion of the violator's plate reads.

use super::fuse_violator_reads;
use plate_ocr::fuse::Read;
use protocol::VehicleClass;
use std::collections::BTreeMap;

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
    let bike = VehicleClass::Motorcycle;
    assert!(!fits_violator(theirs, &violator, bike, &[alongside]));
    assert!(fits_violator(mine, &violator, bike, &[alongside]));
    // Without a neighbour over it, a plate low in the box is the box's
    // (so the neighbours must be known on every frame: see
    // `a_neighbour_the_detector_dropped_on_the_plate_frame_still_counts`).
    assert!(fits_violator(theirs, &violator, bike, &[]));
    // A car following close behind covers the violator's lower part;
    // the violator's rear plate is high in the follower's box.
    let car = bbox(300.0, 100.0, 200.0, 160.0);
    let follower = bbox(290.0, 225.0, 220.0, 180.0);
    assert!(fits_violator(
        (400.0, 236.0),
        &car,
        VehicleClass::Car,
        &[follower]
    ));
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
    let sorted = sort_reads(
        reads,
        region,
        &violator,
        VehicleClass::Motorcycle,
        &[],
        0.25,
        &mut near_misses,
    );
    assert!(matches!(sorted, FrameReads::Rivals(_)), "{sorted:?}");
    // So a frame reading only one of them cannot answer it alone.
    near_misses.sort();
    assert_eq!(near_misses, ["30A12345", "51G67890"]);
    let one = sort_reads(
        vec![plate_at("51G67890", [38.0, 100.0, 20.0, 12.0])],
        region,
        &violator,
        VehicleClass::Motorcycle,
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
        VehicleClass::Motorcycle,
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
        VehicleClass::Motorcycle,
        &[alongside],
        &theirs
    ));
    // The same window reading another plate is the violator's.
    let mine = plate_at("29B154321", [33.0, 100.0, 29.0, 16.0]);
    assert!(searched_read_fits(
        &mine,
        region,
        &violator,
        VehicleClass::Motorcycle,
        &[alongside],
        &theirs
    ));
}

/// The crop cut around `b` as `search_region` cuts it in a 1920×1080
/// frame, and a plate read 20×12 centred at `c` (frame coordinates) in it.
fn plate_centred(
    text: &str,
    b: &crate::geometry::BBox,
    c: (f64, f64),
) -> (opencv::core::Rect, plate_ocr::pipeline::PlateRead) {
    let region = super::search_region(b, 1920, 1080).unwrap();
    let (x, y) = (
        c.0 - f64::from(region.x) - 10.0,
        c.1 - f64::from(region.y) - 6.0,
    );
    (region, plate_at(text, [x as f32, y as f32, 20.0, 12.0]))
}

#[test]
fn a_neighbour_the_detector_dropped_on_the_plate_frame_still_counts() {
    use super::{FrameReads, neighbours_on, sort_reads};
    // A motorbike seen from the front (no front plate) on frame 50, a car
    // close behind it: the detector's NMS kept the motorbike's box and
    // dropped the car's on frame 50; the car is boxed on 49 and 51. The
    // car's front plate, at its bottom centre, lies in the lower half of
    // the motorbike's box.
    let bike = bbox(100.0, 100.0, 60.0, 120.0);
    let car_at = |y: f64| bbox(70.0, y, 120.0, 140.0);
    let neighbours: BTreeMap<u64, Vec<_>> =
        [(49, vec![car_at(57.0)]), (51, vec![car_at(63.0)])].into();
    let reach = 2; // two usual steps of a track analysed at its full rate
    assert!(
        neighbours_on(&neighbours, 50, &bike, reach).is_none(),
        "the car covers most of the motorbike: frame 50 is not read"
    );
    // A motorbike alongside, overlapping by 20 px (not enough to leave the
    // frame unread), boxed on 49 and 51 but not on 50, and its plate at
    // its bottom centre on 50, inside the violator's box: not the
    // violator's.
    let alongside_at = |y: f64| bbox(140.0, y, 60.0, 120.0);
    let neighbours: BTreeMap<u64, Vec<_>> = [
        (49, vec![alongside_at(101.0)]),
        (51, vec![alongside_at(109.0)]),
    ]
    .into();
    let near = neighbours_on(&neighbours, 50, &bike, reach).expect("not crowded");
    assert_eq!(near.len(), 2, "{near:?}");
    let (region, theirs) = plate_centred("29B112345", &bike, (158.0, 207.0));
    let sorted = sort_reads(
        vec![theirs],
        region,
        &bike,
        VehicleClass::Motorcycle,
        &near,
        0.25,
        &mut Vec::new(),
    );
    assert!(matches!(sorted, FrameReads::Nothing { .. }), "{sorted:?}");
    // A neighbour three steps away is not weighed (nor is the frame
    // crowded by a car there).
    let far: BTreeMap<u64, Vec<_>> = [(46, vec![car_at(57.0)]), (54, vec![car_at(63.0)])].into();
    assert_eq!(neighbours_on(&far, 50, &bike, reach), Some(Vec::new()));
}

#[test]
fn a_plate_high_in_the_violators_box_is_not_its_plate() {
    use super::{FrameReads, fits_violator, sort_reads};
    // No neighbour boxed anywhere near; a valid plate centred in the top
    // 20% of a motorbike's box (the front plate of a car behind it, a
    // plate on a rack, lettering) is not the motorbike's.
    let bike = bbox(100.0, 100.0, 60.0, 120.0);
    let (region, high) = plate_centred("30A12345", &bike, (130.0, 118.0));
    let sorted = sort_reads(
        vec![high],
        region,
        &bike,
        VehicleClass::Motorcycle,
        &[],
        0.25,
        &mut Vec::new(),
    );
    assert!(matches!(sorted, FrameReads::Nothing { .. }), "{sorted:?}");
    // Nor one just above the middle of a motorbike's box.
    assert!(!fits_violator(
        (130.0, 155.0),
        &bike,
        VehicleClass::Motorcycle,
        &[]
    ));
    // A car's plate may sit a little higher in its box (the lower 60%).
    let car = bbox(300.0, 100.0, 200.0, 160.0);
    assert!(!fits_violator((400.0, 150.0), &car, VehicleClass::Car, &[]));
    assert!(fits_violator((400.0, 170.0), &car, VehicleClass::Car, &[]));
}

#[test]
fn the_violators_own_plate_low_in_its_box_is_read() {
    use super::{FrameReads, neighbours_on, sort_reads};
    // The motorbike's plate where it hangs, over the rear wheel; a
    // motorbike alongside overlapping it a little on the frames around.
    let bike = bbox(100.0, 100.0, 60.0, 120.0);
    let neighbours: BTreeMap<u64, Vec<_>> = [
        (49, vec![bbox(140.0, 101.0, 60.0, 120.0)]),
        (50, vec![bbox(140.0, 105.0, 60.0, 120.0)]),
        (51, vec![bbox(140.0, 109.0, 60.0, 120.0)]),
    ]
    .into();
    let near = neighbours_on(&neighbours, 50, &bike, 2).expect("not crowded");
    for (class, b, c) in [
        (VehicleClass::Motorcycle, bike, (130.0, 200.0)),
        (
            VehicleClass::Car,
            bbox(300.0, 100.0, 200.0, 160.0),
            (400.0, 236.0),
        ),
    ] {
        let (region, mine) = plate_centred("30A12345", &b, c);
        let sorted = sort_reads(vec![mine], region, &b, class, &near, 0.25, &mut Vec::new());
        assert!(
            matches!(sorted, FrameReads::One(ref r) if r.text.as_deref() == Some("30A12345")),
            "{class:?}: {sorted:?}"
        );
    }
}

#[test]
fn nothing_read_is_not_an_answer() {
    assert!(fuse_violator_reads(&[], false).is_err());
}
