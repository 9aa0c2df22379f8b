//! The violation rules: given each frame's confirmed tracks and the signal
//! states, decide which vehicle broke which rule, once.
//!
//! [`RuleEngine`] compiles a validated [`SiteConfig`] and keeps per-track
//! state (which lane, whether and how it crossed the stop line, timers,
//! accumulators). Each frame it looks only at the newest point of each
//! track, so the cost is a few point-in-polygon and line tests per track
//! (a vehicle standing in a no-stopping zone also looks at the vehicles
//! just ahead of it).
//! The rules, each switched on per site in `[rules]`:
//!
//! - red light and stop-line encroachment, and the manoeuvre for wrong
//!   lane, all hinge on the stop-line crossing ([`junction`]);
//! - wrong vehicle class, wrong way and illegal stopping ([`lane`]);
//! - speeding from two lines or the homography ([`speed`]).
//!
//! **One violation per vehicle per violation type**: a type once found for
//! a track is never reported again while the track lives (wrong class and
//! wrong manoeuvre share [`ViolationType::WrongLane`]; [`RuleKind`] says
//! which), nor — for illegal stopping, wrong lane and wrong way, states
//! that go on — for a new track that is the same vehicle found again after
//! it was lost ([`repeat`]). A stop-line encroachment is not reported for
//! a vehicle already reported for the red light. A violation waits
//! `rules.after_frames` frames after its point of interest before it is
//! reported, so the evidence has a real "after" frame; a track that ends
//! flushes what it has waiting.

mod compiled;
mod junction;
mod lane;
mod motion;
mod repeat;
mod speed;

pub use compiled::RuleError;
pub use repeat::ParkedSpot;

use crate::geometry::BBox;
use crate::signal::{SignalSource, SignalState};
use crate::site::SiteConfig;
use crate::track::{FrameInfo, Track, TrackPoint};
use compiled::Compiled;
use protocol::{SignalObservation, VehicleClass, ViolationType};
use std::collections::HashMap;
use time::OffsetDateTime;

/// Which rule found a violation (finer than [`ViolationType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Crossed the stop line on red.
    RedLight,
    /// Stopped beyond the stop line during red.
    StopLine,
    /// Manoeuvre not allowed from the lane.
    WrongManoeuvre,
    /// Class not allowed in the lane.
    WrongClass,
    /// Against the lane's direction.
    WrongWay,
    /// Over the limit.
    Speeding,
    /// Dwelt in a no-stopping zone.
    IllegalStopping,
}

impl RuleKind {
    /// The wire type it is reported as.
    pub fn violation_type(self) -> ViolationType {
        match self {
            RuleKind::RedLight => ViolationType::RedLight,
            RuleKind::StopLine => ViolationType::StopLine,
            RuleKind::WrongManoeuvre | RuleKind::WrongClass => ViolationType::WrongLane,
            RuleKind::WrongWay => ViolationType::WrongWay,
            RuleKind::Speeding => ViolationType::Speeding,
            RuleKind::IllegalStopping => ViolationType::IllegalStopping,
        }
    }
}

/// A measured speed with its limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedMeasurement {
    /// Measured, km/h.
    pub measured_kmh: f64,
    /// Limit in force for the lane and class, km/h.
    pub limit_kmh: u16,
    /// One-sigma uncertainty of the measurement, km/h (from timing and
    /// pixel error, and the calibration distance error).
    pub uncertainty_kmh: f64,
}

/// Frames the evidence should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceFrames {
    /// Before the point of interest (e.g. last frame before the line).
    pub before: u64,
    /// The point of interest.
    pub at: u64,
    /// After it (at least `after_frames` later unless the track ended).
    pub after: u64,
}

