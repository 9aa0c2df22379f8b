//! The evidence ring of a camera whose own coded stream is kept (H.264 or
//! H.265, see `capture::Packets`): the last seconds as the camera sent them,
//! decoded again only for a violation.
//!
//! Keeping decoded frames costs about 1.1 GB per 1080p25 camera for 7 s
//! (6 MB a frame); the coded stream of the same seconds is a few MB. The
//! price is paid per violation, on the post-processing worker: the job's
//! access units are decoded once for the stills and the plate frames
//! ([`JobStream::decode`]), and the clip is either the camera's own stream
//! remuxed untouched into MP4 ([`JobStream::remux`], for H.264 when the
//! site has no privacy mask: no re-encoding, the pictures exactly as the
//! camera coded them) or decoded, masked and re-encoded as H.264
//! ([`JobStream::encode_masked`]).
//!
//! A decoded picture is matched to the analysed frame by its presentation
//! time, which the decoder carries through: the ring also keeps an index
//! of frame number → time for the frames the analysis saw. A camera that
//! repeats a timestamp is matched in stream order within that timestamp.
//!
//! Eviction keeps whole groups of pictures: the oldest run from one
//! keyframe to the next goes only when the rest still reaches back
//! [`RingLimits::max_age`], so the oldest unit kept is always a keyframe a
//! decoder can start at. The count and byte bounds evict unit by unit (a
//! stream without keyframes for longer than the ring must not grow without
//! bound); a run left without its keyframe is then dropped as well.

use super::clip::{ClipEncoder, bus_error, mux_to_file, nominal_fps, wait_for_eos};
use super::{EvidenceError, RingLimits};
use crate::capture::{EncodedUnit, Frame, Packets, decoded_caps, parser_for};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The last seconds of one camera's coded stream, with the frame index.
#[derive(Debug)]
pub struct StreamRing {
    limits: RingLimits,
    caps: Option<gst::Caps>,
    units: VecDeque<EncodedUnit>,
    bytes: usize,
    /// The latest picture time pushed (units arrive in decode order, so
    /// the newest is not always the last).
    newest: Option<OffsetDateTime>,
    index: VecDeque<(u64, OffsetDateTime)>,
}

impl StreamRing {
    /// An empty ring.
    pub fn new(limits: RingLimits) -> Self {
        Self {
            limits,
            caps: None,
            units: VecDeque::new(),
            bytes: 0,
            newest: None,
            index: VecDeque::new(),
        }
    }

    /// Records an analysed frame and the units that came with it.
    pub fn push(&mut self, number: u64, time: OffsetDateTime, packets: Option<Packets>) {
        if self.index.back().is_some_and(|(n, _)| number <= *n) {
            self.clear();
        }
        self.index.push_back((number, time));
        if let Some(p) = packets {
            self.caps = Some(p.caps);
            for u in p.units {
                self.bytes += u.len();
                self.newest = self.newest.max(Some(u.time));
                self.units.push_back(u);
            }
        }
        self.evict();
    }

    fn evict(&mut self) {
        let Some(newest) = self.newest else {
            return;
        };
        let horizon = newest - self.limits.max_age;
        loop {
            let over = self.units.len() > self.limits.max_frames.max(1)
                || self.bytes > self.limits.max_bytes;
            let next_key = self.units.iter().skip(1).position(|u| u.keyframe);
            let cut = match next_key.map(|i| i + 1) {
                // The run before the next keyframe is no longer needed, or
                // cannot be decoded (it lost its keyframe).
                Some(k) if self.units[k].time <= horizon || !self.units[0].keyframe => k,
                _ if over && self.units.len() > 1 => 1,
                _ => break,
            };
            for u in self.units.drain(..cut) {
                self.bytes -= u.len();
            }
        }
        // An analysed frame older than every unit held can no longer be
        // decoded: forget it, so a violation on it is refused at once.
        if let Some(oldest) = self.units.front().map(|u| u.time) {
            while self.index.front().is_some_and(|(_, t)| *t < oldest) {
                self.index.pop_front();
            }
        }
        while self.index.len() > 4 * self.limits.max_frames.max(1) {
            self.index.pop_front();
        }
    }

