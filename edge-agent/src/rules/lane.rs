//! Rules about where a vehicle is and which way it goes, away from the
//! stop line: wrong vehicle class in a lane, wrong way, and illegal
//! stopping in a no-stopping zone.

use super::motion::stationary_since;
use super::{Ctx, Mark, RuleKind, TrackState};
use protocol::ViolationType;

/// Per-track state of these rules.
#[derive(Debug, Default)]
pub(crate) struct LaneState {
    /// Lane of a class not allowed there, since when.
    class_in: Option<(usize, Mark)>,
    /// Lane, net px travelled against it, where that run began.
    against: Option<(usize, f64, Mark)>,
    /// Zone the anchor is in, and since when it has been stationary there.
    zone: Option<(usize, Option<Mark>)>,
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

/// Net travel against the lane's heading: each step's component against
/// it adds, along it subtracts, never below zero; fires at
/// `min_distance_px`. Outside every lane the count is kept; in another
/// lane it starts again.
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
    let (acc, start) = match state.lane_rules.against {
        Some((ll, a, s)) if ll == l => (a, s),
        _ => (0.0, Mark::from(ctx.p0)),
    };
    let next = (acc - along).max(0.0);
    if next == 0.0 {
        state.lane_rules.against = None;
        return;
    }
    let start = if acc == 0.0 {
        Mark::from(ctx.p0)
    } else {
        start
    };
    state.lane_rules.against = Some((l, next, start));
    if next >= rule.min_distance_px {
        let v = ctx.violation(RuleKind::WrongWay, ctx.p1, start.frame, Some(l));
        state.report(v);
    }
}

/// Stationary inside a no-stopping zone for longer than the zone's
/// `max_dwell_s`, counted from the first frame of the stationary window;
/// moving again (or leaving) starts the count again.
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
    let since = still.map(|start| kept.unwrap_or(Mark::from(&start)));
    state.lane_rules.zone = Some((z, since));
    if let Some(s) = since
        && ctx.p1.timestamp_us - s.ts >= ctx.site.zones[z].1
    {
        let v = ctx.violation(RuleKind::IllegalStopping, ctx.p1, s.frame, state.lane);
        state.report(v);
    }
}
