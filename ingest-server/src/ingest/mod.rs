//! Ingest: what happens to an event bundle between its arrival (MQTT or
//! HTTPS) and the ack to the device.
//!
//! Bundles go through one queue to a batch worker, which takes whatever has
//! arrived (up to `batch_max` bundles, waiting at most `batch_wait` after the
//! first), verifies them ([`verify`]), writes the stills of the accepted and
//! the raw bytes of the rejected to the evidence store concurrently (their
//! fsyncs fold into a few journal commits), then writes every case, evidence
//! row and quarantine entry in **one** database transaction, and only after
//! that commit answers each bundle. This is group commit: durable (nothing is
//! acked before it is on disk) and fast (one flush per batch instead of one
//! per file and per row).
//!
//! The event id is the key: a redelivered event inserts nothing and is
//! answered `duplicate`, also when the copies arrive in the same batch
//! (a redelivery that brings a still the first delivery lacked completes
//! the case's evidence). A stored event is judged by what was stored, not
//! by the server's state today: a redelivery that a check of the camera
//! registry, the grammar or the clock would now refuse (a rule disabled on
//! the camera since) is still a `duplicate` (`rows::settle_stored`), and
//! such a refusal is not answered while another replica is storing the
//! same event id: it waits for that insert and answers `duplicate`
//! (`rows::stored_meanwhile`).
//! Anything else that fails verification goes to the quarantine with its
//! reason and is answered `rejected` when its event id can be read and the
//! refusal is about the bytes themselves; a refusal about where they
//! arrived is not answered ([`verify::Grounds`]). An internal failure
//! (database down) answers nothing: the device resends and the event id
//! keeps it from being stored twice.

mod rows;
pub mod verify;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use plate_ocr::plate::PlateGrammar;
use protocol::Ack;
use sqlx::AnyConnection;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, DbError, now_ms};
use crate::devices::Device;
use crate::evidence::{EvidenceStore, EvidenceStoreError};
use crate::fines::FineTable;
use crate::quarantine::{self, QuarantineEntry};
use crate::registry::Registry;
pub use verify::{Accepted, Grounds, Rejection, Source};

/// What ingest needs around it.
pub struct IngestContext {
    /// The database.
    pub db: Db,
    /// The evidence store.
    pub evidence: EvidenceStore,
    /// Fine schedules.
    pub fines: FineTable,
    /// Plate grammar.
    pub grammar: &'static PlateGrammar,
    /// How far ahead of the server clock an event time may be.
    pub clock_tolerance: time::Duration,
    /// Quarantine events from cameras not in the camera registry
    /// (`[ingest] require_known_camera`); enrolled cameras are always
    /// checked (see [`crate::cameras`]).
    pub require_known_camera: bool,
    /// Owner lookup after commit (never blocks the ack).
    pub registry: Option<Arc<dyn Registry>>,
    /// Counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

impl IngestContext {
    /// The plate grammar of a running pipeline.
    pub fn grammar_of(ingestor: &Ingestor) -> &'static PlateGrammar {
        ingestor.context().grammar
    }
}

/// Group-commit tuning.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most bundles in one transaction.
    pub max_items: usize,
    /// Longest wait for more bundles after the first.
    pub max_wait: Duration,
}

/// What became of one bundle.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The ack for the device (absent when no event id could be read, and
    /// for a refusal about where the bytes arrived: [`verify::Grounds`]).
    pub ack: Option<Ack>,
    /// If quarantined: the stable reason code and the reason.
    pub rejection: Option<(String, String)>,
}

/// A failure that is not the message's fault: nothing was acknowledged.
#[derive(Debug, Error)]
pub enum IngestError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Evidence store failure.
    #[error(transparent)]
    Evidence(#[from] EvidenceStoreError),
    /// The ingest worker has stopped.
    #[error("ingest worker stopped")]
    Stopped,
    /// A background task failed.
    #[error("ingest task failed: {0}")]
    Task(String),
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Db(DbError::Sqlx(e))
    }
}

struct Job {
    bytes: Bytes,
    source: Source,
    reply: oneshot::Sender<Result<Outcome, Arc<IngestError>>>,
}

/// Handle to the ingest pipeline; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
    ctx: Arc<IngestContext>,
}

impl Ingestor {
    /// Starts the batch worker.
    pub fn start(ctx: Arc<IngestContext>, settings: BatchSettings) -> Ingestor {
        let (tx, rx) = mpsc::channel(settings.max_items.max(1) * 4);
        tokio::spawn(worker(ctx.clone(), settings, rx));
        Ingestor { tx, ctx }
    }

    /// The context (database, evidence store, ...).
    pub fn context(&self) -> &Arc<IngestContext> {
        &self.ctx
    }

