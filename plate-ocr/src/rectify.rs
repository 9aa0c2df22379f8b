//! Rectification: a perspective warp from a plate's four corners in the image
//! to an upright crop of the plate's shape, for the recogniser.
//!
//! The output shape follows the plate type: one-line plates about 4.7:1
//! (520×110 mm), two-line plates 1.36:1 (motorbike) to 2:1 (car). The
//! measured aspect of the corner quadrilateral is used, clamped to the range
//! of its class, so a foreshortened plate is not stretched into the wrong
//! shape. A small margin around the corners keeps characters that touch the
//! plate edge whole.

use opencv::core::{BORDER_REPLICATE, Mat, Point2f, Scalar, Size, Vector};
use opencv::imgproc;

use crate::error::{CvContext, Result, VisionError};
use crate::image_file::checked_size;

/// Output size and margin settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RectifyConfig {
    /// Height of one text line in the output, pixels.
    pub line_height: i32,
    /// Aspect range (width / height) for one-line plates.
    pub one_line_aspect: (f32, f32),
    /// Aspect range for two-line plates.
    pub two_line_aspect: (f32, f32),
    /// Fraction of the plate's width and height added around the corners.
    pub margin: f32,
}

impl Default for RectifyConfig {
    fn default() -> Self {
        RectifyConfig {
            line_height: 48,
            one_line_aspect: (3.0, 6.0),
            two_line_aspect: (1.2, 2.3),
            margin: 0.04,
        }
    }
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The upright crop of the plate with `corners` (top-left, top-right,
/// bottom-right, bottom-left) in `image`; `lines` = 1 or 2.
pub fn rectify(
    image: &Mat,
    corners: &[[f32; 2]; 4],
    lines: u8,
    config: &RectifyConfig,
) -> Result<Mat> {
    checked_size(image, "image")?;
    if corners.iter().flatten().any(|v| !v.is_finite()) {
        return Err(VisionError::Config(
            "plate corners are not finite".to_string(),
        ));
    }
    let [tl, tr, br, bl] = *corners;
    let width = (dist(tl, tr) + dist(bl, br)) / 2.0;
    let height = (dist(tl, bl) + dist(tr, br)) / 2.0;
    if width < 2.0 || height < 2.0 {
        return Err(VisionError::Empty {
            what: "plate corners".to_string(),
            width: width as i32,
            height: height as i32,
        });
    }
    let (lo, hi) = if lines >= 2 {
        config.two_line_aspect
    } else {
        config.one_line_aspect
    };
    let aspect = (width / height).clamp(lo, hi);
    let out_h = config.line_height * i32::from(lines.clamp(1, 2));
    let out_w = ((out_h as f32) * aspect).round().max(8.0) as i32;
    // The destination of the corners, inside a margin.
    let mx = out_w as f32 * config.margin;
    let my = out_h as f32 * config.margin;
    let (w, h) = (out_w as f32, out_h as f32);
    let src: Vector<Point2f> = corners.iter().map(|p| Point2f::new(p[0], p[1])).collect();
    let dst: Vector<Point2f> = [
        (mx, my),
        (w - 1.0 - mx, my),
        (w - 1.0 - mx, h - 1.0 - my),
        (mx, h - 1.0 - my),
    ]
    .iter()
    .map(|&(x, y)| Point2f::new(x, y))
    .collect();
    let m = imgproc::get_perspective_transform(&src, &dst, opencv::core::DECOMP_LU)
        .cv("plate perspective")?;
    let mut out = Mat::default();
    imgproc::warp_perspective(
        image,
        &mut out,
        &m,
        Size::new(out_w, out_h),
        imgproc::INTER_LINEAR,
        BORDER_REPLICATE,
        Scalar::all(0.0),
    )
    .cv("warping a plate")?;
    Ok(out)
}
