//! The multi-object tracker on synthetic detections with known answers.

use edge_agent::track::{Detection, FrameInfo, Tracker, TrackerConfig};
use proptest::prelude::*;
use protocol::VehicleClass;
use std::collections::{BTreeMap, BTreeSet};

const FRAME_US: i64 = 40_000; // 25 fps

fn frame(n: u64) -> FrameInfo {
    FrameInfo::new(n, 1_700_000_000_000_000 + n as i64 * FRAME_US)
}

fn det(x: f32, y: f32, w: f32, h: f32, score: f32, class: VehicleClass) -> Detection {
    Detection {
        bbox: [x, y, w, h],
        score,
        class,
        riders: 0,
    }
}

fn car(x: f32, y: f32) -> Detection {
    det(x, y, 120.0, 80.0, 0.9, VehicleClass::Car)
}

/// Runs frames and returns, per frame, the (id, box x) of active tracks seen
/// in that frame.
fn run(tracker: &mut Tracker, frames: &[Vec<Detection>]) -> Vec<Vec<(u64, f64)>> {
    frames
        .iter()
        .enumerate()
        .map(|(n, dets)| {
            tracker.update(frame(n as u64), dets);
            tracker
                .active()
                .filter(|t| t.misses() == 0)
                .map(|t| (t.id(), t.last().unwrap().bbox.x))
                .collect()
        })
        .collect()
}

#[test]
fn confirmed_after_three_hits_and_ids_from_one() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames: Vec<Vec<Detection>> = (0..5)
        .map(|i| vec![car(100.0 + 8.0 * i as f32, 300.0)])
        .collect();
    let seen = run(&mut tr, &frames);
    assert!(
        seen[0].is_empty() && seen[1].is_empty(),
        "tentative tracks are not reported"
    );
    assert_eq!(seen[2], vec![(1, 116.0)]);
    assert_eq!(seen[4], vec![(1, 132.0)]);
}

#[test]
fn one_frame_false_positive_never_becomes_a_track() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut frames: Vec<Vec<Detection>> = (0..10)
        .map(|i| vec![car(100.0 + 8.0 * i as f32, 300.0)])
        .collect();
    frames[4].push(car(1500.0, 900.0));
    let seen = run(&mut tr, &frames);
    let ids: BTreeSet<u64> = seen.iter().flatten().map(|(id, _)| *id).collect();
    assert_eq!(ids, BTreeSet::from([1]));
}

#[test]
fn keeps_id_through_short_occlusion() {
    let mut tr = Tracker::new(TrackerConfig::default());
    // 10 px per frame to the right; hidden for frames 10..16.
    let frames: Vec<Vec<Detection>> = (0..30)
        .map(|i| {
            if (10..16).contains(&i) {
                vec![]
            } else {
                vec![car(100.0 + 10.0 * i as f32, 300.0)]
            }
        })
        .collect();
    let mut ended = 0;
    for (n, dets) in frames.iter().enumerate() {
        tr.update(frame(n as u64), dets);
        ended += tr.ended().len();
    }
    let active: Vec<_> = tr.active().collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id(), 1);
    assert_eq!(ended, 0);
    // 30 frames minus 6 hidden.
    assert_eq!(active[0].trajectory().len(), 24);
    let frames_seen: Vec<u64> = active[0].trajectory().iter().map(|p| p.frame).collect();
    assert!(!frames_seen.contains(&12));
    assert_eq!(active[0].last().unwrap().anchor.x, 100.0 + 290.0 + 60.0);
}

#[test]
fn lost_track_ends_once_after_max_misses() {
    let cfg = TrackerConfig {
        max_misses: 5,
        ..TrackerConfig::default()
    };
    let mut tr = Tracker::new(cfg);
    let mut ended_at = Vec::new();
    for n in 0..20u64 {
        let dets = if n < 8 {
            vec![car(100.0 + 5.0 * n as f32, 300.0)]
        } else {
            vec![]
        };
        tr.update(frame(n), &dets);
        for t in tr.ended() {
            ended_at.push((n, t.id(), t.trajectory().len()));
        }
    }
    // Last seen at frame 7; misses 1..=5 at frames 8..=12, ends at 13.
    assert_eq!(ended_at, vec![(13, 1, 8)]);
    assert_eq!(tr.active().count(), 0);
}

