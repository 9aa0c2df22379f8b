//! One fine per vehicle and act, across the tracks a vehicle is found
//! under.
//!
//! **Parked vehicles.**
//! "One violation per vehicle per rule" holds per track; a vehicle parked
//! where it must not stop can lose its track (a bus passes in front of it
//! for longer than the tracker coasts) and be found again as a new track,
//! whose dwell timer then fires a second illegal-stopping violation for the
//! same vehicle. A new track that *appears* where a track with an
//! illegal-stopping violation was last seen standing, within
//! [`REPEAT_WINDOW_US`], is taken to be that vehicle: its illegal-stopping
//! violation is not reported again. A vehicle that drove into the spot
//! (its first point elsewhere) is a new offence and is reported.
//!
//! The same holds across a restart of the agent (an update, a crash, a
//! power cut): a violator's spot is refreshed on every frame its track
//! lives, so it is as fresh as the car's standing, and [`ParkedSpot`]s are
//! what `crate::parked_store` keeps on disk between runs.
//!
//! **Other acts** ([`RecentActs`]). A vehicle in the wrong lane or driving
//! the wrong way that is hidden for longer than the tracker coasts (behind
//! a bus, a moment out of view) comes back as a new track, whose rule state
//! starts afresh and finds the same act again. A violation of a state that
//! goes on ([`continues`]: wrong lane — a class not allowed in the lane, or
//! the manoeuvre, which shares its type — wrong way, and standing over
//! the stop line on red, which needs no crossing by the track that reports
//! it) is not reported
//! again when its track *appeared* after a track reported for the same
//! type was last seen, within [`REACQUIRE_WINDOW_US`] of that, near where
//! that vehicle would have got to by then at the speed it had, with the
//! same class: taken to be that vehicle found again. A different vehicle
//! doing the same nearby in those seconds goes unreported too (in doubt, no
//! case). Acts of a moment — a red-light run, speeding — are never taken
//! for repeats: a track found again beyond the stop line, or between or
//! past the speed lines, cannot cross them again, so such an act by a new
//! track near a lost violator is another vehicle's.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Violation;
use crate::geometry::{BBox, Point};
use crate::track::Track;
use protocol::{VehicleClass, ViolationType};

/// How long after a violator's track ended a new track at its spot counts
/// as the same vehicle.
pub const REPEAT_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// Boxes overlapping at least this much are the same spot.
const SAME_SPOT_IOU: f64 = 0.5;

/// Most remembered spots (a junction has a handful).
const MAX_SPOTS: usize = 256;

/// Where an illegally stopped vehicle stood when it was fined, when that
/// was, and when it was last seen standing there (stream time,
/// microseconds since the Unix epoch): what is kept across restarts of
/// the agent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParkedSpot {
    /// Box in full-frame pixels: left, top, width, height.
    pub bbox: [f64; 4],
    /// When it was fined there.
    pub made_us: i64,
    /// When it was last seen standing there.
    pub seen_us: i64,
}

impl ParkedSpot {
    /// Whether this is a spot at all: finite, a positive size, times after
    /// 2000 and in order (a file from outside is checked with this).
    pub fn is_valid(&self) -> bool {
        let [x, y, w, h] = self.bbox;
        [x, y, w, h].iter().all(|v| v.is_finite() && v.abs() < 1e6)
            && w > 0.0
            && h > 0.0
            && self.made_us > 946_684_800_000_000
            && self.made_us <= self.seen_us
    }
}

/// One remembered spot, with the live track still standing on it, if any.
#[derive(Debug, Clone, Copy)]
struct Spot {
    bbox: BBox,
    made_us: i64,
    seen_us: i64,
    live: Option<u64>,
}

/// Where illegally stopped vehicles were fined and last seen standing.
#[derive(Debug, Default)]
pub(crate) struct ParkedSpots {
    spots: VecDeque<Spot>,
    /// Bumped when a spot is made, dropped or restored (not when a live
    /// one is seen again), so a caller saves when there is news.
    generation: u64,
}

impl ParkedSpots {
    /// Track `track`, which has an illegal-stopping violation, is at
    /// `bbox` at `at_us`. Its spot is made where it stands the first time;
    /// later, the spot is seen again only while the vehicle still stands
    /// on it: a violator that drives off leaves its spot where it was
    /// fined, last seen when it left.
    pub fn touch(&mut self, track: u64, bbox: BBox, at_us: i64) {
        if let Some(spot) = self.spots.iter_mut().find(|s| s.live == Some(track)) {
            if spot.bbox.iou(bbox) >= SAME_SPOT_IOU {
                spot.seen_us = at_us.max(spot.made_us);
            }
            return;
        }
        if self.spots.len() == MAX_SPOTS {
            self.spots.pop_front();
        }
        self.spots.push_back(Spot {
            bbox,
            made_us: at_us,
            seen_us: at_us,
            live: Some(track),
        });
        self.generation += 1;
    }

