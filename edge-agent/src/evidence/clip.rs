//! The clip: frames from the ring buffer encoded as H.264 in MP4 by a
//! GStreamer pipeline (`appsrc ! videoconvert ! x264enc ! h264parse !
//! mp4mux ! filesink`, `openh264enc` where x264 is missing).
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
    let fail = |message: String| EvidenceError::Clip {
        path: path.to_path_buf(),
        message,
    };
    let first = frames.first().ok_or_else(|| fail("no frames".into()))?;
    let (w, h) = (first.width, first.height);
    if let Some(f) = frames.iter().find(|f| (f.width, f.height) != (w, h)) {
        return Err(fail(format!(
            "frame {} is {}x{}, the clip is {w}x{h}",
            f.number, f.width, f.height
        )));
    }
    gst::init().map_err(|e| fail(format!("GStreamer could not start: {e}")))?;
    let encoder_name =
        h264_encoder().ok_or_else(|| fail("no H.264 encoder (x264enc, openh264enc)".into()))?;

    // Nominal rate for the caps; the real timing is in the buffer times.
    let span_ns = (frames[frames.len() - 1].time - first.time).whole_nanoseconds();
    let fps = if frames.len() > 1 && span_ns > 0 {
        ((frames.len() - 1) as f64 * 1e9 / span_ns as f64)
            .round()
            .clamp(1.0, 120.0) as i32
    } else {
        25
    };
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgr, w, h)
        .fps(gst::Fraction::new(fps, 1))
        .build()
        .map_err(|e| fail(format!("video format: {e}")))?;
    let caps = info
        .to_caps()
        .map_err(|e| fail(format!("video caps: {e}")))?;
    let gst_stride = usize::try_from(info.stride()[0]).unwrap_or(0);
    let row = w as usize * 3;

    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(false)
        // Not blocking: `run` throttles itself, so a pipeline that fails
        // mid-way can never leave a push waiting forever.
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
    let parse = make("h264parse")?;
    let mux = make("mp4mux")?;
    let sink = gst::ElementFactory::make("filesink")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .map_err(|e| fail(format!("filesink: {e}")))?;
    pipeline
        .add_many([src.upcast_ref(), &convert, &encoder, &parse, &mux, &sink])
        .map_err(|e| fail(e.to_string()))?;
    gst::Element::link_many([src.upcast_ref(), &convert, &encoder, &parse, &mux, &sink])
        .map_err(|e| fail(format!("linking the pipeline: {e}")))?;

    let result = run(
        &pipeline,
        &src,
        frames,
        masks,
        gst_stride,
        row,
        info.size(),
        timeout,
    )
    .map_err(fail);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[allow(clippy::too_many_arguments)]
fn run(
    pipeline: &gst::Pipeline,
    src: &gst_app::AppSrc,
    frames: &[Frame],
    masks: &[PrivacyMask],
    gst_stride: usize,
    row: usize,
    size: usize,
    timeout: Duration,
) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    let bus_error = || {
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
                _ => None,
            })
    };
    let t0 = frames[0].time;
    let started = std::time::Instant::now();
    let max_queued = (size as u64).saturating_mul(4);
    let mut last_pts: Option<u64> = None;
    for (i, f) in frames.iter().enumerate() {
        // Keep at most a few frames queued (memory), watching for errors.
        while src.current_level_bytes() > max_queued {
            if let Some(e) = bus_error() {
                return Err(e);
            }
            if started.elapsed() > timeout {
                return Err(format!("the encoder did not keep up within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut img = frame_copy(f).map_err(|e| e.to_string())?;
        apply_masks(&mut img, masks).map_err(|e| e.to_string())?;
        let px = img
            .data_bytes()
            .map_err(|e| cv("reading a clip frame")(e).to_string())?;
        let mut data = vec![0u8; size];
        for (y, src_row) in px.chunks_exact(row).enumerate() {
            let at = y * gst_stride;
            if let Some(dst) = data.get_mut(at..at + row) {
                dst.copy_from_slice(src_row);
            }
        }
        // Times relative to the first frame, strictly increasing.
        let mut pts = u64::try_from((f.time - t0).whole_nanoseconds().max(0)).unwrap_or(0);
        if let Some(prev) = last_pts
            && pts <= prev
        {
            pts = prev + 1_000_000;
        }
        let next = frames
            .get(i + 1)
            .and_then(|n| u64::try_from((n.time - t0).whole_nanoseconds()).ok())
            .filter(|&n| n > pts);
        let duration = next.map_or(40_000_000, |n| n - pts);
        last_pts = Some(pts);
        let mut buffer = gst::Buffer::from_mut_slice(data);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        if let Err(e) = src.push_buffer(buffer) {
            return Err(bus_error().unwrap_or_else(|| format!("pushing frame {}: {e:?}", f.number)));
        }
    }
    src.end_of_stream()
        .map_err(|e| bus_error().unwrap_or_else(|| format!("ending the stream: {e:?}")))?;
    let left = timeout.saturating_sub(started.elapsed());
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(left.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or_else(|| format!("the encoder did not finish within {timeout:?}"))?;
    match msg.view() {
        gst::MessageView::Eos(_) => Ok(()),
        gst::MessageView::Error(e) => Err(format!("{} ({:?})", e.error(), e.debug())),
        _ => Err("unexpected bus message".into()),
    }
}
