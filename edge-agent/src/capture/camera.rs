//! A supervised camera: a thread that keeps one source running, retries it
//! with backoff when it drops (an error, silence, or a live source's
//! end-of-stream) or never connects, and reports its state. Only a
//! recording ends.

use super::frame::Frame;
use super::source::{CaptureError, FrameSource, Pacing, SourceSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// The camera's life as the heartbeat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraState {
    Connecting,
    Streaming,
    /// Connected once, now waiting to retry after a drop (an error, no
    /// frame within the timeout, or a live stream's end-of-stream).
    Stalled,
    /// A recording finished; only a file source ends this way.
    Finished,
    /// Gave up: retries exhausted ([`RetryPolicy::max_attempts`]), or the
    /// camera thread could not start.
    Failed,
}

/// What the camera reports: state, last frame, fps and the last error.
#[derive(Debug, Clone)]
pub struct CameraStatus {
    pub state: CameraState,
    pub last_frame: Option<OffsetDateTime>,
    /// Frames per second delivered, over the last few seconds.
    pub fps: f32,
    pub frames: u64,
    /// Frames dropped because analysis was behind (live sources only).
    pub dropped: u64,
    pub reconnects: u32,
    pub last_error: Option<String>,
}

/// How a dropped camera is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this many consecutive failures (`None`: never).
    pub max_attempts: Option<u32>,
    /// How long without a frame counts as a dead stream.
    pub frame_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            max_attempts: None,
            frame_timeout: Duration::from_secs(10),
        }
    }
}

