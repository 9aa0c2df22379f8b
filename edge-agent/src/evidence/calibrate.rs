//! The calibration drawing: a whole site configuration drawn on one frame
//! of the camera, so a technician can check it against the road before the
//! site goes live (`edge-agent calibrate`).
//!
//! Drawn: stop lines (red) with an arrow showing the approach direction and
//! their ids; lanes (yellow) with id, allowed manoeuvres, classes, lane group
//! and heading arrow; signal lamp rectangles in their colours with the
//! group; speed calibration (the two lines in cyan with the distance, or the
//! four ground points with their metre coordinates); no-stopping zones
//! (magenta) with the longest allowed dwell; privacy masks outlined and
//! hatched in grey (not filled, so the technician sees what they hide).
//! Nothing is drawn on the frame itself: the drawing is a copy.

use super::stills::{check_size, cv_point, cv_poly, frame_copy, label, scalar};
use super::{EvidenceError, cv};
use crate::capture::Frame;
use crate::geometry::{Point as GPoint, Polygon};
use crate::site::{Manoeuvre, Rect as SiteRect, SiteConfig};
use opencv::core::{self, Mat, Point, Rect, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;

const RED: [u8; 3] = [0, 0, 255];
const YELLOW: [u8; 3] = [0, 255, 255];
const GREEN: [u8; 3] = [0, 200, 0];
const CYAN: [u8; 3] = [255, 255, 0];
const MAGENTA: [u8; 3] = [255, 0, 255];
const GREY: [u8; 3] = [200, 200, 200];
const WHITE: [u8; 3] = [255, 255, 255];

fn centroid(points: &[GPoint]) -> GPoint {
    let n = points.len().max(1) as f64;
    let (x, y) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
    GPoint::new(x / n, y / n)
}

fn outline(img: &mut Mat, poly: &Polygon, bgr: [u8; 3], t: i32) -> Result<(), EvidenceError> {
    let mut polys = Vector::<Vector<Point>>::new();
    polys.push(cv_poly(&poly.points));
    imgproc::polylines(img, &polys, true, scalar(bgr), t, imgproc::LINE_AA, 0)
        .map_err(cv("drawing a polygon"))
}

fn arrow(
    img: &mut Mat,
    from: GPoint,
    to: GPoint,
    bgr: [u8; 3],
    t: i32,
) -> Result<(), EvidenceError> {
    imgproc::arrowed_line(
        img,
        cv_point(from),
        cv_point(to),
        scalar(bgr),
        t,
        imgproc::LINE_AA,
        0,
        0.3,
    )
    .map_err(cv("drawing an arrow"))
}

fn line(img: &mut Mat, a: GPoint, b: GPoint, bgr: [u8; 3], t: i32) -> Result<(), EvidenceError> {
    imgproc::line(
        img,
        cv_point(a),
        cv_point(b),
        scalar(bgr),
        t,
        imgproc::LINE_AA,
        0,
    )
    .map_err(cv("drawing a line"))
}

fn text_at(img: &mut Mat, lines: &[String], at: GPoint, bgr: [u8; 3]) -> Result<(), EvidenceError> {
    let (scale, thick) = super::stills::font_for(img.rows());
    let step = (30.0 * scale).round().max(10.0) as i32;
    let p = cv_point(at);
    let (w, h) = (img.cols(), img.rows());
    for (i, l) in lines.iter().enumerate() {
        let mut base = 0;
        let size =
            imgproc::get_text_size(l, imgproc::FONT_HERSHEY_SIMPLEX, scale, thick, &mut base)
                .map_err(cv("measuring text"))?;
        // Keep every label inside the image.
        let x = p.x.min(w - size.width - 4).max(2);
        let y = (p.y + step * i as i32).clamp(size.height + 2, (h - base - 2).max(size.height + 2));
        label(img, l, Point::new(x, y), bgr)?;
    }
    Ok(())
}

fn hatch(img: &mut Mat, poly: &Polygon, bgr: [u8; 3], t: i32) -> Result<(), EvidenceError> {
    let (w, h) = (img.cols(), img.rows());
    let mut mask = Mat::new_rows_cols_with_default(h, w, core::CV_8UC1, core::Scalar::all(0.0))
        .map_err(cv("making a hatch mask"))?;
    let mut polys = Vector::<Vector<Point>>::new();
    polys.push(cv_poly(&poly.points));
    imgproc::fill_poly(
        &mut mask,
        &polys,
        core::Scalar::all(255.0),
        imgproc::LINE_8,
        0,
        Point::new(0, 0),
    )
    .map_err(cv("filling a hatch mask"))?;
    let mut lines = img.try_clone().map_err(cv("copying for hatching"))?;
    let gap = (h / 40).max(6);
    let mut x = -h;
    while x < w {
        imgproc::line(
            &mut lines,
            Point::new(x, h),
            Point::new(x + h, 0),
            scalar(bgr),
            t,
            imgproc::LINE_8,
            0,
        )
        .map_err(cv("hatching"))?;
        x += gap;
    }
    lines.copy_to_masked(img, &mask).map_err(cv("hatching"))
}

fn rect(r: SiteRect) -> Rect {
    Rect::new(r.x as i32, r.y as i32, r.w as i32, r.h as i32)
}

fn manoeuvre(m: Manoeuvre) -> &'static str {
    match m {
        Manoeuvre::Straight => "straight",
        Manoeuvre::Left => "left",
        Manoeuvre::Right => "right",
        Manoeuvre::UTurn => "u-turn",
    }
}

