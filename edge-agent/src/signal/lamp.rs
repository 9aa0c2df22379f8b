//! Reading a signal head's lamps from raw pixels, one frame at a time.
//!
//! The frame is a plain 8-bit RGB or BGR buffer with a row stride, or a
//! decoder's 4:2:0 YUV converted pixel by pixel (only the lamps' pixels
//! are looked at), as any capture path can hand over without OpenCV. For each lamp rectangle the
//! reader counts the pixels that are bright, saturated and of that lamp's
//! hue; the lamp with the largest share is "on" if its share is high enough
//! and clearly above the other lamps' (so sunlight on the whole head, or a
//! reflection in an off lamp, reads as nothing rather than as a colour).
//! One frame's reading is raw; [`super::SignalFilter`] adds hysteresis.

use crate::capture::{PixelLayout, Yuv420};
use crate::site::{FrameSize, LampRegions, Rect};
use protocol::SignalState;

/// Byte order of a pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelFormat {
    /// Red, green, blue.
    Rgb8,
    /// Blue, green, red (OpenCV's order).
    Bgr8,
    /// A decoder's 4:2:0 YUV, its planes where this says (`stride` is
    /// then the luma plane's).
    Yuv420(Yuv420),
}

/// A borrowed 8-bit frame: packed RGB/BGR or planar YUV.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    /// Pixel bytes, row after row.
    pub data: &'a [u8],
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Bytes from one row to the next (at least `3 * width` for a packed
    /// format).
    pub stride: usize,
    /// Channel order.
    pub format: PixelFormat,
}

impl FrameView<'_> {
    /// Whether the buffer is large enough for the declared geometry.
    pub fn is_consistent(&self) -> bool {
        if let PixelFormat::Yuv420(yuv) = self.format {
            return PixelLayout::Yuv420(yuv)
                .problem(self.data.len(), self.width, self.height)
                .is_none();
        }
        let row = self.width as usize * 3;
        if self.width == 0 || self.height == 0 || self.stride < row {
            return false;
        }
        let need = self
            .stride
            .checked_mul(self.height as usize - 1)
            .and_then(|v| v.checked_add(row));
        need.is_some_and(|n| self.data.len() >= n)
    }

    fn rgb(&self, x: usize, y: usize) -> (u8, u8, u8) {
        if let PixelFormat::Yuv420(yuv) = &self.format {
            return yuv.rgb_at(self.data, x, y).unwrap_or((0, 0, 0));
        }
        let i = y * self.stride + x * 3;
        match (self.data.get(i..i + 3), self.format) {
            (Some(&[a, b, c]), PixelFormat::Rgb8) => (a, b, c),
            (Some(&[a, b, c]), _) => (c, b, a),
            _ => (0, 0, 0),
        }
    }
}

/// Thresholds of the lamp reader.
#[derive(Debug, Clone, PartialEq)]
pub struct LampConfig {
    /// Least brightness (largest channel, 0–255) of a lit pixel.
    pub min_value: u8,
    /// Least saturation (`(max - min) / max`) of a lit pixel.
    pub min_saturation: f32,
    /// Least share of a lamp's pixels lit in its colour for it to be on.
    pub min_fraction: f32,
    /// The winning lamp's share must be this many times the runner-up's.
    pub dominance: f32,
}

impl Default for LampConfig {
    fn default() -> Self {
        Self {
            min_value: 120,
            min_saturation: 0.35,
            min_fraction: 0.10,
            dominance: 2.0,
        }
    }
}

/// One frame's reading of a signal head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LampReading {
    /// The lamp judged on, or unknown.
    pub state: SignalState,
    /// Share of lit pixels in the red, yellow and green rectangles.
    pub shares: [f32; 3],
}

