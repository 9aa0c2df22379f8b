//! The speeding rule against measurements that would fine a driver who did
//! not speed: a box cut short for a frame, box jitter re-tested frame after
//! frame, a track handed to the vehicle ahead between the speed lines; and
//! that a vehicle that did speed is still fined, once.

mod rules_support;

use edge_agent::geometry::Point;
use edge_agent::signal::SignalState::Green;
use protocol::VehicleClass::{Car, Motorcycle};
use protocol::ViolationType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rules_support::*;

/// The test junction measured by a homography instead of two lines: 100 px
/// in the image = 5 m on the ground everywhere, a 1000 ms window; limit 30
/// in s2 (tolerance 3, `pixel_error_px` 2, `time_error_ms` 2). At 10 fps,
/// `k` km/h is `k / 1.8` px a frame.
fn homography_site() -> String {
    SITE.replace(
        "[speed.two_lines]\nlines = [[[400, 1000], [1500, 1000]], [[400, 700], [1500, 700]]]\ndistance_m = 15.0\ndistance_error_m = 0.05\n",
        "[speed.homography]\nimage = [[0, 0], [1000, 0], [1000, 1000], [0, 1000]]\nground_m = [[0, 0], [50, 0], [50, 50], [0, 50]]\nwindow_ms = 1000\n",
    )
    .replace(
        "speed_limit_kmh = { default = 50, truck = 40 }",
        "speed_limit_kmh = { default = 30 }",
    )
}

/// Pixels a frame at 10 fps for `kmh` on both test sites (0.05 m a px).
fn px_per_frame(kmh: f64) -> f64 {
    kmh / 3.6 / 0.05 / 10.0
}

/// The sites' declared `pixel_error_px`: the σ of the jitter [`noisy`]
/// adds.
const JITTER_PX: f64 = 2.0;

/// Frames [`fined`] runs.
const FRAMES: u64 = 30;

/// `count` vehicles of `class` (ids 1, 2, …) driving up the image at `x`
/// from y = 1045 at `kmh`, their anchors off by Gaussian noise of σ
/// [`JITTER_PX`] on each axis in every frame (seeded: the same every run).
fn noisy(
    rng: &mut StdRng,
    class: protocol::VehicleClass,
    x: f64,
    kmh: f64,
    count: u64,
) -> Vec<Vehicle> {
    let step = px_per_frame(kmh);
    (1..=count)
        .map(|id| {
            let path: Vec<Point> = (0..FRAMES)
                .map(|n| {
                    let (dx, dy) = gaussian_pair(rng);
                    Point::new(
                        x + JITTER_PX * dx,
                        1045.0 - step * n as f64 + JITTER_PX * dy,
                    )
                })
                .collect();
            Vehicle::new(id, class, move |n| path.get(n as usize).copied())
        })
        .collect()
}

/// Two independent standard normal numbers (Box–Muller).
fn gaussian_pair(rng: &mut StdRng) -> (f64, f64) {
    let u1: f64 = 1.0 - rng.gen_range(0.0..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    let r = (-2.0 * u1.ln()).sqrt();
    let a = std::f64::consts::TAU * u2;
    (r * a.cos(), r * a.sin())
}

/// How many of the tracks in `vehicles` (run in batches of 100, for
/// [`FRAMES`] frames) were fined for speeding on `site`.
fn fined(site: &str, vehicles: Vec<Vehicle>) -> usize {
    let mut fined = 0;
    let mut vehicles = vehicles.into_iter().peekable();
    while vehicles.peek().is_some() {
        let batch: Vec<Vehicle> = vehicles.by_ref().take(100).collect();
        let out = run(site, &batch, |_| Green, FRAMES);
        let mut ids: Vec<u64> = out
            .summary()
            .into_iter()
            .filter(|(_, t)| *t == ViolationType::Speeding)
            .map(|(id, _)| id)
            .collect();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "a track fined for speeding more than once");
        fined += n;
    }
    fined
}