/// The site configuration drawn on a copy of `frame` (which must have the
/// site's frame size).
pub fn draw_site(frame: &Frame, site: &SiteConfig) -> Result<Mat, EvidenceError> {
    check_size(frame, site)?;
    let mut img = frame_copy(frame)?;
    let h = img.rows();
    let t = ((f64::from(h) / 1080.0) * 3.0).round().max(1.0) as i32;
    let arrow_len = f64::from(h) / 12.0;

    for m in &site.privacy_masks {
        hatch(&mut img, &m.polygon, GREY, 1)?;
        outline(&mut img, &m.polygon, GREY, t)?;
        let c = centroid(&m.polygon.points);
        text_at(&mut img, &["privacy mask".into()], c, GREY)?;
    }
    for z in &site.no_stopping_zones {
        outline(&mut img, &z.polygon, MAGENTA, t)?;
        let c = centroid(&z.polygon.points);
        text_at(
            &mut img,
            &[
                format!("no stopping {}", z.id),
                format!("max {} s", z.max_dwell_s),
            ],
            c,
            MAGENTA,
        )?;
    }
    for lane in &site.lanes {
        outline(&mut img, &lane.polygon, YELLOW, t)?;
        let c = centroid(&lane.polygon.points);
        let dirs: Vec<_> = lane.directions.iter().map(|m| manoeuvre(*m)).collect();
        let classes: Vec<_> = lane
            .classes
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut lines = vec![
            format!("lane {}", lane.id),
            dirs.join(","),
            classes.join(","),
        ];
        if let Some(g) = &lane.group {
            lines.push(format!("group {g}"));
        }
        if lane.right_turn_on_red {
            lines.push("right on red".into());
        }
        text_at(&mut img, &lines, c, YELLOW)?;
        let heading = lane.heading_deg.or_else(|| {
            let sl = lane.stop_line.as_deref()?;
            site.stop_lines
                .iter()
                .find(|s| s.id == sl)
                .map(|s| s.approach_deg)
        });
        if let Some(hd) = heading {
            let d = GPoint::from_heading(hd).scale(arrow_len * 0.6);
            let below = GPoint::new(c.x - arrow_len * 0.25, c.y);
            arrow(&mut img, below.minus(d), below, YELLOW, t)?;
        }
    }
    for s in &site.stop_lines {
        line(&mut img, s.points.a, s.points.b, RED, t * 2)?;
        let mid = s.points.a.lerp(s.points.b, 0.5);
        let d = GPoint::from_heading(s.approach_deg).scale(arrow_len);
        arrow(&mut img, mid.minus(d), mid, RED, t * 2)?;
        let label_at = mid.minus(d).plus(GPoint::new(8.0, 0.0));
        text_at(
            &mut img,
            &[
                format!("stop line {}", s.id),
                format!("approach {} deg", s.approach_deg),
            ],
            label_at,
            RED,
        )?;
    }
    for sig in &site.signals {
        let Some(l) = sig.lamps else { continue };
        for (r, c) in [(l.red, RED), (l.yellow, YELLOW), (l.green, GREEN)] {
            imgproc::rectangle(&mut img, rect(r), scalar(c), t.max(2), imgproc::LINE_8, 0)
                .map_err(cv("drawing a lamp"))?;
        }
        let x = f64::from(l.red.x.min(l.yellow.x).min(l.green.x));
        let y = f64::from(l.red.y.max(l.yellow.y).max(l.green.y) + l.green.h.max(l.red.h)) + 20.0;
        text_at(
            &mut img,
            &[format!("signal {}", sig.group)],
            GPoint::new(x - 40.0, y),
            WHITE,
        )?;
    }
    if let Some(speed) = &site.speed {
        if let Some(two) = &speed.two_lines {
            for (i, l) in two.lines.iter().enumerate() {
                line(&mut img, l.a, l.b, CYAN, t)?;
                let mut text = format!("speed line {}", i + 1);
                if i == 0 {
                    text.push_str(&format!(
                        " ({} m to line 2, +/-{} m)",
                        two.distance_m, two.distance_error_m
                    ));
                }
                let at = l.a.plus(GPoint::new(0.0, -8.0));
                text_at(&mut img, &[text], at, CYAN)?;
            }
        }
        if let Some(g) = &speed.homography {
            for (p, gm) in g.image.iter().zip(g.ground_m.iter()) {
                imgproc::circle(
                    &mut img,
                    cv_point(*p),
                    (t * 3).max(4),
                    scalar(CYAN),
                    -1,
                    imgproc::LINE_AA,
                    0,
                )
                .map_err(cv("drawing a ground point"))?;
                text_at(
                    &mut img,
                    &[format!("({}, {}) m", gm.x, gm.y)],
                    p.plus(GPoint::new(8.0, -8.0)),
                    CYAN,
                )?;
            }
            let ring: Vec<GPoint> = g.image.to_vec();
            outline(&mut img, &Polygon::new(ring), CYAN, 1)?;
        }
    }
    text_at(
        &mut img,
        &[format!(
            "{}  {}x{}  frame {}",
            site.camera_id, frame.width, frame.height, frame.number
        )],
        GPoint::new(10.0, 30.0_f64.max(f64::from(h) / 30.0)),
        WHITE,
    )?;
    Ok(img)
}

/// [`draw_site`] encoded as PNG.
pub fn calibration_png(frame: &Frame, site: &SiteConfig) -> Result<Vec<u8>, EvidenceError> {
    let img = draw_site(frame, site)?;
    let mut buf = Vector::<u8>::new();
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_PNG_COMPRESSION, 3]);
    let ok = imgcodecs::imencode(".png", &img, &mut buf, &params)
        .map_err(cv("encoding the calibration PNG"))?;
    if !ok || buf.is_empty() {
        return Err(EvidenceError::OpenCv {
            step: "encoding the calibration PNG".into(),
            message: "the PNG encoder produced nothing".into(),
        });
    }
    Ok(buf.to_vec())
}
