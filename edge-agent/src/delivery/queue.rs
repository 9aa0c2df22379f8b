//! What this loop has handed to the MQTT client and what has left it.
//!
//! `try_publish` only queues a message in rumqttc; the connection thread
//! writes it out later, and on a slow uplink a multi-megabyte bundle can
//! wait there longer than the ack timeout. Counting the ack timeout from
//! the queuing made the outbox believe such a bundle lost and queue it
//! again, and again, until the box ran out of memory. So every publish is
//! remembered here, in order, with its size and the outbox row it carries.
//! The link reports each publish the client writes out (rumqttc's
//! `Outgoing::Publish`, with the packet id it gave it; the client keeps the
//! order, and a resend after a reconnect reuses an id still awaiting its
//! PUBACK). Then:
//! - a row with a copy still in the client is not queued again
//!   ([`ClientQueue::holds`]);
//! - the ack timeout of a row restarts when its (last) message is written
//!   ([`ClientQueue::left`] returns those rows);
//! - the bytes queued are bounded ([`ClientQueue::has_room`]), not only the
//!   number of messages;
//! - a clip's chunks are queued as room allows and resumed where they
//!   stopped ([`ClientQueue::clip_progress`]) instead of restarting from
//!   chunk 0 on every pass, which refilled the queue with duplicates and
//!   never finished a clip once it was full.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Most bytes waiting in the client at once: two of the largest bundles,
/// so one can be written while the next waits.
pub const MAX_QUEUED_BYTES: usize = 2 * protocol::transfer::MAX_BUNDLE_BYTES;

/// If nothing leaves the client and nothing is acknowledged for this long
/// while something is queued, the bookkeeping is taken to have gone wrong
/// (a publish rumqttc dropped without a word) and is forgotten: the rows
/// are then resent as before, rather than held for ever. Far above the
/// send time of the largest bundle on a slow (256 kbit/s) uplink.
const STALL: Duration = Duration::from_secs(15 * 60);

/// The outbox row a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Row {
    /// An event bundle, by outbox seq.
    Event(i64),
    /// A clip chunk of the row with this seq.
    Clip(i64),
}

#[derive(Debug)]
struct Queued {
    row: Option<Row>,
    bytes: usize,
    /// The last message of its row (a bundle, a clip's last chunk).
    last: bool,
}

/// The publishes handed to the client that it has not written out yet.
#[derive(Debug)]
pub struct ClientQueue {
    /// Still in the client's request queue, in the order handed over.
    waiting: VecDeque<Queued>,
    /// Packet ids written and not yet acknowledged by the broker: after a
    /// reconnect rumqttc writes them again under the same id, which is
    /// not a publish leaving the queue.
    on_wire: HashSet<u16>,
    bytes: usize,
    last_progress: Instant,
    /// Next chunk to queue, by clip row, for clips only partly queued.
    clips: HashMap<i64, usize>,
}

impl Default for ClientQueue {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            on_wire: HashSet::new(),
            bytes: 0,
            last_progress: Instant::now(),
            clips: HashMap::new(),
        }
    }
}

