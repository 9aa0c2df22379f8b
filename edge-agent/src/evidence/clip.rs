//! The clip: frames encoded as H.264 in MP4 by a GStreamer pipeline
//! (`appsrc ! videoconvert ! x264enc ! h264parse ! mp4mux ! filesink`,
//! `openh264enc` where x264 is missing), fed one frame at a time
//! ([`ClipEncoder`]). A camera whose own stream is kept gets its clip from
//! `super::stream` instead: remuxed untouched, or decoded, masked and
//! encoded here.
//!
//! Presentation times come from the frames' own times relative to the
//! first (so dropped frames keep the clip's time true); privacy masks are
//! filled in every frame before it is encoded. The pipeline is run to
//! end-of-stream and any bus error fails the clip, naming the file. This is
//! heavy work: call it from a worker thread, never the capture thread.

use super::stills::{apply_masks, frame_copy};
use super::{EvidenceError, cv};
use crate::capture::Frame;
use crate::site::PrivacyMask;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use opencv::prelude::*;
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// The H.264 encoder element available here: `x264enc`, else
/// `openh264enc`; `None` if neither is installed (or GStreamer cannot
/// start).
pub fn h264_encoder() -> Option<&'static str> {
    gst::init().ok()?;
    ["x264enc", "openh264enc"]
        .into_iter()
        .find(|name| gst::ElementFactory::find(name).is_some())
}

/// Encodes `frames` (same size, increasing times) with the privacy `masks`
/// filled into an MP4 file at `path` at `bitrate_kbps`, waiting at most
/// `timeout` for the encoder to finish.
pub fn encode_clip(
    frames: &[Frame],
    masks: &[PrivacyMask],
    path: &Path,
    bitrate_kbps: u32,
    timeout: Duration,
) -> Result<(), EvidenceError> {
    let first = frames.first().ok_or_else(|| EvidenceError::Clip {
        path: path.to_path_buf(),
        message: "no frames".into(),
    })?;
    let span_ns = (frames[frames.len() - 1].time - first.time).whole_nanoseconds();
    let fps = nominal_fps(frames.len(), span_ns);
    let mut enc = ClipEncoder::start(
        (first.width, first.height),
        fps,
        masks,
        path,
        bitrate_kbps,
        timeout,
    )?;
    for f in frames {
        enc.push(f)?;
    }
    enc.finish()
}

/// The nominal frame rate of `count` frames over `span_ns` for the caps
/// (the real timing is in the buffer times); 25 when it cannot be told.
pub(crate) fn nominal_fps(count: usize, span_ns: i128) -> i32 {
    if count > 1 && span_ns > 0 {
        ((count - 1) as f64 * 1e9 / span_ns as f64)
            .round()
            .clamp(1.0, 120.0) as i32
    } else {
        25
    }
}

/// An H.264/MP4 encode fed one frame at a time, so a clip never needs all
/// its frames in memory (the stream path decodes them one by one).
///
/// Presentation times are relative to the first frame pushed; each frame is
/// held until the next one arrives, which gives it its true duration.
pub(crate) struct ClipEncoder {
    path: std::path::PathBuf,
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    masks: Vec<PrivacyMask>,
    size: (u32, u32),
    gst_stride: usize,
    buffer_size: usize,
    timeout: Duration,
    started: std::time::Instant,
    t0: Option<OffsetDateTime>,
    /// The frame waiting for its successor: (pixels, pts, number).
    held: Option<(Vec<u8>, u64, u64)>,
}

