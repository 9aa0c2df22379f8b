//! Rules at the stop line: red-light running, stop-line encroachment, and
//! the manoeuvre through the junction (for wrong lane and right turn on
//! red).
//!
//! A crossing is the anchor passing over a stop line's segment between two
//! observations, in the line's approach direction, by a vehicle whose last
//! lane ends at that line. The signal of the lane's group is judged when
//! the vehicle *first reached* the line: the last frame before any corner
//! of its box was beyond it, from which it stayed beyond (on yellow a
//! vehicle already on the line may go on, and for a camera behind the
//! traffic the anchor — the box's bottom — is the vehicle's rear, which
//! crosses a car's length later than its front; the box's far corners
//! reach the line no later than the front does, so this errs for the
//! driver) — but at most [`MAX_FRONT_LEAD_US`] before the anchor crossed:
//! from behind, a car waiting properly at the line already has its roof
//! beyond it in the picture, and running the red later is still running
//! it. Red there, and red for at least `grace_ms` (yellow, or red
//! begun after the vehicle reached the line, is no violation). Red-light is then confirmed when the anchor
//! is `confirm_past_px` beyond the line in a frame where the light is red
//! and not seen to change — neither green or yellow nor, read from the
//! lamps, beginning to show another colour the filter has yet to confirm
//! or dark (movement while the light is unknown or the head dark confirms
//! nothing: it may have turned green unseen) — and in a right-turn-on-red lane
//! only when the manoeuvre is known and is not a right turn. A
//! controller's feed must vouch for the light up to that confirming
//! movement, and a change it reports late that had begun by then undoes
//! the confirmation. A vehicle that crept over the line on red by less
//! than `confirm_past_px`, stopped, and went on as the light turned is
//! not a red-light run (the stop-line rule judges it); one that stopped
//! further beyond the line was confirmed as a run when it got there.
//!
//! A stop-line case of a vehicle that may still run the red is held
//! (one act, one case). In a right-turn-on-red lane it is held until the
//! manoeuvre is known: none if the vehicle turns right, or if its
//! direction is never known (the track ends, or the case would outlive
//! its stills) — waiting beyond the line to turn right is allowed there.
//!
//! The manoeuvre (for the wrong-lane rule and a right turn on red) is
//! judged from the vehicle's way since it crossed, frame by frame until it
//! can be told, then latched ([`super::motion::judge_manoeuvre`]): a turn
//! once the heading has turned past `straight_max_deg`, straight once it
//! clearly has not turned or has gone far on without. A vehicle following
//! a turning arc has turned little 200 px past the line: read as straight
//! then, a lawful right turn on red would be a run. One lost before its
//! manoeuvre could be told has none: no wrong lane, and in a
//! right-turn-on-red lane no run (it may have been turning right).

use super::motion::{
    Standing, Way, judge_manoeuvre, newest_anchors, recent_heading, stationary_since,
};
use super::{Ctx, Mark, RuleKind, TrackState, Violation};
use crate::signal::SignalStatus;
use crate::site::Manoeuvre;
use crate::track::TrackPoint;
use protocol::{SignalObservation, SignalState, ViolationType};

/// Per-track state of the junction rules.
#[derive(Debug, Default)]
pub(crate) struct JunctionState {
    crossing: Option<Crossed>,
    stopped_since: Option<Standing>,
    /// A stop-line case held while the red-light question of the same
    /// crossing is open (see [`stop_line`]), refreshed each frame it holds.
    held_stop: Option<Violation>,
}

/// A red-light run confirmed on a fed group before the controller vouched
/// for the colour up to the movement that confirmed it (see
/// [`AwaitingRun::t_confirm`]), whose track ended while it waited: the
/// engine keeps it until the feed speaks ([`super::RuleEngine::update`]).
#[derive(Debug, Clone)]
pub(crate) struct AwaitingRun {
    pub violation: Violation,
    pub group: String,
    pub t_cross: i64,
    /// When the movement that confirmed it was seen: the feed must vouch
    /// that the light was still red then.
    pub t_confirm: i64,
    /// The stop-line case held for the same crossing: reported if the run
    /// is given up (the feed never vouched) or the light had changed by
    /// the confirming movement, dropped with it if it had changed by the
    /// crossing.
    pub held_stop: Option<Violation>,
}

impl JunctionState {
    /// The run this track's crossing was waiting on the feed to decide,
    /// when the track ends.
    pub(crate) fn take_awaiting(&mut self) -> Option<AwaitingRun> {
        self.crossing.as_mut().and_then(|c| c.awaiting.take())
    }