    /// Drops everything (a restarted source).
    pub fn clear(&mut self) {
        self.units.clear();
        self.index.clear();
        self.bytes = 0;
        self.newest = None;
    }

    /// Coded bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Access units held.
    pub fn units(&self) -> usize {
        self.units.len()
    }

    /// The time of analysed frame `number`, if still indexed.
    pub fn time_of(&self, number: u64) -> Option<OffsetDateTime> {
        let i = self.index.binary_search_by_key(&number, |(n, _)| *n).ok()?;
        Some(self.index[i].1)
    }

    /// Oldest and newest frame numbers indexed.
    pub fn frame_span(&self) -> Option<(u64, u64)> {
        Some((self.index.front()?.0, self.index.back()?.0))
    }

    /// The newest analysed frame's number and time.
    pub fn newest_frame(&self) -> Option<(u64, OffsetDateTime)> {
        self.index.back().copied()
    }

    /// The part of the stream a violation whose clip starts at `start`
    /// needs: from the last keyframe at or before `start` (else the first
    /// keyframe held), with the frames indexed from there.
    pub(crate) fn snapshot(&self, start: OffsetDateTime) -> Option<JobStream> {
        let caps = self.caps.clone()?;
        let keys = || self.units.iter().enumerate().filter(|(_, u)| u.keyframe);
        let from = keys()
            .rfind(|(_, u)| u.time <= start)
            .or_else(|| keys().next())
            .map(|(i, _)| i)?;
        let units: Vec<EncodedUnit> = self.units.iter().skip(from).cloned().collect();
        let first = units.first()?.time;
        let index = self
            .index
            .iter()
            .filter(|(_, t)| *t >= first)
            .copied()
            .collect();
        Some(JobStream { caps, units, index })
    }
}

/// A violation's part of the coded stream, from a keyframe on.
#[derive(Debug, Clone)]
pub(crate) struct JobStream {
    caps: gst::Caps,
    units: Vec<EncodedUnit>,
    /// Analysed frames in this part: number → time.
    index: BTreeMap<u64, OffsetDateTime>,
}

impl JobStream {
    /// Whether the stream is H.264, which every browser plays (an H.265
    /// camera's clip is re-encoded so the console and the citizens' app
    /// can show it).
    pub(crate) fn is_h264(&self) -> bool {
        self.caps
            .structure(0)
            .is_some_and(|s| s.name() == "video/x-h264")
    }

    /// Adds a later analysed frame and its units.
    pub(crate) fn push(&mut self, number: u64, time: OffsetDateTime, packets: Option<Packets>) {
        self.index.insert(number, time);
        if let Some(p) = packets {
            self.caps = p.caps;
            self.units.extend(p.units);
        }
    }

    /// The time of the first unit (the keyframe decoding starts at).
    pub(crate) fn first_unit_time(&self) -> Option<OffsetDateTime> {
        self.units.first().map(|u| u.time)
    }

    /// Whether the units can go into an MP4 as they are: every unit has a
    /// PTS, and where decode times are missing (RTSP gives PTS only) the
    /// PTS never goes back in decode order (no B-frames), so the PTS can
    /// serve as DTS. A stream with B-frames and no DTS is re-encoded
    /// instead: a muxer would place its pictures out of order. So is a
    /// stream that repeats a timestamp (two pictures one PTS, or a DTS that
    /// does not go forward): the decode path makes its times unique.
    pub(crate) fn can_remux(&self) -> bool {
        let all_pts = self.units.iter().all(|u| u.buffer.pts().is_some());
        let all_dts = self.units.iter().all(|u| u.buffer.dts().is_some());
        let pts_in_order = self
            .units
            .windows(2)
            .all(|w| w[0].buffer.pts() < w[1].buffer.pts());
        let mut seen = std::collections::HashSet::new();
        let pts_unique = self.units.iter().all(|u| seen.insert(u.buffer.pts()));
        let dts_forward = self
            .units
            .windows(2)
            .all(|w| w[0].buffer.dts() < w[1].buffer.dts());
        all_pts && pts_unique && ((all_dts && dts_forward) || pts_in_order)
    }

