//! Putting vehicles back together across the seam of two detector tiles.
//!
//! A wide view is cut into two overlapping tiles for YOLOX (`yolox.rs`).
//! A vehicle narrower than the overlap is whole in one tile; what the
//! other tile saw of it is a *piece* and is dropped when the whole one was
//! found. A vehicle wider than the overlap (a near car or a bus at 1080p:
//! the overlap is under 200 px) is whole in neither: each tile sees one
//! *half*, cut at its side of the seam. Left as two boxes they become two
//! tracks with anchors far off the vehicle's centre (a wrong lane, one act
//! reported twice) or, where NMS keeps one, a half with a shifted anchor.
//! [`join_halves`] makes them one box again.

use super::nms;
use crate::track::Detection;
use protocol::VehicleClass;

/// Least overlap of two halves' vertical extents (intersection over
/// union) for them to be one vehicle: both tiles see the same rows of it.
const SAME_ROWS: f32 = 0.6;

/// Whether two detections are of one kind: two wheels, or more.
fn same_kind(a: VehicleClass, b: VehicleClass) -> bool {
    (a == VehicleClass::Motorcycle) == (b == VehicleClass::Motorcycle)
}

/// Whether at least half of `piece` lies inside `whole`.
fn covered(piece: &[f32; 4], whole: &[f32; 4]) -> bool {
    let iw = ((piece[0] + piece[2]).min(whole[0] + whole[2]) - piece[0].max(whole[0])).max(0.0);
    let ih = ((piece[1] + piece[3]).min(whole[1] + whole[3]) - piece[1].max(whole[1])).max(0.0);
    iw * ih >= 0.5 * piece[2] * piece[3]
}

/// The pieces no whole detection of their kind accounts for (about as
/// surely): the other tile missed that vehicle, and a cut one is better
/// than none. A piece of a motorbike in front of a bus is not the bus.
pub(crate) fn unseen_pieces(pieces: Vec<Detection>, whole: &[Detection]) -> Vec<Detection> {
    pieces
        .into_iter()
        .filter(|p| {
            !whole.iter().any(|d| {
                d.score >= 0.5 * p.score && same_kind(p.class, d.class) && covered(&p.bbox, &d.bbox)
            })
        })
        .collect()
}

/// Overlap of the vertical extents of two boxes, intersection over union.
fn rows_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let inter = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let union = (a[1] + a[3]).max(b[1] + b[3]) - a[1].min(b[1]);
    if union > 0.0 { inter / union } else { 0.0 }
}

/// [`join_halves`] after each side's NMS at `iou`: one vehicle leaves
/// several anchors in each tile, and the surest of each side are the ones
/// to join (a weaker pairing would leave a surer half over that beats the
/// joined box in the final NMS).
pub(crate) fn join_at_seam(
    left: Vec<Detection>,
    right: Vec<Detection>,
    iou: f32,
) -> Vec<Detection> {
    join_halves(nms(left, iou), nms(right, iou))
}

