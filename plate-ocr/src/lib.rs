//! Find and read Vietnamese licence plates.
//!
//! With default features off this crate is the plate grammar and read fusion
//! alone (no ONNX Runtime, no OpenCV), which is what the ingest server links.
//! The `vision` feature adds detection, rectification and recognition.

pub mod crosscheck;
pub mod fuse;
pub mod plate;

#[cfg(feature = "vision")]
pub mod colour;
#[cfg(feature = "vision")]
pub mod detect;
#[cfg(feature = "vision")]
pub mod error;
#[cfg(feature = "vision")]
pub mod eval;
#[cfg(feature = "vision")]
pub mod image_file;
#[cfg(feature = "vision")]
pub mod pipeline;
#[cfg(feature = "vision")]
pub mod recognize;
#[cfg(feature = "vision")]
pub mod rectify;
#[cfg(feature = "vision")]
pub mod runtime;
#[cfg(feature = "vision")]
pub mod search;