#[test]
fn two_vehicles_side_by_side_keep_their_ids() {
    let mut tr = Tracker::new(TrackerConfig::default());
    // Two cars driving up the image in adjacent lanes, 4 px apart.
    let frames: Vec<Vec<Detection>> = (0..40)
        .map(|i| {
            let y = 900.0 - 12.0 * i as f32;
            vec![
                det(500.0, y, 120.0, 90.0, 0.9, VehicleClass::Car),
                det(624.0, y + 3.0, 120.0, 90.0, 0.8, VehicleClass::Car),
            ]
        })
        .collect();
    let seen = run(&mut tr, &frames);
    for f in &seen[2..] {
        let by_id: BTreeMap<u64, f64> = f.iter().copied().collect();
        assert_eq!(by_id.len(), 2, "{f:?}");
        assert_eq!(by_id[&1], 500.0);
        assert_eq!(by_id[&2], 624.0);
    }
}

#[test]
fn no_id_swap_when_boxes_pass_close() {
    let mut tr = Tracker::new(TrackerConfig::default());
    // Two cars passing each other in opposite directions; their boxes
    // overlap for several frames (vertical offset 30 px of 80).
    let frames: Vec<Vec<Detection>> = (0..60)
        .map(|i| {
            let t = i as f32;
            vec![car(100.0 + 15.0 * t, 300.0), car(1000.0 - 15.0 * t, 330.0)]
        })
        .collect();
    let seen = run(&mut tr, &frames);
    let mut xs: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for f in &seen {
        for (id, x) in f {
            xs.entry(*id).or_default().push(*x);
        }
    }
    assert_eq!(xs.len(), 2, "exactly two ids: {:?}", xs.keys());
    let right = &xs[&1];
    let left = &xs[&2];
    assert!(
        right.windows(2).all(|w| w[1] > w[0]),
        "track 1 always moves right"
    );
    assert!(
        left.windows(2).all(|w| w[1] < w[0]),
        "track 2 always moves left"
    );
    assert_eq!(right.len(), 58);
    assert_eq!(left.len(), 58);
}

#[test]
fn low_score_detections_keep_a_track_alive() {
    let mut tr = Tracker::new(TrackerConfig::default());
    for n in 0..20u64 {
        let score = if n < 5 { 0.9 } else { 0.3 };
        let d = det(
            100.0 + 6.0 * n as f32,
            300.0,
            120.0,
            80.0,
            score,
            VehicleClass::Car,
        );
        tr.update(frame(n), &[d]);
    }
    let t: Vec<_> = tr.active().collect();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].misses(), 0);
    assert_eq!(t[0].trajectory().len(), 20);
}

#[test]
fn class_by_majority_vote() {
    let mut tr = Tracker::new(TrackerConfig::default());
    for n in 0..10u64 {
        let class = if n % 3 == 0 {
            VehicleClass::Truck
        } else {
            VehicleClass::Bus
        };
        tr.update(
            frame(n),
            &[det(100.0 + 5.0 * n as f32, 300.0, 200.0, 150.0, 0.9, class)],
        );
    }
    let t = tr.active().next().unwrap();
    // Trucks at 0, 3, 6, 9 (4 votes), buses 6 votes.
    assert_eq!(t.class(), VehicleClass::Bus);
}

/// A motorbike moving down the frame, with `riders[n]` people seen on it in
/// frame `n`; the track's rider count at the end.
fn riders_of(riders: &[u8]) -> Option<u8> {
    riders_of_a(VehicleClass::Motorcycle, riders)
}

fn riders_of_a(class: VehicleClass, riders: &[u8]) -> Option<u8> {
    let mut tr = Tracker::new(TrackerConfig::default());
    for (n, &r) in riders.iter().enumerate() {
        let mut d = det(400.0, 100.0 + 6.0 * n as f32, 40.0, 70.0, 0.8, class);
        d.riders = r;
        tr.update(frame(n as u64), &[d]);
    }
    tr.active().next().unwrap().riders()
}

