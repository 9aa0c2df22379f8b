//! Finding plates in an image or a vehicle crop: the [`PlateDetector`] trait
//! and the HyperLPR3 `y5fu` detector.
//!
//! A detector returns, per plate, a box, the plate's four corners (for
//! rectification), a score and, where it can tell, the number of text lines.
//! The trait is all the pipeline knows, so a second detector (our own trained
//! one, or recogniser-confirmed windows in the lower half of a motorbike
//! crop) plugs in beside `y5fu`.
//!
//! `y5fu` (YOLOv5-face style, trained on Chinese car plates): input f32
//! [1,3,S,S] with S = 320 or 640, RGB /255, letterboxed at the top-left and
//! padded with 0; output [1,N,15] = cx, cy, w, h, objectness, four corners
//! (x, y), two class scores (one line, two lines), in input pixels. Score =
//! objectness × best class score; non-maximum suppression happens here.

use opencv::core::{CV_8UC3, Mat, MatTraitConst, MatTraitConstManual, Size};
use opencv::imgproc;

use crate::error::{CvContext, Result, VisionError};
use crate::image_file::{checked_size, continuous};
use crate::runtime::{Model, SessionConfig};

/// One plate found in an image, in that image's pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Box: x, y, width, height.
    pub bbox: [f32; 4],
    /// Corners: top-left, top-right, bottom-right, bottom-left (x, y).
    pub corners: [[f32; 2]; 4],
    /// Detector score (0–1).
    pub score: f32,
    /// Number of text lines, where the detector classifies it.
    pub lines: Option<u8>,
}

/// Finds plates in an 8-bit BGR image.
pub trait PlateDetector: Send + Sync {
    /// A short name for logs and reports.
    fn name(&self) -> &str;
    /// The plates found, best first.
    fn detect(&self, image: &Mat) -> Result<Vec<Detection>>;
}

/// Which `y5fu` input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Y5fuSize {
    /// 320×320: fast, for vehicle crops and small frames.
    S320,
    /// 640×640: slower, for whole frames.
    S640,
}

impl Y5fuSize {
    /// Manifest name of the model.
    pub fn model_name(self) -> &'static str {
        match self {
            Y5fuSize::S320 => "y5fu_320",
            Y5fuSize::S640 => "y5fu_640",
        }
    }

    fn pixels(self) -> usize {
        match self {
            Y5fuSize::S320 => 320,
            Y5fuSize::S640 => 640,
        }
    }
}

/// The HyperLPR3 `y5fu` plate detector.
#[derive(Debug)]
pub struct Y5fuDetector {
    model: Model,
    size: usize,
    /// Lowest score kept.
    pub min_score: f32,
    /// IoU above which the weaker of two overlapping boxes is dropped.
    pub nms_iou: f32,
}

impl Y5fuDetector {
    /// Loads the model of `size` through the manifest.
    pub fn load(size: Y5fuSize, config: SessionConfig) -> Result<Y5fuDetector> {
        let model = Model::load_named(size.model_name(), config)?;
        let shape = model.input_shape();
        let s = size.pixels() as i64;
        if shape.len() != 4 || shape[1] != 3 || shape[2] != s || shape[3] != s {
            return Err(model.contract_error(format!(
                "input must be [1,3,{s},{s}], the file declares {shape:?}"
            )));
        }
        Ok(Y5fuDetector {
            model,
            size: size.pixels(),
            min_score: 0.3,
            nms_iou: 0.5,
        })
    }

