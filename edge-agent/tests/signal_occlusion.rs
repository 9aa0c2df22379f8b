//! A vehicle in front of the signal head must not make a red: a red bus or
//! lorry over the lamps reads unknown, a red that the cycle cannot have
//! shown (too soon after yellow, or followed by yellow again) is not
//! believed or is undone, and a lamp-read red is vouched for (so a run is
//! reported) only once no yellow can still follow it.

mod rules_support;

use edge_agent::geometry::Point;
use edge_agent::signal::SignalState::{self, Green, Red, Unknown, Yellow};
use edge_agent::signal::{
    FrameView, LampConfig, MAX_YELLOW_US, MIN_YELLOW_US, PixelFormat, SignalBoard, SignalFilter,
    SignalSource, SignalStatus, read_lamps,
};
use edge_agent::site::{FrameSize, LampRegions, Rect, SiteConfig};
use edge_agent::track::FrameInfo;
use protocol::VehicleClass::Car;
use protocol::ViolationType;
use rules_support::{SITE, Vehicle, run_fed, ts, up_then_stop};

/// 10 fps.
fn t(frame: i64) -> i64 {
    1_000_000 + frame * 100_000
}

/// The filter as the signal board runs it on lamp groups: Vietnam's
/// yellow timing.
fn lamp_filter(confirm: u32, start_us: i64) -> SignalFilter {
    SignalFilter::new(confirm, start_us).with_yellow_us(MIN_YELLOW_US, MAX_YELLOW_US)
}

/// Feeds `seq` from frame 0; returns the status after each frame.
fn feed(f: &mut SignalFilter, seq: &[SignalState]) -> Vec<SignalStatus> {
    seq.iter()
        .enumerate()
        .map(|(i, s)| f.observe(*s, t(i as i64)))
        .collect()
}

#[test]
fn a_red_bus_passing_during_yellow_never_reads_red() {
    let seq = [
        Green, Green, Green, Yellow, Yellow, Yellow, Red, Red, Red, Yellow, Yellow,
    ];
    let mut f = lamp_filter(3, t(0));
    for (i, s) in feed(&mut f, &seq).iter().enumerate() {
        assert_ne!(s.state, Red, "frame {i}: {s:?}");
    }
    let s = f.observe(Yellow, t(11));
    assert_eq!(
        (s.state, s.since_us),
        (Yellow, t(3)),
        "still the same yellow"
    );
    assert!(s.transition_seen);
}

#[test]
fn red_followed_by_yellow_again_was_no_red() {
    // Whatever the timing, the light never goes from red back to yellow:
    // the red was something in front of the head, the yellow was on all
    // along (its start kept, so a crossing judged on the false red is
    // undone).
    let seq = [
        Green, Green, Green, Yellow, Yellow, Yellow, Red, Red, Red, Yellow, Yellow, Yellow,
    ];
    let mut f = SignalFilter::new(3, t(0));
    let states = feed(&mut f, &seq);
    assert_eq!(states[8].state, Red, "no timing known: believed");
    assert!(
        !states[9].vouched_at(t(9), 0),
        "yellow seen again: the red is not vouched for past it"
    );
    let s = states[11];
    assert_eq!((s.state, s.since_us), (Yellow, t(3)));
    assert!(s.transition_seen);
    // A red read from start-up, then yellow: the yellow is taken to have
    // been on since the red's first sighting.
    let mut f = lamp_filter(3, t(0));
    let states = feed(&mut f, &[Red, Red, Red, Yellow, Yellow, Yellow]);
    assert_eq!((states[2].state, states[2].since_us), (Red, t(0)));
    assert!(!states[2].vouched_at(t(2), 0));
    let s = states[5];
    assert_eq!(
        (s.state, s.since_us, s.transition_seen),
        (Yellow, t(0), false)
    );
}

