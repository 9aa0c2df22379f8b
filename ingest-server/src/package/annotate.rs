//! Marks the violating vehicle on the full-frame stills of a case, for the
//! `annotated/` copies in the evidence package and the overlay on the
//! summary's overview picture. Drawn by hand on `image` buffers: the server
//! links neither OpenCV nor ONNX Runtime (`make check-server-deps`).
//!
//! What the signed event says about where the vehicle was: its track, up to
//! 64 bottom-centre points (where the wheels meet the road) in full-frame
//! pixels, with first and last times. It carries no box of the vehicle at
//! the violation (since schema 1.1 only `plate.source`, the violator's box
//! on the frame the plate was read on, which is often another frame; it is
//! shown on the case page, not drawn here). So the overlay is
//! built from signed facts first and marks what is inferred as such:
//! - the path: every track point, joined in frame order (signed data);
//! - the vehicle's position at the moment of violation: the track point
//!   nearest the event time, frames spread evenly between first and last
//!   seen (an estimate);
//! - the box: only when the case has a vehicle crop (`vehicle_crop`, the
//!   lower half of the vehicle's box cut by the edge from the overview
//!   frame) and that crop is found again in the overview near the track
//!   (mean difference at most [`MATCH_LIMIT`] of 255): the box is then the
//!   crop's place, twice its height. Otherwise no box is drawn.
//!
//! Crops (plate, vehicle, signal) are not annotated: track coordinates are
//! full-frame pixels and mean nothing on a crop.

use image::{Rgb, RgbImage};
use protocol::ViolationEvent;

/// Largest mean absolute difference (0–255, over all channels) at which the
/// vehicle crop counts as found in the overview. The crop is cut from the
/// same frame, so only JPEG noise separates them (typically 1–4).
pub const MATCH_LIMIT: f64 = 12.0;

/// What to draw on a full frame, in its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    /// The track, bottom-centre points in frame order.
    pub path: Vec<(u32, u32)>,
    /// The estimated position at the moment of violation.
    pub marker: Option<(u32, u32)>,
    /// The vehicle's box `(x, y, w, h)` when the vehicle crop was found.
    pub vehicle_box: Option<(u32, u32, u32, u32)>,
    /// How the box was found or why there is none (Vietnamese, one line).
    pub note: String,
}

const RED: Rgb<u8> = Rgb([230, 20, 20]);
const YELLOW: Rgb<u8> = Rgb([255, 220, 0]);
const DARK: Rgb<u8> = Rgb([0, 0, 0]);

/// The overlay for the overview of `event`, given the overview's pixels and
/// the vehicle crop's, if the case has one.
pub fn overlay(event: &ViolationEvent, overview: &RgbImage, crop: Option<&RgbImage>) -> Overlay {
    let path: Vec<(u32, u32)> = event.track.points.iter().map(|p| (p.x, p.y)).collect();
    let marker = moment_point(event);
    let mut ov = Overlay {
        path,
        marker,
        vehicle_box: None,
        note: String::new(),
    };
    let (Some(crop), Some((mx, my))) = (crop, marker) else {
        ov.note = if crop.is_none() {
            "Không có khung xe: sự kiện đã ký không chứa khung, và vụ việc không có ảnh cắt phương tiện.".into()
        } else {
            "Không có khung xe: sự kiện không có điểm quỹ đạo nào.".into()
        };
        return ov;
    };
    match find(overview, crop, mx, my) {
        Some((x, bottom, diff)) if diff <= MATCH_LIMIT => {
            let (w, h) = crop.dimensions();
            let top = bottom.saturating_sub(2 * h);
            ov.vehicle_box = Some((x, top, w, bottom - top));
            ov.note = format!(
                "Khung xe suy ra từ ảnh cắt phương tiện tìm lại trong ảnh toàn cảnh (sai khác trung bình {diff:.1}/255); quỹ đạo và các điểm là dữ liệu đã ký."
            );
        }
        Some((_, _, diff)) => {
            ov.note = format!(
                "Không vẽ khung xe: ảnh cắt phương tiện không khớp ảnh toàn cảnh gần quỹ đạo (sai khác {diff:.1}/255 > {MATCH_LIMIT})."
            );
        }
        None => {
            ov.note = "Không vẽ khung xe: ảnh cắt phương tiện lớn hơn ảnh toàn cảnh.".into();
        }
    }
    ov
}

