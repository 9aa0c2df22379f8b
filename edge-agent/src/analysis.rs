//! The real-time analysis of one camera: detect → track → signals → rules,
//! one frame at a time. The live loop, `replay` and the synthetic-scene tests
//! all drive this same type, so what is tested is what runs.

use crate::capture::{Frame, PixelLayout};
use crate::detect::{DetectError, VehicleDetector};
use crate::geometry::BBox;
use crate::rules::{ParkedSpot, RuleEngine, RuleError, Violation};
use crate::signal::{FrameView, LampConfig, PixelFormat, SignalBoard};
use crate::site::SiteConfig;
use crate::track::{FrameInfo, Track, Tracker, TrackerConfig};
use std::collections::BTreeMap;

/// The judging half, present when the camera has a site configuration.
struct Judge {
    board: SignalBoard,
    engine: RuleEngine,
}

/// How far back (frames) [`Analysis::neighbours_of`] looks: the plate
/// frames lie within a few seconds of the violation.
pub const NEIGHBOUR_FRAMES: u64 = 300;

/// Per-camera analysis state.
pub struct Analysis {
    detector: Box<dyn VehicleDetector>,
    tracker: Tracker,
    judge: Option<Judge>,
    last_frame: u64,
    tracks: BTreeMap<String, usize>,
    /// Ended confirmed tracks by the riders seen on them (`Track::riders`).
    riders: BTreeMap<u8, usize>,
    /// The recent points of tracks that ended in the last
    /// [`NEIGHBOUR_FRAMES`]: a violation released after its vehicle's
    /// neighbour drove out of view must still tell that neighbour's plate
    /// from its own.
    /// (track id, last frame, points).
    ended_recently: std::collections::VecDeque<(u64, u64, Vec<crate::track::TrackPoint>)>,
    /// What else was boxed on each of the last [`NEIGHBOUR_FRAMES`] frames
    /// (oldest first): not only confirmed tracks' points stand for the
    /// vehicles around a violator ([`Analysis::neighbours_of`]).
    seen_recently: std::collections::VecDeque<Seen>,
}

/// The boxes of one analysed frame that no confirmed track's trajectory
/// holds for it, or may not: every detection (tentative tracks' points,
/// detections below the score that starts a track, those the tracker
/// ignored) and the predicted boxes of the confirmed tracks coasting
/// through that frame.
#[derive(Debug)]
struct Seen {
    frame: FrameInfo,
    detections: Vec<(BBox, f32, protocol::VehicleClass)>,
    /// (track id, predicted box, class).
    coasting: Vec<(u64, BBox, protocol::VehicleClass)>,
}

impl Analysis {
    /// Analysis with `detector`; with a site, the rules are judged too.
    pub fn new(
        detector: Box<dyn VehicleDetector>,
        site: Option<&SiteConfig>,
    ) -> Result<Analysis, RuleError> {
        Self::with_tracker(detector, site, TrackerConfig::default())
    }

    /// The same with the tracker tuned by `tracker` (e.g.
    /// [`TrackerConfig::for_rate`] for a camera analysed below its rate).
    pub fn with_tracker(
        detector: Box<dyn VehicleDetector>,
        site: Option<&SiteConfig>,
        tracker: TrackerConfig,
    ) -> Result<Analysis, RuleError> {
        let judge = match site {
            Some(s) => Some(Judge {
                board: SignalBoard::from_site(s, LampConfig::default(), 0),
                engine: RuleEngine::new(s)?,
            }),
            None => None,
        };
        Ok(Analysis {
            detector,
            tracker: Tracker::new(tracker),
            judge,
            last_frame: 0,
            tracks: BTreeMap::new(),
            riders: BTreeMap::new(),
            ended_recently: std::collections::VecDeque::new(),
            seen_recently: std::collections::VecDeque::new(),
        })
    }

