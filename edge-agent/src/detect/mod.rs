//! Vehicle detection: a frame in, vehicle boxes in full-frame pixels out.
//!
//! [`VehicleDetector`] is the seam: [`YoloxDetector`] runs YOLOX-Nano (the
//! production detector), [`MotionDetector`] finds moving blobs with OpenCV's
//! MOG2 background subtractor — it makes synthetic test scenes work.
//! [`StaticGate`] skips either on frames where nothing moved. Both return
//! [`crate::track::Detection`]s for the tracker; YOLOX also counts the
//! people riding each motorcycle (`riders`). [`FreezeWatch`] tells a
//! camera whose picture froze (the same picture, sensor noise and all)
//! from a quiet scene.

mod freeze;
mod gate;
mod motion;
mod nms;
mod pixels;
mod riders;
mod seam;
mod yolox;

pub use freeze::{DEFAULT_FROZEN_AFTER_S, FreezeChange, FreezeWatch};
pub use gate::{GateConfig, StaticGate};
pub use motion::{MotionConfig, MotionDetector};
pub use nms::nms;
pub use pixels::{YuvScratch, frame_mat, grey_thumbnail, region_bgr};
pub use riders::{Person, attach_riders, nms_persons};
pub use yolox::{YoloxConfig, YoloxDetector};

use crate::capture::Frame;
use crate::track::Detection;

/// What can go wrong while detecting.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("vehicle detector: {0}")]
    Model(#[from] plate_ocr::error::VisionError),
    #[error("vehicle detector: OpenCV while {context}: {message}")]
    OpenCv {
        context: &'static str,
        message: String,
    },
    #[error("vehicle detector: frame {width}x{height} is unusable")]
    BadFrame { width: u32, height: u32 },
    #[error("vehicle detector: model output has shape {0:?}, expected [1, anchors, 85]")]
    Output(Vec<usize>),
}

pub(crate) fn cv(context: &'static str) -> impl Fn(opencv::Error) -> DetectError {
    move |e| DetectError::OpenCv {
        context,
        message: e.message,
    }
}

/// A vehicle detector.
pub trait VehicleDetector: Send {
    /// Vehicles in `frame`, boxes in the frame's own pixels.
    fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError>;

    /// Frames answered without running a model ([`StaticGate`]).
    fn skipped(&self) -> u64 {
        0
    }
}
