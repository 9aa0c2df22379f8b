//! Stills and crops: the privacy-masked copy of a frame (the "original"),
//! the annotated copy (stop line, the violation's lane, the violator's box,
//! and an information strip with camera, rule, signal, time and frame
//! number), crops of a box, and JPEG encoding.
//!
//! Everything is drawn on copies, never on the frame (whose pixels the ring
//! buffer and the analysis share). The annotated still gets a black strip
//! *added below* the frame for the text, so annotation never covers a pixel
//! of the scene (the signal head included); its top part has the frame's
//! size and coordinates.

use super::{EvidenceError, cv};
use crate::capture::Frame;
use crate::detect::frame_mat;
use crate::geometry::{BBox, Point as GPoint};
use crate::rules::Violation;
use crate::site::{PrivacyMask, SiteConfig};
use opencv::core::{self, Mat, Point, Rect, Scalar, Vector};
use opencv::imgcodecs;
use opencv::imgproc;
use opencv::prelude::*;
use time::UtcOffset;

/// Colour (BGR) privacy masks are filled with.
pub const MASK_BGR: [u8; 3] = [96, 96, 96];
/// Colour (BGR) of the violator's box.
pub const VIOLATOR_BGR: [u8; 3] = [255, 0, 255];

pub(crate) fn scalar(bgr: [u8; 3]) -> Scalar {
    Scalar::new(f64::from(bgr[0]), f64::from(bgr[1]), f64::from(bgr[2]), 0.0)
}

pub(crate) fn cv_point(p: GPoint) -> Point {
    Point::new(p.x.round() as i32, p.y.round() as i32)
}

pub(crate) fn cv_poly(points: &[GPoint]) -> Vector<Point> {
    points.iter().map(|p| cv_point(*p)).collect()
}

/// Refuses a frame whose size is not the site's.
pub(crate) fn check_size(frame: &Frame, site: &SiteConfig) -> Result<(), EvidenceError> {
    if (frame.width, frame.height) != (site.frame.width, site.frame.height) {
        return Err(EvidenceError::WrongFrameSize {
            camera: site.camera_id.clone(),
            number: frame.number,
            width: frame.width,
            height: frame.height,
            want_w: site.frame.width,
            want_h: site.frame.height,
        });
    }
    Ok(())
}

/// An owned copy of the frame's pixels.
pub(crate) fn frame_copy(frame: &Frame) -> Result<Mat, EvidenceError> {
    let view = frame_mat(frame).map_err(|e| EvidenceError::OpenCv {
        step: format!("wrapping frame {}", frame.number),
        message: e.to_string(),
    })?;
    view.try_clone()
        .map_err(cv(format!("copying frame {}", frame.number)))
}

/// Fills every privacy mask with [`MASK_BGR`].
pub(crate) fn apply_masks(img: &mut Mat, masks: &[PrivacyMask]) -> Result<(), EvidenceError> {
    if masks.is_empty() {
        return Ok(());
    }
    let polys: Vector<Vector<Point>> = masks.iter().map(|m| cv_poly(&m.polygon.points)).collect();
    imgproc::fill_poly(
        img,
        &polys,
        scalar(MASK_BGR),
        imgproc::LINE_8,
        0,
        Point::new(0, 0),
    )
    .map_err(cv("filling privacy masks"))
}

/// The frame with the privacy masks applied: the "original" still.
pub(crate) fn masked_copy(frame: &Frame, site: &SiteConfig) -> Result<Mat, EvidenceError> {
    let mut img = frame_copy(frame)?;
    apply_masks(&mut img, &site.privacy_masks)?;
    Ok(img)
}

/// JPEG bytes of `img` at `quality`, within [`MAX_STILL_BYTES`] (see
/// [`jpeg_fitted`]).
pub(crate) fn jpeg(img: &Mat, quality: i32, what: &str) -> Result<Vec<u8>, EvidenceError> {
    Ok(jpeg_fitted(img, quality, what)?.bytes)
}