#[test]
fn a_box_cut_short_for_one_frame_gives_no_homography_speed() {
    // 28 km/h (15.56 px a frame), under the limit. In one frame a motorbike
    // passing in front cuts the box's bottom 40 px short: the anchor jumps
    // 2 m forward and back. Taken as a window's end it added 2 m to 7.8 m,
    // 35.2 ± 0.5 km/h, fined. Whether the glitch falls at the end of the
    // first full window (frame 10) or later, nothing is reported.
    let site = homography_site();
    let step = px_per_frame(28.0);
    let fined: Vec<_> = [10, 15, 20]
        .into_iter()
        .filter_map(|glitch| {
            let car = Vehicle::new(1, Car, move |n| {
                let cut = if n == glitch { 40.0 } else { 0.0 };
                Some(Point::new(900.0, 1045.0 - step * n as f64 - cut))
            });
            let out = run(&site, &[car], |_| Green, 30);
            let v = out.violations().first()?.speed?;
            Some((glitch, v.measured_kmh))
        })
        .collect();
    assert_eq!(fined, vec![], "(glitch frame, km/h) fined");
}

#[test]
fn a_glitch_too_small_to_reject_widens_the_margin_instead() {
    // 32 km/h (17.78 px a frame), under limit + tolerance (33). The box is
    // cut 15 px short at frame 10, the end of the first window: less than
    // the step test rejects (half a step and 4 px), but it reads 34.7 km/h,
    // and with the declared ±2 px alone that cleared 33 by 2σ. How far the
    // end strayed from the steady motion is counted in its error.
    let site = homography_site();
    let step = px_per_frame(32.0);
    let car = Vehicle::new(1, Car, move |n| {
        let cut = if n == 10 { 15.0 } else { 0.0 };
        Some(Point::new(900.0, 1045.0 - step * n as f64 - cut))
    });
    let out = run(&site, &[car], |_| Green, 30);
    assert_eq!(
        out.summary(),
        vec![],
        "{:?}",
        out.violations().first().and_then(|v| v.speed)
    );
}

#[test]
fn box_jitter_at_the_tolerance_is_fined_at_most_at_the_one_sided_two_sigma_rate() {
    // 2000 cars at exactly 33 km/h (limit 30 + tolerance 3), each anchor
    // jittered by the site's declared pixel error (σ = 2 px) and seen for
    // 3 s. A measurement whose σ is true is read 2σ high with probability
    // 2.3% (the one-sided normal tail; ~2.1% here, as σ also carries the
    // declared 2 ms time error the test does not add), so one measurement
    // per car may fine up to about that many. (Fewer are: each end's σ also
    // counts how far its step strayed, which jitter makes ~√2 × 2 px, so
    // σ is wider than the true spread; 4 of these 2000.) Re-testing a fresh
    // 1 s window every frame fined 705 of them (~35%).
    let mut rng = StdRng::seed_from_u64(0x5eed_0033);
    let cars = noisy(&mut rng, Car, 900.0, 33.0, 2000);
    let n = fined(&homography_site(), cars);
    assert!(n <= 60, "{n} of 2000 cars at the tolerance fined (> 3%)");
}

#[test]
fn an_id_switch_between_the_speed_lines_gives_no_speed() {
    // A motorcycle in s3 at 20 px a frame (36 km/h, limit 40). At frame 6,
    // between the lines, its track is handed to the motorbike 60 px ahead
    // and follows that one on: the second line is "crossed" 3 frames
    // early, 15 m in 1.2 s = 45 km/h. The jump is 4+ steps before the
    // second crossing and 3 after the first, out of sight of the crossing
    // checks; the steps between the lines must all move alike, or come
    // back onto their course. (Switched at frame 9 or 12, the same.)
    let step = px_per_frame(36.0);
    let fined: Vec<_> = [6, 9, 12]
        .into_iter()
        .filter_map(|switch| {
            let switched = Vehicle::new(3, Motorcycle, move |n| {
                let ahead = if n >= switch { 60.0 } else { 0.0 };
                Some(Point::new(1300.0, 1045.0 - step * n as f64 - ahead))
            });
            let out = run(SITE, &[switched], |_| Green, 30);
            let v = out.violations().first()?.speed?;
            Some((switch, v.measured_kmh))
        })
        .collect();
    assert_eq!(fined, vec![], "(switch frame, km/h) fined");
}

