//! Speeding: speed from the site's calibration against the limit of the
//! lane and class.
//!
//! - Two lines `d` metres apart: the anchor's crossing time of each line is
//!   interpolated between frames; `v = d / Δt`. A crossing counts only
//!   once the track has stayed past the line for [`CONFIRM_STEPS`] more
//!   observations, and only if the step that crossed moved as the steps
//!   around it did (within half their displacement plus 4 × pixel error of
//!   their median velocity): a box cut short for a frame by a vehicle
//!   passing in front jumps forward, and its "crossing" would be early.
//!   Steps from or to a box touching the frame's edge are not among those
//!   it is compared with: the detector clips boxes to the frame, so while a
//!   vehicle enters (or leaves) its anchor stays on the edge and those
//!   steps show no motion — a fast car crossing a line near the edge would
//!   otherwise be judged against a standstill. With none left on one side
//!   it is compared with the other side only, and with none at all it is
//!   not used.
//!   Each crossing time is uncertain by
//!   `σ_t = √(time_error² + (pixel_error² + r²) / v_px²)`: the timestamp
//!   error; the anchor's pixel error, and `r`, how far the crossing step
//!   strayed from the steady motion around it (up to about half a frame
//!   interval's travel), turned into time by the pixel speed at the line,
//!   the slower of the step's and the steady one. With the distance error,
//!   the relative uncertainty is `√((δd/d)² + (σ_a² + σ_b²)/Δt²)`. Measured
//!   once both crossings are confirmed; reported at the second crossing.
//! - Homography: ground displacement of the anchor over the last
//!   `window_ms`; each end's ground error is the pixel error times the local
//!   metres-per-pixel, and each time carries `time_error`. Measured every
//!   frame once a full window is available.
//!
//! A violation needs `measured − 2σ > limit + max(tolerance_kmh,
//! tolerance_fraction × limit)` (σ the measurement's uncertainty: a driver
//! at the limit measured one σ high is not fined) and σ of at most
//! `max_uncertainty_kmh`; the event carries σ for the reviewer.
//!
//! A measurement never spans a gap in the track (`after_a_gap` in the
//! rules): a track that coasted behind a bus may have been handed the
//! vehicle ahead when it was matched again, and a speed from one vehicle's
//! crossing of the first line to another's of the second would be
//! nobody's.

/// How many σ the measured speed must clear the limit and tolerance by.
const SIGMAS: f64 = 2.0;

use super::compiled::CSpeed;
use super::{Ctx, RuleKind, SpeedMeasurement, TrackState};
use crate::geometry::{Homography, Point};
use crate::track::TrackPoint;
use protocol::ViolationType;

/// Observations after a crossing that must stay past the line before it
/// counts.
pub(crate) const CONFIRM_STEPS: u32 = 2;

/// Steps before a crossing step its motion is compared with (as many as
/// the track has since its latest gap), besides the [`CONFIRM_STEPS`] after.
const STEPS_BEFORE: usize = 3;

/// A crossing of one speed line.
#[derive(Debug, Clone, Copy)]
struct LineCrossing {
    /// When, µs (interpolated).
    t: f64,
    /// The observations either side of it.
    p0: TrackPoint,
    p1: TrackPoint,
    /// Which side of the line it went to.
    to_positive: bool,
    /// The lane it was in.
    lane: Option<usize>,
    /// Observations since, all past the line.
    after: u32,
}

/// Per-track state of the speed rule.
#[derive(Debug, Default)]
pub(crate) struct SpeedState {
    /// Per line: a crossing waiting for the track to stay past the line.
    tentative: [Option<LineCrossing>; 2],
    /// Per line: the confirmed crossing and its σ (µs).
    crossed: [Option<(LineCrossing, f64)>; 2],
    done: bool,
    /// The time of the first observation after the track's latest gap.
    after_gap_us: Option<i64>,
}

