//! Camera capture: one GStreamer pipeline per camera, decoded at full
//! resolution into frames (the decoder's YUV for H.264/H.265, else BGR:
//! [`PixelLayout`]).
//!
//! Every source goes through `uridecodebin` (or `v4l2src` into `decodebin`)
//! so the platform's hardware decoders are picked where it has them. An
//! H.264/H.265 source also keeps its coded access units ([`Packets`]) for
//! the evidence, which decodes them again only when a violation needs them,
//! so of its decoded pictures only those the analysis will look at
//! ([`AnalysisPace`]) are handed on. The
//! vehicle detector later sees a downscaled copy; plates and evidence are cut
//! from these full-resolution frames. A frame keeps its GStreamer buffer (a
//! reference count, not a copy) so the clip ring buffer and the analysis
//! share the same memory.
//!
//! [`Camera`] is the supervised form: a thread that keeps one source running,
//! reconnects with backoff when it drops or never connects, and publishes its
//! state, last frame time and fps for the heartbeat. One camera failing never
//! affects another.

mod camera;
mod frame;
mod pace;
mod packets;
mod pixels;
mod source;

pub use camera::{Camera, CameraHandle, CameraState, CameraStatus, RetryPolicy};
pub use frame::Frame;
pub(crate) use frame::decoded_caps;
pub use pace::AnalysisPace;
pub(crate) use packets::parser_for;
pub use packets::{EncodedUnit, Packets};
pub use pixels::{PixelLayout, Plane, Yuv420, YuvMatrix};
pub use source::{CaptureError, FrameSource, Pacing, SourceSpec};