    /// The latest picture time held.
    pub(crate) fn newest_unit_time(&self) -> Option<OffsetDateTime> {
        self.units.iter().map(|u| u.time).max()
    }

    /// The time of analysed frame `number`, if in this part.
    pub(crate) fn time_of(&self, number: u64) -> Option<OffsetDateTime> {
        self.index.get(&number).copied()
    }

    /// Analysed frames in this part, by number.
    pub(crate) fn frames(&self) -> impl Iterator<Item = (u64, OffsetDateTime)> + '_ {
        self.index.iter().map(|(n, t)| (*n, *t))
    }

    /// Decodes the pictures shown within `span` (all when `None`): from the
    /// last keyframe at or before its start, stopping after its end. Calls
    /// `each` with each picture in presentation order, numbered as the
    /// analysis numbered it (`None` for a picture the analysis never saw,
    /// e.g. one dropped while it was behind). Pictures the decoder gives a
    /// time no unit had are skipped.
    pub(crate) fn decode(
        &self,
        span: Option<(OffsetDateTime, OffsetDateTime)>,
        timeout: Duration,
        mut each: impl FnMut(Frame, Option<u64>) -> Result<(), EvidenceError>,
    ) -> Result<(), String> {
        gst::init().map_err(|e| format!("GStreamer could not start: {e}"))?;
        let started = Instant::now();
        let unique = self.unique_pts();
        let by_pts: BTreeMap<u64, OffsetDateTime> = self
            .units
            .iter()
            .zip(&unique)
            .filter_map(|(u, p)| Some(((*p)?, u.time)))
            .collect();
        // Frame numbers by time, in order: a camera that repeats a
        // timestamp gives two pictures one time (and one PTS); the k-th
        // picture decoded with that time is the k-th frame the analysis
        // numbered with it (both see them in stream order; a paced analysis
        // that skipped the second keeps only the first).
        let mut numbers: HashMap<i128, Vec<u64>> = HashMap::new();
        for (n, t) in &self.index {
            numbers
                .entry(t.unix_timestamp_nanos())
                .or_default()
                .push(*n);
        }
        let mut decoded_at: HashMap<i128, usize> = HashMap::new();
        let pipeline = gst::Pipeline::new();
        let src = self.appsrc();
        let make = |name: &str| {
            gst::ElementFactory::make(name)
                .build()
                .map_err(|e| format!("{name}: {e}"))
        };
        let decode = make("decodebin")?;
        let convert = make("videoconvert")?;
        let sink = gst_app::AppSink::builder()
            // The layout the capture hands the analysis, so a picture
            // decoded again is byte for byte the one the analysis saw.
            .caps(&decoded_caps())
            .max_buffers(2)
            .sync(false)
            .build();
        pipeline
            .add_many([src.upcast_ref(), &decode, &convert, sink.upcast_ref()])
            .map_err(|e| e.to_string())?;
        src.link(&decode).map_err(|e| e.to_string())?;
        convert.link(&sink).map_err(|e| e.to_string())?;
        let convert_weak = convert.downgrade();
        decode.connect_pad_added(move |_, pad| {
            if let Some(sinkpad) = convert_weak.upgrade().and_then(|c| c.static_pad("sink"))
                && !sinkpad.is_linked()
            {
                let _ = pad.link(&sinkpad);
            }
        });
        let result = (|| {
            pipeline
                .set_state(gst::State::Playing)
                .map_err(|e| format!("cannot start the decoder: {e}"))?;
            let from = span
                .and_then(|(start, _)| {
                    self.units
                        .iter()
                        .rposition(|u| u.keyframe && u.time <= start)
                })
                .unwrap_or(0);
            // Pictures of a repeated time that lie before the start are
            // not decoded: count them, so the k-th decoded one still maps
            // to the k-th frame of that time.
            for u in self.units.iter().take(from) {
                *decoded_at.entry(u.time.unix_timestamp_nanos()).or_default() += 1;
            }
            self.push_units(&src, from, None, Some(&unique))?;
            let mut past_end = 0;
            loop {
                if started.elapsed() > timeout {
                    return Err(format!("decoding did not finish within {timeout:?}"));
                }
                // Short waits, so an error on the bus (no EOS follows one)
                // is seen at once rather than after the whole timeout.
                let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
                    if sink.is_eos() {
                        return Ok(());
                    }
                    if let Some(e) = bus_error(&pipeline) {
                        return Err(e);
                    }
                    continue;
                };
                let (mut frame, pts) = Frame::from_sample(&sample, 0, |p| p)?;
                let Some(time) = u64::try_from(pts).ok().and_then(|p| nearest(&by_pts, p)) else {
                    continue;
                };
                let key = time.unix_timestamp_nanos();
                let nth = decoded_at.entry(key).or_default();
                let number = numbers.get(&key).and_then(|ns| ns.get(*nth)).copied();
                *nth += 1;
                if let Some((start, end)) = span {
                    if *time > end {
                        // Presentation order: nothing at or before the end
                        // follows, but a decoder still learning the stream's
                        // reorder depth may emit one late; allow a few.
                        past_end += 1;
                        if past_end >= PAST_END_PICTURES {
                            return Ok(());
                        }
                        continue;
                    }
                    if *time < start {
                        continue;
                    }
                }
                frame.time = *time;
                frame.number = number.unwrap_or(u64::MAX);
                each(frame, number).map_err(|e| e.to_string())?;
            }
        })();
        let _ = pipeline.set_state(gst::State::Null);
        result
    }

    /// Writes the camera's own pictures, from the first unit (a keyframe at
    /// or before the clip start) to the last one shown at or before `end`,
    /// into an MP4 at `path` without re-encoding.
    pub(crate) fn remux(
        &self,
        end: OffsetDateTime,
        path: &Path,
        timeout: Duration,
    ) -> Result<(), EvidenceError> {
        let fail = |message: String| EvidenceError::Clip {
            path: path.to_path_buf(),
            message,
        };
        gst::init().map_err(|e| fail(format!("GStreamer could not start: {e}")))?;
        let last = self
            .units
            .iter()
            .rposition(|u| u.time <= end)
            .ok_or_else(|| fail("no picture in the clip window".into()))?;
        let name = self
            .caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let parser = parser_for(&name).ok_or_else(|| fail(format!("cannot remux {name}")))?;
        let pipeline = gst::Pipeline::new();
        let src = self.appsrc();
        mux_to_file(&pipeline, &[src.upcast_ref()], parser, path).map_err(fail)?;
        let result = (|| {
            pipeline
                .set_state(gst::State::Playing)
                .map_err(|e| format!("cannot start: {e}"))?;
            self.push_units(&src, 0, Some(last + 1), None)?;
            wait_for_eos(&pipeline, timeout)
        })();
        let _ = pipeline.set_state(gst::State::Null);
        result.map_err(fail)
    }

    /// Decodes the stream, fills the privacy masks and encodes the pictures
    /// shown in `start..=end` into an MP4 at `path`.
    pub(crate) fn encode_masked(
        &self,
        (start, end): (OffsetDateTime, OffsetDateTime),
        masks: &[crate::site::PrivacyMask],
        path: &Path,
        bitrate_kbps: u32,
        timeout: Duration,
    ) -> Result<(), EvidenceError> {
        let in_window: Vec<OffsetDateTime> = self
            .index
            .values()
            .copied()
            .filter(|t| *t >= start && *t <= end)
            .collect();
        let span = match (in_window.first(), in_window.last()) {
            (Some(a), Some(b)) => (*b - *a).whole_nanoseconds(),
            _ => 0,
        };
        let fps = nominal_fps(in_window.len(), span);
        let mut encoder: Option<ClipEncoder> = None;
        self.decode(Some((start, end)), timeout, |frame, _| {
            let enc = match encoder.as_mut() {
                Some(e) => e,
                None => encoder.insert(ClipEncoder::start(
                    (frame.width, frame.height),
                    fps,
                    masks,
                    path,
                    bitrate_kbps,
                    timeout,
                )?),
            };
            enc.push(&frame)
        })
        .map_err(|message| EvidenceError::Clip {
            path: path.to_path_buf(),
            message: format!("decoding the camera stream: {message}"),
        })?;
        encoder
            .ok_or_else(|| EvidenceError::Clip {
                path: path.to_path_buf(),
                message: "no picture in the clip window".into(),
            })?
            .finish()
    }

    fn appsrc(&self) -> gst_app::AppSrc {
        gst_app::AppSrc::builder()
            .caps(&self.caps)
            .format(gst::Format::Time)
            .is_live(false)
            .block(false)
            // The units are already in memory; queueing them all is free.
            .max_bytes(0)
            .build()
    }

    /// Pushes the units from index `from` (a keyframe) up to `to` (all
    /// when `None`, then as they are, for a decoder; else with times
    /// rebased so the first unit decodes at 0, for a muxer), then ends the
    /// stream.
    /// Each unit's PTS in nanoseconds, made unique: a camera that repeats a
    /// timestamp gives two pictures one PTS, and the decoder drops the
    /// second of them; each repeat is moved 1 µs later, in stream order
    /// (well within [`PTS_MATCH_NS`], so it still finds its unit's time).
    fn unique_pts(&self) -> Vec<Option<u64>> {
        let mut used = std::collections::HashSet::new();
        self.units
            .iter()
            .map(|u| {
                let mut p = u.buffer.pts()?.nseconds();
                while !used.insert(p) && p < u64::MAX - 1_000 {
                    p += 1_000;
                }
                Some(p)
            })
            .collect()
    }

    /// Pushes units `from..to` (all from `from` when `to` is `None`; then
    /// with their times rebased to 0) into `src`, with the PTS of `pts`
    /// (by unit index) where given, and ends the stream.
    fn push_units(
        &self,
        src: &gst_app::AppSrc,
        from: usize,
        to: Option<usize>,
        pts: Option<&[Option<u64>]>,
    ) -> Result<(), String> {
        let end = to.unwrap_or(self.units.len()).min(self.units.len());
        let units = self.units.get(from..end).unwrap_or_default();
        let rebase = to.is_some();
        let base = units
            .iter()
            .flat_map(|u| [u.buffer.dts(), u.buffer.pts()])
            .flatten()
            .min()
            .unwrap_or(gst::ClockTime::ZERO);
        let mut last_dts: Option<u64> = None;
        for (i, u) in units.iter().enumerate() {
            let mut b = u.buffer.copy();
            if let (Some(pts), Some(m)) = (pts, b.get_mut()) {
                // Unique PTS, and a DTS that always goes forward: a decoder
                // drops a picture whose timestamps repeat the last one's.
                if let Some(p) = pts.get(from + i).copied().flatten() {
                    m.set_pts(gst::ClockTime::from_nseconds(p));
                }
                if let Some(d) = u.buffer.dts().map(gst::ClockTime::nseconds) {
                    let d = last_dts.map_or(d, |l| d.max(l.saturating_add(1_000)));
                    // A picture is never shown before it is decoded: where
                    // the DTS had to move past the PTS, the PTS moves too
                    // (by microseconds: it still finds its unit's time).
                    if let Some(p) = pts.get(from + i).copied().flatten()
                        && d > p
                    {
                        m.set_pts(gst::ClockTime::from_nseconds(d));
                    }
                    m.set_dts(gst::ClockTime::from_nseconds(d));
                    last_dts = Some(d);
                }
            }
            if rebase && let Some(m) = b.get_mut() {
                // No DTS (RTSP): the PTS, in decode order (see can_remux).
                let pts = u.buffer.pts().map(|t| t.saturating_sub(base));
                let dts = u
                    .buffer
                    .dts()
                    .or(u.buffer.pts())
                    .map(|t| t.saturating_sub(base));
                m.set_pts(pts);
                m.set_dts(dts);
            }
            src.push_buffer(b)
                .map_err(|e| format!("pushing a coded picture: {e:?}"))?;
        }
        src.end_of_stream()
            .map_err(|e| format!("ending the stream: {e:?}"))?;
        Ok(())
    }
}

