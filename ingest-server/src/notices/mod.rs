//! Fine notices to owners: once a police officer confirms a case, the
//! registered owner is told, in Vietnamese, what was seen, the legal basis,
//! the amount fixed at confirmation, the deadline, how to pay and how to
//! contest, with a link to the case in the citizen app; within the legal
//! deadlines (Circular 73/2024/TT-BCA, Art. 24).
//!
//! How, and why this way:
//!
//! - **Outbox** ([`outbox`]): [`enqueue`] writes the notice and one
//!   delivery per channel and target inside the transaction that confirms
//!   the case (`review::Reviewer::act`), so a confirmed case without its
//!   notice cannot exist, and a confirmation that fails leaves none.
//! - **Worker** ([`spawn_worker`]): sends due deliveries after the commit,
//!   each claimed with a conditional UPDATE (a lease) so replicas never
//!   send one twice at once, retried with exponential backoff and jitter,
//!   marked sent exactly once. Before each attempt the case is read
//!   again: a delivery for a case since paid, contested or closed is
//!   marked `dropped` (not sent, the reason in `last_error`), so a retry
//!   never asks a person to pay what they paid. Every receiver gets the
//!   delivery's idempotency key (webhook `X-TV-Delivery`, push `Topic`,
//!   e-mail `Message-ID`) to drop a retry whose first try did arrive.
//!   When the first channel gets through, the case moves to
//!   `notice_issued` through the workflow (`Action::IssueNotice`, by the
//!   system), at the time of that attempt. Until a delivery is through,
//!   each attempt first moves the notice's deadline to 20 days from the
//!   attempt (`outbox::respond_by_at_send`), so the text the owner gets
//!   states the deadline the system enforces from the issue on.
//! - **Replicas** ([`replicas`]): each replica records the channels it can
//!   send; a channel is active while any live replica has it, and a
//!   replica claims only deliveries it can send, so replicas configured
//!   differently (a rolling update) never lose or kill each other's.
//! - **Paper** ([`paper`]): a notice no channel can deliver is listed for
//!   a notice by post, which a person records.
//! - **Channels** ([`channel::Channel`]): Web Push to the citizen app
//!   ([`webpush`], VAPID [`vapid`], encryption [`ece`]), signed webhooks to
//!   partner apps such as VNeID ([`webhook`]), e-mail ([`smtp`]). Each reads
//!   only the owner data its protocol needs, and every read is logged in
//!   `registry_access_log`.
//! - **Deadlines** ([`deadlines`]): the 10-day flag and the 20-day
//!   overdue marking with the warning to the inspection register.
//! - **Text** ([`text`]): the notice as the owner reads it.
//! - **Follow-up messages** ([`followup`]): a contest not accepted (with
//!   the reason and the new deadline) or a fine withdrawn, sent through
//!   the same outbox and channels; they never move the case.
//! - **Limitation**: a fine notice is not sent (its delivery `dropped`)
//!   once the one-year limitation period of the violation has run out
//!   (`workflow::LIMITATION_DAYS`).

pub mod channel;
pub mod config;
pub mod deadlines;
pub mod ece;
pub mod followup;
pub mod http;
pub mod leases;
pub mod outbox;
pub mod paper;
pub mod replicas;
pub mod smtp;
pub mod text;
pub mod vapid;
pub mod webhook;
pub mod webpush;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use deadlines::{
    DeadlineReport, InspectionWarning, LateNotice, check_deadlines, inspection_warnings,
    late_notices, routes,
};
pub use outbox::enqueue;
pub use webpush::{SubscribeError, subscribe, unsubscribe};

use channel::{Channel, Job, Outcome};
use outbox::Claimed;

use sqlx::Row;

use crate::config::Config;
use crate::db::{DbError, now_ms};
use crate::ingest::IngestContext;
use crate::review::{ReviewError, Reviewer};
use crate::workflow::{Action, Actor, CaseState, Role, WorkflowError};

/// Most deliveries one pass of the worker claims.
const BATCH: i64 = 32;

/// Whether a fine notice ("pay by …, or contest") still applies to a case
/// in `state`: confirmed (not out yet), issued, or overdue (still to pay).
/// Paid, contested, closed (and anything else) it does not: a delivery
/// due then is dropped, not sent.
pub fn notice_applies(state: &str) -> bool {
    matches!(
        CaseState::parse(state),
        Some(CaseState::Confirmed | CaseState::NoticeIssued | CaseState::Overdue)
    )
}