    /// The held stop-line case when the track ends: reported unless the
    /// vehicle was found running the red (the caller's check) or may have
    /// been waiting to turn right where a right turn on red is allowed.
    pub(crate) fn take_held(&mut self) -> Option<Violation> {
        let held = self.held_stop.take();
        held.filter(|_| !self.crossing.as_ref().is_some_and(Crossed::may_turn_right))
    }
}

/// How far back the "before" still of a held stop-line case goes: within
/// the evidence ring (5 s before by default), showing the vehicle standing
/// beyond the line.
const HELD_BEFORE_US: i64 = 3_000_000;

/// A held stop-line case that could not be moved to a newer frame for this
/// long is reported (its stills must not leave the ring, 5 s by default).
const HELD_MAX_AGE_US: i64 = 3_000_000;

/// How much earlier than its anchor (bottom-centre) a vehicle's front may
/// be taken to have reached the line: a 12 m bus at 25 km/h takes 1.7 s
/// to pass it.
const MAX_FRONT_LEAD_US: i64 = 2_000_000;

/// The margin a controller's feed must vouch past a crossing by: the most
/// its clock may be off this box's.
pub(crate) const FEED_MARGIN_US: i64 = crate::signal::feed::CLOCK_SLACK_US;

/// How long after its evidence frame (the crossing; for a run confirmed
/// long after it, the movement that confirmed it) a run may wait for the
/// feed once its track ended: its frames must still be in the evidence
/// ring (7 s or 250 frames by default) with the clip's lead-in when it is
/// reported. Not counted from the crossing: a vehicle that crept over on
/// red, waited and then drove through is confirmed only then, and the feed
/// can vouch for that moment only after it.
pub(crate) const AWAIT_MAX_US: i64 = 4_000_000;

#[derive(Debug)]
struct Crossed {
    stop_line: usize,
    lane: usize,
    before: u64,
    at: TrackPoint,
    /// Its way through the junction since the crossing: the manoeuvre is
    /// judged from it.
    way: Way,
    red: bool,
    /// Whether the light was red when it reached the line (grace or not),
    /// no other colour yet seen: only then may standing beyond the line
    /// be a stop-line case (one that crossed on green or yellow and waits
    /// beyond the line to turn is not); `None` if not.
    on_red: Option<i64>,
    /// When it reached the line (the signal is judged then).
    t_cross: i64,
    signal: Option<SignalObservation>,
    /// Farthest beyond the line in a frame where the light was not seen
    /// to change (nor begin to: see [`seen_to_change`]).
    max_past: f64,
    /// Latched once it can be told ([`judge_manoeuvre`]); never guessed.
    manoeuvre: Option<Manoeuvre>,
    /// The lane allows a right turn on red.
    right_on_red: bool,
    /// Reached `confirm_past_px` before the light was seen to change.
    confirmed_red: bool,
    /// When it did.
    t_confirm: i64,
    /// The source vouched for the red at that movement then and there (a
    /// lamp seen red in that very frame): no later message is waited for,
    /// and a dark spell after it does not undo it.
    confirm_vouched: bool,
    red_done: bool,
    /// The run as it will be reported, while the lane group's feed has not
    /// yet vouched for the movement that confirmed it.
    awaiting: Option<AwaitingRun>,
}

impl Crossed {
    /// In a right-turn-on-red lane, the manoeuvre not known yet: it may be
    /// waiting to turn right, which is allowed (benefit of the doubt).
    fn may_turn_right(&self) -> bool {
        self.right_on_red && self.manoeuvre.is_none()
    }
}

/// Whether the light is seen to have changed from red (green or yellow),
/// or to be changing: another colour seen, not yet confirmed by the
/// filter (the first frames of green are still reported as red).
fn seen_to_change(s: &SignalStatus) -> bool {
    matches!(s.state, SignalState::Green | SignalState::Yellow) || s.changing_since.is_some()
}

