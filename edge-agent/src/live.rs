//! The live box: every configured camera analysed in its own thread,
//! violations post-processed on a few worker threads (`[plates] workers`),
//! delivery alongside.
//!
//! The split follows what must never wait for what: a camera thread only
//! decodes, detects, tracks, judges and keeps its evidence ring; the plate
//! read, the stills and clip, the signature and the outbox commit happen on
//! the post-processing workers (a bounded queue between them: when the
//! workers fall behind, the camera logs and drops the job rather than stalling — the
//! violation is lost, loudly, instead of every later one). Delivery only
//! reads the outbox. A camera whose stream fails is retried by its capture
//! supervisor and reported in the heartbeat; the others carry on.

use crate::analysis::Analysis;
use crate::capture::{Camera, CameraState as CaptureState, Pacing, RetryPolicy, SourceSpec};
use crate::config::{AgentConfig, CameraConfig};
use crate::delivery::Shared;
use crate::detect::{
    FreezeChange, FreezeWatch, MotionConfig, MotionDetector, StaticGate, VehicleDetector,
    YoloxConfig, YoloxDetector,
};
use crate::evidence::{EvidenceCollector, EvidenceConfig, EvidenceJob};
use crate::identity::DeviceIdentity;
use crate::outbox::Outbox;
use crate::parked_store::ParkedStore;
use crate::site::{DetectionConfig, SiteConfig};
use crate::track::TrackerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Jobs waiting for post-processing, across all cameras.
pub const POST_QUEUE: usize = 64;

/// A live-loop failure at start (a camera's site file, a model).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LiveError(pub String);

/// Builds the vehicle detector `name` (`yolox` or `motion`), reading its
/// output as `detection` (the site's) says and skipping it on still frames
/// where `detection.static_gate` is set.
pub fn make_detector(
    name: &str,
    threads: usize,
    motion: MotionConfig,
    detection: DetectionConfig,
) -> Result<Box<dyn VehicleDetector>, LiveError> {
    let detector = match name {
        "yolox" => YoloxDetector::new(YoloxConfig {
            threads,
            motorbike_min_aspect: detection.motorbike_min_aspect,
            ..YoloxConfig::default()
        })
        .map(|d| Box::new(d) as Box<dyn VehicleDetector>)
        .map_err(|e| LiveError(format!("YOLOX: {e}"))),
        "motion" => MotionDetector::new(motion)
            .map(|d| Box::new(d) as Box<dyn VehicleDetector>)
            .map_err(|e| LiveError(format!("motion detector: {e}"))),
        other => Err(LiveError(format!(
            "unknown detector `{other}` (yolox or motion)"
        ))),
    }?;
    Ok(match detection.static_gate {
        Some(gate) => Box::new(StaticGate::new(detector, gate)),
        None => detector,
    })
}

/// The running cameras and post-processing workers.
pub struct Live {
    threads: Vec<JoinHandle<()>>,
}

struct PostJob {
    camera_id: String,
    job: EvidenceJob,
    /// The camera is a recording played back (a file source): the event's
    /// time is not a clock's at the violation ([`protocol::ClockSync::recording`]).
    recording: bool,
}