#[test]
fn a_vehicle_that_did_speed_is_still_fined_once() {
    // 45 km/h: 25 px a frame.
    let step = px_per_frame(45.0);
    // Homography site, limit 30.
    let out = run(
        &homography_site(),
        &[Vehicle::new(1, Car, up(900.0, 1045.0, step))],
        |_| Green,
        30,
    );
    assert_eq!(out.summary(), vec![(1, ViolationType::Speeding)]);
    let s = out.reported[0].1.speed.unwrap();
    assert!((s.measured_kmh - 45.0).abs() < 1e-6, "{}", s.measured_kmh);
    assert_eq!(s.limit_kmh, 30);
    // Two lines, a motorcycle in s3, limit 40.
    let out = run(
        SITE,
        &[Vehicle::new(2, Motorcycle, up(1300.0, 1045.0, step))],
        |_| Green,
        30,
    );
    assert_eq!(out.summary(), vec![(2, ViolationType::Speeding)]);
    let s = out.reported[0].1.speed.unwrap();
    assert!((s.measured_kmh - 45.0).abs() < 1e-6, "{}", s.measured_kmh);
    assert_eq!(s.limit_kmh, 40);
    // With the declared box jitter (σ = 2 px) every one of them still is:
    // the checks for a jump leave jitter alone. (Between the lines at 45
    // km/h, 2 km/h over limit + tolerance, jitter widens σ to about 1 km/h
    // and only some clear the 2σ margin, as before; at 55 km/h all do.)
    let mut rng = StdRng::seed_from_u64(45);
    let cars = noisy(&mut rng, Car, 900.0, 45.0, 200);
    assert_eq!(fined(&homography_site(), cars), 200);
    let motos = noisy(&mut rng, Motorcycle, 1300.0, 55.0, 200);
    assert_eq!(fined(SITE, motos), 200);
}

#[test]
fn a_speeder_whose_box_is_cut_short_is_timed_on_a_clean_window() {
    // 45 km/h (25 px a frame), its box cut 40 px short at frame 10: the
    // windows holding that frame are not used (they read 52.2 km/h), and
    // the first without it, frames 11 to 21, times the car.
    let step = px_per_frame(45.0);
    let car = Vehicle::new(1, Car, move |n| {
        let cut = if n == 10 { 40.0 } else { 0.0 };
        Some(Point::new(900.0, 1045.0 - step * n as f64 - cut))
    });
    let out = run(&homography_site(), &[car], |_| Green, 30);
    assert_eq!(out.summary(), vec![(1, ViolationType::Speeding)]);
    let v = &out.reported[0].1;
    let s = v.speed.unwrap();
    assert!((s.measured_kmh - 45.0).abs() < 1e-6, "{}", s.measured_kmh);
    assert_eq!((v.frames.before, v.frame), (11, 21));
}

#[test]
fn a_window_too_imprecise_to_judge_does_not_use_up_the_measurement() {
    // 80 km/h (44.4 px a frame), its box cut 29 px short at frame 10, the
    // end of the first full window: less than the step test rejects (half
    // a step and 4 px), so the window is steady, but the stray it adds to
    // its end's error makes σ about 5.25 km/h, over the site's
    // `max_uncertainty_kmh` (5): nothing is judged on it. That must not
    // count as the track's one measurement — a later window (frames 11 to
    // 21) times the car, and it is fined once.
    let step = px_per_frame(80.0);
    let car = Vehicle::new(1, Car, move |n| {
        let cut = if n == 10 { 29.0 } else { 0.0 };
        Some(Point::new(900.0, 1045.0 - step * n as f64 - cut))
    });
    let out = run(&homography_site(), &[car], |_| Green, 30);
    assert_eq!(out.summary(), vec![(1, ViolationType::Speeding)]);
    let s = out.reported[0].1.speed.unwrap();
    assert!((s.measured_kmh - 80.0).abs() < 1e-6, "{}", s.measured_kmh);
    assert!(s.uncertainty_kmh <= 5.0, "{}", s.uncertainty_kmh);
}
