//! What the owner is told after the fine notice, over real sockets against
//! the real server (`app::start`, the notice worker driven by the test's
//! clock): police upholding a contest must give a reason, and the owner
//! gets it with the new deadline to respond; police withdrawing a fine
//! must give a reason and may not while a payment is in flight, the
//! deliveries not yet sent are dropped, and an owner whose notice went out
//! is told the fine was withdrawn, one who never got it is not; police
//! accepting a contest (cancelling the fine) tell the owner so; a fine
//! notice is not sent once the limitation period has run out.

mod common;
#[allow(dead_code)]
mod notices_support;

use std::path::Path;

use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::Config;
use ingest_server::db::now_ms;
use ingest_server::notices::Notices;
use ingest_server::notices::outbox::respond_until;
use ingest_server::notices::text;
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role, WorkflowError};
use notices_support::*;
use serde_json::Value;
use sqlx::Row;

const SITE: &str = "hn-hoankiem-trangtien";
const SECRET: &str = "vneid-secret-0123456789";
const DAY: i64 = 86_400_000;

fn actor(id: &str, role: Role) -> Actor {
    Actor {
        id: id.into(),
        role,
    }
}

/// A server whose notices go to one partner app (`/vneid` of `url`), with
/// no worker: the test drives the passes.
async fn start(dir: &Path, url: &str) -> (Running, Config) {
    let mut cfg = local_config(dir);
    cfg.notices.enabled = false;
    cfg.notices.public_base_url = "https://phatnguoi.example.gov.vn".into();
    cfg.notices.webhooks = vec![hook("vneid", format!("{url}/vneid"), SECRET)];
    cfg.validate().unwrap();
    (app::start(&cfg).await.unwrap(), cfg)
}

fn reviewer(server: &Running) -> Reviewer<'_> {
    let ctx = server.ingestor.context();
    Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    }
}

async fn confirm(server: &Running, id: &str, at: i64) {
    let r = reviewer(server);
    let op = actor("op.an", Role::Operator);
    r.act(id, &Action::Claim, &op, "", at).await.unwrap();
    r.act(id, &Action::Accept, &op, "", at).await.unwrap();
    r.act(id, &Action::Confirm, &actor("csgt", Role::Police), "", at)
        .await
        .unwrap();
}

async fn state(server: &Running, id: &str) -> String {
    sqlx::query("SELECT state FROM events WHERE event_id = $1")
        .bind(id)
        .fetch_one(server.ingestor.context().db.pool())
        .await
        .unwrap()
        .get(0)
}

/// The webhooks the partner got for case `id`, oldest first.
fn bodies(rx: &Receiver, id: &str) -> Vec<Value> {
    rx.got("/vneid")
        .iter()
        .map(|g| verify_webhook(g, SECRET))
        .filter(|b| b["event_id"] == id)
        .collect()
}

