//! Vehicle detection: a frame in, vehicle boxes in full-frame pixels out.
//!
//! [`VehicleDetector`] is the seam: [`YoloxDetector`] runs YOLOX-Nano (the
//! production detector), [`MotionDetector`] finds moving blobs with OpenCV's
//! MOG2 background subtractor — it makes synthetic test scenes work.
//! [`StaticGate`] skips either on frames where nothing moved. Both return
//! [`crate::track::Detection`]s for the tracker; YOLOX also counts the
//! people riding each motorcycle (`riders`).

mod gate;
mod motion;
mod nms;
mod riders;
mod seam;
mod yolox;

pub use gate::{GateConfig, StaticGate};
pub use motion::{MotionConfig, MotionDetector};
pub use nms::nms;
pub use riders::{Person, attach_riders, nms_persons};
pub use yolox::{YoloxConfig, YoloxDetector};

use crate::capture::Frame;
use crate::track::Detection;
use opencv::boxed_ref::BoxedRef;
use opencv::core::{CV_8UC3, Mat};

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

/// The frame's pixels as an OpenCV matrix, without copying.
pub fn frame_mat(frame: &Frame) -> Result<BoxedRef<'_, Mat>, DetectError> {
    let (w, h) = (frame.width as i32, frame.height as i32);
    let data = frame.data();
    if w <= 0
        || h <= 0
        || frame.stride < frame.width as usize * 3
        || data.len() < frame.stride * frame.height as usize
    {
        return Err(DetectError::BadFrame {
            width: frame.width,
            height: frame.height,
        });
    }
    // SAFETY: the Mat header points into `data`, which the frame keeps alive
    // and immutable for at least as long as the returned BoxedRef borrows
    // `frame`; the size and step were checked against the slice above, and
    // OpenCV only reads through it here.
    let m = unsafe {
        Mat::new_rows_cols_with_data_unsafe(
            h,
            w,
            CV_8UC3,
            data.as_ptr().cast_mut().cast(),
            frame.stride,
        )
    }
    .map_err(cv("wrapping a frame"))?;
    Ok(BoxedRef::from(m))
}
