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
//!   Nothing is measured unless every step from the first crossing to the
//!   second moved as those steps' median velocity did (the same test), or
//!   jumped only to come back onto that course within a few steps, off it
//!   at no observation that timed a crossing: a track handed to the
//!   vehicle ahead between the lines (an ID switch) jumps forward for good
//!   and "crosses" the second line early, and the checks at each crossing
//!   see only a few steps either side of it; a box cut short for a frame
//!   or a few comes back, and its crossings stand.
//! - Homography: ground displacement of the anchor over a window of
//!   `window_ms` (at least [`MIN_WINDOW_STEPS`] steps). **One measurement
//!   per track**: its first steady window since its latest gap that can
//!   be judged — a limit is known and σ is at most `max_uncertainty_kmh`. A
//!   window too imprecise to judge (say one whose end strayed from the
//!   steady motion by a little less than the step test rejects) judges
//!   nothing and is not the one: counted, such a glitch would spare the
//!   vehicle every later, clean window. Steady: every box clear of the
//!   frame's edge, and every step moved as the window's median ground
//!   velocity did (the test above, in ground metres): a box cut short at
//!   an end of the window would otherwise add its jump to the displacement
//!   — 40 px for one frame can be 2 m, 7 km/h over a second. Each end's
//!   ground error is the pixel error times the local metres-per-pixel and,
//!   as at a line, how far the window's step next to it strayed from the
//!   steady motion (a jump too small to reject widens the margin rather
//!   than raising the speed); each time carries `time_error`. Why once:
//!   windows a frame apart have different ends, so their errors are nearly
//!   independent, and testing a fresh one every frame gave jitter a new
//!   chance each time to clear the 2σ margin — a driver at limit +
//!   tolerance with the declared jitter was fined about one time in three
//!   over 3 s at 10 fps, against the one in 40 or so (the normal tail
//!   beyond 2σ) that one measurement allows. Windows passed over as too
//!   imprecise give jitter no such chance: nothing is judged on them.
//!
//! - Every crossing's time is uncertain by the motion *across* its line
//!   (`v_px` above is that component): a line crossed at 30° is crossed at
//!   half the speed the track moves. A crossing within
//!   [`MIN_CROSSING_ANGLE_DEG`] of the line's direction is not timed.
//! - Two lines: the distance error is at least `max(0.05 m, 0.5% × d)`,
//!   whatever the site declares (0 by default). Homography: the relative
//!   `calibration_error` (default 2%) is added to the relative σ, and a
//!   window whose ends are not within the four image points' hull (with a
//!   margin of [`compiled::HULL_MARGIN`](super::compiled::HULL_MARGIN) of
//!   its size) is not measured: the homography is extrapolated there.
//! - The limit: the highest of the limits of every lane the track was in
//!   during the measurement (from the step that crossed the first line to
//!   the one that crossed the second; the window's observations), for each
//!   class it may be — its majority class and any with at least
//!   [`MIN_CLASS_SHARE`] of its observations (the detector mixes car,
//!   truck and bus on one vehicle). A lane it drove in without a limit for
//!   any of those classes leaves the limit unknown: not judged.
//! - With `speed.camera_height_m` `H` set, measured speed and σ are
//!   multiplied by `1 − 0.6 m / H`: the anchor (the box's bottom centre)
//!   may be a bumper up to 0.6 m above the road, which reads fast by
//!   `H / (H − h)`. Without it this bias is not corrected.
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
use crate::geometry::{Homography, Point, Polygon, Segment};
use crate::track::{Track, TrackPoint};
use protocol::{VehicleClass, ViolationType};
use std::collections::VecDeque;

/// Observations after a crossing that must stay past the line before it
/// counts.
pub(crate) const CONFIRM_STEPS: u32 = 2;

/// Steps within which a track that jumped between the speed lines must be
/// back on its steady course (a box cut short for up to four frames).
const EXCURSION_STEPS: usize = 5;

