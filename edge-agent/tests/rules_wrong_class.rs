//! The wrong-class rule trusts a track's class only when the detector's
//! votes are decisive: YOLOX-Nano calls about half of small motorbikes
//! "car", so a bike in its own lane called car 6 times in 10 is no case.

mod rules_support;

use edge_agent::geometry::BBox;
use edge_agent::rules::RuleEngine;
use edge_agent::signal::{ExternalFeed, SignalState};
use edge_agent::site::SiteConfig;
use edge_agent::track::{Track, TrackPoint};
use protocol::VehicleClass::{self, Car, Motorcycle};
use protocol::ViolationType;
use rules_support::{SITE, frame, ts};

/// One track slowly up the motorcycle lane s3 (5 px a frame, well before
/// the line) for 40 frames, called `class(n)` in frame `n`; the rule
/// types reported.
fn reported(class: impl Fn(u64) -> VehicleClass) -> Vec<ViolationType> {
    let site = SiteConfig::from_toml_str(SITE, "test.toml").expect("valid");
    let mut engine = RuleEngine::new(&site).expect("compiles");
    let mut feed = ExternalFeed::new();
    let point = |n: u64| {
        let y = 1000.0 - 5.0 * n as f64;
        TrackPoint::new(
            frame(n),
            BBox::from_xywh(1280.0, y - 60.0, 40.0, 60.0),
            0.9,
            class(n),
        )
    };
    let mut track = Track::from_point(1, point(0));
    let mut out = Vec::new();
    for n in 0..40 {
        feed.set("main", SignalState::Green, ts(n));
        if n > 0 {
            track.push_point(point(n));
        }
        out.extend(
            engine
                .update(frame(n), [&track], &[], &feed)
                .iter()
                .map(|v| v.rule),
        );
    }
    out.extend(
        engine
            .update(frame(40), std::iter::empty(), &[track], &feed)
            .iter()
            .map(|v| v.rule),
    );
    out
}

#[test]
fn a_motorbike_called_car_six_times_in_ten_is_not_in_the_wrong_lane() {
    let out = reported(|n| if n % 10 < 6 { Car } else { Motorcycle });
    assert_eq!(out, vec![]);
}

#[test]
fn a_car_called_car_nine_times_in_ten_in_the_motorcycle_lane_is() {
    let out = reported(|n| if n % 10 < 9 { Car } else { Motorcycle });
    assert_eq!(out, vec![ViolationType::WrongLane]);
}
