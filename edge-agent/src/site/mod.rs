//! The site configuration: one TOML file per camera describing what the
//! camera sees (frame size, stop lines, lanes, signals, speed calibration,
//! no-stopping zones, privacy masks) and which rules run on it.
//!
//! [`SiteConfig::load`] parses and validates in one step; a bad file is
//! refused with a [`SiteError`] that names the file, the line and column, and
//! the field path (`lanes[2].polygon[3]`), both for syntax errors and for
//! semantic ones (a polygon outside the frame, a lane group without a
//! signal, a singular homography). All coordinates are pixels of the frame
//! size given in `[frame]`, in the convention of [`crate::geometry`]. The
//! annotated example `edge-agent/examples/site.toml` documents every key.
//!
//! The configuration is plain data; [`crate::rules::RuleEngine`] compiles it
//! (resolving names to indices, building the homography) once at start.

mod error;
mod rules_config;
mod validate;

pub use error::SiteError;
pub use rules_config::{
    IllegalStoppingRule, MotionConfig, RedLightRule, RulesConfig, SpeedingRule, StopLineRule,
    WrongClassRule, WrongLaneRule, WrongWayRule,
};

use crate::geometry::{Point, Polygon, Segment};
use protocol::VehicleClass;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One camera's site configuration (the root of the TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The camera's id (as in the violation event's `camera_id`).
    pub camera_id: String,
    /// Frame size the coordinates refer to.
    pub frame: FrameSize,
    /// Stop lines, each crossed in one approach direction.
    #[serde(default)]
    pub stop_lines: Vec<StopLine>,
    /// Lanes.
    #[serde(default)]
    pub lanes: Vec<Lane>,
    /// One signal per lane group.
    #[serde(default)]
    pub signals: Vec<SignalConfig>,
    /// Speed calibration (required by the speeding rule).
    #[serde(default)]
    pub speed: Option<SpeedCalibration>,
    /// No-stopping zones.
    #[serde(default)]
    pub no_stopping_zones: Vec<NoStoppingZone>,
    /// Regions blurred in every stored image.
    #[serde(default)]
    pub privacy_masks: Vec<PrivacyMask>,
    /// Which rules run, and their tuning.
    #[serde(default)]
    pub rules: RulesConfig,
    /// How this view's detections are read.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// SHA-256 of the file's text, as read ([`SiteConfig::from_toml_str`]):
    /// each event names the site file its rules judged by (the event's
    /// `site_config_sha256`). Not part of the file.
    #[serde(skip)]
    pub source_sha256: Option<String>,
}

/// How the vehicle detector's output is read for this camera's view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// A detection called "car" whose box is at least this many times
    /// taller than wide is taken for a motorbike. YOLOX-Nano calls most
    /// small motorbikes of a wide view cars; but whether a car's box can be
    /// that tall depends on the view (from a high pole looking along the
    /// lane a car's roof and rear both show, and its box is 1.5–2 times
    /// taller than wide), so it is off unless set (1.2–4.0), after checking
    /// the view (`edge-agent calibrate`) for cars that tall.
    #[serde(default)]
    pub motorbike_min_aspect: Option<f32>,
    /// Skip the vehicle detector on frames where nothing moved since the
    /// last frame it ran on, reusing its boxes (`[detection.static_gate]`,
    /// see [`crate::detect::StaticGate`]); off unless the table is there.
    #[serde(default)]
    pub static_gate: Option<crate::detect::GateConfig>,
}

/// Frame size, pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSize {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// A stop line and the direction vehicles approach it from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopLine {
    /// Name, referred to by lanes.
    pub id: String,
    /// The two ends.
    pub points: Segment,
    /// Heading of traffic crossing it, degrees (0 right, 90 down, -90 or
    /// 270 up the image). Only crossings in this direction count.
    pub approach_deg: f64,
}

/// A manoeuvre through the junction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Manoeuvre {
    /// Straight on.
    Straight,
    /// Left turn.
    Left,
    /// Right turn.
    Right,
    /// U-turn.
    UTurn,
}

