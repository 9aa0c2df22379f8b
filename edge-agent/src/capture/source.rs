//! One GStreamer pipeline from a source address to frames, with the
//! source's own H.264/H.265 access units kept beside them.
//!
//! `uridecodebin` is told to stop at parsed H.264/H.265 (its `caps`), so a
//! coded stream reaches us before decoding; a `tee` sends it to a
//! `decodebin` (hardware decoders where the platform has them) for the
//! frames, kept in the decoder's own 4:2:0 YUV (`pixels.rs` says why), and
//! through the parser into a second appsink for the access units that
//! [`super::Packets`] carry. Any other stream (MJPEG, raw V4L2) is decoded
//! by `uridecodebin` itself into BGR frames that carry no packets.

use super::frame::{Frame, buffer_pts_running, decoded_caps};
use super::pace::AnalysisPace;
use super::packets::{EncodedUnit, Packets, parser_for, starts_decoding};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// What can go wrong with a camera source. Each variant names the source.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("camera source `{camera}`: {message}")]
    BadSource { camera: String, message: String },
    #[error("camera source `{camera}`: pipeline error: {message}")]
    Pipeline { camera: String, message: String },
    #[error("camera source `{camera}`: no frame within {waited:?}")]
    Timeout { camera: String, waited: Duration },
    /// A live source sent end-of-stream (an RTSP camera's BYE as it
    /// reboots, an HTTP server or proxy closing the connection): a drop,
    /// not the end of a recording.
    #[error("camera source `{camera}`: the live stream ended (end-of-stream)")]
    StreamEnded { camera: String },
    #[error(
        "camera source `{camera}`: frame of {width}x{height} does not match the configured {want_w}x{want_h}"
    )]
    WrongSize {
        camera: String,
        width: u32,
        height: u32,
        want_w: u32,
        want_h: u32,
    },
}

/// Where frames come from, parsed from the address in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `rtsp://` or `rtsps://`: rtspsrc through uridecodebin; TCP fallback is rtspsrc's own.
    Rtsp(String),
    /// A local recording (`.mp4`, `.mkv`, ...).
    File(PathBuf),
    /// A V4L2 device such as `/dev/video0`.
    V4l2(PathBuf),
    /// An HTTP(S) MJPEG stream.
    Http(String),
}

impl SourceSpec {
    /// Parses a source address; `/dev/video*` is a V4L2 device, a URI scheme
    /// picks the kind, anything else is a file path.
    pub fn parse(address: &str) -> Result<SourceSpec, CaptureError> {
        let bad = |m: &str| CaptureError::BadSource {
            camera: address.to_string(),
            message: m.to_string(),
        };
        let a = address.trim();
        if a.is_empty() {
            return Err(bad("empty address"));
        }
        let lower = a.to_ascii_lowercase();
        if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
            Ok(SourceSpec::Rtsp(a.to_string()))
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(SourceSpec::Http(a.to_string()))
        } else if let Some(path) = a.strip_prefix("file://") {
            Ok(SourceSpec::File(PathBuf::from(path)))
        } else if a.starts_with("/dev/video") {
            Ok(SourceSpec::V4l2(PathBuf::from(a)))
        } else if a.contains("://") {
            Err(bad(
                "unsupported scheme (use rtsp://, http(s)://, file:// or a path)",
            ))
        } else {
            Ok(SourceSpec::File(PathBuf::from(a)))
        }
    }

    /// Whether the source runs in real time (a live camera) or can be read
    /// as fast as we can process it (a recording).
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceSpec::File(_))
    }

    fn uri(&self) -> Result<String, String> {
        match self {
            SourceSpec::Rtsp(u) | SourceSpec::Http(u) => Ok(u.clone()),
            SourceSpec::File(p) => {
                let abs = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
                gst::glib::filename_to_uri(&abs, None)
                    .map(|u| u.to_string())
                    .map_err(|e| e.to_string())
            }
            SourceSpec::V4l2(p) => Ok(format!("v4l2://{}", p.display())),
        }
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Rtsp(u) | SourceSpec::Http(u) => f.write_str(&redact(u)),
            SourceSpec::File(p) | SourceSpec::V4l2(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Hides a password in `scheme://user:pass@host` so it never reaches a log.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &uri[..s], &uri[at + 1..]),
        _ => uri.to_string(),
    }
}

