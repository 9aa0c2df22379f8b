//! One publishing pass of the delivery loop ([`pump`]) and the state it
//! keeps between passes: the backlog's pace, rows whose evidence could not
//! be read just now, and what waits in the MQTT client ([`ClientQueue`]),
//! so that nothing is queued twice before its first copy has left and a
//! clip too large for the room left resumes where it stopped.

use super::Topics;
use super::bundle::{Leniency, Unsendable, bundle_bytes, clip_chunks};
use super::link::Link;
use super::queue::{ClientQueue, Row};
use crate::config::AgentConfig;
use crate::health::Metrics;
use crate::outbox::{Outbox, OutboxError, Pending, now_ms};
use rumqttc::QoS;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(super) struct LoopState {
    pub(super) connected: bool,
    /// Connection attempts failed since the last success.
    pub(super) failures: u64,
    pub(super) live_since: i64,
    pub(super) tokens: f64,
    pub(super) last_pump: Instant,
    /// What waits in the MQTT client ([`ClientQueue`]).
    pub(super) queue: ClientQueue,
    /// Rows whose last message just left the client: their ack timeout
    /// starts.
    pub(super) sent: Vec<Row>,
    /// Rows whose evidence could not be read just now, by (seq, clip):
    /// tries so far and when to try again. Other rows go on meanwhile.
    pub(super) unreadable: std::collections::HashMap<(i64, bool), (u32, Instant)>,
}

/// How long a row waits after its evidence could not be read.
const SPOOL_RETRY: Duration = Duration::from_secs(1);
/// Tries before an unreadable file is taken for lost (the event goes
/// without it, the clip is recorded lost): a bad sector must not hold the
/// row for ever.
pub(super) const SPOOL_TRIES: u32 = 30;
/// Tries after which any unreadable file is taken for lost.
const SPOOL_TRIES_MAX: u32 = 600;

impl LoopState {
    /// The state of a loop not yet connected.
    pub(super) fn new() -> Self {
        Self {
            connected: false,
            failures: 0,
            live_since: i64::MAX,
            tokens: 0.0,
            last_pump: Instant::now(),
            queue: ClientQueue::default(),
            sent: Vec::new(),
            unreadable: std::collections::HashMap::new(),
        }
    }

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

/// Publishes what is due, within the window, the backlog pace and the
/// room in the MQTT client.
pub(super) fn pump(
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
    'rows: for p in due {
        match p {
            Pending::Event(e) => {
                // Its last copy has not left the client yet: not lost,
                // only slow; queuing it again would only add to the wait.
                if state.queue.holds(Row::Event(e.seq)) {
                    continue;
                }
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
                    Ok(b) => {
                        // Recorded before the bundle goes: the ack must not
                        // delete a still that never left the box.
                        if !b.unsent.is_empty() {
                            outbox.keep_unsent_stills(e.seq, &b.unsent)?;
                        }
                        b.bytes
                    }
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
                let len = bytes.len();
                if !state.queue.has_room(len) {
                    break;
                }
                let sha256 = protocol::sha256_hex(&bytes);
                if link
                    .client
                    .try_publish(&topics.events, QoS::AtLeastOnce, false, bytes)
                    .is_err()
                {
                    break;
                }
                state.queue.pushed(Some(Row::Event(e.seq)), len, true);
                state.unreadable.remove(&(e.seq, false));
                outbox.mark_sent(e.seq, now, &sha256)?;
                m.events_published.fetch_add(1, Ordering::Relaxed);
            }
            Pending::Clip(c) => {
                let resume = state.queue.clip_progress(c.seq);
                if resume.is_none() && state.queue.holds(Row::Clip(c.seq)) {
                    continue;
                }
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
                        state.queue.set_clip_progress(c.seq, None);
                        outbox.clip_lost(
                            c.seq,
                            "the clip file is gone from the spool or unreadable",
                        )?;
                        continue;
                    }
                };
                let count = chunks.len();
                for (i, chunk) in chunks.into_iter().enumerate().skip(resume.unwrap_or(0)) {
                    let Ok(bytes) = chunk.encode() else {
                        state.queue.set_clip_progress(c.seq, None);
                        outbox.clip_lost(c.seq, "a chunk of the clip could not be encoded")?;
                        continue 'rows;
                    };
                    let len = bytes.len();
                    // Out of room: the clip resumes at this chunk next
                    // time, rather than from its first.
                    if !state.queue.has_room(len)
                        || link
                            .client
                            .try_publish(&topics.evidence, QoS::AtLeastOnce, false, bytes)
                            .is_err()
                    {
                        state.queue.set_clip_progress(c.seq, Some(i));
                        break 'rows;
                    }
                    state
                        .queue
                        .pushed(Some(Row::Clip(c.seq)), len, i + 1 == count);
                    m.chunks_published.fetch_add(1, Ordering::Relaxed);
                }
                state.queue.set_clip_progress(c.seq, None);
                state.unreadable.remove(&(c.seq, true));
                outbox.mark_clip_sent(c.seq, now)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_that_failed_waits_and_after_its_tries_goes_lenient() {
        let mut state = LoopState::new();
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
