//! The evidence collector: takes every frame cheaply on the real-time
//! thread, holds each violation until the frames after it have arrived,
//! and hands out complete [`EvidenceJob`]s for a worker thread to write.
//!
//! A violation is reported by the rules some frames after its moment, so
//! its "before" and "at" frames are already in the ring and its "after"
//! window is still to come. [`EvidenceCollector::add_violation`] snapshots
//! the frames from `at - pre` out of the ring (`Arc` clones; for a camera
//! whose coded stream is kept, its access units from the keyframe at or
//! before `at - pre`, with the numbers and times of the analysed frames);
//! every later [`EvidenceCollector::push_frame`] appends frames (or units)
//! up to `at + post`; the
//! first frame at or past `at + post` (and past the "after" still) makes
//! the job ready. A source that restarts (frame numbers going back) or the
//! end of the stream ([`EvidenceCollector::finish`]) releases pending jobs
//! with what they have; [`EvidenceJob::window_complete`] tells which.
//!
//! **Frames that have left the ring**: if the violation's own frame (`at`)
//! is gone, [`EvidenceCollector::add_violation`] refuses with
//! [`EvidenceError::FrameGone`] — an event without the moment of the
//! violation is no evidence. A missing "before" or "after" frame does not
//! stop the rest: the written [`super::EvidenceSet`] lists it in `missing`
//! and no other frame is substituted for it.

use super::clock::{ClockWatch, DecidedClock};
use super::ring::FrameRing;
use super::stills::{self, check_size, looks_like_jpeg};
use super::stream::{JobStream, StreamRing};
use super::{EvidenceConfig, EvidenceError, EvidenceSet, spool};
use crate::capture::Frame;
use crate::geometry::BBox;
use crate::rules::Violation;
use crate::site::SiteConfig;
use crate::track::TrackPoint;
use protocol::FrameStamp;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// How long past a window's end decoded frames may run ahead of the coded
/// pictures before a job is released without them.
const STREAM_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps one camera's recent frames and its violations awaiting evidence.
#[derive(Debug)]
pub struct EvidenceCollector {
    site: Arc<SiteConfig>,
    config: Arc<EvidenceConfig>,
    ring: FrameRing,
    /// The coded stream, for a camera whose frames carry packets.
    stream: StreamRing,
    pending: Vec<EvidenceJob>,
    /// Where the clock's state is read when a violation is decided.
    clock: Option<Arc<ClockWatch>>,
}

/// One violation's frames and everything needed to write its evidence.
/// `Send`: move it to a worker thread and call [`EvidenceJob::write`].
#[derive(Debug, Clone)]
pub struct EvidenceJob {
    /// The event the evidence belongs to (the spool directory's name).
    pub event_id: Uuid,
    /// The violation.
    pub violation: Violation,
    pub(crate) site: Arc<SiteConfig>,
    pub(crate) config: Arc<EvidenceConfig>,
    /// Frames for stills and clip, by increasing number (for a camera
    /// whose coded stream is kept: the frames decoded by
    /// [`EvidenceJob::materialise`]).
    frames: Vec<Frame>,
    /// The coded stream of the window, for a camera whose stream is kept.
    pub(crate) stream: Option<JobStream>,
    /// The violator's box per frame number (from its track).
    pub(crate) boxes: BTreeMap<u64, BBox>,
    /// The other tracked vehicles' boxes per frame number (near the
    /// violation), so a plate read in the violator's box can be told from
    /// a neighbour's plate that lies there too.
    pub(crate) neighbours: BTreeMap<u64, Vec<BBox>>,
    pub(crate) plate_jpeg: Option<Vec<u8>>,
    /// The frame `plate.jpg` was cut from (none for a crop handed in).
    pub(crate) plate_frame: Option<FrameStamp>,
    /// The frame the plate was read on, cut around the violator with its
    /// box and the plate's drawn (`plate_vehicle.jpg`).
    pub(crate) plate_context_jpeg: Option<Vec<u8>>,
    pub(crate) plate_context_frame: Option<FrameStamp>,
    pub(crate) start: OffsetDateTime,
    pub(crate) end: OffsetDateTime,
    window_complete: bool,
    /// The clock's state when the violation was decided (with a
    /// [`ClockWatch`]; see `clock.rs`).
    decided_clock: Option<DecidedClock>,
}

