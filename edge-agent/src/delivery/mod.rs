//! Delivery: moves what the outbox holds to the server, and nothing else.
//!
//! One loop owns the outbox connection and the MQTT client. While connected
//! it publishes, oldest first, up to `window` events and clips that are not
//! yet acknowledged (so a backlog stays on the box's disk, not in the
//! broker's memory); each event goes as one [`EventBundle`] with its stills,
//! each clip after its event's ack as [`ClipChunk`]s. Only the server's ack
//! on the device's ack topic marks something delivered — a broker's PUBACK
//! means nothing to the outbox, and only an ack signed by a trusted server
//! key for this device counts ([`AckPolicy`]; others are refused, logged
//! with their reason and counted in `edge_acks_refused_total`). The loop
//! does not start without a server key unless the configuration opts out
//! (`[server] accept_unsigned_acks`, lab only). After an outage the backlog is replayed in
//! order, paced at `backlog_per_s`, while events queued since the link came
//! back go first, so live violations are not starved. Every `heartbeat_s`
//! a signed heartbeat is published (retained).
//!
//! Nothing the outbox does ends delivery: a damaged row is set aside by the
//! outbox itself, and a failing database (disk full, locked, an I/O error)
//! is logged and retried with a growing pause ([`DbBackoff`]) while the
//! link stays up — before, any such error ended delivery, the agent
//! stopped its cameras with it and systemd restarted it into the same
//! error for ever. Only setting up (opening the outbox, the link) can fail
//! [`run`]; the caller retries it without stopping the cameras.

mod bundle;
pub mod link;
mod pump;
mod queue;

use crate::config::AgentConfig;
use crate::health::{self, HealthBoard, Metrics};
use crate::identity::DeviceIdentity;
use crate::outbox::{AckError, AckOutcome, AckPolicy, AckPolicyError, Outbox, OutboxError, now_ms};
use link::{Link, LinkError, LinkEvent};
use protocol::{Alarm, topics};
use pump::LoopState;
use queue::Row;
use rumqttc::QoS;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Why delivery stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The MQTT link could not be set up.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A topic could not be formed from the device's ids.
    #[error("topic: {0}")]
    Topic(#[from] protocol::TopicError),
    /// No way to tell the server's acks from forgeries.
    #[error(transparent)]
    AckPolicy(#[from] AckPolicyError),
}

/// Shared state the loop reports into.
#[derive(Clone, Default)]
pub struct Shared {
    /// Camera states for the heartbeat.
    pub board: Arc<HealthBoard>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Signal controllers' phases from the link to the cameras.
    pub signals: Arc<crate::signal::SignalRouter>,
}

struct Topics {
    events: String,
    evidence: String,
    heartbeat: String,
    ack: String,
}

impl Topics {
    fn new(site: &str, dev: &str) -> Result<Self, protocol::TopicError> {
        Ok(Self {
            events: topics::events_topic(site, dev)?,
            evidence: topics::evidence_topic(site, dev)?,
            heartbeat: topics::heartbeat_topic(site, dev)?,
            ack: topics::ack_topic(site, dev)?,
        })
    }
}

/// Checks what no retry can mend (the topics the device's ids make, a
/// server key to trust acks by), so that `run` refuses to start on them
/// before any camera does.
pub fn preflight(cfg: &AgentConfig) -> Result<(), DeliveryError> {
    Topics::new(&cfg.device.site, &cfg.device.id)?;
    AckPolicy::from_config(cfg)?;
    Ok(())
}

/// How often the clock's synchronisation is asked for the outbox's age limit.
const CLOCK_EVERY: Duration = Duration::from_secs(30);

/// Alarm while events wait out a refusal the server made for the device's
/// or its own state (not enrolled, revoked, an internal error).
pub const ALARM_EVENTS_HELD: &str = "events_held_by_server";
/// Alarm for a day after a damaged outbox row was set aside.
pub const ALARM_ROWS_SET_ASIDE: &str = "outbox_rows_set_aside";
/// Alarm while the box keeps stills a bundle over the protocol's limit
/// left out (`Outbox::unsent_stills_kept`): evidence the server recorded
/// missing that only a technician can fetch.
pub const ALARM_STILLS_KEPT_UNSENT: &str = "stills_kept_unsent";

/// The outbox's alarms for a heartbeat, from how many rows wait out a
/// refusal (`held`), were set aside in the last day (`set_aside`), and
/// keep stills that were never sent (`kept_unsent`).
fn outbox_alarms(held: u64, set_aside: u64, kept_unsent: u64) -> Vec<Alarm> {
    [
        (held, ALARM_EVENTS_HELD),
        (set_aside, ALARM_ROWS_SET_ASIDE),
        (kept_unsent, ALARM_STILLS_KEPT_UNSENT),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, name)| Alarm::Other(name.into()))
    .collect()
}

