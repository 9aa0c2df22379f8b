//! One fine per parked vehicle.
//!
//! "One violation per vehicle per rule" holds per track; a vehicle parked
//! where it must not stop can lose its track (a bus passes in front of it
//! for longer than the tracker coasts) and be found again as a new track,
//! whose dwell timer then fires a second illegal-stopping violation for the
//! same vehicle. A new track that *appears* where a track with an
//! illegal-stopping violation was last seen standing, within
//! [`REPEAT_WINDOW_US`], is taken to be that vehicle: its illegal-stopping
//! violation is not reported again. A vehicle that drove into the spot
//! (its first point elsewhere) is a new offence and is reported.

use std::collections::VecDeque;

use crate::geometry::BBox;

/// How long after a violator's track ended a new track at its spot counts
/// as the same vehicle.
pub const REPEAT_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// Boxes overlapping at least this much are the same spot.
const SAME_SPOT_IOU: f64 = 0.5;

/// Most remembered spots (a junction has a handful).
const MAX_SPOTS: usize = 256;

/// Where illegally stopped vehicles were last seen, and when.
#[derive(Debug, Default)]
pub(crate) struct ParkedSpots {
    spots: VecDeque<(BBox, i64)>,
}

impl ParkedSpots {
    /// A track that had an illegal-stopping violation ended, last seen at
    /// `last` at `at_us`.
    pub fn remember(&mut self, last: BBox, at_us: i64) {
        if self.spots.len() == MAX_SPOTS {
            self.spots.pop_front();
        }
        self.spots.push_back((last, at_us));
    }

    /// Whether a track first seen at `first` at `first_us` is a vehicle
    /// remembered there (so its illegal stopping was reported already).
    pub fn is_repeat(&mut self, first: BBox, first_us: i64) -> bool {
        self.spots
            .retain(|(_, t)| first_us.saturating_sub(*t) <= REPEAT_WINDOW_US);
        self.spots
            .iter()
            .any(|(b, t)| *t <= first_us && b.iou(first) >= SAME_SPOT_IOU)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_appearing_at_a_remembered_spot_soon_after_is_a_repeat() {
        let mut spots = ParkedSpots::default();
        let spot = BBox::from_xywh(100.0, 100.0, 80.0, 60.0);
        spots.remember(spot, 1_000_000);
        let nudged = BBox::from_xywh(104.0, 102.0, 80.0, 60.0);
        assert!(spots.is_repeat(nudged, 30_000_000));
        // Elsewhere, or too long after: a new offence.
        assert!(!spots.is_repeat(BBox::from_xywh(400.0, 100.0, 80.0, 60.0), 30_000_000));
        assert!(!spots.is_repeat(nudged, 1_000_000 + REPEAT_WINDOW_US + 1));
        // Forgotten once too old.
        assert!(!spots.is_repeat(nudged, 30_000_000));
    }
}