/// Fewest steps a homography window may have: with fewer there is no
/// steady motion to tell a step that jumped from (the window reaches back
/// further when its `window_ms` holds fewer).
const MIN_WINDOW_STEPS: usize = 3;

/// Steps before a crossing step its motion is compared with (as many as
/// the track has since its latest gap), besides the [`CONFIRM_STEPS`] after.
const STEPS_BEFORE: usize = 3;

/// The least angle (degrees) between a track's motion and a speed line
/// for its crossing to be timed: nearer parallel, the motion across the
/// line that times it is too slow for the crossing time to mean anything.
const MIN_CROSSING_ANGLE_DEG: f64 = 20.0;

/// The least share of a track's class votes that makes a class one it may
/// be, for its speed limit ([`classes_of`]).
const MIN_CLASS_SHARE: f64 = 0.2;

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
                            crossing_sigma(ctx, *line, &c, sp.after_gap_us, px_err, t_err)
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
            let (first, second) = if a.t <= b.t { (a, b) } else { (b, a) };
            if dt_us <= 0.0 || !steady_between(ctx, &first, &second, px_err) {
                return;
            }
            let v = distance_m / (dt_us / 1e6) * 3.6;
            let rel = ((distance_error_m / distance_m).powi(2)
                + (sa * sa + sb * sb) / (dt_us * dt_us))
                .sqrt();
            let lanes = lanes_during(
                ctx,
                first.p0.timestamp_us,
                second.p1.timestamp_us,
                second.lane,
            );
            judge(
                ctx,
                state,
                v,
                v * rel,
                (&second.p1, second.lane),
                &lanes,
                first.p1.frame,
            );
        }
        CSpeed::Homography {
            h,
            window_us,
            rel_error,
            hull,
            margin_px,
        } => {
            let traj = ctx.track.trajectory();
            let cutoff = p1.timestamp_us.saturating_sub(*window_us);
            let Some(i0) = traj
                .iter()
                .rposition(|p| p.timestamp_us <= cutoff)
                .map(|i| i.min(traj.len().saturating_sub(MIN_WINDOW_STEPS + 1)))
            else {
                return;
            };
            let start = &traj[i0];
            if state
                .speed
                .after_gap_us
                .is_some_and(|g| start.timestamp_us < g)
            {
                return;
            }
            // Beyond the calibration points the homography extrapolates,
            // its error unbounded: such a window is not measured (a later
            // one, wholly within, may be).
            if ![start.anchor, p1.anchor]
                .into_iter()
                .all(|a| near_hull(hull, a, *margin_px))
            {
                return;
            }
            let Some([(g0, r0), (g1, r1)]) = steady_window(ctx, h, i0, px_err) else {
                return;
            };
            let d = g0.dist(g1);
            let dt_us = (p1.timestamp_us - start.timestamp_us) as f64;
            if d <= 0.0 || dt_us <= 0.0 {
                return;
            }
            let v = d / (dt_us / 1e6) * 3.6;
            let e0 = (px_err * metres_per_px(h, start.anchor)).hypot(r0);
            let e1 = (px_err * metres_per_px(h, p1.anchor)).hypot(r1);
            let rel = ((e0 * e0 + e1 * e1) / (d * d)
                + 2.0 * t_err * t_err / (dt_us * dt_us)
                + rel_error * rel_error)
                .sqrt();
            if rel.is_finite() {
                let lane = ctx.lane_now.or(state.lane);
                let lanes = lanes_during(ctx, start.timestamp_us, p1.timestamp_us, lane);
                // One measurement per track (see the module docs).
                state.speed.done = judge(ctx, state, v, v * rel, (p1, lane), &lanes, start.frame);
            }
        }
    }
}

