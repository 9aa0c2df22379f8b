//! Clips: the large evidence files that follow an acknowledged event as
//! clip chunks (`TVC1` frames on `tv/v1/{site}/{device}/evidence`). Each
//! chunk is checked on arrival (its own hash, its place in the file), staged
//! in the evidence store under `staging/…` and recorded in `clip_chunks`;
//! when the last one is in, the clip is assembled, checked against the
//! SHA-256 the device signed in the event's manifest, stored by content hash,
//! and the device gets an ack with `item` set to the clip's name. That ack,
//! not the broker's PUBACK, is what lets the device drop the clip.
//!
//! Chunks are not signed, so on a broker without topic ACLs another
//! logged-in device can publish chunks for this clip. The first copy of
//! each chunk is staged and never replaced by a different one; a clip
//! that fails its signed hash discards its staging (the device's resend
//! rebuilds it from its own chunks), and only the first failed assembly
//! of an event's clip keeps its bytes (later ones keep hash and size).
//!
//! The chunks of one clip are handled one at a time (a lock per clip), so
//! counting and assembly are free of races; chunks of different clips go
//! on side by side, so one large clip being assembled does not hold up
//! every other device's evidence (nor, through the broker's window of
//! unacknowledged messages, their events).
//! A clip is assembled in the evidence store by a streamed multipart upload
//! (`evidence/assemble.rs`): memory holds one chunk and a few 8 MiB parts, whatever
//! the clip's size (the protocol caps it at 1 GiB).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use protocol::{Ack, ClipChunk, EvidenceRole, ProtocolError, RejectCode, topics};
use sqlx::Row;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::db::now_ms;
use crate::ingest::verify::{Grounds, code_text};
use crate::ingest::{IngestContext, IngestError, Outcome};
use crate::quarantine;

/// Serialises the handling of each clip's chunks.
#[derive(Default)]
pub struct ClipAssembler {
    /// One lock per clip being received (event id, item name); an entry
    /// goes when nobody holds or waits for it.
    locks: std::sync::Mutex<HashMap<ClipKey, Arc<Mutex<()>>>>,
}

/// A clip: its event and item name.
type ClipKey = (Uuid, String);

/// A held clip lock; leaving it drops the clip's entry if nobody else
/// wants it.
struct ClipGuard<'a> {
    owner: &'a ClipAssembler,
    key: ClipKey,
    lock: Arc<Mutex<()>>,
}

impl Drop for ClipGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits for it.
        if Arc::strong_count(&self.lock) <= 2 {
            locks.remove(&self.key);
        }
    }
}

struct Refusal {
    code: RejectCode,
    reason_code: String,
    reason: String,
    /// About the chunk's bytes (answered with a bound rejection) or about
    /// the topic it came on (only quarantined): the rule of
    /// [`Grounds`], for the same reason. A device's genuine chunk
    /// republished on another device's or site's evidence topic must not
    /// earn a signed rejection of its own bytes, or the device would give
    /// up the clip.
    grounds: Grounds,
}

impl Refusal {
    fn new(code: RejectCode, reason_code: &str, reason: String) -> Self {
        Self {
            code,
            reason_code: reason_code.to_owned(),
            reason,
            grounds: Grounds::Bytes,
        }
    }

    /// A refusal because of the topic the chunk came on.
    fn arrival(reason: String) -> Self {
        Self {
            grounds: Grounds::Arrival,
            ..Self::new(RejectCode::WrongTopic, "wrong_topic", reason)
        }
    }

    fn protocol(e: &ProtocolError) -> Self {
        let code = e.reject_code();
        Self {
            reason_code: code_text(&code),
            code,
            reason: e.to_string(),
            grounds: Grounds::of(e),
        }
    }
}

