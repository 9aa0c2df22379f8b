//! Which refusals a device hears of, and what a redelivery completes, run
//! against SQLite and a real PostgreSQL.
//!
//! A rejection makes a device set an event (or a clip) aside for good, so
//! it is sent only when the refusal is about the bytes themselves. A
//! device's genuine bundle or clip chunk republished on another site's or
//! device's topic (the embedded broker has no topic ACLs), or an event id
//! another device stored first, is quarantined once and not answered: a
//! signed rejection bound to the device's own bytes would be one anyone
//! could hand it. A still that a first delivery lacked and a redelivery
//! brings is stored and counted on the case. An event stored before the
//! server's state changed (a rule disabled on its camera) is answered
//! `duplicate` when it comes again, not refused by today's state.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ingest_server::clips::ClipAssembler;
use ingest_server::config::Config;
use ingest_server::ingest::{self, Ingestor, Outcome, Source};
use ingest_server::{app, cases, devices};
use protocol::{Ack, AckStatus, RejectCode, topics};
use sqlx::Row;

const SITE: &str = "hn-hoankiem-01";
const OTHER_SITE: &str = "hcm-q3-02";

async fn open(url: &str, dir: &std::path::Path) -> Ingestor {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = url.to_string();
    app::open(&cfg).await.unwrap()
}

fn events_on(site: &str, device: &str) -> Source {
    Source::Mqtt(topics::events_topic(site, device).unwrap())
}

async fn submit(i: &Ingestor, bytes: &[u8], source: Source) -> Outcome {
    i.submit(Bytes::copy_from_slice(bytes), source)
        .await
        .unwrap()
}

/// Quarantine rows naming these bytes.
async fn rows_for(i: &Ingestor, bytes: &[u8]) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM quarantine WHERE payload_sha256 = $1")
        .bind(protocol::sha256_hex(bytes))
        .fetch_one(i.context().db.pool())
        .await
        .unwrap()
        .get(0)
}

/// Refused for `reason`, quarantined, and not answered.
fn unanswered(o: &Outcome, reason: &str) {
    assert_eq!(o.ack, None, "no ack for a refusal about the arrival");
    assert_eq!(o.rejection.as_ref().map(|r| r.0.as_str()), Some(reason));
}

/// Refused with `code`, answered with a rejection bound to `bytes`.
fn rejected_bound(o: &Outcome, code: RejectCode, bytes: &[u8]) {
    let ack = o
        .ack
        .as_ref()
        .expect("a rejection about the bytes is answered");
    assert!(
        matches!(&ack.status, AckStatus::Rejected { code: c, .. } if *c == code),
        "{ack:?}"
    );
    assert_eq!(
        ack.payload_sha256.as_deref(),
        Some(protocol::sha256_hex(bytes).as_str())
    );
}

async fn suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    let db = &i.context().db;
    let ka = key();
    devices::enrol(db, "edge-a", SITE, &public_hex(&ka))
        .await
        .unwrap();
    let kb = key();
    devices::enrol(db, "edge-b", SITE, &public_hex(&kb))
        .await
        .unwrap();
    republished_elsewhere(&i, &ka).await;
    conflicting_event_ids(&i, &ka, &kb).await;
    clip_chunks_elsewhere(&i, &ka).await;
    late_stills(&i, &ka).await;
    stored_before_the_state_changed(&i).await;
}

