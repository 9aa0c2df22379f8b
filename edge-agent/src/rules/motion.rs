//! Motion measures over a trajectory that several rules share: recent
//! speed in pixels per second, "stationary since", heading over a length of
//! path, and the manoeuvre a heading change amounts to.

use super::Mark;
use crate::geometry::{angle_diff_deg, heading_deg};
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

/// Heading of the newest `path_px` of the path (from the first point at
/// least that far back, along the path, to the newest). With less path
/// than that, the heading over the whole track if it is at least a quarter
/// of `path_px`; else `NaN`.
pub(crate) fn heading_over_path(traj: &VecDeque<TrackPoint>, path_px: f64) -> f64 {
    let Some(last) = traj.back() else {
        return f64::NAN;
    };
    let mut path = 0.0;
    let mut prev = last.anchor;
    let mut from = last.anchor;
    for p in traj.iter().rev().skip(1) {
        path += p.anchor.dist(prev);
        prev = p.anchor;
        from = p.anchor;
        if path >= path_px {
            break;
        }
    }
    if path >= path_px / 4.0 {
        heading_deg(from, last.anchor)
    } else {
        f64::NAN
    }
}

/// The manoeuvre a change of heading from `entry` to `exit` amounts to.
pub(crate) fn classify(entry_deg: f64, exit_deg: f64, rule: &WrongLaneRule) -> Option<Manoeuvre> {
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
