//! Retention: deleting evidence, and the copies of owners the registry
//! gateway gave, once no case needs them any more.
//!
//! Evidence is personal data (a car, its plate, sometimes faces), and
//! Decree 13/2023 wants it deleted when it is no longer needed; the law
//! also wants it kept while a fine can still be imposed or contested.
//! [`run`] does what `[retention]` (`config.rs`) says, in these steps, each
//! safe to stop and repeat:
//!
//! 0. **Close** the cases nobody decided within the limitation period
//!    (`new`, `in_review` or `accepted` past
//!    [`crate::workflow::limitation_ends_at`]): rejected by the system as
//!    [`LIMITATION_EXPIRED`], with their transition and audit entry
//!    (`expired.rs`); step 1 then purges them after `rejected_days` like
//!    any rejection. Decided fines are never closed here.
//! 1. **Mark** the cases that are due: rejected more than `rejected_days`
//!    ago, or paid or closed more than `closed_days` ago. Each gets
//!    `evidence_purged_at` and an `evidence.purge` entry in the audit log,
//!    in one transaction. The case row, its transitions, payments and
//!    notices stay: the trail must still add up after the pictures are
//!    gone. A marked case cannot be reopened (`workflow.rs`). Its link to
//!    the registered owner (`events.owner_id`) is dropped, unless its
//!    notice was addressed to that owner (`notices.owner_id`): then the
//!    history of who was told needs it, and it stays (an id only; the
//!    owner's data may go, step 5). A misread or rejected case, which told
//!    no one, keeps no trace of whose plate it was read as. What the trail
//!    keeps loses its personal parts ([`strip_personal`]): a contest's
//!    text, a payment's client IP and raw gateway answers, the police's
//!    words in a follow-up notice.
//! 2. **Delete the bytes** of every file that only marked cases name
//!    (their stills and clips, and their contests' photos; the same bytes
//!    can back two cases, or a quarantined message: then they stay),
//!    through [`EvidenceStore::remove`], which rewrites packs without them.
//!    Only then is the file's row set to `stored = 0`, so a stop between
//!    the two is finished by the next run.
//! 3. **Quarantine**: the raw bytes of messages quarantined more than
//!    `quarantine_days` ago, then their rows; packs a rewrite replaced
//!    but a stop kept it from deleting (`superseded_packs`); and packs whose
//!    ingest batch never committed (their `pending/` marker is more than an
//!    hour old, the index does not name them and nothing kept names a file
//!    in them: [`EvidenceStore::sweep_pending_packs`]), a copy of stills
//!    the device's resend packed again.
//! 4. **Clips never completed**: the staged chunks of a clip whose last
//!    chunk came more than `quarantine_days` ago (the device lost the clip,
//!    was revoked, or its case was purged): video of people that no case
//!    will ever hold. Then their `clip_chunks` rows, with a
//!    `clip.stale_purge` audit entry.
//! 5. **Owner copies**: the owners and vehicles copied from the registry
//!    gateway (`copied_at`, migration 0019; `registry/http.rs` copies every
//!    registration it finds, when the case is stored, before any review)
//!    that no kept case needs: a vehicle copy goes when no case whose
//!    evidence is kept names its owner and is about its plate, an owner
//!    copy when no such case names it (and no vehicle row does), each
//!    copied more than [`COPY_GRACE_MS`] ago (a lookup copies before it
//!    records the owner on its case). One `registry.copy_purge` audit
//!    entry counts them. The CSV-imported registry (`copied_at` empty) is
//!    the registry itself and is never deleted.
//!
//! 6. **Sessions** expired: citizens' (`citizen::delete_expired_sessions`,
//!    each holds an ID number and a name; the push subscriptions each
//!    registered go with it) and the console's
//!    (`accounts::delete_expired_sessions`).
//!
//! The server runs it at start and every `check_hours`
//! (`app.rs`); `ingest-server evidence purge [--dry-run]` runs it by hand.

pub mod config;
mod copies;
mod expired;

