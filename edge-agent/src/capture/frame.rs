//! One decoded picture as the analysis gets it: its number, its time on
//! the wall clock, and its pixels (a GStreamer buffer shared, not copied,
//! between the analysis and the evidence ring), laid out as the decoder
//! gave them or as BGR ([`PixelLayout`]).

use super::packets::Packets;
use super::pixels::{PixelLayout, Plane, Yuv420, YuvMatrix};
use gstreamer as gst;
use gstreamer_video as gst_video;
use std::sync::Arc;
use time::OffsetDateTime;

/// One decoded full-resolution frame: BGR, or the decoder's 4:2:0 YUV.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Counts from 0 for each opened source.
    pub number: u64,
    /// Wall-clock time of the frame: the stream's clock mapped to real time.
    pub time: OffsetDateTime,
    pub width: u32,
    pub height: u32,
    /// What the bytes of [`Frame::data`] are (checked against the buffer
    /// when the frame is made).
    pub layout: PixelLayout,
    /// `time` is when the frame arrived here, not a time the source
    /// stamped (HTTP MJPEG): off by the network's jitter, too coarse to
    /// time a vehicle between two lines.
    pub stamped_on_arrival: bool,
    buffer: std::sync::Arc<gst::MappedBuffer<gst::buffer::Readable>>,
    /// The source's coded access units that arrived since the previous
    /// frame was handed on; `None` for a source decoded straight away (and
    /// for synthetic frames).
    pub packets: Option<Packets>,
}

/// What the analysis takes from a decoder: its own 4:2:0 layouts, so
/// `videoconvert` passes the picture through untouched (it converts
/// anything else to I420).
pub(crate) fn decoded_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list([gst_video::VideoFormat::I420, gst_video::VideoFormat::Nv12])
        .build()
}

/// The layout of a decoded buffer: the video meta's planes where the
/// producer attached one (its strides may differ from the caps'), else the
/// caps' own.
fn layout_of(info: &gst_video::VideoInfo, buffer: &gst::BufferRef) -> Result<PixelLayout, String> {
    let meta = buffer.meta::<gst_video::VideoMeta>();
    let (offsets, strides): (Vec<usize>, Vec<i32>) = match &meta {
        Some(m) => (m.offset().to_vec(), m.stride().to_vec()),
        None => (info.offset().to_vec(), info.stride().to_vec()),
    };
    let plane = |i: usize| -> Result<Plane, String> {
        let offset = *offsets.get(i).ok_or("frame without its planes")?;
        let stride = strides
            .get(i)
            .and_then(|s| usize::try_from(*s).ok())
            .ok_or("frame with a negative stride")?;
        Ok(Plane { offset, stride })
    };
    let c = info.colorimetry();
    let matrix = YuvMatrix {
        full_range: c.range() == gst_video::VideoColorRange::Range0_255,
        ..match c.matrix() {
            gst_video::VideoColorMatrix::Bt601 => YuvMatrix::BT601,
            gst_video::VideoColorMatrix::Bt709 => YuvMatrix::BT709,
            gst_video::VideoColorMatrix::Bt2020 => YuvMatrix::BT2020,
            _ => YuvMatrix::default_for(info.height()),
        }
    };
    match info.format() {
        gst_video::VideoFormat::Bgr => Ok(PixelLayout::Bgr {
            stride: plane(0)?.stride,
        }),
        gst_video::VideoFormat::I420 => Ok(PixelLayout::Yuv420(Yuv420 {
            y: plane(0)?,
            u: plane(1)?,
            v: plane(2)?,
            chroma_step: 1,
            matrix,
        })),
        gst_video::VideoFormat::Nv12 => {
            let uv = plane(1)?;
            Ok(PixelLayout::Yuv420(Yuv420 {
                y: plane(0)?,
                u: uv,
                v: Plane {
                    offset: uv.offset + 1,
                    ..uv
                },
                chroma_step: 2,
                matrix,
            }))
        }
        other => Err(format!("frame in an unexpected pixel format {other:?}")),
    }
}

