//! Reading a signal head's lamps from raw pixels, one frame at a time.
//!
//! The frame is a plain 8-bit RGB or BGR buffer with a row stride, or a
//! decoder's 4:2:0 YUV converted pixel by pixel (only the lamps' pixels
//! are looked at), as any capture path can hand over without OpenCV. For each lamp rectangle the
//! reader counts the pixels that are bright, saturated and of that lamp's
//! hue; the lamp with the largest share is "on" if its share is high enough
//! and clearly above the other lamps' (so sunlight on the whole head, or a
//! reflection in an off lamp, reads as nothing rather than as a colour) —
//! and if its colour stays within its own lamp: the same colour lit over
//! another lamp's rectangle (beyond [`LampConfig::max_spill`], more than a
//! lit lamp's halo) is something of that colour in front of the head, a red
//! bus or lorry, a yellow taxi, and reads as nothing too. A lamp that is off
//! is dark; a red body over all three lamps is not three lamps of which
//! only the red one is on.
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
    /// Most share of another lamp's rectangle lit in the winning lamp's
    /// colour: a lit lamp's halo reaches a fringe of its neighbour's lens,
    /// a vehicle body of that colour in front of the head covers it. More
    /// reads unknown.
    pub max_spill: f32,
}

impl Default for LampConfig {
    fn default() -> Self {
        Self {
            min_value: 120,
            min_saturation: 0.35,
            min_fraction: 0.10,
            dominance: 2.0,
            max_spill: 0.25,
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
    /// The largest share of another lamp's rectangle lit in the colour of
    /// the lamp with the largest share (see [`LampConfig::max_spill`]).
    pub spill: f32,
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

/// Shares of the rectangle's pixels lit (bright and saturated) in the red,
/// yellow and green lamps' hues.
fn lit_shares(
    view: &FrameView<'_>,
    rect: (usize, usize, usize, usize),
    c: &LampConfig,
) -> [f32; 3] {
    let (x0, y0, x1, y1) = rect;
    let mut lit = [0u32; 3];
    let mut all = 0u32;
    for y in y0..y1 {
        for x in x0..x1 {
            let (r, g, b) = view.rgb(x, y);
            let (h, v, s) = hsv(r, g, b);
            all += 1;
            if v >= c.min_value && s >= c.min_saturation {
                for (lamp, n) in lit.iter_mut().enumerate() {
                    if hue_matches(lamp, h) {
                        *n += 1;
                    }
                }
            }
        }
    }
    if all == 0 {
        [0.0; 3]
    } else {
        lit.map(|n| n as f32 / all as f32)
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
        spill: 0.0,
    };
    if !view.is_consistent() {
        return unknown;
    }
    // by_hue[rect][hue]: the share of lamp `rect`'s rectangle lit in lamp
    // `hue`'s colour.
    let mut by_hue = [[0.0f32; 3]; 3];
    for (i, r) in [lamps.red, lamps.yellow, lamps.green]
        .into_iter()
        .enumerate()
    {
        if let Some(rect) = scaled(r, site_frame, view) {
            by_hue[i] = lit_shares(view, rect, config);
        }
    }
    let shares = [by_hue[0][0], by_hue[1][1], by_hue[2][2]];
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
    let (win, best, second) = (order[0], shares[order[0]], shares[order[1]]);
    let spill = (0..3)
        .filter(|&i| i != win)
        .map(|i| by_hue[i][win])
        .fold(0.0f32, f32::max);
    let state = if best >= config.min_fraction
        && best >= config.dominance * second
        && spill <= config.max_spill
    {
        [SignalState::Red, SignalState::Yellow, SignalState::Green][win]
    } else {
        SignalState::Unknown
    };
    LampReading {
        state,
        shares,
        spill,
    }
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

    #[test]
    fn a_colour_over_more_than_its_lamp_is_no_lamp() {
        // 10×30 RGB: lamps are rows 0-9, 10-19, 20-29.
        let rect = |y| Rect {
            x: 0,
            y,
            w: 10,
            h: 10,
        };
        let lamps = LampRegions {
            red: rect(0),
            yellow: rect(10),
            green: rect(20),
        };
        let size = FrameSize {
            width: 10,
            height: 30,
        };
        let read = |red_rows: u32| {
            let mut data = vec![20u8; 10 * 30 * 3];
            for px in data.chunks_mut(3).take((10 * red_rows) as usize) {
                px.copy_from_slice(&[220, 30, 30]);
            }
            let view = FrameView {
                data: &data,
                width: 10,
                height: 30,
                stride: 30,
                format: PixelFormat::Rgb8,
            };
            read_lamps(&view, &lamps, size, &LampConfig::default())
        };
        let lamp = read(10);
        assert_eq!((lamp.state, lamp.spill), (SignalState::Red, 0.0));
        // Its halo over two rows of the yellow lamp: still the red lamp.
        let halo = read(12);
        assert_eq!((halo.state, halo.spill), (SignalState::Red, 0.2));
        // A red body over all three: the yellow and green lamps are not off.
        let body = read(30);
        assert_eq!((body.state, body.spill), (SignalState::Unknown, 1.0));
        assert_eq!(body.shares, [1.0, 0.0, 0.0]);
    }
}