    /// Letterboxes `image` into the model's input; returns the tensor and scale.
    fn tensor(&self, image: &Mat) -> Result<(Vec<f32>, f32)> {
        let (w, h) = checked_size(image, "image")?;
        if image.typ() != CV_8UC3 {
            return Err(VisionError::Config(format!(
                "image must be 8-bit BGR, got OpenCV type {}",
                image.typ()
            )));
        }
        let s = self.size;
        let r = (s as f32 / w as f32).min(s as f32 / h as f32);
        let nw = ((w as f32 * r).round() as i32).clamp(1, s as i32);
        let nh = ((h as f32 * r).round() as i32).clamp(1, s as i32);
        let mut resized = Mat::default();
        let interp = if r < 1.0 {
            imgproc::INTER_AREA
        } else {
            imgproc::INTER_LINEAR
        };
        imgproc::resize(image, &mut resized, Size::new(nw, nh), 0.0, 0.0, interp)
            .cv("letterboxing an image")?;
        let resized = continuous(&resized)?;
        let bytes = resized.data_bytes().cv("reading an image")?;
        let plane = s * s;
        let mut data = vec![0.0f32; 3 * plane];
        let (nw, nh) = (nw as usize, nh as usize);
        for y in 0..nh {
            for x in 0..nw {
                let p = (y * nw + x) * 3;
                let o = y * s + x;
                // BGR in, RGB out.
                data[o] = f32::from(bytes[p + 2]) / 255.0;
                data[plane + o] = f32::from(bytes[p + 1]) / 255.0;
                data[2 * plane + o] = f32::from(bytes[p]) / 255.0;
            }
        }
        Ok((data, r))
    }
}

impl PlateDetector for Y5fuDetector {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn detect(&self, image: &Mat) -> Result<Vec<Detection>> {
        let (w, h) = checked_size(image, "image")?;
        let (data, r) = self.tensor(image)?;
        let (shape, out) = self.model.run(&[1, 3, self.size, self.size], &data, None)?;
        if shape.len() != 3 || shape[2] != 15 {
            return Err(self
                .model
                .contract_error(format!("output shape {shape:?} is not [1,N,15]")));
        }
        let found = out
            .chunks_exact(15)
            .filter_map(|row| decode_row(row, r, (w, h), self.min_score))
            .collect();
        Ok(nms(found, self.nms_iou))
    }
}

/// One `y5fu` output row (`cx, cy, w, h`, objectness, four corners, two
/// class scores, in input pixels, letterboxed by the factor `r`) as a
/// detection in an image of `size` (width, height): `None` when its score
/// is under `min_score`, or its box is too small, or its box or a corner
/// is not finite (`NaN` survives `clamp` and every `<` test, and a NaN box
/// would go on to suppress real plates in [`nms`]).
fn decode_row(row: &[f32], r: f32, size: (i32, i32), min_score: f32) -> Option<Detection> {
    let (w, h) = size;
    let (obj, one, two) = (*row.get(4)?, *row.get(13)?, *row.get(14)?);
    if !(r.is_finite() && r > 0.0) || row[..13].iter().any(|v| !v.is_finite()) {
        return None;
    }
    if !(obj.is_finite() && obj >= min_score) {
        return None;
    }
    let score = obj * one.max(two);
    if !(score.is_finite() && score >= min_score) {
        return None;
    }
    let (cx, cy, bw, bh) = (row[0] / r, row[1] / r, row[2] / r, row[3] / r);
    let x0 = (cx - bw / 2.0).clamp(0.0, w as f32);
    let y0 = (cy - bh / 2.0).clamp(0.0, h as f32);
    let x1 = (cx + bw / 2.0).clamp(0.0, w as f32);
    let y1 = (cy + bh / 2.0).clamp(0.0, h as f32);
    if x1 - x0 < 2.0 || y1 - y0 < 2.0 {
        return None;
    }
    let mut pts = [[0.0f32; 2]; 4];
    for (i, p) in pts.iter_mut().enumerate() {
        p[0] = (row[5 + 2 * i] / r).clamp(0.0, w as f32);
        p[1] = (row[6 + 2 * i] / r).clamp(0.0, h as f32);
    }
    Some(Detection {
        bbox: [x0, y0, x1 - x0, y1 - y0],
        corners: order_corners(pts),
        score,
        lines: Some(if two > one { 2 } else { 1 }),
    })
}