    /// Track `track`, which had an illegal-stopping violation, ended, last
    /// seen at `last` at `at_us`: its spot stays, no longer followed.
    pub fn remember(&mut self, track: u64, last: BBox, at_us: i64) {
        self.touch(track, last, at_us);
        for s in self.spots.iter_mut().filter(|s| s.live == Some(track)) {
            s.live = None;
        }
    }

    /// Whether a track first seen at `first` at `first_us` is a vehicle
    /// remembered there (so its illegal stopping was reported already): a
    /// spot made before the track appeared, where a vehicle stood until at
    /// most [`REPEAT_WINDOW_US`] before. A spot made after the track
    /// appeared is another track's on the same vehicle (or the track's
    /// own), which must not make each other repeats.
    pub fn is_repeat(&mut self, track: u64, first: BBox, first_us: i64) -> bool {
        let before = self.spots.len();
        self.spots
            .retain(|s| s.live.is_some() || first_us.saturating_sub(s.seen_us) <= REPEAT_WINDOW_US);
        if self.spots.len() != before {
            self.generation += 1;
        }
        self.spots.iter().any(|s| {
            s.live != Some(track)
                && s.made_us <= first_us
                && first_us.saturating_sub(s.seen_us) <= REPEAT_WINDOW_US
                && s.bbox.iou(first) >= SAME_SPOT_IOU
        })
    }

    /// The spots, oldest first, for keeping across a restart.
    pub fn snapshot(&self) -> Vec<ParkedSpot> {
        self.spots
            .iter()
            .map(|s| ParkedSpot {
                bbox: [s.bbox.x, s.bbox.y, s.bbox.w, s.bbox.h],
                made_us: s.made_us,
                seen_us: s.seen_us,
            })
            .collect()
    }

    /// Spots kept from before a restart (invalid ones are skipped). The
    /// tracks that stood on them are gone: track ids start again.
    pub fn restore(&mut self, spots: &[ParkedSpot]) {
        for s in spots.iter().filter(|s| s.is_valid()) {
            if self.spots.len() == MAX_SPOTS {
                self.spots.pop_front();
            }
            let [x, y, w, h] = s.bbox;
            self.spots.push_back(Spot {
                bbox: BBox::from_xywh(x, y, w, h),
                made_us: s.made_us,
                seen_us: s.seen_us,
                live: None,
            });
        }
        self.generation += 1;
    }

    /// Forgets which tracks stand on which spot (their tracker is gone).
    pub fn detach_tracks(&mut self) {
        for s in &mut self.spots {
            s.live = None;
        }
    }

    /// Structural changes so far (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a live track stands on a spot (its time moves on, so the
    /// saved copy ages).
    pub fn has_live(&self) -> bool {
        self.spots.iter().any(|s| s.live.is_some())
    }
}

/// Whether `v`, found for `track`, repeats what was reported for the same
/// vehicle under an earlier track (logged if so); if not, it is
/// remembered as reported.
pub(crate) fn is_repeat(
    parked: &mut ParkedSpots,
    acts: &mut RecentActs,
    v: &Violation,
    track: &Track,
) -> bool {
    // Where the track began, not the oldest point its bounded trajectory
    // still holds: a car that drove in minutes ago and parked on the spot
    // has only standing points left, but it is a new offence.
    let first = track.first();
    if v.rule == ViolationType::IllegalStopping {
        let repeat = parked.is_repeat(track.id(), first.bbox, first.timestamp_us);
        if repeat {
            tracing::info!(
                track = v.track_id,
                "illegal stopping not reported again: the vehicle reported standing here before, found again"
            );
        }
        return repeat;
    }
    if !continues(v.rule) {
        return false;
    }
    let repeat = acts.is_repeat(v.rule, track);
    if repeat {
        tracing::info!(
            track = v.track_id,
            rule = ?v.rule,
            "violation not reported again: a vehicle reported for it was lost just before, where this one appeared"
        );
    } else {
        acts.remember(v.rule, track);
    }
    repeat
}

