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

pub mod link;

use crate::config::AgentConfig;
use crate::health::{self, HealthBoard, Metrics};
use crate::identity::DeviceIdentity;
use crate::outbox::{
    AckError, AckOutcome, AckPolicy, AckPolicyError, Outbox, OutboxError, Pending, PendingClip,
    PendingEvent, now_ms,
};
use link::{Link, LinkError, LinkEvent};
use protocol::{Attachment, ClipChunk, EventBundle, SignedEvent, topics};
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

/// Runs delivery until `stop` is set.
pub fn run(
    cfg: &AgentConfig,
    identity: &DeviceIdentity,
    shared: &Shared,
    stop: Arc<AtomicBool>,
) -> Result<(), DeliveryError> {
    let (site, dev) = (&identity.site, &identity.device_id);
    let topics = Topics {
        events: topics::events_topic(site, dev)?,
        evidence: topics::evidence_topic(site, dev)?,
        heartbeat: topics::heartbeat_topic(site, dev)?,
        ack: topics::ack_topic(site, dev)?,
    };
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
    let mut state = LoopState {
        connected: false,
        failures: 0,
        live_since: i64::MAX,
        tokens: 0.0,
        last_pump: Instant::now(),
        unreadable: std::collections::HashMap::new(),
    };
    let mut run = health::AgentRun::start();
    let heartbeat_every = Duration::from_secs_f64(cfg.health.heartbeat_s);
    let mut next_heartbeat = Instant::now();
    let mut next_limits = Instant::now();
    let mut clock_checked: Option<(Instant, bool)> = None;
    let mut last_alarm = None;
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
                LinkEvent::Up => {
                    tracing::info!(device = %dev, "connected to the broker");
                    state.connected = true;
                    state.failures = 0;
                    state.live_since = now_ms();
                    state.tokens = cfg.mqtt.window as f64;
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
                    let again = outbox.requeue_sent()?;
                    if again > 0 {
                        tracing::info!(again, "unacknowledged sends are due again");
                    }
                    next_heartbeat = Instant::now();
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
                LinkEvent::Ack(bytes) => match outbox.apply_ack_bytes(&bytes, &policy) {
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
                                tracing::error!(ack = %String::from_utf8_lossy(&bytes), "server rejected an event; kept in the outbox as rejected");
                            }
                            AckOutcome::ForeignRejection => {
                                m.foreign_rejections.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(ack = %String::from_utf8_lossy(&bytes), "ignored a rejection of bytes this device did not send; the event is sent again");
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
                    Err(AckError::Outbox(e)) => return Err(e.into()),
                },
            }
            event = link.events.try_recv().ok();
        }
        if state.connected {
            pump(&mut outbox, &link, &topics, cfg, &mut state, m)?;
        }
        if Instant::now() >= next_limits {
            next_limits = Instant::now() + Duration::from_secs(2);
            let alarm = outbox.alarm()?;
            if alarm != last_alarm {
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
                last_alarm = alarm;
            }
            // `chronyc` is a process: asked every 30 s, not every pass.
            if clock_checked.is_none_or(|(at, _): (Instant, bool)| at.elapsed() >= CLOCK_EVERY) {
                let synced = health::clock_sync().status == protocol::ClockSyncStatus::Synced;
                clock_checked = Some((Instant::now(), synced));
            }
            let synced = clock_checked.is_some_and(|(_, s)| s);
            outbox.enforce_limits_trusting(now_ms(), synced)?;
            m.set_outbox(&outbox.stats(now_ms())?);
        }
        if state.connected && Instant::now() >= next_heartbeat {
            next_heartbeat = Instant::now() + heartbeat_every;
            let stats = outbox.stats(now_ms())?;
            let hb = health::heartbeat(
                identity,
                &mut run,
                &shared.board,
                &stats,
                outbox.alarm()?,
                &cfg.device.data_dir,
                health::clock_sync(),
            );
            match hb.sign(identity.signing_key()).and_then(|s| s.to_json()) {
                Ok(json) => {
                    if link
                        .client
                        .try_publish(&topics.heartbeat, QoS::AtLeastOnce, true, json)
                        .is_ok()
                    {
                        m.heartbeats.fetch_add(1, Ordering::Relaxed);
                        shared.board.heartbeat_sent();
                    }
                }
                Err(e) => tracing::error!(error = %e, "heartbeat could not be signed"),
            }
        }
    }
    link.shutdown();
    Ok(())
}

