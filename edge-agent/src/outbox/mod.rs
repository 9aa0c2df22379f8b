//! The durable outbox: every violation is written here before anything is
//! sent, and leaves only when the server has acknowledged it.
//!
//! Store: SQLite in WAL mode with `synchronous=FULL`, so a committed row
//! survives `kill -9` and power loss (the WAL is fsynced at every commit).
//! The evidence files themselves are already durable in the spool (written,
//! fsynced and renamed by [`crate::evidence`]); a row holds the signed event
//! exactly as signed, and points at its spool directory. Sending reads the
//! files back, so the bytes on the wire are the bytes that were hashed.
//!
//! Life of a row: `queued` → `sent` (published, waiting for the server's ack)
//! → `acked` (the server stored it: stored or duplicate) or `rejected` (the
//! server refused it; kept for inspection, never resent). A clip travels
//! after the event's ack: `pending` → `sent` → `acked`. When everything is
//! acked the row is `done` and its spool directory deleted. A `sent` row with
//! no ack within the ack timeout, or any `sent` row after a reconnect, is
//! sent again: the server deduplicates on the event id.
//!
//! Limits (bytes and age) and eviction live in [`limits`].

pub mod acks;
mod due;
pub mod limits;

use protocol::{EvidenceRole, SignedEvent};
use rusqlite::{Connection, OptionalExtension, params};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

pub use acks::{AckError, AckPolicy, AckPolicyError, CheckedAck};
pub use limits::{Eviction, OutboxLimits, REFUSED_KEPT_MS};

/// An outbox failure.
#[derive(Debug, Error)]
pub enum OutboxError {
    /// The database failed.
    #[error("outbox database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// An evidence file is missing or unreadable.
    #[error("outbox: evidence {path}: {source}")]
    Evidence {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The event cannot be queued as it is.
    #[error("outbox: event {event_id}: {reason}")]
    Invalid {
        /// The event.
        event_id: Uuid,
        /// Why.
        reason: String,
    },
}

/// What to send next: an event bundle or a clip.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// The event with its stills (first send or resend).
    Event(PendingEvent),
    /// The clip of an acknowledged event.
    Clip(PendingClip),
}

/// An event to send as a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// Outbox sequence number.
    pub seq: i64,
    /// The event.
    pub event_id: Uuid,
    /// Its camera.
    pub camera_id: String,
    /// The signed envelope JSON.
    pub event_json: Vec<u8>,
    /// The spool directory.
    pub dir: PathBuf,
    /// Files to attach (empty when the stills were evicted).
    pub stills: Vec<String>,
    /// When it was queued (Unix ms).
    pub created_at: i64,
}

/// A clip to send as chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingClip {
    /// Outbox sequence number.
    pub seq: i64,
    /// The event.
    pub event_id: Uuid,
    /// The clip file.
    pub path: PathBuf,
    /// Its manifest name.
    pub name: String,
}

/// What an ack did to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// The event (or its clip) is delivered; `done` when nothing is left.
    Delivered {
        /// Whether the row is finished.
        done: bool,
    },
    /// The server refused it for its content: kept, never resent.
    Rejected,
    /// The server refused it for a state of its own or of this device
    /// (not enrolled, revoked, an internal error): held, sent again from
    /// `retry_at` (Unix ms).
    Held {
        /// When it is due again.
        retry_at: i64,
    },
    /// The server refused the clip of an event it had stored: the clip is
    /// given up, the event stays delivered.
    ClipRejected,
    /// A rejection of bytes this device did not send (its `payload_sha256`
    /// is not the hash of what was sent, or is missing): someone published
    /// an altered copy under this event's id. Ignored; the event is sent
    /// again as usual.
    ForeignRejection,
    /// The ack is for something this outbox does not hold (already done, or
    /// another device's): ignored.
    Unknown,
}

/// Counts for the heartbeat and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Rows not yet done (waiting to be sent or acknowledged).
    pub depth: u64,
    /// Age of the oldest of them, seconds.
    pub oldest_age_s: Option<u64>,
    /// Evidence bytes the outbox holds on disk.
    pub bytes: u64,
    /// Rows the server rejected.
    pub rejected: u64,
    /// Evictions ever recorded.
    pub evictions: u64,
    /// Evictions recorded in the day before `now`.
    pub evictions_last_day: u64,
    /// Rows delivered.
    pub delivered: u64,
    /// Events with stills left out of their bundle to fit its limit: never
    /// sent, kept on disk ([`Outbox::unsent_stills_kept`]).
    pub stills_kept_unsent: u64,
}

/// How long [`Outbox::open`] keeps retrying a database another process
/// holds locked.
const OPEN_PATIENCE: Duration = Duration::from_secs(15);