pub(crate) fn step(ctx: &Ctx<'_>, state: &mut TrackState) {
    let site = ctx.site;
    let rules = &site.rules;
    let traj = ctx.track.trajectory();
    let (p0, p1) = (ctx.p0, ctx.p1);

    if state.junction.crossing.is_none() {
        for (si, sl) in site.stop_lines.iter().enumerate() {
            let Some(c) = sl.segment.crossing(p0.anchor, p1.anchor) else {
                continue;
            };
            if c.to_positive != (sl.sign > 0.0) {
                continue;
            }
            let lane = state
                .lane
                .filter(|&l| site.lanes[l].stop_line == Some(si))
                .or_else(|| {
                    site.lanes
                        .iter()
                        .position(|l| l.stop_line == Some(si) && l.polygon.contains(p0.anchor))
                });
            let Some(lane) = lane else { continue };
            let dt = (p1.timestamp_us - p0.timestamp_us) as f64;
            let t_anchor = p0.timestamp_us + (c.t * dt).round() as i64;
            let t_cross = reached_line(traj, sl)
                .unwrap_or(t_anchor)
                .clamp(t_anchor.saturating_sub(MAX_FRONT_LEAD_US), t_anchor);
            let status = site.lanes[lane]
                .group
                .as_deref()
                .and_then(|g| ctx.signals.status(g));
            let grace_us = i64::from(rules.red_light.grace_ms) * 1000;
            // Red when it reached the line, for at least the grace, and no
            // other colour yet seen then (the filter confirms a change a few
            // frames late: a vehicle going on the first frames of green is
            // not judged by the red still reported).
            let on_red = status
                .filter(|s| {
                    s.state == SignalState::Red
                        && t_cross >= s.since_us
                        && s.changing_since.is_none_or(|c| t_cross < c)
                })
                .map(|s| s.since_us);
            let red = on_red.is_some_and(|since| t_cross >= since.saturating_add(grace_us));
            // Measured (a lane's traffic does not always head where the
            // site drew it); where it cannot be, the lane's heading.
            let entry_deg = Some(recent_heading(traj, rules.motion.heading_px))
                .filter(|h| h.is_finite())
                .or_else(|| {
                    let d = site.lanes[lane].direction?;
                    Some(crate::geometry::heading_deg(Default::default(), d))
                })
                .unwrap_or(sl.approach_deg);
            state.junction.crossing = Some(Crossed {
                stop_line: si,
                lane,
                before: p0.frame,
                at: *p1,
                way: Way {
                    entry_deg,
                    at_line: c.point,
                    origin: newest_anchors(traj),
                    path_px: c.point.dist(p1.anchor),
                },
                red,
                on_red,
                t_cross,
                signal: status.map(|s| s.observation(t_cross)),
                max_past: f64::NEG_INFINITY,
                manoeuvre: None,
                right_on_red: site.lanes[lane].right_turn_on_red,
                confirmed_red: false,
                t_confirm: t_cross,
                confirm_vouched: false,
                red_done: false,
                awaiting: None,
            });
            break;
        }
    } else if let Some(c) = &mut state.junction.crossing {
        c.way.path_px += p0.anchor.dist(p1.anchor);
    }

    let mut found: [Option<Violation>; 2] = [None, None];
    if let Some(c) = &mut state.junction.crossing {
        let lane = &site.lanes[c.lane];
        let now = lane.group.as_deref().and_then(|g| ctx.signals.status(g));
        // Only movement while the light is red and not seen to change
        // counts towards confirming a run: a red run is passing the line
        // *while red*, not going on as the light turns — nor while the
        // light is not known (a silent feed, a head hidden for long) or
        // the head is dark (the lamps then report the light as possibly
        // changing since the dark began: it may have turned green unseen).
        if now
            .as_ref()
            .is_some_and(|s| s.state == SignalState::Red && !seen_to_change(s))
        {
            c.max_past = c.max_past.max(site.stop_lines[c.stop_line].past(p1.anchor));
        }
        let wl = &rules.wrong_lane;
        if c.manoeuvre.is_none() {
            // Asked each frame until it can be told: not from the first
            // metres of a turning arc, nor from one bad box.
            c.manoeuvre = judge_manoeuvre(&c.way, traj, rules.motion.heading_px, wl);
            if wl.enabled
                && let Some(m) = c.manoeuvre
                && !lane.directions.contains(&m)
            {
                found[0] =
                    Some(ctx.violation(RuleKind::WrongManoeuvre, p1, c.at.frame, Some(c.lane)));
            }
        }
        // A run is confirmed once the anchor is `confirm_past_px` beyond the
        // line in frames where the light is red and not seen to change
        // (green or yellow, or the lamps beginning to show it or dark).
        // Latched, so a right-turn-on-red lane's later manoeuvre decision
        // still has it. A red begun after the crossing (seen again after
        // the light was unknown) is another red: the one crossed on ended
        // before it.
        let changed_since = now.and_then(|s| match s.state {
            SignalState::Green | SignalState::Yellow => Some(s.since_us),
            SignalState::Red if s.since_us > c.t_cross => Some(s.since_us),
            _ => None,
        });
        if c.red && !c.red_done && now.is_some_and(|s| s.disowns(c.t_cross)) {
            // The red it crossed on ended in a dark spell before the lamps
            // could vouch for it, and what was seen after settles nothing:
            // maybe a bus read as red. No case.
            c.red = false;
            c.awaiting = None;
        }
        if c.red && !c.red_done && changed_since.is_some_and(|t| t <= c.t_cross) {
            // The change, confirmed only now, had begun by the time the
            // vehicle reached the line: it was not red then after all.
            c.red = false;
            c.awaiting = None;
        }
        if c.red
            && !c.red_done
            && c.confirmed_red
            && changed_since.is_some_and(|t| t <= c.t_confirm)
        {
            // The change, known only now (a feed's late message), had begun
            // by the movement that confirmed the run: it went on when
            // allowed, a stop-line case at most.
            c.confirmed_red = false;
            c.red_done = true;
            c.awaiting = None;
        }
        if c.red && !c.red_done && !c.confirmed_red {
            if changed_since.is_some() {
                // Crept over on red and went on when allowed: a stop-line
                // case at most, not a red-light run.
                c.red_done = true;
            } else if c.max_past >= rules.red_light.confirm_past_px {
                c.confirmed_red = true;
                c.t_confirm = p1.timestamp_us;
                c.confirm_vouched = now.is_none_or(|s| s.vouched_at(c.t_confirm, FEED_MARGIN_US));
            }
        }
        if rules.red_light.enabled && c.red && !c.red_done {
            let confirmed = c.confirmed_red;
            let decision = if lane.right_turn_on_red {
                match c.manoeuvre {
                    Some(Manoeuvre::Right) => Some(false),
                    Some(_) if confirmed => Some(true),
                    _ => None,
                }
            } else if confirmed {
                Some(true)
            } else {
                None
            };
            // A controller's feed vouches for its colour only up to its
            // latest message: a change to green may still be on its way,
            // so a run is decided once the feed has spoken for the moment
            // of the movement that confirmed it (with its clock's allowed
            // lead to spare).
            let vouched =
                c.confirm_vouched || now.is_none_or(|s| s.vouched_at(c.t_confirm, FEED_MARGIN_US));
            match decision {
                Some(false) => c.red_done = true,
                Some(true) => {
                    // Confirmed soon after the crossing: the evidence is
                    // the crossing. Confirmed long after it (crept over,
                    // waited, then went on through the red), the crossing's
                    // frames have left the evidence ring: the case is
                    // anchored where it went on, with the signal as it was
                    // at the crossing — else neither this case nor the
                    // held stop-line case would be reported.
                    let late = ctx.p1.timestamp_us - c.at.timestamp_us > HELD_MAX_AGE_US;
                    let mut v = if late {
                        let before = recent_before(ctx, c.at.frame);
                        ctx.violation(RuleKind::RedLight, ctx.p1, before, Some(c.lane))
                    } else {
                        ctx.violation(RuleKind::RedLight, &c.at, c.before, Some(c.lane))
                    };
                    v.signal = c.signal.clone();
                    if vouched {
                        c.red_done = true;
                        c.awaiting = None;
                        found[1] = Some(v);
                    } else if c.awaiting.is_none() {
                        c.awaiting = lane.group.clone().map(|group| AwaitingRun {
                            violation: v,
                            group,
                            t_cross: c.t_cross,
                            t_confirm: c.t_confirm,
                            held_stop: None,
                        });
                    }
                }
                None => {}
            }
        }
    }
    for v in found.into_iter().flatten() {
        state.report(v);
    }
    if let Some(held) = state.junction.held_stop.take() {
        let crossing = state.junction.crossing.as_ref();
        let turned_right_on_red =
            crossing.is_some_and(|c| c.right_on_red && c.manoeuvre == Some(Manoeuvre::Right));
        let may_turn_right = crossing.is_some_and(Crossed::may_turn_right);
        if state.issued(ViolationType::RedLight) {
            // It went on through the red: one act, the red-light case.
        } else if turned_right_on_red {
            // Waited beyond the line to turn right where a right turn on
            // red is allowed (yielding to pedestrians): not a case.
        } else if !red_question_open(ctx, state) && !may_turn_right {
            state.report(held);
        } else if beyond_the_line_on_red(ctx, state) {
            // Still there, still seen red: the case moves to this frame,
            // so its stills are in the evidence ring whenever it is
            // reported. Not while the light is unknown or the head dark:
            // the case stays at the last frame red was seen in (its stills
            // must show the red, not a dark head after the light turned
            // green).
            let mut v = held_case(ctx, state, held.frames.before);
            if v.signal
                .as_ref()
                .is_none_or(|s| s.state != SignalState::Red)
            {
                v.signal = held.signal.clone();
            }
            state.junction.held_stop = Some(v);
        } else if !(0..=HELD_MAX_AGE_US).contains(&(ctx.p1.timestamp_us - held.at_us)) {
            // Crept on: reported before its stills leave the ring (should
            // it then run the red, that is a second case, for the
            // reviewers); a clock that went back reports it too — unless
            // it may be turning right on red where allowed: no case.
            if !may_turn_right {
                state.report(held);
            }
        } else {
            state.junction.held_stop = Some(held);
        }
    }

    if rules.stop_line.enabled {
        stop_line(ctx, state);
    }
}