struct LoopState {
    connected: bool,
    /// Connection attempts failed since the last success.
    failures: u64,
    live_since: i64,
    tokens: f64,
    last_pump: Instant,
    /// Rows whose evidence could not be read just now, by (seq, clip):
    /// tries so far and when to try again. Other rows go on meanwhile.
    unreadable: std::collections::HashMap<(i64, bool), (u32, Instant)>,
}

/// How often the clock's synchronisation is asked for the outbox's age limit.
const CLOCK_EVERY: Duration = Duration::from_secs(30);

/// How long a row waits after its evidence could not be read.
const SPOOL_RETRY: Duration = Duration::from_secs(1);
/// Tries before an unreadable file is taken for lost (the event goes
/// without it, the clip is recorded lost): a bad sector must not hold the
/// row for ever.
const SPOOL_TRIES: u32 = 30;
/// Tries after which any unreadable file is taken for lost.
const SPOOL_TRIES_MAX: u32 = 600;

impl LoopState {
    /// Whether a row may be tried now: `None` while it waits after a
    /// failed read, else whether its unreadable files are to be taken for
    /// lost (it has failed [`SPOOL_TRIES`] times). A row still failing
    /// after [`SPOOL_TRIES_MAX`] tries (ten minutes) is taken leniently
    /// whatever the error, so no row holds its place in the send window
    /// for ever.
    fn spool_turn(&self, key: (i64, bool)) -> Option<Leniency> {
        match self.unreadable.get(&key) {
            Some((_, at)) if Instant::now() < *at => None,
            Some((tries, _)) if *tries >= SPOOL_TRIES_MAX => Some(Leniency::Any),
            Some((tries, _)) if *tries >= SPOOL_TRIES => Some(Leniency::Damaged),
            _ => Some(Leniency::Strict),
        }
    }

    /// A row's evidence could not be read just now.
    fn spool_failed(&mut self, key: (i64, bool)) {
        // Rows evicted or given up while failing leave their entries:
        // bounded by forgetting them all now and then.
        if self.unreadable.len() >= 10_000 {
            self.unreadable.clear();
        }
        let e = self.unreadable.entry(key).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now() + SPOOL_RETRY;
    }
}

/// Publishes what is due, within the window and the backlog pace.
fn pump(
    outbox: &mut Outbox,
    link: &Link,
    topics: &Topics,
    cfg: &AgentConfig,
    state: &mut LoopState,
    m: &Metrics,
) -> Result<(), OutboxError> {
    let dt = state.last_pump.elapsed().as_secs_f64();
    state.last_pump = Instant::now();
    let window = cfg.mqtt.window;
    state.tokens = (state.tokens + dt * cfg.mqtt.backlog_per_s).min(window as f64);
    let now = now_ms();
    let ack_timeout = Duration::from_secs(cfg.mqtt.ack_timeout_s);
    let in_flight = outbox.in_flight(now, ack_timeout)? as usize;
    if in_flight >= window {
        return Ok(());
    }
    let due = outbox.due(now, ack_timeout, state.live_since, window - in_flight)?;
    let mut backlog_paused = false;
    for p in due {
        match p {
            Pending::Event(e) => {
                // A row waiting after a failed read spends no backlog token.
                let Some(lenient) = state.spool_turn((e.seq, false)) else {
                    continue;
                };
                if e.created_at < state.live_since {
                    if backlog_paused || state.tokens < 1.0 {
                        backlog_paused = true;
                        continue;
                    }
                    state.tokens -= 1.0;
                }
                let bytes = match bundle_bytes(&e, lenient) {
                    Ok(b) => b,
                    Err(Unsendable::Later) => {
                        state.spool_failed((e.seq, false));
                        continue;
                    }
                    Err(Unsendable::Never) => {
                        state.unreadable.remove(&(e.seq, false));
                        outbox.give_up(e.seq, "the stored event could not be encoded")?;
                        continue;
                    }
                };
                let sha256 = protocol::sha256_hex(&bytes);
                if link
                    .client
                    .try_publish(&topics.events, QoS::AtLeastOnce, false, bytes)
                    .is_err()
                {
                    break;
                }
                state.unreadable.remove(&(e.seq, false));
                outbox.mark_sent(e.seq, now, &sha256)?;
                m.events_published.fetch_add(1, Ordering::Relaxed);
            }
            Pending::Clip(c) => {
                let Some(lenient) = state.spool_turn((c.seq, true)) else {
                    continue;
                };
                let chunks = match clip_chunks(&c, lenient) {
                    Ok(chunks) => chunks,
                    Err(Unsendable::Later) => {
                        state.spool_failed((c.seq, true));
                        continue;
                    }
                    Err(Unsendable::Never) => {
                        state.unreadable.remove(&(c.seq, true));
                        outbox.clip_lost(
                            c.seq,
                            "the clip file is gone from the spool or unreadable",
                        )?;
                        continue;
                    }
                };
                let mut all = true;
                for chunk in chunks {
                    let Ok(bytes) = chunk.encode() else {
                        all = false;
                        break;
                    };
                    if link
                        .client
                        .try_publish(&topics.evidence, QoS::AtLeastOnce, false, bytes)
                        .is_err()
                    {
                        all = false;
                        break;
                    }
                    m.chunks_published.fetch_add(1, Ordering::Relaxed);
                }
                if !all {
                    break;
                }
                state.unreadable.remove(&(c.seq, true));
                outbox.mark_clip_sent(c.seq, now)?;
            }
        }
    }
    Ok(())
}