/// Whether `e` is SQLite's "busy"/"locked" (another connection holds it).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The outbox.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    limits: OutboxLimits,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

impl Outbox {
    /// Opens (creating if needed) the outbox database at `path`.
    pub fn open(path: &Path, limits: OutboxLimits) -> Result<Self, OutboxError> {
        let db = |source| OutboxError::Db {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| OutboxError::Evidence {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // Another process may be opening the same file (the agent starting
        // while a technician runs `edge-agent outbox`). Some of SQLite's lock
        // upgrades here (switching to WAL, a read turning into a write)
        // fail at once with "database is locked" instead of waiting out the
        // busy timeout, so the whole set-up is retried for a while.
        let started = std::time::Instant::now();
        let conn = loop {
            match Self::set_up(path) {
                Ok(conn) => break conn,
                Err(e) if is_busy(&e) && started.elapsed() < OPEN_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(db(e)),
            }
        };
        let mut outbox = Self {
            conn,
            path: path.to_path_buf(),
            limits,
        };
        // Files recorded as gone before a crash kept them.
        outbox.delete_pending()?;
        Ok(outbox)
    }

    /// Opens the connection, sets WAL and FULL sync, and brings the schema
    /// up to date.
    fn set_up(path: &Path) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL + FULL: every commit is fsynced before it returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(include_str!("schema.sql"))?;
        // Outboxes made before `sent_sha256` existed get the column.
        let has_hash: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'sent_sha256'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if !has_hash {
            conn.execute("ALTER TABLE events ADD COLUMN sent_sha256 TEXT", [])?;
        }
        due::migrate(&conn)?;
        Ok(conn)
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
        |source| OutboxError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &OutboxLimits {
        &self.limits
    }

    /// Queues a signed event whose evidence files are in `dir`. Idempotent:
    /// queuing the same event id again changes nothing and returns `false`.
    /// Files with the `clip` role are sent as chunks after the event's ack;
    /// the others travel in the bundle. Every file of the manifest must be in
    /// `dir` with its manifest size.
    pub fn enqueue(
        &mut self,
        event: &SignedEvent,
        camera_id: &str,
        dir: &Path,
    ) -> Result<bool, OutboxError> {
        let event_id = event.unverified_event_id().ok_or(OutboxError::Invalid {
            event_id: Uuid::nil(),
            reason: "the envelope has no event_id".into(),
        })?;
        let invalid = |reason: String| OutboxError::Invalid { event_id, reason };
        let manifest: Vec<protocol::EvidenceItem> = event
            .payload()
            .get("evidence")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| invalid(format!("evidence manifest: {e}")))?
            .unwrap_or_default();
        let mut stills = Vec::new();
        let (mut stills_bytes, mut clip) = (0u64, None);
        for item in &manifest {
            let path = dir.join(&item.name);
            let size = fs::metadata(&path)
                .map_err(|source| OutboxError::Evidence {
                    path: path.clone(),
                    source,
                })?
                .len();
            if size != item.size_bytes {
                return Err(invalid(format!(
                    "{} is {size} bytes, the manifest says {}",
                    item.name, item.size_bytes
                )));
            }
            if item.role == EvidenceRole::Clip {
                if clip.is_some() {
                    return Err(invalid("more than one clip".into()));
                }
                clip = Some((item.name.clone(), size));
            } else {
                stills.push(item.name.clone());
                stills_bytes += size;
            }
        }
        let json = event.to_json().map_err(|e| invalid(e.to_string()))?;
        let stills_json = serde_json::to_string(&stills).map_err(|e| invalid(e.to_string()))?;
        let (clip_name, clip_bytes) = clip.map_or((None, 0), |(n, b)| (Some(n), b));
        let changed = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO events (event_id, camera_id, created_at, event_json, dir,
                     stills, stills_bytes, clip_name, clip_bytes, clip_state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    event_id.to_string(),
                    camera_id,
                    now_ms(),
                    json,
                    dir.to_string_lossy(),
                    stills_json,
                    stills_bytes as i64,
                    clip_name,
                    clip_bytes as i64,
                    if clip_name.is_some() {
                        "pending"
                    } else {
                        "none"
                    },
                ],
            )
            .map_err(self.db())?;
        Ok(changed == 1)
    }