/// The ground positions of the ends of the window from observation `i0`
/// to the newest, each with how far (m) the window's step next to it
/// strayed from the window's steady motion; `None` unless the window is
/// steady: at least [`MIN_WINDOW_STEPS`] steps, every box clear of the
/// frame's edge and mapped by `h`, and no step that jumped ([`stray`], in
/// ground metres against the median ground velocity: a vehicle at constant
/// speed keeps it there, however the perspective shrinks its steps in the
/// image).
fn steady_window(
    ctx: &Ctx<'_>,
    h: &Homography,
    i0: usize,
    px_err: f64,
) -> Option<[(Point, f64); 2]> {
    let traj = ctx.track.trajectory();
    let mut seen = Vec::with_capacity(traj.len() - i0);
    for p in traj.range(i0..) {
        if ctx.site.at_edge(p.bbox) {
            return None;
        }
        let err = px_err * metres_per_px(h, p.anchor);
        seen.push((h.apply(p.anchor)?, p.timestamp_us as f64, err));
    }
    if seen.len() <= MIN_WINDOW_STEPS {
        return None;
    }
    let mut steps = Vec::with_capacity(seen.len() - 1);
    for w in seen.windows(2) {
        let dt = w[1].1 - w[0].1;
        if dt <= 0.0 {
            return None;
        }
        steps.push((w[1].0.minus(w[0].0), dt, w[0].2.max(w[1].2)));
    }
    let velocities: Vec<Point> = steps.iter().map(|&(m, dt, _)| m.scale(1.0 / dt)).collect();
    let steady = median_point(&velocities)?;
    let strays: Option<Vec<f64>> = steps
        .iter()
        .map(|&(moved, dt, err)| stray(moved, steady, dt, err))
        .collect();
    let Some(strays) = strays else {
        tracing::debug!(
            track = ctx.track.id(),
            "speed window not used: a step jumped against the track's steady motion"
        );
        return None;
    };
    let (first, last) = (seen[0].0, seen[seen.len() - 1].0);
    Some([(first, strays[0]), (last, strays[strays.len() - 1])])
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
    line: Segment,
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
    let around: Vec<Point> = (from..to)
        .filter(|&i| i != i0 && !clipped(ctx, traj, i))
        .filter_map(|i| step_velocity(traj, i))
        .collect();
    let steady = median_point(&around)?;
    let dt = (c.p1.timestamp_us - c.p0.timestamp_us) as f64;
    let moved = c.p1.anchor.minus(c.p0.anchor);
    let Some(strayed) = stray(moved, steady, dt, px_err) else {
        tracing::debug!(
            track = ctx.track.id(),
            "speed line crossing not used: the step jumped against the track's steady motion"
        );
        return None;
    };
    // Only the motion across the line times its crossing: along it, an
    // anchor's error moves the crossing by error / (speed across).
    let d = line.b.minus(line.a);
    let normal = Point::new(-d.y, d.x).scale(1.0 / d.norm());
    let across = |v: Point| v.dot(normal).abs();
    let min_across = MIN_CROSSING_ANGLE_DEG.to_radians().sin();
    if across(moved) < min_across * moved.norm() || across(steady) < min_across * steady.norm() {
        tracing::debug!(
            track = ctx.track.id(),
            "speed line crossing not used: the track moved nearly along the line"
        );
        return None;
    }
    let v_px = (across(moved) / dt).min(across(steady));
    let sigma = (t_err * t_err + (px_err * px_err + strayed * strayed) / (v_px * v_px)).sqrt();
    sigma.is_finite().then_some(sigma)
}

/// Whether `p` is within `hull` or at most `margin` px outside it.
fn near_hull(hull: &Polygon, p: Point, margin: f64) -> bool {
    if hull.contains(p) {
        return true;
    }
    let n = hull.points.len();
    (0..n).any(|i| {
        let (a, b) = (hull.points[i], hull.points[(i + 1) % n]);
        let ab = b.minus(a);
        let t = (p.minus(a).dot(ab) / ab.dot(ab)).clamp(0.0, 1.0);
        let near = a.plus(ab.scale(t));
        near.is_finite() && p.dist(near) <= margin
    })
}