impl ClientQueue {
    /// Records a publish the client accepted: `bytes` long, carrying
    /// `row` (`None`: a heartbeat), `last` when it completes its row.
    pub fn pushed(&mut self, row: Option<Row>, bytes: usize, last: bool) {
        if self.is_empty() {
            self.last_progress = Instant::now();
        }
        self.bytes += bytes;
        self.waiting.push_back(Queued { row, bytes, last });
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The client wrote a publish as packet `pkid`: the oldest waiting one
    /// (the client keeps the order), unless `pkid` is already on the wire
    /// (a resend after a reconnect). Returns its row if that was the row's
    /// last message: the row is sent now, its ack timeout starts.
    pub fn left(&mut self, pkid: u16) -> Option<Row> {
        self.last_progress = Instant::now();
        if !self.on_wire.insert(pkid) {
            return None;
        }
        let q = self.waiting.pop_front()?;
        self.bytes -= q.bytes;
        q.row.filter(|_| q.last)
    }

    /// The broker acknowledged packet `pkid`.
    pub fn acked(&mut self, pkid: u16) {
        self.on_wire.remove(&pkid);
    }

    /// Forgets everything if nothing has moved for [`STALL`] while
    /// something is queued (see there). Called only while connected: during
    /// an outage nothing can leave, and what the broker keeps in the
    /// session is written again when the link is back.
    pub fn check_stall(&mut self) {
        self.check_stall_at(Instant::now());
    }

    /// [`ClientQueue::check_stall`] at `now`.
    fn check_stall_at(&mut self, now: Instant) {
        if !self.is_empty() && now.saturating_duration_since(self.last_progress) >= STALL {
            tracing::warn!(
                waiting = self.waiting.len(),
                bytes = self.bytes,
                "nothing left the MQTT client for {} s; forgetting what it holds (it may be sent twice)",
                STALL.as_secs()
            );
            self.forget();
        }
    }

    /// The link is up again with its session: what waits is written from
    /// now on, so the stall is counted from now, not from before the
    /// outage (which would forget it all and queue every row again beside
    /// the copies rumqttc still holds).
    pub fn reconnected(&mut self) {
        self.reconnected_at(Instant::now());
    }

    /// [`ClientQueue::reconnected`] at `now`.
    fn reconnected_at(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// Everything queued is gone (the broker had no session, so rumqttc
    /// dropped it): nothing is waiting, partly queued clips start over.
    pub fn forget(&mut self) {
        self.waiting.clear();
        self.on_wire.clear();
        self.bytes = 0;
        self.clips.clear();
    }

    /// Bytes waiting in the client.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `row` has a message still waiting in the client.
    pub fn holds(&self, row: Row) -> bool {
        self.waiting.iter().any(|q| q.row == Some(row))
    }

    /// Whether a message of `bytes` may be queued now. One always may when
    /// nothing waits, so a bundle at the limit is never held back.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.is_empty() || self.bytes + bytes <= MAX_QUEUED_BYTES
    }

    /// Where the clip of row `seq` resumes: `Some(index)` when it was
    /// partly queued, `None` when it is to start from its first chunk.
    pub fn clip_progress(&self, seq: i64) -> Option<usize> {
        self.clips.get(&seq).copied()
    }

    /// The clip of row `seq` stopped before chunk `next` (the queue had
    /// no room); `None` when it is wholly queued or given up.
    pub fn set_clip_progress(&mut self, seq: i64, next: Option<usize>) {
        match next {
            Some(n) => {
                self.clips.insert(seq, n);
            }
            None => {
                self.clips.remove(&seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_held_until_their_last_message_leaves_and_bytes_are_bounded() {
        let mut q = ClientQueue::default();
        assert!(
            q.has_room(MAX_QUEUED_BYTES + 1),
            "an empty queue takes anything"
        );
        q.pushed(Some(Row::Event(1)), 10 << 20, true);
        q.pushed(Some(Row::Clip(2)), 1 << 20, false);
        q.pushed(Some(Row::Clip(2)), 1 << 20, true);
        assert!(q.holds(Row::Event(1)) && q.holds(Row::Clip(2)));
        assert!(!q.has_room(MAX_QUEUED_BYTES - (12 << 20) + 1));
        assert!(q.has_room(MAX_QUEUED_BYTES - (12 << 20)));
        assert_eq!(q.left(7), Some(Row::Event(1)));
        assert!(!q.holds(Row::Event(1)));
        assert_eq!(
            q.left(7),
            None,
            "a resend after a reconnect is not the next"
        );
        assert_eq!(q.left(8), None, "a clip's first chunk is not the clip");
        assert!(q.holds(Row::Clip(2)));
        q.acked(7);
        assert_eq!(q.left(9), Some(Row::Clip(2)));
        assert_eq!(q.bytes(), 0);
        q.pushed(Some(Row::Event(4)), 5, true);
        q.set_clip_progress(7, Some(3));
        q.forget();
        assert!(!q.holds(Row::Event(4)));
        assert_eq!(q.clip_progress(7), None);
        q.pushed(Some(Row::Event(5)), 5, true);
        assert_eq!(q.left(1), Some(Row::Event(5)));
    }

    #[test]
    fn an_outage_longer_than_the_stall_does_not_forget_what_waits() {
        let mut q = ClientQueue::default();
        q.pushed(Some(Row::Event(1)), 10, true);
        let lost = q.last_progress;
        // The link comes back after an outage twice as long as STALL: the
        // stall counts from the reconnection.
        let back = lost + 2 * STALL;
        q.reconnected_at(back);
        q.check_stall_at(back + STALL / 2);
        assert!(q.holds(Row::Event(1)), "held across the outage");
        // Nothing leaves for STALL while connected: forgotten.
        q.check_stall_at(back + STALL);
        assert!(!q.holds(Row::Event(1)));
    }
}
