//! The outbox's bounds: bytes of evidence held, number of events, and age.
//!
//! A box cut off from the network for weeks must not fill its disk, but it
//! must never lose evidence silently either. So: above `alarm_fraction` of a
//! limit the heartbeat carries `outbox_nearly_full` (and a warning is
//! logged) well before anything goes; past the limit the oldest undelivered
//! material is evicted in the order that costs the least evidence — clips
//! first, then stills, then whole events — and every eviction is written to
//! the `evictions` table and the log, and counted in the heartbeat (every
//! eviction in `outbox.evictions`, the alarm `evidence_evicted` for a day
//! after one). An event whose stills were evicted is still delivered
//! (metadata only), so the server knows a violation happened and that its
//! evidence was lost. Age alone never drops an event's metadata: an event
//! undelivered past `max_age` loses its clip and stills, and is sent
//! without them; only the count limit drops whole events.
//!
//! An eviction's row change and its `evictions` record are committed in
//! one transaction, with the files it frees listed in `pending_deletes`;
//! only then are the files deleted. A failure before the commit deletes
//! nothing and changes nothing; a crash after it leaves files the record
//! says are gone, deleted at the next start or pass ([`Outbox::delete_pending`]).

use super::{Outbox, OutboxError, now_ms, remove_dir};
use protocol::Alarm;
use rusqlite::{OptionalExtension, ToSql, params};
use std::path::Path;
use std::time::Duration;

/// How much the outbox may hold.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxLimits {
    /// Evidence bytes held for undelivered events.
    pub max_bytes: u64,
    /// Undelivered events.
    pub max_events: u64,
    /// Undelivered events older than this lose their evidence (clip and
    /// stills); the event itself is still sent.
    pub max_age: Duration,
    /// Fraction of a limit at which the alarm is raised (e.g. 0.8).
    pub alarm_fraction: f64,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024 * 1024,
            max_events: 200_000,
            max_age: Duration::from_secs(30 * 86_400),
            alarm_fraction: 0.8,
        }
    }
}

/// One recorded eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// The event.
    pub event_id: String,
    /// `clip`, `stills` or `event`.
    pub what: &'static str,
    /// Bytes freed.
    pub bytes: u64,
    /// Why.
    pub reason: String,
}

/// How long the files of an event the server refused for good stay on the
/// box after the refusal: long enough for a technician to look; the server
/// keeps the refused bundle in its quarantine. Kept for ever, they sat
/// outside every limit — a camera missing from the server's registry,
/// refused a thousand times a day, filled the disk in days.
pub const REFUSED_KEPT_MS: i64 = 24 * 3_600_000;

impl Outbox {
    /// The alarm the current fill level calls for, if any.
    pub fn alarm(&self) -> Result<Option<Alarm>, OutboxError> {
        let s = self.stats(now_ms())?;
        let l = &self.limits;
        let fill = (s.bytes as f64 / l.max_bytes.max(1) as f64)
            .max(s.depth as f64 / l.max_events.max(1) as f64);
        Ok(if fill >= 1.0 {
            Some(Alarm::OutboxFull)
        } else if fill >= l.alarm_fraction {
            Some(Alarm::OutboxNearlyFull)
        } else {
            None
        })
    }

    /// Evicts what the limits require, oldest first, and records it (with
    /// a clock known to be right).
    pub fn enforce_limits(&mut self, now: i64) -> Result<Vec<Eviction>, OutboxError> {
        self.enforce_limits_trusting(now, true)
    }

