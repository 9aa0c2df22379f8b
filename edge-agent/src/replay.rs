//! Processing a recording as fast as possible: capture → detect → track →
//! signals → rules, frame by frame, with the same code the live loop runs.
//! Used by `edge-agent replay` and by the real-video tests; its summary is
//! what the benchmark figures in the README come from.

use crate::analysis::Analysis;
use crate::capture::{FrameSource, Pacing, SourceSpec};
use crate::detect::{DetectError, VehicleDetector};
use crate::evidence::{EvidenceCollector, EvidenceConfig};
use crate::rules::{RuleError, Violation};
use crate::site::SiteConfig;
use protocol::VehicleClass;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
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
    #[error(transparent)]
    Evidence(#[from] crate::evidence::EvidenceError),
    #[error("evidence needs a site configuration")]
    NoSite,
    #[error("reporting a violation: {0}")]
    Report(String),
}

/// Where a replay writes evidence, and the plate reader for violators.
pub struct EvidenceOutput {
    pub spool: std::path::PathBuf,
    pub reader: Option<plate_ocr::pipeline::Pipeline>,
    /// When set, every processed violation is signed and queued for
    /// delivery, as on a live box.
    pub report: Option<Reporter>,
    /// How the evidence is kept (windows, ring bounds, clip).
    pub evidence: EvidenceConfig,
}

/// Signs processed violations and queues them in the outbox.
pub struct Reporter {
    /// The device.
    pub identity: crate::identity::DeviceIdentity,
    /// Its outbox.
    pub outbox: std::sync::Mutex<crate::outbox::Outbox>,
}

impl Reporter {
    fn report(
        &self,
        camera_id: &str,
        event_id: uuid::Uuid,
        violation: &crate::rules::Violation,
        processed: &crate::violator::Processed,
    ) -> Result<(), ReplayError> {
        let event = crate::report::violation_event(
            &self.identity,
            camera_id,
            event_id,
            violation,
            processed,
            // A replay's times are this machine's clock while it plays the
            // recording back, not a clock at the violation: said so in the
            // signed event, so no officer takes them for a live camera's.
            protocol::ClockSync::recording(),
        );
        let mut outbox = self
            .outbox
            .lock()
            .map_err(|_| ReplayError::Report("outbox lock poisoned".into()))?;
        crate::report::sign_and_queue(&self.identity, &mut outbox, &event, &processed.dir)
            .map_err(|e| ReplayError::Report(e.to_string()))?;
        Ok(())
    }
}

/// The outcome of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub frames: u64,
    pub seconds: f64,
    /// Frames decoded and analysed per second of wall time.
    pub analysed_fps: f64,
    /// Frames whose boxes the static gate reused instead of running the
    /// detector (`[detection.static_gate]`; 0 without it).
    pub detector_skipped: u64,
    /// Confirmed tracks per majority class.
    pub tracks: BTreeMap<String, usize>,
    /// Confirmed tracks by the people seen riding them (motorcycles whose
    /// riders the detector saw; key: riders).
    pub riders: BTreeMap<u8, usize>,
    pub violations: Vec<ViolationSummary>,
}

/// One violation, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationSummary {
    /// The event id its evidence is filed under (with `--out`).
    pub event_id: Option<uuid::Uuid>,
    /// The plate read on the violator and the evidence written (with `--out`).
    pub processed: Option<crate::violator::Processed>,
    pub track_id: u64,
    pub rule: String,
    pub frame: u64,
    pub class: String,
    /// People seen riding it, if any were.
    pub riders: Option<u8>,
    pub lane: Option<String>,
}

impl From<&Violation> for ViolationSummary {
    fn from(v: &Violation) -> Self {
        ViolationSummary {
            event_id: None,
            processed: None,
            track_id: v.track_id,
            rule: format!("{:?}", v.rule),
            frame: v.frame,
            class: class_name(v.class).to_string(),
            riders: v.riders,
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
    output: Option<&EvidenceOutput>,
) -> Result<ReplaySummary, ReplayError> {
    let expect = site.map(|s| (s.frame.width, s.frame.height));
    let mut source = FrameSource::open(source, Pacing::AsFastAsPossible, expect)?;
    let frames = std::iter::from_fn(move || {
        source
            .next_frame(Duration::from_secs(10))
            .map_err(ReplayError::from)
            .transpose()
    });
    run_frames(frames, detector, site, max_frames, output)
}

/// The replay loop over any frames (a recording, or a rendered scene in
/// tests): analysis, evidence collection, then post-processing of every
/// violation (plate read on the violator, evidence written).
pub fn run_frames(
    frames: impl Iterator<Item = Result<crate::capture::Frame, ReplayError>>,
    detector: Box<dyn VehicleDetector>,
    site: Option<&SiteConfig>,
    max_frames: Option<u64>,
    output: Option<&EvidenceOutput>,
) -> Result<ReplaySummary, ReplayError> {
    let mut analysis = Analysis::new(detector, site)?;
    let mut collector = match (output, site) {
        (Some(o), Some(s)) => Some(EvidenceCollector::new(
            Arc::new(s.clone()),
            o.evidence.clone(),
        )),
        (Some(_), None) => return Err(ReplayError::NoSite),
        _ => None,
    };
    let mut violations: Vec<ViolationSummary> = Vec::new();
    let mut jobs = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    for frame in frames {
        let frame = frame?;
        if max_frames.is_some_and(|m| n >= m) {
            break;
        }
        n += 1;
        if let Some(c) = collector.as_mut() {
            jobs.extend(c.push_frame(frame.clone())?);
        }
        let found = analysis.process(&frame)?;
        for v in &found {
            violations.push(register(v, &analysis, collector.as_mut(), &mut jobs)?);
        }
    }
    for v in analysis.finish() {
        violations.push(register(&v, &analysis, collector.as_mut(), &mut jobs)?);
    }
    if let Some(c) = collector.as_mut() {
        jobs.extend(c.finish());
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(out) = output {
        for job in jobs {
            let id = job.event_id;
            let violation = job.violation.clone();
            let processed = crate::violator::process(job, out.reader.as_ref(), &out.spool)?;
            if let (Some(rep), Some(site)) = (&out.report, site) {
                rep.report(&site.camera_id, id, &violation, &processed)?;
            }
            if let Some(v) = violations.iter_mut().find(|v| v.event_id == Some(id)) {
                v.processed = Some(processed);
            }
        }
    }
    Ok(ReplaySummary {
        frames: n,
        seconds,
        analysed_fps: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        detector_skipped: analysis.detector_skipped(),
        tracks: analysis.track_counts().clone(),
        riders: analysis.rider_counts().clone(),
        violations,
    })
}

/// Summarises a violation and, when evidence is kept, registers it with the
/// collector under a new event id.
fn register(
    v: &Violation,
    analysis: &Analysis,
    collector: Option<&mut EvidenceCollector>,
    jobs: &mut Vec<crate::evidence::EvidenceJob>,
) -> Result<ViolationSummary, ReplayError> {
    let mut summary = ViolationSummary::from(v);
    if let Some(c) = collector {
        let id = uuid::Uuid::new_v4();
        let track = analysis.trajectory_of(v.track_id);
        let neighbours = analysis.neighbours_of(v.track_id, v.frames.at);
        if let Some(job) = c.add_violation_among(id, v, &track, &neighbours)? {
            jobs.push(job);
        }
        summary.event_id = Some(id);
    }
    Ok(summary)
}