impl EvidenceCollector {
    /// A collector for the camera of `site`.
    pub fn new(site: Arc<SiteConfig>, config: EvidenceConfig) -> Self {
        Self {
            ring: FrameRing::new(config.ring),
            stream: StreamRing::new(config.stream_ring),
            site,
            config: Arc::new(config),
            pending: Vec::new(),
            clock: None,
        }
    }

    /// Reads the clock's state from `watch` when a violation is decided
    /// ([`EvidenceCollector::add_violation`]); its job carries it
    /// ([`EvidenceJob::decided_clock`]).
    pub fn with_clock(mut self, watch: Arc<ClockWatch>) -> Self {
        self.clock = Some(watch);
        self
    }

    /// The ring buffer of decoded frames (used for sources without a kept
    /// coded stream).
    pub fn ring(&self) -> &FrameRing {
        &self.ring
    }

    /// The ring buffer of the coded stream.
    pub fn stream_ring(&self) -> &StreamRing {
        &self.stream
    }

    /// Number and time of the newest frame taken.
    fn newest(&self) -> Option<(u64, OffsetDateTime)> {
        let decoded = self.ring.newest().map(|f| (f.number, f.time));
        match (decoded, self.stream.newest_frame()) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    /// Violations still waiting for their "after" frames.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes a frame (a cheap clone of the capture's). Returns the jobs
    /// whose window this frame completed. A frame of another size than the
    /// site's is refused and not stored.
    pub fn push_frame(&mut self, mut frame: Frame) -> Result<Vec<EvidenceJob>, EvidenceError> {
        check_size(&frame, &self.site)?;
        let mut ready = Vec::new();
        if self.newest().is_some_and(|(n, _)| frame.number <= n) {
            // The source restarted: frame numbers mean something else now.
            ready.append(&mut self.pending);
            self.ring.clear();
            self.stream.clear();
        }
        let packets = frame
            .packets
            .take()
            .filter(|_| self.config.keep_coded_stream);
        let (number, time) = (frame.number, frame.time);
        // A frame with packets is kept as coded pictures, else decoded.
        let keep_decoded = packets.is_none();
        match packets {
            Some(p) => {
                for job in &mut self.pending {
                    if let Some(s) = job.stream.as_mut() {
                        s.push(number, time, Some(p.clone()));
                    }
                }
                self.stream.push(number, time, Some(p));
            }
            None => {
                for job in &mut self.pending {
                    job.offer(&frame);
                }
            }
        }
        let mut i = 0;
        while i < self.pending.len() {
            if let Some(complete) = self.pending[i].readiness(number, time) {
                let mut job = self.pending.remove(i);
                job.window_complete = complete;
                ready.push(job);
            } else {
                i += 1;
            }
        }
        if keep_decoded {
            self.ring.push(frame);
        }
        Ok(ready)
    }

    /// Registers a violation for evidence under `event_id`. `track` is the
    /// violator's trajectory (for its box in the before/after stills; may be
    /// empty: then only the "at" still shows a box). Returns the job at
    /// once if the frames it needs are all here already, else keeps it
    /// pending. Fails if the violation's own frame has left the ring.
    pub fn add_violation(
        &mut self,
        event_id: Uuid,
        violation: &Violation,
        track: &[TrackPoint],
    ) -> Result<Option<EvidenceJob>, EvidenceError> {
        self.add_violation_among(event_id, violation, track, &[])
    }

    /// [`EvidenceCollector::add_violation`] with the points of the other
    /// vehicles tracked around it (`neighbours`, any order), whose plates
    /// must not be taken for the violator's.
    pub fn add_violation_among(
        &mut self,
        event_id: Uuid,
        violation: &Violation,
        track: &[TrackPoint],
        neighbours: &[TrackPoint],
    ) -> Result<Option<EvidenceJob>, EvidenceError> {
        let at = violation.frames.at;
        let at_time = match self
            .ring
            .get(at)
            .map(|f| f.time)
            .or(self.stream.time_of(at))
        {
            Some(t) => t,
            None => {
                if let Some((newest, _)) = self.newest()
                    && at <= newest
                {
                    let oldest = [
                        self.ring.oldest().map(|f| f.number),
                        self.stream.frame_span().map(|s| s.0),
                    ]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(newest);
                    return Err(EvidenceError::FrameGone {
                        event_id,
                        frame: at,
                        why: format!(
                            "it has left the ring buffer, which now holds frames {oldest}..={newest}"
                        ),
                    });
                }
                violation.at().ok_or_else(|| EvidenceError::BadInput {
                    event_id,
                    message: format!("violation time {} µs is out of range", violation.at_us),
                })?
            }
        };
        let mut boxes: BTreeMap<u64, BBox> = track
            .iter()
            .filter(|p| p.bbox.is_valid())
            .map(|p| (p.frame, p.bbox))
            .collect();
        boxes.insert(at, violation.bbox);
        let mut near: BTreeMap<u64, Vec<BBox>> = BTreeMap::new();
        for p in neighbours.iter().filter(|p| p.bbox.is_valid()) {
            near.entry(p.frame).or_default().push(p.bbox);
        }
        let start = at_time - self.config.pre;
        let stream = match self.stream.newest_frame() {
            Some(_) => {
                let gone = |why: &str| EvidenceError::FrameGone {
                    event_id,
                    frame: at,
                    why: why.into(),
                };
                let s = self.stream.snapshot(start).ok_or_else(|| {
                    gone("no keyframe of the camera stream is held to decode it from")
                })?;
                // The window must reach back to the violation's own picture.
                if s.first_unit_time().is_none_or(|t| t > at_time) {
                    return Err(gone(
                        "the camera stream held no longer reaches back to it (oldest keyframe is later)",
                    ));
                }
                Some(s)
            }
            None => None,
        };
        let mut job = EvidenceJob {
            event_id,
            violation: violation.clone(),
            site: self.site.clone(),
            config: self.config.clone(),
            frames: Vec::new(),
            stream,
            boxes,
            neighbours: near,
            plate_jpeg: None,
            plate_frame: None,
            plate_context_jpeg: None,
            plate_context_frame: None,
            start,
            end: at_time + self.config.post,
            window_complete: false,
            decided_clock: self.clock.as_ref().map(|w| w.decided()),
        };
        for f in self.ring.iter() {
            job.offer(f);
        }
        if let Some((number, time)) = self.newest()
            && let Some(complete) = job.readiness(number, time)
        {
            job.window_complete = complete;
            return Ok(Some(job));
        }
        self.pending.push(job);
        Ok(None)
    }

    /// Attaches the plate reader's crop (JPEG bytes) to a pending job.
    /// Returns `false` if no job of that id is pending (it may already be
    /// out: use [`EvidenceJob::add_plate_crop_jpeg`] on it then).
    pub fn add_plate_crop(&mut self, event_id: Uuid, jpeg: Vec<u8>) -> Result<bool, EvidenceError> {
        match self.pending.iter_mut().find(|j| j.event_id == event_id) {
            Some(job) => job.add_plate_crop_jpeg(jpeg).map(|()| true),
            None => Ok(false),
        }
    }

    /// The stream ended: every pending job, with the frames it has.
    pub fn finish(&mut self) -> Vec<EvidenceJob> {
        std::mem::take(&mut self.pending)
    }
}

impl EvidenceJob {
    fn wants(&self, f: &Frame) -> bool {
        let v = &self.violation.frames;
        (f.time >= self.start && f.time <= self.end)
            || [v.before, v.at, v.after].contains(&f.number)
    }

