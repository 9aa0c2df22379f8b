//! Two server replicas on one PostgreSQL with different notice settings (a
//! rolling update that adds a partner app): A has the partner `vneid`, B
//! has `ihanoi` and started after A. A case confirmed gets a delivery for
//! each partner (B's start did not switch A's partner off); B's worker
//! sends its own partner's and leaves `vneid`'s untouched (not claimed,
//! not given up); A's worker then sends it.

mod common;
#[allow(dead_code)]
mod notices_support;

use common::*;
use ingest_server::app::{self, Running};
use ingest_server::config::Config;
use ingest_server::db::now_ms;
use ingest_server::notices::Notices;
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use notices_support::{hook, receiver};
use sqlx::Row;

const SITE: &str = "hn-hoankiem-trangtien";

async fn replica(
    dir: &std::path::Path,
    db_url: &str,
    partner: (&str, String),
) -> (Running, Config) {
    let mut cfg = local_config(dir);
    cfg.database.url = db_url.to_string();
    cfg.notices.enabled = false;
    cfg.notices.public_base_url = "https://phatnguoi.example.gov.vn".into();
    cfg.notices.webhooks = vec![hook(
        partner.0,
        partner.1,
        &format!("{}-secret-0123456789", partner.0),
    )];
    cfg.validate().unwrap();
    (app::start(&cfg).await.unwrap(), cfg)
}

/// (target, state, attempts) of a case's deliveries.
async fn deliveries(server: &Running, id: &str) -> Vec<(String, String, i64)> {
    sqlx::query(
        "SELECT target, state, attempts FROM notice_deliveries WHERE event_id = $1 \
         AND channel = 'webhook' ORDER BY target",
    )
    .bind(id)
    .fetch_all(server.ingestor.context().db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_partner_leaves_its_deliveries_to_one_that_has_it() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    let (hooks, rx) = receiver(&[]).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, cfg_a) = replica(dir_a.path(), &url, ("vneid", format!("{hooks}/vneid"))).await;
    // B starts second (the old code let it overwrite the channel list).
    let (b, cfg_b) = replica(dir_b.path(), &url, ("ihanoi", format!("{hooks}/ihanoi"))).await;

    let id = common::seed::seed(&a, SITE, 1).await.remove(0);
    let ctx = a.ingestor.context();
    let r = Reviewer {
        db: &ctx.db,
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
        // Confirmed through B, the replica without `vneid`.
        let ctx_b = b.ingestor.context();
        let rb = Reviewer {
            db: &ctx_b.db,
            grammar: ctx_b.grammar,
            fines: &ctx_b.fines,
            registry: ctx_b.registry.as_deref(),
        };
        let r = if role == Role::Police { &rb } else { &r };
        r.act(&id, &action, &actor, "", now).await.unwrap();
    }
    assert_eq!(
        deliveries(&a, &id).await,
        vec![
            ("ihanoi".to_string(), "pending".to_string(), 0),
            ("vneid".to_string(), "pending".to_string(), 0)
        ],
        "one delivery per partner of any live replica"
    );

    let worker_b = Notices::new(&cfg_b, b.ingestor.context().clone());
    worker_b.deliver_due(now_ms()).await.unwrap();
    worker_b.deliver_due(now_ms() + 60_000).await.unwrap();
    assert_eq!(
        deliveries(&a, &id).await,
        vec![
            ("ihanoi".to_string(), "sent".to_string(), 1),
            ("vneid".to_string(), "pending".to_string(), 0)
        ],
        "B sent its partner's and left A's alone"
    );
    assert_eq!(rx.got("/ihanoi").len(), 1);
    assert!(rx.got("/vneid").is_empty());

    let worker_a = Notices::new(&cfg_a, a.ingestor.context().clone());
    worker_a.deliver_due(now_ms()).await.unwrap();
    assert_eq!(
        deliveries(&a, &id).await,
        vec![
            ("ihanoi".to_string(), "sent".to_string(), 1),
            ("vneid".to_string(), "sent".to_string(), 1)
        ]
    );
    assert_eq!(rx.got("/vneid").len(), 1);
}