/// Whether a recording is read at its own frame rate (like a camera) or as
/// fast as the consumer pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    RealTime,
    AsFastAsPossible,
}

/// An open source delivering frames.
pub struct FrameSource {
    spec: SourceSpec,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    next_number: u64,
    /// Wall-clock time at pipeline running-time 0.
    epoch_ns: i128,
    expect_size: Option<(u32, u32)>,
    /// The appsink of the coded access units, once the stream showed it is
    /// H.264/H.265 (set from the pad-added callback).
    coded: Arc<Mutex<Option<gst_app::AppSink>>>,
    /// Time of the last coded unit, for a unit that comes without one.
    last_unit_time: Option<OffsetDateTime>,
    /// Times of the latest coded units (decode order), so a frame can tell
    /// whether its own unit has come through the coded branch yet.
    recent_units: VecDeque<OffsetDateTime>,
    /// Frames still to go without waiting, after a frame's own unit failed
    /// to arrive within [`OWN_UNIT_WAIT`] (a stream whose decoder changes
    /// times, or a passing hiccup): meanwhile units travel with whichever
    /// frame follows them. Waiting resumes after [`NO_WAIT_FRAMES`].
    no_wait_for: u32,
}

/// Longest a decoded frame waits for its own coded unit to reach the coded
/// appsink. Both left the tee together, so it is a matter of thread
/// scheduling; without the wait the last frame of a recording could end
/// without its unit.
const OWN_UNIT_WAIT: Duration = Duration::from_millis(50);

/// How many recent unit times are remembered (B-frames and the decoding
/// queue: a picture's own unit can arrive many units before the picture
/// is decoded, more so on a paced 50–60 fps stream).
const RECENT_UNITS: usize = 256;

/// Frames that do not wait after a frame's own unit did not come.
const NO_WAIT_FRAMES: u32 = 250;

/// What `uridecodebin` exposes: its default raw caps plus the coded formats
/// we keep (so those come out parsed, not decoded).
const EXPOSED_CAPS: &str = "video/x-raw(ANY); audio/x-raw(ANY); text/x-raw(ANY); \
    subpicture/x-dvd; subpicture/x-dvb; subpicture/x-pgs; video/x-h264; video/x-h265";

impl FrameSource {
    /// Builds and starts the pipeline for `spec`. `expect_size` makes frames
    /// of any other size an error (the site geometry refers to one size).
    pub fn open(
        spec: &SourceSpec,
        pacing: Pacing,
        expect_size: Option<(u32, u32)>,
    ) -> Result<FrameSource, CaptureError> {
        Self::open_paced(spec, pacing, expect_size, None)
    }