/// When the vehicle of `traj` first reached `sl`: the time of the last
/// observation before the run of observations, up to the latest, in which
/// some corner of its box was beyond the line (the first of the run when
/// the track starts beyond it). `None` if the latest box is not beyond.
fn reached_line(
    traj: &std::collections::VecDeque<TrackPoint>,
    sl: &super::compiled::CStopLine,
) -> Option<i64> {
    let beyond = |p: &TrackPoint| {
        let b = p.bbox;
        [
            (b.x, b.y),
            (b.x + b.w, b.y),
            (b.x, b.y + b.h),
            (b.x + b.w, b.y + b.h),
        ]
        .into_iter()
        .any(|(x, y)| sl.past(crate::geometry::Point { x, y }) > 0.0)
    };
    let mut first = None;
    for (i, p) in traj.iter().enumerate().rev() {
        if !beyond(p) {
            return first.map(|_| p.timestamp_us);
        }
        first = Some(i);
    }
    first.and_then(|i| traj.get(i)).map(|p| p.timestamp_us)
}

/// A held stop-line case at this frame: "before" the frame `HELD_BEFORE_US`
/// earlier, but not before `since` (when it stopped).
fn held_case(ctx: &Ctx<'_>, state: &TrackState, since: u64) -> Violation {
    let before = recent_before(ctx, since);
    ctx.violation(RuleKind::StopLine, ctx.p1, before, held_lane(ctx, state))
}