impl Live {
    /// Starts every camera of `cfg` and the post-processing workers. Each
    /// camera's site file is loaded and checked before anything starts.
    pub fn start(
        cfg: &AgentConfig,
        identity: &DeviceIdentity,
        shared: &Shared,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, LiveError> {
        let mut sites = Vec::new();
        for (i, cam) in cfg.cameras.iter().enumerate() {
            let site =
                SiteConfig::load(&cam.site).map_err(|e| LiveError(format!("cameras[{i}]: {e}")))?;
            // Two cameras under one id would share a health entry and a
            // parked-violator file, each undoing the other's.
            if sites
                .iter()
                .any(|(_, s, _): &(CameraConfig, SiteConfig, SourceSpec)| {
                    s.camera_id == site.camera_id
                })
            {
                return Err(LiveError(format!(
                    "cameras[{i}]: camera_id {:?} ({}) is another camera's too",
                    site.camera_id,
                    cam.site.display()
                )));
            }
            let spec = SourceSpec::parse(&cam.source)
                .map_err(|e| LiveError(format!("cameras[{i}].source: {e}")))?;
            sites.push((cam.clone(), site, spec));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<PostJob>(POST_QUEUE);
        let mut threads = Vec::new();
        let mut outbox = Outbox::open(&cfg.outbox_db(), cfg.outbox.limits())
            .map_err(|e| LiveError(e.to_string()))?;
        recover_spool(&cfg.spool_dir(), &mut outbox)?;
        // The clock's state, read when a violation is decided (see
        // `evidence::clock`).
        let clock = crate::evidence::ClockWatch::start(
            crate::health::clock_sync,
            Duration::from_secs(5),
            stop.clone(),
        )
        .map_err(|e| LiveError(format!("starting the clock watch: {e}")))?;
        // The workers take jobs off one queue; each has its own plate
        // reader (ONNX sessions are per thread here), all share the outbox.
        let rx = Arc::new(Mutex::new(rx));
        let outbox = Arc::new(Mutex::new(outbox));
        for n in 0..cfg.plates.workers.max(1) {
            let reader = match cfg.plates.recognizer.as_str() {
                "none" => None,
                name => Some(
                    crate::violator::plate_reader(name)
                        .map_err(|e| LiveError(format!("plate reader: {e}")))?,
                ),
            };
            let worker = Worker {
                board: shared.board.clone(),
                identity: identity.clone(),
                outbox: outbox.clone(),
                reader,
                spool: cfg.spool_dir(),
            };
            let rx = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("post-process-{n}"))
                    .spawn(move || worker.run(&rx))
                    .map_err(|e| LiveError(format!("starting a worker: {e}")))?,
            );
        }
        for (cam, site, spec) in sites {
            let detector = make_detector(&cam.detector, cam.threads, cam.motion, site.detection)?;
            let (tx, shared, stop) = (tx.clone(), shared.clone(), stop.clone());
            let parked = ParkedStore::new(&cfg.device.data_dir, &site.camera_id);
            let phases = shared.signals.register(&site.fed_signals());
            let setup = CameraSetup {
                cam,
                site,
                spec,
                detector,
                parked,
                phases,
                clock: clock.clone(),
                retry: RetryPolicy::default(),
                frozen_after: cfg.health.camera_frozen_after(),
            };
            threads.push(
                spawn_camera(setup, tx, shared, stop)
                    .map_err(|e| LiveError(format!("starting a camera: {e}")))?,
            );
        }
        Ok(Self { threads })
    }

    /// Waits for every thread (after `stop` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts one camera's analysis thread. However its loop ends before
/// `stop` (a recording finished, the analysis could not go on, a panic),
/// the board then says so: a camera whose analysis is gone must never stay
/// `streaming` with the last fps it had.
fn spawn_camera(
    setup: CameraSetup,
    tx: SyncSender<PostJob>,
    shared: Shared,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("analyse-{}", setup.site.camera_id))
        .spawn(move || {
            let id = setup.site.camera_id.clone();
            let board = shared.board.clone();
            let stopping = stop.clone();
            let run = std::panic::AssertUnwindSafe(|| camera_loop(setup, tx, shared, stop));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!(camera = %id, "camera analysis panicked; the camera is stopped");
                board.camera_ended(&id);
                board.violation_unreported();
            } else if !stopping.load(Ordering::Relaxed) {
                tracing::warn!(camera = %id, "camera analysis ended; reported failed");
                board.camera_ended(&id);
            }
        })
}

/// What one camera's loop starts from.
struct CameraSetup {
    cam: CameraConfig,
    site: SiteConfig,
    spec: SourceSpec,
    detector: Box<dyn VehicleDetector>,
    /// Where the rules' memory of parked violators outlives this run.
    parked: ParkedStore,
    /// The signal controller's phases for this camera's fed lane groups.
    phases: std::sync::mpsc::Receiver<crate::signal::PhaseUpdate>,
    /// The clock's state for violations decided here.
    clock: Arc<crate::evidence::ClockWatch>,
    /// How the capture retries a dropped stream.
    retry: RetryPolicy,
    /// How long the same picture lasts before a live camera is frozen
    /// (`[health] camera_frozen_s`).
    frozen_after: Duration,
}

/// How soon a new or dropped parked spot is saved.
const PARKED_SAVE_EVERY: Duration = Duration::from_secs(30);
/// How often the time a fined car was last seen standing is saved while it
/// stands (a crash loses at most this much of it, well inside the rules'
/// 10-minute window; rarer than every change, for the edge box's flash).
const PARKED_REFRESH_EVERY: Duration = Duration::from_secs(120);