    /// Submits one bundle and waits until it is committed (or refused).
    pub async fn submit(&self, bytes: Bytes, source: Source) -> Result<Outcome, Arc<IngestError>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job {
                bytes,
                source,
                reply,
            })
            .await
            .map_err(|_| Arc::new(IngestError::Stopped))?;
        answer.await.map_err(|_| Arc::new(IngestError::Stopped))?
    }
}

/// A verified batch waiting for its commit, with whom to answer.
struct Verified {
    verdicts: Verdicts,
    replies: Vec<oneshot::Sender<Result<Outcome, Arc<IngestError>>>>,
    started: std::time::Instant,
}

/// Each input with its verdict.
pub type Verdicts = Vec<(Bytes, Source, Result<Accepted, Rejection>)>;

/// Two stages in a pipeline: while one batch is written and committed, the
/// next is collected and verified.
async fn worker(ctx: Arc<IngestContext>, settings: BatchSettings, mut rx: mpsc::Receiver<Job>) {
    let (verified_tx, mut verified_rx) = mpsc::channel::<Verified>(1);
    let committer_ctx = ctx.clone();
    let committer = tokio::spawn(async move {
        while let Some(batch) = verified_rx.recv().await {
            let n = batch.replies.len();
            match commit_batch(&committer_ctx, batch.verdicts).await {
                Ok(outcomes) => {
                    for (reply, outcome) in batch.replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                    let ms = batch.started.elapsed().as_millis() as u64;
                    tracing::debug!(n, ms, "batch committed");
                }
                Err(e) => fail(batch.replies, e),
            }
        }
    });
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + settings.max_wait;
        while jobs.len() < settings.max_items {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let (inputs, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| ((j.bytes, j.source), j.reply))
            .unzip();
        match verify_batch(&ctx, inputs).await {
            Ok(verdicts) => {
                let batch = Verified {
                    verdicts,
                    replies,
                    started,
                };
                if verified_tx.send(batch).await.is_err() {
                    break;
                }
            }
            Err(e) => fail(replies, e),
        }
    }
    drop(verified_tx);
    let _ = committer.await;
}

