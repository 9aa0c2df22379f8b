//! Motion measures over a trajectory that several rules share: recent
//! speed in pixels per second, "stationary since", the heading of a stretch
//! of path, and the manoeuvre through a junction.
//!
//! Headings are measured so that one bad box does not turn them: a box cut
//! short or shifted for a frame (a motorbike passing in front or alongside,
//! a detection glitch) moves its anchor tens of pixels, as much as a
//! vehicle moves in one or two frames, so a heading over the newest step
//! or two could swing by 45° on it. A stretch's heading is the median of
//! the chords between the points at its two ends ([`stretch_heading`]).
//!
//! The manoeuvre ([`judge_manoeuvre`]) is decided only once it is clear,
//! and never from the first few metres of a turn alone: a car following a
//! normal turning arc (a radius of about 5 m) has turned only some 25° by
//! the time it is 200 px past the line, and read then as going straight it
//! would be fined for a lawful turn (a run of the red in a right-turn-on-red
//! lane, a wrong lane in a turning lane). A turn is latched as soon as the
//! heading has turned past `straight_max_deg`; going straight only once it
//! has clearly not turned, or has gone far on without turning. A vehicle
//! lost while it is still unclear has no manoeuvre: in doubt, no fine.

use super::Mark;
use crate::geometry::{Point, angle_diff_deg, heading_deg};
use crate::site::{Manoeuvre, WrongLaneRule};
use crate::track::TrackPoint;
use std::collections::VecDeque;

/// The oldest point no older than `window_us` before the newest, and the
/// anchor speed (px/s) from it to the newest. `None` with fewer than two
/// points in the window.
pub(crate) fn recent_speed(
    traj: &VecDeque<TrackPoint>,
    window_us: i64,
) -> Option<(f64, TrackPoint)> {
    let last = traj.back()?;
    let mut start = None;
    for p in traj.iter().rev().skip(1) {
        if p.timestamp_us < last.timestamp_us.saturating_sub(window_us) {
            break;
        }
        start = Some(*p);
    }
    let start = start?;
    let dt = (last.timestamp_us - start.timestamp_us) as f64 / 1e6;
    if dt <= 0.0 {
        return None;
    }
    Some((start.anchor.dist(last.anchor) / dt, start))
}

/// If the track is stationary (slower than `max_px_s` over the window),
/// the first point of the window: it has not moved since then.
pub(crate) fn stationary_since(
    traj: &VecDeque<TrackPoint>,
    window_us: i64,
    max_px_s: f64,
) -> Option<TrackPoint> {
    match recent_speed(traj, window_us) {
        Some((v, start)) if v < max_px_s => Some(start),
        _ => None,
    }
}

/// How long a vehicle may look as if it moved (box jitter, a partial
/// occlusion by passing traffic, a detection glitch) without its "standing
/// since" being forgotten: a car parked for minutes on a busy street must
/// not have its dwell restarted by every motorbike that passes in front.
pub(crate) const STILL_GRACE_US: i64 = 1_000_000;

/// A "standing since" mark kept through short spells of apparent motion
/// ([`STILL_GRACE_US`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standing {
    /// Since when it stands.
    pub since: Mark,
    /// When it was last seen stationary (µs).
    pub last_still_us: i64,
}

impl Standing {
    /// The mark after an observation at `now_us`: `still` says whether it
    /// is stationary now (and from when, for a new mark). `None` once it
    /// has moved for longer than the grace.
    pub(crate) fn update(
        kept: Option<Standing>,
        still: Option<Mark>,
        now_us: i64,
    ) -> Option<Standing> {
        match (kept, still) {
            (Some(k), Some(_)) => Some(Standing {
                last_still_us: now_us,
                ..k
            }),
            (None, Some(s)) => Some(Standing {
                since: s,
                last_still_us: now_us,
            }),
            (Some(k), None) if now_us - k.last_still_us <= STILL_GRACE_US => Some(k),
            _ => None,
        }
    }
}

/// Points at each end of a stretch of path whose chords vote on its
/// heading.
const ENDS: usize = 3;

/// The fewest points a stretch's heading is measured over (where the track
/// has them): its two ends then share no point, and one bad box spoils at
/// most a third of the chords.
const MIN_POINTS: usize = 2 * ENDS;

/// Heading (degrees) from the points `from` to the points `to`: the median
/// of the headings of the chords from each of `from` to each of `to`.
/// One bad point among three at either end spoils three of nine chords,
/// which the median outvotes. `NaN` if no chord has a length.
pub(crate) fn median_chord_heading(from: &[Point], to: &[Point]) -> f64 {
    let mut headings = Vec::with_capacity(from.len() * to.len());
    let (mut sx, mut sy) = (0.0, 0.0);
    for &a in from {
        for &b in to {
            let h = heading_deg(a, b);
            if h.is_finite() {
                headings.push(h);
                sx += h.to_radians().cos();
                sy += h.to_radians().sin();
            }
        }
    }
    if headings.is_empty() {
        return f64::NAN;
    }
    // Taken about their mean direction, so that headings either side of
    // ±180° are neighbours.
    let mean = f64::atan2(sy, sx).to_degrees();
    let mut d: Vec<f64> = headings.iter().map(|&h| angle_diff_deg(mean, h)).collect();
    d.sort_by(f64::total_cmp);
    let m = d.len();
    let median = if m % 2 == 1 {
        d[m / 2]
    } else {
        (d[m / 2 - 1] + d[m / 2]) / 2.0
    };
    angle_diff_deg(0.0, mean + median)
}