/// A still encoded within its share of the bundle, and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fitted {
    /// The JPEG.
    pub bytes: Vec<u8>,
    /// The JPEG quality it was encoded at.
    pub quality: i32,
    /// Its size against the image's (1.0: full resolution).
    pub scale: f64,
}

impl Fitted {
    /// Whether it was encoded at less than asked for (quality or size).
    pub fn reduced(&self, asked: i32) -> bool {
        self.quality != asked.clamp(1, 100) || self.scale < 1.0
    }
}

/// JPEG bytes of `img` at `quality`, never over [`MAX_STILL_BYTES`].
///
/// The stills travel together in one bundle of at most
/// `MAX_BUNDLE_BYTES`, and a still the bundle cannot carry would be signed
/// and never delivered: so the bound is kept here, where the still is made,
/// before it is hashed and signed. A still over its share (a 4K frame at
/// quality 95) is encoded again at a lower quality, down to
/// [`MIN_FITTING_QUALITY`]; one still over it there (a very busy picture)
/// is scaled down until it fits. Both are logged, and the result says which
/// quality and scale were used.
pub(crate) fn jpeg_fitted(img: &Mat, quality: i32, what: &str) -> Result<Fitted, EvidenceError> {
    let asked = quality.clamp(1, 100);
    let floor = asked.min(MIN_FITTING_QUALITY);
    let mut q = asked;
    let mut bytes = loop {
        let bytes = jpeg_at(img, q, what)?;
        if bytes.len() <= MAX_STILL_BYTES || q <= floor {
            break bytes;
        }
        q = (q - 10).max(floor);
    };
    let mut scale = 1.0f64;
    while bytes.len() > MAX_STILL_BYTES {
        // Bytes go roughly with the area: aim a little under the bound.
        let step = ((MAX_STILL_BYTES as f64 / bytes.len() as f64).sqrt() * 0.95).min(0.9);
        scale *= step;
        let w = ((f64::from(img.cols()) * scale).round() as i32).max(1);
        let h = ((f64::from(img.rows()) * scale).round() as i32).max(1);
        let mut small = Mat::default();
        imgproc::resize(
            img,
            &mut small,
            core::Size::new(w, h),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .map_err(cv(format!("scaling {what} down")))?;
        bytes = jpeg_at(&small, q, what)?;
        if w <= 16 || h <= 16 {
            break;
        }
    }
    if q != asked || scale < 1.0 {
        tracing::warn!(
            still = what,
            quality = q,
            asked,
            scale,
            bytes = bytes.len(),
            limit = MAX_STILL_BYTES,
            "a still over its share of the bundle was encoded smaller"
        );
    }
    Ok(Fitted {
        bytes,
        quality: q,
        scale,
    })
}

/// A still's share of an event bundle: the bundle's limit less room for
/// the signed event, over the most files a bundle carries (six stills, the
/// vehicle, the signal, the plate and the plate's frame: ten, with a
/// margin of two).
pub(crate) const MAX_STILL_BYTES: usize = (protocol::transfer::MAX_BUNDLE_BYTES - (1 << 20)) / 12;

/// The lowest quality [`jpeg_fitted`] goes down to for size before it
/// scales the picture down.
const MIN_FITTING_QUALITY: i32 = 40;

fn jpeg_at(img: &Mat, quality: i32, what: &str) -> Result<Vec<u8>, EvidenceError> {
    let mut buf = Vector::<u8>::new();
    let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality]);
    let ok = imgcodecs::imencode(".jpg", img, &mut buf, &params)
        .map_err(cv(format!("encoding {what}")))?;
    if !ok || buf.is_empty() {
        return Err(EvidenceError::OpenCv {
            step: format!("encoding {what}"),
            message: "the JPEG encoder produced nothing".into(),
        });
    }
    Ok(buf.to_vec())
}

