//! What one enrolled device can do to another's events and clips on a
//! broker without topic ACLs (the embedded one): learn an event id and
//! publish its own bundle under it, or publish chunks on the other's
//! evidence topic. Neither may cost the other device its violation or
//! its clip, nor fill the disk with failed assemblies.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ingest_server::clips::ClipAssembler;
use ingest_server::config::Config;
use ingest_server::ingest::{self, Ingestor, Outcome, Source};
use ingest_server::{app, devices};
use protocol::{Ack, AckStatus, RejectCode, topics};
use sqlx::Row;

const SITE: &str = "hn-hoankiem-01";

async fn open(url: &str, dir: &std::path::Path) -> Ingestor {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = url.to_string();
    app::open(&cfg).await.unwrap()
}

fn events_on(device: &str) -> Source {
    Source::Mqtt(topics::events_topic(SITE, device).unwrap())
}

/// Enrols edge-a and edge-b at the same site.
async fn two_devices(i: &Ingestor) -> (protocol::SigningKey, protocol::SigningKey) {
    let db = &i.context().db;
    let (ka, kb) = (key(), key());
    devices::enrol(db, "edge-a", SITE, &public_hex(&ka))
        .await
        .unwrap();
    devices::enrol(db, "edge-b", SITE, &public_hex(&kb))
        .await
        .unwrap();
    (ka, kb)
}