/// Whether a violation of type `t` is a state that goes on while the
/// vehicle is in view (so a track that finds it again may be the same
/// vehicle found again): driving in the wrong lane or the wrong way, and
/// standing over the stop line on red (which needs no crossing by the
/// track that reports it). Not an act of a moment a vehicle does once (a
/// red-light run, speeding between the lines: a track found again cannot
/// do it again, so a report there is another vehicle's), nor illegal
/// stopping, which [`ParkedSpots`] deals with.
fn continues(t: ViolationType) -> bool {
    matches!(
        t,
        ViolationType::WrongLane | ViolationType::WrongWay | ViolationType::StopLine
    )
}

/// How long after a violator's track was last seen a new track can be that
/// vehicle found again (wrong lane, wrong way, standing over the stop line: see [`continues`]).
pub const REACQUIRE_WINDOW_US: i64 = 5_000_000;

/// Most remembered acts.
const MAX_ACTS: usize = 256;

/// A reported act, and where its vehicle was last seen.
#[derive(Debug, Clone, Copy)]
struct Act {
    rule: ViolationType,
    class: VehicleClass,
    track: u64,
    live: bool,
    anchor: Point,
    /// Anchor velocity, px per µs, over its last second.
    velocity: Point,
    /// The box's larger side, px.
    size: f64,
    seen_us: i64,
}

impl Act {
    /// Refreshed from `track`'s latest observation.
    fn seen(&mut self, track: &Track) {
        let traj = track.trajectory();
        let Some(last) = traj.back() else { return };
        if last.timestamp_us < self.seen_us {
            return;
        }
        let from = traj
            .iter()
            .find(|p| p.timestamp_us >= last.timestamp_us.saturating_sub(1_000_000))
            .unwrap_or(last);
        let dt = (last.timestamp_us - from.timestamp_us) as f64;
        let v = last.anchor.minus(from.anchor);
        self.velocity = if dt > 0.0 && v.is_finite() {
            v.scale(1.0 / dt)
        } else {
            Point::default()
        };
        self.anchor = last.anchor;
        self.size = last.bbox.w.max(last.bbox.h);
        self.seen_us = last.timestamp_us;
    }

    /// Whether a track first seen at `first` could be this act's vehicle
    /// found again.
    fn may_be(&self, rule: ViolationType, track: &Track) -> bool {
        let first = track.first();
        let gap = first.timestamp_us.saturating_sub(self.seen_us);
        if self.rule != rule
            || self.track == track.id()
            || self.class != track.class()
            || !(1..=REACQUIRE_WINDOW_US).contains(&gap)
        {
            return false;
        }
        let gap = gap as f64;
        let predicted = self.anchor.plus(self.velocity.scale(gap));
        let slack = self.size + 0.5 * self.velocity.norm() * gap;
        first.anchor.dist(predicted) <= slack
    }
}

/// Acts of a state that goes on ([`continues`]) reported recently, with
/// where their vehicles were last seen.
#[derive(Debug, Default)]
pub(crate) struct RecentActs {
    acts: VecDeque<Act>,
}

impl RecentActs {
    /// `track` was seen again: its acts follow it.
    pub fn touch(&mut self, track: &Track) {
        for a in self
            .acts
            .iter_mut()
            .filter(|a| a.live && a.track == track.id())
        {
            a.seen(track);
        }
    }

    /// `track` ended: its acts stay where it was last seen.
    pub fn end(&mut self, track: &Track) {
        self.touch(track);
        for a in self.acts.iter_mut().filter(|a| a.track == track.id()) {
            a.live = false;
        }
    }

    /// Whether `rule` found for `track` is an act already reported for the
    /// vehicle under an earlier track (see the module docs).
    pub fn is_repeat(&mut self, rule: ViolationType, track: &Track) -> bool {
        let now = track.first().timestamp_us;
        self.acts
            .retain(|a| a.live || now.saturating_sub(a.seen_us) <= REACQUIRE_WINDOW_US);
        self.acts.iter().any(|a| a.may_be(rule, track))
    }

