//! Evidence: what a court and a citizen see of a violation. For each
//! violation this module keeps the frames around it, writes full-resolution
//! stills (untouched and annotated), a vehicle crop, an optional plate crop
//! and an H.264 clip into a spool directory, and returns the hashed manifest
//! ([`protocol::EvidenceItem`]s) that goes into the signed event.
//!
//! The flow, per camera:
//!
//! 1. **Every frame** (real-time thread): [`EvidenceCollector::push_frame`]
//!    keeps what the evidence will need. For an H.264/H.265 camera that is
//!    the camera's own coded pictures that came with the frame (a
//!    [`StreamRing`]: whole groups of pictures, a few MB for the window);
//!    for any other source (MJPEG, raw V4L2, synthetic frames) the decoded
//!    frame itself (a [`FrameRing`], an `Arc` clone, no pixel copy). It
//!    hands the frame to the violations still waiting for their "after"
//!    window and returns the [`EvidenceJob`]s whose window is now complete.
//! 2. **Every violation**: [`EvidenceCollector::add_violation`] takes the
//!    part of the ring from `pre` seconds before the violation (for a coded
//!    stream: from the keyframe at or before it) and keeps the job pending
//!    until frames up to `post` seconds after it have arrived (or
//!    [`EvidenceCollector::finish`] at the end of the stream).
//! 3. **On a worker thread**: [`EvidenceJob::materialise`] decodes the
//!    stills' and the plate reader's frames out of a coded window (one
//!    pass), then [`EvidenceJob::write`] draws, encodes (JPEG, H.264/MP4
//!    through GStreamer) and writes into `<spool>/<event-uuid>/` with temp
//!    names, fsync and renames; the directory only appears under its final
//!    name once every file is complete (it is built as
//!    `<event-uuid>.partial`). The returned [`EvidenceSet`] lists every file
//!    with its SHA-256 and size, and says which stills could not be made.
//!    A coded window's clip is the camera's own pictures remuxed into MP4
//!    without re-encoding (the manifest says `clip_source: camera-stream`)
//!    for an H.264 camera on a site without privacy masks; otherwise it is
//!    decoded, masked and encoded again as H.264 (`re-encoded`).
//!
//! **Privacy masks** from the site configuration are filled with a solid
//! grey in every stored image and in every clip frame, originals included
//! (the "original" still is the camera frame with only the masks applied).
//! Masks are for windows of houses and the like: by the site rules they
//! never cover the road, so they never hide a vehicle or a plate.
//!
//! **Memory**: a 1920×1080 BGR frame is 6,220,800 bytes (a decoder's
//! 4:2:0 picture half that), so decoded frames for the default 7 s at
//! 25 fps would be 175 frames ≈ 1.09 GB per camera (0.54 GB in YUV), plus each pending violation's "after" frames. That is why an
//! H.264/H.265 camera keeps its coded stream instead: the same 7 s plus up
//! to one group of pictures at the camera's bit rate (8 Mbit/s: about
//! 7–11 MB), bounded by [`EvidenceConfig::stream_ring`]. Decoding costs are
//! paid per violation on the worker (about 10 s of video decoded once or
//! twice), never per frame. The decoded [`FrameRing`] remains for sources
//! without a coded stream; see [`RingLimits`].
//!
//! [`calibration_png`] draws a whole site configuration on a frame for a
//! technician to check.

mod calibrate;
mod clip;
pub mod clock;
mod collector;
mod ring;
mod spool;
mod stills;
mod stream;

pub use calibrate::{calibration_png, draw_site};
pub use clip::{encode_clip, h264_encoder};
pub use clock::{ClockWatch, DecidedClock};
pub use collector::{EvidenceCollector, EvidenceJob};
pub use ring::{FrameRing, RingLimits};
pub use spool::{EvidenceSet, MissingEvidence, PARTIAL_STALE, Swept, UNSIGNED_KEPT, sweep_spool};
pub use stream::StreamRing;

use std::path::PathBuf;
use std::time::Duration;
use time::UtcOffset;