#[test]
fn riders_are_what_was_seen_often_enough() {
    assert_eq!(riders_of(&[0; 12]), None, "a far bike: no rider seen");
    assert_eq!(
        riders_of(&[0, 1, 0, 0, 0, 0, 1, 0, 0, 0]),
        None,
        "seen in 2 frames only"
    );
    assert_eq!(riders_of(&[1, 1, 0, 1, 1, 1, 0, 1]), Some(1));
    // The passenger hidden behind the driver half of the time still counts.
    assert_eq!(riders_of(&[1, 2, 1, 2, 1, 1, 2, 1, 2, 1]), Some(2));
    // A pedestrian crossing behind for two of twelve frames does not.
    assert_eq!(riders_of(&[1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1]), Some(1));
    // Three people on one bike, seen so in most frames.
    assert_eq!(riders_of(&[3, 3, 2, 3, 3, 3, 2, 3]), Some(3));
    // A track that is a car by majority reports none, whatever a few
    // frames called a motorbike counted.
    assert_eq!(riders_of_a(VehicleClass::Car, &[1; 8]), None);
}

#[test]
fn invalid_boxes_are_ignored() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let bad = [
        det(f32::NAN, 0.0, 10.0, 10.0, 0.9, VehicleClass::Car),
        det(0.0, 0.0, -10.0, 10.0, 0.9, VehicleClass::Car),
        det(0.0, 0.0, 1e30, 10.0, 0.9, VehicleClass::Car),
        det(0.0, 0.0, f32::INFINITY, 10.0, 0.9, VehicleClass::Car),
        det(0.0, 0.0, 10.0, 10.0, f32::NAN, VehicleClass::Car),
        det(0.0, 0.0, 0.5, 0.5, 0.9, VehicleClass::Car),
    ];
    for n in 0..10 {
        tr.update(frame(n), &bad);
    }
    assert_eq!(tr.active().count(), 0);
}

#[test]
fn finish_ends_every_track() {
    let mut tr = Tracker::new(TrackerConfig::default());
    for n in 0..5u64 {
        tr.update(frame(n), &[car(100.0, 100.0), car(600.0, 100.0)]);
    }
    tr.finish();
    assert_eq!(tr.ended().len(), 2);
    assert_eq!(tr.active().count(), 0);
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -100.0f32..2000.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(f32::MAX),
        1 => Just(-1e30f32),
        1 => Just(0.0f32),
        1 => any::<f32>(),
    ]
}

fn any_detection() -> impl Strategy<Value = Detection> {
    (
        any_f32(),
        any_f32(),
        any_f32(),
        any_f32(),
        prop_oneof![3 => 0.0f32..1.0, 1 => any::<f32>()],
        prop_oneof![
            Just(VehicleClass::Car),
            Just(VehicleClass::Motorcycle),
            Just(VehicleClass::Bus),
            Just(VehicleClass::Truck)
        ],
    )
        .prop_map(|(x, y, w, h, score, class)| Detection {
            bbox: [x, y, w, h],
            score,
            class,
            riders: 0,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)))]
    #[test]
    fn tracker_never_panics(
        frames in prop::collection::vec(prop::collection::vec(any_detection(), 0..12), 1..40),
        jumps in prop::collection::vec(0u64..5, 40),
    ) {
        let mut tr = Tracker::new(TrackerConfig { confirm_hits: 1, max_misses: 3, ..TrackerConfig::default() });
        let mut n = 0u64;
        for (i, dets) in frames.iter().enumerate() {
            n += jumps[i];
            tr.update(frame(n), dets);
            let ids: Vec<u64> = tr.active().map(|t| t.id()).collect();
            let unique: BTreeSet<u64> = ids.iter().copied().collect();
            prop_assert_eq!(ids.len(), unique.len());
            for t in tr.active() {
                let b = t.last().unwrap().bbox;
                prop_assert!(b.is_valid());
                prop_assert!(b.w >= 2.0 && b.h >= 2.0);
            }
        }
    }
}

