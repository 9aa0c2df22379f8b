//! Red-light runs that must not go unreported: one confirmed long after
//! its crossing whose track ends before the controller's feed vouched for
//! it, and one by a vehicle that appears where another runner was lost.

mod rules_support;

use edge_agent::geometry::Point;
use edge_agent::signal::SignalState::{Red, Yellow};
use protocol::VehicleClass::Car;
use protocol::ViolationType;
use rules_support::*;

#[test]
fn crept_over_waited_and_ran_the_red_then_left_is_reported_when_the_feed_vouches() {
    // Crosses the line on red (frame 15.25), stands 15 px past it (short of
    // the 30 px that confirm a run) for 10 s, then drives on through the
    // red from frame 116 (35 px past: confirmed) and leaves the view at
    // frame 119. The controller sends its phase every second, heard 0.2 s
    // later: it vouches for frame 116 (with 0.5 s of clock margin) by its
    // message of frame 130, heard at 132 — 1.6 s after the run, though
    // 11.7 s after the crossing.
    let path = |n: u64| {
        let y = match n {
            0..116 => (905.0 - 20.0 * n as f64).max(585.0),
            116..119 => 585.0 - 20.0 * (n - 114) as f64,
            _ => return None,
        };
        Some(Point::new(900.0, y))
    };
    let out = run_fed(
        SITE,
        &[Vehicle::new(9, Car, path)],
        fed_every_second(10_000, 2),
        200,
    );
    assert_eq!(out.summary(), vec![(9, ViolationType::RedLight)]);
    let (reported_at, v) = &out.reported[0];
    assert!(
        (130..140).contains(reported_at),
        "decided when the feed vouched: frame {reported_at}"
    );
    assert!(v.frame >= 116, "anchored where it went on: {}", v.frame);
    // A feed that stops at frame 60: given up, and the stop-line case it
    // made standing there reported instead (never guessed).
    let stuck = |n: u64| fed_every_second(10_000, 2)(n.min(62));
    let out = run_fed(SITE, &[Vehicle::new(9, Car, path)], stuck, 200);
    assert_eq!(out.summary(), vec![(9, ViolationType::StopLine)]);
}

#[test]
fn a_car_appearing_where_a_red_light_runner_was_lost_and_running_the_red_is_a_case() {
    // Red from frame 5. Car 1 runs the red and stops 50 px past the line
    // (y = 550); its track is lost at frame 40, standing. Car 2 is first
    // seen at frame 50, 40 px before the line and 90 px behind where car 1
    // stood (closer than a car's length), and runs the red too: a vehicle
    // found again beyond the line cannot cross it again, so this is
    // another vehicle's run, not car 1's found again.
    let red_from_5 = |n: u64| if n < 5 { Yellow } else { Red };
    let first = Vehicle::new(1, Car, |n: u64| {
        (n < 40).then(|| Point::new(900.0, (905.0 - 20.0 * n as f64).max(550.0)))
    });
    let second = Vehicle::new(2, Car, |n: u64| {
        (n >= 50).then(|| Point::new(900.0, 640.0 - 20.0 * (n - 50) as f64))
    });
    let out = run(SITE, &[first, second], red_from_5, 80);
    assert_eq!(
        out.summary(),
        vec![(1, ViolationType::RedLight), (2, ViolationType::RedLight)]
    );
}
