//! What is due to be sent, and the rows that can never be.
//!
//! One damaged row (an `event_id` that is not a UUID, a still list that is
//! not JSON, a column of the wrong type) must not stop the query that picks
//! every other row: before, it failed the whole [`Outbox::due`], delivery
//! ended, and the agent restarted into the same row for ever while the
//! cameras stood still. Such a row is now *set aside*: marked rejected
//! locally (`reject_code = 'local'`, the reason in `reject_message`, kept
//! for inspection), logged, and counted ([`Outbox::set_aside_count`]).
//!
//! A row the server refused because of the device's or the server's state
//! (not the event's content) waits until its `retry_at` (see
//! [`super::acks`]); until then it is not due.

use super::{Outbox, OutboxError, Pending, PendingClip, PendingEvent};
use rusqlite::{Connection, Row, params};
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// Adds the columns of held rows to outboxes made before them:
/// `retry_at` (Unix ms before which the row is not due), `holds` (how
/// many times in a row the server refused it for a state of its own) and
/// `aged_from` (when its age starts to count, see `limits.rs`). Under the
/// write lock, so two processes opening one new outbox do not both add a
/// column (the second would fail: "duplicate column").
///
/// When `aged_from` is added, the rows already held are aged from their
/// `created_at` ([`aged_from_created`]), in the same transaction: left
/// NULL, the first pass with a trusted clock would start every one's age
/// again, and evidence already weeks old on an upgraded box would be kept
/// a further full `max_age` — past the retention the limit promises.
pub(super) fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let added = add_columns(conn);
    match added {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The earliest `created_at` (Unix ms, 2020-01-01 UTC) taken as a row's
/// age when `aged_from` is added: a box whose clock was never set (a dead
/// clock battery, no network yet) stamps its rows in 1970 or thereabouts,
/// and aged from such a stamp they would lose their evidence at the first
/// trusted pass; they are aged from that pass instead, as rows made since.
/// A stamp after it and not after the migration's own clock is taken as
/// true: old builds had no better record of the clock they wrote it with
/// (a stamp from the future is aged from the first trusted pass).
/// The longest a refusal holds a row (`acks::hold_for`), ms. Times are
/// the wall clock's, kept across restarts in the rows; a clock stepped
/// back by hours (an RTC found wrong, then corrected by chrony) would
/// leave a row `sent` or held "in the future" and stall it for as long.
/// So a send stamped after now counts as timed out, and a hold ending
/// more than this after now as over: a backward step costs a resend, not
/// a stalled outbox.
pub(crate) const MAX_HOLD_MS: i64 = 3_600_000;

const AGED_FROM_CREATED_SINCE_MS: i64 = 1_577_836_800_000;

/// Sets `aged_from` to `created_at` on the rows held when the column was
/// added (see [`migrate`]) whose `created_at` a set clock wrote
/// ([`AGED_FROM_CREATED_SINCE_MS`]).
fn aged_from_created(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute(
        "UPDATE events SET aged_from = created_at
         WHERE aged_from IS NULL AND created_at >= ?1 AND created_at <= ?2",
        params![AGED_FROM_CREATED_SINCE_MS, super::now_ms()],
    )?;
    Ok(())
}

fn add_columns(conn: &Connection) -> Result<(), rusqlite::Error> {
    for (name, ddl) in [
        ("retry_at", "ALTER TABLE events ADD COLUMN retry_at INTEGER"),
        (
            "holds",
            "ALTER TABLE events ADD COLUMN holds INTEGER NOT NULL DEFAULT 0",
        ),
        // When the event's age starts to count (see `limits.rs`).
        (
            "aged_from",
            "ALTER TABLE events ADD COLUMN aged_from INTEGER",
        ),
        // Stills left out of the bundle to fit its limit (JSON list):
        // never sent, kept on disk after the ack (see `acks.rs`).
        (
            "unsent_stills",
            "ALTER TABLE events ADD COLUMN unsent_stills TEXT",
        ),
    ] {
        let has: i64 = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?;
        if has == 0 {
            conn.execute(ddl, [])?;
            if name == "aged_from" {
                aged_from_created(conn)?;
            }
        }
    }
    Ok(())
}

/// An event row as stored, before its text is parsed.
type RawEvent = (String, String, Vec<u8>, String, String, bool, i64);

fn raw_event(r: &Row<'_>) -> Result<RawEvent, rusqlite::Error> {
    Ok((
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn raw_clip(r: &Row<'_>) -> Result<(String, String, String), rusqlite::Error> {
    Ok((r.get(1)?, r.get(2)?, r.get(3)?))
}

impl Outbox {
    /// Up to `max` things to send now, in send order: live events (queued
    /// at or after `live_since`, the time the current connection came up)
    /// first, then the backlog oldest first, then clips of acknowledged
    /// events. An event or clip sent more than `ack_timeout` ago without an
    /// ack is due again; one held after a refusal is due from its
    /// `retry_at`. [`PendingEvent::created_at`] tells the caller which
    /// events are backlog (to pace them). Damaged rows are set aside, not
    /// returned (this module's doc), so the result may be shorter than
    /// `max` while more are due.
    pub fn due(
        &self,
        now: i64,
        ack_timeout: Duration,
        live_since: i64,
        max: usize,
    ) -> Result<Vec<Pending>, OutboxError> {
        let stale = now.saturating_sub(i64::try_from(ack_timeout.as_millis()).unwrap_or(i64::MAX));
        let mut out = self.due_events(now, stale, "created_at >= ?3", live_since, max)?;
        if out.len() < max {
            out.extend(self.due_events(
                now,
                stale,
                "created_at < ?3",
                live_since,
                max - out.len(),
            )?);
        }
        if out.len() < max {
            out.extend(self.due_clips(now, stale, max - out.len())?);
        }
        Ok(out)
    }

    fn due_clips(&self, now: i64, stale: i64, max: usize) -> Result<Vec<Pending>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, event_id, dir, clip_name FROM events
                 WHERE done_at IS NULL AND state = 'acked'
                   AND (clip_state = 'pending'
                        OR (clip_state = 'sent' AND (clip_sent_at < ?1 OR clip_sent_at > ?3)))
                   AND (retry_at IS NULL OR retry_at <= ?3 OR retry_at > ?3 + ?4)
                 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![stale, max as i64, now, MAX_HOLD_MS], |r| {
                Ok((r.get::<_, i64>(0)?, raw_clip(r)))
            })
            .map_err(self.db())?;
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for row in rows {
            let (seq, raw) = row.map_err(self.db())?;
            let parsed = raw
                .map_err(|e| format!("stored row: {e}"))
                .and_then(|(id, dir, name)| {
                    Ok(PendingClip {
                        seq,
                        event_id: parse(&id)?,
                        path: Path::new(&dir).join(&name),
                        name,
                    })
                });
            match parsed {
                Ok(c) => out.push(Pending::Clip(c)),
                Err(reason) => bad.push((seq, reason)),
            }
        }
        drop(stmt);
        for (seq, reason) in bad {
            self.set_aside_clip(seq, &reason)?;
        }
        Ok(out)
    }

    fn due_events(
        &self,
        now: i64,
        stale: i64,
        when: &str,
        live_since: i64,
        max: usize,
    ) -> Result<Vec<Pending>, OutboxError> {
        let sql = format!(
            "SELECT seq, event_id, camera_id, event_json, dir, stills, stills_evicted, created_at
             FROM events
             WHERE done_at IS NULL AND {when}
               AND (state = 'queued' OR (state = 'sent' AND (sent_at < ?1 OR sent_at > ?4)))
               AND (retry_at IS NULL OR retry_at <= ?4 OR retry_at > ?4 + ?5)
             ORDER BY seq LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.db())?;
        let rows = stmt
            .query_map(
                params![stale, max as i64, live_since, now, MAX_HOLD_MS],
                |r| Ok((r.get::<_, i64>(0)?, raw_event(r))),
            )
            .map_err(self.db())?;
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for row in rows {
            let (seq, raw) = row.map_err(self.db())?;
            match raw
                .map_err(|e| format!("stored row: {e}"))
                .and_then(|raw| event(seq, raw))
            {
                Ok(e) => out.push(Pending::Event(e)),
                Err(reason) => bad.push((seq, reason)),
            }
        }
        drop(stmt);
        for (seq, reason) in bad {
            self.set_aside(seq, &reason)?;
        }
        Ok(out)
    }

    /// Sets aside an event row that can never be sent as stored: rejected
    /// locally with `reason`, kept for inspection, logged.
    pub(super) fn set_aside(&self, seq: i64, reason: &str) -> Result<(), OutboxError> {
        tracing::error!(seq, reason, "outbox: a damaged row is set aside");
        self.conn
            .execute(
                "UPDATE events SET state = 'rejected', reject_code = 'local', reject_message = ?2,
                     done_at = ?3 WHERE seq = ?1",
                params![seq, reason, super::now_ms()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// As [`Outbox::set_aside`] for the clip of an acknowledged event: the
    /// event stays acked (delivered), only its clip is given up.
    fn set_aside_clip(&self, seq: i64, reason: &str) -> Result<(), OutboxError> {
        tracing::error!(seq, reason, "outbox: a damaged clip row is set aside");
        self.conn
            .execute(
                "UPDATE events SET clip_state = 'rejected', reject_code = 'local',
                     reject_message = ?2, done_at = ?3 WHERE seq = ?1",
                params![seq, reason, super::now_ms()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Rows (events or clips) set aside on this box since `since` (Unix
    /// ms): damaged in storage or impossible to encode. For the status
    /// command and the heartbeat.
    pub fn set_aside_count(&self, since: i64) -> Result<u64, OutboxError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE reject_code = 'local' AND done_at >= ?1",
                params![since],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.db())
    }

    /// Undelivered rows waiting out a refusal the server made for a state
    /// of its own or of this device (not enrolled, revoked, server error)
    /// at `now`.
    pub fn held_count(&self, now: i64) -> Result<u64, OutboxError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM events WHERE done_at IS NULL
                   AND retry_at > ?1 AND retry_at <= ?1 + ?2",
                params![now, MAX_HOLD_MS],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.db())
    }
}

impl Outbox {
    /// The (last) message of row `seq`'s event bundle, or of its clip,
    /// has just left the MQTT client: its ack timeout starts now, not when
    /// it was queued. A row put back to `queued` by a reconnect meanwhile
    /// is `sent` again (this copy went out on the new connection); one
    /// held after a refusal is left waiting.
    pub fn sent_now(&self, seq: i64, clip: bool, now: i64) -> Result<(), OutboxError> {
        let sql = if clip {
            "UPDATE events SET clip_state = 'sent', clip_sent_at = ?2
             WHERE seq = ?1 AND done_at IS NULL AND clip_state IN ('pending', 'sent')
               AND (retry_at IS NULL OR retry_at <= ?2 OR retry_at > ?2 + ?3)"
        } else {
            "UPDATE events SET state = 'sent', sent_at = ?2
             WHERE seq = ?1 AND done_at IS NULL AND state IN ('queued', 'sent')
               AND (retry_at IS NULL OR retry_at <= ?2 OR retry_at > ?2 + ?3)"
        };
        self.conn
            .execute(sql, params![seq, now, MAX_HOLD_MS])
            .map_err(self.db())?;
        Ok(())
    }
}

fn parse(id: &str) -> Result<Uuid, String> {
    Uuid::parse_str(id).map_err(|e| format!("stored event id {id:?}: {e}"))
}

fn event(seq: i64, raw: RawEvent) -> Result<PendingEvent, String> {
    let (id, camera_id, event_json, dir, stills, evicted, created_at) = raw;
    let event_id = parse(&id)?;
    let stills: Vec<String> = if evicted {
        Vec::new()
    } else {
        serde_json::from_str(&stills).map_err(|e| format!("stored still list: {e}"))?
    };
    Ok(PendingEvent {
        seq,
        event_id,
        camera_id,
        event_json,
        dir: PathBuf::from(dir),
        stills,
        created_at,
    })
}