/// `bbox` clamped to a `w`×`h` image, `None` if nothing is left.
pub(crate) fn clamp_rect(bbox: BBox, w: i32, h: i32) -> Option<Rect> {
    if !bbox.is_valid() {
        return None;
    }
    let [x1, y1, x2, y2] = bbox.to_xyxy();
    let x1 = (x1.floor() as i64).clamp(0, i64::from(w)) as i32;
    let y1 = (y1.floor() as i64).clamp(0, i64::from(h)) as i32;
    let x2 = (x2.ceil() as i64).clamp(0, i64::from(w)) as i32;
    let y2 = (y2.ceil() as i64).clamp(0, i64::from(h)) as i32;
    (x2 > x1 && y2 > y1).then(|| Rect::new(x1, y1, x2 - x1, y2 - y1))
}

/// An owned crop of `img` to `bbox` (clamped), `None` if it lies outside.
pub(crate) fn crop(img: &Mat, bbox: BBox) -> Result<Option<Mat>, EvidenceError> {
    let Some(r) = clamp_rect(bbox, img.cols(), img.rows()) else {
        return Ok(None);
    };
    let view = Mat::roi(img, r).map_err(cv("cropping"))?;
    Ok(Some(view.try_clone().map_err(cv("copying a crop"))?))
}

/// Colour (BGR) of the plate's box on the plate-frame still.
pub const PLATE_BGR: [u8; 3] = [0, 255, 0];

/// The still that shows whose plate was read: the violator's box (magenta)
/// and the plate's box (green) drawn on a copy of `masked` (the frame the
/// plate was read on), both just *outside* the boxes so no pixel of the
/// plate or the vehicle is covered, cut to the vehicle with half its size
/// around it so the neighbours show too, and a black strip added below
/// with the frame number (as the annotated stills do: annotation never
/// covers the scene).
pub(crate) fn plate_context(
    masked: &Mat,
    number: u64,
    vehicle: BBox,
    plate: BBox,
) -> Result<Option<Mat>, EvidenceError> {
    let (w, h) = (masked.cols(), masked.rows());
    let (Some(v), Some(p)) = (clamp_rect(vehicle, w, h), clamp_rect(plate, w, h)) else {
        return Ok(None);
    };
    let mut img = masked.try_clone().map_err(cv("copying a still"))?;
    let t = ((f64::from(h) / 1080.0) * 3.0).round().max(2.0) as i32;
    // A rectangle of thickness `t` is centred on its outline: grow each box
    // by half of it and a pixel so the line lies wholly outside.
    let outside = |r: Rect, t: i32| {
        let g = t / 2 + 1;
        Rect::new(r.x - g, r.y - g, r.width + 2 * g, r.height + 2 * g)
    };
    imgproc::rectangle(
        &mut img,
        outside(v, t),
        scalar(VIOLATOR_BGR),
        t,
        imgproc::LINE_8,
        0,
    )
    .map_err(cv("drawing the violator's box"))?;
    let pt = (t / 2).max(2);
    imgproc::rectangle(
        &mut img,
        outside(p, pt),
        scalar(PLATE_BGR),
        pt,
        imgproc::LINE_8,
        0,
    )
    .map_err(cv("drawing the plate's box"))?;
    let m = vehicle.w.max(vehicle.h) * 0.5;
    let area = BBox::from_xyxy(
        vehicle.x - m,
        vehicle.y - m,
        vehicle.x + vehicle.w + m,
        vehicle.y + vehicle.h + m,
    );
    let Some(cut) = crop(&img, area)? else {
        return Ok(None);
    };
    let (scale, thick) = font_for(cut.rows().max(360));
    let strip = (30.0 * scale).round().max(14.0) as i32 + thick * 2;
    let mut out = Mat::default();
    core::copy_make_border(
        &cut,
        &mut out,
        0,
        strip,
        0,
        0,
        core::BORDER_CONSTANT,
        Scalar::all(0.0),
    )
    .map_err(cv("adding the caption strip"))?;
    let text_y = out.rows() - strip / 3;
    label(
        &mut out,
        &format!("plate read on frame {number}"),
        Point::new(4, text_y),
        [255, 255, 255],
    )?;
    Ok(Some(out))
}

