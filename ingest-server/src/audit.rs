//! The audit log: every action a person (or the server on their behalf)
//! takes on a case, an account or personal data, append-only and
//! hash-chained so that an edited, inserted or removed entry is detected by
//! [`verify`] (`ingest-server audit verify`).
//!
//! Each entry's hash is SHA-256 over the JSON array `[seq, at, actor, role,
//! action, subject, detail, prev_hash]`; `prev_hash` is the hash of the entry
//! before it (64 zeros for the first). `audit_head` keeps the last sequence
//! number and hash, so removing entries from the end is detected too. The
//! database refuses UPDATE and DELETE on the table (triggers); the chain is
//! what catches someone who bypasses that. Against someone who rewrites all
//! of it, [`anchor`]: the head signed with the server key and kept outside
//! the database (`ingest-server audit anchor`, or on a schedule into
//! `[audit] anchor_dir`: [`anchoring`]; checked by `audit verify
//! --anchor`).
//!
//! Appending starts with [`begin`], which opens a transaction and locks the
//! head row before anything else is read: on SQLite that is the write lock,
//! on PostgreSQL a row lock, so appends are serialised across server
//! replicas and the case change and its audit entry commit together.

pub mod anchor;
pub mod anchoring;

pub use anchoring::AuditConfig;

use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};

use crate::db::{Db, DbError};
use crate::workflow::Role;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// Who (user id, `system`, or the username tried at a failed sign-in).
    pub actor: String,
    /// Their role (`system`, `anonymous` for failed sign-ins).
    pub role: String,
    /// What (`case.accept`, `login.failed`, `owner.view`, ...).
    pub action: String,
    /// On what (`case:<event id>`, `user:<id>`, ...).
    pub subject: String,
    /// JSON with the particulars (reason, old and new plate, ...).
    pub detail: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Who did it, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Who {
    /// Actor id.
    pub actor: String,
    /// Role name.
    pub role: String,
}

impl Who {
    /// A person or the system in a role.
    pub fn new(actor: impl Into<String>, role: Role) -> Self {
        Who {
            actor: actor.into(),
            role: role.as_str().into(),
        }
    }

    /// Someone not signed in (a failed sign-in).
    pub fn anonymous(claimed: &str) -> Self {
        Who {
            actor: claimed.chars().take(64).collect(),
            role: "anonymous".into(),
        }
    }
}

/// Opens a transaction and takes the audit lock (see the module doc).
pub async fn begin(db: &Db) -> Result<Transaction<'static, Any>, DbError> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The hash of an entry's fields.
pub fn entry_hash(
    seq: i64,
    at: i64,
    who: &Who,
    action: &str,
    subject: &str,
    detail: &str,
    prev: &str,
) -> String {
    let canonical =
        serde_json::json!([seq, at, who.actor, who.role, action, subject, detail, prev]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Appends one entry inside a transaction opened by [`begin`].
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    at: i64,
    who: &Who,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<AuditEntry, DbError> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut **tx)
        .await?;
    let prev_seq: i64 = head.try_get(0)?;
    let prev_hash: String = head.try_get(1)?;
    let seq = prev_seq + 1;
    let detail = detail.to_string();
    let hash = entry_hash(seq, at, who, action, subject, &detail, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, role, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seq)
    .bind(at)
    .bind(&who.actor)
    .bind(&who.role)
    .bind(action)
    .bind(subject)
    .bind(&detail)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(AuditEntry {
        seq,
        at,
        actor: who.actor.clone(),
        role: who.role.clone(),
        action: action.into(),
        subject: subject.into(),
        detail,
        prev_hash,
        hash,
    })
}

/// Appends one entry in its own transaction.
pub async fn record(
    db: &Db,
    at: i64,
    who: &Who,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<AuditEntry, DbError> {
    let mut tx = begin(db).await?;
    let e = append(&mut tx, at, who, action, subject, detail).await?;
    tx.commit().await?;
    Ok(e)
}

/// Appends one entry stamped with the current time: what every
/// "this change was just made" caller (admin API, console, CLI) wants.
pub async fn record_now(
    db: &Db,
    who: &Who,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), DbError> {
    record(db, crate::db::now_ms(), who, action, subject, &detail).await?;
    Ok(())
}

/// The columns every query of this module reads, in [`entry`] order.
macro_rules! audit_columns {
    () => {
        "seq, at, actor, role, action, subject, detail, prev_hash, hash"
    };
}

fn entry(r: &sqlx::any::AnyRow) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        role: r.try_get(3)?,
        action: r.try_get(4)?,
        subject: r.try_get(5)?,
        detail: r.try_get(6)?,
        prev_hash: r.try_get(7)?,
        hash: r.try_get(8)?,
    })
}