#[test]
fn a_genuine_cycle_reads_red_from_its_first_sighting() {
    // Green, 3 s of yellow, red: believed after 3 sightings, back-dated to
    // the first, vouched for once a yellow can no longer follow it
    // (5 s after the yellow began).
    let mut seq = vec![Green; 10];
    seq.extend([Yellow; 30]);
    seq.extend([Red; 40]);
    let mut f = lamp_filter(3, t(0));
    let states = feed(&mut f, &seq);
    assert_eq!((states[12].state, states[12].since_us), (Yellow, t(10)));
    assert_eq!(states[41].state, Yellow, "red seen twice: not yet");
    let s = states[42];
    assert_eq!((s.state, s.since_us), (Red, t(40)));
    assert!(s.transition_seen);
    assert_eq!(s.red_for_ms(t(45)), Some(500));
    assert!(!s.vouched_at(t(42), 0), "a yellow may still follow");
    assert!(!states[59].vouched_at(t(42), 0));
    assert!(
        states[60].vouched_at(t(60), 0),
        "5 s after the yellow began"
    );
    assert_eq!((states[79].state, states[79].since_us), (Red, t(40)));
    // With a dark frame in the yellow and the red.
    seq[20] = Unknown;
    seq[50] = Unknown;
    let mut f = lamp_filter(3, t(0));
    let s = *feed(&mut f, &seq).last().unwrap();
    assert_eq!((s.state, s.since_us), (Red, t(40)));
}

#[test]
fn red_seen_too_soon_after_yellow_is_believed_only_once_yellow_must_have_ended() {
    // Red read 1 s into the yellow (a red body in front of the head, read
    // as a lamp): no yellow is that short, so when the light really turned
    // under it is not known. Believed when the longest yellow has ended,
    // from then, its start not seen.
    let mut seq = vec![Green; 10];
    seq.extend([Yellow; 10]);
    seq.extend([Red; 60]);
    let mut f = lamp_filter(3, t(0));
    let states = feed(&mut f, &seq);
    let turn = 10 + MAX_YELLOW_US / 100_000;
    for (i, s) in states.iter().enumerate().take(turn as usize).skip(2) {
        assert_eq!(s.state, if i < 12 { Green } else { Yellow }, "frame {i}");
    }
    let s = states[turn as usize];
    assert_eq!((s.state, s.since_us), (Red, t(turn)));
    assert!(!s.transition_seen);
    assert_eq!(s.red_for_ms(t(turn + 5)), None);
    assert!(s.vouched_at(t(turn), 0));
}

#[test]
fn a_stray_red_before_a_dark_spell_does_not_date_the_red() {
    // A long yellow; one red reading, the head dark (a bus in front, read
    // as unknown) for 8 frames, then red: red from its first sighting
    // after the dark spell, not from the stray reading.
    let mut seq = vec![Green; 5];
    seq.extend([Yellow; 35]);
    seq.push(Red); // frame 40
    seq.extend([Unknown; 8]);
    seq.extend([Red; 10]); // frames 49..
    let mut f = lamp_filter(3, t(0));
    let states = feed(&mut f, &seq);
    let s = states.last().unwrap();
    assert_eq!((s.state, s.since_us), (Red, t(49)));
}

const W: u32 = 64;
const H: u32 = 100;
const SIZE: FrameSize = FrameSize {
    width: W,
    height: H,
};

fn lamps() -> LampRegions {
    let r = |y| Rect {
        x: 20,
        y,
        w: 20,
        h: 20,
    };
    LampRegions {
        red: r(10),
        yellow: r(40),
        green: r(70),
    }
}

/// A dark frame with the rectangles painted in order.
fn picture(paint: &[(Rect, [u8; 3])]) -> Vec<u8> {
    let mut data = vec![30u8; (W * H * 3) as usize];
    for (r, rgb) in paint {
        for y in r.y..(r.y + r.h).min(H) {
            for x in r.x..(r.x + r.w).min(W) {
                let i = ((y * W + x) * 3) as usize;
                data[i..i + 3].copy_from_slice(rgb);
            }
        }
    }
    data
}

fn view(data: &[u8]) -> FrameView<'_> {
    FrameView {
        data,
        width: W,
        height: H,
        stride: W as usize * 3,
        format: PixelFormat::Rgb8,
    }
}

const BUS_RED: [u8; 3] = [200, 35, 30];
const TAXI_YELLOW: [u8; 3] = [235, 190, 20];
const LAMP: [(usize, [u8; 3]); 3] = [(0, [255, 40, 30]), (1, [255, 190, 0]), (2, [0, 230, 160])];

fn lamp_rect(i: usize) -> Rect {
    let l = lamps();
    [l.red, l.yellow, l.green][i]
}

