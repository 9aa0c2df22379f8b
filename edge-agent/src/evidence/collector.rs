//! The evidence collector: takes every frame cheaply on the real-time
//! thread, holds each violation until the frames after it have arrived,
//! and hands out complete [`EvidenceJob`]s for a worker thread to write.
//!
//! A violation is reported by the rules some frames after its moment, so
//! its "before" and "at" frames are already in the ring and its "after"
//! window is still to come. [`EvidenceCollector::add_violation`] snapshots
//! the frames from `at - pre` out of the ring (`Arc` clones); every later
//! [`EvidenceCollector::push_frame`] appends frames up to `at + post`; the
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

use super::ring::FrameRing;
use super::stills::{self, check_size, looks_like_jpeg};
use super::{EvidenceConfig, EvidenceError, EvidenceSet, spool};
use crate::capture::Frame;
use crate::geometry::BBox;
use crate::rules::Violation;
use crate::site::SiteConfig;
use crate::track::TrackPoint;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// Keeps one camera's recent frames and its violations awaiting evidence.
#[derive(Debug)]
pub struct EvidenceCollector {
    site: Arc<SiteConfig>,
    config: Arc<EvidenceConfig>,
    ring: FrameRing,
    pending: Vec<EvidenceJob>,
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
    /// Frames for stills and clip, by increasing number.
    frames: Vec<Frame>,
    /// The violator's box per frame number (from its track).
    pub(crate) boxes: BTreeMap<u64, BBox>,
    pub(crate) plate_jpeg: Option<Vec<u8>>,
    pub(crate) start: OffsetDateTime,
    pub(crate) end: OffsetDateTime,
    window_complete: bool,
}

impl EvidenceCollector {
    /// A collector for the camera of `site`.
    pub fn new(site: Arc<SiteConfig>, config: EvidenceConfig) -> Self {
        Self {
            ring: FrameRing::new(config.ring),
            site,
            config: Arc::new(config),
            pending: Vec::new(),
        }
    }

    /// The ring buffer.
    pub fn ring(&self) -> &FrameRing {
        &self.ring
    }

    /// Violations still waiting for their "after" frames.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes a frame (a cheap clone of the capture's). Returns the jobs
    /// whose window this frame completed. A frame of another size than the
    /// site's is refused and not stored.
    pub fn push_frame(&mut self, frame: Frame) -> Result<Vec<EvidenceJob>, EvidenceError> {
        check_size(&frame, &self.site)?;
        let mut ready = Vec::new();
        if self.ring.newest().is_some_and(|n| frame.number <= n.number) {
            // The source restarted: frame numbers mean something else now.
            ready.append(&mut self.pending);
        }
        for job in &mut self.pending {
            job.offer(&frame);
        }
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].is_satisfied_by(&frame) {
                let mut job = self.pending.remove(i);
                job.window_complete = true;
                ready.push(job);
            } else {
                i += 1;
            }
        }
        self.ring.push(frame);
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
        let at = violation.frames.at;
        let at_time = match self.ring.get(at) {
            Some(f) => f.time,
            None => {
                if let Some(newest) = self.ring.newest()
                    && at <= newest.number
                {
                    let oldest = self.ring.oldest().map_or(newest.number, |f| f.number);
                    return Err(EvidenceError::FrameGone {
                        event_id,
                        frame: at,
                        why: format!(
                            "it has left the ring buffer, which now holds frames {oldest}..={}",
                            newest.number
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
        let mut job = EvidenceJob {
            event_id,
            violation: violation.clone(),
            site: self.site.clone(),
            config: self.config.clone(),
            frames: Vec::new(),
            boxes,
            plate_jpeg: None,
            start: at_time - self.config.pre,
            end: at_time + self.config.post,
            window_complete: false,
        };
        for f in self.ring.iter() {
            job.offer(f);
        }
        if let Some(newest) = self.ring.newest()
            && job.is_satisfied_by(newest)
        {
            job.window_complete = true;
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

    fn is_satisfied_by(&self, newest: &Frame) -> bool {
        newest.time >= self.end && newest.number >= self.violation.frames.after
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
        self.plate_jpeg = Some(jpeg);
        Ok(())
    }

    /// Cuts `plate` (full-frame pixels) out of frame `number` (the frame
    /// it was read on) at full resolution, privacy masks applied, and stores
    /// it as `plate.jpg`.
    pub fn add_plate_crop_rect(&mut self, number: u64, plate: BBox) -> Result<(), EvidenceError> {
        let frame = self.frame(number).ok_or_else(|| EvidenceError::FrameGone {
            event_id: self.event_id,
            frame: number,
            why: "not held by this job".into(),
        })?;
        let img = stills::masked_copy(frame, &self.site)?;
        let crop = stills::crop(&img, plate)?.ok_or_else(|| EvidenceError::BadInput {
            event_id: self.event_id,
            message: format!("plate box {plate:?} lies outside the frame"),
        })?;
        self.plate_jpeg = Some(stills::jpeg(&crop, self.config.jpeg_quality, "plate.jpg")?);
        Ok(())
    }

    /// Writes the evidence into `<spool>/<event_id>/` (slow: JPEG and
    /// H.264 encoding; run on a worker thread). See [`EvidenceSet`].
    pub fn write(&self, spool: &Path) -> Result<EvidenceSet, EvidenceError> {
        spool::write_job(self, spool)
    }
}
