//! Rules about where a vehicle is and which way it goes, away from the
//! stop line: wrong vehicle class in a lane, wrong way, and illegal
//! stopping in a no-stopping zone.
//!
//! Standing in a no-stopping zone is dwell only where the vehicle chose to
//! stop: not while its lane's signal holds it (red, yellow, or not known),
//! nor while it waits behind a vehicle standing just ahead of it (a
//! queue). The law forbids stopping near a junction, so a site may well
//! draw a zone over the lanes before a stop line; what a queued vehicle
//! does there is lawful all the same, so the rule tells a queue from a
//! stop rather than the site file refusing such a zone.

use super::motion::{Standing, stationary_since};
use super::{Ctx, Mark, RuleKind, TrackState};
use crate::geometry::{BBox, Point};
use protocol::{SignalState, ViolationType};

/// Per-track state of these rules.
#[derive(Debug, Default)]
pub(crate) struct LaneState {
    /// Lane of a class not allowed there, since when.
    class_in: Option<(usize, Mark)>,
    /// Travel against a lane's direction in progress.
    against: Option<Against>,
    /// Zone the anchor is in, and since when it has been stationary there.
    zone: Option<(usize, Option<Standing>)>,
}

pub(crate) fn step(ctx: &Ctx<'_>, state: &mut TrackState) {
    let rules = &ctx.site.rules;
    if rules.wrong_class.enabled && !state.issued(ViolationType::WrongLane) {
        wrong_class(ctx, state);
    }
    if rules.wrong_way.enabled && !state.issued(ViolationType::WrongWay) {
        wrong_way(ctx, state);
    }
    if rules.illegal_stopping.enabled && !state.issued(ViolationType::IllegalStopping) {
        illegal_stopping(ctx, state);
    }
}

/// In a lane whose classes exclude the track's (majority) class for
/// `min_dwell_ms` without leaving it.
fn wrong_class(ctx: &Ctx<'_>, state: &mut TrackState) {
    let rule = &ctx.site.rules.wrong_class;
    let p1 = ctx.p1;
    let class = ctx.track.class();
    match ctx.lane_now {
        Some(l)
            if !ctx.site.lanes[l].classes.contains(&class)
                && ctx.track.hits() >= rule.min_observations =>
        {
            let since = match state.lane_rules.class_in {
                Some((ll, m)) if ll == l => m,
                _ => {
                    let m = Mark::from(p1);
                    state.lane_rules.class_in = Some((l, m));
                    m
                }
            };
            if p1.timestamp_us - since.ts >= i64::from(rule.min_dwell_ms) * 1000 {
                let v = ctx.violation(RuleKind::WrongClass, p1, since.frame, Some(l));
                state.report(v);
            }
        }
        _ => state.lane_rules.class_in = None,
    }
}

/// A run of travel against a lane's direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Against {
    lane: usize,
    /// Net px against the lane.
    net: f64,
    /// Where the run began.
    start: Mark,
    /// Steps that went against the lane, and the largest of them (px).
    steps: u32,
    largest: f64,
}

/// Steps against the lane a wrong-way run needs, however far it went.
const WRONG_WAY_MIN_STEPS: u32 = 3;

/// Net travel against the lane's heading: each step's component against
/// it adds, along it subtracts, never below zero; fires at
/// `min_distance_px` once at least [`WRONG_WAY_MIN_STEPS`] steps went
/// against the lane and no single step made more than half of the
/// distance. A vehicle standing in a queue whose box is cut short for one
/// frame (a motorbike passing in front) jumps forward and back by the
/// same amount: one large step, not a vehicle driving the wrong way (a
/// fine of up to 20 M VND). Outside every lane the count is kept; in
/// another lane it starts again.
fn wrong_way(ctx: &Ctx<'_>, state: &mut TrackState) {
    let Some(l) = ctx.lane_now else { return };
    let Some(dir) = ctx.site.lanes[l].direction else {
        return;
    };
    let rule = &ctx.site.rules.wrong_way;
    let along = ctx.p1.anchor.minus(ctx.p0.anchor).dot(dir);
    if !along.is_finite() {
        return;
    }
    let run = match state.lane_rules.against {
        Some(a) if a.lane == l => a,
        _ => Against {
            lane: l,
            net: 0.0,
            start: Mark::from(ctx.p0),
            steps: 0,
            largest: 0.0,
        },
    };
    let next = (run.net - along).max(0.0);
    if next == 0.0 {
        state.lane_rules.against = None;
        return;
    }
    let (steps, largest) = if along < 0.0 {
        (run.steps.saturating_add(1), run.largest.max(-along))
    } else {
        (run.steps, run.largest)
    };
    let run = Against {
        net: next,
        steps,
        largest,
        ..run
    };
    state.lane_rules.against = Some(run);
    if next >= rule.min_distance_px && steps >= WRONG_WAY_MIN_STEPS && largest <= 0.5 * next {
        let v = ctx.violation(RuleKind::WrongWay, ctx.p1, run.start.frame, Some(l));
        state.report(v);
    }
}

