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
//!
//! Outside every lane (a kerb, a bus bay) only a red shown to the lane the
//! vehicle was last in holds it — a motorbike pulled onto the kerb beside
//! its lane to wait out the red — and no queue does: held there by a
//! yellow or unknown light too, every car parked at the kerb would be
//! spared whenever the light is not green, and under a light flashing
//! yellow all night none would ever be fined.
//!
//! Time held pauses the dwell count; it does not restart it: a car parked
//! through several light cycles is fined once the time it could have gone
//! on adds up to the zone's `max_dwell_s`, however short each green.
//!
//! A vehicle standing nose to tail behind another standing vehicle (the
//! one ahead no more than [`QUEUE_GAP_BOXES`] box lengths ahead, its box
//! overlapping this one's across the lane, stationary too) is in a queue,
//! and held whatever its lane's light shows: in gridlock a green does not
//! let it go on, and a car standing in a jam is not stopping by choice.
//! Only the front vehicle of a row standing in a zone is fined, where the
//! lane's direction tells which one is in front (its `heading_deg`, or
//! the approach of its stop line). In a lane with neither, which of two
//! standing vehicles is ahead cannot be told: there any stationary vehicle
//! that near holds the other (a row of vehicles standing there is taken
//! for a jam; only a lone one is fined) — give such a lane a `heading_deg`
//! to have the front of a row fined.

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
    /// Zone the anchor is in, since when it has been stationary there, and
    /// how much of that time it was [`held`].
    zone: Option<ZoneStay>,
}

