//! Web Push to the citizen web app (RFC 8030), authenticated with VAPID
//! (RFC 8292, [`super::vapid`]) and encrypted for the subscribed browser
//! (RFC 8291, [`super::ece`]); and the owner's subscriptions.
//!
//! The citizen app subscribes a browser with the server's public key
//! ([`super::vapid_public_key`]) and hands the browser's subscription
//! (`PushSubscription.toJSON()`: endpoint, keys.p256dh, keys.auth) to
//! [`subscribe`] under the national ID number its session carries. When a
//! case of a vehicle registered to that number is confirmed, each of the
//! owner's subscriptions gets one delivery. Signing out of the citizen app
//! removes the subscriptions that browser registered ([`unsubscribe_ids`],
//! [`unsubscribe`]): on a shared phone the next person does not get the
//! previous one's notices.
//!
//! A push is a POST of the encrypted message to the subscription's
//! endpoint with `TTL` (four weeks: the notice matters until it is read),
//! `Urgency: normal`, and `Topic` set to the delivery's idempotency key, so
//! a retry replaces a copy still waiting at the push service instead of
//! showing twice. 201 is sent; 404 and 410 mean the browser unsubscribed:
//! the subscription is removed and the delivery given up; 429 and 5xx are
//! retried.
//!
//! The message is the JSON the citizen app's service worker shows
//! (`src/citizen/sw.js`): `{title, body, url, event_id, tag}`: plate,
//! violation, time, place, amount and deadline; no name.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use ring::rand::SystemRandom;
use sqlx::Row;
use thiserror::Error;

use super::channel::{self, Channel, Job, Outcome};
use super::http::Client;
use super::vapid::Vapid;
use crate::db::{Db, DbError, now_ms};

/// Why a subscription was not stored.
#[derive(Debug, Error)]
pub enum SubscribeError {
    /// The subscription JSON or the national ID is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for SubscribeError {
    fn from(e: sqlx::Error) -> Self {
        SubscribeError::Db(DbError::Sqlx(e))
    }
}

#[derive(serde::Deserialize)]
struct SubscriptionJson {
    endpoint: String,
    keys: Keys,
}

#[derive(serde::Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim_end_matches('=')).ok()
}

/// Most push subscriptions (devices) one person may have.
pub const MAX_SUBSCRIPTIONS: usize = 10;

/// Stores a browser's push subscription for the owner with
/// `owner_national_id` (12-digit CCCD or 9-digit CMND), its endpoint on one
/// of the push services `vapid` allows. The same endpoint given again by
/// the same person replaces the keys (a browser has one subscription per
/// server); one held by someone else is refused. Returns the subscription
/// id.
pub async fn subscribe(
    db: &Db,
    vapid: &super::config::VapidConfig,
    owner_national_id: &str,
    subscription_json: &str,
) -> Result<String, SubscribeError> {
    let bad = |m: &str| SubscribeError::Invalid(m.to_string());
    let nid = owner_national_id.trim();
    if !(nid.len() == 12 || nid.len() == 9) || !nid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("national ID: 12 digits (CCCD) or 9 (CMND)"));
    }
    if subscription_json.len() > 8192 {
        return Err(bad("subscription: longer than 8 KiB"));
    }
    let s: SubscriptionJson = serde_json::from_str(subscription_json)
        .map_err(|e| SubscribeError::Invalid(format!("subscription: {e}")))?;
    if s.endpoint.len() > 2048 {
        return Err(bad("endpoint: longer than 2048 characters"));
    }
    let url = super::config::outgoing_url(&s.endpoint)
        .map_err(|e| SubscribeError::Invalid(format!("endpoint: {e}")))?;
    if !vapid.allows_endpoint_host(url.host_str().unwrap_or_default()) {
        return Err(bad("endpoint: not a known push service"));
    }
    let p256dh = unb64(&s.keys.p256dh).ok_or_else(|| bad("keys.p256dh: not base64url"))?;
    if p256dh.len() != 65 || p256dh[0] != 4 {
        return Err(bad("keys.p256dh: not an uncompressed P-256 point"));
    }
    let auth = unb64(&s.keys.auth).ok_or_else(|| bad("keys.auth: not base64url"))?;
    if auth.len() != 16 {
        return Err(bad("keys.auth: not 16 bytes"));
    }
    let held: Vec<String> =
        sqlx::query_scalar("SELECT endpoint FROM push_subscriptions WHERE national_id = $1")
            .bind(nid)
            .fetch_all(db.pool())
            .await?;
    if held.len() >= MAX_SUBSCRIPTIONS && !held.contains(&s.endpoint) {
        return Err(bad("too many devices subscribed; unsubscribe one first"));
    }
    // The same endpoint again replaces the keys, for the same person only:
    // an endpoint someone else holds is not taken over.
    sqlx::query(
        "INSERT INTO push_subscriptions (subscription_id, national_id, endpoint, p256dh, auth, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (endpoint) DO UPDATE SET \
         p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at \
         WHERE push_subscriptions.national_id = excluded.national_id",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(nid)
    .bind(&s.endpoint)
    .bind(B64.encode(&p256dh))
    .bind(B64.encode(&auth))
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    let row = sqlx::query(
        "SELECT subscription_id, national_id FROM push_subscriptions WHERE endpoint = $1",
    )
    .bind(&s.endpoint)
    .fetch_one(db.pool())
    .await?;
    let owner: String = row.try_get(1)?;
    if owner != nid {
        return Err(bad("endpoint: already subscribed for someone else"));
    }
    Ok(row.try_get(0)?)
}

