//! A synthetic junction for the rule tests: a scripted scene of vehicles
//! (anchor positions per frame) and a signal timeline, run through the
//! rule engine frame by frame at 10 fps.

#![allow(dead_code)]

use edge_agent::geometry::{BBox, Point};
use edge_agent::rules::{RuleEngine, Violation};
use edge_agent::signal::{ExternalFeed, SignalFilter, SignalSource, SignalState, SignalStatus};
use edge_agent::site::SiteConfig;
use edge_agent::track::{FrameInfo, Track, TrackPoint};
use protocol::VehicleClass;

pub const T0: i64 = 1_750_000_000_000_000;
pub const FRAME_US: i64 = 100_000;

pub fn frame(n: u64) -> FrameInfo {
    FrameInfo::new(n, ts(n))
}

pub fn ts(n: u64) -> i64 {
    T0 + n as i64 * FRAME_US
}

/// The test junction: traffic drives up the image to a stop line at
/// y = 600. Lanes below it: s1 (x 400–700, left/u-turn, no motorcycles),
/// s2 (700–1100, straight, cars etc., 50 km/h, trucks 40), s3 (1100–1500,
/// motorcycles, straight/right, right turn on red). An exit lane at the top
/// (heading up). One signal group `main` from a feed. Speed lines at
/// y = 1000 and y = 700, 15 m apart. A no-stopping zone at the right.
pub const SITE: &str = r#"
camera_id = "test-cam"
frame = { width = 1920, height = 1080 }

[[stop_lines]]
id = "south"
points = [[400, 600], [1500, 600]]
approach_deg = -90

[[lanes]]
id = "s1"
polygon = [[400, 600], [700, 600], [700, 1080], [400, 1080]]
directions = ["left", "u_turn"]
classes = ["car", "bus", "truck"]
group = "main"
stop_line = "south"
speed_limit_kmh = { default = 50 }

[[lanes]]
id = "s2"
polygon = [[700, 600], [1100, 600], [1100, 1080], [700, 1080]]
directions = ["straight"]
classes = ["car", "bus", "truck"]
group = "main"
stop_line = "south"
speed_limit_kmh = { default = 50, truck = 40 }

[[lanes]]
id = "s3"
polygon = [[1100, 600], [1500, 600], [1500, 1080], [1100, 1080]]
directions = ["straight", "right"]
classes = ["motorcycle"]
group = "main"
stop_line = "south"
right_turn_on_red = true
speed_limit_kmh = { motorcycle = 40 }

[[lanes]]
id = "exit"
polygon = [[700, 0], [1100, 0], [1100, 300], [700, 300]]
heading_deg = -90

[[signals]]
group = "main"
mqtt_topic = "sig/main"
controller_key = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"

[speed]
pixel_error_px = 2.0
time_error_ms = 2.0
[speed.two_lines]
lines = [[[400, 1000], [1500, 1000]], [[400, 700], [1500, 700]]]
distance_m = 15.0
distance_error_m = 0.05

[[no_stopping_zones]]
id = "bus-stop"
polygon = [[1500, 700], [1900, 700], [1900, 1000], [1500, 1000]]
max_dwell_s = 3

[rules]
after_frames = 5
[rules.red_light]
enabled = true
grace_ms = 0
confirm_past_px = 30.0
[rules.stop_line]
enabled = true
min_stopped_ms = 2000
[rules.wrong_lane]
enabled = true
decide_px = 200.0
[rules.wrong_class]
enabled = true
min_dwell_ms = 1000
min_observations = 5
[rules.wrong_way]
enabled = true
min_distance_px = 80.0
[rules.speeding]
enabled = true
[rules.illegal_stopping]
enabled = true
"#;

/// One scripted vehicle: its anchor at each frame (`None`: not seen).
pub struct Vehicle {
    pub id: u64,
    pub class: VehicleClass,
    pub size: (f64, f64),
    pub path: Box<dyn Fn(u64) -> Option<Point>>,
    /// Its box clipped to the 1920×1080 frame, as the detector gives it
    /// ([`Vehicle::clipped_to_frame`]).
    pub clipped: bool,
    /// Its whole box per frame, where the box is not a fixed size around
    /// `path` ([`Vehicle::boxed`]).
    pub boxes: Option<Box<dyn Fn(u64) -> Option<BBox>>>,
    /// The class the detector gives it per frame, where it is not always
    /// `class` ([`Vehicle::classed`]).
    pub classes: Option<Box<dyn Fn(u64) -> VehicleClass>>,
}