/// One camera: capture → analysis → evidence ring → jobs for the worker.
fn camera_loop(setup: CameraSetup, tx: SyncSender<PostJob>, shared: Shared, stop: Arc<AtomicBool>) {
    let CameraSetup {
        cam,
        site,
        spec,
        detector,
        parked,
        phases,
        clock,
        retry,
        frozen_after,
    } = setup;
    let id = site.camera_id.clone();
    let recording = matches!(spec, SourceSpec::File(_));
    // A recording may show a still scene as long as it likes (a clip cut
    // from a frozen camera, a test picture): only live cameras are watched.
    let mut freeze = (!recording).then(|| FreezeWatch::new(frozen_after));
    let pacing = if cam.realtime {
        Pacing::RealTime
    } else {
        Pacing::AsFastAsPossible
    };
    let size = (site.frame.width, site.frame.height);
    let (handle, frames) = Camera::start(&id, spec, pacing, Some(size), cam.analysis_fps, retry, 4);
    let site = Arc::new(site);
    let tracking = cam
        .analysis_fps
        .map_or_else(TrackerConfig::default, TrackerConfig::for_rate);
    let mut analysis = match Analysis::with_tracker(detector, Some(&site), tracking.clone()) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(camera = %id, error = %e, "cannot start the analysis");
            return;
        }
    };
    match parked.load() {
        Ok(spots) => {
            if !spots.is_empty() {
                tracing::info!(camera = %id, spots = spots.len(), "parked violators remembered from the last run");
            }
            analysis.restore_parked(&spots);
        }
        Err(e) => {
            tracing::error!(camera = %id, error = %e, "parked violators of the last run forgotten: a car still parked may be fined again")
        }
    }
    let mut parked_saved = (analysis.parked_generation(), Instant::now());
    let mut collector =
        EvidenceCollector::new(site.clone(), EvidenceConfig::default()).with_clock(clock.clone());
    let mut last_number: Option<u64> = None;
    let mut fps = Rate::default();
    let mut pace = crate::capture::AnalysisPace::new(cam.analysis_fps);
    let send = |job: EvidenceJob| match tx.try_send(PostJob {
        camera_id: id.clone(),
        job,
        recording,
    }) {
        Ok(()) => {}
        Err(TrySendError::Full(j)) => {
            tracing::error!(camera = %id, event_id = %j.job.event_id, "post-processing queue full: violation dropped");
            shared.board.violation_unreported();
        }
        Err(TrySendError::Disconnected(j)) => {
            tracing::error!(camera = %id, event_id = %j.job.event_id, "no post-processing worker left: violation dropped");
            shared.board.violation_unreported();
        }
    };
    while !stop.load(Ordering::Relaxed) {
        report_status(&shared, &id, &handle, fps.value());
        let ring = collector.stream_ring().bytes() + collector.ring().bytes();
        shared.board.set_ring_bytes(&id, ring as u64);
        // Phases are taken every turn, frames or not: the analysis keeps
        // a bounded number pending, the channel nothing.
        for phase in phases.try_iter() {
            analysis.push_phase(phase);
        }
        let frame = match frames.recv_timeout(Duration::from_millis(200)) {
            Ok(f) => f,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // A reconnected stream numbers its frames from 0 again: close the
        // old stream's evidence and tracks, start afresh.
        if last_number.is_some_and(|n| frame.number <= n) {
            // Violations the rules held for their "after" frames are
            // released with what the old stream had.
            let held = analysis.finish();
            hand_over(&id, &analysis, &mut collector, held, &send, &shared.board);
            for j in collector.finish() {
                send(j);
            }
            collector = EvidenceCollector::new(site.clone(), EvidenceConfig::default())
                .with_clock(clock.clone());
            match analysis.restart(Some(&site), tracking.clone()) {
                Ok(a) => analysis = a,
                Err(e) => {
                    // The old stream's evidence went out above; nothing
                    // is held.
                    tracing::error!(camera = %id, error = %e, "cannot restart the analysis");
                    handle.stop();
                    return;
                }
            }
        }
        last_number = Some(frame.number);
        match collector.push_frame(frame.clone()) {
            Ok(jobs) => jobs.into_iter().for_each(&send),
            Err(e) => tracing::error!(camera = %id, error = %e, "evidence ring"),
        }
        // A coded (H.264/H.265) source's frames come already paced by the
        // capture (pictures nobody analyses are not even handed on);
        // others are paced here, after the evidence ring kept them all.
        if frame.packets.is_none() && !pace.due(frame.time.unix_timestamp_nanos()) {
            continue;
        }
        if let Some(watch) = freeze.as_mut() {
            watch_freeze(&id, watch, &frame, &shared.board);
        }
        let found = match analysis.process(&frame) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(camera = %id, error = %e, "analysis failed on a frame");
                continue;
            }
        };
        fps.tick();
        shared.board.set_silent_feeds(&id, analysis.silent_feeds());
        hand_over(&id, &analysis, &mut collector, found, &send, &shared.board);
        let since = parked_saved.1.elapsed();
        if (since >= PARKED_SAVE_EVERY && analysis.parked_generation() != parked_saved.0)
            || (since >= PARKED_REFRESH_EVERY && analysis.parked_live())
        {
            save_parked(&id, &analysis, &parked, &mut parked_saved);
        }
    }
    let held = analysis.finish();
    hand_over(&id, &analysis, &mut collector, held, &send, &shared.board);
    // The tracks ended at stop moved their spots' last-seen times.
    if analysis.parked_generation() != parked_saved.0 || !analysis.parked_spots().is_empty() {
        save_parked(&id, &analysis, &parked, &mut parked_saved);
    }
    for j in collector.finish() {
        send(j);
    }
    handle.stop();
}

