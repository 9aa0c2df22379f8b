//! The static-frame gate: skip the neural detector when nothing moved.
//!
//! At a quiet junction (night, a red phase with the cross street empty)
//! most frames look like the last one the detector ran on, and its boxes
//! still hold. [`StaticGate`] wraps any [`VehicleDetector`]: it keeps a
//! small grey copy of the frame the detector last ran on (the
//! *reference*) and, for each new frame, compares cell by cell (a cell is
//! [`CELL`] × [`CELL`] full-frame pixels); if no cell's mean grey level
//! moved by more than the threshold, it hands back the reference's
//! detections instead of running the detector. It compares with the
//! reference, not with the previous frame, so slow motion (a car creeping
//! over the stop line) adds up until it shows; and the detector runs at
//! least every `max_skip` of stream time whatever the picture does.
//!
//! Why not MOG2's foreground (the motion detector): a background model
//! absorbs a car that stopped, so "no foreground" would not mean "the same
//! picture the boxes were found on".
//!
//! Cost: one area downscale to 1/[`CELL`] in each direction of the luma
//! plane (of a BGR frame, of its three channels and a grey conversion of
//! the thumbnail), under a millisecond at 1080p against YOLOX's tens.

use super::{DetectError, VehicleDetector, cv, grey_thumbnail};
use crate::capture::Frame;
use crate::track::Detection;
use opencv::core::{self, Mat, Size};
use time::{Duration, OffsetDateTime};

/// Side of one compared cell, full-frame pixels: a distant motorbike
/// (about 20 × 30 px in a 1080p view) covers half of one.
pub const CELL: u32 = 24;

/// Tuning of the gate (`[detection] static_gate` of a site file).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// A cell whose mean grey level moved by more than this (0–255) is
    /// motion. Compression noise of a still H.264 picture moves cell means
    /// by about one level; a motorbike covering half a cell, tens. Kept
    /// low because reused boxes lag a vehicle that moves without showing:
    /// a dark car 10 levels off the road at night creeping 2 px a frame
    /// moves its edge cell by under a level a frame, so at 6 levels its
    /// box stood still for 7 frames (14 px, 0.7 s at 10 fps: enough to
    /// move a crossing at the end of the yellow into the red); at 2 levels
    /// it lags 2 frames.
    pub threshold: f32,
    /// The detector runs at least this often, seconds of stream time:
    /// the most a reused box can lag whatever the picture does.
    pub max_skip_s: f32,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            threshold: 2.0,
            max_skip_s: 0.5,
        }
    }
}

impl GateConfig {
    /// Why the tuning is unusable, if it is.
    pub fn problem(&self) -> Option<&'static str> {
        if !(self.threshold.is_finite() && (1.0..=64.0).contains(&self.threshold)) {
            return Some("threshold must be 1 to 64 grey levels");
        }
        if !(self.max_skip_s.is_finite() && (0.1..=10.0).contains(&self.max_skip_s)) {
            return Some("max_skip_s must be 0.1 to 10 seconds");
        }
        None
    }
}

/// What the reference frame was and what the detector found on it.
struct Reference {
    thumb: Mat,
    width: u32,
    height: u32,
    time: OffsetDateTime,
    detections: Vec<Detection>,
}

/// A detector that is skipped on frames where nothing moved.
pub struct StaticGate {
    inner: Box<dyn VehicleDetector>,
    cfg: GateConfig,
    reference: Option<Reference>,
    thumb: Mat,
    grey: Mat,
    diff: Mat,
    skipped: u64,
}

impl StaticGate {
    /// `inner` gated by `cfg` (checked with [`GateConfig::problem`] when
    /// the site file was loaded).
    pub fn new(inner: Box<dyn VehicleDetector>, cfg: GateConfig) -> StaticGate {
        StaticGate {
            inner,
            cfg,
            reference: None,
            thumb: Mat::default(),
            grey: Mat::default(),
            diff: Mat::default(),
            skipped: 0,
        }
    }