/// The track point nearest the event time, frames spread evenly between
/// the first and last time the vehicle was seen.
fn moment_point(event: &ViolationEvent) -> Option<(u32, u32)> {
    let pts = &event.track.points;
    let (first, last) = (pts.first()?, pts.last()?);
    let t0 = event.track.first_seen;
    let span = (event.track.last_seen - t0).as_seconds_f64();
    let frames = last.frame.saturating_sub(first.frame) as f64;
    let at = (event.event_time - t0).as_seconds_f64();
    let target = if span > 0.0 && frames > 0.0 {
        first.frame as f64 + (at / span).clamp(0.0, 1.0) * frames
    } else {
        first.frame as f64
    };
    pts.iter()
        .min_by(|a, b| {
            let da = (a.frame as f64 - target).abs();
            let db = (b.frame as f64 - target).abs();
            da.total_cmp(&db)
        })
        .map(|p| (p.x, p.y))
}

/// Where the crop sits in `img` with its bottom centre near `(mx, my)`:
/// top-left x, the crop's bottom y, and the mean difference there.
fn find(img: &RgbImage, crop: &RgbImage, mx: u32, my: u32) -> Option<(u32, u32, f64)> {
    let (iw, ih) = img.dimensions();
    let (cw, ch) = crop.dimensions();
    if cw == 0 || ch == 0 || cw > iw || ch > ih {
        return None;
    }
    let reach = i64::from(cw.max(ch) / 2 + 16);
    let (max_x, max_y) = (i64::from(iw - cw), i64::from(ih - ch));
    let cx = i64::from(mx) - i64::from(cw / 2);
    let cy = i64::from(my) - i64::from(ch);
    let xs = ((cx - reach).clamp(0, max_x), (cx + reach).clamp(0, max_x));
    let ys = ((cy - reach).clamp(0, max_y), (cy + reach).clamp(0, max_y));
    // Coarse pass on a grid, then a fine pass around the best.
    let step = i64::from((cw.min(ch) / 16).max(1));
    let best = search(img, crop, xs, ys, step, step)?;
    let fine = (
        ((best.0 - step).max(0), (best.0 + step).min(max_x)),
        ((best.1 - step).max(0), (best.1 + step).min(max_y)),
    );
    let (x, y, diff) = search(img, crop, fine.0, fine.1, 1, 2)?;
    let x = u32::try_from(x).ok()?;
    let y = u32::try_from(y).ok()?;
    Some((x, y + ch, diff))
}

/// The lowest mean difference over top-left positions in the ranges
/// (every `step`), comparing every `sample`-th pixel.
fn search(
    img: &RgbImage,
    crop: &RgbImage,
    xs: (i64, i64),
    ys: (i64, i64),
    step: i64,
    sample: i64,
) -> Option<(i64, i64, f64)> {
    let (cw, ch) = (i64::from(crop.width()), i64::from(crop.height()));
    let mut best: Option<(i64, i64, f64)> = None;
    let mut y = ys.0;
    while y <= ys.1 {
        let mut x = xs.0;
        while x <= xs.1 {
            let (mut sum, mut n) = (0u64, 0u64);
            let mut v = 0;
            while v < ch {
                let mut u = 0;
                while u < cw {
                    let a = crop.get_pixel(u as u32, v as u32).0;
                    let b = img.get_pixel((x + u) as u32, (y + v) as u32).0;
                    for k in 0..3 {
                        sum += u64::from(a[k].abs_diff(b[k]));
                    }
                    n += 3;
                    u += sample;
                }
                v += sample;
            }
            let diff = sum as f64 / n.max(1) as f64;
            if best.is_none_or(|b| diff < b.2) {
                best = Some((x, y, diff));
            }
            x += step;
        }
        y += step;
    }
    best
}

