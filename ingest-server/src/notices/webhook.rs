//! Signed webhooks to partner apps (VNeID, the city's app): one JSON POST
//! per notice and partner, which the partner shows to the person it knows
//! by national ID number.
//!
//! The scheme (also in `api/openapi.json`, `webhooks.fineNotice`):
//!
//! - `X-TV-Timestamp`: Unix seconds when this attempt was signed;
//! - `X-TV-Signature`: `v1=` and the hex HMAC-SHA256, keyed with the
//!   partner's secret, of `{timestamp}.{body}` (the exact bytes sent);
//! - `X-TV-Delivery`: the delivery's idempotency key, the same on every
//!   retry of this notice to this partner.
//!
//! A receiver recomputes the HMAC over the raw body, compares in constant
//! time, rejects a timestamp more than 5 minutes from its clock (so a
//! captured request cannot be replayed later), and answers 2xx for a new
//! or an already-seen `X-TV-Delivery` (so a retry after a lost answer does
//! not notify the person twice). 408, 429 and 5xx are retried with backoff;
//! other statuses give the delivery up.
//!
//! Personal data: the payload carries the owner's national ID number (how
//! the partner finds the person) and VNeID link, never name or address.

use async_trait::async_trait;
use bytes::Bytes;
use ring::hmac;
use serde_json::json;

use super::channel::{self, Channel, Job, Outcome};
use super::config::WebhookConfig;
use super::http::Client;
use super::text;

/// A configured partner with its secret read.
struct Partner {
    name: String,
    url: String,
    key: hmac::Key,
}

/// The webhook channel: every configured partner.
pub struct Webhooks {
    partners: Vec<Partner>,
    client: Client,
}

impl Webhooks {
    /// From the configuration (secrets read now; the configuration was
    /// validated, so a failure here is a file that changed since).
    pub fn new(hooks: &[WebhookConfig], client: Client) -> Result<Webhooks, String> {
        let mut partners = Vec::new();
        for h in hooks {
            let secret = h
                .secret()
                .map_err(|e| format!("notices.webhooks {}: {e}", h.name))?;
            partners.push(Partner {
                name: h.name.clone(),
                url: h.url.clone(),
                key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            });
        }
        Ok(Webhooks { partners, client })
    }
}

/// `v1=` and the hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    sign(&key, timestamp, body)
}

fn sign(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// The JSON body of a notice webhook (schema `FineNoticeWebhook`).
pub fn payload(job: &Job<'_>, national_id: &str, vneid: Option<&str>) -> serde_json::Value {
    let f = job.facts;
    let mut body = json!({
        "type": "fine_notice",
        "delivery_id": job.delivery.idempotency_key,
        "notice_id": f.notice_id,
        "event_id": f.event_id,
        "sent_at": text::rfc3339(crate::db::now_ms()),
        "recipient": {"national_id": national_id, "vneid": vneid},
        "vehicle": {
            "plate": f.plate,
            "plate_display": f.plate_display,
            "plate_colour": f.plate_colour,
            "vehicle_class": f.vehicle_class,
        },
        "violation": {
            "code": f.violation,
            "description": text::violation_text(&f.violation),
            "time": text::rfc3339(f.detected_at),
            "site": f.site,
            "camera": f.camera,
            "speed_kmh": f.speed_kmh,
            "speed_limit_kmh": f.speed_limit_kmh,
        },
        "fine": {
            "amount_vnd": f.amount_vnd,
            "licence_points": f.licence_points,
            "schedule": f.fine_schedule,
            "article": f.fine_ref,
            "legal_basis": f.fine_ref.as_deref().map(|r| text::article(r, f.fine_schedule.as_deref())),
        },
        "respond_by": text::rfc3339(f.respond_by),
        "case_url": job.text.url,
        "text": {"title": job.text.title, "body": job.text.body, "short": job.text.short},
    });
    // A follow-up message (`super::followup`): its own type, the reason,
    // and for a contest not accepted the new deadline.
    if let Some(m) = job.message {
        body["type"] = super::followup::webhook_type(m).into();
        body["message_id"] = m.message_id.clone().into();
        body["reason"] = m.reason.clone().into();
        if let Some(by) = m.respond_by {
            body["respond_by"] = text::rfc3339(by).into();
        }
    }
    body
}

#[async_trait]
impl Channel for Webhooks {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn registrations(&self) -> Vec<String> {
        self.partners
            .iter()
            .map(|p| format!("webhook:{}", p.name))
            .collect()
    }

    async fn deliver(&self, job: &Job<'_>) -> Outcome {
        // Not configured here: another replica may have it (a rolling
        // update); never given up for that (`replicas.rs` keeps such a
        // delivery from being claimed here at all).
        let Some(p) = self.partners.iter().find(|p| p.name == job.delivery.target) else {
            return Outcome::Retry(format!(
                "partner `{}` is not configured on this server",
                job.delivery.target
            ));
        };
        let purpose = format!("send the fine notice to partner app {}", p.name);
        let owner = match channel::owner_contact(job.db, job.facts, &purpose, job.now).await {
            Ok(Some(o)) => o,
            Ok(None) => return Outcome::Permanent("the owner is not in the registry".into()),
            Err(e) => return Outcome::Retry(format!("reading the owner: {e}")),
        };
        let body = payload(job, &owner.national_id, owner.vneid.as_deref()).to_string();
        // Signed at the moment of sending (the receiver checks it against
        // its clock), whatever time the worker was asked to work at.
        let ts = crate::db::now_ms().div_euclid(1000);
        let headers = [
            ("content-type", "application/json".to_string()),
            ("x-tv-timestamp", ts.to_string()),
            ("x-tv-signature", sign(&p.key, ts, body.as_bytes())),
            ("x-tv-delivery", job.delivery.idempotency_key.clone()),
        ];
        match self.client.post(&p.url, &headers, Bytes::from(body)).await {
            Ok(a) => channel::http_outcome(a.status, &format!("partner {}", p.name)),
            Err(e) => Outcome::Retry(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"key", b'1700000000.{"a":1}', hashlib.sha256).
        let sig = signature(b"key", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "v1=a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
        );
        assert_ne!(sig, signature(b"key", 1_700_000_001, br#"{"a":1}"#));
    }
}
