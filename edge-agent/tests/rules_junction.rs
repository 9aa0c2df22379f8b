//! Red light, right turn on red, stop-line encroachment and wrong
//! manoeuvre on synthetic trajectories with exact expected violations.

mod rules_support;

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

#[test]
fn car_crossing_on_red_gives_one_red_light_violation() {
    // Anchor y = 905 - 20 n: at frame 15 y = 605, at 16 y = 585, so the line
    // (y = 600) is crossed a quarter of the way between them.
    let out = run(
        SITE,
        &[Vehicle::new(7, Car, up(900.0, 905.0, 20.0))],
        red_from_5,
        40,
    );
    assert_eq!(out.summary(), vec![(7, ViolationType::RedLight)]);
    let (reported_at, v) = &out.reported[0];
    assert_eq!(v.kind, RuleKind::RedLight);
    assert_eq!(v.frame, 16);
    assert_eq!(v.at_us, ts(16));
    assert_eq!((v.frames.before, v.frames.at, v.frames.after), (15, 16, 21));
    assert_eq!(*reported_at, 21, "reported after_frames = 5 frames later");
    assert_eq!(v.lane.as_deref(), Some("s2"));
    assert_eq!(v.class, Car);
    let sig = v.signal.as_ref().unwrap();
    assert_eq!(sig.state, Red);
    // Judged when the car first reached the line: its box (90 px tall)
    // has its far corners beyond y = 600 from frame 11 on (top 595), so it
    // reached the line after frame 10, red since frame 5: 500 ms.
    assert_eq!(sig.red_for_ms, Some(500));
    assert_eq!(v.bbox.y + v.bbox.h, 585.0);
    assert_eq!(v.speed, None);
}

#[test]
fn car_crossing_on_green_or_yellow_is_no_violation() {
    let green = run(
        SITE,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        |_| Green,
        40,
    );
    assert_eq!(green.summary(), vec![]);
    // Yellow from frame 10 to 20, crossing at 15.25, red afterwards while
    // the car is still in view: the car was past the line on yellow.
    let yellow = run(
        SITE,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        |n| match n {
            0..10 => Green,
            10..20 => Yellow,
            _ => Red,
        },
        40,
    );
    assert_eq!(yellow.summary(), vec![]);
}

