//! A stand-in junction signal controller: cycles green, yellow and red on
//! a fixed plan and publishes each state as a signed
//! [`protocol::SignalPhase`] on a broker, on every change and every second
//! — what a controller (or the adapter in its cabinet) does for a lane
//! group the site file feeds from it. For the demo, the tests and
//! commissioning a box before the real controller is connected
//! (`edge-agent signal-sim`); no real controller runs this code.

use protocol::{SignalPhase, SignalState, SigningKey};
use rumqttc::{Client, MqttOptions, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

/// A fixed signal plan: green, then yellow, then red, repeating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub green: Duration,
    pub yellow: Duration,
    pub red: Duration,
}

impl Plan {
    /// The state at `now` of a plan that began (green) at `start`, and
    /// when that state began.
    pub fn state_at(
        &self,
        start: OffsetDateTime,
        now: OffsetDateTime,
    ) -> (SignalState, OffsetDateTime) {
        let cycle = (self.green + self.yellow + self.red).as_nanos().max(1) as i128;
        let into = (now - start).whole_nanoseconds().rem_euclid(cycle);
        let cycle_start = now - time::Duration::nanoseconds(into as i64);
        let (g, y) = (
            self.green.as_nanos() as i128,
            self.yellow.as_nanos() as i128,
        );
        let (state, from) = if into < g {
            (SignalState::Green, 0)
        } else if into < g + y {
            (SignalState::Yellow, g)
        } else {
            (SignalState::Red, g + y)
        };
        (
            state,
            cycle_start + time::Duration::nanoseconds(from as i64),
        )
    }
}

/// Where and as whom the stand-in publishes.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub host: String,
    pub port: u16,
    /// Broker account (`signals` on the deployed brokers), if any.
    pub credentials: Option<(String, String)>,
    pub topic: String,
    pub group: String,
}

/// Why the stand-in stopped.
#[derive(Debug, thiserror::Error)]
#[error("signal controller stand-in: {0}")]
pub struct SimError(String);

/// Publishes `plan`'s phases for `to.group`, signed with `key`, until
/// `stop`; returns how many were published.
pub fn run(
    to: &Publisher,
    key: &SigningKey,
    plan: Plan,
    stop: Arc<AtomicBool>,
) -> Result<u64, SimError> {
    let mut opts = MqttOptions::new(format!("signal-sim-{}", to.group), &to.host, to.port);
    opts.set_keep_alive(Duration::from_secs(10));
    if let Some((user, password)) = &to.credentials {
        opts.set_credentials(user, password);
    }
    let (client, mut connection) = Client::new(opts, 16);
    let driver_stop = stop.clone();
    let driver = std::thread::Builder::new()
        .name("signal-sim-mqtt".into())
        .spawn(move || {
            while !driver_stop.load(Ordering::Relaxed) {
                if let Ok(Err(e)) = connection.recv_timeout(Duration::from_millis(200)) {
                    tracing::warn!(error = %e, "signal stand-in: broker connection");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        })
        .map_err(|e| SimError(format!("starting the connection thread: {e}")))?;
    let start = OffsetDateTime::now_utc();
    let mut published = 0u64;
    let mut last: Option<SignalState> = None;
    let mut next_repeat = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = OffsetDateTime::now_utc();
        let (state, since) = plan.state_at(start, now);
        if last != Some(state) || std::time::Instant::now() >= next_repeat {
            let phase = SignalPhase {
                group: to.group.clone(),
                state,
                since,
                sent: now,
            };
            let bytes = phase
                .to_signed_json(key, &to.topic)
                .map_err(|e| SimError(e.to_string()))?;
            if client
                .try_publish(&to.topic, QoS::AtMostOnce, false, bytes)
                .is_ok()
            {
                published += 1;
            }
            last = Some(state);
            next_repeat = std::time::Instant::now() + Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = client.try_disconnect();
    let _ = driver.join();
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_cycles_green_yellow_red_and_says_when_each_began() {
        let plan = Plan {
            green: Duration::from_secs(30),
            yellow: Duration::from_secs(3),
            red: Duration::from_secs(40),
        };
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let at = |s: i64| plan.state_at(t0, t0 + time::Duration::seconds(s));
        assert_eq!(at(0), (SignalState::Green, t0));
        assert_eq!(
            at(31),
            (SignalState::Yellow, t0 + time::Duration::seconds(30))
        );
        assert_eq!(at(72), (SignalState::Red, t0 + time::Duration::seconds(33)));
        assert_eq!(
            at(73 + 5),
            (SignalState::Green, t0 + time::Duration::seconds(73))
        );
    }
}