impl SpeedState {
    /// The track was not seen for a while before `at_us` (and may be
    /// another vehicle now): what was measured before is forgotten.
    pub(crate) fn gap(&mut self, at_us: i64) {
        self.crossed = [None, None];
        self.tentative = [None, None];
        self.after_gap_us = Some(at_us);
    }
}

pub(crate) fn step(ctx: &Ctx<'_>, state: &mut TrackState) {
    if state.issued(ViolationType::Speeding) || state.speed.done {
        return;
    }
    let Some(speed) = &ctx.site.speed else { return };
    let (p0, p1) = (ctx.p0, ctx.p1);
    let px_err = ctx.site.pixel_error_px;
    let t_err = ctx.site.time_error_us;
    match speed {
        CSpeed::TwoLines {
            lines,
            distance_m,
            distance_error_m,
        } => {
            let dt = (p1.timestamp_us - p0.timestamp_us) as f64;
            if dt <= 0.0 {
                return;
            }
            let sp = &mut state.speed;
            for (k, line) in lines.iter().enumerate() {
                if let Some(mut c) = sp.tentative[k].take() {
                    let side = line.side(p1.anchor);
                    let stayed = if c.to_positive {
                        side >= 0.0
                    } else {
                        side <= 0.0
                    };
                    if stayed {
                        c.after += 1;
                        if c.after < CONFIRM_STEPS {
                            sp.tentative[k] = Some(c);
                        } else if let Some(sigma) =
                            crossing_sigma(ctx, &c, sp.after_gap_us, px_err, t_err)
                        {
                            sp.crossed[k] = Some((c, sigma));
                        }
                    }
                }
                if sp.crossed[k].is_some() || sp.tentative[k].is_some() {
                    continue;
                }
                if let Some(c) = line.crossing(p0.anchor, p1.anchor) {
                    sp.tentative[k] = Some(LineCrossing {
                        t: p0.timestamp_us as f64 + c.t * dt,
                        p0: *p0,
                        p1: *p1,
                        to_positive: c.to_positive,
                        lane: ctx.lane_now.or(state.lane),
                        after: 0,
                    });
                }
            }
            let [Some((a, sa)), Some((b, sb))] = sp.crossed else {
                return;
            };
            sp.done = true;
            let dt_us = (b.t - a.t).abs();
            if dt_us <= 0.0 {
                return;
            }
            let v = distance_m / (dt_us / 1e6) * 3.6;
            let rel = ((distance_error_m / distance_m).powi(2)
                + (sa * sa + sb * sb) / (dt_us * dt_us))
                .sqrt();
            let (first, second) = if a.t <= b.t { (a, b) } else { (b, a) };
            judge(
                ctx,
                state,
                v,
                v * rel,
                (&second.p1, second.lane),
                first.p1.frame,
            );
        }
        CSpeed::Homography { h, window_us } => {
            let cutoff = p1.timestamp_us.saturating_sub(*window_us);
            let Some(start) = ctx
                .track
                .trajectory()
                .iter()
                .rev()
                .find(|p| p.timestamp_us <= cutoff)
            else {
                return;
            };
            if state
                .speed
                .after_gap_us
                .is_some_and(|g| start.timestamp_us < g)
            {
                return;
            }
            let (Some(g0), Some(g1)) = (h.apply(start.anchor), h.apply(p1.anchor)) else {
                return;
            };
            let d = g0.dist(g1);
            let dt_us = (p1.timestamp_us - start.timestamp_us) as f64;
            if d <= 0.0 || dt_us <= 0.0 {
                return;
            }
            let v = d / (dt_us / 1e6) * 3.6;
            let e0 = px_err * metres_per_px(h, start.anchor);
            let e1 = px_err * metres_per_px(h, p1.anchor);
            let rel =
                ((e0 * e0 + e1 * e1) / (d * d) + 2.0 * t_err * t_err / (dt_us * dt_us)).sqrt();
            if rel.is_finite() {
                let lane = ctx.lane_now.or(state.lane);
                judge(ctx, state, v, v * rel, (p1, lane), start.frame);
            }
        }
    }
}