    /// [`FrameSource::open`], and where the source turns out to be
    /// H.264/H.265 (its coded units are kept for the evidence) only the
    /// decoded pictures on the `analysis_fps` schedule are handed on, in
    /// the decoder's own YUV (the analysis converts only what it looks at,
    /// `pixels.rs`). Other sources hand on every frame, BGR (their
    /// evidence keeps them).
    pub fn open_paced(
        spec: &SourceSpec,
        pacing: Pacing,
        expect_size: Option<(u32, u32)>,
        analysis_fps: Option<f64>,
    ) -> Result<FrameSource, CaptureError> {
        gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
        let name = spec.to_string();
        let fail = |message: String| CaptureError::Pipeline {
            camera: name.clone(),
            message,
        };
        if let SourceSpec::File(p) = spec
            && !p.is_file()
        {
            return Err(CaptureError::BadSource {
                camera: name,
                message: "no such file".into(),
            });
        }
        let uri = spec.uri().map_err(|m| CaptureError::BadSource {
            camera: name.clone(),
            message: m,
        })?;
        let pipeline = gst::Pipeline::new();
        let exposed = gst::Caps::from_str(EXPOSED_CAPS)
            .map_err(|e| fail(format!("uridecodebin caps: {e}")))?;
        let src = gst::ElementFactory::make("uridecodebin")
            .property("uri", &uri)
            .property("caps", &exposed)
            .build()
            .map_err(|e| fail(format!("uridecodebin: {e}")))?;
        let convert = gst::ElementFactory::make("videoconvert")
            .build()
            .map_err(|e| fail(format!("videoconvert: {e}")))?;
        let caps = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Bgr)
            .build();
        let sink = gst_app::AppSink::builder()
            .caps(&caps)
            .max_buffers(4)
            .drop(spec.is_live())
            .sync(pacing == Pacing::RealTime && !spec.is_live())
            .build();
        pipeline
            .add_many([&src, &convert, sink.upcast_ref()])
            .map_err(|e| fail(e.to_string()))?;
        convert.link(&sink).map_err(|e| fail(e.to_string()))?;
        let coded = Arc::new(Mutex::new(None));
        let (convert_weak, pipeline_weak, sink_weak, slot) = (
            convert.downgrade(),
            pipeline.downgrade(),
            sink.downgrade(),
            coded.clone(),
        );
        src.connect_pad_added(move |_, pad| {
            let (Some(convert), Some(pipeline)) = (convert_weak.upgrade(), pipeline_weak.upgrade())
            else {
                return;
            };
            let Some(name) = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
            else {
                return;
            };
            let Some(sinkpad) = convert.static_pad("sink") else {
                return;
            };
            // One video stream per camera: the first one wins. The lock is
            // held from the check to the build, so two video pads arriving
            // on two streaming threads cannot both be taken.
            let Ok(mut coded) = slot.lock() else {
                return;
            };
            if sinkpad.is_linked() || coded.is_some() {
                return;
            }
            if name == "video/x-raw" {
                let _ = pad.link(&sinkpad);
            } else if let Some(parser) = parser_for(&name) {
                // Decoded pictures stay in the decoder's layout (nothing
                // is negotiated before this link).
                if let Some(sink) = sink_weak.upgrade() {
                    sink.set_caps(Some(&decoded_caps()));
                }
                let pace = AnalysisPace::new(analysis_fps);
                match coded_branches(&pipeline, pad, &convert, &name, parser, pace) {
                    Ok(appsink) => *coded = Some(appsink),
                    // The pad stays unlinked: the source fails with a
                    // not-linked error and the camera is restarted.
                    Err(e) => tracing::error!(error = %e, "cannot build the decoding branches"),
                }
            }
        });
        // An HTTP camera's multipart MJPEG: one stream whose type never
        // changes. Otherwise `multipartdemux` never says it has all its
        // streams, and decodebin holds the pictures back until its queue
        // overflows (megabytes: many seconds of a small camera, or until
        // the connection closes).
        if let Some(bin) = src.dynamic_cast_ref::<gst::Bin>() {
            bin.connect_deep_element_added(|_, _, element| {
                if element
                    .factory()
                    .is_some_and(|f| f.name() == "multipartdemux")
                {
                    element.set_property("single-stream", true);
                }
            });
        }
        // A realtime system clock makes base_time + running time a Unix time.
        let clock = gst::SystemClock::obtain();
        clock.set_property_from_str("clock-type", "realtime");
        pipeline.use_clock(Some(&clock));
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        // The base time is set when the pipeline actually reaches PLAYING,
        // which for a file happens after preroll, asynchronously: wait for
        // it, or frame times would start at 1970.
        let _ = pipeline.state(gst::ClockTime::from_seconds(10));
        let now_ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let epoch_ns = pipeline
            .base_time()
            .map(|t| t.nseconds() as i128)
            // A realtime base more than a day from now is not one.
            .filter(|b| (b - now_ns).abs() < 86_400_000_000_000)
            .unwrap_or(now_ns);
        Ok(FrameSource {
            spec: spec.clone(),
            pipeline,
            sink,
            next_number: 0,
            epoch_ns,
            expect_size,
            coded,
            last_unit_time: None,
            recent_units: VecDeque::with_capacity(RECENT_UNITS),
            no_wait_for: 0,
        })
    }

    /// The coded access units waiting in their appsink, or `None` if this
    /// source is decoded straight away. Waits (at most [`OWN_UNIT_WAIT`])
    /// for the unit of the picture at `own` if it has not come through yet.
    /// No unit is dropped: one without a time (rare) takes the previous
    /// unit's, since every later picture up to the next keyframe may refer
    /// to it.
    fn drain_packets(&mut self, own: OffsetDateTime) -> Option<Packets> {
        let sink = self.coded.lock().ok()?.clone()?;
        self.no_wait_for = self.no_wait_for.saturating_sub(1);
        let mut caps = None;
        let mut units = Vec::new();
        let deadline = std::time::Instant::now() + OWN_UNIT_WAIT;
        loop {
            let mut sample = sink.try_pull_sample(gst::ClockTime::ZERO);
            if sample.is_none() && self.no_wait_for == 0 && !self.has_unit_at(own) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                sample =
                    sink.try_pull_sample(gst::ClockTime::from_nseconds(left.as_nanos() as u64));
                if sample.is_none() && !sink.is_eos() {
                    tracing::debug!(
                        camera = %self.spec,
                        "a frame's coded unit did not come in time; units travel with the next frames for a while"
                    );
                    self.no_wait_for = NO_WAIT_FRAMES;
                }
            }
            let Some(sample) = sample else {
                break;
            };
            let (Some(buffer), Some(c)) = (sample.buffer_owned(), sample.caps_owned()) else {
                continue;
            };
            let time = buffer
                .pts()
                .or(buffer.dts())
                .and_then(|ts| {
                    let running = buffer_pts_running(&sample, ts.nseconds() as i128);
                    OffsetDateTime::from_unix_timestamp_nanos(self.epoch_ns + running).ok()
                })
                .or(self.last_unit_time);
            let Some(time) = time else {
                // Before the first timed unit: nothing can refer to it
                // that we could place in a clip either.
                continue;
            };
            let name = c
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
                && buffer
                    .map_readable()
                    .is_ok_and(|m| starts_decoding(&name, m.as_slice()));
            self.last_unit_time = Some(time);
            if self.recent_units.len() == RECENT_UNITS {
                self.recent_units.pop_front();
            }
            self.recent_units.push_back(time);
            caps = Some(c);
            units.push(EncodedUnit {
                time,
                keyframe,
                buffer,
            });
        }
        // Caps of a stream that has not sent a unit yet: the sink's own.
        let caps = caps.or_else(|| sink.caps())?;
        Some(Packets { caps, units })
    }

    /// Whether the unit of the picture at `time` has been drained (to the
    /// millisecond: the decoder keeps the unit's PTS).
    fn has_unit_at(&self, time: OffsetDateTime) -> bool {
        self.recent_units
            .iter()
            .any(|t| (*t - time).abs() <= time::Duration::MILLISECOND)
    }

    /// The next frame, `Ok(None)` at end-of-stream: the end of a recording,
    /// or a live source that stopped (an RTSP camera's BYE, an HTTP server
    /// closing the connection), which [`super::Camera`] takes as a drop and
    /// reconnects. Pipeline errors (a corrupt file, a dropped stream) come
    /// back as errors.
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let name = self.spec.to_string();
        if let Some(err) = self.bus_error() {
            return Err(CaptureError::Pipeline {
                camera: name,
                message: err,
            });
        }
        let sample = match self
            .sink
            .try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        {
            Some(s) => s,
            None => {
                if let Some(err) = self.bus_error() {
                    return Err(CaptureError::Pipeline {
                        camera: name,
                        message: err,
                    });
                }
                if self.sink.is_eos() {
                    return Ok(None);
                }
                return Err(CaptureError::Timeout {
                    camera: name,
                    waited: timeout,
                });
            }
        };
        let (mut frame, _) =
            Frame::from_sample(&sample, self.next_number, |pts| self.epoch_ns + pts).map_err(
                |message| CaptureError::Pipeline {
                    camera: name.clone(),
                    message,
                },
            )?;
        if let Some((w, h)) = self.expect_size
            && (w, h) != (frame.width, frame.height)
        {
            return Err(CaptureError::WrongSize {
                camera: name,
                width: frame.width,
                height: frame.height,
                want_w: w,
                want_h: h,
            });
        }
        self.next_number += 1;
        frame.packets = self.drain_packets(frame.time);
        Ok(Some(frame))
    }

    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(e.error().to_string());
            }
        }
        None
    }

    /// The source this pipeline reads.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }
}