#[test]
fn a_vehicle_whose_front_reached_the_line_on_yellow_may_go_on() {
    // Seen from behind, the anchor (box bottom) is the rear: it crosses at
    // frame 15.25, 125 ms into red, but the box's far side was beyond the
    // line from frame 11 on, during yellow.
    let out = run(
        SITE,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        |n| match n {
            0..8 => Green,
            8..14 => Yellow,
            _ => Red,
        },
        40,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn waiting_at_the_line_and_then_running_the_red_is_still_a_violation() {
    // Stops with its rear 10 px before the line (its roof beyond it in the
    // picture) during yellow, waits 3 s into red, then goes.
    let out = run(
        SITE,
        &[Vehicle::new(2, Car, |n: u64| {
            let y = (905.0 - 20.0 * n as f64).max(610.0);
            Some(edge_agent::geometry::Point::new(
                900.0,
                if n < 45 {
                    y
                } else {
                    610.0 - 20.0 * (n - 44) as f64
                },
            ))
        })],
        |n| match n {
            0..10 => Green,
            10..15 => Yellow,
            _ => Red,
        },
        70,
    );
    assert_eq!(out.summary(), vec![(2, ViolationType::RedLight)]);
}

#[test]
fn going_on_the_first_frames_of_green_is_not_judged_by_the_lagging_red() {
    // Lamps read by the camera, a colour believed after 5 sightings. A
    // fast car (60 px a frame) reaches the line just after frame 18; its
    // anchor crosses at frame 20 and is 30 px beyond at 21, while the
    // filter still reports red (green is believed at frame 22).
    let fast = || Vehicle::new(4, Car, up(900.0, 1790.0, 60.0));
    let green_from = |g: u64| move |n: u64| if n < g { Red } else { Green };
    // (It is also speeding, about 108 km/h: only the red light is judged.)
    let red_light = |out: rules_support::Outcome| {
        out.summary()
            .into_iter()
            .filter(|(_, t)| *t == ViolationType::RedLight)
            .count()
    };
    let out = run_lamps(SITE, &[fast()], green_from(18), 5, 40);
    assert_eq!(
        red_light(out),
        0,
        "green was showing when it reached the line"
    );
    // Green from frame 21: it reached the line on red, but was only 10 px
    // past it in the last red picture (frame 20); the 30 px that confirm
    // a run were made as the lamps showed green. In doubt: no run.
    let out = run_lamps(SITE, &[fast()], green_from(21), 5, 40);
    assert_eq!(red_light(out), 0);
    // Green from frame 22: 70 px past in the red picture of frame 21.
    let out = run_lamps(SITE, &[fast()], green_from(22), 5, 40);
    assert_eq!(red_light(out), 1);
}

#[test]
fn red_that_began_between_the_frames_but_after_the_crossing_is_no_violation() {
    // Red is first seen at frame 16; the crossing was at 15.25.
    let out = run(
        SITE,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        |n| if n < 16 { Yellow } else { Red },
        40,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn grace_after_red_is_configurable() {
    let site = SITE.replace("grace_ms = 0", "grace_ms = 600");
    let out = run(
        &site,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        red_from_5,
        40,
    );
    assert_eq!(
        out.summary(),
        vec![],
        "reached the line 500 ms into red: within a 600 ms grace"
    );
    let site = SITE.replace("grace_ms = 0", "grace_ms = 500");
    let out = run(
        &site,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        red_from_5,
        40,
    );
    assert_eq!(out.summary(), vec![(1, ViolationType::RedLight)]);
}

#[test]
fn vehicle_staying_past_the_line_on_red_is_reported_once() {
    // Crosses on red, stops 60 px past the line and stays 40 frames.
    let out = run(
        SITE,
        &[Vehicle::new(
            3,
            Car,
            up_then_stop(900.0, 905.0, 20.0, 540.0),
        )],
        red_from_5,
        60,
    );
    assert_eq!(out.summary(), vec![(3, ViolationType::RedLight)]);
}

#[test]
fn disabled_rule_reports_nothing() {
    let site = SITE.replacen(
        "[rules.red_light]\nenabled = true",
        "[rules.red_light]\nenabled = false",
        1,
    );
    let out = run(
        &site,
        &[Vehicle::new(1, Car, up(900.0, 905.0, 20.0))],
        red_from_5,
        40,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn right_turn_on_red_where_allowed_is_no_violation() {
    let moto = Vehicle::new(4, Motorcycle, up_then_turn(1300.0, 905.0, 20.0, 560.0, 1.0));
    let out = run(SITE, &[moto], red_from_5, 40);
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn waiting_beyond_the_line_to_turn_right_on_red_is_no_case() {
    // Crosses on red into the right-turn-on-red lane s3, stops 40 px past
    // the line for 3 s (yielding to pedestrians), then turns right.
    let moto = Vehicle::new(6, Motorcycle, |n: u64| {
        let y = (905.0 - 20.0 * n as f64).max(560.0);
        if n < 50 {
            Some(edge_agent::geometry::Point::new(1300.0, y))
        } else {
            Some(edge_agent::geometry::Point::new(
                1300.0 + 20.0 * (n - 49) as f64,
                560.0,
            ))
        }
    });
    let out = run(SITE, &[moto], red_from_5, 80);
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn creeping_over_on_red_waiting_and_then_running_it_is_one_red_light_case() {
    // Crosses on red, stops 15 px past the line (short of the 30 px that
    // confirms a run), waits 20 s, then goes on through the red. The case
    // is anchored where it went on (the crossing's frames are long gone
    // from a 7 s evidence ring), with the signal as it was at the crossing.
    let moto = Vehicle::new(7, Car, |n: u64| {
        let y = (905.0 - 20.0 * n as f64).max(585.0);
        Some(edge_agent::geometry::Point::new(
            900.0,
            if n < 230 {
                y
            } else {
                585.0 - 20.0 * (n - 229) as f64
            },
        ))
    });
    let out = run(SITE, &[moto], red_from_5, 260);
    assert_eq!(out.summary(), vec![(7, ViolationType::RedLight)]);
    let v = &out.reported[0].1;
    assert!(
        v.frame >= 230,
        "anchored where it went on: frame {}",
        v.frame
    );
    assert!(
        v.frames.before >= 200,
        "its before still within the ring: {}",
        v.frames.before
    );
    let red = v.signal.as_ref().and_then(|s| s.red_for_ms).unwrap();
    assert!(
        red < 2000,
        "the signal as at the crossing: red for {red} ms"
    );
}

#[test]
fn right_turn_on_red_where_not_allowed_is_a_violation() {
    let site = SITE.replace("right_turn_on_red = true", "right_turn_on_red = false");
    let moto = Vehicle::new(4, Motorcycle, up_then_turn(1300.0, 905.0, 20.0, 560.0, 1.0));
    let out = run(&site, &[moto], red_from_5, 40);
    assert_eq!(out.summary(), vec![(4, ViolationType::RedLight)]);
    assert_eq!(out.reported[0].1.lane.as_deref(), Some("s3"));
}

#[test]
fn straight_on_red_from_a_right_turn_on_red_lane_is_a_violation() {
    // Decided once 200 px past the crossing (frame 26); reported 5 later.
    let moto = Vehicle::new(5, Motorcycle, up(1300.0, 905.0, 20.0));
    let out = run(SITE, &[moto], red_from_5, 40);
    assert_eq!(out.summary(), vec![(5, ViolationType::RedLight)]);
    let (reported_at, v) = &out.reported[0];
    assert_eq!(v.frame, 16, "the point of interest is still the crossing");
    assert_eq!(*reported_at, 26);
}

#[test]
fn a_run_confirmed_on_red_stands_when_the_light_changes_after() {
    // Straight from the right-turn-on-red lane: 30 px past the line at
    // frame 17 (red), green from frame 20, the manoeuvre known at 26.
    let late_red = |n: u64| match n {
        0..2 => Green,
        2..5 => Yellow,
        5..20 => Red,
        _ => Green,
    };
    let moto = Vehicle::new(5, Motorcycle, up(1300.0, 905.0, 20.0));
    let out = run(SITE, &[moto], late_red, 40);
    assert_eq!(out.summary(), vec![(5, ViolationType::RedLight)]);
    // A car that crossed on red (seen at frame 16) whose signal head is
    // then hidden (state unknown) before it is 30 px past (frame 17): the
    // light may have turned green as it went on, so no run (movement while
    // the light is not known confirms none).
    let hidden = |n: u64| match n {
        0..5 => Yellow,
        5..17 => Red,
        _ => SignalState::Unknown,
    };
    let out = run(
        SITE,
        &[Vehicle::new(7, Car, up(900.0, 905.0, 20.0))],
        hidden,
        40,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn two_side_by_side_only_the_one_crossing_on_red() {
    let a = Vehicle::new(10, Car, up(900.0, 905.0, 20.0));
    // Beside it in s1, stops 20 px before the line.
    let b = Vehicle::new(11, Car, up_then_stop(550.0, 905.0, 20.0, 620.0));
    let out = run(SITE, &[a, b], red_from_5, 40);
    assert_eq!(out.summary(), vec![(10, ViolationType::RedLight)]);
}

#[test]
fn wrong_manoeuvre_from_a_straight_only_lane() {
    // A car in s2 (straight only) turns left on green.
    let car = Vehicle::new(6, Car, up_then_turn(900.0, 905.0, 20.0, 560.0, -1.0));
    let out = run(SITE, &[car], |_| Green, 40);
    assert_eq!(out.summary(), vec![(6, ViolationType::WrongLane)]);
    let v = &out.reported[0].1;
    assert_eq!(v.kind, RuleKind::WrongManoeuvre);
    assert_eq!(v.lane.as_deref(), Some("s2"));
    assert_eq!(v.frames.before, 16, "the crossing");
    // 15 px to the crossing point... path after it reaches 200 px at the
    // frame where the anchor is 200 px along: y 585 → 560 (25 px, frame
    // 17.25), then left 20 px per frame.
    assert_eq!(v.frame, 26);
    // The same car going straight is fine.
    let ok = run(
        SITE,
        &[Vehicle::new(6, Car, up(900.0, 905.0, 20.0))],
        |_| Green,
        40,
    );
    assert_eq!(ok.summary(), vec![]);
}

#[test]
fn creeping_over_on_red_and_going_on_at_green_is_a_stop_line_case_not_a_red_light_run() {
    // Red from frame 5 to 49. The car crosses the line (y = 600) at frame
    // 15 on red, stops 15 px past it (y = 585) and stands there until the
    // light turns green at frame 50; it drives on from frame 55.
    let signal = |n: u64| match n {
        0..5 => Yellow,
        5..50 => Red,
        _ => Green,
    };
    let creep = |n: u64| {
        let y = if n < 55 {
            (905.0 - 20.0 * n as f64).max(585.0)
        } else {
            585.0 - 20.0 * (n - 54) as f64
        };
        Some(edge_agent::geometry::Point::new(900.0, y))
    };
    let out = run(SITE, &[Vehicle::new(9, Car, creep)], signal, 80);
    assert_eq!(out.summary(), vec![(9, ViolationType::StopLine)]);
    // Reported once the light changed, anchored to the last red frame (so
    // its stills are still in the evidence ring), "before" 3 s earlier.
    let v = &out.reported[0].1;
    assert_eq!((v.frames.before, v.frame), (19, 49));
    assert_eq!(v.signal.as_ref().unwrap().state, Red);
    // The same car driving on while still red ran the light: one act, one
    // case, the red-light one (the stop-line case it had made standing
    // there is dropped).
    let red_longer = |n: u64| if n < 5 { Yellow } else { Red };
    let out = run(SITE, &[Vehicle::new(9, Car, creep)], red_longer, 80);
    assert_eq!(out.summary(), vec![(9, ViolationType::RedLight)]);
    // Standing there until the track ends (the recording stops): the
    // stop-line case.
    let out = run(SITE, &[Vehicle::new(9, Car, creep)], red_longer, 50);
    assert_eq!(out.summary(), vec![(9, ViolationType::StopLine)]);
    // The signal head hidden from frame 45 (state unknown) while it stands
    // there: the held case stays at the last frame red was seen (44), its
    // stills showing the red, not an unreadable head that may have turned
    // green; reported before they leave the ring.
    let hidden = |n: u64| match n {
        0..5 => Yellow,
        5..45 => Red,
        _ => SignalState::Unknown,
    };
    let stays = |n: u64| {
        Some(edge_agent::geometry::Point::new(
            900.0,
            (905.0 - 20.0 * n as f64).max(585.0),
        ))
    };
    let out = run(SITE, &[Vehicle::new(9, Car, stays)], hidden, 100);
    assert_eq!(out.summary(), vec![(9, ViolationType::StopLine)]);
    let (reported_at, v) = &out.reported[0];
    assert_eq!(v.frame, 44);
    assert!(*reported_at < 80, "reported at frame {reported_at}");
    assert_eq!(v.signal.as_ref().unwrap().state, Red);
}

#[test]
fn stopped_beyond_the_line_during_red() {
    // Red from frame 0. Crosses on red in its first 3 s (its front at
    // frame 1, its anchor at frames 5-6: within a grace of 3 s, so no
    // red-light run), stops 15 px past the line at frame 6. Stopped during
    // red for 2000 ms at frame 26.
    let site = SITE.replace("grace_ms = 0", "grace_ms = 3000");
    let out = run(
        &site,
        &[Vehicle::new(
            8,
            Car,
            up_then_stop(900.0, 705.0, 20.0, 585.0),
        )],
        |_| Red,
        50,
    );
    assert_eq!(out.summary(), vec![(8, ViolationType::StopLine)]);
    let v = &out.reported[0].1;
    assert_eq!(v.kind, RuleKind::StopLine);
    assert_eq!((v.frames.before, v.frame), (6, 26));
    assert_eq!(v.signal.as_ref().unwrap().state, Red);
    // Stopping before the line is fine.
    let out = run(
        &site,
        &[Vehicle::new(
            8,
            Car,
            up_then_stop(900.0, 705.0, 20.0, 615.0),
        )],
        |_| Red,
        50,
    );
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn crossing_on_green_or_yellow_and_waiting_beyond_the_line_is_no_stop_line_case() {
    // Crosses at frames 5-6 and waits beyond the line (15 px: on the
    // line's edge; 100 px: in the junction to turn left) while the light
    // turns red at frame 10 and stays red 10 s: it entered lawfully.
    for stop_y in [585.0, 500.0] {
        for crossed_on in [Green, Yellow] {
            let out = run(
                SITE,
                &[Vehicle::new(
                    8,
                    Car,
                    up_then_stop(900.0, 705.0, 20.0, stop_y),
                )],
                move |n| if n < 10 { crossed_on } else { Red },
                110,
            );
            assert_eq!(out.summary(), vec![], "{crossed_on:?} to {stop_y}");
        }
    }
}

/// The feed of a controller whose messages take 1 s (the most the edge
/// accepts): at frame `n` the camera knows red since frame 0 until the
/// message of the change to green (at frame `green`) has arrived, and the
/// controller has vouched for its colour up to 1 s ago.
fn fed_late(green: u64) -> impl Fn(u64) -> edge_agent::signal::SignalStatus {
    move |n| {
        let heard = ts(n) - 1_000_000;
        let green_known = heard >= ts(green);
        edge_agent::signal::SignalStatus {
            state: if green_known { Green } else { Red },
            since_us: if green_known { ts(green) } else { ts(0) },
            transition_seen: true,
            changing_since: None,
            known_until_us: Some(heard),
            unvouched_red: None,
        }
    }
}

#[test]
fn a_late_green_from_the_controllers_feed_is_waited_for_before_a_run_is_decided() {
    // The car's front (its box is 90 px tall) reaches the line (y = 600)
    // at frame 14.25, its anchor at 18.75, 30 px beyond it by frame 20:
    // confirmed while the feed still says red.
    let car = || Vehicle::new(7, Car, up(900.0, 975.0, 20.0));
    // Green from frame 14, known at the camera from frame 24: the car went
    // on green and must not be fined on the red the feed still showed.
    let out = run_fed(SITE, &[car()], fed_late(14), 60);
    assert_eq!(out.summary(), vec![]);
    // Green only from frame 40: a run, decided once the feed has vouched
    // for the crossing (about frame 29: 1 s late, 0.5 s of clock margin), and
    // anchored at the crossing.
    let out = run_fed(SITE, &[car()], fed_late(40), 60);
    assert_eq!(out.summary(), vec![(7, ViolationType::RedLight)]);
    let (reported_at, v) = &out.reported[0];
    assert!(*reported_at >= 29, "decided at frame {reported_at}");
    assert!(v.frame <= 20, "anchored at the crossing, frame {}", v.frame);
}

#[test]
fn a_run_waiting_for_the_feed_outlives_its_track() {
    // The same run, but the car leaves the view at frame 22, before the
    // feed (1 s late) has vouched for its crossing.
    let leaving = || {
        Vehicle::new(7, Car, |n: u64| {
            (n < 22).then(|| edge_agent::geometry::Point::new(900.0, 975.0 - 20.0 * n as f64))
        })
    };
    // Red until frame 40: reported once the feed vouches, after the track
    // ended, with the crossing's evidence.
    let out = run_fed(SITE, &[leaving()], fed_late(40), 60);
    assert_eq!(out.summary(), vec![(7, ViolationType::RedLight)]);
    let (reported_at, v) = &out.reported[0];
    assert!(*reported_at >= 29, "decided at frame {reported_at}");
    assert!(v.frame <= 20 && v.frames.after >= v.frame);
    // Green from frame 14, heard at 24: the car went on green.
    let out = run_fed(SITE, &[leaving()], fed_late(14), 60);
    assert_eq!(out.summary(), vec![]);
    // A feed that never vouches past frame 10: given up, never guessed.
    let stuck = |n: u64| edge_agent::signal::SignalStatus {
        known_until_us: Some(ts(n.min(10))),
        unvouched_red: None,
        ..fed_late(1000)(n)
    };
    let out = run_fed(SITE, &[leaving()], stuck, 100);
    assert_eq!(out.summary(), vec![]);
}

#[test]
fn a_run_the_feed_never_vouched_for_leaves_its_stop_line_case() {
    // Crept 15 px over the line on red, stood there 3.4 s, then went on
    // and left the view; the feed never vouched past frame 0. The run is
    // given up (never guessed), but standing beyond the line on red needs
    // no vouching: that case is reported.
    let path = |n: u64| {
        let y = match n {
            0..6 => 705.0 - 20.0 * n as f64,
            6..40 => 585.0,
            40..46 => 585.0 - 20.0 * (n - 40) as f64,
            _ => return None,
        };
        Some(edge_agent::geometry::Point::new(900.0, y))
    };
    let stuck = |n: u64| edge_agent::signal::SignalStatus {
        known_until_us: Some(ts(0)),
        unvouched_red: None,
        ..fed_late(1000)(n)
    };
    let out = run_fed(SITE, &[Vehicle::new(8, Car, path)], stuck, 100);
    assert_eq!(out.summary(), vec![(8, ViolationType::StopLine)]);
}

/// Up the image at `x` from `y0`, 20 px a frame, standing at `y_stop`;
/// from frame `go` on moving `(dx, dy)` px a frame; seen before `end`.
fn wait_then_go(x: f64, y0: f64, y_stop: f64, go: u64, d: (f64, f64), end: u64) -> Path {
    Box::new(move |n| {
        let k = n.saturating_sub(go - 1) as f64;
        let y = (y0 - 20.0 * n as f64).max(y_stop) + d.1 * k;
        (n < end).then(|| edge_agent::geometry::Point::new(x + d.0 * k, y))
    })
}
type Path = Box<dyn Fn(u64) -> Option<edge_agent::geometry::Point>>;

#[test]
fn crept_over_on_red_and_going_on_as_the_light_turns_green_is_no_red_light_run() {
    use ViolationType::{RedLight, StopLine};
    // Crosses on red (from frame 5), stands 15 px past the line from
    // frame 16, goes on from frame `go` (35 px past then), seen until `end`.
    let car = |go, end| {
        [Vehicle::new(
            9,
            Car,
            wait_then_go(900.0, 905.0, 585.0, go, (0.0, -20.0), end),
        )]
    };
    let raw = |n: u64| [Yellow, Red, Green][usize::from(n >= 5) + usize::from(n >= 50)];
    let lamps = |go| run_lamps(SITE, &car(go, 999), raw, 5, 80).summary();
    let fed = |go, end, green| run_fed(SITE, &car(go, end), fed_late(green), 80).summary();
    // Green from frame 50. Read from the lamps (believed 5 frames late),
    // the car is 35 px past at frame 51 while the filter still says red,
    // but the lamps already show green: the encroachment stays a stop-line
    // case, anchored to the last frame whose picture shows red. The same
    // from the controller's feed, on time or 1 s late.
    let out = run_lamps(SITE, &car(51, 999), raw, 5, 80);
    let v = &out.reported[0].1;
    assert_eq!((v.frame, v.signal.as_ref().unwrap().state), (49, Red));
    assert_eq!(lamps(51), [(9, StopLine)]);
    assert_eq!(run(SITE, &car(51, 999), raw, 80).summary(), [(9, StopLine)]);
    assert_eq!(fed(51, 999, 50), [(9, StopLine)]);
    // Going on at frame 46, while the lamps still showed red: a run.
    assert_eq!(lamps(46), [(9, RedLight)]);
    assert_eq!(fed(46, 999, 50), [(9, RedLight)]);
    // Going on at frame 31 and leaving the view at 34, before the feed
    // (1 s late) speaks for frame 31: green from 30 is no run (and 1.4 s
    // standing is no stop-line case); green from 40 is.
    assert_eq!(fed(31, 34, 30), []);
    assert_eq!(fed(31, 34, 40), [(9, RedLight)]);
}

#[test]
fn waiting_beyond_the_line_in_a_right_turn_on_red_lane_with_the_turn_unknown_is_no_case() {
    // Lane s3 allows a right turn on red.
    let moto = |p: Path| [Vehicle::new(6, Motorcycle, p)];
    let green_at_50 = |n: u64| if n < 50 { red_from_5(n) } else { Green };
    // Crosses on red, stands 20 px past the line; green from frame 50,
    // turns right from frame 52 (known about frame 60).
    let turns = wait_then_go(1300.0, 905.0, 580.0, 52, (20.0, 0.0), 999);
    assert_eq!(run(SITE, &moto(turns), green_at_50, 80).summary(), vec![]);
    // Going straight on at green instead: the stop-line case.
    let straight = wait_then_go(1300.0, 905.0, 580.0, 52, (0.0, -20.0), 999);
    let out = run(SITE, &moto(straight), green_at_50, 80);
    assert_eq!(out.summary(), vec![(6, ViolationType::StopLine)]);
    // Stands 40 px past on red, turns right from frame 50, but the track
    // ends at frame 52, 100 px along its path: direction not known.
    let cut = wait_then_go(1300.0, 905.0, 560.0, 50, (20.0, 0.0), 53);
    assert_eq!(run(SITE, &moto(cut), red_from_5, 80).summary(), vec![]);
    // Crossed on yellow, stands 20 px past the line on red from frame 10,
    // then turns right at frame 40, still red.
    let on_yellow = wait_then_go(1300.0, 705.0, 580.0, 40, (20.0, 0.0), 999);
    let yellow_then_red = |n: u64| if n < 10 { Yellow } else { Red };
    let out = run(SITE, &moto(on_yellow), yellow_then_red, 70);
    assert_eq!(out.summary(), vec![]);
}
