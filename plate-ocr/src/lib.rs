//! Find and read Vietnamese licence plates.
//!
//! With default features off this crate is the plate grammar and read fusion
//! alone (no ONNX Runtime, no OpenCV), which is what the ingest server links.
//! The `vision` feature adds detection, rectification and recognition.

pub mod fuse;
pub mod plate;