/// The owner's side of a running camera.
pub struct CameraHandle {
    pub id: String,
    status: Arc<Mutex<CameraStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CameraHandle {
    /// A snapshot of the camera's status.
    pub fn status(&self) -> CameraStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Asks the camera thread to stop and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CameraHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Most coded units held back for a consumer that is behind (a minute at
/// 25 fps); the evidence ring itself keeps far less.
const MAX_CARRIED_UNITS: usize = 1500;

/// Starts cameras.
pub struct Camera;

impl Camera {
    /// Starts a thread that keeps `spec` running and sends frames on a
    /// channel of `capacity`. A live source drops frames when analysis is
    /// behind (never blocking the decoder); a recording waits.
    ///
    /// `analysis_fps`: for an H.264/H.265 source, only the decoded pictures
    /// on that schedule ([`crate::capture::AnalysisPace`]) are converted
    /// and sent (the coded units of all of them still come with the frames).
    pub fn start(
        id: &str,
        spec: SourceSpec,
        pacing: Pacing,
        expect_size: Option<(u32, u32)>,
        analysis_fps: Option<f64>,
        retry: RetryPolicy,
        capacity: usize,
    ) -> (CameraHandle, Receiver<Frame>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let status = Arc::new(Mutex::new(CameraStatus {
            state: CameraState::Connecting,
            last_frame: None,
            fps: 0.0,
            frames: 0,
            dropped: 0,
            reconnects: 0,
            last_error: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            id: id.to_string(),
            spec,
            pacing,
            expect_size,
            analysis_fps,
            retry,
            status: status.clone(),
            stop: stop.clone(),
            tx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("camera-{id}"))
            .spawn(move || worker.run())
            .ok();
        if thread.is_none() {
            set(&status, |s| {
                s.state = CameraState::Failed;
                s.last_error = Some("cannot start camera thread".into());
            });
        }
        (
            CameraHandle {
                id: id.to_string(),
                status,
                stop,
                thread,
            },
            rx,
        )
    }
}

struct Worker {
    id: String,
    spec: SourceSpec,
    pacing: Pacing,
    analysis_fps: Option<f64>,
    expect_size: Option<(u32, u32)>,
    retry: RetryPolicy,
    status: Arc<Mutex<CameraStatus>>,
    stop: Arc<AtomicBool>,
    tx: SyncSender<Frame>,
}

fn set(status: &Mutex<CameraStatus>, f: impl FnOnce(&mut CameraStatus)) {
    match status.lock() {
        Ok(mut s) => f(&mut s),
        Err(p) => f(&mut p.into_inner()),
    }
}

enum Outcome {
    Ended,
    Failed(CaptureError, bool),
    ConsumerGone,
}

impl Worker {
    fn run(self) {
        let mut backoff = self.retry.initial;
        let mut failures = 0u32;
        while !self.stop.load(Ordering::SeqCst) {
            match self.stream_once() {
                Outcome::Ended => {
                    set(&self.status, |s| s.state = CameraState::Finished);
                    tracing::info!(camera = %self.id, "source ended");
                    return;
                }
                Outcome::ConsumerGone => return,
                Outcome::Failed(err, had_frames) => {
                    if had_frames {
                        failures = 0;
                        backoff = self.retry.initial;
                    }
                    failures += 1;
                    tracing::warn!(camera = %self.id, error = %err, retry_in = ?backoff, "camera failed");
                    let exhausted = self.retry.max_attempts.is_some_and(|m| failures >= m);
                    set(&self.status, |s| {
                        s.last_error = Some(err.to_string());
                        s.state = if exhausted {
                            CameraState::Failed
                        } else {
                            CameraState::Stalled
                        };
                    });
                    if exhausted || !self.sleep(backoff) {
                        return;
                    }
                    // Jitter-free doubling is enough for one box; cap it.
                    backoff = (backoff * 2).min(self.retry.max);
                    set(&self.status, |s| {
                        s.reconnects += 1;
                        s.state = CameraState::Connecting;
                    });
                }
            }
        }
    }

    /// Sleeps in small steps so a stop request is honoured quickly.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Hands a recording's frame on, waiting while the consumer is behind
    /// (a recording loses no frame) but not past a stop request: a blocking
    /// send would deadlock `CameraHandle::stop` against a consumer that
    /// stops reading and then joins this thread.
    fn send_waiting(&self, mut frame: Frame) -> bool {
        loop {
            match self.tx.try_send(frame) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(f)) => {
                    if self.stop.load(Ordering::SeqCst) {
                        return false;
                    }
                    frame = f;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    fn stream_once(&self) -> Outcome {
        let mut source = match FrameSource::open_paced(
            &self.spec,
            self.pacing,
            self.expect_size,
            self.analysis_fps,
        ) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(e, false),
        };
        let mut had_frames = false;
        // Coded units of frames dropped while analysis was behind: handed on
        // with the next frame sent, so the evidence stream has no gap.
        let mut carried: Option<crate::capture::Packets> = None;
        let mut window_start = Instant::now();
        let mut window_frames = 0u32;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Outcome::ConsumerGone;
            }
            let mut frame = match source.next_frame(self.retry.frame_timeout) {
                Ok(Some(f)) => f,
                // Only a recording ends. A live camera's end-of-stream (a
                // BYE as it reboots, an HTTP server closing) is a drop: it
                // is reconnected like any other.
                Ok(None) if self.spec.is_live() => {
                    let camera = self.spec.to_string();
                    return Outcome::Failed(CaptureError::StreamEnded { camera }, had_frames);
                }
                Ok(None) => return Outcome::Ended,
                Err(e) => return Outcome::Failed(e, had_frames),
            };
            had_frames = true;
            window_frames += 1;
            let elapsed = window_start.elapsed();
            let time = frame.time;
            let fps = (elapsed >= Duration::from_secs(2))
                .then(|| window_frames as f32 / elapsed.as_secs_f32());
            if fps.is_some() {
                window_start = Instant::now();
                window_frames = 0;
            }
            if let Some(mut earlier) = carried.take() {
                if let Some(now) = frame.packets.take() {
                    earlier.append(now);
                }
                frame.packets = Some(earlier);
            }
            let mut dropped = false;
            let sent = if self.spec.is_live() {
                match self.tx.try_send(frame) {
                    Ok(()) => true,
                    Err(TrySendError::Full(f)) => {
                        carried = f.packets.map(|mut p| {
                            p.bound(MAX_CARRIED_UNITS);
                            p
                        });
                        dropped = true;
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            } else {
                self.send_waiting(frame)
            };
            if !sent {
                return Outcome::ConsumerGone;
            }
            set(&self.status, |s| {
                s.state = CameraState::Streaming;
                s.last_frame = Some(time);
                s.frames += 1;
                s.dropped += u64::from(dropped);
                if let Some(f) = fps {
                    s.fps = f;
                }
            });
        }
    }
}