#[test]
fn coasting_lasts_the_same_time_at_a_lower_analysis_rate() {
    use edge_agent::track::TrackerConfig;
    let d = TrackerConfig::default();
    assert_eq!(TrackerConfig::for_rate(25.0).max_misses, d.max_misses);
    assert_eq!(TrackerConfig::for_rate(10.0).max_misses, 12);
    assert_eq!(TrackerConfig::for_rate(1.0).max_misses, 3, "at least 3");
    assert_eq!(
        TrackerConfig::for_rate(60.0).max_misses,
        d.max_misses,
        "never more"
    );
    assert_eq!(TrackerConfig::for_rate(f64::NAN).max_misses, d.max_misses);
    assert_eq!(TrackerConfig::for_rate(10.0).confirm_hits, d.confirm_hits);
}

#[test]
fn a_lost_motorbike_track_does_not_take_the_car_that_appears_over_its_prediction() {
    // A motorbike rides up the image for 10 frames, is hidden for 4, and a
    // car appears (its first detection) where the bike's prediction lies:
    // its box contains the predicted bike box (IoU about 0.3). The car is a
    // new vehicle; the bike's track must not become the car.
    let bike = |n: u32| {
        det(
            1000.0,
            600.0 - 10.0 * n as f32,
            40.0,
            80.0,
            0.9,
            VehicleClass::Motorcycle,
        )
    };
    let mut frames: Vec<Vec<Detection>> = (0..10).map(|n| vec![bike(n)]).collect();
    frames.extend((10..14).map(|_| Vec::new()));
    // The bike would be at y 460..540 at frame 14; the car covers it.
    frames.extend((14..20).map(|n| {
        vec![det(
            960.0,
            455.0 - 2.0 * (n - 14) as f32,
            120.0,
            90.0,
            0.9,
            VehicleClass::Car,
        )]
    }));
    let mut tr = Tracker::new(TrackerConfig::default());
    let seen = run(&mut tr, &frames);
    let bike_id = seen[9][0].0;
    for (n, s) in seen.iter().enumerate().skip(14) {
        assert!(
            s.iter().all(|(id, _)| *id != bike_id),
            "frame {n}: the bike's track took the car: {s:?}"
        );
    }
    assert!(
        seen[19].iter().any(|(id, x)| *id != bike_id && *x == 960.0),
        "the car is its own track: {:?}",
        seen[19]
    );

    // The bike reappearing there, classed a car on one frame (a class
    // flip), keeps its track: that frame is missed, not taken over.
    let mut frames: Vec<Vec<Detection>> = (0..10).map(|n| vec![bike(n)]).collect();
    frames.extend((10..14).map(|_| Vec::new()));
    let mut flipped = bike(14);
    flipped.class = VehicleClass::Car;
    frames.push(vec![flipped]);
    frames.extend((15..20).map(|n| vec![bike(n)]));
    let mut tr = Tracker::new(TrackerConfig::default());
    let seen = run(&mut tr, &frames);
    assert_eq!(seen[19].len(), 1, "{seen:?}");
    assert_eq!(seen[19][0].0, seen[9][0].0, "the same track: {seen:?}");

    // The bike itself reappearing there is found again: same track.
    let mut frames: Vec<Vec<Detection>> = (0..10).map(|n| vec![bike(n)]).collect();
    frames.extend((10..14).map(|_| Vec::new()));
    frames.extend((14..20).map(|n| vec![bike(n)]));
    let mut tr = Tracker::new(TrackerConfig::default());
    let seen = run(&mut tr, &frames);
    assert_eq!(seen[19].len(), 1);
    assert_eq!(seen[19][0].0, seen[9][0].0, "the same track: {seen:?}");
}

