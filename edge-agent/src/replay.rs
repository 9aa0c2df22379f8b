//! Processing a recording as fast as possible: capture → detect → track →
//! signals → rules, frame by frame, with the same code the live loop runs.
//! Used by `edge-agent replay` and by the real-video tests; its summary is
//! what the benchmark figures in the README come from.

use crate::analysis::Analysis;
use crate::capture::{FrameSource, Pacing, SourceSpec};
use crate::detect::{DetectError, VehicleDetector};
use crate::rules::{RuleError, Violation};
use crate::site::SiteConfig;
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

pub(crate) fn class_name(c: VehicleClass) -> &'static str {
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
    detector: Box<dyn VehicleDetector>,
    site: Option<&SiteConfig>,
    max_frames: Option<u64>,
) -> Result<ReplaySummary, ReplayError> {
    let expect = site.map(|s| (s.frame.width, s.frame.height));
    let mut frames = FrameSource::open(source, Pacing::AsFastAsPossible, expect)?;
    let mut analysis = Analysis::new(detector, site)?;
    let mut violations = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    while let Some(frame) = frames.next_frame(Duration::from_secs(10))? {
        if max_frames.is_some_and(|m| n >= m) {
            break;
        }
        n += 1;
        let found = analysis.process(&frame)?;
        violations.extend(found.iter().map(ViolationSummary::from));
    }
    violations.extend(analysis.finish().iter().map(ViolationSummary::from));
    let seconds = start.elapsed().as_secs_f64();
    Ok(ReplaySummary {
        frames: n,
        seconds,
        analysed_fps: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        tracks: analysis.track_counts().clone(),
        violations,
    })
}