impl ClipAssembler {
    /// Handles one chunk that arrived on `topic`. Returns the ack to send,
    /// if any: none until the clip is complete, an item ack when it is
    /// stored (or was already), a rejecting item ack when it is refused for
    /// its bytes, none when it is refused for the topic it came on.
    pub async fn receive(
        &self,
        ctx: &IngestContext,
        bytes: Bytes,
        topic: &str,
    ) -> Result<Outcome, IngestError> {
        let chunk = match ClipChunk::decode(&bytes) {
            Ok(c) => c,
            Err(e) => {
                let r = Refusal::protocol(&e);
                return refuse(ctx, bytes, topic, None, None, r).await;
            }
        };
        let key = (chunk.header.event_id, chunk.header.name.clone());
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let guard = ClipGuard {
            owner: self,
            key,
            lock,
        };
        let _held = guard.lock.lock().await;
        let event_id = chunk.header.event_id;
        let name = chunk.header.name.clone();
        match self.check(ctx, topic, &chunk).await? {
            Check::Refused(device, r) => {
                refuse(
                    ctx,
                    bytes,
                    topic,
                    device.as_deref(),
                    Some((event_id, &name)),
                    r,
                )
                .await
            }
            Check::AlreadyStored => Ok(Outcome {
                ack: Some(Ack::duplicate(event_id).for_item(name)),
                rejection: None,
            }),
            Check::Pending {
                device,
                manifest_sha256,
            } => {
                if !self.stage(ctx, &chunk).await? {
                    // Chunks are not signed: which copy of chunk i is the
                    // device's cannot be told here. The first one stays;
                    // this one is kept for a person, not answered (it may
                    // be the device's own, arriving after another's
                    // forgery: a rejection bound to it would make the
                    // device give up its clip). A wrong first copy fails
                    // the assembly, which discards the staging, and the
                    // device's resend rebuilds the clip.
                    let r = Refusal {
                        grounds: Grounds::Arrival,
                        ..Refusal::new(
                            RejectCode::EvidenceMismatch,
                            "evidence_mismatch",
                            format!(
                                "chunk {} of {name:?} differs from the one already staged: \
                                 not replaced",
                                chunk.header.index
                            ),
                        )
                    };
                    return refuse(
                        ctx,
                        bytes,
                        topic,
                        Some(device.as_str()),
                        Some((event_id, &name)),
                        r,
                    )
                    .await;
                }
                let have: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM clip_chunks WHERE event_id = $1 AND name = $2",
                )
                .bind(event_id.to_string())
                .bind(&name)
                .fetch_one(ctx.db.pool())
                .await?
                .try_get(0)?;
                if have < i64::from(chunk.header.count) {
                    return Ok(Outcome {
                        ack: None,
                        rejection: None,
                    });
                }
                self.assemble(ctx, &chunk, &device, &manifest_sha256, topic)
                    .await
            }
        }
    }

    async fn check(
        &self,
        ctx: &IngestContext,
        topic: &str,
        chunk: &ClipChunk,
    ) -> Result<Check, IngestError> {
        let h = &chunk.header;
        let addr = match topics::parse_topic(topic) {
            Ok(a) if a.channel == topics::Channel::Evidence => a,
            Ok(a) => {
                return Ok(Check::Refused(
                    Some(a.device.clone()),
                    Refusal::arrival(format!("clip chunk on the {} channel", a.channel)),
                ));
            }
            Err(e) => return Ok(Check::Refused(None, Refusal::protocol(&e.into()))),
        };
        let device = Some(addr.device.clone());
        let row = sqlx::query(
            "SELECT e.device_id, e.site, v.role, v.size_bytes, v.sha256, v.stored, d.revoked_at, \
             e.evidence_purged_at FROM events e JOIN devices d ON d.device_id = e.device_id \
             LEFT JOIN evidence v ON v.event_id = e.event_id AND v.name = $2 \
             WHERE e.event_id = $1",
        )
        .bind(h.event_id.to_string())
        .bind(&h.name)
        .fetch_optional(ctx.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(Check::Refused(
                device,
                Refusal::new(
                    RejectCode::Invalid,
                    "unknown_event",
                    format!(
                        "no stored event {}: send the event bundle first",
                        h.event_id
                    ),
                ),
            ));
        };
        let ev_device: String = row.try_get(0)?;
        let ev_site: String = row.try_get(1)?;
        let role: Option<String> = row.try_get(2)?;
        let size: Option<i64> = row.try_get(3)?;
        let sha: Option<String> = row.try_get(4)?;
        let stored: Option<i64> = row.try_get(5)?;
        let revoked: Option<i64> = row.try_get(6)?;
        let purged: Option<i64> = row.try_get(7)?;
        if ev_device != addr.device || ev_site != addr.site {
            return Ok(Check::Refused(
                device,
                Refusal::arrival(format!(
                    "event {} belongs to {ev_site}/{ev_device}, chunk came on {topic}",
                    h.event_id
                )),
            ));
        }
        if revoked.is_some() {
            return Ok(Check::Refused(
                device,
                Refusal::new(
                    RejectCode::UnknownDevice,
                    "revoked_device",
                    format!("device `{ev_device}` is revoked"),
                ),
            ));
        }
        let (Some(role), Some(size), Some(sha), Some(stored)) = (role, size, sha, stored) else {
            return Ok(Check::Refused(
                device,
                Refusal::new(
                    RejectCode::EvidenceMismatch,
                    "evidence_mismatch",
                    format!(
                        "{:?} is not in the manifest of event {}",
                        h.name, h.event_id
                    ),
                ),
            ));
        };
        if role != crate::ingest::enum_text(&EvidenceRole::Clip) {
            return Ok(Check::Refused(
                device,
                Refusal::new(
                    RejectCode::EvidenceMismatch,
                    "evidence_mismatch",
                    format!("{:?} has role {role}; only clips travel as chunks", h.name),
                ),
            ));
        }
        // A case whose evidence was deleted under retention (`crate::
        // retention`) takes no clip any more: answered as stored so the
        // edge stops sending it, and nothing is kept.
        if stored != 0 || purged.is_some() {
            return Ok(Check::AlreadyStored);
        }
        if u64::try_from(size).ok() != Some(h.total_size) {
            return Ok(Check::Refused(
                device,
                Refusal::new(
                    RejectCode::EvidenceMismatch,
                    "evidence_mismatch",
                    format!(
                        "chunk says {:?} is {} bytes, the signed manifest says {size}",
                        h.name, h.total_size
                    ),
                ),
            ));
        }
        Ok(Check::Pending {
            device: ev_device,
            manifest_sha256: sha,
        })
    }

    /// Stages one chunk, the first copy of each index winning: a chunk
    /// whose `clip_chunks` row exists with another hash is not written
    /// (`false`), so the staged object is always the one its row names and
    /// a later copy (another logged-in device's on this topic) cannot
    /// replace what the device sent. The same chunk again (a resend) is
    /// written again, which restores a staged object lost in between.
    async fn stage(&self, ctx: &IngestContext, chunk: &ClipChunk) -> Result<bool, IngestError> {
        let h = &chunk.header;
        let staged: Option<String> = sqlx::query_scalar(
            "SELECT sha256 FROM clip_chunks WHERE event_id = $1 AND name = $2 AND idx = $3",
        )
        .bind(h.event_id.to_string())
        .bind(&h.name)
        .bind(i64::from(h.index))
        .fetch_optional(ctx.db.pool())
        .await?;
        if staged.is_some_and(|sha| sha != h.sha256) {
            tracing::warn!(
                event_id = %h.event_id,
                name = h.name,
                index = h.index,
                "a different copy of a staged clip chunk: not replaced"
            );
            return Ok(false);
        }
        ctx.evidence
            .put_chunk(
                h.event_id,
                &h.name,
                h.index,
                Bytes::from(chunk.data.clone()),
            )
            .await?;
        sqlx::query(
            "INSERT INTO clip_chunks (event_id, name, idx, count, total_size, sha256, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id, name, idx) DO NOTHING",
        )
        .bind(h.event_id.to_string())
        .bind(&h.name)
        .bind(i64::from(h.index))
        .bind(i64::from(h.count))
        .bind(i64::try_from(h.total_size).unwrap_or(i64::MAX))
        .bind(&h.sha256)
        .bind(now_ms())
        .execute(ctx.db.pool())
        .await?;
        Ok(true)
    }

    async fn assemble(
        &self,
        ctx: &IngestContext,
        chunk: &ClipChunk,
        device: &str,
        manifest_sha256: &str,
        topic: &str,
    ) -> Result<Outcome, IngestError> {
        let h = &chunk.header;
        let assembled = ctx
            .evidence
            .assemble_chunks(h.event_id, &h.name, h.count)
            .await?;
        let event = h.event_id.to_string();
        if assembled.sha256 != manifest_sha256 {
            // Clear the staging so the device's resend rebuilds the clip
            // from its own chunks only (a chunk someone else staged first
            // goes too).
            clear_staging(ctx, h.event_id, &h.name, h.count).await?;
            // The refused bytes are already stored, under their own hash.
            // Only the first failed assembly of an event's clip keeps them:
            // every later one (each up to the clip's size, and a device
            // that publishes chunks on another's topic can cause one per
            // resend) keeps its hash and size in the quarantine row only.
            let kept = keep_failed_assembly(ctx, h.event_id, &assembled.sha256).await?;
            let r = Refusal::new(
                RejectCode::EvidenceMismatch,
                "clip_mismatch",
                format!(
                    "assembled {:?} hashes to {}, the signed manifest says {manifest_sha256}{}",
                    h.name,
                    assembled.sha256,
                    if kept {
                        ""
                    } else {
                        " (bytes not kept: an earlier failed assembly of this event's clip is)"
                    }
                ),
            );
            let entry = quarantine::QuarantineEntry::new(
                now_ms(),
                topic,
                Some(device),
                Some(h.event_id),
                &r.reason_code,
                &r.reason,
                assembled.sha256,
                usize::try_from(assembled.size).unwrap_or(usize::MAX),
            );
            let entry = quarantine::record_entry(&ctx.db, entry).await?;
            return Ok(refused(ctx, Some((h.event_id, &h.name)), r, entry));
        }
        let mut tx = ctx.db.begin_write().await?;
        sqlx::query(
            "UPDATE evidence SET stored = 1, stored_at = $1 WHERE event_id = $2 AND name = $3",
        )
        .bind(now_ms())
        .bind(&event)
        .bind(&h.name)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM clip_chunks WHERE event_id = $1 AND name = $2")
            .bind(&event)
            .bind(&h.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        ctx.evidence
            .delete_chunks(h.event_id, &h.name, h.count)
            .await?;
        tracing::info!(event_id = %h.event_id, name = h.name, "clip stored");
        ctx.metrics.clip_stored();
        Ok(Outcome {
            ack: Some(Ack::stored(h.event_id).for_item(h.name.clone())),
            rejection: None,
        })
    }
}