impl ClipEncoder {
    /// Builds and starts `appsrc ! videoconvert ! <h264> ! h264parse !
    /// mp4mux ! filesink` for frames of `size` at nominal `fps`.
    pub(crate) fn start(
        size: (u32, u32),
        fps: i32,
        masks: &[PrivacyMask],
        path: &Path,
        bitrate_kbps: u32,
        timeout: Duration,
    ) -> Result<ClipEncoder, EvidenceError> {
        let fail = |message: String| EvidenceError::Clip {
            path: path.to_path_buf(),
            message,
        };
        gst::init().map_err(|e| fail(format!("GStreamer could not start: {e}")))?;
        let encoder_name =
            h264_encoder().ok_or_else(|| fail("no H.264 encoder (x264enc, openh264enc)".into()))?;
        let (w, h) = size;
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgr, w, h)
            .fps(gst::Fraction::new(fps, 1))
            .build()
            .map_err(|e| fail(format!("video format: {e}")))?;
        let caps = info
            .to_caps()
            .map_err(|e| fail(format!("video caps: {e}")))?;
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(false)
            // Not blocking: `push` throttles itself, so a pipeline that
            // fails mid-way can never leave a push waiting forever.
            .block(false)
            .max_bytes(0)
            .build();
        let make = |name: &str| {
            gst::ElementFactory::make(name)
                .build()
                .map_err(|e| fail(format!("{name}: {e}")))
        };
        let convert = make("videoconvert")?;
        let encoder = make(encoder_name)?;
        if encoder_name == "x264enc" {
            encoder.set_property_from_str("tune", "zerolatency");
            encoder.set_property_from_str("speed-preset", "veryfast");
            encoder.set_property("bitrate", bitrate_kbps.max(100));
            encoder.set_property("key-int-max", (fps as u32 * 2).max(1));
        } else {
            encoder.set_property("bitrate", bitrate_kbps.max(100).saturating_mul(1000));
        }
        mux_to_file(
            &pipeline,
            &[src.upcast_ref(), &convert, &encoder],
            "h264parse",
            path,
        )
        .map_err(fail)?;
        let enc = ClipEncoder {
            path: path.to_path_buf(),
            pipeline,
            src,
            masks: masks.to_vec(),
            size,
            gst_stride: usize::try_from(info.stride()[0]).unwrap_or(0),
            buffer_size: info.size(),
            timeout,
            started: std::time::Instant::now(),
            t0: None,
            held: None,
        };
        enc.pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        Ok(enc)
    }

    fn fail(&self, message: String) -> EvidenceError {
        EvidenceError::Clip {
            path: self.path.clone(),
            message,
        }
    }

    fn bus_error(&self) -> Option<String> {
        bus_error(&self.pipeline)
    }

    /// Adds the next frame (masks filled in a copy; the frame is untouched).
    pub(crate) fn push(&mut self, f: &Frame) -> Result<(), EvidenceError> {
        if (f.width, f.height) != self.size {
            return Err(self.fail(format!(
                "frame {} is {}x{}, the clip is {}x{}",
                f.number, f.width, f.height, self.size.0, self.size.1
            )));
        }
        let t0 = *self.t0.get_or_insert(f.time);
        let mut img = frame_copy(f)?;
        apply_masks(&mut img, &self.masks)?;
        let px = img.data_bytes().map_err(cv("reading a clip frame"))?;
        let row = f.width as usize * 3;
        let mut data = vec![0u8; self.buffer_size];
        for (y, src_row) in px.chunks_exact(row).enumerate() {
            let at = y * self.gst_stride;
            if let Some(dst) = data.get_mut(at..at + row) {
                dst.copy_from_slice(src_row);
            }
        }
        // Times relative to the first frame, strictly increasing.
        let mut pts = u64::try_from((f.time - t0).whole_nanoseconds().max(0)).unwrap_or(0);
        if let Some((_, prev, _)) = &self.held
            && pts <= *prev
        {
            pts = prev + 1_000_000;
        }
        if let Some((px, prev, number)) = self.held.take() {
            self.send(px, prev, pts - prev, number)?;
        }
        self.held = Some((data, pts, f.number));
        Ok(())
    }

    fn send(
        &self,
        data: Vec<u8>,
        pts: u64,
        duration: u64,
        number: u64,
    ) -> Result<(), EvidenceError> {
        // Keep at most a few frames queued (memory), watching for errors.
        let max_queued = (self.buffer_size as u64).saturating_mul(4);
        while self.src.current_level_bytes() > max_queued {
            if let Some(e) = self.bus_error() {
                return Err(self.fail(e));
            }
            if self.started.elapsed() > self.timeout {
                return Err(self.fail(format!(
                    "the encoder did not keep up within {:?}",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        self.src.push_buffer(buffer).map_err(|e| {
            self.fail(
                self.bus_error()
                    .unwrap_or_else(|| format!("pushing frame {number}: {e:?}")),
            )
        })?;
        Ok(())
    }

    /// Sends the last frame, ends the stream and waits for the file.
    pub(crate) fn finish(mut self) -> Result<(), EvidenceError> {
        match self.held.take() {
            Some((px, pts, number)) => self.send(px, pts, 40_000_000, number)?,
            None => return Err(self.fail("no frames".into())),
        }
        self.src.end_of_stream().map_err(|e| {
            self.fail(
                self.bus_error()
                    .unwrap_or_else(|| format!("ending the stream: {e:?}")),
            )
        })?;
        wait_for_eos(
            &self.pipeline,
            self.timeout.saturating_sub(self.started.elapsed()),
        )
        .map_err(|m| self.fail(m))
    }
}

impl Drop for ClipEncoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Adds `head` (already made), then `parser ! mp4mux ! filesink` writing
/// `path`, to `pipeline` and links them all in that order.
pub(crate) fn mux_to_file(
    pipeline: &gst::Pipeline,
    head: &[&gst::Element],
    parser: &str,
    path: &Path,
) -> Result<(), String> {
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|e| format!("{name}: {e}"))
    };
    let parse = make(parser)?;
    let mux = make("mp4mux")?;
    let sink = gst::ElementFactory::make("filesink")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| format!("filesink: {e}"))?;
    let all: Vec<&gst::Element> = head.iter().copied().chain([&parse, &mux, &sink]).collect();
    pipeline.add_many(&all).map_err(|e| e.to_string())?;
    gst::Element::link_many(&all).map_err(|e| format!("linking the pipeline: {e}"))
}

/// The first error message waiting on `pipeline`'s bus, if any.
pub(crate) fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    pipeline
        .bus()?
        .pop_filtered(&[gst::MessageType::Error])
        .and_then(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
            _ => None,
        })
}

/// Waits up to `left` for end-of-stream or an error on `pipeline`'s bus.
pub(crate) fn wait_for_eos(pipeline: &gst::Pipeline, left: Duration) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or_else(|| format!("the pipeline did not finish within {left:?}"))?;
    match msg.view() {
        gst::MessageView::Eos(_) => Ok(()),
        gst::MessageView::Error(e) => Err(format!("{} ({:?})", e.error(), e.debug())),
        _ => Err("unexpected bus message".into()),
    }
}