    /// The grey thumbnail of `frame` into `self.grey`, one pixel per cell.
    fn thumbnail(&mut self, frame: &Frame) -> Result<(), DetectError> {
        let size = Size::new(
            frame.width.div_ceil(CELL).max(1) as i32,
            frame.height.div_ceil(CELL).max(1) as i32,
        );
        grey_thumbnail(frame, size, &mut self.grey, &mut self.thumb)
    }

    /// Whether `frame` may reuse the reference's detections.
    fn unchanged(&mut self, frame: &Frame) -> Result<bool, DetectError> {
        let Some(r) = self.reference.as_ref() else {
            return Ok(false);
        };
        let age = frame.time - r.time;
        if r.width != frame.width
            || r.height != frame.height
            || age < Duration::ZERO
            || age.as_seconds_f32() >= self.cfg.max_skip_s
        {
            return Ok(false);
        }
        core::absdiff(&self.grey, &r.thumb, &mut self.diff)
            .map_err(cv("comparing with the reference"))?;
        let mut max = 0.0;
        core::min_max_loc(
            &self.diff,
            None,
            Some(&mut max),
            None,
            None,
            &core::no_array(),
        )
        .map_err(cv("largest change"))?;
        Ok(max <= f64::from(self.cfg.threshold))
    }
}

impl VehicleDetector for StaticGate {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        self.thumbnail(frame)?;
        if self.unchanged(frame)?
            && let Some(r) = self.reference.as_ref()
        {
            self.skipped += 1;
            return Ok(r.detections.clone());
        }
        // Forget the reference first: a failing detector must not leave
        // stale boxes to be reused.
        self.reference = None;
        let detections = self.inner.detect(frame)?;
        let mut thumb = Mat::default();
        std::mem::swap(&mut thumb, &mut self.grey);
        self.reference = Some(Reference {
            thumb,
            width: frame.width,
            height: frame.height,
            time: frame.time,
            detections: detections.clone(),
        });
        Ok(detections)
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::VehicleClass;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts its calls and reports one box.
    struct Counting(Arc<AtomicU64>);