/// The pause after the outbox failed: from 0.2 s, doubling, at most 30 s.
#[derive(Debug, Default)]
struct DbBackoff {
    failures: u32,
    until: Option<Instant>,
}

impl DbBackoff {
    fn failed(&mut self, what: &str, e: &OutboxError) {
        self.failures = self.failures.saturating_add(1);
        let pause =
            Duration::from_millis(200u64 << self.failures.min(8)).min(Duration::from_secs(30));
        self.until = Some(Instant::now() + pause);
        // The first failure, then every 20th: enough to see why without
        // flooding the log while a disk stays full.
        if self.failures % 20 == 1 {
            tracing::error!(error = %e, what, failures = self.failures, pause_s = pause.as_secs_f64(), "outbox failed; delivery pauses and tries again");
        }
    }

    fn ok(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "outbox works again");
        }
        self.failures = 0;
        self.until = None;
    }

    fn waiting(&self) -> bool {
        self.until.is_some_and(|u| Instant::now() < u)
    }
}

/// Timers of the loop's periodic work.
struct Timers {
    heartbeat_every: Duration,
    next_heartbeat: Instant,
    next_limits: Instant,
    clock_checked: Option<(Instant, bool)>,
    last_alarm: Option<Alarm>,
    /// Sends to be made due again after a reconnect (done in the next
    /// step, so a database failure there is retried, not fatal).
    requeue: bool,
}

/// Runs delivery until `stop` is set. Returns an error only when it cannot
/// start (the outbox cannot be opened, the link not set up, the
/// configuration is unusable); once running, outbox failures pause it.
pub fn run(
    cfg: &AgentConfig,
    identity: &DeviceIdentity,
    shared: &Shared,
    stop: Arc<AtomicBool>,
) -> Result<(), DeliveryError> {
    let dev = &identity.device_id;
    let topics = Topics::new(&identity.site, dev)?;
    let policy = AckPolicy::from_config(cfg)?;
    if policy.accepts_unsigned() {
        tracing::warn!(
            server_keys = policy.key_count(),
            "INSECURE: [server] accept_unsigned_acks is on: acks the server did not sign are \
             believed, so any client of the broker can make this box delete undelivered \
             violations; lab use only"
        );
    }
    let mut outbox = Outbox::open(&cfg.outbox_db(), cfg.outbox.limits())?;
    let link = Link::start(&cfg.mqtt, dev, topics.ack.clone(), stop.clone())?;
    let mut state = LoopState::new();
    let mut run = health::AgentRun::start();
    let mut timers = Timers {
        heartbeat_every: Duration::from_secs_f64(cfg.health.heartbeat_s),
        next_heartbeat: Instant::now(),
        next_limits: Instant::now(),
        clock_checked: None,
        last_alarm: None,
        requeue: false,
    };
    let mut db = DbBackoff::default();
    let m = &shared.metrics;
    while !stop.load(Ordering::Relaxed) {
        let wait = if state.connected { 20 } else { 200 };
        let mut event = match link.events.recv_timeout(Duration::from_millis(wait)) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        while let Some(e) = event.take() {
            match e {
                LinkEvent::Up { session_present } => {
                    tracing::info!(device = %dev, session_present, "connected to the broker");
                    state.connected = true;
                    state.failures = 0;
                    state.live_since = now_ms();
                    state.tokens = cfg.mqtt.window as f64;
                    if session_present {
                        state.queue.reconnected();
                    } else {
                        // rumqttc dropped what its queue held.
                        state.queue.forget();
                    }
                    m.connects.fetch_add(1, Ordering::Relaxed);
                    m.connected.store(1, Ordering::Relaxed);
                    if let Err(e) = link.subscribe(&topics.ack, QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "subscribing to acks");
                    }
                    // A phase is worth something only live: no queueing at
                    // the broker (QoS 0), a stale one is refused anyway.
                    for t in shared.signals.topics() {
                        if let Err(e) = link.subscribe(&t, QoS::AtMostOnce) {
                            tracing::warn!(error = %e, topic = %t, "subscribing to a signal feed");
                        }
                    }
                    timers.requeue = true;
                    timers.next_heartbeat = Instant::now();
                }
                LinkEvent::Down(why) => {
                    if state.connected {
                        tracing::warn!(reason = %why, "broker connection lost; retrying with backoff");
                    } else if state.failures.is_multiple_of(20) {
                        // The first failure, then every 20th: enough to see
                        // why without flooding the log during an outage.
                        tracing::warn!(reason = %why, failures = state.failures + 1, "cannot connect to the broker; retrying with backoff");
                    }
                    state.failures = if state.connected {
                        0
                    } else {
                        state.failures + 1
                    };
                    state.connected = false;
                    m.connected.store(0, Ordering::Relaxed);
                }
                LinkEvent::Message {
                    topic,
                    payload,
                    arrived,
                } => match shared.signals.deliver(&topic, &payload, arrived) {
                    Ok(n) => {
                        m.signal_phases.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        m.signal_phases_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "signal phase refused");
                    }
                },
                LinkEvent::Ack(bytes) => apply_ack(&mut outbox, &policy, &bytes, m, &mut db),
                LinkEvent::Written(pkid) => state.sent.extend(state.queue.left(pkid)),
                LinkEvent::PubAck(pkid) => state.queue.acked(pkid),
            }
            event = link.events.try_recv().ok();
        }
        if db.waiting() {
            continue;
        }
        let stepped = step(
            &mut outbox,
            &link,
            &topics,
            cfg,
            identity,
            shared,
            &mut state,
            &mut timers,
            &mut run,
        );
        match stepped {
            Ok(()) => db.ok(),
            Err(e) => db.failed("delivering", &e),
        }
    }
    link.shutdown();
    Ok(())
}