/// The lanes the track was in (by its anchor) from the observation at
/// `from_us` to the one at `to_us`; `fallback` (the lane it was last seen
/// in) if none of them was in a lane.
fn lanes_during(ctx: &Ctx<'_>, from_us: i64, to_us: i64, fallback: Option<usize>) -> Vec<usize> {
    let mut lanes: Vec<usize> = ctx
        .track
        .trajectory()
        .iter()
        .filter(|p| (from_us..=to_us).contains(&p.timestamp_us))
        .filter_map(|p| ctx.site.lane_at(p.anchor))
        .collect();
    lanes.sort_unstable();
    lanes.dedup();
    if lanes.is_empty() {
        lanes.extend(fallback);
    }
    lanes
}

/// The classes the track may be: its majority class and every class with
/// at least [`MIN_CLASS_SHARE`] of its observations' votes (the detector
/// mixes car, truck and bus on one vehicle).
fn classes_of(track: &Track) -> Vec<VehicleClass> {
    let traj = track.trajectory();
    let mut classes = vec![track.class()];
    for class in [
        VehicleClass::Car,
        VehicleClass::Motorcycle,
        VehicleClass::Bus,
        VehicleClass::Truck,
    ] {
        let n = traj.iter().filter(|p| p.class == class).count();
        if n as f64 >= MIN_CLASS_SHARE * traj.len() as f64 && !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes
}

/// The limit a vehicle of any of `classes` that drove in `lanes` is judged
/// against: the highest of the lanes' limits for those classes; `None` if
/// it was in no lane, or in one with no limit for any of them (its limit
/// there is not known, and may be higher).
fn limit_for(ctx: &Ctx<'_>, lanes: &[usize], classes: &[VehicleClass]) -> Option<u16> {
    let mut limit = None;
    for &l in lanes {
        let limits = &ctx.site.lanes[l].limits;
        let here = classes.iter().filter_map(|&c| limits.for_class(c)).max()?;
        limit = limit.max(Some(here));
    }
    limit
}

/// Whether the track moved steadily from the step that crossed the first
/// line to the one that crossed the second: every step as those steps'
/// median velocity ([`stray`]; steps clipped at the frame's edge aside),
/// but for an excursion that is undone — within [`EXCURSION_STEPS`] the
/// track is back where its steady motion from before the jump puts it (by
/// the same test), and no observation off that course timed a crossing.
///
/// Why: a track handed to the vehicle ahead (an ID switch) jumps forward
/// and stays ahead, and the second crossing it then times is that
/// vehicle's, early — the interval short and the speed high by however far
/// ahead it was; the checks at each crossing see only a few steps either
/// side. A box cut short for a frame or a few by something passing in
/// front jumps too, but comes back, and the crossings, timed from
/// observations on course, stand. A vehicle that stops or turns between
/// the lines is not measured either.
fn steady_between(ctx: &Ctx<'_>, first: &LineCrossing, second: &LineCrossing, px_err: f64) -> bool {
    let traj = ctx.track.trajectory();
    let at = |c: &LineCrossing| {
        traj.iter()
            .position(|p| p.timestamp_us == c.p1.timestamp_us)
    };
    let (Some(a), Some(b)) = (at(first), at(second)) else {
        return false;
    };
    let from = a.saturating_sub(1);
    let velocities: Vec<Point> = (from..b)
        .filter(|&i| !clipped(ctx, traj, i))
        .filter_map(|i| step_velocity(traj, i))
        .collect();
    let Some(steady) = median_point(&velocities) else {
        return false;
    };
    // Whether observation `j` is where the steady motion from `i` puts it,
    // as near as one step from `i` must be.
    let on_course = |i: usize, j: usize| {
        let (p, q) = (&traj[i], &traj[j]);
        let step = (traj[i + 1].timestamp_us - p.timestamp_us) as f64;
        let dt = (q.timestamp_us - p.timestamp_us) as f64;
        let off = q.anchor.minus(p.anchor).minus(steady.scale(dt)).norm();
        off.is_finite() && off <= 0.5 * steady.norm() * step + 4.0 * px_err
    };
    let timed = [first.p0, first.p1, second.p0, second.p1].map(|p| p.timestamp_us);
    let mut i = from;
    while i < b {
        if clipped(ctx, traj, i) || on_course(i, i + 1) {
            i += 1;
            continue;
        }
        let last = (i + EXCURSION_STEPS).min(traj.len() - 1);
        match (i + 2..=last).find(|&j| on_course(i, j)) {
            Some(j)
                if traj
                    .range(i + 1..j)
                    .all(|p| !timed.contains(&p.timestamp_us)) =>
            {
                i = j
            }
            _ => {
                tracing::debug!(
                    track = ctx.track.id(),
                    frame = traj[i + 1].frame,
                    "speed not measured: the track jumped between the lines and did not come back (an ID switch?)"
                );
                return false;
            }
        }
    }
    true
}

/// Whether step `i` (observation `i` to `i + 1`) begins or ends in a box
/// touching the frame's edge (clipped: see the module docs).
fn clipped(ctx: &Ctx<'_>, traj: &VecDeque<TrackPoint>, i: usize) -> bool {
    ctx.site.at_edge(traj[i].bbox) || ctx.site.at_edge(traj[i + 1].bbox)
}

/// The image velocity (px/µs) of step `i`, if time moved.
fn step_velocity(traj: &VecDeque<TrackPoint>, i: usize) -> Option<Point> {
    let (a, b) = (&traj[i], &traj[i + 1]);
    let dt = (b.timestamp_us - a.timestamp_us) as f64;
    (dt > 0.0).then(|| b.anchor.minus(a.anchor).scale(1.0 / dt))
}

/// How far a step that `moved` in `dt` strayed from the `steady` velocity,
/// or `None` if by more than half the steady displacement plus four times
/// the position error `err` (same units as `moved`): a jump, not jitter.
fn stray(moved: Point, steady: Point, dt: f64, err: f64) -> Option<f64> {
    let strayed = moved.minus(steady.scale(dt)).norm();
    (strayed.is_finite() && strayed <= 0.5 * steady.norm() * dt + 4.0 * err).then_some(strayed)
}

/// The component-wise median of some velocities; `None` if there are none.
fn median_point(vs: &[Point]) -> Option<Point> {
    (!vs.is_empty()).then(|| {
        Point::new(
            median(vs.iter().map(|v| v.x)),
            median(vs.iter().map(|v| v.y)),
        )
    })
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
/// of interest), `before` the frame the measurement began; `false` if
/// nothing was judged: no limit is known there for its class, or the
/// measurement is too imprecise to judge (`v` or `unc` not finite, or `unc`
/// over `max_uncertainty_kmh`). Only a judged measurement is the track's
/// one (see the module docs): one set aside as too imprecise — a glitch
/// too small to reject, widening its window's σ past the maximum — says
/// nothing either way, so a later window may still time the vehicle.
fn judge(
    ctx: &Ctx<'_>,
    state: &mut TrackState,
    v: f64,
    unc: f64,
    (at, lane): (&TrackPoint, Option<usize>),
    lanes: &[usize],
    before: u64,
) -> bool {
    let rule = &ctx.site.rules.speeding;
    let Some(limit) = limit_for(ctx, lanes, &classes_of(ctx.track)) else {
        return false;
    };
    // An anchor above the road reads fast (see `camera_height_m`).
    let (v, unc) = (v * ctx.site.anchor_factor, unc * ctx.site.anchor_factor);
    if !(v.is_finite() && unc.is_finite() && unc <= rule.max_uncertainty_kmh) {
        return false;
    }
    let tol = rule
        .tolerance_kmh
        .max(rule.tolerance_fraction * f64::from(limit));
    if v - SIGMAS * unc > f64::from(limit) + tol {
        let mut viol = ctx.violation(RuleKind::Speeding, at, before, lane);
        viol.speed = Some(SpeedMeasurement {
            measured_kmh: v,
            limit_kmh: limit,
            uncertainty_kmh: unc,
        });
        state.report(viol);
    }
    true
}