/// Draws the overlay on a full frame: the path in yellow, the marker and
/// the box in red, each with a dark edge so they show on any background.
pub fn draw(img: &mut RgbImage, ov: &Overlay) {
    let t = (img.height() / 360).max(1) as i64 + 1;
    for w in ov.path.windows(2) {
        line(img, w[0], w[1], t + 2, DARK);
        line(img, w[0], w[1], t, YELLOW);
    }
    for p in &ov.path {
        disc(img, *p, t + 2, DARK);
        disc(img, *p, t + 1, YELLOW);
    }
    if let Some(m) = ov.marker {
        ring(img, m, 6 * t + 4, t + 2, DARK);
        ring(img, m, 6 * t + 4, t, RED);
    }
    if let Some((x, y, w, h)) = ov.vehicle_box {
        let (x, y, w, h) = (i64::from(x), i64::from(y), i64::from(w), i64::from(h));
        rect(img, x - 1, y - 1, w + 2, h + 2, t + 2, DARK);
        rect(img, x, y, w, h, t, RED);
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(img.width()) && y < i64::from(img.height()) {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn disc(img: &mut RgbImage, (cx, cy): (u32, u32), r: i64, c: Rgb<u8>) {
    let (cx, cy) = (i64::from(cx), i64::from(cy));
    for dy in -r..=r {
        for dx in -r..=r {
            if dx * dx + dy * dy <= r * r {
                put(img, cx + dx, cy + dy, c);
            }
        }
    }
}

fn ring(img: &mut RgbImage, (cx, cy): (u32, u32), r: i64, t: i64, c: Rgb<u8>) {
    let (cx, cy) = (i64::from(cx), i64::from(cy));
    let (inner, outer) = ((r - t / 2 - 1).max(0).pow(2), (r + t / 2 + 1).pow(2));
    let reach = r + t;
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            let d = dx * dx + dy * dy;
            if d >= inner && d <= outer {
                put(img, cx + dx, cy + dy, c);
            }
        }
    }
}

fn line(img: &mut RgbImage, a: (u32, u32), b: (u32, u32), t: i64, c: Rgb<u8>) {
    let (x0, y0) = (f64::from(a.0), f64::from(a.1));
    let (x1, y1) = (f64::from(b.0), f64::from(b.1));
    let n = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i64;
    for i in 0..=n {
        let f = i as f64 / n as f64;
        let p = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
        disc(img, (p.0.round() as u32, p.1.round() as u32), t / 2, c);
    }
}

fn rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, t: i64, c: Rgb<u8>) {
    for k in 0..t {
        for u in x - k..=x + w + k {
            put(img, u, y - k, c);
            put(img, u, y + h + k, c);
        }
        for v in y - k..=y + h + k {
            put(img, x - k, v, c);
            put(img, x + w + k, v, c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured frame with a "vehicle" whose lower half is cut as the crop.
    fn scene() -> (RgbImage, RgbImage, (u32, u32, u32, u32)) {
        let img = RgbImage::from_fn(320, 180, |x, y| {
            let inside = (120..200).contains(&x) && (60..120).contains(&y);
            if inside {
                let h = (x * 7919 + y * 104_729) ^ (x * y * 31);
                Rgb([(h % 200) as u8 + 40, (h / 7 % 90) as u8, 160])
            } else {
                Rgb([(x / 3) as u8, (y / 2) as u8 + 40, ((x + y) % 50) as u8])
            }
        });
        let crop = image::imageops::crop_imm(&img, 120, 90, 80, 30).to_image();
        (img, crop, (120, 60, 80, 60))
    }

    #[test]
    fn finds_the_crop_near_the_track_and_draws_the_box() {
        let (img, crop, truth) = scene();
        // Bottom centre of the box is (160, 120); start the search off by a bit.
        let (x, bottom, diff) = find(&img, &crop, 166, 114).unwrap();
        assert_eq!((x, bottom), (truth.0, truth.1 + truth.3));
        assert!(diff < 0.5, "{diff}");
        let ov = Overlay {
            path: vec![(100, 150), (160, 120)],
            marker: Some((160, 120)),
            vehicle_box: Some(truth),
            note: String::new(),
        };
        let mut drawn = img.clone();
        draw(&mut drawn, &ov);
        assert_eq!(*drawn.get_pixel(140, 60), RED);
        assert_eq!(*drawn.get_pixel(5, 5), *img.get_pixel(5, 5));
    }

    #[test]
    fn a_crop_from_elsewhere_is_not_matched() {
        let (img, _, _) = scene();
        let other = RgbImage::from_pixel(80, 30, Rgb([255, 255, 255]));
        let (_, _, diff) = find(&img, &other, 160, 120).unwrap();
        assert!(diff > MATCH_LIMIT, "{diff}");
    }
}