/// Delivery states of case `id`: (message kind or "notice", state).
async fn deliveries(server: &Running, id: &str) -> Vec<(String, String)> {
    let rows = sqlx::query(
        "SELECT COALESCE(m.kind, 'notice'), d.state FROM notice_deliveries d \
         LEFT JOIN notice_messages m ON m.message_id = d.message_id \
         WHERE d.event_id = $1 ORDER BY d.created_at, m.kind",
    )
    .bind(id)
    .fetch_all(server.ingestor.context().db.pool())
    .await
    .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upholding_a_contest_needs_a_reason_and_tells_the_owner_why_and_by_when() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[]).await;
    let (server, cfg) = start(dir.path(), &url).await;
    let ctx = server.ingestor.context().clone();
    let n = Notices::new(&cfg, ctx.clone());
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let t0 = now_ms();
    confirm(&server, &id, t0).await;
    n.deliver_due(t0 + 1).await.unwrap();
    assert_eq!(state(&server, &id).await, "notice_issued");
    assert_eq!(bodies(&rx, &id).len(), 1, "the notice");

    let r = reviewer(&server);
    let citizen = actor("citizen", Role::System);
    let police = actor("csgt", Role::Police);
    r.act(&id, &Action::Contest, &citizen, "", t0 + DAY)
        .await
        .unwrap();
    assert!(matches!(
        r.act(&id, &Action::Uphold, &police, " ", t0 + 2 * DAY)
            .await,
        Err(ReviewError::Refused(WorkflowError::ReasonRequired(
            "uphold"
        )))
    ));
    let why = "Hình ảnh cho thấy rõ xe vượt đèn đỏ";
    let upheld = t0 + 2 * DAY;
    r.act(&id, &Action::Uphold, &police, why, upheld)
        .await
        .unwrap();
    assert_eq!(state(&server, &id).await, "notice_issued");
    // Sent a day after the uphold (the partner was down, say): the 20 days
    // run from when it reached the owner, and the text says that date.
    let sent = upheld + DAY;
    n.deliver_due(sent).await.unwrap();

    let got = bodies(&rx, &id);
    assert_eq!(got.len(), 2, "the notice, then the answer to the contest");
    let b = &got[1];
    assert_eq!(b["type"], "contest_rejected");
    assert_eq!(b["reason"], why);
    let deadline = respond_until(sent);
    let r = ingest_server::notices::check_deadlines(&ctx, deadline)
        .await
        .unwrap();
    assert!(r.marked_overdue.is_empty(), "{r:?}");
    let r = ingest_server::notices::check_deadlines(&ctx, deadline + 1)
        .await
        .unwrap();
    assert_eq!(r.marked_overdue, std::slice::from_ref(&id), "{r:?}");
    assert_eq!(b["respond_by"], text::rfc3339(deadline));
    let body = b["text"]["body"].as_str().unwrap();
    for want in [
        "khiếu nại không được chấp nhận",
        why,
        &format!("chậm nhất đến hết ngày {}", text::date(deadline)),
        "30A-123.45",
    ] {
        assert!(body.contains(want), "{want:?} missing in {body}");
    }
    assert_ne!(
        got[0]["delivery_id"], got[1]["delivery_id"],
        "its own delivery id"
    );
    // The answer is not sent again.
    n.deliver_due(sent + DAY).await.unwrap();
    assert_eq!(bodies(&rx, &id).len(), 2);
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{id}"))
        .await
        .unwrap();
    let entry = trail.iter().find(|e| e.action == "case.uphold").unwrap();
    assert!(
        entry.detail.contains("\"owner_told\":true"),
        "{}",
        entry.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_fine_drops_what_is_unsent_and_tells_an_owner_who_was_notified() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[]).await;
    let (server, cfg) = start(dir.path(), &url).await;
    let ctx = server.ingestor.context().clone();
    let n = Notices::new(&cfg, ctx.clone());
    let ids = seed::seed(&server, SITE, 2).await;
    let (told, unsent) = (ids[0].clone(), ids[1].clone());
    let t0 = now_ms();
    confirm(&server, &told, t0).await;
    n.deliver_due(t0 + 1).await.unwrap();
    assert_eq!(state(&server, &told).await, "notice_issued");
    // The second is confirmed after that pass: its notice is not out yet.
    confirm(&server, &unsent, t0 + 2).await;

    let r = reviewer(&server);
    let police = actor("csgt", Role::Police);
    let operator = actor("op.an", Role::Operator);
    let why = "Xe đã được chuyển nhượng trước ngày vi phạm";
    assert!(matches!(
        r.act(&told, &Action::Withdraw, &police, "", t0 + DAY).await,
        Err(ReviewError::Refused(WorkflowError::ReasonRequired(
            "withdraw"
        )))
    ));
    assert!(matches!(
        r.act(&told, &Action::Withdraw, &operator, why, t0 + DAY)
            .await,
        Err(ReviewError::Refused(WorkflowError::RoleForbidden { .. }))
    ));
    // A payment order pending at the gateway: settle it first.
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at) VALUES ('t-1', $1, 'vnpay', 19000000, 'pending', \
         '203.0.113.7', $2, $2, $2)",
    )
    .bind(&told)
    .bind(t0)
    .execute(ctx.db.pool())
    .await
    .unwrap();
    let refused = r
        .act(&told, &Action::Withdraw, &police, why, t0 + DAY)
        .await;
    assert!(
        matches!(&refused, Err(ReviewError::Invalid(m)) if m.contains("payment")),
        "{refused:?}"
    );
    assert_eq!(state(&server, &told).await, "notice_issued");
    sqlx::query("UPDATE payments SET state = 'cancelled' WHERE txn_ref = 't-1'")
        .execute(ctx.db.pool())
        .await
        .unwrap();

    let at = t0 + DAY;
    r.act(&told, &Action::Withdraw, &police, why, at)
        .await
        .unwrap();
    r.act(&unsent, &Action::Withdraw, &police, why, at)
        .await
        .unwrap();
    assert_eq!(state(&server, &told).await, "closed");
    assert_eq!(state(&server, &unsent).await, "closed");
    assert_eq!(
        deliveries(&server, &unsent).await,
        [("notice".to_string(), "dropped".to_string())],
        "the unsent notice is dropped, and nobody is told of a fine they never heard of"
    );
    n.deliver_due(at + 1).await.unwrap();
    assert!(bodies(&rx, &unsent).is_empty());
    let got = bodies(&rx, &told);
    assert_eq!(got.len(), 2, "the notice, then the withdrawal");
    assert_eq!(got[1]["type"], "fine_withdrawn");
    assert_eq!(got[1]["reason"], why);
    let body = got[1]["text"]["body"].as_str().unwrap();
    assert!(
        body.contains("đã được huỷ bỏ") && body.contains(why),
        "{body}"
    );
    // Closed is final: nothing more to withdraw.
    assert!(matches!(
        r.act(&told, &Action::Withdraw, &police, why, at + 1).await,
        Err(ReviewError::Refused(WorkflowError::WrongState { .. }))
    ));
    for (id, told_owner) in [(&told, true), (&unsent, false)] {
        let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{id}"))
            .await
            .unwrap();
        let e = trail.iter().find(|e| e.action == "case.withdraw").unwrap();
        assert_eq!((e.actor.as_str(), e.role.as_str()), ("csgt", "police"));
        assert!(
            e.detail.contains(&format!("\"owner_told\":{told_owner}")) && e.detail.contains(why),
            "{}",
            e.detail
        );
    }
}