/// Saves the memory of parked violators; `saved` (generation, time) is
/// updated.
fn save_parked(id: &str, analysis: &Analysis, store: &ParkedStore, saved: &mut (u64, Instant)) {
    let generation = analysis.parked_generation();
    saved.1 = Instant::now();
    match store.save(&analysis.parked_spots()) {
        Ok(()) => saved.0 = generation,
        Err(e) => tracing::error!(camera = %id, error = %e, "cannot save the parked violators"),
    }
}

/// Hands each violation the rules released to the evidence collector
/// (with the violator's trajectory), and the jobs that completes to `send`.
fn hand_over(
    id: &str,
    analysis: &Analysis,
    collector: &mut EvidenceCollector,
    found: Vec<crate::rules::Violation>,
    send: &impl Fn(EvidenceJob),
    board: &crate::health::HealthBoard,
) {
    for v in found {
        let event_id = uuid::Uuid::new_v4();
        let track = analysis.trajectory_of(v.track_id);
        // From the frame of the violation to its detection here (the rules
        // wait for a few frames after it to be sure).
        let latency_ms = v
            .at()
            .map(|at| (time::OffsetDateTime::now_utc() - at).whole_milliseconds());
        tracing::info!(camera = %id, %event_id, rule = ?v.rule, track = v.track_id, ?latency_ms, "violation");
        let neighbours = analysis.neighbours_of(v.track_id, v.frames.at);
        match collector.add_violation_among(event_id, &v, &track, &neighbours) {
            Ok(Some(job)) => send(job),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(camera = %id, error = %e, "evidence for a violation: not reported");
                board.violation_unreported();
            }
        }
    }
}

/// Looks for a frozen picture in one analysed frame; says on the board and
/// in the log, once each, when one begins and when it ends.
fn watch_freeze(
    id: &str,
    watch: &mut FreezeWatch,
    frame: &crate::capture::Frame,
    board: &crate::health::HealthBoard,
) {
    match watch.observe(frame) {
        Some(FreezeChange::Began { since }) => {
            tracing::error!(camera = %id, %since, "camera picture frozen: frames arrive but show the same picture; alarm camera_frozen");
            board.set_frozen(id, true);
        }
        Some(FreezeChange::Ended { lasted }) => {
            tracing::warn!(camera = %id, lasted_s = lasted.as_seconds_f64(), "camera picture moving again");
            board.set_frozen(id, false);
        }
        None => {}
    }
}

fn report_status(shared: &Shared, id: &str, handle: &crate::capture::CameraHandle, fps: f64) {
    let s = handle.status();
    let state = match s.state {
        CaptureState::Connecting => protocol::CameraState::Connecting,
        CaptureState::Streaming => protocol::CameraState::Streaming,
        CaptureState::Stalled => protocol::CameraState::Stalled,
        CaptureState::Finished | CaptureState::Failed => protocol::CameraState::Failed,
    };
    shared.board.set_camera(protocol::CameraStatus {
        camera_id: id.to_owned(),
        state,
        last_frame_time: s.last_frame,
        analysed_fps: if s.state == CaptureState::Streaming {
            fps.clamp(0.0, 1000.0)
        } else {
            0.0
        },
    });
}