/// A violation found by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The track.
    pub track_id: u64,
    /// The wire type.
    pub rule: ViolationType,
    /// The rule that found it.
    pub kind: RuleKind,
    /// Frame of the point of interest (`frames.at`).
    pub frame: u64,
    /// Its time, µs since the epoch.
    pub at_us: i64,
    /// The lane the vehicle was in, by id.
    pub lane: Option<String>,
    /// The lane group's signal at that moment (when the lane has one).
    pub signal: Option<SignalObservation>,
    /// Speed, for speeding.
    pub speed: Option<SpeedMeasurement>,
    /// Evidence frames.
    pub frames: EvidenceFrames,
    /// Vehicle class (majority over the track).
    pub class: VehicleClass,
    /// People seen riding it so far ([`crate::track::Track::riders`]).
    pub riders: Option<u8>,
    /// The vehicle's box at the point of interest.
    pub bbox: BBox,
}

impl Violation {
    /// `at_us` as a UTC date-time.
    pub fn at(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_us) * 1000).ok()
    }
}

fn bit(t: ViolationType) -> u8 {
    match t {
        ViolationType::RedLight => 1,
        ViolationType::StopLine => 2,
        ViolationType::WrongLane => 4,
        ViolationType::WrongWay => 8,
        ViolationType::Speeding => 16,
        ViolationType::IllegalStopping => 32,
        ViolationType::NoHelmet => 64,
    }
}

/// A frame number and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub frame: u64,
    pub ts: i64,
}

impl From<&TrackPoint> for Mark {
    fn from(p: &TrackPoint) -> Self {
        Self {
            frame: p.frame,
            ts: p.timestamp_us,
        }
    }
}

/// Everything the engine remembers about one track.
#[derive(Debug, Default)]
pub(crate) struct TrackState {
    last_frame: Option<u64>,
    /// Last lane the anchor was in.
    pub lane: Option<usize>,
    issued: u8,
    pending: Vec<Violation>,
    pub junction: junction::JunctionState,
    pub lane_rules: lane::LaneState,
    pub speed: speed::SpeedState,
}

impl TrackState {
    pub fn issued(&self, t: ViolationType) -> bool {
        self.issued & bit(t) != 0
    }

    /// Records a finding unless its type was already found for this track.
    pub fn report(&mut self, v: Violation) {
        if !self.issued(v.rule) {
            self.issued |= bit(v.rule);
            self.pending.push(v);
        }
    }
}

/// What a rule sees of the current frame.
pub(crate) struct Ctx<'a> {
    pub site: &'a Compiled,
    pub track: &'a Track,
    pub p0: &'a TrackPoint,
    pub p1: &'a TrackPoint,
    pub lane_now: Option<usize>,
    pub signals: &'a dyn SignalSource,
    /// Every confirmed track alive this frame (this one among them, unless
    /// it ended).
    pub others: &'a [&'a Track],
}

impl Ctx<'_> {
    /// A violation at point `at` (box, frame, time), signal of `lane`'s
    /// group at `at_us`.
    pub fn violation(
        &self,
        kind: RuleKind,
        at: &TrackPoint,
        before: u64,
        lane: Option<usize>,
    ) -> Violation {
        let lane_cfg = lane.and_then(|l| self.site.lanes.get(l));
        let signal = lane_cfg
            .and_then(|l| l.group.as_deref())
            .and_then(|g| self.signals.status(g))
            .map(|s| s.observation(at.timestamp_us));
        Violation {
            track_id: self.track.id(),
            rule: kind.violation_type(),
            kind,
            frame: at.frame,
            at_us: at.timestamp_us,
            lane: lane_cfg.map(|l| l.id.clone()),
            signal,
            speed: None,
            frames: EvidenceFrames {
                before: before.min(at.frame),
                at: at.frame,
                after: at.frame,
            },
            class: self.track.class(),
            riders: self.track.riders(),
            bbox: at.bbox,
        }
    }
}

/// Every rule of one camera, with per-track state.
pub struct RuleEngine {
    site: Compiled,
    states: HashMap<u64, TrackState>,
    out: Vec<Violation>,
    frames_seen: u64,
    /// Where illegally stopped vehicles were last seen (`repeat.rs`).
    parked: repeat::ParkedSpots,
    /// Other acts reported lately, and where their vehicles were last seen
    /// (`repeat.rs`).
    acts: repeat::RecentActs,
    /// Red-light runs whose track ended before the lane group's feed
    /// vouched for them, with the track's last frame.
    awaiting: Vec<(junction::AwaitingRun, u64)>,
}

