//! Processing a recording as fast as possible: capture → detect → track →
//! signals → rules, frame by frame, with the same code the live loop runs.
//! Used by `edge-agent replay` and by the real-video tests; its summary is
//! what the benchmark figures in the README come from.

use crate::capture::{FrameSource, Pacing, SourceSpec};
use crate::detect::{DetectError, VehicleDetector};
use crate::rules::{RuleEngine, RuleError, Violation};
use crate::signal::{FrameView, LampConfig, PixelFormat, SignalBoard};
use crate::site::SiteConfig;
use crate::track::{FrameInfo, Tracker, TrackerConfig};
use protocol::VehicleClass;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What can stop a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Rules(#[from] RuleError),
}

/// The outcome of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub frames: u64,
    pub seconds: f64,
    /// Frames decoded and analysed per second of wall time.
    pub analysed_fps: f64,
    /// Confirmed tracks per majority class.
    pub tracks: BTreeMap<String, usize>,
    pub violations: Vec<ViolationSummary>,
}

/// One violation, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationSummary {
    pub track_id: u64,
    pub rule: String,
    pub frame: u64,
    pub class: String,
    pub lane: Option<String>,
}

impl From<&Violation> for ViolationSummary {
    fn from(v: &Violation) -> Self {
        ViolationSummary {
            track_id: v.track_id,
            rule: format!("{:?}", v.rule),
            frame: v.frame,
            class: class_name(v.class).to_string(),
            lane: v.lane.clone(),
        }
    }
}

fn class_name(c: VehicleClass) -> &'static str {
    match c {
        VehicleClass::Car => "car",
        VehicleClass::Motorcycle => "motorcycle",
        VehicleClass::Bus => "bus",
        VehicleClass::Truck => "truck",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

/// Replays `source` through `detector` and, with a site, the rules.
/// `max_frames` bounds the run (benchmarks, tests).
pub fn replay(
    source: &SourceSpec,
    detector: &mut dyn VehicleDetector,
    site: Option<&SiteConfig>,
    max_frames: Option<u64>,
) -> Result<ReplaySummary, ReplayError> {
    let expect = site.map(|s| (s.frame.width, s.frame.height));
    let mut frames = FrameSource::open(source, Pacing::AsFastAsPossible, expect)?;
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut engine = site.map(RuleEngine::new).transpose()?;
    let mut board = site.map(|s| SignalBoard::from_site(s, LampConfig::default(), 0));
    let mut counted = std::collections::HashSet::new();
    let mut tracks: BTreeMap<String, usize> = BTreeMap::new();
    let mut violations = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    let mut tally = |t: &crate::track::Track, tracks: &mut BTreeMap<String, usize>| {
        if t.is_confirmed() && counted.insert(t.id()) {
            *tracks.entry(class_name(t.class()).to_string()).or_default() += 1;
        }
    };
    while let Some(frame) = frames.next_frame(Duration::from_secs(10))? {
        if max_frames.is_some_and(|m| n >= m) {
            break;
        }
        n += 1;
        let info = FrameInfo::new(
            frame.number,
            (frame.time.unix_timestamp_nanos() / 1000) as i64,
        );
        let dets = detector.detect(&frame)?;
        tracker.update(info, &dets);
        if let (Some(board), Some(engine)) = (board.as_mut(), engine.as_mut()) {
            let view = FrameView {
                data: frame.data(),
                width: frame.width,
                height: frame.height,
                stride: frame.stride,
                format: PixelFormat::Bgr8,
            };
            board.observe_frame(info, &view);
            let found = engine.update(info, tracker.active(), tracker.ended(), board);
            violations.extend(found.iter().map(ViolationSummary::from));
        }
        for t in tracker.active() {
            tally(t, &mut tracks);
        }
    }
    tracker.finish();
    // Flush what the rules hold back for their "after" frame.
    if let (Some(board), Some(engine)) = (board.as_ref(), engine.as_mut()) {
        let info = FrameInfo::new(n, 0);
        let found = engine.update(info, std::iter::empty(), tracker.ended(), board);
        violations.extend(found.iter().map(ViolationSummary::from));
    }
    for t in tracker.ended() {
        tally(t, &mut tracks);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(ReplaySummary {
        frames: n,
        seconds,
        analysed_fps: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        tracks,
        violations,
    })
}
