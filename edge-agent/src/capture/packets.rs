//! The camera's own compressed stream, kept beside the decoded frames.
//!
//! Evidence needs the seconds before a violation at full resolution, but a
//! decoded 1080p frame is 6 MB: holding seven seconds of them costs about a
//! gigabyte per camera. The camera already sent those seconds compressed
//! (H.264 or H.265, a few megabits a second), so the capture pipeline keeps
//! the parsed access units as they arrived — a reference to the GStreamer
//! buffer, no copy — and evidence decodes them again only when a violation
//! needs them (see `evidence::stream`).
//!
//! Each decoded [`super::Frame`] carries the [`Packets`] that arrived since
//! the previous frame was handed on, so the units travel in order with the
//! frames through the same channel, and a frame dropped because analysis is
//! behind hands its units on to the next one instead of losing them.

use gstreamer as gst;
use time::OffsetDateTime;

/// One access unit (one coded picture with its headers) of a camera stream.
#[derive(Debug, Clone)]
pub struct EncodedUnit {
    /// Wall-clock time of the picture, mapped like the frames' times, so a
    /// unit and the frame decoded from it carry the same time.
    pub time: OffsetDateTime,
    /// Whether decoding can start here (an IDR/IRAP picture with its
    /// parameter sets in-band).
    pub keyframe: bool,
    /// The coded bytes with their original PTS/DTS (a shared reference).
    pub buffer: gst::Buffer,
}

impl EncodedUnit {
    /// Coded bytes held.
    pub fn len(&self) -> usize {
        self.buffer.size()
    }

    /// Whether the unit holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.buffer.size() == 0
    }
}

/// Units of one stream that arrived together, with the caps that describe
/// them (`video/x-h264` or `video/x-h265`, byte-stream, one access unit per
/// buffer).
#[derive(Debug, Clone)]
pub struct Packets {
    pub caps: gst::Caps,
    pub units: Vec<EncodedUnit>,
}

impl Packets {
    /// Appends `later` (units that arrived after these). Caps of a later
    /// batch replace earlier ones (a renegotiated stream).
    pub fn append(&mut self, later: Packets) {
        self.caps = later.caps;
        self.units.extend(later.units);
    }
}

/// The coded formats kept, with the parser that frames them into access
/// units: anything else (MJPEG, raw V4L2) is decoded straight away and the
/// evidence keeps decoded frames instead.
pub(crate) const KEPT_CODECS: [(&str, &str); 2] =
    [("video/x-h264", "h264parse"), ("video/x-h265", "h265parse")];

/// The parser for a coded stream of caps name `name`, if it is kept.
pub(crate) fn parser_for(name: &str) -> Option<&'static str> {
    KEPT_CODECS
        .iter()
        .find(|(caps, _)| *caps == name)
        .map(|(_, parser)| *parser)
}