/// The unit time whose PTS is within [`PTS_MATCH_NS`] of `pts` (a decoder
/// may round a time), the nearest one.
fn nearest(by_pts: &BTreeMap<u64, OffsetDateTime>, pts: u64) -> Option<&OffsetDateTime> {
    let below = by_pts.range(..=pts).next_back();
    let above = by_pts.range(pts..).next();
    [below, above]
        .into_iter()
        .flatten()
        .filter(|(p, _)| p.abs_diff(pts) <= PTS_MATCH_NS)
        .min_by_key(|(p, _)| p.abs_diff(pts))
        .map(|(_, t)| t)
}

/// Pictures after a decode span's end before decoding stops.
const PAST_END_PICTURES: usize = 4;

/// Half a frame at 60 fps.
const PTS_MATCH_NS: u64 = 8_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_741_914_930;

    /// A 100-byte unit at `ms` after T0; a keyframe every `gop` units.
    fn unit(i: u64, gop: u64) -> EncodedUnit {
        let mut buffer = gst::Buffer::from_mut_slice(vec![0u8; 100]);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(i * 100));
            if !i.is_multiple_of(gop) {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        EncodedUnit {
            time: OffsetDateTime::from_unix_timestamp(T0).unwrap() + Duration::from_millis(i * 100),
            keyframe: i.is_multiple_of(gop),
            buffer,
        }
    }

    fn caps() -> gst::Caps {
        gst::Caps::builder("video/x-h264").build()
    }

    /// Pushes frames 0..n at 10 fps, one unit each, keyframes every `gop`.
    fn filled(limits: RingLimits, n: u64, gop: u64) -> StreamRing {
        gst::init().unwrap();
        let mut ring = StreamRing::new(limits);
        for i in 0..n {
            let u = unit(i, gop);
            let packets = Packets {
                caps: caps(),
                units: vec![u.clone()],
            };
            ring.push(i, u.time, Some(packets));
        }
        ring
    }

    fn limits(age_ms: u64, units: usize, bytes: usize) -> RingLimits {
        RingLimits {
            max_age: Duration::from_millis(age_ms),
            max_frames: units,
            max_bytes: bytes,
        }
    }

    #[test]
    fn keeps_whole_groups_reaching_back_at_least_max_age() {
        // 10 fps, keyframes every 20 units (2 s), 3 s kept: 100 frames in.
        let ring = filled(limits(3000, 1000, 1 << 20), 100, 20);
        let snap = ring
            .snapshot(OffsetDateTime::from_unix_timestamp(T0).unwrap())
            .unwrap();
        // The newest is unit 99 (9.9 s); the horizon 6.9 s; the last
        // keyframe at or before it is unit 60: 40 units kept.
        assert_eq!(ring.units(), 40);
        assert_eq!(ring.bytes(), 4000);
        assert!(snap.units[0].keyframe);
        assert_eq!(
            snap.units[0].buffer.pts(),
            Some(gst::ClockTime::from_mseconds(6000))
        );
        // Every analysed frame from there on is indexed.
        assert_eq!(ring.frame_span(), Some((60, 99)));
        assert!(ring.time_of(59).is_none() && ring.time_of(60).is_some());
    }

    #[test]
    fn a_window_starts_at_the_keyframe_before_it() {
        let ring = filled(limits(5000, 1000, 1 << 20), 100, 20);
        let t = |i: u64| {
            OffsetDateTime::from_unix_timestamp(T0).unwrap() + Duration::from_millis(i * 100)
        };
        let snap = ring.snapshot(t(75)).unwrap();
        assert_eq!(snap.units.len(), 40, "from unit 60");
        assert!(snap.units[0].keyframe && snap.units[0].time == t(60));
        assert_eq!(snap.frames().next(), Some((60, t(60))));
        // Before everything held: from the oldest keyframe.
        let snap = ring.snapshot(t(0)).unwrap();
        assert!(snap.units[0].keyframe && snap.units[0].time == t(40));
    }

    #[test]
    fn count_and_byte_bounds_hold_without_keyframes() {
        // One keyframe, then 199 delta units: the bounds still hold, and
        // the run that lost its keyframe is not offered for decoding.
        let ring = filled(limits(60_000, 50, 1 << 20), 200, 1000);
        assert!(ring.units() <= 50, "{} units", ring.units());
        let ring = filled(limits(60_000, 1000, 3000), 200, 1000);
        assert!(ring.bytes() <= 3000, "{} bytes", ring.bytes());
        assert!(
            ring.snapshot(OffsetDateTime::from_unix_timestamp(T0).unwrap())
                .is_none(),
            "no keyframe held: nothing decodable"
        );
    }

    #[test]
    fn a_restarted_source_empties_the_ring() {
        let mut ring = filled(limits(3000, 1000, 1 << 20), 30, 10);
        let u = unit(0, 10);
        ring.push(
            0,
            u.time,
            Some(Packets {
                caps: caps(),
                units: vec![u],
            }),
        );
        assert_eq!(ring.units(), 1);
        assert_eq!(ring.frame_span(), Some((0, 0)));
    }
}