impl Vehicle {
    pub fn new(
        id: u64,
        class: VehicleClass,
        path: impl Fn(u64) -> Option<Point> + 'static,
    ) -> Self {
        let size = match class {
            VehicleClass::Motorcycle => (40.0, 60.0),
            VehicleClass::Car => (120.0, 90.0),
            VehicleClass::Bus | VehicleClass::Truck => (200.0, 180.0),
        };
        Self {
            id,
            class,
            size,
            path: Box::new(path),
            clipped: false,
            boxes: None,
            classes: None,
        }
    }
    /// The same vehicle, boxed as `class_at(n)` at frame `n` (a detector
    /// that calls a pickup a car in some frames and a truck in others).
    pub fn classed(self, class_at: impl Fn(u64) -> VehicleClass + 'static) -> Self {
        Self {
            classes: Some(Box::new(class_at)),
            ..self
        }
    }
    fn class_at(&self, n: u64) -> VehicleClass {
        self.classes.as_ref().map_or(self.class, |c| c(n))
    }

    /// A vehicle whose detected box at each frame is `boxes(n)` (`None`:
    /// not seen): a box that grows or is cut short as something passes in
    /// front of it.
    pub fn boxed(
        id: u64,
        class: VehicleClass,
        boxes: impl Fn(u64) -> Option<BBox> + 'static,
    ) -> Self {
        let boxes: Box<dyn Fn(u64) -> Option<BBox>> = Box::new(boxes);
        Self {
            boxes: Some(boxes),
            ..Self::new(id, class, |_| None)
        }
    }

    /// The same vehicle, `(w, h)` px in the picture.
    pub fn sized(self, w: f64, h: f64) -> Self {
        Self {
            size: (w, h),
            ..self
        }
    }

    /// The same vehicle with its box clipped to the frame (1920×1080), as
    /// the detector clips it: entering or leaving the view, its anchor
    /// (the box's bottom centre) stays on the frame's edge. Its path is
    /// where the whole vehicle's anchor would be; not seen while its box
    /// is wholly outside the frame.
    pub fn clipped_to_frame(self) -> Self {
        Self {
            clipped: true,
            ..self
        }
    }

    /// Whether the script has the vehicle anywhere at frame `n` (in view
    /// or not).
    fn scripted(&self, n: u64) -> bool {
        match &self.boxes {
            Some(boxes) => boxes(n).is_some(),
            None => (self.path)(n).is_some(),
        }
    }

    fn point(&self, n: u64) -> Option<TrackPoint> {
        if let Some(boxes) = &self.boxes {
            return Some(TrackPoint::new(frame(n), boxes(n)?, 0.9, self.class_at(n)));
        }
        let a = (self.path)(n)?;
        let (w, h) = self.size;
        let mut bbox = BBox::from_xywh(a.x - w / 2.0, a.y - h, w, h);
        if self.clipped {
            let (x0, y0) = (bbox.x.max(0.0), bbox.y.max(0.0));
            let (x1, y1) = ((bbox.x + w).min(1920.0), (bbox.y + h).min(1080.0));
            if x1 - x0 < 2.0 || y1 - y0 < 2.0 {
                return None;
            }
            bbox = BBox::from_xywh(x0, y0, x1 - x0, y1 - y0);
        }
        Some(TrackPoint::new(frame(n), bbox, 0.9, self.class_at(n)))
    }
}

/// What a run produced: each violation with the frame it was reported in.
pub struct Outcome {
    pub reported: Vec<(u64, Violation)>,
}

impl Outcome {
    pub fn violations(&self) -> Vec<&Violation> {
        self.reported.iter().map(|(_, v)| v).collect()
    }

    /// `(track id, violation type)` pairs, in report order.
    pub fn summary(&self) -> Vec<(u64, protocol::ViolationType)> {
        self.reported
            .iter()
            .map(|(_, v)| (v.track_id, v.rule))
            .collect()
    }
}

/// Runs frames `0..frames`; `signal(n)` is the state shown at frame `n`.
/// Every track ends after the last frame (or when its path stops).
pub fn run(
    site: &str,
    vehicles: &[Vehicle],
    signal: impl Fn(u64) -> SignalState,
    frames: u64,
) -> Outcome {
    let mut feed = ExternalFeed::new();
    run_with(site, vehicles, frames, &mut feed, |f, n| {
        f.set("main", signal(n), ts(n))
    })
}

/// The signal group `main` as a camera reads its lamps: `raw` is the
/// colour seen in each frame, believed after `confirm_frames` sightings.
struct Lamps(SignalFilter);

impl SignalSource for Lamps {
    fn status(&self, group: &str) -> Option<SignalStatus> {
        (group == "main").then(|| self.0.status())
    }
}