    /// Takes a signal controller's phase for one of this site's fed lane
    /// groups; `false` if the group is not fed here (or there is no site).
    pub fn push_phase(&mut self, update: crate::signal::PhaseUpdate) -> bool {
        self.judge
            .as_mut()
            .is_some_and(|j| j.board.push_phase(update))
    }

    /// How many of the site's feed-fed lane groups are unknown now.
    pub fn silent_feeds(&self) -> usize {
        self.judge.as_ref().map_or(0, |j| j.board.silent_feeds())
    }

    /// Frames the detector answered without running its model (the
    /// static gate's reused boxes).
    pub fn detector_skipped(&self) -> u64 {
        self.detector.skipped()
    }

    /// Gives the detector back (to start a fresh analysis with it, e.g.
    /// after the stream restarted).
    pub fn into_detector(self) -> Box<dyn VehicleDetector> {
        self.detector
    }

    /// A fresh analysis for the same camera after its stream restarted
    /// (frames numbered from 0 again, every track gone): the detector and
    /// what the rules must remember across tracks (where illegally stopped
    /// vehicles were reported, [`RuleEngine::hand_over_to`]) go on; the
    /// rest starts afresh. Call [`Analysis::finish`] first, so the tracks
    /// that ended with the old stream are judged and remembered.
    pub fn restart(
        mut self,
        site: Option<&SiteConfig>,
        tracker: TrackerConfig,
    ) -> Result<Analysis, RuleError> {
        let old = self.judge.take();
        let mut next = Analysis::with_tracker(self.detector, site, tracker)?;
        if let (Some(mut old), Some(new)) = (old, next.judge.as_mut()) {
            old.engine.hand_over_to(&mut new.engine);
        }
        Ok(next)
    }

    /// Analyses one frame; returns the violations completed by it.
    pub fn process(&mut self, frame: &Frame) -> Result<Vec<Violation>, DetectError> {
        let info = FrameInfo::new(
            frame.number,
            (frame.time.unix_timestamp_nanos() / 1000) as i64,
        );
        self.last_frame = frame.number;
        let dets = self.detector.detect(frame)?;
        self.tracker.update(info, &dets);
        self.keep_seen(info, &dets);
        let mut out = Vec::new();
        if let Some(j) = self.judge.as_mut() {
            if frame.stamped_on_arrival && j.engine.stop_speeding() {
                tracing::warn!(
                    frame = frame.number,
                    "the stream stamps no times on its frames (arrival times are off by the network's jitter): speeding is not judged on this camera"
                );
            }
            let (stride, format) = match frame.layout {
                PixelLayout::Bgr { stride } => (stride, PixelFormat::Bgr8),
                PixelLayout::Yuv420(yuv) => (yuv.y.stride, PixelFormat::Yuv420(yuv)),
            };
            let view = FrameView {
                data: frame.data(),
                width: frame.width,
                height: frame.height,
                stride,
                format,
            };
            j.board.observe_frame(info, &view);
            j.board.advance_feeds(info.timestamp_us);
            out.extend_from_slice(j.engine.update(
                info,
                self.tracker.active(),
                self.tracker.ended(),
                &j.board,
            ));
        }
        tally(&mut self.tracks, self.tracker.ended());
        tally_riders(&mut self.riders, self.tracker.ended());
        self.keep_ended(info.number);
        Ok(out)
    }

    /// Ends every track (end of a recording) and returns the violations the
    /// rules were still holding for their "after" frame.
    pub fn finish(&mut self) -> Vec<Violation> {
        self.tracker.finish();
        tally(&mut self.tracks, self.tracker.ended());
        tally_riders(&mut self.riders, self.tracker.ended());
        self.keep_ended(self.last_frame);
        match self.judge.as_mut() {
            Some(j) => {
                let info = FrameInfo::new(self.last_frame + 1, 0);
                let mut out = j
                    .engine
                    .update(info, std::iter::empty(), self.tracker.ended(), &j.board)
                    .to_vec();
                out.extend(j.engine.abandon_awaiting());
                out
            }
            None => Vec::new(),
        }
    }