    /// `rule` was reported for `track`.
    pub fn remember(&mut self, rule: ViolationType, track: &Track) {
        if self
            .acts
            .iter()
            .any(|a| a.track == track.id() && a.rule == rule)
        {
            return;
        }
        if self.acts.len() == MAX_ACTS {
            self.acts.pop_front();
        }
        let mut act = Act {
            rule,
            class: track.class(),
            track: track.id(),
            live: true,
            anchor: Point::default(),
            velocity: Point::default(),
            size: 0.0,
            seen_us: i64::MIN,
        };
        act.seen(track);
        self.acts.push_back(act);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_appearing_at_a_remembered_spot_soon_after_is_a_repeat() {
        let mut spots = ParkedSpots::default();
        let spot = BBox::from_xywh(100.0, 100.0, 80.0, 60.0);
        spots.remember(1, spot, T0 + 1_000_000);
        let nudged = BBox::from_xywh(104.0, 102.0, 80.0, 60.0);
        assert!(spots.is_repeat(2, nudged, T0 + 30_000_000));
        // Elsewhere, or too long after: a new offence.
        assert!(!spots.is_repeat(
            2,
            BBox::from_xywh(400.0, 100.0, 80.0, 60.0),
            T0 + 30_000_000
        ));
        assert!(!spots.is_repeat(2, nudged, T0 + 1_000_000 + REPEAT_WINDOW_US + 1));
        // Forgotten once too old.
        assert!(!spots.is_repeat(2, nudged, T0 + 30_000_000));
    }

    /// 2026-01-01, a plausible stream time.
    const T0: i64 = 1_767_225_600_000_000;

    #[test]
    fn a_car_standing_for_hours_is_remembered_as_of_its_last_frame() {
        let mut spots = ParkedSpots::default();
        let spot = BBox::from_xywh(100.0, 100.0, 80.0, 60.0);
        let hour = 3_600_000_000;
        // Fined early on, then seen standing for two hours.
        for k in 0..=120 {
            spots.touch(7, spot, T0 + k * 60_000_000);
        }
        assert!(!spots.is_repeat(7, spot, T0), "not a repeat of itself");
        // The agent restarts: the spot comes back from its snapshot, and a
        // new track (ids start again: the same id means nothing) appears
        // there a minute later.
        let kept = spots.snapshot();
        assert_eq!(kept.len(), 1);
        let mut after = ParkedSpots::default();
        after.restore(&kept);
        assert!(after.is_repeat(7, spot, T0 + 2 * hour + 60_000_000));
        // Invalid spots from a damaged file are skipped.
        let mut bad = kept[0];
        bad.bbox[2] = f64::NAN;
        let mut backwards = kept[0];
        backwards.seen_us = backwards.made_us - 1;
        assert!(!backwards.is_valid());
        let mut other = ParkedSpots::default();
        other.restore(&[bad]);
        assert!(other.snapshot().is_empty());
    }

    #[test]
    fn a_violator_that_drives_off_leaves_its_spot_where_it_was_fined() {
        let mut spots = ParkedSpots::default();
        let spot = BBox::from_xywh(100.0, 100.0, 80.0, 60.0);
        spots.touch(7, spot, T0);
        spots.touch(7, spot, T0 + 60_000_000);
        // It drives away to the edge of the frame and its track ends there.
        let edge = BBox::from_xywh(1800.0, 500.0, 80.0, 60.0);
        spots.touch(
            7,
            BBox::from_xywh(400.0, 300.0, 80.0, 60.0),
            T0 + 70_000_000,
        );
        spots.remember(7, edge, T0 + 80_000_000);
        let kept = spots.snapshot();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].bbox, [100.0, 100.0, 80.0, 60.0]);
        assert_eq!(kept[0].seen_us, T0 + 60_000_000, "last seen standing there");
        // A car entering where the violator left is not taken for it.
        assert!(!spots.is_repeat(8, edge, T0 + 90_000_000));
    }

    #[test]
    fn two_tracks_on_one_parked_car_do_not_excuse_each_other() {
        // A duplicate track on the same car, both started before either
        // was fined: the later one's spot does not count for the earlier
        // one, nor the other way round.
        let mut spots = ParkedSpots::default();
        let spot = BBox::from_xywh(100.0, 100.0, 80.0, 60.0);
        let (first_a, first_b) = (T0, T0 + 1_000_000);
        spots.touch(1, spot, T0 + 30_000_000);
        spots.touch(2, spot, T0 + 30_000_000);
        assert!(!spots.is_repeat(1, spot, first_a));
        assert!(!spots.is_repeat(2, spot, first_b));
    }

    #[test]
    fn a_spot_from_the_future_is_no_repeat() {
        // A clock set back (or a snapshot from a camera whose clock ran
        // ahead) must not make every later track a repeat for ever.
        let mut spots = ParkedSpots::default();
        let spot = BBox::from_xywh(100.0, 100.0, 80.0, 60.0);
        spots.remember(1, spot, T0 + 24 * 3_600_000_000);
        assert!(!spots.is_repeat(2, spot, T0));
    }
}
