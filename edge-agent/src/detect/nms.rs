//! Non-maximum suppression over detections, in our code (not the model's).

use crate::track::Detection;

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax2, ay2, bx2, by2) = (a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]);
    let iw = (ax2.min(bx2) - a[0].max(b[0])).max(0.0);
    let ih = (ay2.min(by2) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    // A box with a NaN coordinate overlaps nothing, rather than
    // suppressing every box after it.
    let v = inter / union;
    if union > 0.0 && v.is_finite() { v } else { 0.0 }
}

/// Keeps the highest-scoring box of every group overlapping above `iou_max`
/// (class-agnostic: a vehicle scored as both car and truck is one vehicle).
pub fn nms(dets: Vec<Detection>, iou_max: f32) -> Vec<Detection> {
    suppress(dets, iou_max, |d| (&d.bbox, d.score))
}

/// Keeps the highest-scoring item of every group whose boxes overlap above
/// `iou_max`; `of` gives an item's `[x, y, w, h]` box and score.
pub(crate) fn suppress<T>(
    mut items: Vec<T>,
    iou_max: f32,
    of: impl Fn(&T) -> (&[f32; 4], f32),
) -> Vec<T> {
    items.sort_by(|a, b| of(b).1.total_cmp(&of(a).1));
    let mut keep: Vec<T> = Vec::with_capacity(items.len());
    for d in items {
        if keep.iter().all(|k| iou(of(k).0, of(&d).0) <= iou_max) {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::VehicleClass;

    #[test]
    fn a_nan_box_suppresses_nothing() {
        let det = |bbox: [f32; 4], score: f32| Detection {
            bbox,
            score,
            class: VehicleClass::Car,
            riders: 0,
        };
        let kept = nms(
            vec![
                det([0.0, 0.0, f32::NAN, 10.0], 0.99),
                det([100.0, 100.0, 50.0, 40.0], 0.9),
                det([300.0, 100.0, 50.0, 40.0], 0.8),
            ],
            0.5,
        );
        assert_eq!(kept.len(), 3);
    }

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            bbox: [x, 0.0, 10.0, 10.0],
            score,
            class: VehicleClass::Car,
            riders: 0,
        }
    }

    #[test]
    fn overlapping_boxes_collapse_to_the_best() {
        let out = nms(vec![det(0.0, 0.5), det(1.0, 0.9), det(50.0, 0.3)], 0.45);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].bbox[0], 50.0);
    }
}
