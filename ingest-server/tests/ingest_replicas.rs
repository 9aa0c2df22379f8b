//! Two server replicas on one real PostgreSQL judging copies of the same
//! event differently: replica A (an unknown camera is accepted) stores it,
//! replica B (`require_known_camera` on, as after a configuration change
//! that reached B first) would refuse it by its own state. B must not
//! answer a signed `rejected` for an event A is storing: the device would
//! set it aside and never send its clip.
//!
//! Forced: the test locks the `evidence` table, so A's batch stops right
//! after inserting the case row (before its evidence rows), uncommitted;
//! B then judges its copy; the lock goes once B waits on A's insert (or
//! has answered).

mod common;

use std::time::{Duration, Instant};

use common::*;
use ingest_server::ingest::{Ingestor, Source};
use sqlx::Connection;

async fn replica(
    url: &str,
    name: &str,
    require_known_camera: bool,
) -> (Ingestor, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = local_config(dir.path());
    cfg.database.url = format!("{url}?application_name={name}");
    cfg.ingest.require_known_camera = require_known_camera;
    (ingest_server::app::open(&cfg).await.unwrap(), dir)
}

async fn until(watch: &mut sqlx::AnyConnection, sql: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut *watch)
            .await
            .unwrap();
        if n > 0 || done() {
            return;
        }
        assert!(Instant::now() < deadline, "never: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_does_not_reject_an_event_another_is_storing() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    let (a, _da) = replica(&url, "replica_a", false).await;
    let (b, _db) = replica(&url, "replica_b", true).await;
    let k = key();
    ingest_server::devices::enrol(&a.context().db, "edge-r1", "hn-site", &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(2000);
    // Its camera `cam-north` is not in the camera registry.
    let ev = event("edge-r1", "hn-site", &files);
    let bytes: bytes::Bytes = bundle(&ev, &k, &files).into();

    let mut lock = sqlx::AnyConnection::connect(&format!("{url}?application_name=test"))
        .await
        .unwrap();
    let mut watch = sqlx::AnyConnection::connect(&format!("{url}?application_name=watch"))
        .await
        .unwrap();
    let mut held = lock.begin().await.unwrap();
    sqlx::query("LOCK TABLE evidence IN EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let to_a = {
        let (a, bytes) = (a.clone(), bytes.clone());
        tokio::spawn(async move { a.submit(bytes, Source::Http).await })
    };
    until(
        &mut watch,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'replica_a' \
         AND wait_event_type = 'Lock' AND wait_event = 'relation'",
        || to_a.is_finished(),
    )
    .await;
    assert!(!to_a.is_finished(), "A's insert is held");
    let to_b = {
        let (b, bytes) = (b.clone(), bytes.clone());
        tokio::spawn(async move { b.submit(bytes, Source::Http).await })
    };
    until(
        &mut watch,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'replica_b' \
         AND wait_event_type = 'Lock'",
        || to_b.is_finished(),
    )
    .await;
    held.commit().await.unwrap();
    let from_a = to_a.await.unwrap().unwrap();
    let from_b = to_b.await.unwrap().unwrap();
    assert_eq!(
        from_a.ack.as_ref().map(|a| a.status.clone()),
        Some(protocol::AckStatus::Stored),
        "{from_a:?}"
    );
    assert!(
        from_b.rejection.is_none(),
        "B rejected an event A stored: {from_b:?}"
    );
    assert_eq!(
        from_b.ack.as_ref().map(|a| a.status.clone()),
        Some(protocol::AckStatus::Duplicate),
        "{from_b:?}"
    );
    let quarantined: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM quarantine WHERE event_id = $1")
            .bind(ev.event_id.to_string())
            .fetch_one(&mut watch)
            .await
            .unwrap();
    assert_eq!(quarantined, 0);
    // With nothing stored, B's refusal stands.
    let other = event("edge-r1", "hn-site", &files);
    let o = b
        .submit(bundle(&other, &k, &files).into(), Source::Http)
        .await
        .unwrap();
    assert_eq!(
        o.rejection.as_ref().map(|r| r.0.as_str()),
        Some("unknown_camera"),
        "{o:?}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_id = $1")
        .bind(other.event_id.to_string())
        .fetch_one(&mut watch)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the probe leaves nothing behind");
}

/// As above, but A's copy lacks a still that B's copy carries. B's batch,
/// refusing by its own state, packed none of its stills: answering
/// `duplicate` (and marking the still stored) would have the device drop
/// a still the case never got. B answers nothing; the device's next send
/// stores it the usual way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_does_not_mark_stored_a_still_it_never_packed() {
    use protocol::{Attachment, EventBundle};
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    let (a, _da) = replica(&url, "replica_a", false).await;
    let (b, _db) = replica(&url, "replica_b", true).await;
    let k = key();
    ingest_server::devices::enrol(&a.context().db, "edge-r1", "hn-site", &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(2000);
    let ev = event("edge-r1", "hn-site", &files);
    let without_overview: bytes::Bytes = EventBundle {
        event: ev.sign(&k).unwrap(),
        attachments: vec![Attachment {
            name: "plate.jpg".into(),
            data: files.plate.clone(),
        }],
    }
    .encode()
    .unwrap()
    .into();
    let whole: bytes::Bytes = bundle(&ev, &k, &files).into();

    let mut lock = sqlx::AnyConnection::connect(&format!("{url}?application_name=test"))
        .await
        .unwrap();
    let mut watch = sqlx::AnyConnection::connect(&format!("{url}?application_name=watch"))
        .await
        .unwrap();
    let mut held = lock.begin().await.unwrap();
    sqlx::query("LOCK TABLE evidence IN EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let to_a = {
        let a = a.clone();
        tokio::spawn(async move { a.submit(without_overview, Source::Http).await })
    };
    until(
        &mut watch,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'replica_a' \
         AND wait_event_type = 'Lock' AND wait_event = 'relation'",
        || to_a.is_finished(),
    )
    .await;
    let to_b = {
        let (b, whole) = (b.clone(), whole.clone());
        tokio::spawn(async move { b.submit(whole, Source::Http).await })
    };
    until(
        &mut watch,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'replica_b' \
         AND wait_event_type = 'Lock'",
        || to_b.is_finished(),
    )
    .await;
    held.commit().await.unwrap();
    let from_a = to_a.await.unwrap().unwrap();
    let from_b = to_b.await.unwrap().unwrap();
    assert_eq!(
        from_a.ack.as_ref().map(|a| a.status.clone()),
        Some(protocol::AckStatus::Stored),
        "{from_a:?}"
    );
    assert!(from_b.rejection.is_none(), "{from_b:?}");
    assert!(
        from_b.ack.is_none(),
        "no duplicate for a copy whose stills were not kept: {from_b:?}"
    );
    assert_eq!(
        overview_stored(&mut watch, &ev).await,
        0,
        "not marked stored unpacked"
    );
    // The device sends again (to either replica): the still is kept.
    let again = a.submit(whole, Source::Http).await.unwrap();
    assert_eq!(
        again.ack.as_ref().map(|a| a.status.clone()),
        Some(protocol::AckStatus::Duplicate),
        "{again:?}"
    );
    assert_eq!(
        overview_stored(&mut watch, &ev).await,
        1,
        "stored with the resend"
    );
}

async fn overview_stored(watch: &mut sqlx::AnyConnection, ev: &protocol::ViolationEvent) -> i64 {
    sqlx::query_scalar("SELECT stored FROM evidence WHERE event_id = $1 AND name = 'overview.jpg'")
        .bind(ev.event_id.to_string())
        .fetch_one(watch)
        .await
        .unwrap()
}
