//! Plate background colour from the pixels of a rectified plate crop: white,
//! yellow, blue or red, which in Vietnam says whose vehicle it is (private,
//! commercial, state, military) and must be recorded on a notice.
//!
//! The central part of the crop is converted to HSV. Pixels are sorted into
//! colour bins: saturated pixels by hue (yellow, blue, red) and bright
//! unsaturated pixels as white; dark pixels (black characters, shadows) are
//! ignored, so the characters don't sway the answer. White characters on a
//! blue or red plate cover less area than the background, so the largest bin
//! wins; it must hold at least [`ColourConfig::min_share`] of the non-dark
//! pixels, otherwise the colour is `Unknown`.

use opencv::core::{Mat, MatTraitConst, MatTraitConstManual, Rect};
use opencv::imgproc;

use crate::error::{CvContext, Result};
use crate::image_file::{checked_size, continuous};
use crate::plate::PlateColour;

/// Thresholds (OpenCV HSV: H 0–179, S and V 0–255).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourConfig {
    /// Pixels darker than this value are characters or shadow, ignored.
    pub dark_value: u8,
    /// Saturation from which a pixel counts as coloured.
    pub min_saturation: u8,
    /// Brightness from which an unsaturated pixel counts as white.
    pub white_value: u8,
    /// Share of the non-dark pixels the winning colour must hold.
    pub min_share: f32,
}

impl Default for ColourConfig {
    fn default() -> Self {
        ColourConfig {
            dark_value: 60,
            min_saturation: 70,
            white_value: 110,
            min_share: 0.4,
        }
    }
}

/// Shares of the non-dark pixels in each colour bin.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColourShares {
    pub white: f32,
    pub yellow: f32,
    pub blue: f32,
    pub red: f32,
}

/// The plate's background colour, and the share of pixels behind the answer.
pub fn plate_colour(crop: &Mat, config: &ColourConfig) -> Result<(PlateColour, f32)> {
    let shares = colour_shares(crop, config)?;
    let bins = [
        (PlateColour::White, shares.white),
        (PlateColour::Yellow, shares.yellow),
        (PlateColour::Blue, shares.blue),
        (PlateColour::Red, shares.red),
    ];
    let (colour, share) = bins
        .iter()
        .copied()
        .fold((PlateColour::Unknown, 0.0f32), |b, c| {
            if c.1 > b.1 { c } else { b }
        });
    if share >= config.min_share {
        Ok((colour, share))
    } else {
        Ok((PlateColour::Unknown, share))
    }
}

/// How the non-dark pixels of the crop's centre fall into the colour bins.
pub fn colour_shares(crop: &Mat, config: &ColourConfig) -> Result<ColourShares> {
    let (w, h) = checked_size(crop, "plate crop")?;
    // The centre, away from the plate frame and the surroundings.
    let (mx, my) = (w / 10, h / 10);
    let inner = if w - 2 * mx >= 2 && h - 2 * my >= 2 {
        continuous(
            &Mat::roi(crop, Rect::new(mx, my, w - 2 * mx, h - 2 * my))
                .cv("plate centre")?
                .try_clone()
                .cv("plate centre")?,
        )?
    } else {
        continuous(crop)?
    };
    let mut hsv = Mat::default();
    imgproc::cvt_color_def(&inner, &mut hsv, imgproc::COLOR_BGR2HSV)
        .cv("converting a plate to HSV")?;
    let hsv = continuous(&hsv)?;
    let bytes = hsv.data_bytes().cv("reading HSV pixels")?;
    let mut counts = [0u32; 4];
    let mut lit = 0u32;
    for p in bytes.chunks_exact(3) {
        let (hue, s, v) = (p[0], p[1], p[2]);
        if v < config.dark_value {
            continue;
        }
        lit += 1;
        if s >= config.min_saturation {
            match hue {
                0..=9 | 165..=179 => counts[3] += 1,
                15..=38 => counts[1] += 1,
                90..=130 => counts[2] += 1,
                _ => {}
            }
        } else if v >= config.white_value {
            counts[0] += 1;
        }
    }
    if lit == 0 {
        return Ok(ColourShares::default());
    }
    let share = |c: u32| c as f32 / lit as f32;
    Ok(ColourShares {
        white: share(counts[0]),
        yellow: share(counts[1]),
        blue: share(counts[2]),
        red: share(counts[3]),
    })
}