/// Which unreadable evidence files are taken for lost (sent without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leniency {
    /// None: a file that cannot be read holds its row back.
    Strict,
    /// Files damaged themselves ([`file_damaged`]).
    Damaged,
    /// Any, after [`SPOOL_TRIES_MAX`] tries.
    Any,
}

/// Why a pending event or clip was not sent this turn.
enum Unsendable {
    /// A passing failure (a file that could not be read now: too many open
    /// files, an I/O error): tried again at its next turn.
    Later,
    /// It can never be sent as stored.
    Never,
}

/// Reads an evidence file; a file that is gone is `None` (the server then
/// records it as missing), any other failure is passing.
fn read_evidence(
    path: &std::path::Path,
    event_id: &uuid::Uuid,
    lenient: Leniency,
) -> Result<Option<Vec<u8>>, Unsendable> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            tracing::error!(%event_id, file = %path.display(), "evidence file gone from the spool; sending without it");
            Ok(None)
        }
        // Only a file that is itself damaged is given up on; a box-wide
        // failure (too many open files, no memory, a permission gone wrong)
        // waits however long it lasts: sending without the stills then
        // would lose them for every event at once.
        Err(err)
            if lenient == Leniency::Any || (lenient == Leniency::Damaged && file_damaged(&err)) =>
        {
            tracing::error!(%event_id, file = %path.display(), error = %err, "evidence file still unreadable after {SPOOL_TRIES} tries; sending without it");
            Ok(None)
        }
        Err(err) => {
            tracing::warn!(%event_id, file = %path.display(), error = %err, "evidence file unreadable now; sending later");
            Err(Unsendable::Later)
        }
    }
}

/// Whether a read failed because of the file itself (an I/O error on its
/// blocks, a corrupted file system entry, something other than a file in
/// its place). Linux error numbers.
fn file_damaged(err: &std::io::Error) -> bool {
    const EIO: i32 = 5;
    const ENXIO: i32 = 6;
    const EBADMSG: i32 = 74;
    const EUCLEAN: i32 = 117;
    err.kind() == std::io::ErrorKind::IsADirectory
        || matches!(err.raw_os_error(), Some(EIO | ENXIO | EBADMSG | EUCLEAN))
}

/// The SHA-256 the event's signed manifest gives each of its files, by name.
fn manifest_hashes(event: &SignedEvent) -> std::collections::HashMap<String, String> {
    event
        .payload()
        .get("evidence")
        .cloned()
        .and_then(|v| serde_json::from_value::<Vec<protocol::EvidenceItem>>(v).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|item| (item.name, item.sha256))
        .collect()
}