use std::collections::HashSet;

use serde::Serialize;
use sqlx::Row;
use thiserror::Error;

use crate::audit::{self, Who};
use crate::db::{Db, DbError};
use crate::evidence::{EvidenceStore, EvidenceStoreError, RemoveReport};
use crate::workflow::Role;

pub use self::config::RetentionConfig;
pub use self::copies::COPY_GRACE_MS;
pub use self::expired::LIMITATION_EXPIRED;

const DAY_MS: i64 = 86_400_000;
/// Rows handled per statement batch.
const BATCH: usize = 500;

/// Retention failures (the run stops; what it finished stays done).
#[derive(Debug, Error)]
pub enum RetentionError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The evidence store failed.
    #[error(transparent)]
    Evidence(#[from] EvidenceStoreError),
}

impl From<sqlx::Error> for RetentionError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Sqlx(e))
    }
}

/// A case whose evidence is due for deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueCase {
    /// The case (event id).
    pub event_id: String,
    /// Its state (`rejected`, `paid`, `closed`).
    pub state: String,
    /// When it entered that state (Unix ms).
    pub since: i64,
}

/// What one [`run`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PurgeReport {
    /// Cases past their limitation period that nobody decided, rejected
    /// as [`LIMITATION_EXPIRED`] (or, in a dry run, that would be).
    pub expired: usize,
    /// Cases marked (or, in a dry run, that would be).
    pub cases: usize,
    /// Files whose bytes were deleted (case evidence and quarantined
    /// messages).
    pub files_removed: usize,
    /// Packs rewritten without deleted files.
    pub packs_rewritten: usize,
    /// Packs deleted (emptied, or superseded by a stopped rewrite).
    pub packs_deleted: usize,
    /// Quarantine rows deleted.
    pub quarantine_rows: usize,
    /// Partial clips whose staged chunks were deleted.
    pub stale_clips: usize,
    /// Packs whose ingest batch never committed, deleted (also counted in
    /// `packs_deleted`).
    pub uncommitted_packs: usize,
    /// Owner rows copied from the registry gateway, deleted.
    pub owner_copies: usize,
    /// Vehicle rows copied from the registry gateway, deleted.
    pub vehicle_copies: usize,
    /// Expired citizen sessions deleted (each held an ID number and a
    /// name).
    pub citizen_sessions: usize,
    /// Expired console sessions deleted.
    pub console_sessions: usize,
    /// What could not be deleted, and why.
    pub problems: Vec<String>,
}

impl PurgeReport {
    fn absorb(&mut self, r: RemoveReport) {
        self.files_removed += r.removed;
        self.packs_rewritten += r.packs_rewritten;
        self.packs_deleted += r.packs_deleted;
        self.problems.extend(r.problems);
    }
}

/// The actor retention writes in the audit log.
fn retention_actor() -> Who {
    Who::new("retention", Role::System)
}

/// Cases due at `now` whose evidence is still kept, oldest first.
pub async fn due(
    db: &Db,
    cfg: &RetentionConfig,
    now: i64,
    limit: usize,
) -> Result<Vec<DueCase>, DbError> {
    let rejected_before = now - i64::from(cfg.rejected_days) * DAY_MS;
    let closed_before = now - i64::from(cfg.closed_days) * DAY_MS;
    let rows = sqlx::query(
        "SELECT event_id, state, state_changed_at FROM events \
         WHERE evidence_purged_at IS NULL AND ( \
           (state = 'rejected' AND state_changed_at < $1) \
           OR (state IN ('paid', 'closed') AND state_changed_at < $2)) \
         ORDER BY state_changed_at, event_id LIMIT $3",
    )
    .bind(rejected_before)
    .bind(closed_before)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DueCase {
                event_id: r.try_get(0)?,
                state: r.try_get(1)?,
                since: r.try_get(2)?,
            })
        })
        .collect()
}