    /// Where illegally stopped vehicles were reported standing (empty
    /// without a site): kept on disk so a restarted agent does not fine a
    /// parked car again (`crate::parked_store`).
    pub fn parked_spots(&self) -> Vec<ParkedSpot> {
        self.judge
            .as_ref()
            .map(|j| j.engine.parked_spots())
            .unwrap_or_default()
    }

    /// Changes to [`Analysis::parked_spots`] so far.
    pub fn parked_generation(&self) -> u64 {
        self.judge
            .as_ref()
            .map_or(0, |j| j.engine.parked_generation())
    }

    /// Whether a fined vehicle still stands on its spot (its time moves
    /// on, so a saved copy ages even without a structural change).
    pub fn parked_live(&self) -> bool {
        self.judge.as_ref().is_some_and(|j| j.engine.parked_live())
    }

    /// Spots kept from the agent's previous run.
    pub fn restore_parked(&mut self, spots: &[ParkedSpot]) {
        if let Some(j) = self.judge.as_mut() {
            j.engine.restore_parked(spots);
        }
    }

    /// Confirmed tracks that ended so far, per majority class (counted
    /// once each as it ends, so nothing is kept per track for the life of
    /// the camera; [`Analysis::finish`] ends the rest).
    pub fn track_counts(&self) -> &BTreeMap<String, usize> {
        &self.tracks
    }

    /// Tracks that ended so far, by the number of riders seen on them
    /// (tracks with none seen are not counted).
    pub fn rider_counts(&self) -> &BTreeMap<u8, usize> {
        &self.riders
    }

    /// Remembers the recent points of the tracks that just ended, and
    /// forgets those older than [`NEIGHBOUR_FRAMES`] before `now`.
    fn keep_ended(&mut self, now: u64) {
        let from = now.saturating_sub(NEIGHBOUR_FRAMES);
        for t in self.tracker.ended() {
            let recent: Vec<_> = t
                .trajectory()
                .iter()
                .filter(|p| p.frame >= from)
                .copied()
                .collect();
            if let Some(last) = recent.last() {
                self.ended_recently.push_back((t.id(), last.frame, recent));
            }
        }
        while self
            .ended_recently
            .front()
            .is_some_and(|(_, last, _)| *last < from)
        {
            self.ended_recently.pop_front();
        }
    }

    /// Remembers what frame `info` boxed besides the confirmed tracks'
    /// points ([`Seen`]), and forgets the frames older than
    /// [`NEIGHBOUR_FRAMES`] (reusing their buffers).
    fn keep_seen(&mut self, info: FrameInfo, dets: &[crate::track::Detection]) {
        let from = info.number.saturating_sub(NEIGHBOUR_FRAMES);
        let mut spare = None;
        while self
            .seen_recently
            .front()
            .is_some_and(|s| s.frame.number < from)
        {
            spare = self.seen_recently.pop_front();
        }
        let mut seen = spare.unwrap_or(Seen {
            frame: info,
            detections: Vec::new(),
            coasting: Vec::new(),
        });
        seen.frame = info;
        seen.detections.clear();
        seen.detections.extend(dets.iter().filter_map(|d| {
            let [x, y, w, h] = d.bbox.map(f64::from);
            let b = BBox::from_xywh(x, y, w, h);
            (b.is_valid() && d.score.is_finite()).then_some((b, d.score, d.class))
        }));
        seen.coasting.clear();
        seen.coasting.extend(
            self.tracker
                .active()
                .filter(|t| t.misses() > 0)
                .map(|t| (t.id(), t.predicted_box(), t.class()))
                .filter(|(_, b, _)| b.is_valid()),
        );
        self.seen_recently.push_back(seen);
    }