#[test]
fn the_first_observation_outlives_the_bounded_trajectory() {
    let mut tr = Tracker::new(TrackerConfig {
        max_trajectory: 5,
        ..TrackerConfig::default()
    });
    for n in 0..20u64 {
        tr.update(frame(n), &[car(100.0 + 4.0 * n as f32, 300.0)]);
    }
    let t = tr.active().next().unwrap();
    assert_eq!(t.trajectory().len(), 5);
    assert_eq!(t.trajectory().front().unwrap().frame, 15);
    assert_eq!(
        (t.first().frame, t.first().bbox.x),
        (0, 100.0),
        "where and when it appeared"
    );
}

/// A stall of the stream (a network hiccup, a decoder waiting for its
/// keyframe) numbers the frames after it consecutively: the tracker must
/// count the time it lasted, or a car standing where another stood five
/// seconds ago inherits its track (and with it its violation and plate).
#[test]
fn a_stall_between_consecutive_frame_numbers_ends_the_tracks_it_outlasted() {
    let mut tr = Tracker::new(TrackerConfig::default());
    for n in 0..10 {
        tr.update(frame(n), &[car(100.0, 100.0)]);
    }
    let first = tr
        .active()
        .next()
        .map(|t| t.id())
        .expect("car A is tracked");
    // Frame 10 comes 5 s after frame 9 (the coasting limit is 1.2 s), with
    // car B nearly where car A stood.
    let late = FrameInfo::new(10, frame(9).timestamp_us + 5_000_000);
    tr.update(late, &[car(110.0, 100.0)]);
    assert!(
        tr.ended().iter().any(|t| t.id() == first),
        "car A's track ends with the stall"
    );
    assert!(
        tr.active().all(|t| t.id() != first),
        "car B does not continue car A's track"
    );
    // An ordinary step (jitter of a few ms) changes nothing.
    let mut tr = Tracker::new(TrackerConfig::default());
    for n in 0..10 {
        tr.update(frame(n), &[car(100.0 + n as f32, 100.0)]);
    }
    let jittered = FrameInfo::new(10, frame(10).timestamp_us + 15_000);
    tr.update(jittered, &[car(110.0, 100.0)]);
    assert!(tr.ended().is_empty());
    assert_eq!(tr.active().filter(|t| t.misses() == 0).count(), 1);
    // A short stall within the coasting time keeps the track, which is
    // then held to a detection of its kind and size.
    let short = FrameInfo::new(11, frame(10).timestamp_us + 400_000);
    tr.update(short, &[car(112.0, 100.0)]);
    assert!(tr.ended().is_empty());
    assert_eq!(
        tr.active().map(|t| t.id()).collect::<Vec<_>>(),
        vec![first],
        "the same car after a short stall keeps its id"
    );
}

/// A camera paced in the analysis loop (MJPEG, 10 of 25 fps) numbers its
/// frames per camera frame: the tracker sees 0, 2, 5, 7, 10, … 100 ms
/// apart, which is no stall, and its tracks confirm.
#[test]
fn a_paced_stream_s_jumping_frame_numbers_are_no_stall() {
    let mut tr = Tracker::new(TrackerConfig::for_rate(10.0));
    for k in 0..10u64 {
        tr.update(frame(k * 5 / 2), &[car(100.0 + 4.0 * k as f32, 100.0)]);
        assert!(tr.ended().is_empty());
    }
    assert_eq!(tr.active().count(), 1);
}

/// A camera whose rate falls (25 to 12.5 fps at dusk) within the stream:
/// after the first long step or two the new rate is the usual one, and
/// new vehicles are still tracked.
#[test]
fn a_camera_whose_rate_falls_goes_on_tracking() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let t0 = frame(0).timestamp_us;
    for n in 0..10u64 {
        tr.update(FrameInfo::new(n, t0 + n as i64 * 40_000), &[]);
    }
    // Four times slower: each step is a "long gap" at first.
    let t1 = t0 + 9 * 40_000;
    for k in 1..=20u64 {
        let f = FrameInfo::new(9 + k, t1 + k as i64 * 160_000);
        tr.update(f, &[car(100.0 + 6.0 * k as f32, 300.0)]);
    }
    assert_eq!(tr.active().count(), 1, "the new car is tracked");
}