/// Applies what arrived on the ack topic. An outbox failure loses only
/// this ack: the event is sent again after its timeout and the server
/// answers `duplicate`.
fn apply_ack(
    outbox: &mut Outbox,
    policy: &AckPolicy,
    bytes: &[u8],
    m: &Metrics,
    db: &mut DbBackoff,
) {
    match outbox.apply_ack_bytes(bytes, policy) {
        Ok((outcome, checked)) => {
            if checked.signed_by.is_none() {
                tracing::warn!(event_id = %checked.ack.event_id, "believing an UNVERIFIED ack (accept_unsigned_acks)");
            }
            match outcome {
                AckOutcome::Delivered { .. } => {
                    m.events_acked.fetch_add(1, Ordering::Relaxed);
                }
                AckOutcome::Rejected => {
                    m.events_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(ack = %String::from_utf8_lossy(bytes), "server rejected an event; kept in the outbox as rejected");
                }
                AckOutcome::ClipRejected => {
                    tracing::error!(ack = %String::from_utf8_lossy(bytes), "server rejected a clip; the event stays delivered, the clip is kept as rejected");
                }
                AckOutcome::Held { retry_at } => {
                    let in_s = (retry_at - now_ms()).max(0) / 1000;
                    tracing::error!(ack = %String::from_utf8_lossy(bytes), retry_in_s = in_s, "server refused an event for the device's or its own state (is this device enrolled?); it is sent again later");
                }
                AckOutcome::ForeignRejection => {
                    m.foreign_rejections.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(ack = %String::from_utf8_lossy(bytes), "ignored a rejection of bytes this device did not send; the event is sent again");
                }
                AckOutcome::Unknown => {
                    tracing::debug!("ack for an event not in the outbox")
                }
            }
        }
        Err(AckError::Refused(e)) => {
            m.acks_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = e.reason(), error = %e, bytes = bytes.len(), "refused an ack: nothing marked delivered");
        }
        Err(AckError::Outbox(e)) => db.failed("applying an ack", &e),
    }
}

