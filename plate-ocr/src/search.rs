//! Finding a plate by reading: where the plate detector finds nothing in a
//! vehicle's box (the y5fu detector, trained on Chinese car plates, misses
//! most Vietnamese motorbike plates), plate-shaped windows over the part of
//! the box where a plate sits are each read by the recogniser, and the
//! window whose read is the most confident *valid* plate wins.
//!
//! Why this is safe enough for enforcement: a window only counts when the
//! grammar accepts its text as a Vietnamese plate at the pipeline's
//! confidence threshold; the edge reads several frames of the track and
//! fuses them, so a texture that happens to read as a plate on one frame
//! makes the result unreadable rather than wrong unless every frame agrees.
//! Why it is affordable: it runs on the post-processing worker, for
//! violators only, and the project's recogniser reads a window in about a
//! millisecond; [`WindowSearch::max_windows`] bounds the cost.

use opencv::core::{Mat, MatTraitConst, Rect};

use crate::colour::plate_colour;
use crate::error::{CvContext, Result};
use crate::image_file::checked_size;
use crate::pipeline::{NEAR_MISS_SHARE, Pipeline, PlateRead};

/// Where and at what sizes windows are tried, as fractions of the vehicle
/// box (the search region).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSearch {
    /// Window widths as fractions of the region's width.
    pub widths: Vec<f32>,
    /// Window width / height (a motorbike plate is 190 × 140 mm).
    pub aspect: f32,
    /// Horizontal band searched (fractions of the region's width).
    pub x_band: (f32, f32),
    /// Vertical band searched (fractions of the region's height): plates
    /// sit in the lower part of a motorbike, front or rear.
    pub y_band: (f32, f32),
    /// Step between windows, as a fraction of the window's size.
    pub stride: f32,
    /// Windows narrower than this many pixels are not tried (nothing
    /// legible fits).
    pub min_width_px: i32,
    /// Most windows read per region (the coarse ones first).
    pub max_windows: usize,
}

impl WindowSearch {
    /// Two-line motorbike plates in a (padded) motorbike box.
    pub fn motorbike() -> WindowSearch {
        WindowSearch {
            widths: vec![0.40, 0.30, 0.22],
            aspect: 190.0 / 140.0,
            x_band: (0.05, 0.95),
            y_band: (0.30, 1.0),
            stride: 0.34,
            min_width_px: 14,
            max_windows: 160,
        }
    }

    /// The windows for a `width` × `height` region, largest first.
    pub fn windows(&self, width: i32, height: i32) -> Vec<Rect> {
        let mut out = Vec::new();
        let (bx0, bx1) = band(self.x_band, width);
        let (by0, by1) = band(self.y_band, height);
        for &f in &self.widths {
            let w = (f * width as f32).round() as i32;
            let h = (w as f32 / self.aspect.max(0.1)).round() as i32;
            if w < self.min_width_px || h < 8 || w > bx1 - bx0 || h > by1 - by0 {
                continue;
            }
            let sx = ((w as f32 * self.stride).round() as i32).max(1);
            let sy = ((h as f32 * self.stride).round() as i32).max(1);
            let mut y = by0;
            while y + h <= by1 {
                let mut x = bx0;
                while x + w <= bx1 {
                    out.push(Rect::new(x, y, w, h));
                    if out.len() >= self.max_windows {
                        return out;
                    }
                    x += sx;
                }
                y += sy;
            }
        }
        out
    }
}

fn band((a, b): (f32, f32), size: i32) -> (i32, i32) {
    let lo = (a.clamp(0.0, 1.0) * size as f32).floor() as i32;
    let hi = (b.clamp(0.0, 1.0) * size as f32).ceil() as i32;
    (lo.min(size), hi.clamp(lo, size))
}