/// Stationary inside a no-stopping zone for longer than the zone's
/// `max_dwell_s`, counted from the first frame of the stationary window;
/// moving again for longer than a moment ([`super::motion::STILL_GRACE_US`])
/// or leaving starts the count again. While the vehicle is [`held`] (by its
/// signal, or in a queue) the count starts again at every frame: it counts
/// from when the vehicle could have gone on.
fn illegal_stopping(ctx: &Ctx<'_>, state: &mut TrackState) {
    let Some(z) = ctx.site.zone_at(ctx.p1.anchor) else {
        state.lane_rules.zone = None;
        return;
    };
    let motion = &ctx.site.rules.motion;
    let still = stationary_since(
        ctx.track.trajectory(),
        i64::from(motion.speed_window_ms) * 1000,
        motion.stationary_px_s,
    );
    let kept = match state.lane_rules.zone {
        Some((zz, m)) if zz == z => m,
        _ => None,
    };
    let now = Mark::from(ctx.p1);
    let standing = if still.is_some() && held(ctx) {
        Some(Standing {
            since: now,
            last_still_us: now.ts,
        })
    } else {
        Standing::update(kept, still.map(|p| Mark::from(&p)), now.ts)
    };
    state.lane_rules.zone = Some((z, standing));
    if let Some(s) = standing.filter(|_| still.is_some()).map(|s| s.since)
        && ctx.p1.timestamp_us - s.ts >= ctx.site.zones[z].1
    {
        let v = ctx.violation(RuleKind::IllegalStopping, ctx.p1, s.frame, state.lane);
        state.report(v);
    }
}

/// How far ahead (anchor to anchor, in lengths of the longer of the two
/// boxes along the lane) a standing vehicle makes a queue.
const QUEUE_GAP_BOXES: f64 = 2.5;

/// Whether a vehicle standing now is held there lawfully: in a lane whose
/// signal does not show green (red, yellow, unknown or not known to the
/// source), or with a vehicle standing just ahead of it in the lane's
/// direction (a queue). Outside every lane (a kerb, a bus bay) nothing
/// holds it.
fn held(ctx: &Ctx<'_>) -> bool {
    let Some(lane) = ctx.lane_now.and_then(|l| ctx.site.lanes.get(l)) else {
        return false;
    };
    if let Some(g) = lane.group.as_deref()
        && !ctx
            .signals
            .status(g)
            .is_some_and(|s| s.state == SignalState::Green)
    {
        return true;
    }
    lane.direction.is_some_and(|dir| queued(ctx, dir))
}

/// Whether a confirmed track seen within the last second stands just ahead
/// of this one along `dir` (unit), its box overlapping this one's across
/// the lane.
fn queued(ctx: &Ctx<'_>, dir: Point) -> bool {
    let me = ctx.p1;
    let along_of = |b: BBox| (b.w * dir.x).abs() + (b.h * dir.y).abs();
    let across_of = |b: BBox| (b.w * dir.y).abs() + (b.h * dir.x).abs();
    let motion = &ctx.site.rules.motion;
    ctx.others
        .iter()
        .filter(|t| t.id() != ctx.track.id())
        .any(|t| {
            let Some(q) = t.last() else { return false };
            if (me.timestamp_us - q.timestamp_us).abs() > 1_000_000 {
                return false;
            }
            let d = q.anchor.minus(me.anchor);
            let along = d.dot(dir);
            let reach = QUEUE_GAP_BOXES * along_of(me.bbox).max(along_of(q.bbox));
            along > 0.0
                && along <= reach
                && d.cross(dir).abs() <= (across_of(me.bbox) + across_of(q.bbox)) / 2.0
                && stationary_since(
                    t.trajectory(),
                    i64::from(motion.speed_window_ms) * 1000,
                    motion.stationary_px_s,
                )
                .is_some()
        })
}