/// Joins the halves of vehicles wider than the tiles' overlap: `left`
/// holds the left tile's detections cut at its right side (the seam),
/// `right` the right tile's cut at its left side. A left and a right half
/// of one kind that cover the same rows, the left one starting further
/// left and the right one ending further right, and overlapping each
/// other (both reach into the overlap), are one vehicle: their union,
/// with the surer half's score and class. Pairs are taken greedily, the
/// best-matching rows first; a half with no partner is kept as it is.
pub(crate) fn join_halves(left: Vec<Detection>, right: Vec<Detection>) -> Vec<Detection> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, l) in left.iter().enumerate() {
        for (j, r) in right.iter().enumerate() {
            let (l0, l1) = (l.bbox[0], l.bbox[0] + l.bbox[2]);
            let (r0, r1) = (r.bbox[0], r.bbox[0] + r.bbox[2]);
            let rows = rows_iou(&l.bbox, &r.bbox);
            if same_kind(l.class, r.class) && l0 < r0 && l1 < r1 && l1 > r0 && rows >= SAME_ROWS {
                pairs.push((rows, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut left_used, mut right_used) = (vec![false; left.len()], vec![false; right.len()]);
    let mut out = Vec::with_capacity(left.len() + right.len());
    for (_, i, j) in pairs {
        if left_used[i] || right_used[j] {
            continue;
        }
        left_used[i] = true;
        right_used[j] = true;
        let (l, r) = (&left[i], &right[j]);
        let x0 = l.bbox[0];
        let x1 = r.bbox[0] + r.bbox[2];
        let y0 = l.bbox[1].min(r.bbox[1]);
        let y1 = (l.bbox[1] + l.bbox[3]).max(r.bbox[1] + r.bbox[3]);
        let surer = if l.score >= r.score { l } else { r };
        out.push(Detection {
            bbox: [x0, y0, x1 - x0, y1 - y0],
            score: surer.score,
            class: surer.class,
            riders: 0,
        });
    }
    out.extend(
        left.into_iter()
            .zip(left_used)
            .chain(right.into_iter().zip(right_used))
            .filter(|(_, used)| !used)
            .map(|(d, _)| d),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use VehicleClass::*;

    fn det(x: f32, y: f32, w: f32, h: f32, score: f32, class: VehicleClass) -> Detection {
        Detection {
            bbox: [x, y, w, h],
            score,
            class,
            riders: 0,
        }
    }

    /// 1920 px wide, tiles 0..1056 and 864..1920: a 500 px car at
    /// 700..1200 is cut in both.
    #[test]
    fn a_car_wider_than_the_overlap_is_one_box_again() {
        let left = vec![det(700.0, 400.0, 356.0, 200.0, 0.8, Car)];
        let right = vec![det(864.0, 402.0, 336.0, 198.0, 0.7, Car)];
        let joined = join_halves(left, right);
        assert_eq!(joined.len(), 1, "{joined:?}");
        let b = joined[0].bbox;
        assert_eq!((b[0], b[0] + b[2]), (700.0, 1200.0));
        assert_eq!((b[1], b[1] + b[3]), (400.0, 600.0));
        assert_eq!(joined[0].score, 0.8);
        assert_eq!(joined[0].class, Car);
    }

    #[test]
    fn halves_of_different_vehicles_stay_apart() {
        // Different rows (a near car's left half, a far car's right half).
        let left = vec![det(700.0, 400.0, 356.0, 200.0, 0.8, Car)];
        let right = vec![det(864.0, 100.0, 336.0, 120.0, 0.7, Car)];
        assert_eq!(join_halves(left, right).len(), 2);
        // A motorbike's half does not complete a bus.
        let left = vec![det(700.0, 400.0, 356.0, 200.0, 0.8, Bus)];
        let right = vec![det(864.0, 400.0, 300.0, 200.0, 0.7, Motorcycle)];
        assert_eq!(join_halves(left, right).len(), 2);
        // Not reaching each other across the overlap.
        let left = vec![det(700.0, 400.0, 150.0, 200.0, 0.8, Car)];
        let right = vec![det(900.0, 400.0, 300.0, 200.0, 0.7, Car)];
        assert_eq!(join_halves(left, right).len(), 2);
    }

    #[test]
    fn each_half_joins_at_most_one_other() {
        let left = vec![det(700.0, 400.0, 356.0, 200.0, 0.8, Car)];
        let right = vec![
            det(864.0, 400.0, 336.0, 200.0, 0.7, Car),
            det(864.0, 420.0, 250.0, 200.0, 0.6, Car),
        ];
        let joined = join_halves(left, right);
        assert_eq!(joined.len(), 2);
        assert!(
            joined
                .iter()
                .any(|d| d.bbox[0] == 700.0 && d.bbox[2] == 500.0)
        );
    }

    /// Several anchors per side, as YOLOX leaves them: after each side's
    /// NMS (as the detector runs it) the join gives one whole box, which
    /// the final NMS keeps.
    #[test]
    fn the_surest_halves_are_joined_whatever_the_other_anchors() {
        let left = vec![
            det(700.0, 405.0, 356.0, 195.0, 0.85, Car),
            det(700.0, 400.0, 356.0, 200.0, 0.5, Car),
        ];
        let right = vec![det(864.0, 400.0, 336.0, 200.0, 0.7, Car)];
        let out = nms(join_at_seam(left, right, 0.45), 0.45);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            (out[0].bbox[0], out[0].bbox[0] + out[0].bbox[2]),
            (700.0, 1200.0)
        );
    }

    #[test]
    fn a_piece_is_dropped_only_for_a_whole_vehicle_of_its_kind() {
        let bus = det(900.0, 300.0, 400.0, 300.0, 0.9, Bus);
        let bike_piece = det(1000.0, 450.0, 40.0, 90.0, 0.6, Motorcycle);
        let bus_piece = det(1000.0, 300.0, 56.0, 300.0, 0.6, Bus);
        let kept = unseen_pieces(vec![bike_piece, bus_piece], &[bus]);
        assert_eq!(kept, vec![bike_piece]);
    }
}