impl Pipeline {
    /// Reads every window of `search` in `region` (BGR) and returns the most
    /// confident valid plate, its box in `region`'s coordinates; `None` when
    /// no window reads as a valid plate, or when windows that do not
    /// overlap read *different* valid plates: two plates in the region (the
    /// violator's and the one alongside). Choosing between them by
    /// confidence could fine the wrong owner; a person reads such a case
    /// instead. The same holds when the other plate was only *nearly*
    /// read: a window apart from the answer's whose best valid plate is a
    /// different one, under the threshold but at no less than
    /// [`NEAR_MISS_SHARE`] of it (the neighbour's clear plate beside the
    /// violator's blurred one) also gives `None`. The search refuses rather
    /// than answer with the rival as `near_miss`, because the edge takes
    /// near misses from the detector's reads only. Overlapping windows that
    /// read one plate differently are one plate read unsurely: the most
    /// confident read stands, and the violator's frames must still agree
    /// with each other.
    pub fn search_windows(&self, region: &Mat, search: &WindowSearch) -> Result<Option<PlateRead>> {
        let (w, h) = checked_size(region, "search region")?;
        let floor = NEAR_MISS_SHARE * self.config().min_confidence;
        let mut best: Option<(PlateRead, Mat, Rect)> = None;
        let mut seen: Vec<(String, Rect)> = Vec::new();
        let mut nearly: Vec<(String, Rect)> = Vec::new();
        for r in search.windows(w, h) {
            let crop = Mat::roi(region, r)
                .and_then(|m| m.try_clone())
                .cv("cutting a search window")?;
            // The colour is measured once, on the winner, not per window.
            let mut read = self.read_text(&crop, Some(2))?;
            if !read.valid || read.unreadable {
                if let Some(t) = read.near_miss.take()
                    && read.confidence >= floor
                {
                    nearly.push((t, r));
                }
                continue;
            }
            if let Some(t) = &read.text {
                seen.push((t.clone(), r));
            }
            if best
                .as_ref()
                .is_some_and(|(b, _, _)| b.confidence >= read.confidence)
            {
                continue;
            }
            let (x, y, rw, rh) = (r.x as f32, r.y as f32, r.width as f32, r.height as f32);
            read.bbox = [x, y, rw, rh];
            read.corners = [[x, y], [x + rw, y], [x + rw, y + rh], [x, y + rh]];
            read.detector_score = 0.0;
            best = Some((read, crop, r));
        }
        let apart = |a: &Rect, b: &Rect| {
            a.x + a.width <= b.x
                || b.x + b.width <= a.x
                || a.y + a.height <= b.y
                || b.y + b.height <= a.y
        };
        let two_plates = seen.iter().enumerate().any(|(i, (ta, ra))| {
            seen[i + 1..]
                .iter()
                .any(|(tb, rb)| ta != tb && apart(ra, rb))
        });
        let Some((mut read, crop, at)) = best else {
            return Ok(None);
        };
        let rival_nearly_read = nearly
            .iter()
            .any(|(t, r)| read.text.as_ref() != Some(t) && apart(r, &at));
        if two_plates || rival_nearly_read {
            return Ok(None);
        }
        read.colour = plate_colour(&crop, &self.config().colour)?.0;
        Ok(Some(read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_stay_inside_the_band_and_the_budget() {
        let s = WindowSearch::motorbike();
        let ws = s.windows(120, 160);
        assert!(!ws.is_empty());
        assert!(ws.len() <= s.max_windows);
        for r in &ws {
            assert!(r.x >= 6 && r.x + r.width <= 114, "{r:?}");
            assert!(r.y >= 48 && r.y + r.height <= 160, "{r:?}");
            assert!(r.width >= s.min_width_px);
        }
        // Largest windows come first.
        assert!(ws.first().map(|r| r.width) > ws.last().map(|r| r.width));
    }

    #[test]
    fn a_region_too_small_for_any_window_gives_none() {
        assert!(WindowSearch::motorbike().windows(20, 20).is_empty());
        assert!(WindowSearch::motorbike().windows(0, 0).is_empty());
    }

    #[test]
    fn the_budget_cuts_the_search() {
        let s = WindowSearch {
            max_windows: 5,
            ..WindowSearch::motorbike()
        };
        assert_eq!(s.windows(600, 800).len(), 5);
    }
}