    /// [`Outbox::enforce_limits`], evicting by age only while the clock is
    /// trusted (synchronised). An event's age counts from the first pass
    /// that saw it with a trusted clock (`aged_from`, set here), not from
    /// the time written when it was made: a box that booted with a dead
    /// clock battery, or whose clock had drifted weeks behind, and then
    /// stepped its clock would otherwise evict every violation it held as
    /// "too old" the moment it synchronised. Passes run every few seconds,
    /// so on a box whose clock is right the two differ by that much. Rows
    /// an older build queued, before `aged_from` existed, were given their
    /// `created_at` as `aged_from` when the column was added (unless that
    /// reads before 2020: see `due::migrate`), so an upgrade does not start
    /// the age of evidence already held again. The size limits bound the
    /// outbox whatever the clock says.
    pub fn enforce_limits_trusting(
        &mut self,
        now: i64,
        clock_trusted: bool,
    ) -> Result<Vec<Eviction>, OutboxError> {
        let mut out = Vec::new();
        // What an earlier pass recorded as gone but did not get to delete.
        self.delete_pending()?;
        self.clear_refused(now)?;
        // Age: the evidence of old events; their metadata is still sent.
        let cutoff = if clock_trusted {
            self.conn
                .execute(
                    "UPDATE events SET aged_from = ?1 WHERE aged_from IS NULL AND done_at IS NULL",
                    params![now],
                )
                .map_err(self.db())?;
            now - self.limits.max_age.as_millis() as i64
        } else {
            i64::MIN
        };
        for old in self.aged(cutoff)? {
            let reason = format!(
                "undelivered for more than {:.1} days",
                self.limits.max_age.as_secs_f64() / 86_400.0
            );
            let dir = Path::new(&old.dir);
            if old.clip_held {
                let mut gone: Vec<Gone> = old
                    .clip
                    .iter()
                    .map(|name| ("file", path_text(&dir.join(name))))
                    .collect();
                // A delivered event that waited only for its clip is done.
                if old.acked {
                    gone.push(("finish", old.dir.clone()));
                }
                out.push(self.evict(
                    now,
                    Evicted {
                        event_id: old.event_id.clone(),
                        what: "clip",
                        bytes: old.clip_bytes as u64,
                        reason: reason.clone(),
                    },
                    "UPDATE events SET clip_state = 'evicted',
                         done_at = CASE WHEN state = 'acked' THEN ?2 ELSE done_at END
                     WHERE seq = ?1",
                    &[&old.seq, &now],
                    &gone,
                )?);
            }
            if old.stills_held {
                let gone = still_files(dir, &old.stills);
                out.push(self.evict(
                    now,
                    Evicted {
                        event_id: old.event_id,
                        what: "stills",
                        bytes: old.stills_bytes as u64,
                        reason,
                    },
                    "UPDATE events SET stills_evicted = 1, unsent_stills = NULL WHERE seq = ?1",
                    &[&old.seq],
                    &gone,
                )?);
            }
        }
        // Stills kept unsent after their event's ack (a bundle over the
        // limit left them out; the server recorded them missing): kept for
        // a technician for `max_age` after the ack, then deleted and
        // recorded like any eviction, so they neither fill the disk nor
        // hold the alarm on for good.
        for (seq, event_id, dir, names) in self.kept_unsent_before(cutoff)? {
            out.push(self.evict(
                now,
                Evicted {
                    event_id,
                    what: "stills",
                    bytes: 0,
                    reason: format!(
                        "{} still(s) kept unsent for more than {:.1} days after the ack",
                        names.len(),
                        self.limits.max_age.as_secs_f64() / 86_400.0
                    ),
                },
                "UPDATE events SET unsent_stills = NULL WHERE seq = ?1",
                &[&seq],
                &[("dir", dir)],
            )?);
        }
        // Bytes: clips, then stills.
        loop {
            let stats = self.stats(now)?;
            if stats.bytes <= self.limits.max_bytes {
                break;
            }
            let reason = format!(
                "outbox holds {} bytes, limit {}",
                stats.bytes, self.limits.max_bytes
            );
            let clip: Option<(i64, String, String, String, i64, String)> = self
                .conn
                .query_row(
                    "SELECT seq, event_id, dir, clip_name, clip_bytes, state FROM events
                     WHERE done_at IS NULL AND clip_state IN ('pending', 'sent')
                     ORDER BY seq LIMIT 1",
                    [],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )
                .optional()
                .map_err(self.db())?;
            if let Some((seq, event_id, dir, name, bytes, state)) = clip {
                let done = (state == "acked").then_some(now);
                let mut gone = vec![("file", path_text(&Path::new(&dir).join(&name)))];
                if done.is_some() {
                    gone.push(("finish", dir));
                }
                out.push(self.evict(
                    now,
                    Evicted {
                        event_id,
                        what: "clip",
                        bytes: bytes as u64,
                        reason,
                    },
                    "UPDATE events SET clip_state = 'evicted', done_at = ?2 WHERE seq = ?1",
                    &[&seq, &done],
                    &gone,
                )?);
                continue;
            }
            let stills: Option<(i64, String, String, String, i64)> = self
                .conn
                .query_row(
                    "SELECT seq, event_id, dir, stills, stills_bytes FROM events
                     WHERE done_at IS NULL AND stills_evicted = 0 AND stills_bytes > 0
                     ORDER BY seq LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(self.db())?;
            let Some((seq, event_id, dir, names, bytes)) = stills else {
                break;
            };
            let gone = still_files(Path::new(&dir), &names);
            out.push(self.evict(
                now,
                Evicted {
                    event_id,
                    what: "stills",
                    bytes: bytes as u64,
                    reason,
                },
                "UPDATE events SET stills_evicted = 1, unsent_stills = NULL WHERE seq = ?1",
                &[&seq],
                &gone,
            )?);
        }
        // Count: whole events (metadata).
        let depth = self.stats(now)?.depth;
        if depth > self.limits.max_events {
            let excess = depth - self.limits.max_events;
            let victims: Vec<(i64, String, String, i64)> = {
                let mut stmt = self
                    .conn
                    .prepare(
                        "SELECT seq, event_id, dir,
                            (CASE WHEN stills_evicted = 0 THEN stills_bytes ELSE 0 END)
                            + (CASE WHEN clip_state IN ('pending', 'sent') THEN clip_bytes ELSE 0 END)
                         FROM events WHERE done_at IS NULL ORDER BY seq LIMIT ?1",
                    )
                    .map_err(self.db())?;
                let rows = stmt
                    .query_map(params![excess as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(self.db())?;
                rows.collect::<Result<_, _>>().map_err(self.db())?
            };
            for (seq, event_id, dir, bytes) in victims {
                let reason = format!(
                    "outbox holds {depth} undelivered events, limit {}",
                    self.limits.max_events
                );
                out.push(self.evict_event(seq, event_id, &dir, bytes as u64, reason, now)?);
            }
        }
        for e in &out {
            tracing::warn!(event_id = %e.event_id, what = e.what, bytes = e.bytes, reason = %e.reason, "outbox eviction");
        }
        Ok(out)
    }

    /// Deletes the files of events the server refused for good more than
    /// [`REFUSED_KEPT_MS`] ago (see there); not of rows set aside here as
    /// unreadable (`reject_code = 'local'`: their directory is not to be
    /// trusted). Returns how many.
    fn clear_refused(&mut self, now: i64) -> Result<usize, OutboxError> {
        let rows: Vec<(i64, String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT seq, event_id, dir FROM events WHERE state = 'rejected'
                     AND reject_code != 'local' AND done_at IS NOT NULL AND done_at < ?1
                     AND stills_evicted = 0",
                )
                .map_err(self.db())?;
            let rows = stmt
                .query_map(params![now - REFUSED_KEPT_MS], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        for (seq, event_id, dir) in &rows {
            let tx = self.conn.unchecked_transaction().map_err(self.db())?;
            tx.execute(
                "UPDATE events SET stills_evicted = 1, unsent_stills = NULL,
                     clip_state = CASE WHEN clip_state IN ('pending', 'sent')
                                  THEN 'evicted' ELSE clip_state END
                 WHERE seq = ?1",
                params![seq],
            )
            .map_err(self.db())?;
            queue_delete(&tx, event_id, "dir", dir).map_err(self.db())?;
            tx.commit().map_err(self.db())?;
            tracing::info!(%event_id, "files of an event the server refused deleted");
        }
        self.delete_pending()?;
        Ok(rows.len())
    }

    /// Delivered events done before `cutoff` that keep stills never sent.
    fn kept_unsent_before(&self, cutoff: i64) -> Result<Vec<KeptUnsent>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, event_id, dir, unsent_stills FROM events
                 WHERE done_at IS NOT NULL AND done_at < ?1
                   AND unsent_stills IS NOT NULL AND unsent_stills != '[]'",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![cutoff], |r| {
                let names: Option<String> = r.get(3)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    names
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default(),
                ))
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Undelivered events aged from before `cutoff` that still hold
    /// evidence, oldest first.
    fn aged(&self, cutoff: i64) -> Result<Vec<Aged>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, event_id, dir, state = 'acked', stills, stills_bytes,
                    state != 'acked' AND stills_evicted = 0 AND stills_bytes > 0,
                    clip_name, clip_bytes, clip_state IN ('pending', 'sent')
                 FROM events WHERE done_at IS NULL AND aged_from < ?1
                   AND ((state != 'acked' AND stills_evicted = 0 AND stills_bytes > 0)
                        OR clip_state IN ('pending', 'sent'))
                 ORDER BY seq",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![cutoff], |r| {
                Ok(Aged {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    dir: r.get(2)?,
                    acked: r.get(3)?,
                    stills: r.get(4)?,
                    stills_bytes: r.get(5)?,
                    stills_held: r.get(6)?,
                    clip: r.get(7)?,
                    clip_bytes: r.get(8)?,
                    clip_held: r.get(9)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn evict_event(
        &mut self,
        seq: i64,
        event_id: String,
        dir: &str,
        bytes: u64,
        reason: String,
        now: i64,
    ) -> Result<Eviction, OutboxError> {
        self.evict(
            now,
            Evicted {
                event_id,
                what: "event",
                bytes,
                reason,
            },
            "UPDATE events SET state = 'evicted', done_at = ?2, unsent_stills = NULL WHERE seq = ?1",
            &[&seq, &now],
            &[("dir", dir.to_owned())],
        )
    }

    /// Records an eviction: the row change `update` (with `args`), the
    /// `evictions` row and the files it frees (`gone`, in
    /// `pending_deletes`), in one transaction; then deletes the files. An
    /// error before the commit leaves the row, the record and the files as
    /// they were.
    pub(super) fn evict(
        &mut self,
        now: i64,
        e: Evicted,
        update: &str,
        args: &[&dyn ToSql],
        gone: &[Gone],
    ) -> Result<Eviction, OutboxError> {
        let tx = self.conn.unchecked_transaction().map_err(self.db())?;
        tx.execute(update, args).map_err(self.db())?;
        tx.execute(
            "INSERT INTO evictions (at, event_id, what, bytes, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now, e.event_id, e.what, e.bytes as i64, e.reason],
        )
        .map_err(self.db())?;
        for (kind, path) in gone {
            queue_delete(&tx, &e.event_id, kind, path).map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        self.delete_pending()?;
        Ok(Eviction {
            event_id: e.event_id,
            what: e.what,
            bytes: e.bytes,
            reason: e.reason,
        })
    }

    /// Deletes the files that committed evictions (and deliveries) recorded
    /// as gone and that are still listed in `pending_deletes` (the deletion
    /// after the commit, or one a crash interrupted), and forgets each once
    /// done. Run at open and at every limits pass.
    pub(crate) fn delete_pending(&mut self) -> Result<usize, OutboxError> {
        let rows: Vec<(i64, String, String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, event_id, path, kind FROM pending_deletes ORDER BY id")
                .map_err(self.db())?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        for (id, event_id, path, kind) in &rows {
            match kind.as_str() {
                "file" => remove_file(Path::new(path)),
                "finish" => self.finish_dir(event_id, path)?,
                "dir" => remove_dir(path),
                // Never a recursive delete on a kind this build does not
                // know (a damaged row, a newer build's): kept for a person.
                other => {
                    tracing::error!(%event_id, path, kind = other, "unknown pending delete left alone");
                }
            }
            self.conn
                .execute("DELETE FROM pending_deletes WHERE id = ?1", params![id])
                .map_err(self.db())?;
        }
        Ok(rows.len())
    }

    /// Every recorded eviction, oldest first.
    pub fn evictions(&self) -> Result<Vec<Eviction>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare("SELECT event_id, what, bytes, reason FROM evictions ORDER BY id")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                let what: String = r.get(1)?;
                Ok(Eviction {
                    event_id: r.get(0)?,
                    what: match what.as_str() {
                        "clip" => "clip",
                        "stills" => "stills",
                        _ => "event",
                    },
                    bytes: r.get::<_, i64>(2)? as u64,
                    reason: r.get(3)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }
}

/// A delivered event's stills kept unsent: `(seq, event_id, dir, names)`.
type KeptUnsent = (i64, String, String, Vec<String>);

/// What an eviction frees, for its record.
pub(super) struct Evicted {
    pub event_id: String,
    pub what: &'static str,
    pub bytes: u64,
    pub reason: String,
}

/// A path to delete after an eviction commits, and how: `file`, `dir`, or
/// `finish` (a finished event's directory, but the stills it never sent:
/// [`Outbox::finish_dir`]).
pub(super) type Gone = (&'static str, String);

/// Lists `path` (of `kind`, see [`Gone`]) for deletion in the transaction
/// `tx`.
fn queue_delete(
    tx: &rusqlite::Transaction<'_>,
    event_id: &str,
    kind: &str,
    path: &str,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO pending_deletes (event_id, path, kind) VALUES (?1, ?2, ?3)",
        params![event_id, path, kind],
    )
    .map(|_| ())
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The still files (names as JSON) of an event in `dir`, to delete.
fn still_files(dir: &Path, names: &str) -> Vec<Gone> {
    serde_json::from_str::<Vec<String>>(names)
        .unwrap_or_default()
        .iter()
        .map(|n| ("file", path_text(&dir.join(n))))
        .collect()
}

/// An undelivered event past the age limit that still holds evidence.
struct Aged {
    seq: i64,
    event_id: String,
    dir: String,
    /// The event is delivered; only its clip is outstanding.
    acked: bool,
    /// Still file names (JSON), their bytes, and whether they are held.
    stills: String,
    stills_bytes: i64,
    stills_held: bool,
    /// The clip's name, bytes, and whether it is held (not sent yet or not
    /// acknowledged).
    clip: Option<String>,
    clip_bytes: i64,
    clip_held: bool,
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not delete evicted evidence");
    }
}