/// A lane: where it is, what may use it, which way and which signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    /// Name (reported in violations).
    pub id: String,
    /// Outline on the road surface.
    pub polygon: Polygon,
    /// Direction of travel in the lane, degrees; defaults to the approach
    /// direction of its stop line (and may not be more than 90° from it).
    /// Without either, wrong-way is not checked.
    #[serde(default)]
    pub heading_deg: Option<f64>,
    /// Manoeuvres allowed from this lane at its stop line.
    #[serde(default = "all_manoeuvres")]
    pub directions: Vec<Manoeuvre>,
    /// Vehicle classes allowed in the lane.
    #[serde(default = "all_classes")]
    pub classes: Vec<VehicleClass>,
    /// Lane group: the signal that governs this lane.
    #[serde(default)]
    pub group: Option<String>,
    /// The stop line at the end of this lane.
    #[serde(default)]
    pub stop_line: Option<String>,
    /// Whether a right turn on red is allowed (by sign) from this lane.
    #[serde(default)]
    pub right_turn_on_red: bool,
    /// Speed limits, km/h.
    #[serde(default)]
    pub speed_limit_kmh: SpeedLimits,
}

fn all_manoeuvres() -> Vec<Manoeuvre> {
    vec![
        Manoeuvre::Straight,
        Manoeuvre::Left,
        Manoeuvre::Right,
        Manoeuvre::UTurn,
    ]
}

fn all_classes() -> Vec<VehicleClass> {
    vec![
        VehicleClass::Car,
        VehicleClass::Motorcycle,
        VehicleClass::Bus,
        VehicleClass::Truck,
    ]
}

/// Speed limits of a lane, km/h: `default` for every class not named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedLimits {
    /// Limit for classes without their own.
    #[serde(default)]
    pub default: Option<u16>,
    /// Cars.
    #[serde(default)]
    pub car: Option<u16>,
    /// Motorcycles.
    #[serde(default)]
    pub motorcycle: Option<u16>,
    /// Buses.
    #[serde(default)]
    pub bus: Option<u16>,
    /// Trucks.
    #[serde(default)]
    pub truck: Option<u16>,
}

impl SpeedLimits {
    /// The limit for `class`, if any.
    pub fn for_class(&self, class: VehicleClass) -> Option<u16> {
        let own = match class {
            VehicleClass::Car => self.car,
            VehicleClass::Motorcycle => self.motorcycle,
            VehicleClass::Bus => self.bus,
            VehicleClass::Truck => self.truck,
        };
        own.or(self.default)
    }
}

/// A pixel rectangle `[x, y, w, h]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u32; 4]", into = "[u32; 4]")]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl From<[u32; 4]> for Rect {
    fn from([x, y, w, h]: [u32; 4]) -> Self {
        Self { x, y, w, h }
    }
}

impl From<Rect> for [u32; 4] {
    fn from(r: Rect) -> Self {
        [r.x, r.y, r.w, r.h]
    }
}

/// The three lamps of a signal head, as pixel rectangles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LampRegions {
    /// Red lamp.
    pub red: Rect,
    /// Yellow lamp.
    pub yellow: Rect,
    /// Green lamp.
    pub green: Rect,
}