/// Ground metres per image pixel at `p` (the larger of the two axes).
fn metres_per_px(h: &Homography, p: Point) -> f64 {
    let (Some(g), Some(gx), Some(gy)) = (
        h.apply(p),
        h.apply(Point::new(p.x + 1.0, p.y)),
        h.apply(Point::new(p.x, p.y + 1.0)),
    ) else {
        return f64::INFINITY;
    };
    g.dist(gx).max(g.dist(gy))
}

/// The σ (µs) of a crossing that stayed past its line, or `None` if the
/// step that crossed did not move as the steps around it did (see the
/// module docs).
fn crossing_sigma(
    ctx: &Ctx<'_>,
    c: &LineCrossing,
    after_gap_us: Option<i64>,
    px_err: f64,
    t_err: f64,
) -> Option<f64> {
    let traj = ctx.track.trajectory();
    let i1 = traj
        .iter()
        .position(|p| p.timestamp_us == c.p1.timestamp_us)?;
    let i0 = i1.checked_sub(1)?;
    let from = traj
        .iter()
        .position(|p| after_gap_us.is_none_or(|g| p.timestamp_us >= g))
        .unwrap_or(i0)
        .max(i0.saturating_sub(STEPS_BEFORE));
    let to = (i1 + CONFIRM_STEPS as usize).min(traj.len() - 1);
    let velocity = |i: usize| {
        let (a, b) = (&traj[i], &traj[i + 1]);
        let dt = (b.timestamp_us - a.timestamp_us) as f64;
        (dt > 0.0).then(|| b.anchor.minus(a.anchor).scale(1.0 / dt))
    };
    // Not steps whose box touches the frame's edge (clipped: see the
    // module docs).
    let clipped = |i: usize| ctx.site.at_edge(traj[i].bbox) || ctx.site.at_edge(traj[i + 1].bbox);
    let around: Vec<Point> = (from..to)
        .filter(|&i| i != i0 && !clipped(i))
        .filter_map(velocity)
        .collect();
    if around.is_empty() {
        return None;
    }
    let steady = Point::new(
        median(around.iter().map(|v| v.x)),
        median(around.iter().map(|v| v.y)),
    );
    let dt = (c.p1.timestamp_us - c.p0.timestamp_us) as f64;
    let moved = c.p1.anchor.minus(c.p0.anchor);
    let strayed = moved.minus(steady.scale(dt)).norm();
    if !strayed.is_finite() || strayed > 0.5 * steady.norm() * dt + 4.0 * px_err {
        tracing::debug!(
            track = ctx.track.id(),
            strayed,
            "speed line crossing not used: the step jumped against the track's steady motion"
        );
        return None;
    }
    let v_px = (moved.norm() / dt).min(steady.norm());
    let sigma = (t_err * t_err + (px_err * px_err + strayed * strayed) / (v_px * v_px)).sqrt();
    sigma.is_finite().then_some(sigma)
}

/// The median of some numbers (the mean of the middle two for an even
/// count).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Judges `v` ± `unc` measured for the vehicle at `at` in `lane` (the point
/// of interest), `before` the frame the measurement began.
fn judge(
    ctx: &Ctx<'_>,
    state: &mut TrackState,
    v: f64,
    unc: f64,
    (at, lane): (&TrackPoint, Option<usize>),
    before: u64,
) {
    let rule = &ctx.site.rules.speeding;
    let Some(limit) = lane.and_then(|l| ctx.site.lanes[l].limits.for_class(ctx.track.class()))
    else {
        return;
    };
    let tol = rule
        .tolerance_kmh
        .max(rule.tolerance_fraction * f64::from(limit));
    if v.is_finite()
        && unc.is_finite()
        && unc <= rule.max_uncertainty_kmh
        && v - SIGMAS * unc > f64::from(limit) + tol
    {
        let mut viol = ctx.violation(RuleKind::Speeding, at, before, lane);
        viol.speed = Some(SpeedMeasurement {
            measured_kmh: v,
            limit_kmh: limit,
            uncertainty_kmh: unc,
        });
        state.report(viol);
    }
}
