//! A circuit breaker for the registry gateway. When the gateway is down,
//! every owner lookup would otherwise wait out its time limit and retries;
//! after `threshold` consecutive failed lookups the circuit *opens* and
//! lookups fail at once, without a call, for `cooldown`. Then it is
//! *half-open*: one trial lookup is let through (the others still fail at
//! once); its success closes the circuit, its failure opens it for another
//! cool-down.
//!
//! Pure state, the time passed in, so the unit tests drive it without
//! waiting; the adapter keeps it behind a mutex that is never held across a
//! call.

use std::time::{Duration, Instant};

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail at once until `until`.
    Open { until: Instant, failures: u32 },
    /// The cool-down is over; `trial` is whether a trial call is under way.
    HalfOpen { trial: bool },
}

/// Whether a lookup may call the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Yes; `trial` when it is the one trial call of a half-open circuit.
    Go { trial: bool },
    /// No: the circuit is open for `retry_in` more, after `failures`
    /// consecutive failures.
    Open { retry_in: Duration, failures: u32 },
    /// No: a trial call is under way.
    TrialUnderWay,
}

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: State,
}

impl Breaker {
    /// Closed; opens after `threshold` (at least 1) failures in a row.
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: State::Closed { failures: 0 },
        }
    }

    /// Asks to call at `now`.
    pub(super) fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Go { trial: false },
            State::Open { until, failures } if now < until => Admit::Open {
                retry_in: until - now,
                failures,
            },
            State::Open { .. } | State::HalfOpen { trial: false } => {
                self.state = State::HalfOpen { trial: true };
                Admit::Go { trial: true }
            }
            State::HalfOpen { trial: true } => Admit::TrialUnderWay,
        }
    }

    /// A call ended well (the gateway answered usably): closed.
    pub(super) fn success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// A call failed at `now`.
    pub(super) fn failure(&mut self, now: Instant) {
        let until = now.checked_add(self.cooldown).unwrap_or(now);
        self.state = match self.state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    State::Open { until, failures }
                } else {
                    State::Closed { failures }
                }
            }
            // The trial failed (or a call let through before the circuit
            // opened failed late): open again for a whole cool-down.
            State::HalfOpen { .. } => State::Open {
                until,
                failures: self.threshold,
            },
            State::Open { failures, .. } => State::Open {
                until,
                failures: failures.saturating_add(1),
            },
        };
    }

    /// The trial call ended without a verdict (its lookup was dropped): let
    /// the next lookup try.
    pub(super) fn abandon_trial(&mut self) {
        if self.state == (State::HalfOpen { trial: true }) {
            self.state = State::HalfOpen { trial: false };
        }
    }

    /// Whether calls go through (for logs and tests).
    pub(super) fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_after_cooldown() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Breaker::new(3, ms(1000));
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admit::Go { trial: false });
            b.failure(t0);
        }
        // A success resets the count.
        b.success();
        for _ in 0..2 {
            b.failure(t0);
        }
        assert!(b.is_closed());
        b.failure(t0);
        assert!(!b.is_closed());
        assert_eq!(
            b.admit(t0 + ms(400)),
            Admit::Open {
                retry_in: ms(600),
                failures: 3
            }
        );
        // Cool-down over: one trial, the others wait for it.
        assert_eq!(b.admit(t0 + ms(1000)), Admit::Go { trial: true });
        assert_eq!(b.admit(t0 + ms(1001)), Admit::TrialUnderWay);
        // The trial fails: open for a whole cool-down again.
        b.failure(t0 + ms(1100));
        assert!(matches!(b.admit(t0 + ms(2000)), Admit::Open { .. }));
        assert_eq!(b.admit(t0 + ms(2100)), Admit::Go { trial: true });
        // It succeeds: closed.
        b.success();
        assert_eq!(b.admit(t0 + ms(2101)), Admit::Go { trial: false });
        assert!(b.is_closed());
    }

    #[test]
    fn an_abandoned_trial_lets_the_next_lookup_try() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_millis(10));
        b.failure(t0);
        let later = t0 + Duration::from_millis(20);
        assert_eq!(b.admit(later), Admit::Go { trial: true });
        b.abandon_trial();
        assert_eq!(b.admit(later), Admit::Go { trial: true });
    }
}