/// Text scale and thickness for an image of height `h`.
pub(crate) fn font_for(h: i32) -> (f64, i32) {
    let scale = (f64::from(h) / 1080.0 * 1.0).max(0.35);
    let thick = ((f64::from(h) / 1080.0 * 2.0).round() as i32).max(1);
    (scale, thick)
}

/// Writes `text` at `org` (baseline left) with a dark outline for contrast.
pub(crate) fn label(
    img: &mut Mat,
    text: &str,
    org: Point,
    bgr: [u8; 3],
) -> Result<(), EvidenceError> {
    let (scale, thick) = font_for(img.rows());
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    imgproc::put_text(
        img,
        text,
        org,
        font,
        scale,
        Scalar::all(0.0),
        thick + 2,
        imgproc::LINE_AA,
        false,
    )
    .map_err(cv("drawing text"))?;
    imgproc::put_text(
        img,
        text,
        org,
        font,
        scale,
        scalar(bgr),
        thick,
        imgproc::LINE_AA,
        false,
    )
    .map_err(cv("drawing text"))
}

/// Which of the three stills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    Before,
    At,
    After,
}

impl Moment {
    pub fn name(self) -> &'static str {
        match self {
            Moment::Before => "before",
            Moment::At => "at",
            Moment::After => "after",
        }
    }

    fn caption(self) -> &'static str {
        match self {
            Moment::Before => "BEFORE",
            Moment::At => "VIOLATION",
            Moment::After => "AFTER",
        }
    }
}

/// What an annotated still shows besides the frame.
pub(crate) struct Annotation<'a> {
    pub site: &'a SiteConfig,
    pub violation: &'a Violation,
    pub moment: Moment,
    /// The violator's box in this frame, when known.
    pub violator: Option<BBox>,
    pub offset: UtcOffset,
}

fn time_text(frame: &Frame, offset: UtcOffset) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3] [offset_hour sign:mandatory]:[offset_minute]"
    );
    frame
        .time
        .to_offset(offset)
        .format(&fmt)
        .unwrap_or_else(|_| frame.time.unix_timestamp().to_string())
}

fn info_lines(frame: &Frame, a: &Annotation<'_>) -> Vec<String> {
    let v = a.violation;
    let rule = serde_json::to_value(v.rule)
        .ok()
        .and_then(|j| j.as_str().map(str::to_uppercase))
        .unwrap_or_else(|| format!("{:?}", v.rule));
    let class = serde_json::to_value(v.class)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut first = format!(
        "{}  {}  {}  track {}",
        a.site.camera_id, rule, class, v.track_id
    );
    if let Some(lane) = &v.lane {
        first.push_str(&format!("  lane {lane}"));
    }
    let second = format!(
        "{}  frame {}  {}",
        a.moment.caption(),
        frame.number,
        time_text(frame, a.offset)
    );
    let mut third = match &v.signal {
        Some(s) => {
            let state = serde_json::to_value(s.state)
                .ok()
                .and_then(|j| j.as_str().map(str::to_uppercase))
                .unwrap_or_default();
            match s.red_for_ms {
                Some(ms) => format!("signal {state}, red for {:.1} s", ms as f64 / 1000.0),
                None => format!("signal {state}"),
            }
        }
        None => "signal: none for this lane".to_string(),
    };
    if let Some(s) = &v.speed {
        third.push_str(&format!(
            "  speed {:.1} km/h (limit {}, +/-{:.1})",
            s.measured_kmh, s.limit_kmh, s.uncertainty_kmh
        ));
    }
    vec![first, second, third]
}

