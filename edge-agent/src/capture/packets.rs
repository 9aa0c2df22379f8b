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
    /// Whether decoding can start here: an H.264 IDR or an H.265 IRAP
    /// picture (read from the NAL unit types, not from the parser's
    /// delta-unit flag, which also clears for non-IDR I pictures and
    /// recovery points that a decoder cannot start from cleanly), with its
    /// parameter sets in-band.
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

/// Whether an access unit of `caps_name` (Annex B byte-stream) starts a
/// decodable run: its first picture NAL unit is an H.264 IDR (type 5) or
/// an H.265 IRAP picture (BLA, IDR or CRA, types 16–21; a decoder starting
/// at a CRA skips the leading pictures it cannot decode).
pub(crate) fn starts_decoding(caps_name: &str, au: &[u8]) -> bool {
    let h265 = caps_name == "video/x-h265";
    let mut i = 0;
    while i + 3 < au.len() {
        // A start code: 00 00 01 (a 4-byte one ends the same way).
        if au[i] != 0 || au[i + 1] != 0 || au[i + 2] != 1 {
            i += 1;
            continue;
        }
        let header = au[i + 3];
        if h265 {
            let kind = (header >> 1) & 0x3f;
            if kind < 32 {
                return (16..=21).contains(&kind);
            }
        } else {
            let kind = header & 0x1f;
            if (1..=5).contains(&kind) {
                return kind == 5;
            }
        }
        i += 3;
    }
    false
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

    /// Keeps at most `max` units: beyond that the oldest go, up to the
    /// newest keyframe (what precedes it is useless without the rest), so
    /// units held back for a stalled consumer cannot grow without bound.
    pub(crate) fn bound(&mut self, max: usize) {
        if self.units.len() <= max {
            return;
        }
        let cut = self
            .units
            .iter()
            .rposition(|u| u.keyframe)
            .filter(|k| self.units.len() - k <= max)
            .unwrap_or(self.units.len() - max);
        self.units.drain(..cut);
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

#[cfg(test)]
mod tests {
    use super::{EncodedUnit, Packets, starts_decoding};
    use gstreamer as gst;

    #[test]
    fn held_back_units_are_bounded_from_a_keyframe() {
        gst::init().unwrap();
        let t = time::OffsetDateTime::UNIX_EPOCH;
        let units = (0..100)
            .map(|i| EncodedUnit {
                time: t,
                keyframe: i % 25 == 0,
                buffer: gst::Buffer::from_mut_slice(vec![i as u8]),
            })
            .collect();
        let mut p = Packets {
            caps: gst::Caps::builder("video/x-h264").build(),
            units,
        };
        p.bound(200);
        assert_eq!(p.units.len(), 100);
        p.bound(30);
        assert_eq!(p.units.len(), 25, "from the keyframe at unit 75");
        assert!(p.units[0].keyframe);
        p.bound(10);
        assert_eq!(
            p.units.len(),
            10,
            "no keyframe within the bound: the newest 10"
        );
    }

    #[test]
    fn only_idr_and_irap_pictures_start_decoding() {
        let h264 = |nal: &[u8]| {
            let mut au = vec![0, 0, 0, 1, 0x09, 0xf0]; // access unit delimiter
            au.extend_from_slice(&[0, 0, 1]);
            au.extend_from_slice(nal);
            au
        };
        // SPS, PPS, then an IDR slice.
        let mut idr = vec![0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce];
        idr.extend(h264(&[0x65, 0x88]));
        assert!(starts_decoding("video/x-h264", &idr));
        // A non-IDR I slice (type 1), even after a recovery-point SEI.
        let mut i_slice = vec![0, 0, 1, 0x06, 0x06, 0x01];
        i_slice.extend(h264(&[0x41, 0x9a]));
        assert!(!starts_decoding("video/x-h264", &i_slice));
        // H.265: VPS/SPS/PPS then IDR_W_RADL (19) or CRA (21); TRAIL_R (1) not.
        let h265 = |kind: u8| vec![0, 0, 0, 1, 0x40, 0x01, 0, 0, 1, kind << 1, 0x01, 0xaf];
        assert!(starts_decoding("video/x-h265", &h265(19)));
        assert!(starts_decoding("video/x-h265", &h265(21)));
        assert!(!starts_decoding("video/x-h265", &h265(1)));
        // Garbage and empty units are not keyframes, and do not panic.
        assert!(!starts_decoding("video/x-h264", &[]));
        assert!(!starts_decoding("video/x-h264", &[0, 0, 1]));
        assert!(!starts_decoding("video/x-h264", &[0xff; 64]));
    }
}