    impl VehicleDetector for Counting {
        fn detect(&mut self, _: &Frame) -> Result<Vec<Detection>, DetectError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(vec![Detection {
                bbox: [n as f32, 0.0, 10.0, 10.0],
                score: 0.9,
                class: VehicleClass::Car,
                riders: 0,
            }])
        }
    }

    const W: u32 = 320;
    const H: u32 = 240;

    /// A grey street with a dark `size`-pixel square at `x` (none if `None`).
    fn frame(number: u64, ms: i64, square: Option<(u32, u32)>) -> Frame {
        let mut bgr = vec![128u8; (W * H * 3) as usize];
        if let Some((x, size)) = square {
            for y in 100..100 + size {
                for xx in x..x + size {
                    let i = ((y * W + xx) * 3) as usize;
                    bgr[i..i + 3].copy_from_slice(&[30, 30, 30]);
                }
            }
        }
        let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms);
        Frame::from_bgr(number, t, W, H, bgr).expect("a valid synthetic frame")
    }

    fn gate() -> (StaticGate, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        let g = StaticGate::new(Box::new(Counting(calls.clone())), GateConfig::default());
        (g, calls)
    }

    #[test]
    fn a_still_picture_reuses_the_boxes_until_max_skip() {
        let (mut g, calls) = gate();
        let first = g.detect(&frame(0, 0, Some((50, 20)))).unwrap();
        for i in 1..5 {
            let again = g.detect(&frame(i, i as i64 * 100, Some((50, 20)))).unwrap();
            assert_eq!(again, first, "frame {i} reuses the reference's boxes");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(g.skipped(), 4);
        // Half a second after the reference the detector runs anyway.
        g.detect(&frame(5, 500, Some((50, 20)))).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_small_vehicle_entering_runs_the_detector() {
        let (mut g, calls) = gate();
        g.detect(&frame(0, 0, None)).unwrap();
        g.detect(&frame(1, 40, None)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // 14 × 14 px: a third of one cell.
        g.detect(&frame(2, 80, Some((200, 14)))).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn creeping_motion_adds_up_against_the_reference() {
        let calls = Arc::new(AtomicU64::new(0));
        let cfg = GateConfig {
            threshold: 6.0,
            ..GateConfig::default()
        };
        let mut g = StaticGate::new(Box::new(Counting(calls.clone())), cfg);
        g.detect(&frame(0, 0, Some((48, 24)))).unwrap();
        // One pixel a frame: never much between two frames, but the
        // square leaves its cells against the reference.
        let mut ran_at = None;
        for i in 1..12u32 {
            g.detect(&frame(i.into(), i64::from(i) * 40, Some((48 + i, 24))))
                .unwrap();
            if calls.load(Ordering::SeqCst) > 1 {
                ran_at = Some(i);
                break;
            }
        }
        let at = ran_at.expect("the detector ran again before max_skip");
        assert!(at > 1, "a one-pixel move alone is no motion (ran at {at})");
    }

    /// Reports the box of the pixels brighter than the street.
    struct Truthful;

    impl VehicleDetector for Truthful {
        fn detect(&mut self, f: &Frame) -> Result<Vec<Detection>, DetectError> {
            let crate::capture::PixelLayout::Bgr { stride: row } = f.layout else {
                return Err(DetectError::BadFrame {
                    width: f.width,
                    height: f.height,
                });
            };
            let xs = (0..f.width as usize).filter(|&x| f.data()[100 * row + 3 * x] > 128);
            let (min, max) = xs.fold((usize::MAX, 0), |(a, b), x| (a.min(x), b.max(x)));
            Ok(vec![Detection {
                bbox: [min as f32, 100.0, (max + 1 - min) as f32, 48.0],
                score: 0.9,
                class: VehicleClass::Car,
                riders: 0,
            }])
        }
    }

    /// A box reused while the vehicle moves lags it; the default tuning
    /// keeps that lag to a few pixels for a car barely darker or lighter
    /// than the road (a crossing timed late can turn a yellow into a red).
    #[test]
    fn a_low_contrast_vehicle_creeping_is_not_left_far_behind() {
        let mut g = StaticGate::new(Box::new(Truthful), GateConfig::default());
        let mut worst = 0.0f32;
        for i in 0..20u32 {
            let x = 40 + 2 * i;
            let mut bgr = vec![128u8; (W * H * 3) as usize];
            for y in 100..148 {
                for xx in x..x + 48 {
                    let p = ((y * W + xx) * 3) as usize;
                    bgr[p..p + 3].copy_from_slice(&[138, 138, 138]);
                }
            }
            let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(i64::from(i) * 100);
            let f = Frame::from_bgr(i.into(), t, W, H, bgr).unwrap();
            let got = g.detect(&f).unwrap();
            worst = worst.max((x as f32 - got[0].bbox[0]).abs());
        }
        assert!(worst <= 8.0, "the reused box lagged {worst} px");
    }

    #[test]
    fn time_going_back_or_a_new_size_runs_the_detector() {
        let (mut g, calls) = gate();
        g.detect(&frame(0, 500, None)).unwrap();
        g.detect(&frame(1, 400, None)).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let t = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(450);
        let small = Frame::from_bgr(2, t, 160, 120, vec![128; 160 * 120 * 3]).unwrap();
        g.detect(&small).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn bad_tuning_is_named() {
        let bad = GateConfig {
            threshold: f32::NAN,
            ..GateConfig::default()
        };
        assert!(bad.problem().is_some());
        let bad = GateConfig {
            max_skip_s: 0.0,
            ..GateConfig::default()
        };
        assert!(bad.problem().is_some());
        assert_eq!(GateConfig::default().problem(), None);
    }
}