/// Police accepting a contest cancel the fine (`Close` from `contested`):
/// the owner who contested is told, with the reason, as a withdrawal tells
/// them (the cancellation was silent: the app said only "closed"), and the
/// audit entry says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contest_accepted_by_police_tells_the_owner_the_fine_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[]).await;
    let (server, cfg) = start(dir.path(), &url).await;
    let ctx = server.ingestor.context().clone();
    let n = Notices::new(&cfg, ctx.clone());
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let t0 = now_ms();
    confirm(&server, &id, t0).await;
    n.deliver_due(t0 + 1).await.unwrap();
    let r = reviewer(&server);
    r.act(
        &id,
        &Action::Contest,
        &actor("citizen", Role::System),
        "",
        t0 + DAY,
    )
    .await
    .unwrap();
    let why = "Ảnh cho thấy xe dừng trước vạch khi đèn đỏ";
    let at = t0 + 2 * DAY;
    r.act(&id, &Action::Close, &actor("csgt", Role::Police), why, at)
        .await
        .unwrap();
    assert_eq!(state(&server, &id).await, "closed");
    n.deliver_due(at + 1).await.unwrap();
    let got = bodies(&rx, &id);
    assert_eq!(got.len(), 2, "the notice, then the cancellation");
    assert_eq!(got[1]["type"], "fine_withdrawn");
    assert_eq!(got[1]["reason"], why);
    let body = got[1]["text"]["body"].as_str().unwrap();
    assert!(
        body.contains("không phải nộp phạt") && body.contains(why),
        "{body}"
    );
    let trail = ingest_server::audit::for_subject(&ctx.db, &format!("case:{id}"))
        .await
        .unwrap();
    let e = trail.iter().find(|e| e.action == "case.close").unwrap();
    assert!(e.detail.contains("\"owner_told\":true"), "{}", e.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fine_notice_goes_out_past_the_limitation_period() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[]).await;
    let (server, cfg) = start(dir.path(), &url).await;
    let n = Notices::new(&cfg, server.ingestor.context().clone());
    let id = seed::seed(&server, SITE, 1).await.remove(0);
    let t0 = now_ms();
    confirm(&server, &id, t0).await;
    // The partner was unreachable for a year and a day.
    n.deliver_due(t0 + 366 * DAY).await.unwrap();
    assert!(bodies(&rx, &id).is_empty());
    assert_eq!(
        deliveries(&server, &id).await,
        [("notice".to_string(), "dropped".to_string())]
    );
    assert_eq!(state(&server, &id).await, "confirmed");
}