    /// The vehicles around a violator, track `id`, from [`NEIGHBOUR_FRAMES`]
    /// before frame `at` on, as points (frame and box): whose plates must
    /// not be read as its own (its plate is read on the frames nearest
    /// `at`). Every other vehicle boxed on each frame counts, not only the
    /// confirmed tracks' detected points: a neighbour is missing from those
    /// on a frame where its track coasts (its predicted box counts), is
    /// still tentative, or was boxed under the score that starts a track
    /// (every detection of the frame counts, but the one `id`'s own point
    /// on that frame is). One the detector's NMS dropped is on no list: the
    /// plate reader weighs the neighbours of the frames either side too
    /// (`violator::around`).
    pub fn neighbours_of(&self, id: u64, at: u64) -> Vec<crate::track::TrackPoint> {
        use crate::track::TrackPoint;
        let from = at.saturating_sub(NEIGHBOUR_FRAMES);
        let own: BTreeMap<u64, BBox> = self
            .trajectory_of(id)
            .iter()
            .filter(|p| p.frame >= from)
            .map(|p| (p.frame, p.bbox))
            .collect();
        let seen = self
            .seen_recently
            .iter()
            .filter(|s| s.frame.number >= from)
            .flat_map(|s| {
                let mine = own.get(&s.frame.number);
                let detections = s
                    .detections
                    .iter()
                    // The violator's own detection is its point there.
                    .filter(move |(b, _, _)| mine.is_none_or(|m| m.iou(*b) < 0.99))
                    .map(|(b, score, class)| TrackPoint::new(s.frame, *b, *score, *class));
                let coasting = s
                    .coasting
                    .iter()
                    .filter(|(t, _, _)| *t != id)
                    .map(|(_, b, class)| TrackPoint::new(s.frame, *b, 0.0, *class));
                detections.chain(coasting)
            });
        // Every ended track is in `ended_recently` (kept at the end of each
        // update and at finish), the just-ended ones included.
        let live = self
            .tracker
            .active()
            .filter(|t| t.id() != id)
            .flat_map(|t| t.trajectory().iter().filter(|p| p.frame >= from).copied());
        let gone = self
            .ended_recently
            .iter()
            .filter(|(t, _, _)| *t != id)
            .flat_map(|(_, _, points)| points.iter().filter(|p| p.frame >= from).copied());
        let mut out: Vec<TrackPoint> = live.chain(gone).chain(seen).collect();
        // A confirmed track's point is a detection of its frame too.
        let key = |p: &TrackPoint| {
            (
                p.frame,
                [p.bbox.x, p.bbox.y, p.bbox.w, p.bbox.h].map(f64::to_bits),
            )
        };
        out.sort_by_key(key);
        out.dedup_by(|a, b| key(a) == key(b));
        out
    }

    /// The live tracks (for evidence: the boxes of other vehicles).
    pub fn active_tracks(&self) -> impl Iterator<Item = &Track> {
        self.tracker.active()
    }

    /// The trajectory of track `id`: an active one, one that ended in the
    /// last update (a violation the rules released when its track ended, or
    /// at [`Analysis::finish`]), or the recent points of one that ended
    /// within [`NEIGHBOUR_FRAMES`] (a red-light run that waited for its
    /// signal controller's feed); empty if none.
    pub fn trajectory_of(&self, id: u64) -> Vec<crate::track::TrackPoint> {
        self.tracker
            .active()
            .chain(self.tracker.ended().iter())
            .find(|t| t.id() == id)
            .map(|t| t.trajectory().iter().copied().collect())
            .or_else(|| {
                self.ended_recently
                    .iter()
                    .rev()
                    .find(|(t, _, _)| *t == id)
                    .map(|(_, _, points)| points.clone())
            })
            .unwrap_or_default()
    }
}

fn tally_riders(riders: &mut BTreeMap<u8, usize>, ended: &[Track]) {
    for t in ended {
        if let Some(n) = t.riders().filter(|_| t.is_confirmed()) {
            *riders.entry(n).or_default() += 1;
        }
    }
}

