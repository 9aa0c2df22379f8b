//! Retention: deleting evidence once no case needs it any more.
//!
//! Evidence is personal data (a car, its plate, sometimes faces), and
//! Decree 13/2023 wants it deleted when it is no longer needed; the law
//! also wants it kept while a fine can still be imposed or contested.
//! [`run`] does what `[retention]` (`config.rs`) says, in three steps, each
//! safe to stop and repeat:
//!
//! 1. **Mark** the cases that are due: rejected more than `rejected_days`
//!    ago, or paid or closed more than `closed_days` ago. Each gets
//!    `evidence_purged_at` and an `evidence.purge` entry in the audit log,
//!    in one transaction. The case row, its transitions, payments and
//!    notices stay: the trail must still add up after the pictures are
//!    gone. A marked case cannot be reopened (`workflow.rs`).
//! 2. **Delete the bytes** of every file that only marked cases name (the
//!    same bytes can back two cases; then they stay until both are due),
//!    through [`EvidenceStore::remove`], which rewrites packs without them.
//!    Only then is the file's row set to `stored = 0`, so a stop between
//!    the two is finished by the next run.
//! 3. **Quarantine**: the raw bytes of messages quarantined more than
//!    `quarantine_days` ago, then their rows; and packs no index row names
//!    (left by a stop or a failed batch) once a day old.
//!
//! The server runs it at start and every `check_hours`
//! (`app.rs`); `ingest-server evidence purge [--dry-run]` runs it by hand.

pub mod config;

use std::collections::HashSet;

use serde::Serialize;
use sqlx::Row;
use thiserror::Error;

use crate::audit::{self, Who};
use crate::db::{Db, DbError};
use crate::evidence::{EvidenceStore, EvidenceStoreError, RemoveReport};
use crate::workflow::Role;

pub use self::config::RetentionConfig;

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
    /// Cases marked (or, in a dry run, that would be).
    pub cases: usize,
    /// Files whose bytes were deleted (case evidence and quarantined
    /// messages).
    pub files_removed: usize,
    /// Packs rewritten without deleted files.
    pub packs_rewritten: usize,
    /// Packs deleted (emptied, or orphans).
    pub packs_deleted: usize,
    /// Quarantine rows deleted.
    pub quarantine_rows: usize,
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
/// old quarantine. With `dry_run`, only counts the cases due.
pub async fn run(
    db: &Db,
    evidence: &EvidenceStore,
    cfg: &RetentionConfig,
    now: i64,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    let mut report = PurgeReport::default();
    if dry_run {
        report.cases = due(db, cfg, now, usize::MAX >> 1).await?.len();
        return Ok(report);
    }
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
    let day_ago = crate::db::now_ms() - DAY_MS;
    report.packs_deleted += evidence.sweep_orphan_packs(day_ago).await?;
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
        sqlx::query(
            "UPDATE events SET evidence_purged_at = $1 \
             WHERE event_id = $2 AND evidence_purged_at IS NULL",
        )
        .bind(now)
        .bind(&c.event_id)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "state": c.state, "since": c.since, "retention_days": days,
        });
        let subject = format!("case:{}", c.event_id);
        audit::append(&mut tx, now, &who, "evidence.purge", &subject, &detail).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Step 2: deletes files only purged cases name, then records them gone.
async fn remove_case_files(
    db: &Db,
    evidence: &EvidenceStore,
    report: &mut PurgeReport,
) -> Result<(), RetentionError> {
    let mut failed: HashSet<String> = HashSet::new();
    loop {
        let rows = sqlx::query(
            "SELECT DISTINCT v.sha256 FROM evidence v JOIN events e ON e.event_id = v.event_id \
             WHERE e.evidence_purged_at IS NOT NULL AND v.stored = 1 \
             AND NOT EXISTS (SELECT 1 FROM evidence w JOIN events f ON f.event_id = w.event_id \
                             WHERE w.sha256 = v.sha256 AND f.evidence_purged_at IS NULL) \
             ORDER BY v.sha256 LIMIT $1",
        )
        .bind(i64::try_from(BATCH + failed.len()).unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await?;
        let digests: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|d| !failed.contains(d))
            .collect();
        if digests.is_empty() {
            return Ok(());
        }
        let r = evidence.remove(&digests).await?;
        let kept: HashSet<String> = r.not_removed.iter().cloned().collect();
        let mut tx = db.pool().begin().await?;
        for d in digests.iter().filter(|d| !kept.contains(*d)) {
            sqlx::query(
                "UPDATE evidence SET stored = 0 WHERE sha256 = $1 AND event_id IN \
                 (SELECT event_id FROM events WHERE evidence_purged_at IS NOT NULL)",
            )
            .bind(d)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        failed.extend(kept);
        report.absorb(r);
    }
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
    let mut failed: HashSet<String> = HashSet::new();
    loop {
        let rows = sqlx::query(
            "SELECT id, payload_sha256 FROM quarantine WHERE received_at < $1 \
             ORDER BY received_at, id LIMIT $2",
        )
        .bind(cutoff)
        .bind(i64::try_from(BATCH + failed.len()).unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await?;
        let mut batch = Vec::new();
        for r in &rows {
            let (id, sha): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if !failed.contains(&sha) {
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
            let in_case = sqlx::query(
                "SELECT 1 FROM evidence v JOIN events e ON e.event_id = v.event_id \
                 WHERE v.sha256 = $1 AND e.evidence_purged_at IS NULL LIMIT 1",
            )
            .bind(sha)
            .fetch_optional(db.pool())
            .await?;
            let needed = newer.or(in_case);
            if needed.is_none() {
                doomed.push(sha.clone());
            }
        }
        let r = evidence.remove(&doomed).await?;
        let kept: HashSet<String> = r.not_removed.iter().cloned().collect();
        let gone: Vec<&String> = batch
            .iter()
            .filter(|(_, sha)| !kept.contains(sha))
            .map(|(id, _)| id)
            .collect();
        let mut tx = audit::begin(db).await?;
        for id in &gone {
            sqlx::query("DELETE FROM quarantine WHERE id = $1")
                .bind(*id)
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
        failed.extend(kept);
        report.absorb(r);
    }
}

/// Runs [`run`] now and then every `check_hours`, logging what it did.
pub fn spawn(db: Db, evidence: EvidenceStore, cfg: RetentionConfig) {
    let every = std::time::Duration::from_secs(u64::from(cfg.check_hours) * 3600);
    tokio::spawn(async move {
        loop {
            match run(&db, &evidence, &cfg, crate::db::now_ms(), false).await {
                Ok(r) if r.cases + r.files_removed + r.quarantine_rows + r.packs_deleted > 0 => {
                    tracing::info!(
                        cases = r.cases,
                        files = r.files_removed,
                        packs_rewritten = r.packs_rewritten,
                        packs_deleted = r.packs_deleted,
                        quarantine_rows = r.quarantine_rows,
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