/// Analysed frames per second over the last few seconds, 0 once none came
/// for a while ([`RATE_QUIET`], or three of the window's mean intervals on a
/// slow analysis): a camera whose frames stopped never shows the rate it had.
#[derive(Default)]
struct Rate {
    window: std::collections::VecDeque<Instant>,
}

/// How long without an analysed frame before the rate is 0.
const RATE_QUIET: Duration = Duration::from_secs(2);

impl Rate {
    fn tick(&mut self) {
        self.tick_at(Instant::now());
    }

    fn tick_at(&mut self, now: Instant) {
        self.window.push_back(now);
        while self
            .window
            .front()
            .is_some_and(|t| now - *t > Duration::from_secs(5))
        {
            self.window.pop_front();
        }
    }

    fn value(&self) -> f64 {
        self.value_at(Instant::now())
    }

    fn value_at(&self, now: Instant) -> f64 {
        let (Some(a), Some(b)) = (self.window.front(), self.window.back()) else {
            return 0.0;
        };
        if b <= a {
            return 0.0;
        }
        let intervals = (self.window.len() - 1) as u32;
        let quiet = RATE_QUIET.max((*b - *a) / intervals * 3);
        if now.saturating_duration_since(*b) >= quiet {
            return 0.0;
        }
        f64::from(intervals) / (*b - *a).as_secs_f64()
    }
}

/// Queues what the last run left signed in the spool but not in the
/// outbox (`recover.rs`), and says what it could not.
fn recover_spool(spool: &std::path::Path, outbox: &mut Outbox) -> Result<(), LiveError> {
    // What can never be delivered goes first (`evidence::sweep_spool`); a
    // directory the outbox holds is never touched.
    crate::evidence::sweep_spool(spool, crate::evidence::UNSIGNED_KEPT, |id| {
        outbox.state_of(id).map_or(true, |s| s.is_some())
    });
    let r = crate::recover::requeue_orphans(spool, outbox).map_err(|e| LiveError(e.to_string()))?;
    if !r.requeued.is_empty() {
        tracing::warn!(events = ?r.requeued, "violations the last run did not queue, queued from the spool");
    }
    for dir in &r.unsigned {
        tracing::error!(dir = %dir.display(), "evidence in the spool with no signed event: it cannot be delivered; a person must look");
    }
    for (path, why) in &r.failed {
        tracing::error!(path = %path.display(), why, "spool entry not queued");
    }
    Ok(())
}

/// Post-processing: plate read, evidence files, signature, outbox.
struct Worker {
    /// Where a violation that could not be reported is counted.
    board: Arc<crate::health::HealthBoard>,
    identity: DeviceIdentity,
    outbox: Arc<Mutex<Outbox>>,
    reader: Option<plate_ocr::pipeline::Pipeline>,
    spool: std::path::PathBuf,
}