/// [`run`] with the signal read from the lamps through the hysteresis
/// filter, so a change is believed `confirm_frames` frames late.
pub fn run_lamps(
    site: &str,
    vehicles: &[Vehicle],
    raw: impl Fn(u64) -> SignalState,
    confirm_frames: u32,
    frames: u64,
) -> Outcome {
    let mut lamps = Lamps(SignalFilter::new(confirm_frames, ts(0)));
    run_with(site, vehicles, frames, &mut lamps, |l, n| {
        l.0.observe(raw(n), ts(n));
    })
}

/// [`run`] with the group `main` fed by a controller whose status at frame
/// `n` is `status(n)` (as the feed would have it then, late messages and
/// all).
pub fn run_fed(
    site: &str,
    vehicles: &[Vehicle],
    status: impl Fn(u64) -> SignalStatus,
    frames: u64,
) -> Outcome {
    let mut feed = ExternalFeed::new();
    run_with(site, vehicles, frames, &mut feed, |f, n| {
        f.set_status("main", status(n))
    })
}

/// The feed of a controller that sends its phase once a second (at frames
/// 0, 10, 20, …), each message heard `latency` frames after it was sent:
/// red from frame 0 until frame `green`, green from then on. Before its
/// first message is heard the group is unknown.
pub fn fed_every_second(green: u64, latency: u64) -> impl Fn(u64) -> SignalStatus {
    move |n| {
        let Some(sent) = n.checked_sub(latency).map(|k| k - k % 10) else {
            return SignalStatus::unknown(ts(0));
        };
        let (state, since) = if sent >= green {
            (SignalState::Green, green)
        } else {
            (SignalState::Red, 0)
        };
        SignalStatus {
            state,
            since_us: ts(since),
            transition_seen: since > 0,
            changing_since: None,
            known_until_us: Some(ts(sent)),
            unvouched_red: None,
        }
    }
}

/// Runs the scene; `advance(signals, n)` brings the signal up to frame `n`.
fn run_with<S: SignalSource>(
    site: &str,
    vehicles: &[Vehicle],
    frames: u64,
    signals: &mut S,
    advance: impl Fn(&mut S, u64),
) -> Outcome {
    let site = SiteConfig::from_toml_str(site, "test.toml").expect("test site is valid");
    let mut engine = RuleEngine::new(&site).expect("compiles");
    let mut tracks: Vec<Option<Track>> = vehicles.iter().map(|_| None).collect();
    let mut reported = Vec::new();
    for n in 0..frames {
        advance(signals, n);
        let feed: &S = signals;
        let mut ended = Vec::new();
        for (v, slot) in vehicles.iter().zip(tracks.iter_mut()) {
            match (v.point(n), slot.as_mut()) {
                (Some(p), Some(t)) => {
                    t.push_point(p);
                }
                (Some(p), None) => *slot = Some(Track::from_point(v.id, p)),
                (None, Some(_)) if (n + 1..n + 50).all(|k| !v.scripted(k)) => {
                    ended.extend(slot.take());
                }
                _ => {}
            }
        }
        let active: Vec<&Track> = tracks.iter().flatten().collect();
        for v in engine.update(frame(n), active, &ended, feed) {
            reported.push((n, v.clone()));
        }
    }
    let ended: Vec<Track> = tracks.into_iter().flatten().collect();
    advance(signals, frames);
    let feed: &S = signals;
    for v in engine.update(frame(frames), std::iter::empty(), &ended, feed) {
        reported.push((frames, v.clone()));
    }
    assert_eq!(engine.tracked(), 0, "ended tracks leave no state behind");
    Outcome { reported }
}

/// A straight path up the image at `x`, from `y0`, `speed` px per frame.
pub fn up(x: f64, y0: f64, speed: f64) -> impl Fn(u64) -> Option<Point> {
    move |n| Some(Point::new(x, y0 - speed * n as f64))
}

/// Up the image until `y_stop`, then standing there.
pub fn up_then_stop(x: f64, y0: f64, speed: f64, y_stop: f64) -> impl Fn(u64) -> Option<Point> {
    move |n| Some(Point::new(x, (y0 - speed * n as f64).max(y_stop)))
}

/// Up the image to `y_turn`, then to the right (`dir = 1`) or left
/// (`dir = -1`) at the same speed.
pub fn up_then_turn(
    x: f64,
    y0: f64,
    speed: f64,
    y_turn: f64,
    dir: f64,
) -> impl Fn(u64) -> Option<Point> {
    move |n| {
        let y = y0 - speed * n as f64;
        if y >= y_turn {
            Some(Point::new(x, y))
        } else {
            Some(Point::new(x + dir * (y_turn - y), y_turn))
        }
    }
}