/// Builds `tee ! queue ! decodebin ! <convert>` and `tee ! queue !
/// <parser> ! appsink` for a coded stream on `pad`, and returns that appsink
/// (byte-stream, one access unit per buffer, parameter sets repeated at
/// every keyframe so each keyframe starts a decodable run).
fn coded_branches(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    convert: &gst::Element,
    caps_name: &str,
    parser: &str,
    pace: AnalysisPace,
) -> Result<gst_app::AppSink, String> {
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|e| format!("{name}: {e}"))
    };
    let tee = make("tee")?;
    let (q_dec, q_coded) = (make("queue")?, make("queue")?);
    let decode = make("decodebin")?;
    let parse = make(parser)?;
    parse.set_property("config-interval", -1i32);
    let appsink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder(caps_name)
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        // Drained at every frame; never drop a unit (a lost unit breaks
        // every picture up to the next keyframe) and never block the tee.
        .max_buffers(0)
        .drop(false)
        .sync(false)
        .build();
    let elements = [
        &tee,
        &q_dec,
        &decode,
        &q_coded,
        &parse,
        appsink.upcast_ref(),
    ];
    pipeline.add_many(elements).map_err(|e| e.to_string())?;
    let built = link_branches(pad, convert, elements);
    if built.is_err() {
        for e in elements {
            let _ = e.set_state(gst::State::Null);
        }
        let _ = pipeline.remove_many(elements);
    }
    built?;
    if pace.thins() {
        pace_decoded(convert, pace)?;
    }
    Ok(appsink)
}

