//! A signal head dark for a moment (a vehicle in front of it, a lamp
//! switching) while a vehicle that crept over the line on red moves on:
//! the light may have turned green unseen, so the red is vouched for only
//! up to the last frame it was read, a colour seen after the dark counts
//! from when the dark began, and movement in the dark confirms no run.

mod rules_support;

use edge_agent::geometry::Point;
use edge_agent::signal::SignalState::{self, Green, Red, Unknown, Yellow};
use edge_agent::signal::{MAX_YELLOW_US, MIN_YELLOW_US, SignalFilter, SignalStatus};
use protocol::VehicleClass::Car;
use protocol::ViolationType;
use rules_support::{SITE, Vehicle, run_fed, ts};

/// The lamp filter's status after each of frames `0..=frames` (10 fps),
/// fed `raw(n)`: confirmed after 3 sightings, Vietnam's yellow (3–5 s).
fn lamp_statuses(raw: impl Fn(u64) -> SignalState, frames: u64) -> Vec<SignalStatus> {
    let mut f = SignalFilter::new(3, ts(0)).with_yellow_us(MIN_YELLOW_US, MAX_YELLOW_US);
    (0..=frames).map(|n| f.observe(raw(n), ts(n))).collect()
}

/// Green, yellow 3 s (frames 30–59), red from frame 60 (20 s), the head
/// dark for `dark` frames from frame 250 (red + 19 s), then `after`.
fn cycle(dark: u64, after: SignalState) -> impl Fn(u64) -> SignalState {
    move |n| match n {
        0..30 => Green,
        30..60 => Yellow,
        60..250 => Red,
        n if n < 250 + dark => Unknown,
        _ => after,
    }
}

/// A car up lane s2 that crosses the line (y = 600) at red + 10 s and
/// stands 12 px beyond it (short of the 30 px that confirm a run), then,
/// while the head is dark (frames 250–257), moves on 60 px, and on at
/// 20 px a frame after.
fn creeper() -> Vehicle {
    Vehicle::new(1, Car, |n: u64| {
        let y = match n {
            0..140 => return None,
            140..250 => (588.0 + 20.0 * (160.0 - n as f64)).max(588.0),
            250..258 => 588.0 - 7.5 * (n - 249) as f64,
            _ => 528.0 - 20.0 * (n - 257) as f64,
        };
        (y >= 0.0).then(|| Point::new(900.0, y))
    })
}

#[test]
fn a_dark_head_vouches_for_the_red_only_up_to_its_last_sighting() {
    let s = lamp_statuses(cycle(8, Green), 270);
    assert_eq!((s[249].state, s[249].known_until_us), (Red, None));
    // Still red by the filter's hysteresis, but vouched for no further
    // than frame 249, and possibly changing since the dark began.
    for (n, st) in s.iter().enumerate().take(258).skip(250) {
        assert_eq!(st.state, Red, "frame {n}");
        assert_eq!(st.known_until_us, Some(ts(249)), "frame {n}");
        assert_eq!(st.changing_since, Some(ts(250)), "frame {n}");
    }
    // The green seen after the dark may have come on when it began.
    assert_eq!((s[260].state, s[260].since_us), (Green, ts(250)));
    // The same red seen again: vouched for as before.
    let s = lamp_statuses(cycle(8, Red), 270);
    assert_eq!((s[260].state, s[260].since_us), (Red, ts(60)));
    assert_eq!((s[260].known_until_us, s[260].changing_since), (None, None));
}

#[test]
fn moving_on_while_the_head_is_dark_as_the_light_turns_green_is_no_red_light_run() {
    // 8 dark frames (short of the 12 that make the state unknown), and 20
    // (unknown from the 12th): either way the green seen after may have
    // come on as the car moved; it crept over on red and stood there 9 s,
    // a stop-line case, its stills from the last frame red was seen.
    for dark in [8, 20] {
        let s = lamp_statuses(cycle(dark, Green), 300);
        let out = run_fed(SITE, &[creeper()], move |n| s[n as usize], 300);
        assert_eq!(
            out.summary(),
            vec![(1, ViolationType::StopLine)],
            "dark for {dark} frames"
        );
        let v = &out.reported[0].1;
        assert!(v.frame <= 249, "dark {dark}: at frame {}", v.frame);
        assert_eq!(v.signal.as_ref().unwrap().state, Red);
    }
}

#[test]
fn moving_on_while_the_head_is_dark_on_a_red_seen_again_is_a_run() {
    // Red on both sides of a short dark spell: the car went on through it.
    let s = lamp_statuses(cycle(8, Red), 300);
    let out = run_fed(SITE, &[creeper()], move |n| s[n as usize], 300);
    assert_eq!(out.summary(), vec![(1, ViolationType::RedLight)]);
}