/// The signal of one lane group: read from the image, or from a feed.
/// Exactly one of `lamps` and `mqtt_topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Lane group id.
    pub group: String,
    /// Signal head regions, read by colour.
    #[serde(default)]
    pub lamps: Option<LampRegions>,
    /// External signal-phase feed topic: the junction controller's
    /// [`protocol::SignalPhase`] messages (by convention
    /// `signals/v1/{site}/{group}`; not under `tv/`, which is the devices'
    /// and the server's).
    #[serde(default)]
    pub mqtt_topic: Option<String>,
    /// Consecutive frames a new state must be seen before it is believed
    /// (red straight after green, without the yellow:
    /// [`crate::signal::SKIPPED_YELLOW_FACTOR`] times as many).
    #[serde(default = "default_confirm_frames")]
    pub confirm_frames: u32,
    /// For a group read from its lamps: the shortest and the longest
    /// yellow this signal shows, seconds (Vietnam: 3 s; default `[3, 5]`).
    /// A red read sooner after a yellow began is something red in front of
    /// the head, and a red is vouched for (a run on it reported) only once
    /// the longest yellow is over — a yellow seen again until then proves
    /// the red false ([`crate::signal::SignalFilter::with_yellow_us`]).
    #[serde(default = "default_yellow_s")]
    pub yellow_s: [f64; 2],
    /// A fed group not heard from for this long is unknown (the controller
    /// repeats its phase at least every second).
    #[serde(default = "default_feed_silence_s")]
    pub feed_silence_s: f64,
    /// How much older a picture may be than its frame time (the camera's
    /// encoding and the network; frame times are when pictures reach the
    /// box), for a fed group: a red or yellow is believed this long after
    /// the controller began it, a green from its start. Err high: more only
    /// gives drivers more of the amber.
    #[serde(default = "default_picture_delay_ms")]
    pub picture_delay_ms: u32,
    /// The controller's Ed25519 public key, 64 hex characters: only phases
    /// it signed are believed (required with `mqtt_topic`).
    #[serde(default)]
    pub controller_key: Option<String>,
}

fn default_confirm_frames() -> u32 {
    3
}

fn default_yellow_s() -> [f64; 2] {
    [
        crate::signal::MIN_YELLOW_US as f64 / 1e6,
        crate::signal::MAX_YELLOW_US as f64 / 1e6,
    ]
}

fn default_feed_silence_s() -> f64 {
    3.0
}

fn default_picture_delay_ms() -> u32 {
    500
}

/// Speed calibration: exactly one of the two methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedCalibration {
    /// Two lines a known distance apart.
    #[serde(default)]
    pub two_lines: Option<TwoLines>,
    /// Ground-plane homography from four points.
    #[serde(default)]
    pub homography: Option<GroundPoints>,
    /// Error of one anchor position, pixels (box jitter), for the
    /// uncertainty; at least 1 px.
    #[serde(default = "default_pixel_error")]
    pub pixel_error_px: f64,
    /// Error of one frame timestamp, milliseconds; at least 1 ms.
    #[serde(default = "default_time_error")]
    pub time_error_ms: f64,
    /// Height of the camera above the road, metres (3–60), if known. The
    /// speed is measured on the box's bottom centre as if it were on the
    /// road; near the camera it is the bumper, up to [`ANCHOR_HEIGHT_M`]
    /// above it, and reads high by `H / (H − h)`. With the height set,
    /// every measured speed (and its σ) is lowered by the factor
    /// `1 − ANCHOR_HEIGHT_M / H` (in the driver's favour); without it the
    /// bias is not corrected (see the README).
    #[serde(default)]
    pub camera_height_m: Option<f64>,
}

/// How far above the road a box's bottom centre (the speed anchor) may be,
/// metres: a car's bumper seen from near the camera. See
/// [`SpeedCalibration::camera_height_m`].
pub const ANCHOR_HEIGHT_M: f64 = 0.6;

impl SpeedCalibration {
    /// The factor measured speeds are multiplied by for an anchor that may
    /// be [`ANCHOR_HEIGHT_M`] above the road (1 without a camera height).
    pub fn anchor_height_factor(&self) -> f64 {
        self.camera_height_m
            .map_or(1.0, |h| 1.0 - ANCHOR_HEIGHT_M / h)
    }
}

fn default_pixel_error() -> f64 {
    2.0
}

fn default_time_error() -> f64 {
    2.0
}