fn fail(replies: Vec<oneshot::Sender<Result<Outcome, Arc<IngestError>>>>, e: IngestError) {
    tracing::error!(error = %e, n = replies.len(), "batch failed; nothing acknowledged");
    let e = Arc::new(e);
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

/// Verifies and commits one batch; returns one outcome per input, in order.
pub async fn process_batch(
    ctx: &Arc<IngestContext>,
    inputs: Vec<(Bytes, Source)>,
) -> Result<Vec<Outcome>, IngestError> {
    let verdicts = verify_batch(ctx, inputs).await?;
    commit_batch(ctx, verdicts).await
}

/// Decodes and verifies a batch (CPU work spread over the cores, off the
/// async threads). Nothing is written.
pub async fn verify_batch(
    ctx: &Arc<IngestContext>,
    inputs: Vec<(Bytes, Source)>,
) -> Result<Verdicts, IngestError> {
    let decoded = tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .map(|(bytes, source)| {
                let d = verify::decode(&bytes);
                (bytes, source, d)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| IngestError::Task(e.to_string()))?;

    let ids: HashSet<String> = decoded
        .iter()
        .filter_map(|(_, _, d)| d.as_ref().ok().map(|b| b.event.device_id().to_owned()))
        .collect();
    let cameras = Arc::new(
        crate::cameras::for_devices(&ctx.db, &ids)
            .await
            .map_err(|e| IngestError::Task(e.to_string()))?,
    );
    let devices = Arc::new(load_devices(&ctx.db, ids).await?);
    let now = time::OffsetDateTime::now_utc();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_task = decoded.len().div_ceil(cores).max(1);
    let mut decoded = decoded.into_iter();
    let mut tasks = Vec::new();
    loop {
        let part: Vec<_> = decoded.by_ref().take(per_task).collect();
        if part.is_empty() {
            break;
        }
        let (devices, cameras) = (devices.clone(), cameras.clone());
        let (grammar, tolerance) = (ctx.grammar, ctx.clock_tolerance);
        let require_known_camera = ctx.require_known_camera;
        tasks.push(tokio::task::spawn_blocking(move || {
            let checks = verify::Checks {
                devices: &devices,
                cameras: &cameras,
                require_known_camera,
                now,
                clock_tolerance: tolerance,
                grammar,
            };
            part.into_iter()
                .map(|(bytes, source, d)| {
                    let v = d.and_then(|b| verify::verify_decoded(b, &source, &checks));
                    (bytes, source, v)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut verdicts = Vec::new();
    for t in tasks {
        verdicts.extend(t.await.map_err(|e| IngestError::Task(e.to_string()))?);
    }
    Ok(verdicts)
}

/// Writes a verified batch: evidence (one sync), then every row in one
/// transaction. Returns the outcomes once committed.
pub async fn commit_batch(
    ctx: &Arc<IngestContext>,
    mut verdicts: Verdicts,
) -> Result<Vec<Outcome>, IngestError> {
    let received_at = now_ms();
    let t1 = std::time::Instant::now();
    // An event already stored is judged by what is stored, not by today's
    // camera registry, grammar or clock: a redelivery refused only by them
    // is answered `duplicate` (`rows::settle_stored`).
    if verdicts
        .iter()
        .any(|(_, _, v)| v.as_ref().is_err_and(|r| r.redelivery.is_some()))
    {
        let mut conn = ctx.db.pool().acquire().await?;
        rows::settle_stored(&mut conn, &mut verdicts).await?;
    }
    // Evidence first (stills of the accepted, raw bytes of the rejected), as
    // one pack; what the index already holds (a redelivery) is not
    // written again, and what it lacks is written and indexed whether the
    // event is new or not (a redelivery bringing a still the first
    // delivery could not: `rows::mark_late_attachments`).
    let mut files = Vec::new();
    // The hash of each rejected bundle's raw bytes (for its quarantine row).
    let mut raw_digests = Vec::with_capacity(verdicts.len());
    for (bytes, source, v) in &verdicts {
        match v {
            // Attachments were checked against the manifest: its hash is theirs.
            Ok(a) => {
                files.extend(a.attachments.iter().filter_map(|at| {
                    let item = a.event.evidence_item(&at.name)?;
                    Some((item.sha256.clone(), Bytes::from(at.data.clone())))
                }));
                raw_digests.push(None);
            }
            Err(r) => {
                let digest = protocol::sha256_hex(bytes);
                if keeps_raw_bytes(r, source) {
                    files.push((digest.clone(), bytes.clone()));
                }
                raw_digests.push(Some(digest));
            }
        }
    }
    let packed = ctx.evidence.put_pack(files).await?;
    let t2 = std::time::Instant::now();

    let mut tx = ctx.db.begin_write().await?;
    crate::evidence::pack::record(&mut tx, &packed).await?;
    let mut outcomes = Vec::with_capacity(verdicts.len());
    let mut fresh = Vec::new();
    // The event ids this batch has really stored (inserted, not rolled
    // back). Only those: an id a refusal merely tried
    // (`rows::stored_meanwhile` rolls its insert back) must not keep a
    // later copy in the batch from being stored, or that copy would be
    // answered `duplicate` with no row behind it, and the device would
    // delete its event on that signed ack.
    let mut stored_here = HashSet::new();
    for ((bytes, source, verdict), raw_digest) in verdicts.iter().zip(raw_digests) {
        let outcome = match verdict {
            Ok(a) => {
                let id = a.event.event_id;
                let new = !stored_here.contains(&id)
                    && rows::insert_case(
                        &mut tx,
                        a,
                        source,
                        received_at,
                        &ctx.fines.quote(&a.event),
                    )
                    .await?;
                if new {
                    stored_here.insert(id);
                    fresh.push(a.event.clone());
                    Outcome {
                        ack: Some(Ack::stored(id)),
                        rejection: None,
                    }
                } else {
                    // Not inserted: a row holds the id. A `duplicate` only
                    // for that row's very event (same signed envelope, so
                    // the same device's); never without a row.
                    let Some(stored) = rows::stored_event(&mut tx, id).await? else {
                        return Err(IngestError::Task(format!(
                            "event {id} neither inserted nor stored"
                        )));
                    };
                    if let Some(r) = rows::conflict(a, Some(&stored)) {
                        let digest = ctx.evidence.put(bytes.clone()).await?;
                        quarantine_one(&mut tx, bytes, digest, source, received_at, &r).await?
                    } else {
                        rows::mark_late_attachments(&mut tx, a, received_at).await?;
                        Outcome {
                            ack: Some(Ack::duplicate(id)),
                            rejection: None,
                        }
                    }
                }
            }
            // Refused only by this replica's state (clock, camera
            // registry, `require_known_camera`): not answered while another
            // replica is storing the same event, which decides it.
            Err(r) => match r.redelivery.as_deref() {
                Some(a) if !stored_here.contains(&a.event.event_id) => {
                    let quote = ctx.fines.quote(&a.event);
                    if rows::stored_meanwhile(&mut tx, a, source, received_at, &quote).await? {
                        let stored = rows::stored_event(&mut tx, a.event.event_id).await?;
                        if let Some(c) = rows::conflict(a, stored.as_ref()) {
                            let digest = ctx.evidence.put(bytes.clone()).await?;
                            quarantine_one(&mut tx, bytes, digest, source, received_at, &c).await?
                        } else if rows::attachments_kept(&mut tx, a).await? {
                            Outcome {
                                ack: Some(Ack::duplicate(a.event.event_id)),
                                rejection: None,
                            }
                        } else {
                            // Its stills were not packed by this batch (it
                            // was being refused): no answer, so the device
                            // sends them again and the stored case takes
                            // them the usual way. A duplicate would have it
                            // drop stills the case never got.
                            Outcome {
                                ack: None,
                                rejection: None,
                            }
                        }
                    } else {
                        let digest = raw_digest.unwrap_or_else(|| protocol::sha256_hex(bytes));
                        quarantine_one(&mut tx, bytes, digest, source, received_at, r).await?
                    }
                }
                _ => {
                    let digest = raw_digest.unwrap_or_else(|| protocol::sha256_hex(bytes));
                    quarantine_one(&mut tx, bytes, digest, source, received_at, r).await?
                }
            },
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    // The pack is indexed: its `pending/` marker goes (best effort; a
    // batch that fails before here leaves the marker, and the retention
    // sweep deletes the pack it names: `evidence/pending.rs`).
    ctx.evidence.pack_committed(&packed).await;
    ctx.metrics.batch(outcomes.len());
    ctx.metrics.commit_phases(t2 - t1, t2.elapsed());
    for o in &outcomes {
        use crate::metrics::BundleOutcome;
        match (&o.ack, &o.rejection) {
            (_, Some((reason, _))) => {
                ctx.metrics.bundle(BundleOutcome::Rejected);
                ctx.metrics.quarantined(reason);
            }
            (Some(a), None) if a.status == protocol::AckStatus::Duplicate => {
                ctx.metrics.bundle(BundleOutcome::Duplicate)
            }
            _ => ctx.metrics.bundle(BundleOutcome::Stored),
        }
    }
    tracing::debug!(
        evidence_ms = (t2 - t1).as_millis() as u64,
        db_ms = t2.elapsed().as_millis() as u64,
        "batch phases"
    );

    if !fresh.is_empty()
        && let Some(registry) = ctx.registry.clone()
    {
        let db = ctx.db.clone();
        tokio::spawn(async move {
            crate::registry::resolve_owners(&db, registry.as_ref(), &fresh).await;
        });
    }
    Ok(outcomes)
}

/// Quarantines a refused bundle and makes its answer. A refusal about the
/// bytes is answered with a rejection bound to their hash, so the device
/// can tell a rejection of what it sent from one of a copy someone else
/// altered. A refusal about where the bytes arrived ([`Grounds::Arrival`])
/// is not answered (the binding would not help: the bytes are the
/// device's own), and since the device will resend, its row is written
/// once ([`quarantine::insert_once`]).
async fn quarantine_one(
    conn: &mut AnyConnection,
    bytes: &Bytes,
    digest: String,
    source: &Source,
    received_at: i64,
    r: &Rejection,
) -> Result<Outcome, IngestError> {
    let ack = r
        .event_id
        .filter(|_| r.answered())
        .map(|id| Ack::rejected(id, r.ack_code.clone(), r.reason.clone()).bound_to(digest.clone()));
    let entry = QuarantineEntry::new(
        received_at,
        source.label(),
        r.device_claimed.as_deref(),
        r.event_id,
        &r.reason_code,
        &r.reason,
        digest,
        bytes.len(),
    );
    match r.grounds {
        Grounds::Bytes => quarantine::insert(conn, &entry).await?,
        Grounds::Arrival => {
            quarantine::insert_once(conn, &entry).await?;
        }
    }
    tracing::warn!(
        source = source.label(),
        code = r.reason_code,
        reason = r.reason,
        "bundle quarantined"
    );
    Ok(Outcome {
        ack,
        rejection: Some((r.reason_code.clone(), r.reason.clone())),
    })
}

async fn load_devices(
    db: &Db,
    ids: HashSet<String>,
) -> Result<HashMap<String, Device>, IngestError> {
    let mut out = HashMap::new();
    for id in ids {
        if let Some(d) = crate::devices::get(db, &id)
            .await
            .map_err(|e| IngestError::Task(e.to_string()))?
        {
            out.insert(id, d);
        }
    }
    Ok(out)
}

/// The snake_case wire name of a protocol enum value.
pub fn enum_text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Whether a rejected bundle's raw bytes go to the evidence store with its
/// quarantine row. Not for one that came over HTTP without a valid
/// signature: `POST /api/v1/violations` takes anyone's request, and keeping
/// every anonymous megabyte would let anyone fill the disk; its row keeps
/// the hash and size. Over MQTT the broker let only enrolled devices in, so
/// their bytes are kept for a person to look at.
fn keeps_raw_bytes(r: &Rejection, source: &Source) -> bool {
    r.signed || !matches!(source, Source::Http)
}
