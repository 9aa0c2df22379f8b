//! The clock's state when a violation is decided, carried with its job to
//! the signature.
//!
//! A violation is signed seconds after it is decided (the clip's `post`
//! window, then stills, plate and clip on a worker). Read only at signing,
//! the clock's state would describe the wrong moment: chrony stepping the
//! clock in between would give an event stamped by the clock before the
//! step, signed `synced`. So the state is read where the violation is
//! decided (from a [`ClockWatch`] kept fresh by its own thread: the camera
//! loop never waits for `chronyc`), and at signing the event reports the
//! worse of the two ([`DecidedClock::at_signing`]); a clock stepped in
//! between (wall time and monotonic time moved apart) is not synced.

use protocol::{ClockSync, ClockSyncStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How far wall time may move from monotonic time over a violation's
/// post-processing before the clock counts as stepped: chrony slews at
/// most 83 ms/s by default, so a few seconds of slewing stays well below.
pub const STEP_TOLERANCE: Duration = Duration::from_secs(1);

/// A reading of the clock's state with the wall and monotonic clocks read
/// at the same moment.
#[derive(Debug, Clone, PartialEq)]
pub struct DecidedClock {
    /// The state read.
    pub sync: ClockSync,
    wall: SystemTime,
    mono: Instant,
}

impl DecidedClock {
    /// `sync`, as read now.
    pub fn now(sync: ClockSync) -> Self {
        Self {
            sync,
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// How far wall time moved from monotonic time since this reading
    /// (a step of the clock), milliseconds.
    fn step_ms(&self) -> i128 {
        let mono = self.mono.elapsed().as_millis() as i128;
        let wall = match SystemTime::now().duration_since(self.wall) {
            Ok(d) => d.as_millis() as i128,
            Err(e) => -(e.duration().as_millis() as i128),
        };
        wall - mono
    }

    /// This reading carried to now: unsynced if the clock was stepped since.
    fn carried(&self) -> ClockSync {
        let step = self.step_ms();
        if step.unsigned_abs() > STEP_TOLERANCE.as_millis() {
            tracing::warn!(step_ms = %step, "the clock was stepped between a violation and its signature: not synced");
            return ClockSync {
                status: ClockSyncStatus::Unsynced,
                offset_ms: None,
                source: self.sync.source.clone(),
            };
        }
        self.sync.clone()
    }

    /// What an event decided with this reading reports when it is signed
    /// with `now` read: the worse of the two. Synced only if both are and
    /// the clock was not stepped in between (then the larger offset);
    /// otherwise the state that is not synced (unsynced before unknown).
    pub fn at_signing(&self, now: ClockSync) -> ClockSync {
        let then = self.carried();
        match (then.status, now.status) {
            (ClockSyncStatus::Synced, ClockSyncStatus::Synced) => {
                let off = |c: &ClockSync| c.offset_ms.map_or(0, i64::unsigned_abs);
                if off(&then) >= off(&now) { then } else { now }
            }
            (ClockSyncStatus::Unsynced, _)
            | (ClockSyncStatus::Unknown, ClockSyncStatus::Synced) => then,
            _ => now,
        }
    }
}

/// The latest reading of the clock's state, refreshed by a thread of its
/// own ([`ClockWatch::start`]), for the camera loops to take when they
/// decide a violation ([`ClockWatch::decided`]).
#[derive(Debug)]
pub struct ClockWatch {
    latest: Mutex<DecidedClock>,
    /// How often the watch thread reads (`None`: no thread, tests). A
    /// reading older than [`STALE_READINGS`] of these is not trusted: a
    /// `chronyc` that hangs must not leave "synced" standing.
    every: Option<Duration>,
}

/// Readings missed before the last one is stale (see [`ClockWatch`]).
pub const STALE_READINGS: u32 = 3;

impl ClockWatch {
    /// A watch holding `sync` until [`ClockWatch::update`] (tests, and
    /// the first reading).
    pub fn new(sync: ClockSync) -> Arc<Self> {
        Arc::new(Self {
            latest: Mutex::new(DecidedClock::now(sync)),
            every: None,
        })
    }

    /// Reads the clock with `read` now and then every `every` on a thread
    /// of its own until `stop`.
    pub fn start(
        read: fn() -> ClockSync,
        every: Duration,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Arc<Self>> {
        let watch = Arc::new(Self {
            latest: Mutex::new(DecidedClock::now(read())),
            every: Some(every),
        });
        let w = watch.clone();
        std::thread::Builder::new()
            .name("clock-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    w.update(read());
                }
            })?;
        Ok(watch)
    }

    /// Takes a new reading.
    pub fn update(&self, sync: ClockSync) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = DecidedClock::now(sync);
    }

    /// The state for a violation decided now: the latest reading, carried
    /// to now (unsynced if the clock was stepped since it).
    pub fn decided(&self) -> DecidedClock {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let stale = self
            .every
            .is_some_and(|every| latest.mono.elapsed() > every * STALE_READINGS);
        if stale {
            tracing::warn!("the clock watch has no fresh reading: not synced");
            return DecidedClock::now(ClockSync::unknown());
        }
        DecidedClock::now(latest.carried())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stepped(sync: ClockSync, step: Duration) -> DecidedClock {
        DecidedClock {
            sync,
            wall: SystemTime::now() - step,
            mono: Instant::now(),
        }
    }

    /// The event reports the worse of the state when the violation was
    /// decided and when it is signed: a clock that lost its lock in
    /// between, or that was stepped in between (still "synced" after the
    /// step), does not sign the event as synced.
    #[test]
    fn the_worse_of_decision_and_signing_is_reported_and_a_step_between_is_not_synced() {
        let synced = ClockSync::synced(3, "ntp:pool");
        let unsynced = ClockSync {
            status: ClockSyncStatus::Unsynced,
            offset_ms: Some(90_000),
            source: Some("ntp:pool".into()),
        };
        let decided = |s: &ClockSync| DecidedClock::now(s.clone());
        assert_eq!(decided(&synced).at_signing(synced.clone()), synced);
        assert_eq!(decided(&unsynced).at_signing(synced.clone()), unsynced);
        assert_eq!(decided(&synced).at_signing(unsynced.clone()), unsynced);
        assert_eq!(
            decided(&ClockSync::unknown()).at_signing(synced.clone()),
            ClockSync::unknown()
        );
        assert_eq!(
            decided(&synced)
                .at_signing(ClockSync::synced(-40, "ntp:pool"))
                .offset_ms,
            Some(-40),
            "the larger offset"
        );
        // chrony stepped the clock by 30 s between decision and signing,
        // and reports synced again at signing.
        let at_signing =
            stepped(synced.clone(), Duration::from_secs(30)).at_signing(synced.clone());
        assert_eq!(
            at_signing.status,
            ClockSyncStatus::Unsynced,
            "{at_signing:?}"
        );
        // A step since the watch's last reading shows at the decision too.
        let watch = ClockWatch::new(synced.clone());
        *watch.latest.lock().unwrap() = stepped(synced.clone(), Duration::from_secs(30));
        assert_eq!(watch.decided().sync.status, ClockSyncStatus::Unsynced);
        watch.update(synced.clone());
        assert_eq!(watch.decided().sync, synced);
        // A watch whose reader stopped answering: its last reading goes
        // stale and is not trusted.
        let stuck = Arc::new(ClockWatch {
            latest: Mutex::new(DecidedClock {
                sync: synced.clone(),
                wall: SystemTime::now(),
                mono: Instant::now() - Duration::from_secs(20),
            }),
            every: Some(Duration::from_secs(5)),
        });
        assert_eq!(stuck.decided().sync, ClockSync::unknown());
    }
}
