//! Errors of the vision part: loading images and models, running them, and
//! what a bad input looked like.
//!
//! Every variant names the thing that failed (the file, the model, the
//! metadata key) so an operator can act on the message without a debugger.

use std::path::PathBuf;

/// What went wrong while finding or reading plates.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// ONNX Runtime's shared library could not be found or loaded.
    #[error("ONNX Runtime library {path}: {message} (set ORT_DYLIB_PATH to libonnxruntime.so)")]
    Runtime { path: PathBuf, message: String },
    /// A model could not be resolved through the manifest.
    #[error("model `{name}`: {message}")]
    ModelMissing { name: String, message: String },
    /// A model file exists but could not be loaded or does not fit its contract.
    #[error("model `{name}` ({path}): {message}")]
    Model {
        name: String,
        path: PathBuf,
        message: String,
    },
    /// Running a model failed.
    #[error("model `{name}`: inference failed: {message}")]
    Inference { name: String, message: String },
    /// An image file could not be read or decoded.
    #[error("image {path}: {message}")]
    Image { path: String, message: String },
    /// An image is larger than the configured pixel limit.
    #[error("image {path}: {width}x{height} pixels exceeds the limit of {limit} pixels")]
    TooLarge {
        path: String,
        width: u64,
        height: u64,
        limit: u64,
    },
    /// A crop or image has no pixels, or is too small to process.
    #[error("{what}: empty or too small ({width}x{height})")]
    Empty {
        what: String,
        width: i32,
        height: i32,
    },
    /// OpenCV reported an error.
    #[error("OpenCV while {context}: {message}")]
    OpenCv { context: String, message: String },
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A data set could not be read.
    #[error("data set {path}: {message}")]
    Dataset { path: String, message: String },
}

/// Result of the vision part.
pub type Result<T, E = VisionError> = std::result::Result<T, E>;

/// Adds the step that failed to an OpenCV error.
pub(crate) trait CvContext<T> {
    fn cv(self, context: &str) -> Result<T>;
}

impl<T> CvContext<T> for opencv::Result<T> {
    fn cv(self, context: &str) -> Result<T> {
        self.map_err(|e| VisionError::OpenCv {
            context: context.to_string(),
            message: e.to_string(),
        })
    }
}
