//! The channel adapters' common shape: a [`Channel`] takes one claimed
//! delivery of one notice and says how it went ([`Outcome`]). The worker
//! does the rest (leases, retries, backoff, moving the case), so an adapter
//! only speaks its protocol; a new channel (SMS, a paper-mail bureau) is
//! one more implementation.
//!
//! Adapters read owner data only when their protocol needs it, through
//! [`owner_contact`], which logs the read in `registry_access_log`.

use async_trait::async_trait;
use sqlx::Row;

use super::outbox::{self, Claimed};
use super::text::{NoticeFacts, NoticeText};
use crate::db::{Db, DbError};

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it.
    Sent,
    /// Not now (network, 5xx, 429, a 4xx SMTP reply): try again later.
    Retry(String),
    /// Never (the subscription is gone, the address is refused, the
    /// receiver rejects the request as such): give up now.
    Permanent(String),
}

/// One delivery to make.
pub struct Job<'a> {
    /// The claimed row (target, idempotency key, attempt).
    pub delivery: &'a Claimed,
    /// The notice's facts.
    pub facts: &'a NoticeFacts,
    /// The follow-up message this delivery carries (`None`: the notice).
    pub message: Option<&'a super::followup::Message>,
    /// The notice as the owner reads it (not addressed by name).
    pub text: &'a NoticeText,
    /// The database (subscriptions, owner contact).
    pub db: &'a Db,
    /// The sending authority (`notices.authority`).
    pub authority: &'a str,
    /// The citizen app's base URL.
    pub base_url: &'a str,
    /// Now, Unix ms.
    pub now: i64,
}

impl Job<'_> {
    /// The text this delivery carries, addressed to `addressee` by name
    /// (e-mail) or to nobody (the rendered [`Job::text`]).
    pub fn render(&self, addressee: Option<&str>) -> NoticeText {
        match self.message {
            Some(m) => {
                super::followup::render(self.facts, m, self.authority, self.base_url, addressee)
            }
            None => super::text::render(self.facts, self.authority, self.base_url, addressee),
        }
    }
}

/// A way to reach the owner.
#[async_trait]
pub trait Channel: Send + Sync {
    /// The `channel` value of its delivery rows.
    fn name(&self) -> &'static str;
    /// The names this channel registers in `notice_channels` (`webpush`,
    /// `email`, `webhook:{partner}`).
    fn registrations(&self) -> Vec<String>;
    /// Makes one attempt.
    async fn deliver(&self, job: &Job<'_>) -> Outcome;
}

/// The owner data a channel may need.
#[derive(Debug, Clone, Default)]
pub struct OwnerContact {
    /// Full name (e-mail greeting).
    pub full_name: String,
    /// National ID number (how partner apps find the person).
    pub national_id: String,
    /// E-mail address.
    pub email: Option<String>,
    /// VNeID account link.
    pub vneid: Option<String>,
}

/// Reads the owner of a notice for `purpose`, logging the read (found or
/// not) under the notices actor.
pub async fn owner_contact(
    db: &Db,
    facts: &NoticeFacts,
    purpose: &str,
    now: i64,
) -> Result<Option<OwnerContact>, DbError> {
    let Some(owner_id) = &facts.owner_id else {
        return Ok(None);
    };
    // The log entry is written first, in a transaction that holds the
    // write lock from its start (`Db::begin_write`).
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO registry_access_log (id, at, actor, plate, purpose, event_id, outcome) \
         SELECT $1, $2, $3, $4, $5, $6, CASE WHEN EXISTS \
         (SELECT 1 FROM owners WHERE owner_id = $7) THEN 'found' ELSE 'not_found' END",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(now)
    .bind(outbox::ACTOR)
    .bind(&facts.plate)
    .bind(purpose)
    .bind(&facts.event_id)
    .bind(owner_id)
    .execute(&mut *tx)
    .await?;
    let row =
        sqlx::query("SELECT full_name, national_id, email, vneid FROM owners WHERE owner_id = $1")
            .bind(owner_id)
            .fetch_optional(&mut *tx)
            .await?;
    let found = match row {
        Some(r) => Some(OwnerContact {
            full_name: r.try_get(0)?,
            national_id: r.try_get(1)?,
            email: r
                .try_get::<Option<String>, _>(2)?
                .filter(|e| !e.trim().is_empty()),
            vneid: r.try_get(3)?,
        }),
        None => None,
    };
    tx.commit().await?;
    Ok(found)
}

/// The outcome for an HTTP status from a push service or webhook receiver:
/// 2xx sent; 408, 425, 429 and 5xx retried; any other 4xx permanent (the
/// request itself is wrong and would be wrong again).
pub fn http_outcome(status: u16, what: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        408 | 425 | 429 | 500..=599 => Outcome::Retry(format!("{what} answered {status}")),
        _ => Outcome::Permanent(format!("{what} answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(http_outcome(201, "x"), Outcome::Sent);
        assert!(matches!(http_outcome(503, "x"), Outcome::Retry(_)));
        assert!(matches!(http_outcome(429, "x"), Outcome::Retry(_)));
        assert!(matches!(http_outcome(400, "x"), Outcome::Permanent(_)));
        assert!(matches!(http_outcome(301, "x"), Outcome::Permanent(_)));
    }
}