/// Hue in degrees `0..360`, value and saturation of an RGB pixel.
fn hsv(r: u8, g: u8, b: u8) -> (f32, u8, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    if max == 0 {
        return (0.0, 0, 0.0);
    }
    let d = f32::from(max - min);
    let s = d / f32::from(max);
    if d == 0.0 {
        return (0.0, max, 0.0);
    }
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let h = if r >= g && r >= b {
        60.0 * ((g - b) / d)
    } else if g >= b {
        60.0 * ((b - r) / d + 2.0)
    } else {
        60.0 * ((r - g) / d + 4.0)
    };
    (if h < 0.0 { h + 360.0 } else { h }, max, s)
}

fn hue_matches(lamp: usize, h: f32) -> bool {
    match lamp {
        0 => !(25.0..330.0).contains(&h), // red
        1 => (25.0..=70.0).contains(&h),  // yellow / amber
        _ => (80.0..=200.0).contains(&h), // green (often blue-green)
    }
}

/// Scales a rectangle from the configured frame size to the actual one and
/// clips it; `None` if nothing is left.
fn scaled(r: Rect, from: FrameSize, view: &FrameView<'_>) -> Option<(usize, usize, usize, usize)> {
    let sx = f64::from(view.width) / f64::from(from.width.max(1));
    let sy = f64::from(view.height) / f64::from(from.height.max(1));
    let x0 = (f64::from(r.x) * sx).floor() as usize;
    let y0 = (f64::from(r.y) * sy).floor() as usize;
    let x1 = ((f64::from(r.x) + f64::from(r.w)) * sx).ceil() as usize;
    let y1 = ((f64::from(r.y) + f64::from(r.h)) * sy).ceil() as usize;
    let x1 = x1.min(view.width as usize);
    let y1 = y1.min(view.height as usize);
    (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
}

fn lit_share(
    view: &FrameView<'_>,
    rect: (usize, usize, usize, usize),
    lamp: usize,
    c: &LampConfig,
) -> f32 {
    let (x0, y0, x1, y1) = rect;
    let mut lit = 0u32;
    let mut all = 0u32;
    for y in y0..y1 {
        for x in x0..x1 {
            let (r, g, b) = view.rgb(x, y);
            let (h, v, s) = hsv(r, g, b);
            all += 1;
            if v >= c.min_value && s >= c.min_saturation && hue_matches(lamp, h) {
                lit += 1;
            }
        }
    }
    if all == 0 {
        0.0
    } else {
        lit as f32 / all as f32
    }
}

/// Reads one signal head in one frame. `site_frame` is the frame size the
/// rectangles were configured for. An inconsistent buffer reads unknown.
pub fn read_lamps(
    view: &FrameView<'_>,
    lamps: &LampRegions,
    site_frame: FrameSize,
    config: &LampConfig,
) -> LampReading {
    let unknown = LampReading {
        state: SignalState::Unknown,
        shares: [0.0; 3],
    };
    if !view.is_consistent() {
        return unknown;
    }
    let mut shares = [0.0f32; 3];
    for (i, r) in [lamps.red, lamps.yellow, lamps.green]
        .into_iter()
        .enumerate()
    {
        if let Some(rect) = scaled(r, site_frame, view) {
            shares[i] = lit_share(view, rect, i, config);
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
    let (best, second) = (shares[order[0]], shares[order[1]]);
    let state = if best >= config.min_fraction && best >= config.dominance * second {
        [SignalState::Red, SignalState::Yellow, SignalState::Green][order[0]]
    } else {
        SignalState::Unknown
    };
    LampReading { state, shares }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hue_of_primaries() {
        assert_eq!(hsv(255, 0, 0).0, 0.0);
        assert_eq!(hsv(0, 255, 0).0, 120.0);
        assert_eq!(hsv(0, 0, 255).0, 240.0);
        assert_eq!(hsv(255, 200, 0).0, 60.0 * (200.0 / 255.0));
        assert!(hue_matches(0, 350.0) && hue_matches(0, 10.0) && !hue_matches(0, 40.0));
    }
}
