//! Moving-blob detection with OpenCV's MOG2 background subtractor.
//!
//! Works on a downscaled grey copy; blobs are cleaned with a morphological
//! open/close, and each outer contour's box above a minimum area becomes a
//! detection. The class is guessed from the box's size in the full frame
//! (configurable), which is enough for rendered test scenes and for gating
//! the neural detector on frames where nothing moves.

use super::{DetectError, VehicleDetector, cv, frame_mat};
use crate::capture::Frame;
use crate::track::Detection;
use opencv::core::{Mat, Point, Ptr, Size, Vector};
use opencv::imgproc;
use opencv::video;
use protocol::VehicleClass;

/// Tuning of the motion detector (a camera's `motion` table in the agent
/// configuration; unset fields keep their defaults).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Width of the analysis copy (height keeps the aspect ratio).
    pub analysis_width: i32,
    /// Frames of history of the background model.
    pub history: i32,
    pub var_threshold: f64,
    /// Minimum blob area, in full-frame pixels.
    pub min_area: f32,
    /// Blobs at least this large (full-frame pixels) are cars, smaller ones motorcycles.
    pub car_min_area: f32,
    /// Background learning rate per frame; negative picks MOG2's automatic
    /// rate (1/frames seen, fast at first). A small fixed rate keeps a car
    /// waiting at the line from fading into the background within seconds.
    pub learning_rate: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        MotionConfig {
            analysis_width: 480,
            history: 200,
            var_threshold: 25.0,
            min_area: 150.0,
            car_min_area: 2500.0,
            learning_rate: -1.0,
        }
    }
}

/// MOG2-based detector.
pub struct MotionDetector {
    cfg: MotionConfig,
    mog: Ptr<video::BackgroundSubtractorMOG2>,
    small: Mat,
    mask: Mat,
    clean: Mat,
    kernel: Mat,
}

impl MotionDetector {
    pub fn new(cfg: MotionConfig) -> Result<MotionDetector, DetectError> {
        let mog = video::create_background_subtractor_mog2(cfg.history, cfg.var_threshold, false)
            .map_err(cv("creating MOG2"))?;
        let kernel = imgproc::get_structuring_element(
            imgproc::MORPH_ELLIPSE,
            Size::new(3, 3),
            Point::new(-1, -1),
        )
        .map_err(cv("making a kernel"))?;
        Ok(MotionDetector {
            cfg,
            mog,
            small: Mat::default(),
            mask: Mat::default(),
            clean: Mat::default(),
            kernel,
        })
    }
}

impl VehicleDetector for MotionDetector {
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
        let src = frame_mat(frame)?;
        let aw = self
            .cfg
            .analysis_width
            .clamp(16, frame.width.max(16) as i32);
        let scale = frame.width as f32 / aw as f32;
        let ah = ((frame.height as f32 / scale).round() as i32).max(1);
        imgproc::resize(
            &src,
            &mut self.small,
            Size::new(aw, ah),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .map_err(cv("downscaling"))?;
        opencv::prelude::BackgroundSubtractorMOG2Trait::apply(
            &mut self.mog,
            &self.small,
            &mut self.mask,
            self.cfg.learning_rate,
        )
        .map_err(cv("background subtraction"))?;
        let anchor = Point::new(-1, -1);
        let border = imgproc::morphology_default_border_value().map_err(cv("morphology"))?;
        imgproc::morphology_ex(
            &self.mask,
            &mut self.clean,
            imgproc::MORPH_OPEN,
            &self.kernel,
            anchor,
            1,
            opencv::core::BORDER_CONSTANT,
            border,
        )
        .map_err(cv("opening the mask"))?;
        imgproc::morphology_ex(
            &self.clean,
            &mut self.mask,
            imgproc::MORPH_CLOSE,
            &self.kernel,
            anchor,
            2,
            opencv::core::BORDER_CONSTANT,
            border,
        )
        .map_err(cv("closing the mask"))?;
        let mut contours: Vector<Vector<Point>> = Vector::new();
        imgproc::find_contours(
            &self.mask,
            &mut contours,
            imgproc::RETR_EXTERNAL,
            imgproc::CHAIN_APPROX_SIMPLE,
            Point::new(0, 0),
        )
        .map_err(cv("finding contours"))?;
        let mut dets = Vec::new();
        for c in contours.iter() {
            let r = imgproc::bounding_rect(&c).map_err(cv("bounding a contour"))?;
            let (x, y, w, h) = (
                r.x as f32 * scale,
                r.y as f32 * scale,
                r.width as f32 * scale,
                r.height as f32 * scale,
            );
            let area = w * h;
            if area < self.cfg.min_area {
                continue;
            }
            let class = if area >= self.cfg.car_min_area {
                VehicleClass::Car
            } else {
                VehicleClass::Motorcycle
            };
            // Motion has no score; a fixed high score puts blobs in the
            // tracker's first association stage.
            dets.push(Detection {
                bbox: [x, y, w, h],
                score: 0.9,
                class,
                riders: 0,
            });
        }
        Ok(dets)
    }
}