/// Two measurement lines and the distance between them along the road.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoLines {
    /// The lines.
    pub lines: [Segment; 2],
    /// Distance between them, metres.
    pub distance_m: f64,
    /// Uncertainty of that distance, metres, as surveyed. The speeding
    /// rule never takes less than [`MIN_DISTANCE_ERROR_M`] or
    /// [`MIN_DISTANCE_ERROR_FRACTION`] of `distance_m`, whichever is more
    /// (a tape along a painted line, and the line's width): 0 (the default)
    /// means that floor ([`TwoLines::effective_distance_error_m`]).
    #[serde(default)]
    pub distance_error_m: f64,
}

/// The least distance error (m) the speeding rule takes for two lines.
pub const MIN_DISTANCE_ERROR_M: f64 = 0.05;
/// The least distance error, as a fraction of the distance between the two
/// lines, the speeding rule takes.
pub const MIN_DISTANCE_ERROR_FRACTION: f64 = 0.005;

impl TwoLines {
    /// The distance error the speeding rule uses: the declared one, but at
    /// least `max(MIN_DISTANCE_ERROR_M, MIN_DISTANCE_ERROR_FRACTION × d)`.
    pub fn effective_distance_error_m(&self) -> f64 {
        self.distance_error_m
            .max(MIN_DISTANCE_ERROR_M)
            .max(MIN_DISTANCE_ERROR_FRACTION * self.distance_m)
    }
}

/// Four image points and their ground positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundPoints {
    /// Image points, pixels.
    pub image: [Point; 4],
    /// The same points on the ground, metres (any planar frame).
    pub ground_m: [Point; 4],
    /// Time window the displacement is measured over, ms.
    #[serde(default = "default_window_ms")]
    pub window_ms: u32,
    /// Relative error of the calibration (the surveyed ground points, the
    /// road's departure from a plane), a fraction of every ground distance
    /// measured through it: added to the speed's relative σ. Default 0.02
    /// (2%); at least 0.005, below 0.2. A window whose ends are not within
    /// the four image points' hull (and a margin of 5% of its size) is not
    /// measured: the homography is extrapolated there.
    #[serde(default = "default_calibration_error")]
    pub calibration_error: f64,
}

fn default_window_ms() -> u32 {
    1000
}

fn default_calibration_error() -> f64 {
    0.02
}

/// A no-stopping zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoStoppingZone {
    /// Name.
    pub id: String,
    /// Outline.
    pub polygon: Polygon,
    /// Longest allowed stop, seconds.
    pub max_dwell_s: f64,
}

/// A region to blur in stored images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyMask {
    /// Outline.
    pub polygon: Polygon,
}

impl SiteConfig {
    /// The lane groups fed by their controller (`mqtt_topic` with its
    /// `controller_key`, both checked when the file was loaded).
    pub fn fed_signals(&self) -> Vec<crate::signal::FedSignal> {
        self.signals
            .iter()
            .filter_map(|s| {
                let key = crate::config::parse_public_key(s.controller_key.as_deref()?).ok()?;
                Some(crate::signal::FedSignal {
                    group: s.group.clone(),
                    topic: s.mqtt_topic.clone()?,
                    key,
                })
            })
            .collect()
    }

    /// Reads, parses and validates a site file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SiteError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SiteError::Io {
            file: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates site TOML; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, SiteError> {
        let mut config: SiteConfig =
            toml::from_str(text).map_err(|e| SiteError::from_toml(file, text, &e))?;
        config
            .validate()
            .map_err(|(field, message)| SiteError::semantic(file, text, field, message))?;
        config.source_sha256 = Some(protocol::sha256_hex(text.as_bytes()));
        Ok(config)
    }

    /// Checks everything serde cannot: geometry inside the frame and not
    /// degenerate, references resolve, limits positive, calibration
    /// solvable. Returns the field path and the message of the first
    /// problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        validate::validate(self)
    }

    /// The signal of lane group `group`.
    pub fn signal(&self, group: &str) -> Option<&SignalConfig> {
        self.signals.iter().find(|s| s.group == group)
    }
}