/// edge-b learns edge-a's event id and publishes, just ahead of edge-a's
/// resend and in the same batch, its own signed bundle under it with an
/// event time an hour ahead: refused (`future_time`), its insert tried
/// and rolled back (`stored_meanwhile`). edge-a's bundle is then stored
/// and answered `stored`, not `duplicate` with no row behind it (on which
/// edge-a would have deleted the violation).
async fn squatted_id_in_one_batch(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    let (ka, kb) = two_devices(&i).await;
    let files = Files::new(1000);
    let real = event("edge-a", SITE, &files);
    let mut squat = event("edge-b", SITE, &files);
    squat.event_id = real.event_id;
    shift(&mut squat, time::Duration::hours(1));
    let outs = ingest::process_batch(
        i.context(),
        vec![
            (
                Bytes::from(bundle(&squat, &kb, &files)),
                events_on("edge-b"),
            ),
            (Bytes::from(bundle(&real, &ka, &files)), events_on("edge-a")),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        outs[0].rejection.as_ref().map(|r| r.0.as_str()),
        Some("future_time")
    );
    assert_eq!(
        outs[1].ack,
        Some(Ack::stored(real.event_id)),
        "{:?}",
        outs[1]
    );
    assert_eq!(outs[1].rejection, None);
    let row = sqlx::query("SELECT device_id, signed_json FROM events WHERE event_id = $1")
        .bind(real.event_id.to_string())
        .fetch_one(i.context().db.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "edge-a");
    let signed = real.sign(&ka).unwrap().to_json().unwrap();
    assert_eq!(row.get::<String, _>(1).as_bytes(), &signed[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_squatter_does_not_make_the_real_event_a_duplicate_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    squatted_id_in_one_batch(ingest_server::db::Db::sqlite_url(&dir.path().join("t.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_squatter_does_not_make_the_real_event_a_duplicate_on_postgres() {
    let pg = Postgres::start();
    squatted_id_in_one_batch(pg.fresh_database().await).await;
    drop(pg);
}

/// An sqlite-backed server with edge-a's event (a 300,000-byte clip, two
/// chunks) stored; its evidence topic.
async fn with_pending_clip(
    dir: &std::path::Path,
) -> (Ingestor, protocol::ViolationEvent, Files, String) {
    let i = open(&ingest_server::db::Db::sqlite_url(&dir.join("t.db")), dir).await;
    let (ka, _) = two_devices(&i).await;
    let files = Files::new(300_000);
    let ev = event("edge-a", SITE, &files);
    let o = i
        .submit(Bytes::from(bundle(&ev, &ka, &files)), events_on("edge-a"))
        .await
        .unwrap();
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));
    (
        i,
        ev,
        files,
        topics::evidence_topic(SITE, "edge-a").unwrap(),
    )
}

/// Chunk 0 of the clip with other bytes (its header hash made to fit),
/// as another device can publish it on edge-a's evidence topic.
fn forged_first(ev: &protocol::ViolationEvent, clip: &[u8], salt: u8) -> Bytes {
    let mut other = clip.to_vec();
    other[7] ^= salt;
    let chunks = split_clip(ev.event_id, "clip.mp4", &other);
    Bytes::from(chunks[0].encode().unwrap())
}

async fn send(i: &Ingestor, clips: &ClipAssembler, chunk: Bytes, topic: &str) -> Outcome {
    clips.receive(i.context(), chunk, topic).await.unwrap()
}

/// Objects in the local evidence store at least `size` bytes long.
fn objects_of_at_least(dir: &std::path::Path, size: u64) -> usize {
    fn walk(p: &std::path::Path, size: u64, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), size, n);
            } else if m.len() >= size {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("evidence"), size, &mut n);
    n
}

/// edge-a's chunks all staged but the last; another copy of chunk 0 with
/// other bytes (a valid header hash) arrives: it does not replace edge-a's,
/// is quarantined and not answered; edge-a's last chunk completes the
/// clip as signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_copy_of_a_staged_chunk_does_not_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let (i, ev, files, topic) = with_pending_clip(dir.path()).await;
    let clips = Arc::new(ClipAssembler::default());
    let chunks = split_clip(ev.event_id, "clip.mp4", &files.clip);
    assert_eq!(chunks.len(), 2);
    let o = send(&i, &clips, Bytes::from(chunks[0].encode().unwrap()), &topic).await;
    assert_eq!(o.ack, None);
    let o = send(&i, &clips, forged_first(&ev, &files.clip, 0x41), &topic).await;
    assert_eq!(o.ack, None, "not answered: it may be the device's own");
    assert_eq!(
        o.rejection.map(|r| r.0),
        Some("evidence_mismatch".to_owned())
    );
    let o = send(&i, &clips, Bytes::from(chunks[1].encode().unwrap()), &topic).await;
    assert_eq!(
        o.ack,
        Some(Ack::stored(ev.event_id).for_item("clip.mp4")),
        "{o:?}"
    );
    let item = ev.evidence_item("clip.mp4").unwrap();
    let stored = i.context().evidence.get(&item.sha256).await.unwrap();
    assert_eq!(&stored[..], &files.clip[..]);
}

/// Another device's chunk 0 staged first, again and again, each time with
/// other bytes: every assembly fails (`clip_mismatch`, answered with a
/// rejection bound to the assembled hash, not edge-a's), the staging is
/// discarded each time, and of the failed assemblies at most one stays in
/// the store; edge-a's full resend then stores its clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_assemblies_keep_at_most_one_clip_and_the_resend_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let (i, ev, files, topic) = with_pending_clip(dir.path()).await;
    let clips = Arc::new(ClipAssembler::default());
    let chunks = split_clip(ev.event_id, "clip.mp4", &files.clip);
    let clip_len = files.clip.len() as u64;
    for salt in 1..=4u8 {
        let o = send(&i, &clips, forged_first(&ev, &files.clip, salt), &topic).await;
        assert_eq!((o.ack, o.rejection), (None, None));
        let mut last = None;
        for c in &chunks {
            last = Some(send(&i, &clips, Bytes::from(c.encode().unwrap()), &topic).await);
        }
        let last = last.unwrap();
        assert_eq!(
            last.rejection.map(|r| r.0),
            Some("clip_mismatch".to_owned())
        );
        assert!(matches!(
            last.ack,
            Some(Ack {
                status: AckStatus::Rejected {
                    code: RejectCode::EvidenceMismatch,
                    ..
                },
                ..
            })
        ));
        assert!(
            objects_of_at_least(dir.path(), clip_len) <= 1,
            "failed assembly {salt}: more than one clip-sized object kept"
        );
    }
    let rows: i64 = sqlx::query(
        "SELECT COUNT(*) FROM quarantine WHERE event_id = $1 AND reason_code = 'clip_mismatch'",
    )
    .bind(ev.event_id.to_string())
    .fetch_one(i.context().db.pool())
    .await
    .unwrap()
    .get(0);
    assert_eq!(rows, 4, "every failed assembly is recorded");

    let mut last = None;
    for c in &chunks {
        last = Some(send(&i, &clips, Bytes::from(c.encode().unwrap()), &topic).await);
    }
    assert_eq!(
        last.unwrap().ack,
        Some(Ack::stored(ev.event_id).for_item("clip.mp4"))
    );
    assert_eq!(
        objects_of_at_least(dir.path(), clip_len),
        2,
        "the clip and one failure"
    );
}