enum Check {
    Refused(Option<String>, Refusal),
    AlreadyStored,
    Pending {
        device: String,
        manifest_sha256: String,
    },
}

async fn clear_staging(
    ctx: &IngestContext,
    event_id: Uuid,
    name: &str,
    count: u32,
) -> Result<(), IngestError> {
    sqlx::query("DELETE FROM clip_chunks WHERE event_id = $1 AND name = $2")
        .bind(event_id.to_string())
        .bind(name)
        .execute(ctx.db.pool())
        .await?;
    ctx.evidence.delete_chunks(event_id, name, count).await?;
    Ok(())
}

/// Whether the bytes of a failed assembly (stored under `digest`) are
/// kept for a person to look at: only when no earlier failed assembly of
/// `event_id`'s clip is quarantined, or when something else names the same
/// digest (a case's file, a quarantined message, a packed file), which
/// then keeps them anyway. Otherwise they are deleted here, so however
/// often a clip fails, at most one clip-sized object stays for it. To be
/// called before the new quarantine row is written.
async fn keep_failed_assembly(
    ctx: &IngestContext,
    event_id: Uuid,
    digest: &str,
) -> Result<bool, IngestError> {
    let earlier = sqlx::query(
        "SELECT 1 FROM quarantine WHERE event_id = $1 AND reason_code = 'clip_mismatch' \
         AND payload_sha256 <> $2 LIMIT 1",
    )
    .bind(event_id.to_string())
    .bind(digest)
    .fetch_optional(ctx.db.pool())
    .await?;
    if earlier.is_none() {
        return Ok(true);
    }
    for sql in [
        "SELECT 1 FROM evidence WHERE sha256 = $1 LIMIT 1",
        "SELECT 1 FROM contests WHERE photo_sha256 = $1 LIMIT 1",
        "SELECT 1 FROM quarantine WHERE payload_sha256 = $1 LIMIT 1",
        "SELECT 1 FROM evidence_index WHERE sha256 = $1 LIMIT 1",
    ] {
        let named = sqlx::query(sql)
            .bind(digest)
            .fetch_optional(ctx.db.pool())
            .await?;
        if named.is_some() {
            return Ok(true);
        }
    }
    ctx.evidence.remove(&[digest.to_owned()]).await?;
    Ok(false)
}