/// One pass of the loop's outbox work: resends after a reconnect, ack
/// timers of what left the client, publishing, limits, the heartbeat.
#[allow(clippy::too_many_arguments)]
fn step(
    outbox: &mut Outbox,
    link: &Link,
    topics: &Topics,
    cfg: &AgentConfig,
    identity: &DeviceIdentity,
    shared: &Shared,
    state: &mut LoopState,
    t: &mut Timers,
    run: &mut health::AgentRun,
) -> Result<(), OutboxError> {
    let m = &shared.metrics;
    if t.requeue {
        let again = outbox.requeue_sent()?;
        t.requeue = false;
        if again > 0 {
            tracing::info!(again, "unacknowledged sends are due again");
        }
    }
    let now = now_ms();
    if state.connected {
        state.queue.check_stall();
    }
    for row in std::mem::take(&mut state.sent) {
        match row {
            Row::Event(seq) => outbox.sent_now(seq, false, now)?,
            Row::Clip(seq) => outbox.sent_now(seq, true, now)?,
        }
    }
    if state.connected {
        pump::pump(outbox, link, topics, cfg, state, m)?;
    }
    if Instant::now() >= t.next_limits {
        t.next_limits = Instant::now() + Duration::from_secs(2);
        let alarm = outbox.alarm()?;
        if alarm != t.last_alarm {
            let stats = outbox.stats(now_ms())?;
            match &alarm {
                Some(a) => {
                    tracing::warn!(alarm = ?a, bytes = stats.bytes, depth = stats.depth, limits = ?outbox.limits(), "outbox alarm raised")
                }
                None => tracing::info!(
                    bytes = stats.bytes,
                    depth = stats.depth,
                    "outbox alarm cleared"
                ),
            }
            t.last_alarm = alarm;
        }
        // `chronyc` is a process: asked every 30 s, not every pass.
        if t.clock_checked
            .is_none_or(|(at, _): (Instant, bool)| at.elapsed() >= CLOCK_EVERY)
        {
            let synced = health::clock_sync().status == protocol::ClockSyncStatus::Synced;
            t.clock_checked = Some((Instant::now(), synced));
        }
        let synced = t.clock_checked.is_some_and(|(_, s)| s);
        outbox.enforce_limits_trusting(now_ms(), synced)?;
        m.set_outbox(&outbox.stats(now_ms())?);
    }
    if state.connected && Instant::now() >= t.next_heartbeat {
        t.next_heartbeat = Instant::now() + t.heartbeat_every;
        let now = now_ms();
        let stats = outbox.stats(now)?;
        let mut hb = health::heartbeat(
            identity,
            run,
            &shared.board,
            &stats,
            outbox.alarm()?,
            &cfg.device.data_dir,
            health::clock_sync(),
        );
        hb.alarms.extend(outbox_alarms(
            outbox.held_count(now)?,
            outbox.set_aside_count(now - 86_400_000)?,
            stats.stills_kept_unsent,
        ));
        match hb.sign(identity.signing_key()).and_then(|s| s.to_json()) {
            Ok(json) => {
                let len = json.len();
                if link
                    .client
                    .try_publish(&topics.heartbeat, QoS::AtLeastOnce, true, json)
                    .is_ok()
                {
                    state.queue.pushed(None, len, false);
                    m.heartbeats.fetch_add(1, Ordering::Relaxed);
                    shared.board.heartbeat_sent();
                }
            }
            Err(e) => tracing::error!(error = %e, "heartbeat could not be signed"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of the outbox's conditions raises its own alarm, and only
    /// while it holds: stills kept unsent are reported, not left to be
    /// found by someone reading the logs.
    #[test]
    fn the_outbox_raises_an_alarm_per_condition_that_holds() {
        assert!(outbox_alarms(0, 0, 0).is_empty());
        assert_eq!(
            outbox_alarms(0, 0, 2),
            vec![Alarm::Other(ALARM_STILLS_KEPT_UNSENT.into())]
        );
        assert_eq!(
            outbox_alarms(3, 1, 0),
            vec![
                Alarm::Other(ALARM_EVENTS_HELD.into()),
                Alarm::Other(ALARM_ROWS_SET_ASIDE.into())
            ]
        );
    }
}
