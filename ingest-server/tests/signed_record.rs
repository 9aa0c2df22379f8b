//! The signed envelope a case row keeps (`signed_json`) is a column too:
//! someone with write access to the database who changes a copy
//! (`plate_text`) and the envelope's payload alike must not get the case
//! confirmed. The envelope's signature is checked again under the
//! device's enrolled key; the speed columns are compared like the others.

mod common;

use bytes::Bytes;
use common::*;
use ingest_server::config::Config;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::review::ReviewError;
use ingest_server::{app, devices, integrity};
use protocol::{Ack, topics};

const SITE: &str = "hn-hoankiem-01";

async fn stored_case(dir: &std::path::Path) -> (Ingestor, String) {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = ingest_server::db::Db::sqlite_url(&dir.join("t.db"));
    let i = app::open(&cfg).await.unwrap();
    let k = key();
    devices::enrol(&i.context().db, "edge-a", SITE, &public_hex(&k))
        .await
        .unwrap();
    let files = Files::new(1000);
    let ev = event("edge-a", SITE, &files);
    let source = Source::Mqtt(topics::events_topic(SITE, "edge-a").unwrap());
    let o = i
        .submit(Bytes::from(bundle(&ev, &k, &files)), source)
        .await
        .unwrap();
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));
    (i, ev.event_id.to_string())
}

async fn confirmable(i: &Ingestor, id: &str) -> Result<Option<String>, ReviewError> {
    integrity::confirmable(i.context().db.pool(), id, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plate_changed_in_both_copies_is_not_confirmable() {
    let dir = tempfile::tempdir().unwrap();
    let (i, id) = stored_case(dir.path()).await;
    let db = &i.context().db;
    assert!(confirmable(&i, &id).await.is_ok(), "the untouched case");

    let signed: String = sqlx::query_scalar("SELECT signed_json FROM events WHERE event_id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let mut envelope: serde_json::Value = serde_json::from_str(&signed).unwrap();
    envelope["payload"]["plate"]["text"] = "51G99999".into();
    envelope["payload"]["plate"]["display"] = "51G-999.99".into();
    let forged = String::from_utf8(protocol::canonical_bytes(&envelope).unwrap()).unwrap();
    sqlx::query("UPDATE events SET plate_text = '51G99999', signed_json = $1 WHERE event_id = $2")
        .bind(&forged)
        .bind(&id)
        .execute(db.pool())
        .await
        .unwrap();
    let diffs = integrity::check(db.pool(), &id).await.unwrap().unwrap();
    assert_eq!(
        diffs.iter().map(|d| d.field).collect::<Vec<_>>(),
        ["signed_json"],
        "{diffs:?}"
    );
    match confirmable(&i, &id).await {
        Err(ReviewError::RecordAltered(why)) => assert!(why.contains("signature"), "{why}"),
        other => panic!("confirmable: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speed_written_into_the_row_is_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (i, id) = stored_case(dir.path()).await;
    let db = &i.context().db;
    sqlx::query("UPDATE events SET speed_kmh = 71.5, speed_limit_kmh = 50 WHERE event_id = $1")
        .bind(&id)
        .execute(db.pool())
        .await
        .unwrap();
    let diffs = integrity::check(db.pool(), &id).await.unwrap().unwrap();
    assert_eq!(
        diffs.iter().map(|d| d.field).collect::<Vec<_>>(),
        ["speed_kmh", "speed_limit_kmh"],
        "{diffs:?}"
    );
    assert!(matches!(
        confirmable(&i, &id).await,
        Err(ReviewError::RecordAltered(_))
    ));
}