impl Frame {
    /// The pixel bytes, laid out as [`Frame::layout`] says.
    pub fn data(&self) -> &[u8] {
        self.buffer.as_slice()
    }

    /// A frame from a decoded appsink sample, numbered `number`, its
    /// time `to_unix_ns(running time)` (nanoseconds since the Unix epoch;
    /// the running time is the PTS through the sample's segment, which is
    /// what the pipeline clock shows it at). Also returns the buffer's raw
    /// PTS (0 when it has none).
    pub(crate) fn from_sample(
        sample: &gst::Sample,
        number: u64,
        to_unix_ns: impl Fn(i128) -> i128,
    ) -> Result<(Frame, i128), String> {
        let info = sample
            .caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
            .ok_or("frame without video caps")?;
        let (width, height) = (info.width(), info.height());
        let buffer = sample.buffer_owned().ok_or("sample without buffer")?;
        let has_pts = buffer.pts().is_some();
        let pts_ns = buffer.pts().map(|t| t.nseconds() as i128).unwrap_or(0);
        let layout = layout_of(&info, &buffer)?;
        let mapped = buffer
            .into_mapped_buffer_readable()
            .map_err(|_| "unreadable buffer")?;
        if let Some(problem) = layout.problem(mapped.len(), width, height) {
            return Err(format!("frame buffer does not fit its caps: {problem}"));
        }
        let time = if has_pts {
            let running = buffer_pts_running(sample, pts_ns);
            OffsetDateTime::from_unix_timestamp_nanos(to_unix_ns(running))
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
        } else {
            // A source that stamps nothing (HTTP MJPEG): when it arrived.
            OffsetDateTime::now_utc()
        };
        let frame = Frame {
            number,
            time,
            width,
            height,
            layout,
            stamped_on_arrival: !has_pts,
            buffer: Arc::new(mapped),
            packets: None,
        };
        Ok((frame, pts_ns))
    }

    /// A frame from raw BGR bytes (synthetic scenes, tests).
    pub fn from_bgr(
        number: u64,
        time: OffsetDateTime,
        width: u32,
        height: u32,
        bgr: Vec<u8>,
    ) -> Option<Frame> {
        let stride = width as usize * 3;
        if bgr.len() != stride * height as usize {
            return None;
        }
        Frame::from_raw(
            number,
            time,
            width,
            height,
            PixelLayout::Bgr { stride },
            bgr,
        )
    }

    /// A frame from raw bytes laid out as `layout` (synthetic scenes,
    /// tests); `None` if they do not fit it.
    pub fn from_raw(
        number: u64,
        time: OffsetDateTime,
        width: u32,
        height: u32,
        layout: PixelLayout,
        bytes: Vec<u8>,
    ) -> Option<Frame> {
        if layout.problem(bytes.len(), width, height).is_some() {
            return None;
        }
        // GStreamer buffers need the library initialised (idempotent).
        gst::init().ok()?;
        let buffer = std::sync::Arc::new(
            gst::Buffer::from_mut_slice(bytes)
                .into_mapped_buffer_readable()
                .ok()?,
        );
        Some(Frame {
            number,
            time,
            width,
            height,
            layout,
            stamped_on_arrival: false,
            buffer,
            packets: None,
        })
    }
}

/// `ts` (nanoseconds of the stream) as running time through `sample`'s
/// segment, signed: a unit before the segment start (an edit list that
/// starts mid-GOP) gets a negative running time, so every time is on one
/// base; `ts` itself when the sample has no time segment.
pub(crate) fn buffer_pts_running(sample: &gst::Sample, ts: i128) -> i128 {
    let Ok(t) = u64::try_from(ts) else {
        return ts;
    };
    let Some(segment) = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
    else {
        return ts;
    };
    match segment.to_running_time_full(gst::ClockTime::from_nseconds(t)) {
        Some(gst::Signed::Positive(r)) => r.nseconds() as i128,
        Some(gst::Signed::Negative(r)) => -(r.nseconds() as i128),
        None => ts,
    }
}