#[test]
fn a_vehicle_body_over_the_whole_head_reads_unknown() {
    let cfg = LampConfig::default();
    let body = Rect {
        x: 5,
        y: 0,
        w: 55,
        h: 100,
    };
    for colour in [BUS_RED, TAXI_YELLOW, [30, 200, 120]] {
        let data = picture(&[(body, colour)]);
        let r = read_lamps(&view(&data), &lamps(), SIZE, &cfg);
        assert_eq!(r.state, Unknown, "{colour:?}: {r:?}");
    }
    // Covering only the red and yellow lamps, the light green but hidden
    // too: nothing.
    let l = lamps();
    let low = Rect {
        x: 5,
        y: 0,
        w: 55,
        h: 65,
    };
    let data = picture(&[(low, BUS_RED)]);
    assert_eq!(read_lamps(&view(&data), &l, SIZE, &cfg).state, Unknown);
    // Each lamp alone, and with its halo over a fringe of the neighbour's
    // rectangle, still reads as itself.
    for (i, rgb) in LAMP {
        let lamp = lamp_rect(i);
        let halo = Rect {
            x: lamp.x - 2,
            y: lamp.y.saturating_sub(4),
            w: lamp.w + 4,
            h: lamp.h + 8,
        };
        let want = [Red, Yellow, Green][i];
        for paint in [vec![(lamp, rgb)], vec![(halo, rgb)]] {
            let data = picture(&paint);
            let r = read_lamps(&view(&data), &l, SIZE, &cfg);
            assert_eq!(r.state, want, "{paint:?}: {r:?}");
        }
    }
}

#[test]
fn the_board_never_reads_red_from_a_bus_passing_in_front_during_yellow() {
    let text = format!(
        "camera_id = \"c\"\nframe = {{ width = {W}, height = {H} }}\n\
         [[signals]]\ngroup = \"main\"\nconfirm_frames = 3\n[signals.lamps]\n\
         red = [20, 10, 20, 20]\nyellow = [20, 40, 20, 20]\ngreen = [20, 70, 20, 20]\n"
    );
    let site = SiteConfig::from_toml_str(&text, "t.toml").unwrap();
    let mut board = SignalBoard::from_site(&site, LampConfig::default(), t(0));
    let lit = |i: usize| picture(&[(lamp_rect(i), LAMP[i].1)]);
    let bus = picture(&[(
        Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 100,
        },
        BUS_RED,
    )]);
    let frames = [
        lit(2),
        lit(2),
        lit(2),
        lit(1),
        lit(1),
        lit(1),
        bus.clone(),
        bus.clone(),
        bus,
        lit(1),
        lit(1),
        lit(1),
    ];
    for (n, data) in frames.iter().enumerate() {
        board.observe_frame(FrameInfo::new(n as u64, t(n as i64)), &view(data));
        let s = board.status("main").unwrap();
        assert_ne!(s.state, Red, "frame {n}: {s:?}");
        if (6..9).contains(&n) {
            assert_eq!(board.last_reading("main").unwrap().state, Unknown);
        }
    }
    let s = board.status("main").unwrap();
    assert_eq!((s.state, s.since_us), (Yellow, t(3)));
}

/// The lamp filter's status after each of frames `0..=frames` of the rule
/// harness, fed `raw(n)`.
fn lamp_statuses(raw: impl Fn(u64) -> SignalState, frames: u64) -> Vec<SignalStatus> {
    let mut f = lamp_filter(3, ts(0));
    (0..=frames).map(|n| f.observe(raw(n), ts(n))).collect()
}

/// A car at 75 px a frame whose box (40 px tall) first reaches the stop
/// line (y = 600) after frame `reach`, its anchor 35 px past it the next
/// frame.
fn car_reaching_at(reach: u64) -> Vehicle {
    Vehicle::new(1, Car, move |n: u64| {
        let y = 640.0 - 75.0 * (n as f64 - reach as f64);
        (y <= 1060.0).then(|| Point::new(900.0, y))
    })
    .sized(120.0, 40.0)
}

fn red_light_runs(out: &rules_support::Outcome) -> usize {
    out.summary()
        .iter()
        .filter(|(_, t)| *t == ViolationType::RedLight)
        .count()
}