/// A track's stay in a no-stopping zone.
#[derive(Debug, Clone, Copy)]
struct ZoneStay {
    zone: usize,
    standing: Option<Standing>,
    /// Time held (by its signal, or in a queue) since `standing.since`, µs.
    held_us: i64,
    /// When the stay was last judged (µs): a step across a gap in the
    /// track is not judged, so the time since is what the next judged step
    /// accounts for.
    judged_us: i64,
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

/// Share of a track's observations that must be of classes a lane
/// excludes before it is taken to be of such a class: the detector's class
/// votes are not to be trusted on a simple majority (YOLOX-Nano calls about
/// half of small motorbikes "car"; see the README), and a motorbike in its
/// own lane must not be fined as a car because 6 of its 10 boxes were
/// called one.
const WRONG_CLASS_MIN_SHARE: f64 = 0.8;

/// Whether the track's class is decisively one `classes` excludes: its
/// majority class is, and of its observations (its recent trajectory) at
/// least `min_observations` and [`WRONG_CLASS_MIN_SHARE`] of them were of
/// excluded classes.
fn decisively_excluded(
    track: &crate::track::Track,
    classes: &[protocol::VehicleClass],
    min_observations: u32,
) -> bool {
    if classes.contains(&track.class()) || track.hits() < min_observations {
        return false;
    }
    let traj = track.trajectory();
    let excluded = traj.iter().filter(|p| !classes.contains(&p.class)).count();
    excluded >= min_observations as usize
        && excluded as f64 >= WRONG_CLASS_MIN_SHARE * traj.len() as f64
}

/// In a lane whose classes decisively exclude the track's
/// ([`decisively_excluded`]) for `min_dwell_ms` without leaving it.
fn wrong_class(ctx: &Ctx<'_>, state: &mut TrackState) {
    let rule = &ctx.site.rules.wrong_class;
    let p1 = ctx.p1;
    match ctx.lane_now {
        Some(l)
            if decisively_excluded(
                ctx.track,
                &ctx.site.lanes[l].classes,
                rule.min_observations,
            ) =>
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

/// Net travel against the lane's heading: each step's move against it
/// ([`shift_along`]) adds, along it subtracts, never below zero; fires at
/// `min_distance_px` once at least [`WRONG_WAY_MIN_STEPS`] steps went
/// against the lane and no single step made more than half of the
/// distance. A vehicle standing in a queue whose box is cut short for one
/// frame (a motorbike passing in front) jumps forward and back by the
/// same amount: one large step, not a vehicle driving the wrong way (a
/// fine of up to 20 M VND); one whose box grows or shrinks at one end over
/// several frames does not move at all by [`shift_along`]. Outside every
/// lane the count is kept; in another lane it starts again.
fn wrong_way(ctx: &Ctx<'_>, state: &mut TrackState) {
    let Some(l) = ctx.lane_now else { return };
    let Some(dir) = ctx.site.lanes[l].direction else {
        return;
    };
    let rule = &ctx.site.rules.wrong_way;
    let along = shift_along(ctx.p0.bbox, ctx.p1.bbox, dir);
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

/// How far a box moved along `dir` (unit) from `b0` to `b1`: the move of
/// whichever of its two ends along `dir` moved less, where both moved the
/// same way, else 0. A vehicle that moves carries both ends of its box
/// with it (the nearer one faster as it nears the camera); a box that only
/// grows or shrinks at one end — something passing in front merges into it
/// or hides part of it — moved one end, and the vehicle did not move. Its
/// anchor (the bottom centre) alone would count that as travel: a standing
/// car whose box grew 100 px downwards in four frames "drove" 100 px the
/// wrong way.
fn shift_along(b0: BBox, b1: BBox, dir: Point) -> f64 {
    let ends = |b: BBox| {
        let along = [
            Point::new(b.x, b.y),
            Point::new(b.x + b.w, b.y),
            Point::new(b.x, b.y + b.h),
            Point::new(b.x + b.w, b.y + b.h),
        ]
        .map(|c| c.dot(dir));
        along
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &a| {
                (lo.min(a), hi.max(a))
            })
    };
    let ((lo0, hi0), (lo1, hi1)) = (ends(b0), ends(b1));
    let (a, b) = (lo1 - lo0, hi1 - hi0);
    if a * b <= 0.0 {
        // One end still, or the ends moved apart or together.
        return if a.is_finite() && b.is_finite() {
            0.0
        } else {
            f64::NAN
        };
    }
    a.signum() * a.abs().min(b.abs())
}

/// Stationary inside a no-stopping zone for longer than the zone's
/// `max_dwell_s`, counted from the first frame of the stationary window;
/// moving again for longer than a moment ([`super::motion::STILL_GRACE_US`])
/// or leaving starts the count again. Time the vehicle is [`held`] (by its
/// signal, or in a queue) does not count: the dwell is the time standing
/// less the time held since it stopped, so the count pauses while it is
/// held and goes on when it could have gone on.
fn illegal_stopping(ctx: &Ctx<'_>, state: &mut TrackState) {
    let Some(z) = ctx.site.zone_at(ctx.p1.anchor) else {
        state.lane_rules.zone = None;
        return;
    };
    let max_dwell_us = ctx.site.zones[z].1;
    let motion = &ctx.site.rules.motion;
    let still = stationary_since(
        ctx.track.trajectory(),
        i64::from(motion.speed_window_ms) * 1000,
        motion.stationary_px_s,
    );
    let kept = match state.lane_rules.zone {
        Some(s) if s.zone == z => s,
        _ => ZoneStay {
            zone: z,
            standing: None,
            held_us: 0,
            judged_us: ctx.p0.timestamp_us,
        },
    };
    let now = Mark::from(ctx.p1);
    let standing = Standing::update(kept.standing, still.map(|p| Mark::from(&p)), now.ts);
    let mut stay = ZoneStay {
        zone: z,
        standing,
        held_us: 0,
        judged_us: now.ts,
    };
    if let Some(s) = standing {
        if kept.standing.is_some() {
            stay.held_us = kept.held_us;
        }
        // The time since the last judged step (from when it stopped, at the
        // earliest) is held time if the vehicle is held now: a vehicle
        // hidden for a moment while it waits at a red light (steps across
        // such a gap are not judged) was held while hidden too, in the
        // driver's favour.
        let step = now.ts - kept.judged_us.min(ctx.p0.timestamp_us).max(s.since.ts);
        if step > 0 && held(ctx, state.lane) {
            stay.held_us = stay.held_us.saturating_add(step);
        }
    }
    state.lane_rules.zone = Some(stay);
    if let Some(s) = standing.filter(|_| still.is_some()).map(|s| s.since)
        && now.ts - s.ts - stay.held_us >= max_dwell_us
    {
        let v = ctx.violation(RuleKind::IllegalStopping, ctx.p1, s.frame, state.lane);
        state.report(v);
    }
}

/// How far ahead (anchor to anchor, in lengths of the longer of the two
/// boxes along the lane) a standing vehicle makes a queue.
const QUEUE_GAP_BOXES: f64 = 2.5;

/// Whether a vehicle standing now in a zone is held there lawfully: in a
/// lane, while its signal does not show green (red, yellow, unknown or not
/// known to the source), or whatever it shows while a vehicle stands just
/// ahead of it (a queue, [`queued`]: in gridlock a green moves no one).
/// Outside every lane (a kerb, a bus bay) only a red shown to the lane it
/// was last in (`last_lane`) holds it: a motorbike waiting at the kerb
/// beside its lane waits for that lane's light. Nothing else does there —
/// not yellow, an unknown state or no signal, nor a queue: a car that left
/// its lane for the kerb has stopped by choice unless a red stops its
/// lane, and a light flashing yellow all night (or a signal gone unknown)
/// would otherwise spare every kerb parker for ever. One never seen in a
/// lane is held by nothing.
fn held(ctx: &Ctx<'_>, last_lane: Option<usize>) -> bool {
    let Some(lane) = ctx.lane_now.and_then(|l| ctx.site.lanes.get(l)) else {
        return last_lane
            .and_then(|l| ctx.site.lanes.get(l))
            .and_then(|lane| lane.group.as_deref())
            .and_then(|g| ctx.signals.status(g))
            .is_some_and(|s| s.state == SignalState::Red);
    };
    if queued(ctx, lane.direction) {
        return true;
    }
    match lane.group.as_deref().map(|g| ctx.signals.status(g)) {
        None => false,
        Some(Some(s)) => s.state != SignalState::Green,
        Some(None) => true,
    }
}

/// Whether a confirmed, stationary track seen within the last second
/// stands just ahead of this one: along `dir` (unit, the lane's
/// direction), no more than [`QUEUE_GAP_BOXES`] box lengths ahead, its box
/// overlapping this one's across the lane. With no direction (a lane with
/// neither `heading_deg` nor a stop line), which one is ahead cannot be
/// told: one that near in any direction (anchor to anchor, in the longer
/// side of the larger box) counts.
fn queued(ctx: &Ctx<'_>, dir: Option<Point>) -> bool {
    let me = ctx.p1;
    let along_of = |b: BBox, dir: Point| (b.w * dir.x).abs() + (b.h * dir.y).abs();
    let across_of = |b: BBox, dir: Point| (b.w * dir.y).abs() + (b.h * dir.x).abs();
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
            let near = match dir {
                Some(dir) => {
                    let along = d.dot(dir);
                    let reach = QUEUE_GAP_BOXES * along_of(me.bbox, dir).max(along_of(q.bbox, dir));
                    along > 0.0
                        && along <= reach
                        && d.cross(dir).abs()
                            <= (across_of(me.bbox, dir) + across_of(q.bbox, dir)) / 2.0
                }
                None => {
                    let size = me.bbox.w.max(me.bbox.h).max(q.bbox.w).max(q.bbox.h);
                    d.norm() <= QUEUE_GAP_BOXES * size
                }
            };
            near && stationary_since(
                t.trajectory(),
                i64::from(motion.speed_window_ms) * 1000,
                motion.stationary_px_s,
            )
            .is_some()
        })
}