async fn refuse(
    ctx: &IngestContext,
    raw: Bytes,
    topic: &str,
    device: Option<&str>,
    item: Option<(Uuid, &str)>,
    r: Refusal,
) -> Result<Outcome, IngestError> {
    let size = raw.len();
    let digest = ctx.evidence.put(raw).await?;
    let entry = quarantine::QuarantineEntry::new(
        now_ms(),
        topic,
        device,
        item.map(|(id, _)| id),
        &r.reason_code,
        &r.reason,
        digest,
        size,
    );
    // A refusal the device is not told of is resent: one row, however often.
    let entry = match r.grounds {
        Grounds::Bytes => quarantine::record_entry(&ctx.db, entry).await?,
        Grounds::Arrival => quarantine::record_entry_once(&ctx.db, entry).await?,
    };
    Ok(refused(ctx, item, r, entry))
}

/// The answer to a refused chunk or clip, once it is quarantined as `entry`:
/// none for a refusal about the topic ([`Refusal::grounds`]); otherwise a
/// rejection bound to the refused bytes, the chunk or the assembled clip
/// whose hash disagreed with the manifest (which the device can check
/// against its own file).
fn refused(
    ctx: &IngestContext,
    item: Option<(Uuid, &str)>,
    r: Refusal,
    entry: quarantine::QuarantineEntry,
) -> Outcome {
    ctx.metrics.quarantined(&r.reason_code);
    let item = item.filter(|_| r.grounds == Grounds::Bytes);
    Outcome {
        ack: item.map(|(id, name)| {
            Ack::rejected(id, r.code, r.reason.clone())
                .for_item(name)
                .bound_to(entry.payload_sha256)
        }),
        rejection: Some((r.reason_code, r.reason)),
    }
}