fn tally(tracks: &mut BTreeMap<String, usize>, ended: &[Track]) {
    for t in ended.iter().filter(|t| t.is_confirmed()) {
        *tracks
            .entry(crate::replay::class_name(t.class()).to_string())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectError;
    use crate::track::Detection;
    use protocol::VehicleClass;

    /// Two cars side by side; the second leaves the view after frame 20.
    struct Scripted;

    impl VehicleDetector for Scripted {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
            let car = |x: f32| Detection {
                bbox: [x, 40.0, 30.0, 20.0],
                score: 0.9,
                class: VehicleClass::Car,
                riders: 0,
            };
            Ok(if frame.number <= 20 {
                vec![car(10.0), car(50.0)]
            } else {
                vec![car(10.0)]
            })
        }
    }

    #[test]
    fn a_neighbour_that_drove_off_is_still_a_neighbour_of_a_late_violation() {
        let mut a = Analysis::new(Box::new(Scripted), None).unwrap();
        let t0 = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        for n in 0..120u64 {
            let frame = Frame::from_bgr(
                n,
                t0 + time::Duration::milliseconds(40 * n as i64),
                128,
                96,
                vec![0; 128 * 96 * 3],
            )
            .unwrap();
            a.process(&frame).unwrap();
        }
        let stayed = a.active_tracks().next().unwrap().id();
        assert_eq!(a.active_tracks().count(), 1, "the second car's track ended");
        // A violation of the car that stayed, released now, about frame 18.
        let near = a.neighbours_of(stayed, 18);
        assert!(
            near.iter().any(|p| p.frame == 18 && p.bbox.x == 50.0),
            "the car that drove off is weighed: {} points",
            near.len()
        );
        assert!(near.iter().all(|p| p.bbox.x != 10.0), "not its own points");
    }

    /// A car at x 10 tracked throughout; around it a car at x 50 tracked
    /// but missed on frames 10 and 11, a low-score box at x 90 on frames
    /// 5..=8 (under the score that starts a track), and a box at x 70 on
    /// frame 12 alone (a tentative track, dropped).
    struct Crowd;

    impl VehicleDetector for Crowd {
        fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, DetectError> {
            let car = |x: f32, score: f32| Detection {
                bbox: [x, 40.0, 30.0, 20.0],
                score,
                class: VehicleClass::Car,
                riders: 0,
            };
            let n = frame.number;
            let mut out = vec![car(10.0, 0.9)];
            if !(10..=11).contains(&n) {
                out.push(car(50.0, 0.9));
            }
            if (5..=8).contains(&n) {
                out.push(car(90.0, 0.3));
            }
            if n == 12 {
                out.push(car(70.0, 0.9));
            }
            Ok(out)
        }
    }

    #[test]
    fn a_neighbour_is_weighed_on_every_frame_it_was_boxed_or_coasting() {
        let mut a = Analysis::new(Box::new(Crowd), None).unwrap();
        let t0 = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        for n in 0..20u64 {
            let frame = Frame::from_bgr(
                n,
                t0 + time::Duration::milliseconds(40 * n as i64),
                128,
                96,
                vec![0; 128 * 96 * 3],
            )
            .unwrap();
            a.process(&frame).unwrap();
        }
        let violator = a
            .active_tracks()
            .find(|t| t.last().is_some_and(|p| p.bbox.x == 10.0))
            .unwrap()
            .id();
        let near = a.neighbours_of(violator, 15);
        let on = |n: u64, x: f64| {
            near.iter()
                .any(|p| p.frame == n && (p.bbox.x - x).abs() < 3.0)
        };
        assert!(on(9, 50.0), "the tracked neighbour's point");
        assert!(
            on(10, 50.0) && on(11, 50.0),
            "the neighbour coasting: its predicted box"
        );
        assert!(on(6, 90.0), "a box under the score that starts a track");
        assert!(on(12, 70.0), "a tentative track's box");
        assert!(near.iter().all(|p| p.bbox.x != 10.0), "not its own points");
        // Each box once.
        let nine: Vec<_> = near.iter().filter(|p| p.frame == 9).collect();
        assert_eq!(nine.len(), 1, "{nine:?}");
    }
}