/// The entries about one subject, oldest first (a case's trail).
pub async fn for_subject(db: &Db, subject: &str) -> Result<Vec<AuditEntry>, DbError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit_log WHERE subject = $1 ORDER BY seq"
    ))
    .bind(subject)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(entry).collect()
}

/// The latest entries, newest first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit_log ORDER BY seq DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(entry).collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The chain is whole: this many entries, ending in this hash.
    Intact {
        /// Entries.
        entries: i64,
        /// Head hash.
        head: String,
    },
    /// The first problem, at which sequence number.
    Broken {
        /// Where.
        seq: i64,
        /// What.
        problem: String,
    },
}

/// Walks the whole chain and checks every link and the head. The walk
/// stops at the head read when it began: entries appended while it runs
/// (any sign-in or owner view) belong to a later check, not to a "broken"
/// one. An entry beyond a head read *after* it was seen is not such an
/// append (an append writes its entry and the head in one transaction):
/// it was inserted behind the chain's back, and is reported.
pub async fn verify(db: &Db) -> Result<Verification, DbError> {
    Ok(verify_last(db, i64::MAX).await?.verification)
}

/// What [`verify_last`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentCheck {
    /// The first entry checked (1: the whole chain).
    pub from: i64,
    /// The result; `Intact::entries` is the chain's length.
    pub verification: Verification,
}

/// [`verify`] of the last `n` entries only: each links to the one before
/// it (the entry before the first is read for its hash), each hash
/// matches its contents, and the head matches the last. What the
/// console's audit page shows on every load: the whole walk reads and
/// hashes every entry ever written, and a city's log grows by tens of
/// thousands a day. An edit further back is found by the whole walk
/// (`ingest-server audit verify`, and every evidence package), not here;
/// a rewrite that recomputed every hash after it up to the head only by a
/// signed [`anchor`] kept outside the database.
pub async fn verify_last(db: &Db, n: i64) -> Result<RecentCheck, DbError> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(db.pool())
        .await?;
    let head_seq: i64 = head.try_get(0)?;
    let head_hash: String = head.try_get(1)?;
    let from = head_seq.saturating_sub(n.max(1)).saturating_add(1).max(1);
    let check = |verification| RecentCheck { from, verification };
    let prev = if from == 1 {
        GENESIS.to_string()
    } else {
        let before: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
                .bind(from - 1)
                .fetch_optional(db.pool())
                .await?;
        match before {
            Some(h) => h,
            None => {
                return Ok(check(Verification::Broken {
                    seq: from - 1,
                    problem: format!("entry {} is missing", from - 1),
                }));
            }
        }
    };
    Ok(check(walk(db, from, prev, head_seq, &head_hash).await?))
}

/// Checks the entries from `expect_seq` to `head_seq`, the first linking
/// to `prev`, and that the head (`head_seq`, `head_hash`) ends them.
async fn walk(
    db: &Db,
    mut expect_seq: i64,
    mut prev: String,
    head_seq: i64,
    head_hash: &str,
) -> Result<Verification, DbError> {
    // Pages of 5,000 so a long log does not sit in memory at once.
    loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT 5000"
        ))
        .bind(expect_seq)
        .bind(head_seq)
        .fetch_all(db.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let e = entry(r)?;
            let broken = |problem: String| Verification::Broken {
                seq: e.seq,
                problem,
            };
            if e.seq != expect_seq {
                return Ok(Verification::Broken {
                    seq: expect_seq,
                    problem: format!("entry {expect_seq} is missing (next is {})", e.seq),
                });
            }
            if e.prev_hash != prev {
                return Ok(broken("does not follow the entry before it".into()));
            }
            let who = Who {
                actor: e.actor.clone(),
                role: e.role.clone(),
            };
            let h = entry_hash(e.seq, e.at, &who, &e.action, &e.subject, &e.detail, &prev);
            if h != e.hash {
                return Ok(broken("its contents do not match its hash (edited)".into()));
            }
            prev = e.hash;
            expect_seq += 1;
        }
    }
    let last = expect_seq - 1;
    let beyond: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_log WHERE seq > $1")
        .bind(head_seq)
        .fetch_one(db.pool())
        .await?;
    if let Some(stray) = beyond {
        let head_now: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(db.pool())
            .await?;
        if stray > head_now {
            return Ok(Verification::Broken {
                seq: stray,
                problem: format!(
                    "entry {stray} lies beyond the head ({head_now}): inserted outside the chain"
                ),
            });
        }
    }
    if last != head_seq || prev != head_hash {
        return Ok(Verification::Broken {
            seq: last + 1,
            problem: format!(
                "the log ends at entry {last} but the head says {head_seq}: entries were removed"
            ),
        });
    }
    Ok(Verification::Intact {
        entries: last,
        head: head_hash.to_string(),
    })
}