/// Removes the subscription with `endpoint` of that owner. `true` when
/// there was one.
pub async fn unsubscribe(
    db: &Db,
    owner_national_id: &str,
    endpoint: &str,
) -> Result<bool, DbError> {
    let n = sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1 AND national_id = $2")
        .bind(endpoint)
        .bind(owner_national_id.trim())
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Removes the subscriptions with these ids of that owner: the ones one
/// browser registered, which the citizen app forgets when its citizen signs
/// out (`citizen/push.rs`). How many there were.
pub async fn unsubscribe_ids(
    db: &Db,
    owner_national_id: &str,
    subscription_ids: &[&str],
) -> Result<u64, DbError> {
    let mut n = 0;
    for id in subscription_ids {
        n += sqlx::query(
            "DELETE FROM push_subscriptions WHERE subscription_id = $1 AND national_id = $2",
        )
        .bind(*id)
        .bind(owner_national_id.trim())
        .execute(db.pool())
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// How many subscriptions an owner has (for the citizen app's settings).
pub async fn subscription_count(db: &Db, owner_national_id: &str) -> Result<i64, DbError> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM push_subscriptions WHERE national_id = $1")
            .bind(owner_national_id.trim())
            .fetch_one(db.pool())
            .await?
            .try_get(0)?,
    )
}

/// How long a push service keeps an undelivered message (4 weeks).
pub const TTL_S: u32 = 28 * 86_400;

/// The Web Push channel.
pub struct WebPush {
    vapid: std::sync::Arc<Vapid>,
    client: Client,
    rng: SystemRandom,
}

impl WebPush {
    /// With the server's VAPID key.
    pub fn new(vapid: std::sync::Arc<Vapid>, client: Client) -> WebPush {
        WebPush {
            vapid,
            client,
            rng: SystemRandom::new(),
        }
    }
}

#[async_trait]
impl Channel for WebPush {
    fn name(&self) -> &'static str {
        "webpush"
    }

    fn registrations(&self) -> Vec<String> {
        vec!["webpush".into()]
    }

    async fn deliver(&self, job: &Job<'_>) -> Outcome {
        let row = sqlx::query(
            "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE subscription_id = $1",
        )
        .bind(&job.delivery.target)
        .fetch_optional(job.db.pool())
        .await;
        let (endpoint, p256dh, auth): (String, String, String) = match row {
            Ok(Some(r)) => match (r.try_get(0), r.try_get(1), r.try_get(2)) {
                (Ok(e), Ok(p), Ok(a)) => (e, p, a),
                _ => return Outcome::Retry("reading the subscription".into()),
            },
            Ok(None) => return Outcome::Permanent("the subscription was removed".into()),
            Err(e) => return Outcome::Retry(format!("reading the subscription: {e}")),
        };
        let message = serde_json::json!({
            "title": job.text.title,
            "body": job.text.short,
            "url": job.text.url,
            "event_id": job.facts.event_id,
            "tag": format!("notice-{}", job.facts.event_id),
        })
        .to_string();
        let (Some(ua), Some(secret)) = (unb64(&p256dh), unb64(&auth)) else {
            return Outcome::Permanent("stored subscription keys are not base64url".into());
        };
        let body = match super::ece::encrypt(message.as_bytes(), &ua, &secret, &self.rng) {
            Ok(b) => b,
            Err(e) => return Outcome::Permanent(format!("encrypting: {e}")),
        };
        let url = match super::config::outgoing_url(&endpoint) {
            Ok(u) => u,
            Err(e) => return Outcome::Permanent(format!("endpoint: {e}")),
        };
        let authorization = match self.vapid.authorization(&url, now_ms().div_euclid(1000)) {
            Ok(a) => a,
            Err(e) => return Outcome::Retry(e),
        };
        let headers = [
            ("authorization", authorization),
            ("ttl", TTL_S.to_string()),
            ("content-encoding", "aes128gcm".to_string()),
            ("content-type", "application/octet-stream".to_string()),
            ("urgency", "normal".to_string()),
            ("topic", job.delivery.idempotency_key.clone()),
        ];
        let answer = match self
            .client
            .post(&endpoint, &headers, Bytes::from(body))
            .await
        {
            Ok(a) => a,
            Err(e) => return Outcome::Retry(e),
        };
        if matches!(answer.status, 404 | 410) {
            let gone = sqlx::query("DELETE FROM push_subscriptions WHERE subscription_id = $1")
                .bind(&job.delivery.target)
                .execute(job.db.pool())
                .await;
            if let Err(e) = gone {
                tracing::warn!(error = %e, "removing an expired push subscription failed");
            }
            return Outcome::Permanent(format!(
                "push service answered {}: the subscription is gone and was removed",
                answer.status
            ));
        }
        channel::http_outcome(answer.status, "push service")
    }
}
