//! The manoeuvre through the junction on turning arcs as vehicles drive
//! them (a radius of about 5 m, 450 px at the test junction's stop line),
//! not the instant 90° turns of `rules_junction.rs`: a lawful turn must not
//! be read as going straight because it has turned only a little by the
//! time it is 200 px past the line, nor a run be read as a turn because
//! one box was cut short or shifted.

mod rules_support;

use edge_agent::geometry::Point;
use edge_agent::rules::RuleKind;
use edge_agent::signal::SignalState::{self, Green, Red, Yellow};
use protocol::VehicleClass::{Car, Motorcycle};
use protocol::ViolationType;
use rules_support::*;

/// Green until frame 2, yellow until frame 5, red from frame 5.
fn red_from_5(n: u64) -> SignalState {
    match n {
        0..2 => Green,
        2..5 => Yellow,
        _ => Red,
    }
}

/// The stop line of the test junction (y = 600).
const LINE_Y: f64 = 600.0;

/// `s` px along a circular arc of `radius` px that starts at `from`
/// heading up the image and turns right (`dir = 1`) or left (`dir = -1`)
/// through 90°, then straight on to the side. `None` once the anchor is
/// beyond x = 60…1860 (it has left the picture).
fn along_arc(from: Point, s: f64, radius: f64, dir: f64) -> Option<Point> {
    let quarter = radius * std::f64::consts::FRAC_PI_2;
    let p = if s <= quarter {
        let a = s / radius;
        Point::new(
            from.x + dir * radius * (1.0 - a.cos()),
            from.y - radius * a.sin(),
        )
    } else {
        Point::new(from.x + dir * (radius + s - quarter), from.y - radius)
    };
    (60.0..=1860.0).contains(&p.x).then_some(p)
}

/// Up the image at `x` from y = 905, `speed` px a frame, over the stop line
/// at (x, 600), and on from there along the arc of [`along_arc`].
fn arc_turn(x: f64, speed: f64, radius: f64, dir: f64) -> impl Fn(u64) -> Option<Point> {
    move |n| {
        let s = speed * n as f64 - (905.0 - LINE_Y);
        if s <= 0.0 {
            Some(Point::new(x, LINE_Y - s))
        } else {
            along_arc(Point::new(x, LINE_Y), s, radius, dir)
        }
    }
}

#[test]
fn a_right_turn_on_red_along_a_normal_arc_is_no_violation() {
    // Lane s3 (x 1100–1500) allows a right turn on red. The motorcycle
    // crosses the line at (1300, 600) on red (frame 15.25) and turns right
    // about (1750, 600): 200 px past the line it has turned only 25°.
    let moto = Vehicle::new(4, Motorcycle, arc_turn(1300.0, 20.0, 450.0, 1.0));
    let out = run(SITE, &[moto], red_from_5, 70);
    assert_eq!(out.summary(), vec![]);
    // The same turn where a right turn on red is not allowed is a run.
    let site = SITE.replace("right_turn_on_red = true", "right_turn_on_red = false");
    let moto = Vehicle::new(4, Motorcycle, arc_turn(1300.0, 20.0, 450.0, 1.0));
    let out = run(&site, &[moto], red_from_5, 70);
    assert_eq!(out.summary(), vec![(4, ViolationType::RedLight)]);
}

#[test]
fn a_left_turn_along_a_normal_arc_from_a_left_only_lane_is_no_violation() {
    // Lane s1 (x 400–700) is for left turns and U-turns: the car crosses at
    // (550, 600) on green and turns left about (100, 600).
    let car = Vehicle::new(5, Car, arc_turn(550.0, 20.0, 450.0, -1.0));
    let out = run(SITE, &[car], |_| Green, 70);
    assert_eq!(out.summary(), vec![]);
    // The same arc out of the straight-only lane s2 is a wrong manoeuvre.
    let car = Vehicle::new(5, Car, arc_turn(900.0, 20.0, 450.0, -1.0));
    let out = run(SITE, &[car], |_| Green, 70);
    assert_eq!(out.summary(), vec![(5, ViolationType::WrongLane)]);
    assert_eq!(out.reported[0].1.kind, RuleKind::WrongManoeuvre);
}

#[test]
fn a_right_turn_on_red_lost_before_it_can_be_told_from_straight_is_no_violation() {
    // The right turn of the first test, its track lost 250 px along the
    // arc (frame 27): turned 32°, under the 35° of a turn, but not clearly
    // straight either. In doubt: a lawful right turn is possible.
    let arc = arc_turn(1300.0, 20.0, 450.0, 1.0);
    let moto = Vehicle::new(4, Motorcycle, move |n| (n <= 27).then(|| arc(n)).flatten());
    let out = run(SITE, &[moto], red_from_5, 70);
    assert_eq!(out.summary(), vec![]);
}

