//! The owner-lookup sweeper with several server replicas on one real
//! PostgreSQL: every replica runs it, so a due lookup is claimed (a lease)
//! before it is made, and what a lookup came to is recorded only on a case
//! still as the lookup found it. Stub registries stand in for the national
//! gateway: one that waits in its lookup until the test lets it go (so the
//! other side runs while it waits, no sleeps), one that answers at once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::registry::{
    self, Owner, Purpose, Registration, Registry, RegistryError, Vehicle,
};
use sqlx::Row;
use tokio::sync::{Semaphore, mpsc};

/// A registry that counts its lookups, optionally waits in each until the
/// test adds a permit (telling it each time it got there), then answers
/// the owner `o1` or fails.
struct Stub {
    calls: AtomicUsize,
    entered: Option<mpsc::UnboundedSender<()>>,
    gate: Option<Semaphore>,
    fails: bool,
}

impl Stub {
    fn new(fails: bool) -> Stub {
        Stub {
            calls: AtomicUsize::new(0),
            entered: None,
            gate: None,
            fails,
        }
    }

    /// One that waits in its lookups; the receiver hears of each.
    fn waiting(fails: bool) -> (Arc<Stub>, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Stub {
            entered: Some(tx),
            gate: Some(Semaphore::new(0)),
            ..Stub::new(fails)
        };
        (Arc::new(s), rx)
    }

    fn release(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(1);
        }
    }
}

#[async_trait::async_trait]
impl Registry for Stub {
    async fn lookup(
        &self,
        plate: &str,
        _colour: Option<&str>,
        _purpose: &Purpose,
    ) -> Result<Option<Registration>, RegistryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = &self.entered {
            let _ = tx.send(());
        }
        if let Some(g) = &self.gate {
            g.acquire().await.unwrap().forget();
        }
        if self.fails {
            return Err(RegistryError::Unavailable("gateway down".into()));
        }
        Ok(Some(Registration {
            vehicle: Vehicle {
                plate_text: plate.into(),
                plate_colour: "white".into(),
                vehicle_type: "car".into(),
                make: "Toyota Vios".into(),
                colour: "white".into(),
                registration_status: "active".into(),
                owner_id: "o1".into(),
            },
            owner: Owner {
                owner_id: "o1".into(),
                full_name: "Hoàng Thị Giang".into(),
                national_id: "001199012345".into(),
                address: "5 Tràng Tiền, Hoàn Kiếm, Hà Nội".into(),
                email: None,
                vneid: None,
            },
        }))
    }
}

/// A server's state on a fresh database of `pg` with one stored case
/// whose owner lookup is `pending` (the ingest's own lookup, against the
/// empty SQL registry, is waited for and undone).
async fn one_pending_case(pg: &Postgres, dir: &std::path::Path) -> (Ingestor, String) {
    let mut cfg = local_config(dir);
    cfg.database.url = pg.fresh_database().await;
    let ingestor = ingest_server::app::open(&cfg).await.unwrap();
    let ctx = ingestor.context().clone();
    let k = key();
    ingest_server::devices::enrol(&ctx.db, "edge-s1", "hn-site", &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(2000);
    let ev = event("edge-s1", "hn-site", &files);
    let o = ingestor
        .submit(bundle(&ev, &k, &files).into(), Source::Http)
        .await
        .unwrap();
    assert!(o.rejection.is_none(), "{:?}", o.rejection);
    let id = ev.event_id.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while owner(&ingestor, &id).await.0 == "pending" {
        assert!(std::time::Instant::now() < deadline, "the ingest's lookup");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sqlx::query(
        "UPDATE events SET owner_status = 'pending', owner_id = NULL, owner_lookup_at = NULL, \
         owner_lookup_failures = 0 WHERE event_id = $1",
    )
    .bind(&id)
    .execute(ctx.db.pool())
    .await
    .unwrap();
    (ingestor, id)
}

async fn owner(i: &Ingestor, id: &str) -> (String, Option<String>) {
    let r = sqlx::query("SELECT owner_status, owner_id FROM events WHERE event_id = $1")
        .bind(id)
        .fetch_one(i.context().db.pool())
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Replica B's sweeper looks the owner up; its gateway call hangs, and
/// meanwhile another lookup (here a reviewer's, `resolve_for`) records the
/// owner, `resolved`. B's call then fails: that `error` must not be
/// recorded over `resolved` (the owner removed, the revision raised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_failure_does_not_undo_a_resolved_owner() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (i, id) = one_pending_case(&pg, dir.path()).await;
    let db = i.context().db.clone();
    let (b_registry, mut b_entered) = Stub::waiting(true);
    let b = {
        let (db, reg) = (db.clone(), b_registry.clone());
        tokio::spawn(async move { registry::resolve_pending(&db, reg.as_ref(), 100).await })
    };
    b_entered.recv().await.unwrap();
    let a_registry = Stub::new(false);
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    registry::resolve_for(&db, &a_registry, uuid, "30A12345", "white", "op.an").await;
    assert_eq!(owner(&i, &id).await, ("resolved".into(), Some("o1".into())));
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    b_registry.release();
    assert_eq!(b.await.unwrap(), 1, "B made its lookup");
    assert_eq!(
        owner(&i, &id).await,
        ("resolved".into(), Some("o1".into())),
        "B's late failure recorded over the owner"
    );
    let after: i64 = sqlx::query_scalar("SELECT revision FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(after, revision);
}

/// Two replicas sweep at once: the due case is looked up once (one
/// access-log row about its owner at the gateway, not one per replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_make_one_lookup() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (i, id) = one_pending_case(&pg, dir.path()).await;
    let db = i.context().db.clone();
    let (first, mut entered) = Stub::waiting(false);
    let a = {
        let (db, reg) = (db.clone(), first.clone());
        tokio::spawn(async move { registry::resolve_pending(&db, reg.as_ref(), 100).await })
    };
    entered.recv().await.unwrap();
    // Replica B's pass while A's lookup is under way.
    let second = Stub::new(false);
    let n = registry::resolve_pending(&db, &second, 100).await;
    first.release();
    assert_eq!(a.await.unwrap(), 1);
    assert_eq!(
        (
            first.calls.load(Ordering::SeqCst),
            second.calls.load(Ordering::SeqCst),
            n
        ),
        (1, 0, 0),
        "the case was looked up by both replicas"
    );
    assert_eq!(owner(&i, &id).await, ("resolved".into(), Some("o1".into())));
    // Recorded: the lease is gone, and the case is not due any more.
    let lease: Option<i64> =
        sqlx::query_scalar("SELECT owner_lookup_lease_until FROM events WHERE event_id = $1")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(lease, None);
    assert_eq!(registry::resolve_pending(&db, &second, 100).await, 0);
}