/// The "before" frame of a case anchored at the current frame: the frame
/// `HELD_BEFORE_US` earlier (still in the evidence ring), but not before
/// `since`.
fn recent_before(ctx: &Ctx<'_>, since: u64) -> u64 {
    let p1 = ctx.p1;
    ctx.track
        .trajectory()
        .iter()
        .find(|q| q.timestamp_us >= p1.timestamp_us - HELD_BEFORE_US)
        .map_or(since, |q| q.frame.max(since))
}

/// The lane a held stop-line case is judged in: the lane the vehicle
/// crossed its stop line from, while that crossing's question is open.
fn held_lane(ctx: &Ctx<'_>, state: &TrackState) -> Option<usize> {
    state
        .junction
        .crossing
        .as_ref()
        .map(|c| c.lane)
        .or(state.lane)
        .or(ctx.lane_now)
}

/// Whether the vehicle is beyond its lane's stop line (by more than
/// `min_past_px`, at most `max_past_px`) while the lane's signal is red and
/// not seen to change (nor begun to, nor dark: its picture would not show
/// the red; an unknown state is not red).
fn beyond_the_line_on_red(ctx: &Ctx<'_>, state: &TrackState) -> bool {
    let site = ctx.site;
    let rule = &site.rules.stop_line;
    let lane = held_lane(ctx, state).and_then(|l| site.lanes.get(l));
    let red = lane
        .and_then(|l| l.group.as_deref())
        .and_then(|g| ctx.signals.status(g))
        .is_some_and(|s| s.state == SignalState::Red && !seen_to_change(&s));
    lane.and_then(|l| l.stop_line)
        .and_then(|i| site.stop_lines.get(i))
        .is_some_and(|sl| {
            let past = sl.past(ctx.p1.anchor);
            red && past > rule.min_past_px && past <= rule.max_past_px
        })
}