/// What can go wrong while keeping evidence. Each variant names the event,
/// file or step.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A frame whose size is not the site's configured frame size.
    #[error(
        "evidence for camera `{camera}`: frame {number} is {width}x{height}, the site is configured for {want_w}x{want_h}"
    )]
    WrongFrameSize {
        camera: String,
        number: u64,
        width: u32,
        height: u32,
        want_w: u32,
        want_h: u32,
    },
    /// The violation's own frame has already left the ring buffer (or never
    /// arrived before the stream ended): without it there is no evidence.
    #[error(
        "evidence {event_id}: frame {frame} (the moment of the violation) is not available ({why})"
    )]
    FrameGone {
        event_id: uuid::Uuid,
        frame: u64,
        why: String,
    },
    /// An OpenCV call failed.
    #[error("evidence: OpenCV while {step}: {message}")]
    OpenCv { step: String, message: String },
    /// A file system operation failed.
    #[error("evidence: {step} `{}`: {message}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        message: String,
    },
    /// The spool already holds a complete directory for this event.
    #[error("evidence: `{}` already exists; an event is never overwritten", dir.display())]
    AlreadyExists { dir: PathBuf },
    /// Encoding the clip failed.
    #[error("evidence: clip `{}`: {message}", path.display())]
    Clip { path: PathBuf, message: String },
    /// Decoding the camera's kept stream for the stills or plate frames
    /// failed.
    #[error("evidence {event_id}: decoding the camera stream: {message}")]
    Stream {
        event_id: uuid::Uuid,
        message: String,
    },
    /// Input handed in by a caller is unusable (e.g. a plate crop that is
    /// not a JPEG).
    #[error("evidence {event_id}: {message}")]
    BadInput {
        event_id: uuid::Uuid,
        message: String,
    },
}

pub(crate) fn cv(step: impl Into<String>) -> impl FnOnce(opencv::Error) -> EvidenceError {
    let step = step.into();
    move |e| EvidenceError::OpenCv {
        step,
        message: e.message,
    }
}

pub(crate) fn io(
    step: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> EvidenceError {
    let path = path.to_path_buf();
    move |e| EvidenceError::Io {
        step,
        path,
        message: e.to_string(),
    }
}

/// Tuning of the evidence for one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceConfig {
    /// Clip start before the violation (default 5 s).
    pub pre: Duration,
    /// Clip end after the violation (default 5 s). A violation stays
    /// pending until a frame this late has arrived.
    pub post: Duration,
    /// Bounds of the ring buffer of decoded frames (sources whose coded
    /// stream is not kept: MJPEG, raw V4L2, synthetic frames).
    pub ring: RingLimits,
    /// Bounds of the ring buffer of the coded stream (H.264/H.265 sources);
    /// `max_frames` counts access units. Whole groups of pictures are kept,
    /// so it always reaches back at least `max_age` to a keyframe.
    pub stream_ring: RingLimits,
    /// Keep an H.264/H.265 camera's coded stream rather than its decoded
    /// frames (default true; false only to compare the two).
    pub keep_coded_stream: bool,
    /// JPEG quality of the stills and crops, 1..=100 (default 95).
    pub jpeg_quality: i32,
    /// Whether to encode the clip at all (default true).
    pub clip: bool,
    /// H.264 bit rate of the clip, kbit/s (default 8000, good for 1080p).
    pub clip_bitrate_kbps: u32,
    /// Longest a clip encode may take before it is abandoned.
    pub clip_timeout: Duration,
    /// Offset the time stamp on annotated stills is shown in (default
    /// +07:00, Việt Nam).
    pub display_offset: UtcOffset,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            pre: Duration::from_secs(5),
            post: Duration::from_secs(5),
            ring: RingLimits::default(),
            stream_ring: RingLimits {
                max_age: Duration::from_secs(7),
                max_frames: 1000,
                max_bytes: 64 * 1024 * 1024,
            },
            keep_coded_stream: true,
            jpeg_quality: 95,
            clip: true,
            clip_bitrate_kbps: 8000,
            clip_timeout: Duration::from_secs(300),
            display_offset: UtcOffset::from_hms(7, 0, 0).unwrap_or(UtcOffset::UTC),
        }
    }
}