impl Worker {
    /// Takes jobs until every camera has stopped. A job that panics (a
    /// model or library failing on one picture) is counted as unreported
    /// and the worker goes on: a worker that died would leave its cameras
    /// streaming into a queue nobody empties.
    fn run(self, rx: &Mutex<Receiver<PostJob>>) {
        loop {
            // The lock is held only while waiting for the next job; the
            // queue closes when every camera has stopped.
            let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
            let Ok(PostJob {
                camera_id,
                job,
                recording,
            }) = next
            else {
                return;
            };
            let event_id = job.event_id;
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.handle(&camera_id, job, recording)
            }));
            if done.is_err() {
                tracing::error!(%event_id, camera = %camera_id, "post-processing panicked; violation not reported");
                self.board.violation_unreported();
            }
        }
    }

    /// Reads the violator's plate, writes the evidence, signs and queues.
    fn handle(&self, camera_id: &str, job: EvidenceJob, recording: bool) {
        let event_id = job.event_id;
        let violation = job.violation.clone();
        let decided = job.decided_clock().cloned();
        let processed = match crate::violator::process(job, self.reader.as_ref(), &self.spool) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%event_id, error = %e, "post-processing failed; violation not reported");
                self.board.violation_unreported();
                return;
            }
        };
        let event = crate::report::violation_event(
            &self.identity,
            camera_id,
            event_id,
            &violation,
            &processed,
            if recording {
                protocol::ClockSync::recording()
            } else {
                // The worse of the state when the violation was decided
                // and now (`evidence::clock`).
                let now = crate::health::clock_sync();
                match &decided {
                    Some(d) => d.at_signing(now),
                    None => now,
                }
            },
        );
        // A poisoned lock only says a worker panicked while holding it;
        // the connection is still usable and SQLite keeps each statement
        // atomic: go on with it.
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        match crate::report::sign_and_queue(&self.identity, &mut outbox, &event, &processed.dir) {
            Ok(_) => {
                // From the frame of the violation to a signed event in
                // the outbox: includes the clip's `post` seconds.
                let latency_ms = violation
                    .at()
                    .map(|at| (time::OffsetDateTime::now_utc() - at).whole_milliseconds());
                tracing::info!(%event_id, plate = ?processed.plate.text, ?latency_ms, "violation queued")
            }
            Err(e) => {
                tracing::error!(%event_id, error = %e, "violation not queued; evidence kept in the spool");
                self.board.violation_unreported();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_falls_to_zero_once_frames_stop() {
        let t0 = Instant::now();
        let mut rate = Rate::default();
        assert_eq!(rate.value_at(t0), 0.0);
        // 10 frames a second for 3 s.
        for n in 0..30 {
            rate.tick_at(t0 + Duration::from_millis(100 * n));
        }
        let last = t0 + Duration::from_millis(2900);
        let live = rate.value_at(last + Duration::from_millis(100));
        assert!((live - 10.0).abs() < 0.01, "{live}");
        assert_eq!(rate.value_at(last + Duration::from_millis(1900)), live);
        // No frame for 2 s: the camera is not analysing 10 frames a second.
        assert_eq!(rate.value_at(last + RATE_QUIET), 0.0);
        assert_eq!(rate.value_at(last + Duration::from_secs(600)), 0.0);
        // A slow analysis (a frame every 1.5 s) is not taken for silence.
        let mut slow = Rate::default();
        for n in 0..4 {
            slow.tick_at(t0 + Duration::from_millis(1500 * n));
        }
        let last = t0 + Duration::from_millis(4500);
        let v = slow.value_at(last + Duration::from_millis(1400));
        assert!((v - 1.0 / 1.5).abs() < 0.01, "{v}");
        assert_eq!(slow.value_at(last + Duration::from_secs(5)), 0.0);
    }

    /// `n` JPEG pictures of 640x480 (the test scene's size).
    fn jpegs(n: usize) -> Vec<Vec<u8>> {
        jpegs_of("ball", n)
    }

    /// `n` JPEG pictures of 640x480 of videotestsrc's `pattern`.
    fn jpegs_of(pattern: &str, n: usize) -> Vec<Vec<u8>> {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        gst::init().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers={n} pattern={pattern} ! video/x-raw,width=640,height=480 ! \
             jpegenc ! appsink name=out sync=false"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gstreamer_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            out.push(sample.buffer().unwrap().map_readable().unwrap().to_vec());
        }
        pipeline.set_state(gst::State::Null).unwrap();
        out
    }

    /// An HTTP MJPEG camera on a loopback port that serves one connection:
    /// `pictures` at 25 a second, a second of silence, then it closes (and
    /// takes no other connection).
    /// A camera set-up reading the MJPEG camera on loopback `port` with
    /// the motion detector, one connection attempt, and a picture frozen
    /// after `frozen_after`.
    fn mjpeg_setup(
        d: &std::path::Path,
        port: u16,
        site: SiteConfig,
        frozen_after: Duration,
        stop: &Arc<AtomicBool>,
    ) -> CameraSetup {
        let id = site.camera_id.clone();
        let cam = CameraConfig {
            source: format!("http://127.0.0.1:{port}/video.mjpg"),
            site: d.join("site.toml"),
            detector: "motion".into(),
            threads: 1,
            realtime: false,
            analysis_fps: None,
            motion: crate::detect::MotionConfig::default(),
        };
        CameraSetup {
            detector: make_detector("motion", 1, cam.motion, site.detection).unwrap(),
            spec: SourceSpec::parse(&cam.source).unwrap(),
            parked: ParkedStore::new(d, &id),
            phases: std::sync::mpsc::channel().1,
            clock: crate::evidence::ClockWatch::start(
                protocol::ClockSync::unknown,
                Duration::from_secs(1),
                stop.clone(),
            )
            .unwrap(),
            retry: RetryPolicy {
                max_attempts: Some(1),
                ..RetryPolicy::default()
            },
            frozen_after,
            cam,
            site,
        }
    }

    fn mjpeg_camera_once(pictures: Vec<Vec<u8>>) -> u16 {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while request.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
            );
            for jpeg in &pictures {
                let head = format!(
                    "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    jpeg.len()
                );
                let _ = conn
                    .write_all(head.as_bytes())
                    .and_then(|()| conn.write_all(jpeg))
                    .and_then(|()| conn.write_all(b"\r\n"));
                std::thread::sleep(Duration::from_millis(40));
            }
            std::thread::sleep(Duration::from_secs(1));
        });
        port
    }

    /// A live camera streams, falls silent (the analysis loop waiting on
    /// the channel, long after its pass wrote `streaming` to the board),
    /// then its stream ends and its one allowed retry is spent: the capture
    /// gives up and the analysis loop ends. The board must not keep that
    /// `streaming`, nor the fps.
    #[test]
    fn a_camera_whose_analysis_ended_is_not_left_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let scene = crate::scene::runner_and_stopper(time::OffsetDateTime::now_utc());
        std::fs::write(d.join("site.toml"), scene.site_toml()).unwrap();
        let site = SiteConfig::load(d.join("site.toml")).unwrap();
        let id = site.camera_id.clone();
        let port = mjpeg_camera_once(jpegs(10));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared::default();
        let setup = mjpeg_setup(d, port, site, Duration::from_secs(30), &stop);
        let (tx, _jobs) = std::sync::mpsc::sync_channel(POST_QUEUE);
        let thread = spawn_camera(setup, tx, shared.clone(), stop.clone()).unwrap();
        let mut streamed = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "{:?}", shared.board.cameras());
            streamed |= shared
                .board
                .cameras()
                .iter()
                .any(|c| c.state == protocol::CameraState::Streaming);
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        assert!(streamed, "the camera streamed while it was sent pictures");
        let cameras = shared.board.cameras();
        let [status] = cameras.as_slice() else {
            panic!("{cameras:?}")
        };
        assert_eq!(status.camera_id, id);
        assert_eq!(status.state, protocol::CameraState::Failed, "{status:?}");
        assert_eq!(status.analysed_fps, 0.0);
        assert!(status.last_frame_time.is_some(), "{status:?}");
    }
    /// A live camera whose pictures freeze (the same JPEG again and again,
    /// frames still arriving) raises `camera_frozen` while they do (still
    /// streaming), and clears it once its noisy picture moves.
    #[test]
    fn a_live_camera_whose_picture_freezes_is_reported_until_it_moves() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let scene = crate::scene::runner_and_stopper(time::OffsetDateTime::now_utc());
        std::fs::write(d.join("site.toml"), scene.site_toml()).unwrap();
        let site = SiteConfig::load(d.join("site.toml")).unwrap();
        // Sensor noise, then 1.6 s of one picture, then noise again.
        let mut pictures = jpegs_of("snow", 40);
        let still = pictures[9].clone();
        pictures.splice(10..10, std::iter::repeat_n(still, 40));
        let port = mjpeg_camera_once(pictures);
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared::default();
        let setup = mjpeg_setup(d, port, site, Duration::from_millis(500), &stop);
        let (tx, _jobs) = std::sync::mpsc::sync_channel(POST_QUEUE);
        let thread = spawn_camera(setup, tx, shared.clone(), stop.clone()).unwrap();
        // What the board said, each change once: (frozen, state).
        let mut seen: Vec<(bool, protocol::CameraState)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "{seen:?}");
            if let Some(c) = shared.board.cameras().into_iter().next() {
                let now = (shared.board.any_frozen(), c.state);
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        use protocol::CameraState::Streaming;
        // Frozen while still streaming: frames arrive, the alarm is raised.
        let frozen_at = seen
            .iter()
            .position(|s| *s == (true, Streaming))
            .unwrap_or_else(|| panic!("never frozen: {seen:?}"));
        assert!(
            seen[..frozen_at].contains(&(false, Streaming)),
            "streaming before it froze: {seen:?}"
        );
        assert!(
            seen[frozen_at..].contains(&(false, Streaming)),
            "streaming again once the picture moved: {seen:?}"
        );
        assert!(!shared.board.any_frozen());
    }
}