#[cfg(test)]
mod remux_tests {
    use super::*;

    fn stream(times: &[(Option<u64>, Option<u64>)]) -> JobStream {
        gst::init().unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_741_914_930).unwrap();
        let units = times
            .iter()
            .enumerate()
            .map(|(i, (pts, dts))| {
                let mut buffer = gst::Buffer::from_mut_slice(vec![0xffu8; 64]);
                if let Some(b) = buffer.get_mut() {
                    b.set_pts(pts.map(gst::ClockTime::from_mseconds));
                    b.set_dts(dts.map(gst::ClockTime::from_mseconds));
                }
                EncodedUnit {
                    time: t0 + Duration::from_millis(pts.unwrap_or(0)),
                    keyframe: i == 0,
                    buffer,
                }
            })
            .collect();
        JobStream {
            caps: gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
            units,
            index: BTreeMap::new(),
        }
    }

    #[test]
    fn only_times_an_mp4_can_carry_are_remuxed() {
        let p = |ms: &[u64]| ms.iter().map(|m| (Some(*m), None)).collect::<Vec<_>>();
        // RTSP without B-frames: PTS only, in order: PTS serves as DTS.
        assert!(stream(&p(&[0, 40, 80, 120])).can_remux());
        // RTSP with B-frames: PTS only, out of order: re-encode.
        assert!(!stream(&p(&[0, 120, 40, 80])).can_remux());
        // A file with B-frames: DTS present, fine.
        let with_dts = [(0, 0), (120, 40), (40, 80), (80, 120)].map(|(p, d)| (Some(p), Some(d)));
        assert!(stream(&with_dts).can_remux());
        // A unit without PTS: re-encode.
        assert!(!stream(&[(Some(0), None), (None, None)]).can_remux());
    }

    #[test]
    fn undecodable_units_fail_or_yield_nothing_without_waiting_out_the_timeout() {
        let s = stream(&[(Some(0), None), (Some(40), None), (Some(80), None)]);
        let started = Instant::now();
        let mut frames = 0;
        let result = s.decode(None, Duration::from_secs(120), |_, _| {
            frames += 1;
            Ok(())
        });
        assert_eq!(frames, 0, "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}: {result:?}",
            started.elapsed()
        );
    }
}