/// The annotated still: the masked frame with the overlay and an
/// information strip added below.
pub(crate) fn annotated(
    masked: &Mat,
    frame: &Frame,
    a: &Annotation<'_>,
) -> Result<Mat, EvidenceError> {
    let mut img = masked.try_clone().map_err(cv("copying a still"))?;
    let h = img.rows();
    let line_w = ((f64::from(h) / 1080.0) * 3.0).round().max(2.0) as i32;
    // Stop lines: the violation's lane's one thick, others thin.
    let lane = a
        .violation
        .lane
        .as_deref()
        .and_then(|id| a.site.lanes.iter().find(|l| l.id == id));
    let lane_stop = lane.and_then(|l| l.stop_line.as_deref());
    if let Some(l) = lane {
        let mut polys = Vector::<Vector<Point>>::new();
        polys.push(cv_poly(&l.polygon.points));
        imgproc::polylines(
            &mut img,
            &polys,
            true,
            scalar([0, 255, 255]),
            line_w,
            imgproc::LINE_AA,
            0,
        )
        .map_err(cv("drawing the lane"))?;
    }
    for s in &a.site.stop_lines {
        let mine = lane_stop == Some(s.id.as_str());
        let t = if mine { line_w * 2 } else { line_w.max(2) / 2 };
        imgproc::line(
            &mut img,
            cv_point(s.points.a),
            cv_point(s.points.b),
            scalar([0, 0, 255]),
            t,
            imgproc::LINE_AA,
            0,
        )
        .map_err(cv("drawing a stop line"))?;
    }
    if let Some(r) = a.violator.and_then(|b| clamp_rect(b, img.cols(), h)) {
        let t = (line_w * 2).max(3);
        imgproc::rectangle(&mut img, r, scalar(VIOLATOR_BGR), t, imgproc::LINE_8, 0)
            .map_err(cv("drawing the vehicle box"))?;
    }
    // Information strip below the frame.
    let lines = info_lines(frame, a);
    let (mut scale, thick) = font_for(h);
    let mut base = 0;
    // Shrink the text until the longest line fits the width.
    let widest = lines
        .iter()
        .map(|l| {
            imgproc::get_text_size(l, imgproc::FONT_HERSHEY_SIMPLEX, scale, thick, &mut base)
                .map(|s| s.width)
        })
        .try_fold(1, |m, w| w.map(|w| m.max(w)))
        .map_err(cv("measuring text"))?;
    let room = f64::from(img.cols()) * 0.96;
    if f64::from(widest) > room {
        scale *= room / f64::from(widest);
    }
    let size = imgproc::get_text_size("Ag", imgproc::FONT_HERSHEY_SIMPLEX, scale, thick, &mut base)
        .map_err(cv("measuring text"))?;
    let line_h = size.height + base + size.height / 2 + 2;
    let strip = line_h * lines.len() as i32 + line_h / 2;
    let mut out = Mat::default();
    core::copy_make_border(
        &img,
        &mut out,
        0,
        strip,
        0,
        0,
        core::BORDER_CONSTANT,
        Scalar::all(0.0),
    )
    .map_err(cv("adding the information strip"))?;
    for (i, text) in lines.iter().enumerate() {
        let org = Point::new(line_h / 2, h + line_h * (i as i32 + 1));
        imgproc::put_text(
            &mut out,
            text,
            org,
            imgproc::FONT_HERSHEY_SIMPLEX,
            scale,
            Scalar::all(255.0),
            thick,
            imgproc::LINE_AA,
            false,
        )
        .map_err(cv("writing the information strip"))?;
    }
    Ok(out)
}

/// The default plate-region crop: the lower half of the violator's box, at
/// full resolution (where the plate of a car or a motorcycle is).
pub(crate) fn lower_half(b: BBox) -> BBox {
    BBox::from_xywh(b.x, b.y + b.h / 2.0, b.w, b.h / 2.0)
}