/// The bundle for an event: the signed envelope and its still files, read
/// back from the spool. A still that has vanished from the spool is logged
/// and left out (the server then records it as missing); one that cannot
/// be read just now holds the event back, so a passing failure never
/// costs a still (the server keeps the first copy it stores). A still whose
/// bytes no longer match the signed manifest (storage that rotted) is left
/// out like a vanished one: sent, it would make the server refuse the whole
/// event, and this box would set the violation aside for one bad file.
fn bundle_bytes(e: &PendingEvent, lenient: Leniency) -> Result<Vec<u8>, Unsendable> {
    let event = match SignedEvent::from_json(&e.event_json) {
        Ok(ev) => ev,
        Err(err) => {
            tracing::error!(event_id = %e.event_id, error = %err, "stored event does not parse");
            return Err(Unsendable::Never);
        }
    };
    let signed = manifest_hashes(&event);
    let mut attachments = Vec::with_capacity(e.stills.len());
    for name in &e.stills {
        if let Some(data) = read_evidence(&e.dir.join(name), &e.event_id, lenient)? {
            if signed
                .get(name)
                .is_some_and(|h| *h != protocol::sha256_hex(&data))
            {
                tracing::error!(event_id = %e.event_id, file = %name, "evidence file no longer matches its signed hash (damaged storage); sending without it");
                continue;
            }
            attachments.push(Attachment {
                name: name.clone(),
                data,
            });
        }
    }
    (EventBundle { event, attachments })
        .encode()
        .map_err(|err| {
            tracing::error!(event_id = %e.event_id, error = %err, "bundle could not be encoded");
            Unsendable::Never
        })
}

fn clip_chunks(c: &PendingClip, lenient: Leniency) -> Result<Vec<ClipChunk>, Unsendable> {
    match read_evidence(&c.path, &c.event_id, lenient)? {
        Some(bytes) => Ok(ClipChunk::split(c.event_id, &c.name, &bytes)),
        None => Err(Unsendable::Never),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_still_is_left_out_but_an_unreadable_one_holds_the_event_back() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let file = dir.path().join("at.jpg");
        std::fs::write(&file, b"jpeg").unwrap();
        assert!(matches!(read_evidence(&file, &id, Leniency::Strict), Ok(Some(d)) if d == b"jpeg"));
        assert!(matches!(
            read_evidence(&dir.path().join("gone.jpg"), &id, Leniency::Strict),
            Ok(None)
        ));
        // A read that fails for another reason than absence (here: a
        // directory where the file should be) is passing, not a loss.
        let odd = dir.path().join("after.jpg");
        std::fs::create_dir(&odd).unwrap();
        assert!(matches!(
            read_evidence(&odd, &id, Leniency::Strict),
            Err(Unsendable::Later)
        ));
        // After its tries, a damaged file is taken for lost rather than
        // holding the row; a box-wide failure is not.
        assert!(matches!(
            read_evidence(&odd, &id, Leniency::Damaged),
            Ok(None)
        ));
        assert!(!file_damaged(&std::io::Error::from_raw_os_error(24)));
        assert!(file_damaged(&std::io::Error::from_raw_os_error(5)));

        let clip = |path: std::path::PathBuf| PendingClip {
            seq: 1,
            event_id: id,
            path,
            name: "clip.mp4".into(),
        };
        assert!(matches!(
            clip_chunks(&clip(odd.clone()), Leniency::Strict),
            Err(Unsendable::Later)
        ));
        assert!(matches!(
            clip_chunks(&clip(odd), Leniency::Damaged),
            Err(Unsendable::Never)
        ));
        assert!(matches!(
            clip_chunks(&clip(dir.path().join("gone.mp4")), Leniency::Strict),
            Err(Unsendable::Never)
        ));
        assert_eq!(
            clip_chunks(&clip(file), Leniency::Strict)
                .ok()
                .map(|c| c.len()),
            Some(1)
        );

        // A row that failed waits, and after its tries goes lenient.
        let mut state = LoopState {
            connected: true,
            failures: 0,
            live_since: 0,
            tokens: 0.0,
            last_pump: Instant::now(),
            unreadable: std::collections::HashMap::new(),
        };
        assert_eq!(state.spool_turn((1, false)), Some(Leniency::Strict));
        state.spool_failed((1, false));
        assert_eq!(state.spool_turn((1, false)), None, "waits a second");
        assert_eq!(
            state.spool_turn((2, false)),
            Some(Leniency::Strict),
            "others go on"
        );
        for _ in 1..SPOOL_TRIES {
            state.spool_failed((1, false));
        }
        state.unreadable.get_mut(&(1, false)).unwrap().1 = Instant::now();
        assert_eq!(state.spool_turn((1, false)), Some(Leniency::Damaged));
        state.unreadable.get_mut(&(1, false)).unwrap().0 = SPOOL_TRIES_MAX;
        assert_eq!(state.spool_turn((1, false)), Some(Leniency::Any));
    }
}