    fn offer(&mut self, f: &Frame) {
        if self.wants(f) && self.frames.last().is_none_or(|l| l.number < f.number) {
            self.frames.push(f.clone());
        }
    }

    /// Whether the newest frame (`number`, `time`) closes the window, and
    /// if so whether the window is complete: the frame must be at or past
    /// the end and the "after" frame, and for a kept stream the coded
    /// pictures must have reached the end too (they travel on their own
    /// branch and may trail the decoded frames slightly). Coded pictures
    /// still short of the end [`STREAM_SLACK`] later are not waited for:
    /// the job goes with what it has, marked incomplete.
    fn readiness(&self, number: u64, time: OffsetDateTime) -> Option<bool> {
        if time < self.end || number < self.violation.frames.after {
            return None;
        }
        let Some(s) = &self.stream else {
            return Some(true);
        };
        if s.newest_unit_time().is_some_and(|t| t >= self.end) {
            Some(true)
        } else if time >= self.end + STREAM_SLACK {
            Some(false)
        } else {
            None
        }
    }

    /// Whether frame `number` is part of this job: held decoded, or in its
    /// coded stream (decoded by [`EvidenceJob::materialise`]).
    pub fn holds(&self, number: u64) -> bool {
        self.frame(number).is_some()
            || self
                .stream
                .as_ref()
                .is_some_and(|s| s.time_of(number).is_some())
    }