/// An event stored, its ack lost, then the admin disables the rule on its
/// camera: the resend of the same bytes is a redelivery, answered
/// `duplicate` (and its late still completed), not a signed rejection of
/// the stored event's own bytes that would make the device set it aside
/// and never send the clip; and no quarantine row appears. Other content
/// under the stored id is still a conflict; a new event is refused.
async fn stored_before_the_state_changed(i: &Ingestor) {
    use ingest_server::cameras::{self, NewCamera};
    let db = &i.context().db;
    let kc = key();
    devices::enrol(db, "edge-c", SITE, &public_hex(&kc))
        .await
        .unwrap();
    let camera = |rules: &[&str]| NewCamera {
        device_id: "edge-c".into(),
        camera_id: "cam-north".into(),
        description: "Tràng Thi × Hàng Bông, northbound".into(),
        enabled_rules: Some(rules.iter().map(|r| r.to_string()).collect()),
        ..NewCamera::default()
    };
    cameras::enrol(db, &camera(&["red_light", "wrong_way"]))
        .await
        .unwrap();
    let mut files = Files::new(1000);
    files.plate[1] ^= 0x3c; // bytes no other case holds
    let ev = event("edge-c", SITE, &files);
    let first = without_plate(&ev, &kc, &files);
    let o = submit(i, &first, events_on(SITE, "edge-c")).await;
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));

    // Red light is no longer approved on this camera.
    cameras::retire(db, "edge-c", "cam-north", "red light approval withdrawn")
        .await
        .unwrap();
    cameras::enrol(db, &camera(&["wrong_way"])).await.unwrap();
    let new = event("edge-c", SITE, &files);
    let new = bundle(&new, &kc, &files);
    let o = submit(i, &new, events_on(SITE, "edge-c")).await;
    rejected_bound(&o, RejectCode::Invalid, &new);
    assert_eq!(o.rejection.unwrap().0, "rule_not_enabled");

    for _ in 0..2 {
        let o = submit(i, &first, events_on(SITE, "edge-c")).await;
        assert_eq!(o.ack, Some(Ack::duplicate(ev.event_id)), "{o:?}");
        assert_eq!(o.rejection, None);
    }
    assert_eq!(rows_for(i, &first).await, 0, "no quarantine row");
    // The redelivery that brings the missing still completes the case.
    let full = bundle(&ev, &kc, &files);
    let o = submit(i, &full, events_on(SITE, "edge-c")).await;
    assert_eq!(o.ack, Some(Ack::duplicate(ev.event_id)), "{o:?}");
    assert_eq!(rows_for(i, &full).await, 0, "no quarantine row");
    assert_eq!(
        (plate_stored(i, &ev).await, evidence_stored(i, &ev).await),
        (1, 2)
    );

    let mut reused = ev.clone();
    reused.vehicle_class = protocol::VehicleClass::Truck;
    let reused = bundle(&reused, &kc, &files);
    let o = submit(i, &reused, events_on(SITE, "edge-c")).await;
    rejected_bound(&o, RejectCode::Invalid, &reused);
    assert_eq!(o.rejection.unwrap().0, "event_id_conflict");
}

/// edge-a's genuine bundle, republished by someone else on another site's
/// and another device's topic: quarantined (its bytes and one row,
/// however often it comes), never answered; the genuine delivery is then
/// stored. A tampered copy still gets a rejection bound to its bytes.
async fn republished_elsewhere(i: &Ingestor, ka: &protocol::SigningKey) {
    let files = Files::new(1000);
    let ev = event("edge-a", SITE, &files);
    let genuine = bundle(&ev, ka, &files);
    for _ in 0..3 {
        let o = submit(i, &genuine, events_on(OTHER_SITE, "edge-a")).await;
        unanswered(&o, "wrong_topic");
    }
    let o = submit(i, &genuine, events_on(SITE, "edge-b")).await;
    unanswered(&o, "wrong_topic");
    // Once per place it came to, whatever the number of copies.
    assert_eq!(rows_for(i, &genuine).await, 2);
    let digest = protocol::sha256_hex(&genuine);
    let kept = i.context().evidence.contains(&digest).await.unwrap();
    assert!(kept, "the refused bytes are kept");

    let o = submit(i, &genuine, events_on(SITE, "edge-a")).await;
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));

    let ev2 = event("edge-a", SITE, &files);
    let mut altered = Files::new(1000);
    altered.overview[10] ^= 0xff;
    let tampered = bundle(&ev2, ka, &altered);
    let o = submit(i, &tampered, events_on(SITE, "edge-a")).await;
    rejected_bound(&o, RejectCode::EvidenceMismatch, &tampered);
}