/// `true` if the bytes start like a JPEG file.
pub(crate) fn looks_like_jpeg(bytes: &[u8]) -> bool {
    bytes.len() > 4 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rects_are_clamped_to_the_image() {
        let r = clamp_rect(BBox::from_xywh(-10.0, 5.5, 30.0, 10.0), 100, 50).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (0, 5, 20, 11));
        assert!(clamp_rect(BBox::from_xywh(200.0, 0.0, 10.0, 10.0), 100, 50).is_none());
        assert!(clamp_rect(BBox::from_xywh(0.0, 0.0, f64::NAN, 10.0), 100, 50).is_none());
        let h = lower_half(BBox::from_xywh(10.0, 20.0, 40.0, 60.0));
        assert_eq!(h, BBox::from_xywh(10.0, 50.0, 40.0, 30.0));
        assert!(looks_like_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 0]));
        assert!(!looks_like_jpeg(b"\x89PNG\r\n"));
    }

    #[test]
    fn a_4k_still_is_reencoded_to_fit_its_share_of_the_bundle() {
        // A busy 4K picture: a gradient with fine texture.
        let (w, h) = (3840, 2160);
        let mut px = Vec::with_capacity(w * h * 3);
        let mut seed = 7u32;
        for y in 0..h {
            for x in 0..w {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let n = (seed >> 24) as usize % 48;
                px.extend([
                    (x / 16 + n) as u8,
                    (y / 9 + n) as u8,
                    ((x + y) / 24 + n) as u8,
                ]);
            }
        }
        let img = Mat::from_slice(&px)
            .unwrap()
            .reshape(3, h as i32)
            .unwrap()
            .try_clone()
            .unwrap();
        let full = jpeg_at(&img, 95, "test").unwrap();
        assert!(full.len() > MAX_STILL_BYTES, "{} bytes at 95", full.len());
        let fitted = jpeg(&img, 95, "test").unwrap();
        assert!(fitted.len() <= MAX_STILL_BYTES, "{} bytes", fitted.len());
        assert!(looks_like_jpeg(&fitted));
        // A still within its share keeps the quality asked for.
        let small =
            Mat::new_rows_cols_with_default(480, 640, opencv::core::CV_8UC3, 90.into()).unwrap();
        assert_eq!(
            jpeg(&small, 95, "small").unwrap(),
            jpeg_at(&small, 95, "small").unwrap()
        );
    }

    /// Every still of an event fits the bundle together, however busy the
    /// picture: one that is over its share even at the lowest quality
    /// (noise, where JPEG saves little) is scaled down rather than signed
    /// at a size the bundle would leave out.
    #[test]
    fn a_still_too_busy_for_the_lowest_quality_is_scaled_down_to_its_share() {
        // Ten files at most, and the signed event: with margin.
        const _: () =
            assert!(10 * MAX_STILL_BYTES + (1 << 20) <= protocol::transfer::MAX_BUNDLE_BYTES);
        let (w, h) = (3840usize, 2160usize);
        let mut seed = 11u32;
        let px: Vec<u8> = (0..w * h * 3)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        let img = Mat::from_slice(&px)
            .unwrap()
            .reshape(3, h as i32)
            .unwrap()
            .try_clone()
            .unwrap();
        let lowest = jpeg_at(&img, MIN_FITTING_QUALITY, "test").unwrap();
        assert!(
            lowest.len() > MAX_STILL_BYTES,
            "{} bytes at the lowest quality",
            lowest.len()
        );
        let fitted = jpeg_fitted(&img, 95, "test").unwrap();
        assert!(
            fitted.bytes.len() <= MAX_STILL_BYTES,
            "{} bytes",
            fitted.bytes.len()
        );
        assert!(looks_like_jpeg(&fitted.bytes));
        assert_eq!(fitted.quality, MIN_FITTING_QUALITY);
        assert!(
            fitted.scale < 1.0 && fitted.scale > 0.1,
            "scale {}",
            fitted.scale
        );
        assert!(fitted.reduced(95));
        assert_eq!(jpeg(&img, 95, "test").unwrap(), fitted.bytes);
        let decoded =
            imgcodecs::imdecode(&Vector::from_slice(&fitted.bytes), imgcodecs::IMREAD_COLOR)
                .unwrap();
        assert_eq!(
            decoded.cols(),
            (w as f64 * fitted.scale).round() as i32,
            "the recorded scale is the one used"
        );
    }
}
