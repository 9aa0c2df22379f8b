//! A notice states the case as its device signed it: when the case's row
//! was edited in the database after the confirmation (its plate, here),
//! the notice is not sent — the delivery fails with the reason and is
//! retried — and goes out once the row says again what was signed.

mod common;
#[allow(dead_code)]
mod notices_support;

use common::*;
use ingest_server::app;
use ingest_server::db::now_ms;
use ingest_server::notices::Notices;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use notices_support::{hook, receiver};
use sqlx::Row;

const SITE: &str = "hn-hoankiem-trangtien";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_altered_after_its_confirmation_gets_no_notice() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(&[]).await;
    let mut cfg = local_config(dir.path());
    // No worker: the test drives the passes.
    cfg.notices.enabled = false;
    cfg.notices.public_base_url = "https://phatnguoi.example.gov.vn".into();
    cfg.notices.webhooks = vec![hook(
        "vneid",
        format!("{url}/vneid"),
        "vneid-secret-0123456789",
    )];
    cfg.validate().unwrap();
    let server = app::start(&cfg).await.unwrap();
    let ctx = server.ingestor.context().clone();
    let db = ctx.db.clone();
    let id = common::seed::seed(&server, SITE, 1).await.remove(0);
    let r = Reviewer {
        db: &db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = now_ms();
    for (action, who, role) in [
        (Action::Claim, "op.an", Role::Operator),
        (Action::Accept, "op.an", Role::Operator),
        (Action::Confirm, "csgt.cuong", Role::Police),
    ] {
        let actor = Actor {
            id: who.into(),
            role,
        };
        r.act(&id, &action, &actor, "", now).await.unwrap();
    }
    let plate: String = sqlx::query("SELECT plate_text FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    let set_plate = |p: String| {
        let (db, id) = (db.clone(), id.clone());
        async move {
            sqlx::query("UPDATE events SET plate_text = $1 WHERE event_id = $2")
                .bind(p)
                .bind(id)
                .execute(db.pool())
                .await
                .unwrap();
        }
    };
    set_plate("29A99999".into()).await;

    let n = Notices::new(&cfg, ctx.clone());
    n.deliver_due(now).await.unwrap();
    assert!(rx.got("/vneid").is_empty(), "a notice went out");
    let row = sqlx::query(
        "SELECT state, last_error FROM notice_deliveries WHERE event_id = $1 AND channel = 'webhook'",
    )
    .bind(&id)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let (state, error): (String, Option<String>) = (row.get(0), row.get(1));
    assert_eq!(state, "failed");
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("signed") && e.contains("plate_text")),
        "{error:?}"
    );

    // Put back: the next attempt goes out.
    set_plate(plate).await;
    n.deliver_due(now + 3_600_000).await.unwrap();
    assert_eq!(rx.got("/vneid").len(), 1);
}