/// Heading of a stretch of path (its anchors, oldest first): from its
/// first [`ENDS`] points to its last (fewer on a short stretch, so that
/// the two ends do not overlap).
fn stretch_heading(points: &[Point]) -> f64 {
    let k = (points.len() / 2).min(ENDS);
    if k == 0 {
        return f64::NAN;
    }
    median_chord_heading(&points[..k], &points[points.len() - k..])
}

/// Heading of the newest stretch of the path: back from the newest point
/// to the first point at least `span_px` from it in a straight line, and
/// over at least [`MIN_POINTS`] points — by distance, not path walked, so
/// that the jitter of a vehicle standing still does not make a stretch.
/// With less than that, the whole track if its first point is at least a
/// quarter of `span_px` from the newest; else `NaN`.
pub(crate) fn recent_heading(traj: &VecDeque<TrackPoint>, span_px: f64) -> f64 {
    let Some(last) = traj.back() else {
        return f64::NAN;
    };
    let n = traj.len();
    let start = traj
        .iter()
        .rev()
        .enumerate()
        .find(|(k, p)| k + 1 >= MIN_POINTS && p.anchor.dist(last.anchor) >= span_px)
        .map(|(k, _)| n - 1 - k);
    let start = match start {
        Some(i) => i,
        None if traj[0].anchor.dist(last.anchor) >= span_px / 4.0 => 0,
        None => return f64::NAN,
    };
    let points: Vec<Point> = traj.range(start..).map(|p| p.anchor).collect();
    stretch_heading(&points)
}

/// The newest anchors of a track that vote on where it is now: as many as
/// the end of a stretch has ([`ENDS`]).
pub(crate) fn newest_anchors(traj: &VecDeque<TrackPoint>) -> Vec<Point> {
    let skip = traj.len().saturating_sub(ENDS);
    traj.range(skip..).map(|p| p.anchor).collect()
}

/// What is known of a vehicle's way through a junction since it crossed
/// the stop line.
#[derive(Debug, Clone)]
pub(crate) struct Way {
    /// Its heading as it came to the line (degrees).
    pub entry_deg: f64,
    /// Where its anchor crossed the line.
    pub at_line: Point,
    /// Its newest anchors when it crossed ([`newest_anchors`]): where its
    /// way through the junction is measured from.
    pub origin: Vec<Point>,
    /// Path walked since it crossed, px.
    pub path_px: f64,
}

/// Below this fraction of `straight_max_deg` (both the heading now and the
/// way since the line), a vehicle is *clearly* going straight: a car on a
/// turning arc of 5 m (450 px) has turned 25° 200 px past the line, one
/// of 10 m some 13°, while a straight run's measured heading strays a few
/// degrees.
const CLEARLY_STRAIGHT: f64 = 0.25;

/// How many times `decide_px` from where it crossed the line a vehicle
/// that has not turned past `straight_max_deg` is taken to go straight,
/// even if not clearly: a turn shows by then.
const STRAIGHT_AFTER: f64 = 3.0;

/// The manoeuvre of a vehicle on `way` with the trajectory `traj`, if it
/// can be told yet; `None` while it cannot (asked again each frame, the
/// answer latched once given).
///
/// Nothing before `decide_px` of path past the line and half that from
/// where it crossed (path alone could be the jitter of a vehicle waiting
/// beyond the line). Then a turn or U-turn as soon as the heading now
/// ([`recent_heading`] over `heading_px`) has turned from the entry by
/// more than `straight_max_deg` (a turn does not become straight again);
/// straight once `decide_px` from where it crossed if clearly so
/// ([`CLEARLY_STRAIGHT`]: both the heading now and the way since the line,
/// the median chord from its `origin` to its newest anchors), else once
/// [`STRAIGHT_AFTER`] times as far if neither has turned past
/// `straight_max_deg`. Between those, a vehicle still in the first part of
/// a turning arc or swerving is not decided: a lawful turn may still come.
pub(crate) fn judge_manoeuvre(
    way: &Way,
    traj: &VecDeque<TrackPoint>,
    heading_px: f64,
    rule: &WrongLaneRule,
) -> Option<Manoeuvre> {
    let now = traj.back()?.anchor;
    let away = way.at_line.dist(now);
    if way.path_px < rule.decide_px || away < rule.decide_px / 2.0 {
        return None;
    }
    let recent = recent_heading(traj, heading_px);
    let turned = angle_diff_deg(way.entry_deg, recent);
    if !turned.is_finite() {
        return None;
    }
    if turned.abs() > rule.straight_max_deg {
        return classify(way.entry_deg, recent, rule);
    }
    let since_line = median_chord_heading(&way.origin, &newest_anchors(traj));
    let veered = angle_diff_deg(way.entry_deg, since_line).abs();
    let sure = rule.straight_max_deg * CLEARLY_STRAIGHT;
    let clearly = away >= rule.decide_px && turned.abs() <= sure && veered <= sure;
    let far_on = away >= rule.decide_px * STRAIGHT_AFTER && veered <= rule.straight_max_deg;
    (clearly || far_on).then_some(Manoeuvre::Straight)
}

/// The manoeuvre a change of heading from `entry` to `exit` amounts to.
fn classify(entry_deg: f64, exit_deg: f64, rule: &WrongLaneRule) -> Option<Manoeuvre> {
    let d = angle_diff_deg(entry_deg, exit_deg);
    if !d.is_finite() {
        return None;
    }
    Some(if d.abs() <= rule.straight_max_deg {
        Manoeuvre::Straight
    } else if d.abs() >= rule.u_turn_min_deg {
        Manoeuvre::UTurn
    } else if d > 0.0 {
        Manoeuvre::Right
    } else {
        Manoeuvre::Left
    })
}