    /// The time of frame `number`, if part of this job.
    pub fn frame_time(&self, number: u64) -> Option<OffsetDateTime> {
        self.frame(number)
            .map(|f| f.time)
            .or_else(|| self.stream.as_ref()?.time_of(number))
    }

    /// The newest frame number this job knows of.
    pub fn last_frame_number(&self) -> Option<u64> {
        let decoded = self.frames.last().map(|f| f.number);
        let coded = self
            .stream
            .as_ref()
            .and_then(|s| s.frames().last().map(|(n, _)| n));
        decoded.max(coded)
    }

    /// Whether this job carries the camera's coded stream (its frames are
    /// decoded on demand) rather than decoded frames.
    pub fn keeps_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Decodes the frames numbered in `wanted` out of the job's coded
    /// stream so [`EvidenceJob::frame`] returns them (one decoding pass; run
    /// it on the worker thread). A no-op for a job holding decoded frames
    /// or when every wanted frame is here already.
    pub fn materialise(&mut self, wanted: &BTreeSet<u64>) -> Result<(), EvidenceError> {
        let Some(stream) = &self.stream else {
            return Ok(());
        };
        let missing: BTreeSet<u64> = wanted
            .iter()
            .copied()
            .filter(|n| self.frame(*n).is_none() && stream.time_of(*n).is_some())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Only the stretch holding the wanted frames (typically a second or
        // two around the violation), not the whole clip window.
        let times: Vec<OffsetDateTime> =
            missing.iter().filter_map(|n| stream.time_of(*n)).collect();
        let span = times
            .iter()
            .min()
            .zip(times.iter().max())
            .map(|(a, b)| (*a, *b));
        let mut got = Vec::new();
        stream
            .decode(span, self.config.clip_timeout, |frame, number| {
                if number.is_some_and(|n| missing.contains(&n)) {
                    got.push(frame);
                }
                Ok(())
            })
            .map_err(|message| EvidenceError::Stream {
                event_id: self.event_id,
                message,
            })?;
        self.frames.extend(got);
        self.frames.sort_by_key(|f| f.number);
        self.frames.dedup_by_key(|f| f.number);
        Ok(())
    }

    /// Whether frames up to `at + post` arrived (false when the stream
    /// ended or restarted first: the clip is then shorter).
    pub fn window_complete(&self) -> bool {
        self.window_complete
    }

    /// The frames held, by increasing number.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// The frame numbered `number`, if held (e.g. the "at" frame for the
    /// plate reader).
    pub fn frame(&self, number: u64) -> Option<&Frame> {
        let i = self
            .frames
            .binary_search_by_key(&number, |f| f.number)
            .ok()?;
        self.frames.get(i)
    }

    /// The clock's state when the violation was decided, if its collector
    /// had a [`ClockWatch`]: what the event's clock state is judged
    /// against at signing ([`DecidedClock::at_signing`]).
    pub fn decided_clock(&self) -> Option<&DecidedClock> {
        self.decided_clock.as_ref()
    }

    /// The site the job belongs to.
    pub fn site(&self) -> &SiteConfig {
        &self.site
    }

    /// Stores the plate reader's plate crop (JPEG bytes) as `plate.jpg`.
    pub fn add_plate_crop_jpeg(&mut self, jpeg: Vec<u8>) -> Result<(), EvidenceError> {
        if !looks_like_jpeg(&jpeg) {
            return Err(EvidenceError::BadInput {
                event_id: self.event_id,
                message: "plate crop is not a JPEG".into(),
            });
        }
        // Bounded like every still (`stills::jpeg_fitted`): a crop handed
        // in over its share of the bundle is encoded again within it.
        let jpeg = if jpeg.len() > stills::MAX_STILL_BYTES {
            let img = opencv::imgcodecs::imdecode(
                &opencv::core::Vector::from_slice(&jpeg),
                opencv::imgcodecs::IMREAD_COLOR,
            )
            .map_err(super::cv("decoding the plate crop"))?;
            stills::jpeg(&img, self.config.jpeg_quality, "plate.jpg")?
        } else {
            jpeg
        };
        self.plate_jpeg = Some(jpeg);
        self.plate_frame = None;
        Ok(())
    }

    /// A privacy-masked copy of frame `number`, which the job must hold,
    /// and the frame's stamp for the manifest.
    fn masked(&self, number: u64) -> Result<(opencv::core::Mat, FrameStamp), EvidenceError> {
        let frame = self.frame(number).ok_or_else(|| EvidenceError::FrameGone {
            event_id: self.event_id,
            frame: number,
            why: "not held by this job".into(),
        })?;
        Ok((stills::masked_copy(frame, &self.site)?, stamp(frame)))
    }

    /// Cuts `plate` (full-frame pixels) out of frame `number` (the frame
    /// it was read on) at full resolution, privacy masks applied, and stores
    /// it as `plate.jpg`.
    pub fn add_plate_crop_rect(&mut self, number: u64, plate: BBox) -> Result<(), EvidenceError> {
        let (img, at) = self.masked(number)?;
        let crop = stills::crop(&img, plate)?.ok_or_else(|| EvidenceError::BadInput {
            event_id: self.event_id,
            message: format!("plate box {plate:?} lies outside the frame"),
        })?;
        self.plate_jpeg = Some(stills::jpeg(&crop, self.config.jpeg_quality, "plate.jpg")?);
        self.plate_frame = Some(at);
        Ok(())
    }

    /// Draws the violator's box `vehicle` and the plate's box `plate` on
    /// frame `number` (the one the plate was read on; privacy masks
    /// applied) and keeps the part around the vehicle as
    /// `plate_vehicle.jpg`: the reviewer sees that the plate read sits on
    /// the violator, not on the vehicle beside it.
    pub fn add_plate_context(
        &mut self,
        number: u64,
        vehicle: BBox,
        plate: BBox,
    ) -> Result<(), EvidenceError> {
        let (img, at) = self.masked(number)?;
        let still = stills::plate_context(&img, number, vehicle, plate)?.ok_or_else(|| {
            EvidenceError::BadInput {
                event_id: self.event_id,
                message: format!(
                    "vehicle box {vehicle:?} or plate box {plate:?} lies outside the frame"
                ),
            }
        })?;
        self.plate_context_jpeg = Some(stills::jpeg(
            &still,
            self.config.jpeg_quality,
            "plate_vehicle.jpg",
        )?);
        self.plate_context_frame = Some(at);
        Ok(())
    }

    /// Writes the evidence into `<spool>/<event_id>/` (slow: JPEG and
    /// H.264 encoding; run on a worker thread). See [`EvidenceSet`].
    pub fn write(&self, spool: &Path) -> Result<EvidenceSet, EvidenceError> {
        spool::write_job(self, spool)
    }
}

/// What the signed manifest says of the frame a still was cut from.
pub(crate) fn stamp(frame: &Frame) -> FrameStamp {
    FrameStamp {
        number: frame.number,
        time: frame.time,
    }
}
