//! Which notice channels the deployment has, when replicas differ (a
//! rolling update that adds a partner app, a replica configured without
//! e-mail): each replica says which channels it can send, and a channel is
//! active while any live replica has it. Nothing is last-writer-wins: a
//! replica that starts without a channel does not turn it off for the
//! others, and a replica only claims deliveries it can send
//! ([`claim_sendable`]), leaving the others for a replica that has their
//! channel — it never gives them up as "not configured".
//!
//! The rows live in `notice_channels` (no schema change), one per replica
//! and channel, named `{replica}|{channel}`, `updated_at` its heartbeat
//! ([`heartbeat`], at start and every [`HEARTBEAT_MS`] from the worker). A
//! channel is active ([`active_channels`]) when a row for it was refreshed
//! within [`STALE_MS`] of the newest heartbeat of any replica: measured
//! against the replicas' own clocks, not the caller's `now`, so a
//! replica that stopped drops out once the others have beaten for
//! [`STALE_MS`] without it, and its rows are deleted after [`RETIRE_MS`].
//! A delivery waiting for a channel no live replica has is not counted as
//! a way to reach the owner ([`delivery_channel_active`]; `paper.rs`).
//! Rows of the plain form (`webpush`,
//! `webhook:vneid`), written by servers before this change, are left to
//! them and not read here.

use std::collections::BTreeSet;

use sqlx::{Any, Row, Transaction};

use super::outbox::Claimed;
use crate::db::{Db, DbError};

/// How often a replica refreshes its channels.
pub const HEARTBEAT_MS: i64 = 60_000;
/// A replica whose heartbeat is this much older than the newest one no
/// longer makes its channels active.
pub const STALE_MS: i64 = 10 * 60_000;
/// A replica whose heartbeat is this much older than the newest one has
/// its rows deleted: a replica's name is new at every start, so without
/// this the table would gain a set of rows per restart for ever.
pub const RETIRE_MS: i64 = 24 * 60 * 60_000;

/// An SQL condition, true when the channel of the delivery row `d` is
/// active (see the module doc): a pending delivery for a channel no live
/// replica has will not be sent until one comes back, so it does not
/// count as a way to reach the owner (`paper.rs`). Names are
/// `{replica}|{channel}`; a webhook delivery's channel is
/// `webhook:{target}`. Compared by suffix, so a replica name holding `|`
/// or a partner name holding `%` cannot widen the match.
pub fn delivery_channel_active() -> String {
    let channel = "CASE WHEN d.channel = 'webhook' THEN 'webhook:' || d.target \
                   ELSE d.channel END";
    format!(
        "EXISTS (SELECT 1 FROM notice_channels c WHERE c.name LIKE '%|%' \
         AND c.updated_at >= (SELECT MAX(m.updated_at) FROM notice_channels m \
          WHERE m.name LIKE '%|%') - {STALE_MS} \
         AND substr(c.name, length(c.name) - length({channel})) = '|' || {channel})"
    )
}

/// Records that `replica` can send `names` (`webpush`, `email`,
/// `webhook:{partner}`) at `now`: its rows refreshed, rows of channels it
/// no longer has removed, rows of replicas gone for [`RETIRE_MS`] removed. Returns the channels that were not active
/// before and are now (a channel added: its owners' notices not yet out
/// get deliveries, `outbox::enqueue_unissued`).
pub async fn heartbeat(
    db: &Db,
    replica: &str,
    names: &[String],
    now: i64,
) -> Result<Vec<String>, DbError> {
    // A write lock first (SQLite: a transaction that reads and then
    // writes fails at once with "database is locked" when another
    // connection wrote meanwhile; taken first, the busy timeout waits).
    let mut tx = crate::audit::begin(db).await?;
    let before = active_channels(&mut tx).await?;
    sqlx::query("DELETE FROM notice_channels WHERE name LIKE $1")
        .bind(format!("{replica}|%"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM notice_channels WHERE name LIKE '%|%' AND updated_at < \
         (SELECT MAX(updated_at) FROM notice_channels WHERE name LIKE '%|%') - $1",
    )
    .bind(RETIRE_MS)
    .execute(&mut *tx)
    .await?;
    for n in names {
        sqlx::query(
            "INSERT INTO notice_channels (name, active, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (name) DO UPDATE SET active = 1, updated_at = excluded.updated_at",
        )
        .bind(format!("{replica}|{n}"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let after = active_channels(&mut tx).await?;
    tx.commit().await?;
    Ok(after.difference(&before).cloned().collect())
}

/// The channels some live replica has (see the module's doc).
pub async fn active_channels(
    tx: &mut Transaction<'static, Any>,
) -> Result<BTreeSet<String>, DbError> {
    let rows = sqlx::query(
        "SELECT name FROM notice_channels WHERE name LIKE '%|%' AND updated_at >= \
         (SELECT MAX(updated_at) FROM notice_channels WHERE name LIKE '%|%') - $1",
    )
    .bind(STALE_MS)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = BTreeSet::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        if let Some((_, channel)) = name.split_once('|') {
            out.insert(channel.to_string());
        }
    }
    Ok(out)
}

/// Claims up to `limit` due deliveries that this replica can send (its
/// `names`), for `worker` until `now + lease_ms`, as
/// `outbox::claim_due` does for all: a delivery for a channel or partner
/// this replica lacks is not touched (no attempt counted, no lease), so a
/// replica that has it sends it.
pub async fn claim_sendable(
    db: &Db,
    worker: &str,
    names: &[String],
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claimed>, DbError> {
    // Placeholders from $3 on: plain channels, then partners.
    let plain: Vec<&str> = names
        .iter()
        .filter(|n| !n.starts_with("webhook:"))
        .map(String::as_str)
        .collect();
    let partners: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix("webhook:"))
        .collect();
    if plain.is_empty() && partners.is_empty() {
        return Ok(Vec::new());
    }
    let list = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut cond = Vec::new();
    if !plain.is_empty() {
        cond.push(format!("channel IN ({})", list(3, plain.len())));
    }
    if !partners.is_empty() {
        cond.push(format!(
            "(channel = 'webhook' AND target IN ({}))",
            list(3 + plain.len(), partners.len())
        ));
    }
    let sql = format!(
        "SELECT delivery_id, notice_id, event_id, channel, target, attempts, idempotency_key, \
         message_id FROM notice_deliveries WHERE state IN ('pending', 'failed') \
         AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
         AND ({}) ORDER BY next_attempt_at LIMIT $2",
        cond.join(" OR ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit);
    for v in plain.iter().chain(partners.iter()) {
        q = q.bind(*v);
    }
    let rows = q.fetch_all(db.pool()).await?;
    super::leases::claim_rows(db, worker, now, lease_ms, rows).await
}
