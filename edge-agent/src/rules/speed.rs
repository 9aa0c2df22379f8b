//! Speeding: speed from the site's calibration against the limit of the
//! lane and class.
//!
//! - Two lines `d` metres apart: the anchor's crossing time of each line is
//!   interpolated between frames; `v = d / Δt`. Each crossing time is
//!   uncertain by `σ_t = √(time_error² + (pixel_error / v_px)²)` (timestamp
//!   error, and the anchor's pixel error turned into time by the pixel
//!   speed at the line); with the distance error, the relative uncertainty
//!   is `√((δd/d)² + (σ_a² + σ_b²)/Δt²)`. Measured once, at the second line.
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
use super::{Ctx, Mark, RuleKind, SpeedMeasurement, TrackState};
use crate::geometry::{Homography, Point};
use protocol::ViolationType;

/// Per-track state of the speed rule.
#[derive(Debug, Default)]
pub(crate) struct SpeedState {
    /// Per line: crossing time (µs), its σ (µs), the frame after it.
    crossed: [Option<(f64, f64, Mark)>; 2],
    done: bool,
    /// The time of the first observation after the track's latest gap.
    after_gap_us: Option<i64>,
}

impl SpeedState {
    /// The track was not seen for a while before `at_us` (and may be
    /// another vehicle now): what was measured before is forgotten.
    pub(crate) fn gap(&mut self, at_us: i64) {
        self.crossed = [None, None];
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
            for (k, line) in lines.iter().enumerate() {
                if state.speed.crossed[k].is_some() {
                    continue;
                }
                if let Some(c) = line.crossing(p0.anchor, p1.anchor) {
                    let t = p0.timestamp_us as f64 + c.t * dt;
                    let v_px_us = p0.anchor.dist(p1.anchor) / dt;
                    let sigma = (t_err * t_err + (px_err / v_px_us).powi(2)).sqrt();
                    state.speed.crossed[k] = Some((t, sigma, Mark::from(p1)));
                }
            }
            let [Some(a), Some(b)] = state.speed.crossed else {
                return;
            };
            state.speed.done = true;
            let dt_us = (b.0 - a.0).abs();
            if dt_us <= 0.0 {
                return;
            }
            let v = distance_m / (dt_us / 1e6) * 3.6;
            let rel = ((distance_error_m / distance_m).powi(2)
                + (a.1 * a.1 + b.1 * b.1) / (dt_us * dt_us))
                .sqrt();
            let first = if a.0 <= b.0 { a.2 } else { b.2 };
            judge(ctx, state, v, v * rel, first.frame);
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
                judge(ctx, state, v, v * rel, start.frame);
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

fn judge(ctx: &Ctx<'_>, state: &mut TrackState, v: f64, unc: f64, before: u64) {
    let rule = &ctx.site.rules.speeding;
    let lane = ctx.lane_now.or(state.lane);
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
        let mut viol = ctx.violation(RuleKind::Speeding, ctx.p1, before, lane);
        viol.speed = Some(SpeedMeasurement {
            measured_kmh: v,
            limit_kmh: limit,
            uncertainty_kmh: unc,
        });
        state.report(viol);
    }
}