/// Orders four points as top-left, top-right, bottom-right, bottom-left.
pub fn order_corners(pts: [[f32; 2]; 4]) -> [[f32; 2]; 4] {
    let cx = pts.iter().map(|p| p[0]).sum::<f32>() / 4.0;
    let cy = pts.iter().map(|p| p[1]).sum::<f32>() / 4.0;
    let mut sorted = pts;
    // By angle around the centre, starting from the top-left quadrant.
    sorted.sort_by(|a, b| {
        let aa = (a[1] - cy).atan2(a[0] - cx);
        let ab = (b[1] - cy).atan2(b[0] - cx);
        aa.total_cmp(&ab)
    });
    // atan2 order from -pi: top-left (-3pi/4), top-right (-pi/4), bottom-right, bottom-left.
    let start = (0..4)
        .min_by(|&i, &j| (sorted[i][0] + sorted[i][1]).total_cmp(&(sorted[j][0] + sorted[j][1])))
        .unwrap_or(0);
    [
        sorted[start],
        sorted[(start + 1) % 4],
        sorted[(start + 2) % 4],
        sorted[(start + 3) % 4],
    ]
}

/// Intersection over union of two `[x, y, w, h]` boxes; 0 (no overlap)
/// where either box is not finite.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return 0.0;
    }
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Non-maximum suppression: best first, dropping boxes overlapping a kept
/// one. A box that is not finite is no detection (dropped); an overlap
/// that cannot be measured (NaN) suppresses nothing.
pub fn nms(mut dets: Vec<Detection>, max_iou: f32) -> Vec<Detection> {
    dets.retain(|d| d.bbox.iter().all(|v| v.is_finite()));
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.iter().all(|k| {
            let overlap = iou(&k.bbox, &d.bbox);
            overlap.is_nan() || overlap <= max_iou
        }) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            bbox,
            corners: [[0.0; 2]; 4],
            score,
            lines: None,
        }
    }

    #[test]
    fn iou_of_boxes() {
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]) - 1.0).abs() < 1e-6);
        assert!(
            (iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6
        );
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 5.0, 5.0]), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_overlapping() {
        let out = nms(
            vec![
                det([0.0, 0.0, 10.0, 10.0], 0.5),
                det([1.0, 0.0, 10.0, 10.0], 0.9),
                det([50.0, 50.0, 10.0, 10.0], 0.4),
            ],
            0.5,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].bbox[0], 50.0);
    }

    #[test]
    fn a_nan_box_suppresses_nothing() {
        let nan = f32::NAN;
        let out = nms(
            vec![
                det([nan, 100.0, nan, 20.0], 0.9),
                det([900.0, 100.0, 60.0, 20.0], 0.8),
            ],
            0.5,
        );
        assert!(
            out.iter().any(|d| d.bbox == [900.0, 100.0, 60.0, 20.0]),
            "{out:?}"
        );
    }

    #[test]
    fn a_row_with_a_nan_box_or_corner_is_no_detection() {
        // cx, cy, w, h, obj, corners, one line, two lines.
        let row = [
            100.0, 50.0, 80.0, 20.0, 0.9, 60.0, 40.0, 140.0, 40.0, 140.0, 60.0, 60.0, 60.0, 0.9,
            0.1,
        ];
        let good = decode_row(&row, 1.0, (640, 640), 0.3).expect("a clear row is a detection");
        assert_eq!(good.bbox, [60.0, 40.0, 80.0, 20.0]);
        for i in (0..4).chain(5..13) {
            let mut bad = row;
            bad[i] = f32::NAN;
            assert_eq!(decode_row(&bad, 1.0, (640, 640), 0.3), None, "NaN at {i}");
            bad[i] = f32::INFINITY;
            assert_eq!(decode_row(&bad, 1.0, (640, 640), 0.3), None, "inf at {i}");
        }
        assert_eq!(decode_row(&row[..10], 1.0, (640, 640), 0.3), None);
    }

    #[test]
    fn corners_are_ordered_whatever_the_input_order() {
        let tl = [10.0, 20.0];
        let tr = [110.0, 25.0];
        let br = [108.0, 45.0];
        let bl = [12.0, 40.0];
        for pts in [[br, tl, bl, tr], [tr, br, tl, bl], [bl, br, tr, tl]] {
            assert_eq!(order_corners(pts), [tl, tr, br, bl]);
        }
    }
}