/// Drops the decoded pictures off the `pace` schedule (by their PTS) before
/// `convert`. Pictures without a PTS go through.
fn pace_decoded(convert: &gst::Element, pace: AnalysisPace) -> Result<(), String> {
    let sinkpad = convert
        .static_pad("sink")
        .ok_or("videoconvert without a sink pad")?;
    let pace = Mutex::new(pace);
    sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Ok;
        };
        let due = pace
            .lock()
            .map(|mut p| p.due(pts.nseconds() as i128))
            .unwrap_or(true);
        if due {
            gst::PadProbeReturn::Ok
        } else {
            // Consumed here (the buffer is released when `info` drops),
            // flow OK upstream. Not `Drop`: gstreamer-rs has already
            // taken the buffer out of the probe's info, and the core then
            // unrefs a null pointer (a CRITICAL per picture).
            gst::PadProbeReturn::Handled
        }
    });
    Ok(())
}

/// Links the branches built by [`coded_branches`] (`tee`, its two queues,
/// `decodebin`, the parser, the appsink) and then `pad` into the tee.
fn link_branches(
    pad: &gst::Pad,
    convert: &gst::Element,
    elements: [&gst::Element; 6],
) -> Result<(), String> {
    let [tee, q_dec, decode, q_coded, parse, appsink] = elements;
    gst::Element::link_many([tee, q_dec, decode]).map_err(|e| e.to_string())?;
    gst::Element::link_many([tee, q_coded, parse, appsink]).map_err(|e| e.to_string())?;
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let is_raw_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name() == "video/x-raw"))
            .unwrap_or(false);
        if let Some(sinkpad) = convert_weak.upgrade().and_then(|c| c.static_pad("sink"))
            && is_raw_video
            && !sinkpad.is_linked()
        {
            let _ = pad.link(&sinkpad);
        }
    });
    for e in elements {
        e.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    let tee_sink = tee.static_pad("sink").ok_or("tee without a sink pad")?;
    pad.link(&tee_sink).map_err(|e| format!("{e:?}"))?;
    Ok(())
}

impl Drop for FrameSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_to_their_kind() {
        assert!(matches!(
            SourceSpec::parse("rtsp://cam/1"),
            Ok(SourceSpec::Rtsp(_))
        ));
        assert!(matches!(
            SourceSpec::parse("http://cam/mjpg"),
            Ok(SourceSpec::Http(_))
        ));
        assert!(matches!(
            SourceSpec::parse("/dev/video0"),
            Ok(SourceSpec::V4l2(_))
        ));
        assert!(matches!(
            SourceSpec::parse("clip.mp4"),
            Ok(SourceSpec::File(_))
        ));
        assert!(SourceSpec::parse("").is_err());
        assert!(SourceSpec::parse("ftp://x").is_err());
    }

    #[test]
    fn passwords_never_shown() {
        let s = SourceSpec::parse("rtsp://admin:secret@10.0.0.5/stream").unwrap();
        assert!(!s.to_string().contains("secret"));
    }
}
