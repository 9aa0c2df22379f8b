//! Two-line plates: telling them from one-line plates, and cutting them into
//! their two text lines for one-line readers.
//!
//! A plate crop narrower than [`TWO_LINE_MAX_ASPECT`] (width / height) is
//! taken as two lines when the detector gives no class: a one-line car plate
//! is about 4.7:1, a two-line car plate about 2:1, a motorbike plate 1.36:1.
//! The cut is the row with the least horizontal edge energy (stroke edges)
//! in the middle band of the crop: polarity-free, so it works for dark
//! characters on white or yellow and white characters on blue or red.

use opencv::core::{CV_32F, Mat, MatTraitConst, Rect};
use opencv::imgproc;

use crate::error::{CvContext, Result};
use crate::image_file::checked_size;

/// Crops narrower than this (width / height) are read as two lines.
pub const TWO_LINE_MAX_ASPECT: f32 = 2.5;

/// Where a two-line crop was cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSplit {
    /// Row of the cut (0 = top).
    pub row: i32,
    /// Top line rectangle.
    pub top: Rect,
    /// Bottom line rectangle.
    pub bottom: Rect,
}

/// One or two lines, by the crop's aspect ratio.
pub fn guess_lines(width: i32, height: i32) -> u8 {
    if height > 0 && (width as f32) / (height as f32) < TWO_LINE_MAX_ASPECT {
        2
    } else {
        1
    }
}

/// Finds the gap between the two text lines of a two-line plate crop.
pub fn split_lines(crop: &Mat) -> Result<LineSplit> {
    let (w, h) = checked_size(crop, "plate crop")?;
    let gray = if crop.channels() == 1 {
        crop.try_clone().cv("copying a crop")?
    } else {
        let mut g = Mat::default();
        imgproc::cvt_color_def(crop, &mut g, imgproc::COLOR_BGR2GRAY)
            .cv("converting a crop to gray")?;
        g
    };
    let mut dx = Mat::default();
    imgproc::sobel_def(&gray, &mut dx, CV_32F, 1, 0).cv("edge filter on a crop")?;
    let mut abs = Mat::default();
    opencv::core::absdiff(&dx, &opencv::core::Scalar::all(0.0), &mut abs).cv("edge magnitude")?;
    let mut rows = Mat::default();
    opencv::core::reduce(&abs, &mut rows, 1, opencv::core::REDUCE_SUM, CV_32F).cv("row profile")?;
    let mut profile: Vec<f32> = Vec::with_capacity(h as usize);
    for r in 0..h {
        profile.push(*rows.at_2d::<f32>(r, 0).cv("row profile")?);
    }
    // Smooth over a few rows so one clean row inside a character doesn't win.
    let k = ((h as f32) * 0.04).round().max(1.0) as usize;
    let smooth: Vec<f32> = (0..profile.len())
        .map(|i| {
            let lo = i.saturating_sub(k);
            let hi = (i + k + 1).min(profile.len());
            profile[lo..hi].iter().sum::<f32>() / (hi - lo) as f32
        })
        .collect();
    let lo = ((h as f32) * 0.3).round() as usize;
    let hi = (((h as f32) * 0.7).round() as usize).min(smooth.len());
    let mid = (h / 2) as usize;
    let row = if lo < hi {
        // Least energy; ties broken towards the middle.
        (lo..hi)
            .min_by(|&a, &b| {
                smooth[a]
                    .total_cmp(&smooth[b])
                    .then(a.abs_diff(mid).cmp(&b.abs_diff(mid)))
            })
            .unwrap_or(mid) as i32
    } else {
        mid as i32
    };
    let pad = ((h as f32) * 0.04).round() as i32;
    let top_end = (row + pad).clamp(1, h);
    let bottom_start = (row - pad).clamp(0, h - 1);
    Ok(LineSplit {
        row,
        top: Rect::new(0, 0, w, top_end),
        bottom: Rect::new(0, bottom_start, w, h - bottom_start),
    })
}