/// The running notices machinery: configuration, channels, VAPID key.
pub struct Notices {
    cfg: config::NoticesConfig,
    base_url: String,
    ctx: Arc<IngestContext>,
    vapid: Option<Arc<vapid::Vapid>>,
    channels: Vec<Arc<dyn Channel>>,
    worker_id: String,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("base_url", &self.base_url)
            .field("vapid", &self.vapid)
            .field(
                "channels",
                &self.channels.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

/// The citizen app's `applicationServerKey`: the VAPID public key,
/// base64url; empty when Web Push is unavailable (the key could not be
/// read or made: see the log).
pub fn vapid_public_key(n: &Notices) -> String {
    n.vapid_public_key().unwrap_or_default().to_string()
}

/// Builds the machinery from the configuration, writes which channels this
/// deployment has (`notice_channels`, read by [`enqueue`]) and, when
/// `notices.enabled`, starts the worker (deliveries every `poll_ms`,
/// deadlines every `deadline_check_s`). A channel that cannot be set up
/// (unreadable key or secret file) is left out and logged; the server runs
/// on.
pub async fn spawn_worker(cfg: &Config, ctx: Arc<IngestContext>) -> Arc<Notices> {
    let n = Arc::new(Notices::new(cfg, ctx));
    if let Err(e) = n.sync_channels(now_ms()).await {
        tracing::error!(error = %e, "recording the notice channels failed");
    }
    if n.cfg.enabled {
        let worker = n.clone();
        tokio::spawn(async move { worker.run().await });
    }
    n
}

impl Notices {
    /// The machinery without a worker (tests drive [`Notices::deliver_due`]
    /// and [`check_deadlines`] themselves).
    pub fn new(cfg: &Config, ctx: Arc<IngestContext>) -> Notices {
        let n = &cfg.notices;
        let key_file = if n.vapid.key_file.is_empty() {
            cfg.data_dir.join("vapid-p256.pem")
        } else {
            PathBuf::from(&n.vapid.key_file)
        };
        let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
        let vapid = match vapid::Vapid::load_or_create(&key_file, &n.vapid.subject) {
            Ok(v) => {
                let v = Arc::new(v);
                channels.push(Arc::new(webpush::WebPush::new(
                    v.clone(),
                    http::Client::new(&n.ca_file),
                )));
                Some(v)
            }
            Err(e) => {
                tracing::error!(error = %e, "Web Push is off: no VAPID key");
                None
            }
        };
        if !n.webhooks.is_empty() {
            match webhook::Webhooks::new(&n.webhooks, http::Client::new(&n.ca_file)) {
                Ok(w) => channels.push(Arc::new(w)),
                Err(e) => tracing::error!(error = %e, "webhooks are off"),
            }
        }
        if let Some(s) = &n.smtp {
            match smtp::Email::new(s, &n.ca_file) {
                Ok(m) => channels.push(Arc::new(m)),
                Err(e) => tracing::error!(error = %e, "e-mail notices are off"),
            }
        }
        Notices {
            base_url: n.base_url(cfg.http.listen),
            cfg: n.clone(),
            ctx,
            vapid,
            channels,
            worker_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// `[notices.vapid]`, for checking subscriptions.
    pub fn vapid_config(&self) -> &config::VapidConfig {
        &self.cfg.vapid
    }

    /// The VAPID public key (base64url), when Web Push is on.
    pub fn vapid_public_key(&self) -> Option<&str> {
        self.vapid.as_deref().map(vapid::Vapid::public_key)
    }

    /// The names of the channels that are on.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels
            .iter()
            .flat_map(|c| c.registrations())
            .collect()
    }

    /// Records [`Notices::channel_names`] as this replica's channels
    /// (`replicas::heartbeat`): active while this replica lives, whatever
    /// other replicas have. A channel that became active with it gives the
    /// notices not yet out their deliveries on it
    /// (`outbox::enqueue_unissued`).
    pub async fn sync_channels(&self, now: i64) -> Result<(), DbError> {
        let db = &self.ctx.db;
        let added = replicas::heartbeat(db, &self.worker_id, &self.channel_names(), now).await?;
        if !added.is_empty() {
            let n = outbox::enqueue_unissued(db, None, now, 1000).await?;
            tracing::info!(channels = ?added, deliveries = n, "notice channels added");
        }
        Ok(())
    }

    async fn run(self: Arc<Self>) {
        let poll = Duration::from_millis(self.cfg.poll_ms);
        let every =
            i64::try_from(self.cfg.deadline_check_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut next_check = 0i64;
        let mut next_beat = now_ms().saturating_add(replicas::HEARTBEAT_MS);
        loop {
            let now = now_ms();
            if now >= next_beat {
                if let Err(e) = self.sync_channels(now).await {
                    tracing::warn!(error = %e, "notice channels heartbeat: database");
                }
                next_beat = now.saturating_add(replicas::HEARTBEAT_MS);
            }
            if let Err(e) = self.deliver_due(now).await {
                tracing::warn!(error = %e, "notice deliveries: database");
            }
            if now >= next_check {
                match check_deadlines(&self.ctx, now).await {
                    Ok(r) if !r.marked_overdue.is_empty() => {
                        tracing::info!(n = r.marked_overdue.len(), "cases overdue after 20 days")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "notice deadlines: database"),
                }
                next_check = now.saturating_add(every);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One pass at `now`: claims due deliveries, makes one attempt each (in
    /// parallel), records the outcomes, and moves the cases whose first
    /// channel got through. Returns the number attempted.
    pub async fn deliver_due(&self, now: i64) -> Result<usize, DbError> {
        let db = &self.ctx.db;
        // Cases whose notice went out while a worker stopped before it
        // could record it.
        for (event_id, channel, sent_at) in outbox::sent_not_issued(db, 100).await? {
            self.issue(&event_id, &channel, sent_at.unwrap_or(now))
                .await;
        }
        let lease_ms = i64::try_from(self.cfg.lease_s * 1000).unwrap_or(120_000);
        // Only what this replica can send: a delivery for a channel or
        // partner it lacks waits for a replica that has it.
        let names = self.channel_names();
        let claimed =
            replicas::claim_sendable(db, &self.worker_id, &names, now, lease_ms, BATCH).await?;
        let n = claimed.len();
        let results = futures::future::join_all(claimed.iter().map(|c| self.attempt(c, now))).await;
        for r in results {
            r?;
        }
        Ok(n)
    }

    async fn attempt(&self, c: &Claimed, now: i64) -> Result<(), DbError> {
        let db = &self.ctx.db;
        // "Please pay by …" is not sent for a case that was paid,
        // contested or closed since the notice was written (a retry of a
        // channel that failed before).
        let case = sqlx::query("SELECT state, event_time_ms FROM events WHERE event_id = $1")
            .bind(&c.event_id)
            .fetch_optional(db.pool())
            .await?;
        let message = match &c.message_id {
            Some(id) => {
                // An answer to a contest states the deadline enforced if
                // this attempt is the first through.
                outbox::answer_respond_by_at_send(db, id, now).await?;
                Some(followup::load(db, id).await?)
            }
            None => None,
        };
        if let Some(case) = case {
            let state: String = case.try_get(0)?;
            let event_ms: i64 = case.try_get(1)?;
            // A withdrawal is always told; the rest only while the fine
            // stands, and a fine notice only within the limitation period.
            let told_anyway = matches!(&message, Some(Some(m)) if m.kind == followup::WITHDRAWN);
            let why = if told_anyway {
                None
            } else if !notice_applies(&state) {
                Some(format!(
                    "not sent: the case is {state}, the notice no longer applies"
                ))
            } else if message.is_none() && now > crate::workflow::limitation_ends_at(event_ms) {
                Some(format!(
                    "not sent: the limitation period ended at {}",
                    text::rfc3339(crate::workflow::limitation_ends_at(event_ms))
                ))
            } else {
                None
            };
            if let Some(reason) = why {
                if outbox::mark_dropped(db, c, &self.worker_id, &reason).await? {
                    tracing::info!(event_id = %c.event_id, channel = %c.channel,
                        target = %c.target, %state, %reason, "notice delivery dropped");
                }
                return Ok(());
            }
        }
        if message.is_none() {
            // The deadline the text states is the one enforced if this
            // attempt is the first through: 20 days from now, the time the
            // case is then issued at.
            outbox::respond_by_at_send(db, &c.event_id, now).await?;
        }
        // A notice states the case as its device signed it: a row whose
        // machine columns were changed since (an edit in the database) is
        // not sent, and waits — retried, then given up and left to a
        // person — while the console shows the case as altered. A
        // withdrawal is still told.
        let withdrawal = matches!(&message, Some(Some(m)) if m.kind == followup::WITHDRAWN);
        let altered = match withdrawal {
            true => None,
            false => crate::integrity::check(db.pool(), &c.event_id)
                .await?
                .filter(|d| !d.is_empty()),
        };
        let outcome = if let Some(diffs) = altered {
            Outcome::Retry(format!(
                "not sent: the case record differs from what its device signed ({})",
                crate::integrity::describe(&diffs)
            ))
        } else {
            self.outcome(c, db, &message, now).await?
        };
        let (event_id, channel, target, attempt) = (&c.event_id, &c.channel, &c.target, c.attempt);
        match outcome {
            Outcome::Sent => {
                if outbox::mark_sent(db, c, &self.worker_id, now).await? && c.message_id.is_none() {
                    tracing::info!(%event_id, %channel, %target, attempt, "notice delivered");
                    // At the attempt's time: the text's deadline was
                    // counted from it.
                    self.issue(event_id, channel, now).await;
                }
            }
            Outcome::Retry(e) if attempt < self.cfg.max_attempts => {
                let wait = outbox::backoff_ms(
                    attempt,
                    self.cfg.retry_base_ms,
                    self.cfg.retry_max_ms,
                    rand::random::<f64>(),
                );
                let at = now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
                tracing::warn!(%event_id, %channel, %target, attempt, wait_ms = wait, error = %e,
                    "notice delivery failed; will retry");
                outbox::mark_failed(db, c, &self.worker_id, &e, false, at).await?;
            }
            Outcome::Retry(e) | Outcome::Permanent(e) => {
                tracing::error!(%event_id, %channel, %target, attempt, error = %e,
                    "notice delivery given up");
                outbox::mark_failed(db, c, &self.worker_id, &e, true, now).await?;
            }
        }
        Ok(())
    }

    /// What sending delivery `c` came to (its text, its channel).
    async fn outcome(
        &self,
        c: &Claimed,
        db: &crate::db::Db,
        message: &Option<Option<followup::Message>>,
        now: i64,
    ) -> Result<Outcome, DbError> {
        Ok(
            match (
                text::load(db, &c.event_id).await?,
                self.channels.iter().find(|ch| ch.name() == c.channel),
                message,
            ) {
                (None, _, _) | (_, _, Some(None)) => {
                    Outcome::Permanent("the notice is gone".into())
                }
                (_, None, _) => Outcome::Retry(format!(
                    "channel `{}` is not configured on this server",
                    c.channel
                )),
                (Some(facts), Some(ch), message) => {
                    let message = message.as_ref().and_then(Option::as_ref);
                    let text = match message {
                        Some(m) => {
                            followup::render(&facts, m, &self.cfg.authority, &self.base_url, None)
                        }
                        None => text::render(&facts, &self.cfg.authority, &self.base_url, None),
                    };
                    let job = Job {
                        delivery: c,
                        facts: &facts,
                        message,
                        text: &text,
                        db,
                        authority: &self.cfg.authority,
                        base_url: &self.base_url,
                        now,
                    };
                    ch.deliver(&job).await
                }
            },
        )
    }

    /// Moves the case to `notice_issued` (if it is still `confirmed`) at
    /// `now` and records when and through which channel the notice went
    /// out; `now` is the attempt's time, which the text's deadline was
    /// counted from, so `deadlines::effective_deadline` gives that date.
    async fn issue(&self, event_id: &str, channel: &str, now: i64) {
        let ctx = &self.ctx;
        let reviewer = Reviewer {
            db: &ctx.db,
            grammar: ctx.grammar,
            fines: &ctx.fines,
            registry: ctx.registry.as_deref(),
        };
        let system = Actor {
            id: outbox::ACTOR.into(),
            role: Role::System,
        };
        match reviewer
            .act(event_id, &Action::IssueNotice, &system, "", now)
            .await
        {
            Ok(_) | Err(ReviewError::Refused(WorkflowError::WrongState { .. })) => {
                if let Err(e) = outbox::record_issued(&ctx.db, event_id, channel, now).await {
                    tracing::warn!(%event_id, error = %e, "recording the notice issued failed");
                }
            }
            // The next pass tries again (sent_not_issued).
            Err(e) => tracing::warn!(%event_id, error = %e, "moving the case to notice_issued"),
        }
    }
}
