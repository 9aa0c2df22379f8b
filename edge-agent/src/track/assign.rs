//! Greedy assignment by IoU: all (track, detection) pairs at or above the
//! threshold, best IoU first, each track and detection taken once.
//!
//! Greedy instead of Hungarian: at a junction the pairs that matter have
//! clearly separated IoUs (the Kalman prediction is close to the next box,
//! a neighbour's box is not), the difference to the optimum appears only in
//! near-ties, and greedy is `O(p log p)` over the candidate pairs with one
//! reused buffer. Ties are broken by track then detection index, so the
//! result is deterministic.

use crate::geometry::BBox;

/// Reusable buffers for the association stages of one frame.
#[derive(Debug, Default)]
pub(crate) struct Assigner {
    pairs: Vec<(f64, usize, usize)>,
}

impl Assigner {
    /// Matches `tracks[i]` (where `track_free[i]`) to `dets[j]` (where
    /// `det_free[j]` and `may_match(i, j)`); calls `on_match(i, j)` for
    /// each match and clears the two flags.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assign(
        &mut self,
        tracks: &[BBox],
        track_free: &mut [bool],
        dets: &[BBox],
        det_free: &mut [bool],
        min_iou: f64,
        may_match: impl Fn(usize, usize) -> bool,
        mut on_match: impl FnMut(usize, usize),
    ) {
        self.pairs.clear();
        for (i, t) in tracks.iter().enumerate() {
            if !track_free[i] {
                continue;
            }
            for (j, d) in dets.iter().enumerate() {
                if !det_free[j] {
                    continue;
                }
                let iou = t.iou(*d);
                if iou >= min_iou && iou > 0.0 && may_match(i, j) {
                    self.pairs.push((iou, i, j));
                }
            }
        }
        self.pairs
            .sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        for &(_, i, j) in &self.pairs {
            if track_free[i] && det_free[j] {
                track_free[i] = false;
                det_free[j] = false;
                on_match(i, j);
            }
        }
    }
}