/// Up the image at `x` from y = 905, 20 px a frame, its anchor 2 px to
/// one side and the other in turn (box jitter).
fn straight_jittering(x: f64) -> impl Fn(u64) -> Option<Point> {
    move |n| {
        let side = if n.is_multiple_of(2) { 2.0 } else { -2.0 };
        Some(Point::new(x + side, 905.0 - 20.0 * n as f64))
    }
}

#[test]
fn going_straight_through_still_runs_the_red_or_leaves_the_wrong_lane() {
    // Straight on red out of the right-turn-on-red lane s3: once.
    let moto = Vehicle::new(1, Motorcycle, straight_jittering(1300.0));
    let out = run(SITE, &[moto], red_from_5, 40);
    assert_eq!(out.summary(), vec![(1, ViolationType::RedLight)]);
    assert_eq!(out.reported[0].1.lane.as_deref(), Some("s3"));
    // Straight on red out of s2 (no right turn on red there): once.
    let car = Vehicle::new(2, Car, straight_jittering(900.0));
    let out = run(SITE, &[car], red_from_5, 40);
    assert_eq!(out.summary(), vec![(2, ViolationType::RedLight)]);
    // Straight on green out of the left-only lane s1: a wrong manoeuvre,
    // once.
    let car = Vehicle::new(3, Car, straight_jittering(550.0));
    let out = run(SITE, &[car], |_| Green, 40);
    assert_eq!(out.summary(), vec![(3, ViolationType::WrongLane)]);
    let v = &out.reported[0].1;
    assert_eq!(v.kind, RuleKind::WrongManoeuvre);
    assert_eq!(v.lane.as_deref(), Some("s1"));
}

/// Straight up lane s2 at x = 900 from y = 905, 20 px a frame (crossing
/// the line at frame 15.25, 200 px past it at frame 25.25), except that in
/// frame `odd` the box is cut from its left by a motorbike alongside: its
/// bottom centre is 40 px to the right; and in frame `short` the box is
/// cut short by 80 px (its bottom that much further up).
fn straight_with_a_bad_box(odd: u64, short: u64) -> impl Fn(u64) -> Option<Point> {
    move |n| {
        let y = 905.0 - 20.0 * n as f64;
        let x = if n == odd { 940.0 } else { 900.0 };
        Some(Point::new(x, if n == short { y - 80.0 } else { y }))
    }
}

#[test]
fn one_box_cut_short_or_shifted_does_not_change_the_manoeuvre() {
    let none = u64::MAX;
    for (odd, short) in [(26, none), (16, none), (none, 26), (26, 25), (16, 26)] {
        // Straight on green out of the straight-only lane s2: nothing.
        let car = Vehicle::new(1, Car, straight_with_a_bad_box(odd, short));
        let out = run(SITE, &[car], |_| Green, 40);
        assert_eq!(out.summary(), vec![], "shifted at {odd}, short at {short}");
    }
    // The same bad box on a motorcycle going straight on red out of the
    // right-turn-on-red lane s3 (400 px to the right, at x = 1300): still the
    // run, once.
    for (odd, short) in [(26, none), (16, none), (none, 26)] {
        let path = straight_with_a_bad_box(odd, short);
        let moto = Vehicle::new(2, Motorcycle, move |n| {
            path(n).map(|p| Point::new(p.x + 400.0, p.y))
        });
        let out = run(SITE, &[moto], red_from_5, 40);
        assert_eq!(
            out.summary(),
            vec![(2, ViolationType::RedLight)],
            "shifted at {odd}, short at {short}"
        );
    }
}

#[test]
fn waiting_beyond_the_line_with_a_jittering_box_then_turning_right_on_red_is_no_violation() {
    // Lane s3, red from frame 5. The motorcycle crosses at frame 15.25,
    // stands 40 px past the line from frame 17 to 76 (its box jittering
    // 2 px each way: some 250 px of "path" without going anywhere), then
    // turns right along a 450 px arc from (1300, 560).
    let moto = Vehicle::new(4, Motorcycle, |n: u64| match n {
        0..17 => Some(Point::new(1300.0, (905.0 - 20.0 * n as f64).max(560.0))),
        17..77 => {
            let j = if n.is_multiple_of(2) { 2.0 } else { -2.0 };
            Some(Point::new(1300.0 + j, 560.0 + j / 2.0))
        }
        _ => along_arc(
            Point::new(1300.0, 560.0),
            20.0 * (n - 76) as f64,
            450.0,
            1.0,
        ),
    });
    let out = run(SITE, &[moto], red_from_5, 130);
    assert_eq!(out.summary(), vec![]);
}