/// Everything due at `now`: marks the cases, deletes the files, clears the
/// old quarantine and the registry copies no kept case needs. With
/// `dry_run`, only counts the cases due.
pub async fn run(
    db: &Db,
    evidence: &EvidenceStore,
    cfg: &RetentionConfig,
    now: i64,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    let mut report = PurgeReport::default();
    if dry_run {
        report.expired = expired::count_expired(db, now).await?;
        report.cases = due(db, cfg, now, usize::MAX >> 1).await?.len();
        return Ok(report);
    }
    report.expired = expired::close_expired(db, now).await?;
    loop {
        let cases = due(db, cfg, now, BATCH).await?;
        if cases.is_empty() {
            break;
        }
        mark(db, cfg, &cases, now).await?;
        report.cases += cases.len();
    }
    remove_case_files(db, evidence, &mut report).await?;
    remove_quarantine(db, evidence, cfg, now, &mut report).await?;
    report.stale_clips += remove_stale_clips(db, evidence, cfg, now).await?;
    report.packs_deleted += evidence.sweep_superseded_packs().await?;
    let pending = evidence.sweep_pending_packs(now).await?;
    report.uncommitted_packs += pending.packs_deleted;
    report.packs_deleted += pending.packs_deleted;
    report.problems.extend(pending.problems);
    let (owners, vehicles) = copies::remove_owner_copies(db, now).await?;
    report.owner_copies += owners;
    report.vehicle_copies += vehicles;
    let sessions = crate::citizen::delete_expired_sessions(db, now).await?;
    report.citizen_sessions += usize::try_from(sessions).unwrap_or(usize::MAX);
    let sessions = crate::accounts::delete_expired_sessions(db, now).await?;
    report.console_sessions += usize::try_from(sessions).unwrap_or(usize::MAX);
    Ok(report)
}