/// Per-track state untouched for this many frames is dropped (a caller
/// that never passes ended tracks still has bounded memory).
const STALE_FRAMES: u64 = 18_000;

impl RuleEngine {
    /// Compiles `site` (validating it again).
    pub fn new(site: &SiteConfig) -> Result<Self, RuleError> {
        Ok(Self {
            site: Compiled::new(site)?,
            states: HashMap::new(),
            out: Vec::new(),
            frames_seen: 0,
            parked: repeat::ParkedSpots::default(),
            acts: repeat::RecentActs::default(),
            awaiting: Vec::new(),
        })
    }

    /// Stops judging speed on this camera (its frames' times cannot time a
    /// vehicle); `true` if it was on.
    pub fn stop_speeding(&mut self) -> bool {
        std::mem::replace(&mut self.site.rules.speeding.enabled, false)
    }

    /// Hands over what must outlive this engine to `next`, the engine of
    /// the same camera after its stream restarted: where illegally stopped
    /// vehicles were reported standing (a parked car is still parked after
    /// a reconnect, and is found again as a new track).
    pub fn hand_over_to(&mut self, next: &mut RuleEngine) {
        next.parked = std::mem::take(&mut self.parked);
        next.parked.detach_tracks();
    }

    /// Where illegally stopped vehicles were reported standing, as of the
    /// last update: what a restarted agent must not fine again
    /// (`crate::parked_store` keeps it on disk).
    pub fn parked_spots(&self) -> Vec<ParkedSpot> {
        self.parked.snapshot()
    }

    /// Spots made, dropped or restored so far: save when it moved.
    pub fn parked_generation(&self) -> u64 {
        self.parked.generation()
    }

    /// Whether a fined vehicle still stands on its spot.
    pub fn parked_live(&self) -> bool {
        self.parked.has_live()
    }

    /// Spots kept from the agent's previous run (invalid ones skipped).
    pub fn restore_parked(&mut self, spots: &[ParkedSpot]) {
        self.parked.restore(spots);
    }

    /// Tracks the engine holds state for.
    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    /// Feeds one frame: the confirmed tracks alive now (as
    /// [`crate::track::Tracker::active`] gives them), the tracks that ended
    /// this frame, and the signals. Returns the violations reported this
    /// frame (valid until the next call).
    pub fn update<'t>(
        &mut self,
        frame: FrameInfo,
        active: impl IntoIterator<Item = &'t Track>,
        ended: &[Track],
        signals: &dyn SignalSource,
    ) -> &[Violation] {
        self.out.clear();
        self.frames_seen += 1;
        let after_frames = u64::from(self.site.rules.after_frames);
        let active: Vec<&Track> = active.into_iter().filter(|t| t.is_confirmed()).collect();
        for &track in &active {
            let state = self.states.entry(track.id()).or_default();
            step(&self.site, state, track, &active, signals);
            self.acts.touch(track);
            if state.issued(ViolationType::IllegalStopping)
                && let Some(p) = track.last()
            {
                self.parked.touch(track.id(), p.bbox, p.timestamp_us);
            }
            if let Some(last) = track.last() {
                let mut i = 0;
                while i < state.pending.len() {
                    if last.frame >= state.pending[i].frames.at.saturating_add(after_frames) {
                        let mut v = state.pending.remove(i);
                        v.frames.after = last.frame;
                        if !repeat::is_repeat(&mut self.parked, &mut self.acts, &v, track) {
                            self.out.push(v);
                        }
                    } else {
                        i += 1;
                    }
                }
            }
        }
        for track in ended {
            let mut state = self.states.remove(&track.id()).unwrap_or_default();
            step(&self.site, &mut state, track, &active, signals);
            let last = track.last().map_or(0, |p| p.frame);
            let awaiting = state.junction.take_awaiting();
            let held = state
                .junction
                .take_held()
                .filter(|_| !state.issued(ViolationType::RedLight));
            match awaiting {
                // One act: the run if the feed vouches, else the held
                // stop-line case.
                Some(mut a) => {
                    a.held_stop = held;
                    self.awaiting.push((a, last));
                }
                None => {
                    if let Some(v) = held {
                        state.report(v);
                    }
                }
            }
            for mut v in state.pending.drain(..) {
                v.frames.after = last.max(v.frames.at);
                if !repeat::is_repeat(&mut self.parked, &mut self.acts, &v, track) {
                    self.out.push(v);
                }
            }
            self.acts.end(track);
            if state.issued(ViolationType::IllegalStopping)
                && let Some(p) = track.last()
            {
                self.parked.remember(track.id(), p.bbox, p.timestamp_us);
            }
        }
        self.settle_awaiting(frame.timestamp_us, signals);
        if self.frames_seen.is_multiple_of(256) {
            let now = frame.number;
            self.states.retain(|_, s| {
                s.last_frame
                    .is_some_and(|f| f.saturating_add(STALE_FRAMES) >= now)
            });
        }
        &self.out
    }
}