#[test]
fn a_car_crossing_while_the_bus_hides_the_yellow_is_not_fined() {
    // The occluded sequence: green 0-2, yellow 3-5, the bus read as red
    // 6-8, yellow again until 3 s after it began, then red. The car
    // reaches the line at the 8th frame (7) and is 35 px past at 8.
    let raw = |n: u64| match n {
        0..3 => Green,
        3..6 => Yellow,
        6..9 => Red,
        9..33 => Yellow,
        _ => Red,
    };
    let statuses = lamp_statuses(raw, 60);
    let out = run_fed(
        SITE,
        &[car_reaching_at(7)],
        move |n| statuses[n as usize],
        60,
    );
    assert_eq!(red_light_runs(&out), 0, "{:?}", out.summary());
}

#[test]
fn a_false_red_undone_by_yellow_after_the_run_was_confirmed_is_not_fined() {
    // A 4 s yellow (3-42); something red in front of the head, read as
    // the red lamp, 3.0-3.5 s into it, believed (3 s of yellow had
    // passed); the car reaches the line then (34) and is past it at 35,
    // before the yellow is seen again: the run waits for the lamps to
    // vouch, and the yellow undoes it.
    let raw = |n: u64| match n {
        0..3 => Green,
        3..33 => Yellow,
        33..36 => Red,
        36..43 => Yellow,
        _ => Red,
    };
    let statuses = lamp_statuses(raw, 80);
    assert_eq!(statuses[35].state, Red);
    assert_eq!(statuses[40].state, Yellow);
    let out = run_fed(
        SITE,
        &[car_reaching_at(34)],
        move |n| statuses[n as usize],
        80,
    );
    assert_eq!(red_light_runs(&out), 0, "{:?}", out.summary());
}

#[test]
fn a_car_crossing_on_a_genuine_red_is_fined_once_the_lamps_vouch() {
    // Yellow 3-32 (3 s), red from 33; the car reaches the line at 40.
    let raw = |n: u64| match n {
        0..3 => Green,
        3..33 => Yellow,
        _ => Red,
    };
    let statuses = lamp_statuses(raw, 80);
    let out = run_fed(
        SITE,
        &[car_reaching_at(40)],
        move |n| statuses[n as usize],
        80,
    );
    let runs: Vec<_> = out
        .reported
        .iter()
        .filter(|(_, v)| v.rule == ViolationType::RedLight)
        .collect();
    assert_eq!(runs.len(), 1, "{:?}", out.summary());
    let (at, v) = runs[0];
    assert!(*at >= 53, "reported once vouched for (frame {at})");
    assert_eq!(v.signal.as_ref().unwrap().red_for_ms, Some(700));
}

#[test]
fn a_car_waiting_beyond_the_line_during_a_false_red_is_not_fined() {
    // A site that fines standing beyond the line after half a second. The
    // car crosses on yellow (at about frame 15) and waits 40 px beyond the
    // line; a bus in front of the head is read as red 3.0-4.7 s into the
    // yellow, then the yellow is seen again until the real red at 7.0 s.
    let site = SITE.replace("min_stopped_ms = 2000", "min_stopped_ms = 500");
    let raw = |n: u64| match n {
        0..3 => Green,
        3..33 => Yellow,
        33..50 => Red,
        50..70 => Yellow,
        _ => Red,
    };
    let statuses = lamp_statuses(raw, 68);
    assert_eq!(statuses[40].state, Red, "the false red is believed");
    let car = Vehicle::new(1, Car, up_then_stop(900.0, 900.0, 20.0, 560.0));
    let out = run_fed(&site, &[car], move |n| statuses[n as usize], 68);
    assert_eq!(out.summary(), vec![], "{:?}", out.summary());
}

#[test]
fn a_yellow_whose_first_frame_was_not_read_still_dates_the_red_from_its_sighting() {
    // The yellow's first frame (10) read nothing (a lamp switching
    // mid-exposure): the yellow is seen from 11, 2.9 s before the red.
    let mut f = lamp_filter(3, t(0));
    let mut seq = vec![Green; 10];
    seq.push(Unknown);
    seq.extend([Yellow; 29]);
    seq.extend([Red; 10]);
    let s = *feed(&mut f, &seq).last().unwrap();
    assert_eq!((s.state, s.since_us), (Red, t(40)), "{s:?}");
    assert!(s.transition_seen);
}