/// Step 1: marks `cases` purged, each with its audit entry.
async fn mark(
    db: &Db,
    cfg: &RetentionConfig,
    cases: &[DueCase],
    now: i64,
) -> Result<(), RetentionError> {
    let who = retention_actor();
    let mut tx = audit::begin(db).await?;
    for c in cases {
        let days = if c.state == "rejected" {
            cfg.rejected_days
        } else {
            cfg.closed_days
        };
        // Only if the case is still as `due` saw it: a supervisor may have
        // reopened it since, and another replica may have marked it. The
        // owner link goes unless the case's notice names that owner (see
        // the module documentation).
        let changed = sqlx::query(
            "UPDATE events SET evidence_purged_at = $1, owner_id = CASE WHEN EXISTS \
             (SELECT 1 FROM notices n WHERE n.event_id = events.event_id \
             AND n.owner_id = events.owner_id) THEN owner_id END \
             WHERE event_id = $2 AND evidence_purged_at IS NULL \
             AND state = $3 AND state_changed_at = $4",
        )
        .bind(now)
        .bind(&c.event_id)
        .bind(&c.state)
        .bind(c.since)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            continue;
        }
        strip_personal(&mut tx, &c.event_id).await?;
        let detail = serde_json::json!({
            "state": c.state, "since": c.since, "retention_days": days,
        });
        let subject = format!("case:{}", c.event_id);
        audit::append(&mut tx, now, &who, "evidence.purge", &subject, &detail).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Step 1, with the mark: what the case's trail keeps on purpose loses its
/// personal parts. The owner's words in a contest, the payer's IP address
/// and the gateway's raw notification and status answer (the amounts,
/// references, codes and states stay, for the accounts), the police's
/// words to the owner in a follow-up notice (the message, its kind and
/// time stay). Migration 0023 does the same to cases purged before.
async fn strip_personal(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event_id: &str,
) -> Result<(), RetentionError> {
    for sql in [
        "UPDATE contests SET reason = '' WHERE event_id = $1",
        "UPDATE payments SET client_ip = '', ipn_params = NULL, query_result = NULL \
         WHERE event_id = $1",
        "UPDATE notice_messages SET reason = '' WHERE event_id = $1",
    ] {
        sqlx::query(sql).bind(event_id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Step 2: deletes files of purged cases (their evidence, and the photos
/// of their contests) that nothing kept names, then records them gone.
async fn remove_case_files(
    db: &Db,
    evidence: &EvidenceStore,
    report: &mut PurgeReport,
) -> Result<(), RetentionError> {
    // Digests still needed or that could not be removed, skipped from now on.
    let mut skip: HashSet<String> = HashSet::new();
    loop {
        // Still present: flagged stored, or in the index (a redelivered
        // bundle of a purged case packs its stills again).
        let limit = BATCH + skip.len();
        let rows = sqlx::query(
            "SELECT d FROM ( \
               SELECT v.sha256 AS d FROM evidence v JOIN events e ON e.event_id = v.event_id \
               WHERE e.evidence_purged_at IS NOT NULL AND (v.stored = 1 \
                 OR EXISTS (SELECT 1 FROM evidence_index x WHERE x.sha256 = v.sha256)) \
               UNION \
               SELECT c.photo_sha256 AS d FROM contests c JOIN events e ON e.event_id = c.event_id \
               WHERE e.evidence_purged_at IS NOT NULL AND c.photo_sha256 IS NOT NULL \
             ) t ORDER BY d LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await?;
        let mut doomed = Vec::new();
        for r in &rows {
            let d: String = r.try_get(0)?;
            if skip.contains(&d) {
                continue;
            }
            if needed(db, &d).await? {
                skip.insert(d);
            } else {
                doomed.push(d);
            }
        }
        if doomed.is_empty() {
            if rows.len() < limit {
                return Ok(());
            }
            continue;
        }
        let r = evidence.remove(&doomed).await?;
        let kept: HashSet<String> = r.not_removed.iter().cloned().collect();
        let mut tx = db.begin_write().await?;
        for d in doomed.iter().filter(|d| !kept.contains(*d)) {
            sqlx::query(
                "UPDATE evidence SET stored = 0 WHERE sha256 = $1 AND event_id IN \
                 (SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL)",
            )
            .bind(d)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE contests SET photo_sha256 = NULL WHERE photo_sha256 = $1 AND event_id IN \
                 (SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL)",
            )
            .bind(d)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        skip.extend(kept);
        report.absorb(r);
    }
}

/// Deletes the bytes of `digest` unless anything names them: an evidence
/// row (of any case: a purged one's are retention's to delete), a contest
/// row, a quarantined message, or a pack's index (a still with the same
/// bytes). For a file stored for something that then failed to commit: a
/// refused contest's photo (`citizen/answers.rs`). Returns whether the
/// bytes went.
pub async fn remove_unreferenced(
    db: &Db,
    evidence: &EvidenceStore,
    digest: &str,
) -> Result<bool, RetentionError> {
    for sql in [
        "SELECT 1 FROM evidence WHERE sha256 = $1 LIMIT 1",
        "SELECT 1 FROM contests WHERE photo_sha256 = $1 LIMIT 1",
        "SELECT 1 FROM quarantine WHERE payload_sha256 = $1 LIMIT 1",
        "SELECT 1 FROM evidence_index WHERE sha256 = $1 LIMIT 1",
    ] {
        let found = sqlx::query(sql)
            .bind(digest)
            .fetch_optional(db.pool())
            .await?;
        if found.is_some() {
            return Ok(false);
        }
    }
    let r = evidence.remove(&[digest.to_string()]).await?;
    Ok(r.not_removed.is_empty() && r.problems.is_empty())
}

/// Whether anything kept still names `digest`: a case whose evidence is
/// kept (its files or a contest photo), or a quarantined message.
async fn needed(db: &Db, digest: &str) -> Result<bool, RetentionError> {
    Ok(in_kept_case(db, digest).await?
        || sqlx::query("SELECT 1 FROM quarantine WHERE payload_sha256 = $1 LIMIT 1")
            .bind(digest)
            .fetch_optional(db.pool())
            .await?
            .is_some())
}

/// Whether a case whose evidence is kept names `digest` (a file of it, or
/// the photo of a contest of it).
async fn in_kept_case(db: &Db, digest: &str) -> Result<bool, RetentionError> {
    for sql in [
        "SELECT 1 FROM evidence v JOIN events e ON e.event_id = v.event_id \
         WHERE v.sha256 = $1 AND e.evidence_purged_at IS NULL LIMIT 1",
        "SELECT 1 FROM contests c JOIN events e ON e.event_id = c.event_id \
         WHERE c.photo_sha256 = $1 AND e.evidence_purged_at IS NULL LIMIT 1",
    ] {
        let found = sqlx::query(sql)
            .bind(digest)
            .fetch_optional(db.pool())
            .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Step 3: raw bytes, then rows, of messages quarantined before the cutoff.
async fn remove_quarantine(
    db: &Db,
    evidence: &EvidenceStore,
    cfg: &RetentionConfig,
    now: i64,
    report: &mut PurgeReport,
) -> Result<(), RetentionError> {
    let cutoff = now - i64::from(cfg.quarantine_days) * DAY_MS;
    // Rows whose bytes could not be removed, left for the next run.
    let mut skip: HashSet<String> = HashSet::new();
    loop {
        let rows = sqlx::query(
            "SELECT id, payload_sha256 FROM quarantine WHERE received_at < $1 \
             ORDER BY received_at, id LIMIT $2",
        )
        .bind(cutoff)
        .bind(i64::try_from(BATCH + skip.len()).unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await?;
        let mut batch = Vec::new();
        for r in &rows {
            let (id, sha): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if !skip.contains(&id) {
                batch.push((id, sha));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        // Bytes a newer quarantine row or a kept case still names stay.
        let mut doomed = Vec::new();
        for sha in batch.iter().map(|(_, s)| s).collect::<HashSet<_>>() {
            let newer = sqlx::query(
                "SELECT 1 FROM quarantine WHERE payload_sha256 = $1 AND received_at >= $2 LIMIT 1",
            )
            .bind(sha)
            .bind(cutoff)
            .fetch_optional(db.pool())
            .await?;
            if newer.is_none() && !in_kept_case(db, sha).await? {
                doomed.push(sha.clone());
            }
        }
        let r = evidence.remove(&doomed).await?;
        let kept: HashSet<String> = r.not_removed.iter().cloned().collect();
        let (gone, stay): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|(_, sha)| !kept.contains(sha));
        skip.extend(stay.into_iter().map(|(id, _)| id));
        let mut tx = audit::begin(db).await?;
        for (id, _) in &gone {
            sqlx::query("DELETE FROM quarantine WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let detail = serde_json::json!({
            "rows": gone.len(), "files": r.removed, "quarantine_days": cfg.quarantine_days,
        });
        audit::append(
            &mut tx,
            now,
            &retention_actor(),
            "quarantine.purge",
            "quarantine",
            &detail,
        )
        .await?;
        tx.commit().await?;
        report.quarantine_rows += gone.len();
        report.absorb(r);
    }
}

/// Step 4: staged chunks, then rows, of clips whose last chunk came before
/// the cutoff. Returns how many clips.
async fn remove_stale_clips(
    db: &Db,
    evidence: &EvidenceStore,
    cfg: &RetentionConfig,
    now: i64,
) -> Result<usize, RetentionError> {
    let cutoff = now - i64::from(cfg.quarantine_days) * DAY_MS;
    let rows = sqlx::query(
        "SELECT event_id, name, MAX(count) FROM clip_chunks GROUP BY event_id, name \
         HAVING MAX(received_at) < $1",
    )
    .bind(cutoff)
    .fetch_all(db.pool())
    .await?;
    let mut gone = 0;
    for r in &rows {
        let (event_id, name, count): (String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let Ok(id) = uuid::Uuid::parse_str(&event_id) else {
            continue;
        };
        evidence
            .delete_chunks(id, &name, u32::try_from(count).unwrap_or(0))
            .await?;
        let mut tx = audit::begin(db).await?;
        sqlx::query("DELETE FROM clip_chunks WHERE event_id = $1 AND name = $2")
            .bind(&event_id)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            now,
            &retention_actor(),
            "clip.stale_purge",
            &format!("case:{event_id}"),
            &serde_json::json!({"item": name, "chunks": count, "quarantine_days": cfg.quarantine_days}),
        )
        .await?;
        tx.commit().await?;
        gone += 1;
    }
    Ok(gone)
}

/// Runs [`run`] now and then every `check_hours`, logging what it did.
pub fn spawn(db: Db, evidence: EvidenceStore, cfg: RetentionConfig) {
    let every = std::time::Duration::from_secs(u64::from(cfg.check_hours) * 3600);
    tokio::spawn(async move {
        loop {
            match run(&db, &evidence, &cfg, crate::db::now_ms(), false).await {
                Ok(r)
                    if r.cases
                        + r.files_removed
                        + r.quarantine_rows
                        + r.packs_deleted
                        + r.owner_copies
                        + r.vehicle_copies
                        + r.citizen_sessions
                        + r.console_sessions
                        > 0
                        || !r.problems.is_empty() =>
                {
                    tracing::info!(
                        cases = r.cases,
                        files = r.files_removed,
                        packs_rewritten = r.packs_rewritten,
                        packs_deleted = r.packs_deleted,
                        uncommitted_packs = r.uncommitted_packs,
                        quarantine_rows = r.quarantine_rows,
                        owner_copies = r.owner_copies,
                        vehicle_copies = r.vehicle_copies,
                        citizen_sessions = r.citizen_sessions,
                        console_sessions = r.console_sessions,
                        problems = r.problems.len(),
                        "retention: evidence no longer needed deleted"
                    );
                    for p in &r.problems {
                        tracing::error!(problem = %p, "retention: could not delete");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention run failed; retried next time"),
            }
            tokio::time::sleep(every).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case reopened between the selection and the marking keeps its
    /// evidence, and no purge is written in the audit log for it.
    #[tokio::test]
    async fn a_case_reopened_after_it_was_selected_is_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&Db::sqlite_url(&dir.path().join("db.sqlite")))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO devices (device_id, site, public_key, enrolled_at) \
             VALUES ('edge-1', 'site', 'key', 0)",
        )
        .execute(db.pool())
        .await
        .unwrap();
        for id in ["reopened", "still-rejected"] {
            sqlx::query(
                "INSERT INTO events (event_id, device_id, camera_id, site, event_time, \
                 event_time_ms, violation_type, vehicle_class, plate_readable, plate_colour, \
                 signed_json, source, received_at, fine_status, state, state_changed_at) \
                 VALUES ($1, 'edge-1', 'cam', 'site', '2026-01-01T00:00:00Z', 0, 'red_light', \
                 'car', 1, 'white', '{}', 'http', 0, 'priced', 'rejected', 1000)",
            )
            .bind(id)
            .execute(db.pool())
            .await
            .unwrap();
        }
        let cfg = RetentionConfig::default();
        let now = 1000 + 100 * DAY_MS;
        let due = due(&db, &cfg, now, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        // A supervisor reopens one in between.
        sqlx::query(
            "UPDATE events SET state = 'in_review', state_changed_at = $1 \
             WHERE event_id = 'reopened'",
        )
        .bind(now - 5)
        .execute(db.pool())
        .await
        .unwrap();
        mark(&db, &cfg, &due, now).await.unwrap();
        let marked: Vec<String> =
            sqlx::query("SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL")
                .fetch_all(db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        assert_eq!(marked, ["still-rejected"]);
        let log = audit::recent(&db, 10).await.unwrap();
        let purges: Vec<&str> = log
            .iter()
            .filter(|e| e.action == "evidence.purge")
            .map(|e| e.subject.as_str())
            .collect();
        assert_eq!(purges, ["case:still-rejected"]);
    }
}