impl RuleEngine {
    /// Gives up the runs still waiting for their feed when the stream ends
    /// (a restarted stream numbers its frames anew: they cannot be carried
    /// over); each is logged. Returns their held stop-line cases, to be
    /// reported.
    pub fn abandon_awaiting(&mut self) -> Vec<Violation> {
        let mut held = Vec::new();
        for (a, last) in std::mem::take(&mut self.awaiting) {
            give_up(a, last, &mut held, "the stream ended");
        }
        held
    }

    /// Decides the runs waiting for their feed: dropped when the light had
    /// changed by the crossing, dropped for the held stop-line case when
    /// it had changed by the movement that confirmed the run, given up
    /// (logged, the held stop-line case reported) when the wait would
    /// outlast the evidence ring ([`junction::AWAIT_MAX_US`] after the
    /// run's evidence frame), reported once the feed vouched for that
    /// movement.
    fn settle_awaiting(&mut self, now_us: i64, signals: &dyn SignalSource) {
        let mut keep = Vec::with_capacity(self.awaiting.len());
        for (a, last) in std::mem::take(&mut self.awaiting) {
            let status = signals.status(&a.group);
            let changed = status
                .filter(|s| matches!(s.state, SignalState::Green | SignalState::Yellow))
                .map(|s| s.since_us);
            if changed.is_some_and(|t| t <= a.t_cross)
                || status.is_some_and(|s| s.disowns(a.t_cross))
            {
                continue;
            }
            if changed.is_some_and(|t| t <= a.t_confirm) {
                // Went on only as the light changed: no run.
                self.out.extend(held_of(a, last));
                continue;
            }
            // Counted from the run's evidence frame: the crossing, or for a
            // run confirmed long after it (crept over, waited, went on) the
            // movement that confirmed it, which the feed must vouch for and
            // can only have done after it.
            if now_us.saturating_sub(a.violation.at_us) > junction::AWAIT_MAX_US {
                give_up(
                    a,
                    last,
                    &mut self.out,
                    "the feed never vouched for it in time",
                );
                continue;
            }
            if status.is_none_or(|s| s.vouched_at(a.t_confirm, junction::FEED_MARGIN_US)) {
                let mut v = a.violation;
                v.frames.after = last.max(v.frames.at);
                self.out.push(v);
                continue;
            }
            keep.push((a, last));
        }
        self.awaiting = keep;
    }
}

/// A run that waited for its feed in vain: logged, and the stop-line case
/// held for the same crossing (which needs no feed) reported instead.
fn give_up(a: junction::AwaitingRun, last: u64, out: &mut Vec<Violation>, why: &str) {
    tracing::warn!(
        track = a.violation.track_id,
        group = %a.group,
        "red-light run not reported ({why}): the signal's source (the controller's feed, or the lamps while a yellow could still follow) did not vouch for the moment of the run"
    );
    out.extend(held_of(a, last));
}

/// The stop-line case held with a run that is not reported.
fn held_of(a: junction::AwaitingRun, last: u64) -> Option<Violation> {
    a.held_stop.map(|mut held| {
        held.frames.after = last.max(held.frames.at);
        held
    })
}