/// An event id stored first by another device: edge-a's real event under
/// it is quarantined, not answered (edge-a keeps it and resends), one row
/// however often. The same device reusing its own id for other content is
/// refused for its bytes, and told so.
async fn conflicting_event_ids(i: &Ingestor, ka: &protocol::SigningKey, kb: &protocol::SigningKey) {
    let files = Files::new(1000);
    let real = event("edge-a", SITE, &files);
    let mut squatter = event("edge-b", SITE, &files);
    squatter.event_id = real.event_id;
    let o = submit(i, &bundle(&squatter, kb, &files), events_on(SITE, "edge-b")).await;
    assert_eq!(o.ack, Some(Ack::stored(real.event_id)));

    let genuine = bundle(&real, ka, &files);
    for _ in 0..2 {
        let o = submit(i, &genuine, events_on(SITE, "edge-a")).await;
        unanswered(&o, "event_id_conflict");
    }
    assert_eq!(rows_for(i, &genuine).await, 1);

    let mine = event("edge-a", SITE, &files);
    let o = submit(i, &bundle(&mine, ka, &files), events_on(SITE, "edge-a")).await;
    assert_eq!(o.ack, Some(Ack::stored(mine.event_id)));
    let mut reused = mine.clone();
    reused.camera_id = "cam-south".into();
    let reused = bundle(&reused, ka, &files);
    let o = submit(i, &reused, events_on(SITE, "edge-a")).await;
    rejected_bound(&o, RejectCode::Invalid, &reused);
    assert_eq!(o.rejection.unwrap().0, "event_id_conflict");
}

/// A chunk of edge-a's clip on another site's or device's evidence topic:
/// quarantined once, not answered; on its own topic it is taken.
async fn clip_chunks_elsewhere(i: &Ingestor, ka: &protocol::SigningKey) {
    let ctx = i.context();
    let clips = Arc::new(ClipAssembler::default());
    let files = Files::new(300_000);
    let ev = event("edge-a", SITE, &files);
    let o = submit(i, &bundle(&ev, ka, &files), events_on(SITE, "edge-a")).await;
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));
    let chunks = split_clip(ev.event_id, "clip.mp4", &files.clip);
    let first = Bytes::from(chunks[0].encode().unwrap());
    for topic in [
        topics::evidence_topic(OTHER_SITE, "edge-a").unwrap(),
        topics::evidence_topic(OTHER_SITE, "edge-a").unwrap(),
        topics::evidence_topic(SITE, "edge-b").unwrap(),
    ] {
        let o = clips.receive(ctx, first.clone(), &topic).await.unwrap();
        unanswered(&o, "wrong_topic");
    }
    assert_eq!(rows_for(i, &first).await, 2);
    let own = topics::evidence_topic(SITE, "edge-a").unwrap();
    let mut last = None;
    for c in &chunks {
        let bytes = Bytes::from(c.encode().unwrap());
        last = Some(clips.receive(ctx, bytes, &own).await.unwrap());
    }
    assert_eq!(
        last.unwrap().ack,
        Some(Ack::stored(ev.event_id).for_item("clip.mp4"))
    );
}

/// The bundle of `ev` without its plate still.
fn without_plate(ev: &protocol::ViolationEvent, k: &protocol::SigningKey, f: &Files) -> Vec<u8> {
    let mut b = protocol::EventBundle::decode(&bundle(ev, k, f)).unwrap();
    b.attachments.retain(|a| a.name != "plate.jpg");
    b.encode().unwrap()
}