/// A yellow, something red in front of the head read as red 3.0-3.5 s
/// into it (believed: 3 s of yellow had passed), the car crossing then; the
/// bus goes on to hide the head for 2 s. What comes after the dark spell
/// decides nothing in the bus's favour: no run either way.
#[test]
fn a_false_red_that_ends_in_a_dark_spell_fines_no_one() {
    for after in [Yellow, Red] {
        let raw = move |n: u64| match n {
            0..3 => Green,
            3..33 => Yellow,
            33..36 => Red,
            36..56 => Unknown,
            56..63 => after,
            _ => Red,
        };
        let statuses = lamp_statuses(raw, 100);
        assert_eq!(statuses[50].state, Unknown);
        assert_eq!(
            statuses[50].known_until_us,
            Some(i64::MIN),
            "nothing vouched"
        );
        let out = run_fed(
            SITE,
            &[car_reaching_at(34)],
            move |n| statuses[n as usize],
            100,
        );
        assert_eq!(red_light_runs(&out), 0, "{after:?}: {:?}", out.summary());
    }
}

/// The bus is read as red 2.6 s into the yellow (believed: a yellow may
/// look 0.5 s short), the car crosses then, and the bus goes on to hide
/// the head from 4.0 s — before the red would have been vouched for (5 s),
/// though the dark is long enough to count only after that. Whatever is
/// seen after the spell, no run.
#[test]
fn a_false_red_hidden_just_before_it_would_be_vouched_fines_no_one() {
    for after in [Yellow, Red, Green] {
        let raw = move |n: u64| match n {
            0..3 => Green,
            3..29 => Yellow,
            29..43 => Red,
            43..60 => Unknown,
            60..70 => after,
            _ => Red,
        };
        let statuses = lamp_statuses(raw, 140);
        assert_eq!(statuses[40].state, Red, "the false red is believed");
        assert_eq!(
            statuses[54].known_until_us,
            Some(i64::MIN),
            "dark since before 5 s"
        );
        let out = run_fed(
            SITE,
            &[car_reaching_at(30)],
            move |n| statuses[n as usize],
            140,
        );
        assert_eq!(red_light_runs(&out), 0, "{after:?}: {:?}", out.summary());
    }
}

/// After a long dark spell the yellow it ended in is the yellow of a later
/// cycle, not the one the doubted red followed: believed from its own
/// sighting; the doubted red is disowned (a run that crossed on it is
/// dropped), not undone into a yellow 13 s long.
#[test]
fn a_yellow_long_after_a_doubted_red_is_a_new_one() {
    let raw = |n: u64| match n {
        0..3 => Green,
        3..33 => Yellow,
        33..36 => Red,
        36..136 => Unknown,
        _ => Yellow,
    };
    let s = lamp_statuses(raw, 150);
    assert_eq!(s[140].state, Yellow);
    assert_eq!(s[140].since_us, ts(136), "{:?}", s[140]);
    assert_eq!(s[140].unvouched_red, Some((ts(33), ts(136))));
    assert!(s[140].disowns(ts(34)) && !s[140].disowns(ts(140)));
}

/// A red vouched for long ago, a run on it held (its manoeuvre not yet
/// known in a right-turn-on-red lane), and a truck hiding the head for 2 s:
/// the red seen again is the same red, the run is reported.
#[test]
fn a_dark_spell_on_a_vouched_red_loses_no_run() {
    let raw = |n: u64| match n {
        0..3 => Green,
        3..33 => Yellow,
        33..100 => Red,
        100..120 => Unknown,
        _ => Red,
    };
    let statuses = lamp_statuses(raw, 200);
    // A motorbike up lane s3 (right turn on red allowed there), over the
    // line at frame 97, straight on.
    let moto = Vehicle::new(1, protocol::VehicleClass::Motorcycle, |n: u64| {
        let y = 600.0 + 20.0 * (97.0 - n as f64);
        (0.0..=1060.0).contains(&y).then(|| Point::new(1300.0, y))
    });
    let out = run_fed(SITE, &[moto], move |n| statuses[n as usize], 200);
    assert_eq!(red_light_runs(&out), 1, "{:?}", out.summary());
}
