//! The `[rules]` section of the site file: one table per rule, each with
//! `enabled` (default `false`: a rule runs only where the site turns it on)
//! and its tuning, plus the motion thresholds the rules share. Defaults are
//! for a 1920×1080 view of an urban junction at 10–30 fps.

use serde::{Deserialize, Serialize};

/// Which rules run, and their tuning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Frames after the point of interest a violation waits for before it
    /// is reported, so the evidence has an "after" frame (reported sooner
    /// if the track ends).
    pub after_frames: u32,
    /// Shared motion thresholds.
    pub motion: MotionConfig,
    /// Red-light running.
    pub red_light: RedLightRule,
    /// Stopped beyond the stop line during red.
    pub stop_line: StopLineRule,
    /// Manoeuvre not allowed from the lane.
    pub wrong_lane: WrongLaneRule,
    /// Vehicle class not allowed in the lane.
    pub wrong_class: WrongClassRule,
    /// Driving against the lane's direction.
    pub wrong_way: WrongWayRule,
    /// Over the limit.
    pub speeding: SpeedingRule,
    /// Dwelling in a no-stopping zone.
    pub illegal_stopping: IllegalStoppingRule,
}

/// When a vehicle counts as stopped, and how headings are measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Below this anchor speed (px/s) a vehicle is stationary.
    pub stationary_px_s: f64,
    /// The speed is measured over this window, ms.
    pub speed_window_ms: u32,
    /// A heading is measured over this much path, px (longer is steadier).
    pub heading_px: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            stationary_px_s: 15.0,
            speed_window_ms: 500,
            heading_px: 40.0,
        }
    }
}

/// Red-light running.
///
/// A violation is a crossing of the lane's stop line, in its approach
/// direction, while the lane group's signal is red and has been red for at
/// least `grace_ms` (crossing on yellow, or within the grace, is allowed).
/// It is confirmed once the anchor is `confirm_past_px` beyond the line
/// before the signal is seen to turn green or yellow (a vehicle that creeps
/// over by less than that, stops, and goes on at green is a stop-line case
/// instead). In a
/// `right_turn_on_red` lane the decision waits until the manoeuvre is known:
/// a right turn is no violation.
///
/// A run is the vehicle *clearly* past the line: `confirm_past_px` defaults
/// to [`RedLightRule::DEFAULT_CONFIRM_PAST_PX`] and may not be set below
/// [`RedLightRule::MIN_CONFIRM_PAST_PX`] (a car waiting at the line whose
/// box bottom jitters a few pixels over it must never be a run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedLightRule {
    /// On or off.
    pub enabled: bool,
    /// Crossings this soon after red began are not violations, ms.
    pub grace_ms: u32,
    /// How far past the line the anchor must get to confirm, px.
    pub confirm_past_px: f64,
}

impl RedLightRule {
    /// Default of `confirm_past_px`: about half a metre at the stop line of
    /// a 1920×1080 junction view (a 3.5 m lane is 300–400 px wide there),
    /// fifteen times a box's usual jitter (`speed.pixel_error_px`, 2 px) and
    /// well inside the stop-line rule's `max_past_px` (150 px), where a
    /// vehicle that crept over and stopped is judged instead.
    pub const DEFAULT_CONFIRM_PAST_PX: f64 = 30.0;
    /// Smallest `confirm_past_px` a site may set: below this, box jitter of
    /// a vehicle standing at the line (a few px, more when traffic passing
    /// in front cuts its box) would confirm a run from one observation.
    pub const MIN_CONFIRM_PAST_PX: f64 = 10.0;
}

impl Default for RedLightRule {
    fn default() -> Self {
        Self {
            enabled: false,
            grace_ms: 0,
            confirm_past_px: Self::DEFAULT_CONFIRM_PAST_PX,
        }
    }
}

/// Stopped beyond the stop line during red.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StopLineRule {
    /// On or off.
    pub enabled: bool,
    /// Stationary this long beyond the line during red, ms.
    pub min_stopped_ms: u32,
    /// Beyond the line by more than this (px) is not counted (the vehicle is
    /// in the junction, e.g. waiting to turn).
    pub max_past_px: f64,
    /// Less than this past the line (px) is on the line, not beyond it.
    pub min_past_px: f64,
}

impl Default for StopLineRule {
    fn default() -> Self {
        Self {
            enabled: false,
            min_stopped_ms: 2000,
            max_past_px: 150.0,
            min_past_px: 5.0,
        }
    }
}

/// Manoeuvre not allowed from the lane.
///
/// The manoeuvre is the change of heading between the approach (before the
/// stop line) and the path after it: within ±`straight_max_deg` straight,
/// beyond ±`u_turn_min_deg` a U-turn, in between a right (positive) or left
/// (negative) turn. It is judged no earlier than `decide_px` of travel past
/// the line: a turn as soon as the heading has turned that far, straight
/// only once the path is clearly straight there, or at three times
/// `decide_px` (a normal turning arc has turned only some 25° at 200 px);
/// see `rules::motion::judge_manoeuvre`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WrongLaneRule {
    /// On or off.
    pub enabled: bool,
    /// Path after the stop line before the manoeuvre may be decided, px.
    pub decide_px: f64,
    /// Largest heading change still counted as straight, degrees.
    pub straight_max_deg: f64,
    /// Smallest heading change counted as a U-turn, degrees.
    pub u_turn_min_deg: f64,
}

impl Default for WrongLaneRule {
    fn default() -> Self {
        Self {
            enabled: false,
            decide_px: 200.0,
            straight_max_deg: 35.0,
            u_turn_min_deg: 135.0,
        }
    }
}

/// Vehicle class not allowed in the lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WrongClassRule {
    /// On or off.
    pub enabled: bool,
    /// Continuous time in the lane before it counts, ms.
    pub min_dwell_ms: u32,
    /// Observations of the track before its class is trusted.
    pub min_observations: u32,
}

impl Default for WrongClassRule {
    fn default() -> Self {
        Self {
            enabled: false,
            min_dwell_ms: 1000,
            min_observations: 5,
        }
    }
}

/// Driving against the lane's direction.
///
/// Each step in the lane adds its component against the lane heading and
/// subtracts its component along it (never below zero); at
/// `min_distance_px` the rule fires. Jitter cancels out; a vehicle must
/// really travel the wrong way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WrongWayRule {
    /// On or off.
    pub enabled: bool,
    /// Net travel against the lane, px.
    pub min_distance_px: f64,
}

impl Default for WrongWayRule {
    fn default() -> Self {
        Self {
            enabled: false,
            min_distance_px: 80.0,
        }
    }
}

/// Over the limit of the lane and class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeedingRule {
    /// On or off.
    pub enabled: bool,
    /// Measured speed must exceed the limit by more than this, km/h ...
    pub tolerance_kmh: f64,
    /// ... and by more than this fraction of the limit.
    pub tolerance_fraction: f64,
    /// Measurements less precise than this (km/h) are not used.
    pub max_uncertainty_kmh: f64,
}

impl Default for SpeedingRule {
    fn default() -> Self {
        Self {
            enabled: false,
            tolerance_kmh: 3.0,
            tolerance_fraction: 0.03,
            max_uncertainty_kmh: 5.0,
        }
    }
}

/// Dwelling in a no-stopping zone longer than the zone allows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IllegalStoppingRule {
    /// On or off.
    pub enabled: bool,
}