/// Steps longer than this may be gaps in a track (see [`after_a_gap`]).
const MIN_GAP_US: i64 = 400_000;

/// Whether the track's newest step spans a stretch where it was not seen:
/// longer than [`MIN_GAP_US`] and than 2.5 times its usual step (so a camera
/// analysed at 1 fps is still judged). A track that coasted through a gap
/// may have been handed another vehicle's detection when it was matched
/// again; a line "crossed" between its last point and that detection would
/// be a crossing by no one, and the box of the violation the other
/// vehicle's. Such a step moves the track on but is not judged.
fn after_a_gap(traj: &std::collections::VecDeque<TrackPoint>) -> bool {
    let n = traj.len();
    if n < 2 {
        return false;
    }
    let dt = traj[n - 1].timestamp_us - traj[n - 2].timestamp_us;
    if dt <= MIN_GAP_US {
        return false;
    }
    let usual = traj
        .iter()
        .rev()
        .skip(1)
        .zip(traj.iter().rev().skip(2))
        .take(8)
        .map(|(later, earlier)| later.timestamp_us - earlier.timestamp_us)
        .filter(|d| *d > 0)
        .min();
    usual.is_some_and(|u| dt * 2 > u * 5)
}

/// Runs every enabled rule on the track's newest point, if it is new.
fn step(
    site: &Compiled,
    state: &mut TrackState,
    track: &Track,
    others: &[&Track],
    signals: &dyn SignalSource,
) {
    let traj = track.trajectory();
    let Some(p1) = traj.back() else { return };
    if state.last_frame.is_some_and(|f| f >= p1.frame) {
        return;
    }
    state.last_frame = Some(p1.frame);
    let lane_now = site.lane_at(p1.anchor);
    let Some(p0) = traj.len().checked_sub(2).and_then(|i| traj.get(i)) else {
        state.lane = lane_now.or(state.lane);
        return;
    };
    if after_a_gap(traj) {
        // Not judged: see `after_a_gap`. The next step is; nothing
        // measured across the gap carries over.
        state.lane = lane_now.or(state.lane);
        state.speed.gap(p1.timestamp_us);
        return;
    }
    let ctx = Ctx {
        site,
        track,
        p0,
        p1,
        lane_now,
        signals,
        others,
    };
    let r = &site.rules;
    if r.red_light.enabled || r.stop_line.enabled || r.wrong_lane.enabled {
        junction::step(&ctx, state);
    }
    state.lane = lane_now.or(state.lane);
    lane::step(&ctx, state);
    if r.speeding.enabled {
        speed::step(&ctx, state);
    }
}

#[cfg(test)]
mod gap_tests {
    use super::after_a_gap;
    use crate::geometry::BBox;
    use crate::track::{FrameInfo, TrackPoint};
    use protocol::VehicleClass;
    use std::collections::VecDeque;

    /// A trajectory observed at the given times (ms).
    fn seen_at(ms: &[i64]) -> VecDeque<TrackPoint> {
        ms.iter()
            .enumerate()
            .map(|(i, t)| {
                let frame = FrameInfo {
                    number: i as u64,
                    timestamp_us: t * 1000,
                };
                let b = BBox::from_xywh(10.0, 10.0, 20.0, 20.0);
                TrackPoint::new(frame, b, 0.9, VehicleClass::Car)
            })
            .collect()
    }

    #[test]
    fn a_step_across_a_coasting_gap_is_not_judged() {
        assert!(!after_a_gap(&seen_at(&[0, 100, 200, 300])));
        assert!(after_a_gap(&seen_at(&[0, 100, 200, 900])));
        // Analysed at 1 fps: a second a step is the usual step.
        assert!(!after_a_gap(&seen_at(&[0, 1000, 2000, 3000])));
        assert!(after_a_gap(&seen_at(&[0, 1000, 2000, 5000])));
        // Too young to tell.
        assert!(!after_a_gap(&seen_at(&[0, 900])));
    }
}