/// Whether the track crossed its stop line on red and whether that was a
/// red-light run is not decided yet (the vehicle may still go on through
/// the red, or the light may change first).
fn red_question_open(ctx: &Ctx<'_>, state: &TrackState) -> bool {
    ctx.site.rules.red_light.enabled
        && state
            .junction
            .crossing
            .as_ref()
            .is_some_and(|c| c.red && !c.red_done)
}

/// Stationary beyond the stop line, within `max_past_px` of it, while the
/// lane's signal is red, for `min_stopped_ms` (counted from when both were
/// true), by a vehicle seen crossing the line on that red; not judged in a frame where the lamps begin to show another
/// colour, nor before the signal's source vouches for the red itself (for
/// the moment it began): a red read off the lamps is not vouched for until
/// no yellow can follow it — it may still turn out to have been a red bus
/// in front of the head during yellow, undone when the yellow it hid is
/// seen again — and a `min_stopped_ms` shorter than the rest of the
/// longest yellow would otherwise fine a car waiting beyond the line on
/// it. (A controller's feed has vouched for a red it reported; standing
/// beyond the line on it needs no vouching of the later frames.)
fn stop_line(ctx: &Ctx<'_>, state: &mut TrackState) {
    if state.issued(ViolationType::RedLight) || state.issued(ViolationType::StopLine) {
        return;
    }
    let site = ctx.site;
    let rule = &site.rules.stop_line;
    let motion = &site.rules.motion;
    let p1 = ctx.p1;
    let lane_idx = state.lane.or(ctx.lane_now);
    let lane = lane_idx.and_then(|l| site.lanes.get(l));
    let sl = lane
        .and_then(|l| l.stop_line)
        .and_then(|s| site.stop_lines.get(s));
    let red = lane
        .and_then(|l| l.group.as_deref())
        .and_then(|g| ctx.signals.status(g))
        .filter(|s| s.state == SignalState::Red);
    let (Some(sl), Some(red)) = (sl, red) else {
        state.junction.stopped_since = None;
        return;
    };
    // Only a vehicle seen crossing this line on this red: one that crossed
    // on green or yellow (waiting beyond the line to turn left when the
    // light changed) entered lawfully, and one first seen beyond the line
    // may have done so too (in doubt, no case).
    let si = lane.and_then(|l| l.stop_line);
    let crossed_on_this_red = state.junction.crossing.as_ref().is_some_and(|c| {
        Some(c.stop_line) == si && c.on_red.is_some() && red.since_us <= c.t_cross
    });
    if !crossed_on_this_red {
        state.junction.stopped_since = None;
        return;
    }
    let past = sl.past(p1.anchor);
    let still = stationary_since(
        ctx.track.trajectory(),
        i64::from(motion.speed_window_ms) * 1000,
        motion.stationary_px_s,
    );
    let beyond = past > rule.min_past_px && past <= rule.max_past_px;
    // Standing beyond the line since: kept through a moment of apparent
    // motion (box jitter, traffic passing in front), not through leaving.
    state.junction.stopped_since = if beyond {
        Standing::update(
            state.junction.stopped_since,
            still.map(|p| Mark::from(&p)),
            p1.timestamp_us,
        )
    } else {
        None
    };
    // Not while the lamps begin to show another colour: the case's
    // picture would show it.
    if let Some(standing) = still.and(state.junction.stopped_since)
        && red.changing_since.is_none()
        && red.vouched_at(red.since_us, 0)
    {
        let since = standing.since;
        let from = since.ts.max(red.since_us);
        if p1.timestamp_us - from >= i64::from(rule.min_stopped_ms) * 1000 {
            let may_turn_right = state
                .junction
                .crossing
                .as_ref()
                .is_some_and(Crossed::may_turn_right);
            if red_question_open(ctx, state) || may_turn_right {
                // Crossed on red and standing beyond the line: if it
                // now goes on through the red, that is one act, the
                // red-light case; if the light changes first, this is
                // the stop-line case. Held until then, anchored to
                // the latest frame it holds, so its stills are still
                // in the evidence ring when it is reported. In a
                // right-turn-on-red lane, held until the manoeuvre is
                // known: none if it turns right or is never known.
                state.junction.held_stop = Some(held_case(ctx, state, since.frame));
            } else {
                let v = ctx.violation(RuleKind::StopLine, p1, since.frame, lane_idx);
                state.report(v);
            }
        }
    }
}