    /// Records that an event bundle was published, and the SHA-256 of the
    /// bytes sent (a rejection is believed only of those bytes).
    pub fn mark_sent(&mut self, seq: i64, now: i64, sha256: &str) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "UPDATE events SET state = 'sent', sent_at = ?2, sent_sha256 = ?3,
                     attempts = attempts + 1
                 WHERE seq = ?1 AND state IN ('queued', 'sent')",
                params![seq, now, sha256],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Records that a clip's chunks were published.
    pub fn mark_clip_sent(&mut self, seq: i64, now: i64) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "UPDATE events SET clip_state = 'sent', clip_sent_at = ?2
                 WHERE seq = ?1 AND clip_state IN ('pending', 'sent')",
                params![seq, now],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Gives up on an event that cannot be sent at all (its stored form is
    /// damaged): it is marked rejected locally, kept, and logged.
    pub fn give_up(&mut self, seq: i64, reason: &str) -> Result<(), OutboxError> {
        tracing::error!(seq, reason, "outbox: giving up on an event");
        self.conn
            .execute(
                "UPDATE events SET state = 'rejected', reject_code = 'local', reject_message = ?2,
                     done_at = ?3 WHERE seq = ?1",
                params![seq, reason, now_ms()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Records that a clip vanished from the spool before it could be sent
    /// (an eviction, with its reason), so the event can finish.
    pub fn clip_lost(&mut self, seq: i64, reason: &str) -> Result<(), OutboxError> {
        let (event_id, bytes): (String, i64) = self
            .conn
            .query_row(
                "SELECT event_id, clip_bytes FROM events WHERE seq = ?1",
                params![seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.db())?;
        let now = now_ms();
        tracing::error!(%event_id, reason, "outbox: clip lost");
        // The row and its record together (the file is already gone).
        self.evict(
            now,
            limits::Evicted {
                event_id,
                what: "clip",
                bytes: bytes as u64,
                reason: reason.to_owned(),
            },
            "UPDATE events SET clip_state = 'evicted',
                 done_at = CASE WHEN state = 'acked' THEN ?2 ELSE done_at END WHERE seq = ?1",
            &[&seq, &now],
            &[],
        )?;
        Ok(())
    }

    /// After a reconnect: everything sent and not acknowledged is due again
    /// (the broker may have lost it; the server deduplicates).
    pub fn requeue_sent(&mut self) -> Result<usize, OutboxError> {
        let a = self
            .conn
            .execute(
                "UPDATE events SET state = 'queued' WHERE state = 'sent' AND done_at IS NULL",
                [],
            )
            .map_err(self.db())?;
        let b = self
            .conn
            .execute(
                "UPDATE events SET clip_state = 'pending' WHERE clip_state = 'sent' AND done_at IS NULL",
                [],
            )
            .map_err(self.db())?;
        Ok(a + b)
    }

    /// How many events and clips are published, not yet acknowledged, and
    /// still within `ack_timeout` of their send. A send older than that is
    /// due again ([`Outbox::due`]) and must not hold a place in the window:
    /// otherwise a window's worth of sends lost on the way (a server replica
    /// killed with them, a broker session parked for a dead subscriber)
    /// would stop every resend until the connection is re-established.
    /// A send stamped after `now` (the clock stepped back) is not in
    /// flight either (`due::MAX_HOLD_MS`).
    pub fn in_flight(&self, now: i64, ack_timeout: Duration) -> Result<u64, OutboxError> {
        let stale = now.saturating_sub(i64::try_from(ack_timeout.as_millis()).unwrap_or(i64::MAX));
        self.conn
            .query_row(
                "SELECT COUNT(*) FILTER (WHERE state = 'sent' AND sent_at >= ?1 AND sent_at <= ?2)
                      + COUNT(*) FILTER (WHERE clip_state = 'sent'
                                         AND clip_sent_at >= ?1 AND clip_sent_at <= ?2)
                 FROM events WHERE done_at IS NULL",
                params![stale, now],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.db())
    }

    /// Counts for the heartbeat and metrics.
    pub fn stats(&self, now: i64) -> Result<OutboxStats, OutboxError> {
        self.conn
            .query_row(
                "SELECT
                   COUNT(*) FILTER (WHERE done_at IS NULL),
                   MIN(created_at) FILTER (WHERE done_at IS NULL),
                   COALESCE(SUM(CASE WHEN done_at IS NULL AND stills_evicted = 0 THEN stills_bytes ELSE 0 END), 0)
                   + COALESCE(SUM(CASE WHEN done_at IS NULL AND clip_state IN ('pending', 'sent') THEN clip_bytes ELSE 0 END), 0),
                   COUNT(*) FILTER (WHERE state = 'rejected'),
                   COUNT(*) FILTER (WHERE done_at IS NOT NULL AND state = 'acked'),
                   (SELECT COUNT(*) FROM evictions),
                   (SELECT COUNT(*) FROM evictions WHERE at > ?1 - 86400000),
                   COUNT(*) FILTER (WHERE unsent_stills IS NOT NULL AND unsent_stills != '[]')
                 FROM events",
                params![now],
                |r| {
                    let oldest: Option<i64> = r.get(1)?;
                    Ok(OutboxStats {
                        depth: r.get::<_, i64>(0)? as u64,
                        oldest_age_s: oldest.map(|t| ((now - t).max(0) / 1000) as u64),
                        bytes: r.get::<_, i64>(2)? as u64,
                        rejected: r.get::<_, i64>(3)? as u64,
                        delivered: r.get::<_, i64>(4)? as u64,
                        evictions: r.get::<_, i64>(5)? as u64,
                        evictions_last_day: r.get::<_, i64>(6)? as u64,
                        stills_kept_unsent: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .map_err(self.db())
    }

    /// The `n` most recently queued events: id, camera, state, whether done.
    pub fn recent(&self, n: usize) -> Result<Vec<(Uuid, String, String, bool)>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT event_id, camera_id, state, done_at IS NOT NULL FROM events
                 ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![n as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, camera, state, done) = row.map_err(self.db())?;
            out.push((parse_id(&id)?, camera, state, done));
        }
        Ok(out)
    }

    /// Records that the stills `names` of row `seq` were left out of its
    /// bundle to fit the bundle limit (`delivery::bundle`): the server
    /// records them missing, and this box keeps them on disk after the
    /// event's ack ([`Outbox::finish_dir`]) for a person to fetch. Called
    /// before the bundle is published; logged.
    pub fn keep_unsent_stills(&mut self, seq: i64, names: &[String]) -> Result<(), OutboxError> {
        let (event_id, text): (String, Option<String>) = self
            .conn
            .query_row(
                "SELECT event_id, unsent_stills FROM events WHERE seq = ?1",
                params![seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.db())?;
        let mut all: Vec<String> = text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for n in names {
            if !all.contains(n) {
                all.push(n.clone());
            }
        }
        let json = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "UPDATE events SET unsent_stills = ?2 WHERE seq = ?1",
                params![seq, json],
            )
            .map_err(self.db())?;
        tracing::error!(%event_id, stills = ?all, "stills over the bundle limit are not sent; kept on the box after delivery");
        Ok(())
    }

    /// Every event with stills that were never sent (left out of its
    /// bundle) and its directory, where they are kept: for a person to
    /// fetch.
    pub fn unsent_stills_kept(&self) -> Result<Vec<(Uuid, PathBuf, Vec<String>)>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT event_id, dir, unsent_stills FROM events
                 WHERE unsent_stills IS NOT NULL AND unsent_stills != '[]' ORDER BY seq",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, dir, names) = row.map_err(self.db())?;
            let names = serde_json::from_str(&names).unwrap_or_default();
            out.push((parse_id(&id)?, PathBuf::from(dir), names));
        }
        Ok(out)
    }

    /// The stills of event `id` left out of its bundle (never sent).
    pub(super) fn unsent_of(&self, id: &str) -> Result<Vec<String>, OutboxError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT unsent_stills FROM events WHERE event_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())?
            .flatten();
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Deletes a finished event's spool directory, except the stills that
    /// never left the box ([`Outbox::keep_unsent_stills`]): those stay,
    /// with the signed event and the spool's manifest beside them (so the
    /// start-up sweep and recovery know the directory), and are logged.
    pub(super) fn finish_dir(&self, id: &str, dir: &str) -> Result<(), OutboxError> {
        let unsent = self.unsent_of(id)?;
        if unsent.is_empty() {
            remove_dir(dir);
            return Ok(());
        }
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir, error = %e, "could not read a delivered event's evidence");
                return Ok(());
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if unsent.contains(&name)
                || name == crate::recover::SIGNED_FILE
                || name == "manifest.json"
            {
                continue;
            }
            let path = entry.path();
            let gone = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(e) = gone
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not delete delivered evidence");
            }
        }
        tracing::error!(event_id = id, dir, stills = ?unsent, "event delivered without stills over the bundle limit: they are kept on the box for a person to fetch");
        Ok(())
    }

    /// The state of one event (`queued`, `sent`, `acked`, `rejected`) and
    /// whether it is done; `None` if unknown.
    pub fn state_of(&self, event_id: Uuid) -> Result<Option<(String, bool)>, OutboxError> {
        self.conn
            .query_row(
                "SELECT state, done_at IS NOT NULL FROM events WHERE event_id = ?1",
                params![event_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db())
    }
}

fn parse_id(text: &str) -> Result<Uuid, OutboxError> {
    Uuid::parse_str(text).map_err(|e| OutboxError::Invalid {
        event_id: Uuid::nil(),
        reason: format!("stored event id {text:?}: {e}"),
    })
}

/// Deletes a delivered event's spool directory. A failure only leaves files
/// behind (logged); it never undoes the delivery.
fn remove_dir(dir: &str) {
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir, error = %e, "could not delete a delivered event's evidence");
    }
}