async fn plate_stored(i: &Ingestor, ev: &protocol::ViolationEvent) -> i64 {
    sqlx::query("SELECT stored FROM evidence WHERE event_id = $1 AND name = 'plate.jpg'")
        .bind(ev.event_id.to_string())
        .fetch_one(i.context().db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn evidence_stored(i: &Ingestor, ev: &protocol::ViolationEvent) -> i64 {
    cases::case(&i.context().db, &ev.event_id.to_string())
        .await
        .unwrap()
        .unwrap()
        .evidence_stored
}

/// A still missing from the first delivery and brought by a redelivery
/// (in a later batch, or in the same one) is stored, counted on the case
/// and readable; not on a case whose evidence was deleted under retention.
async fn late_stills(i: &Ingestor, ka: &protocol::SigningKey) {
    let ctx = i.context();
    let mut files = Files::new(1000);
    files.plate[0] ^= 0x5a; // bytes no other case holds
    let ev = event("edge-a", SITE, &files);
    let o = submit(
        i,
        &without_plate(&ev, ka, &files),
        events_on(SITE, "edge-a"),
    )
    .await;
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));
    assert_eq!(
        (plate_stored(i, &ev).await, evidence_stored(i, &ev).await),
        (0, 1)
    );
    let plate = ev.evidence_item("plate.jpg").unwrap();
    assert!(!ctx.evidence.contains(&plate.sha256).await.unwrap());
    let o = submit(i, &bundle(&ev, ka, &files), events_on(SITE, "edge-a")).await;
    assert_eq!(o.ack, Some(Ack::duplicate(ev.event_id)));
    assert_eq!(
        (plate_stored(i, &ev).await, evidence_stored(i, &ev).await),
        (1, 2)
    );
    let read = ctx.evidence.get(&plate.sha256).await.unwrap();
    assert_eq!(&read[..], &files.plate[..]);

    // Both copies in one batch.
    let ev2 = event("edge-a", SITE, &files);
    let outs = ingest::process_batch(
        ctx,
        vec![
            (
                Bytes::from(without_plate(&ev2, ka, &files)),
                events_on(SITE, "edge-a"),
            ),
            (
                Bytes::from(bundle(&ev2, ka, &files)),
                events_on(SITE, "edge-a"),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(outs[0].ack, Some(Ack::stored(ev2.event_id)));
    assert_eq!(outs[1].ack, Some(Ack::duplicate(ev2.event_id)));
    assert_eq!(evidence_stored(i, &ev2).await, 2);

    // Evidence deleted under retention stays deleted.
    let ev3 = event("edge-a", SITE, &files);
    submit(
        i,
        &without_plate(&ev3, ka, &files),
        events_on(SITE, "edge-a"),
    )
    .await;
    sqlx::query("UPDATE events SET evidence_purged_at = 1 WHERE event_id = $1")
        .bind(ev3.event_id.to_string())
        .execute(ctx.db.pool())
        .await
        .unwrap();
    let o = submit(i, &bundle(&ev3, ka, &files), events_on(SITE, "edge-a")).await;
    assert_eq!(o.ack, Some(Ack::duplicate(ev3.event_id)));
    assert_eq!(plate_stored(i, &ev3).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_late_stills_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = ingest_server::db::Db::sqlite_url(&dir.path().join("test.db"));
    suite(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_late_stills_on_postgres() {
    let pg = Postgres::start();
    suite(pg.fresh_database().await).await;
    drop(pg);
}

/// Two servers taking the same unanswered resend at the same moment write
/// one quarantine row: the second insert waits for the first transaction
/// and then writes nothing. A check-then-insert passed both (neither saw
/// the other's uncommitted row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_taken_twice_at_once_is_quarantined_once_on_postgres() {
    use ingest_server::quarantine::{self, QuarantineEntry};
    let pg = Postgres::start();
    let db = ingest_server::db::Db::connect(&pg.fresh_database().await)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let entry = |id: &str| QuarantineEntry {
        id: id.to_owned(),
        ..QuarantineEntry::new(
            1_700_000_000_000,
            "tv/v1/hcm-q3-02/edge-a/events",
            Some("edge-a"),
            None,
            "wrong_topic",
            "published on another site's topic",
            "ab".repeat(32),
            100,
        )
    };
    let mut first = db.pool().begin().await.unwrap();
    assert!(
        quarantine::insert_once(&mut first, &entry("one"))
            .await
            .unwrap()
    );
    let pool = db.pool().clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let wrote = quarantine::insert_once(&mut tx, &entry("two"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        wrote
    });
    // Let the second reach its insert while the first is still open.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    first.commit().await.unwrap();
    assert!(!second.await.unwrap(), "the second server wrote a row too");
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM quarantine")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // A refusal the device is told of keeps a row per arrival.
    let mut conn = db.pool().acquire().await.unwrap();
    quarantine::insert(&mut conn, &entry("three"))
        .await
        .unwrap();
    quarantine::insert(&mut conn, &entry("four")).await.unwrap();
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM quarantine")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
    drop(pg);
}
