//! The storage and ingest suite, run unchanged against SQLite and against a
//! real PostgreSQL started by the test (over TLS, verified): devices, cases with fines, evidence
//! by hash, idempotency, every kind of bad input ending in quarantine with
//! its reason, clip assembly with item acks, heartbeats, the registry import
//! and owner resolution.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ingest_server::clips::ClipAssembler;
use ingest_server::config::Config;
use ingest_server::devices::{self, DeviceError};
use ingest_server::ingest::{self, Ingestor, Outcome, Source};
use ingest_server::registry::{self, ImportError};
use ingest_server::{app, cases, heartbeats, quarantine};
use protocol::{Ack, AckStatus, RejectCode, topics};

const SITE: &str = "hn-caugiay-xuanthuy";

async fn open(url: &str, dir: &std::path::Path) -> Ingestor {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.database.url = url.to_string();
    app::open(&cfg).await.unwrap()
}

fn topic(device: &str) -> Source {
    Source::Mqtt(topics::events_topic(SITE, device).unwrap())
}

async fn submit(i: &Ingestor, bytes: Vec<u8>, source: Source) -> Outcome {
    i.submit(Bytes::from(bytes), source).await.unwrap()
}

fn rejected_code(o: &Outcome) -> (Option<RejectCode>, String) {
    let code = o.ack.as_ref().map(|a| match &a.status {
        AckStatus::Rejected { code, .. } => code.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    });
    (code, o.rejection.clone().expect("quarantined").0)
}

async fn suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    // Migrations are idempotent: a second start on the same database is fine.
    let _again = open(&url, dir.path()).await;
    let ctx = i.context().clone();
    let db = &ctx.db;

    // --- devices
    let k1 = key();
    devices::enrol(db, "edge-01", SITE, &public_hex(&k1))
        .await
        .unwrap();
    assert!(matches!(
        devices::enrol(db, "edge-01", SITE, &public_hex(&k1)).await,
        Err(DeviceError::Exists(_))
    ));
    assert!(matches!(
        devices::enrol(db, "edge-x", SITE, "abcd").await,
        Err(DeviceError::InvalidKey(_))
    ));
    assert!(matches!(
        devices::enrol(db, "bad/id", SITE, &public_hex(&k1)).await,
        Err(DeviceError::InvalidId(_))
    ));
    let k2 = key();
    devices::enrol(db, "edge-02", SITE, &public_hex(&k2))
        .await
        .unwrap();
    assert_eq!(devices::list(db).await.unwrap().len(), 2);

    // --- a good bundle is stored, priced, its stills kept by hash
    let files = Files::new(600_000);
    let ev = event("edge-01", SITE, &files);
    let good = bundle(&ev, &k1, &files);
    let o = submit(&i, good.clone(), topic("edge-01")).await;
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id)));
    let case = cases::case(db, &ev.event_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.fine_status, "priced");
    assert_eq!(
        (case.fine_min_vnd, case.fine_max_vnd, case.licence_points),
        (Some(18_000_000), Some(20_000_000), Some(4))
    );
    assert_eq!((case.evidence_stored, case.evidence_total), (2, 3));
    let still = ctx
        .evidence
        .get(&protocol::sha256_hex(&files.overview))
        .await
        .unwrap();
    assert_eq!(&still[..], &files.overview[..]);

    // --- redelivery: acked duplicate, stored once
    let o = submit(&i, good.clone(), topic("edge-01")).await;
    assert_eq!(o.ack, Some(Ack::duplicate(ev.event_id)));
    assert_eq!(cases::case_count(db).await.unwrap(), 1);
    // ... also when both copies land in the same batch
    let ev2 = event("edge-01", SITE, &files);
    let b2 = Bytes::from(bundle(&ev2, &k1, &files));
    let outs = ingest::process_batch(
        &ctx,
        vec![(b2.clone(), topic("edge-01")), (b2, topic("edge-01"))],
    )
    .await
    .unwrap();
    assert_eq!(outs[0].ack, Some(Ack::stored(ev2.event_id)));
    assert_eq!(outs[1].ack, Some(Ack::duplicate(ev2.event_id)));
    assert_eq!(cases::case_count(db).await.unwrap(), 2);

    // --- bad inputs: each quarantined with its reason, acked when possible
    let forged = bundle(&event("edge-01", SITE, &files), &key(), &files);
    let (code, reason) = rejected_code(&submit(&i, forged, topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::BadSignature), "bad_signature")
    );

    let k3 = key();
    let unknown = bundle(&event("edge-99", SITE, &files), &k3, &files);
    let (code, reason) = rejected_code(&submit(&i, unknown, topic("edge-99")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::UnknownDevice), "unknown_device")
    );

    let o = submit(&i, b"not a bundle at all".to_vec(), topic("edge-01")).await;
    assert!(o.ack.is_none(), "no event id, no ack");
    assert_eq!(o.rejection.unwrap().0, "malformed");

    let mut tampered_files = Files::new(600_000);
    let ev_t = event("edge-01", SITE, &tampered_files);
    tampered_files.overview[10] ^= 0xff;
    let tampered = bundle(&ev_t, &k1, &tampered_files);
    let (code, reason) = rejected_code(&submit(&i, tampered, topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::EvidenceMismatch), "evidence_mismatch")
    );

    // About where it came, not the bytes: quarantined, not answered
    // (`tests/refusals.rs`).
    let wrong = bundle(&event("edge-01", SITE, &files), &k1, &files);
    let (code, reason) = rejected_code(&submit(&i, wrong, topic("edge-02")).await);
    assert_eq!((code, reason.as_str()), (None, "wrong_topic"));

    let mut future = event("edge-01", SITE, &files);
    shift(&mut future, time::Duration::minutes(10));
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&future, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "future_time")
    );

    let mut ancient = event("edge-01", SITE, &files);
    shift(&mut ancient, -time::Duration::days(400));
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&ancient, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "past_limitation")
    );

    let mut green = event("edge-01", SITE, &files);
    green.violation_type = protocol::ViolationType::RedLight;
    green.signal = Some(protocol::SignalObservation {
        state: protocol::SignalState::Green,
        red_for_ms: None,
    });
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&green, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "signal_not_red")
    );

    let mut bad_plate = event("edge-01", SITE, &files);
    bad_plate.plate.text = Some("ZZZZ9".into());
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&bad_plate, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "plate_grammar")
    );

    // The display form is another plate than the text: refused.
    let mut other_display = event("edge-01", SITE, &files);
    other_display.plate.display = Some("51G-678.90".into());
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&other_display, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "plate_display")
    );
    // A readable plate that does not say where on the violator it was
    // read: refused (schema 1.1 and later).
    let mut no_source = event("edge-01", SITE, &files);
    no_source.plate.source = None;
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&no_source, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "plate_source")
    );

    // A still the device could no longer read is left out of its bundle:
    // the case is kept (refused, the device would set it aside and the
    // violation be lost), the still recorded as missing.
    let no_still = event("edge-01", SITE, &files);
    let mut b = protocol::EventBundle::decode(&bundle(&no_still, &k1, &files)).unwrap();
    let lost = b.attachments.pop().unwrap().name;
    let o = submit(&i, b.encode().unwrap(), topic("edge-01")).await;
    assert_eq!(o.ack, Some(Ack::stored(no_still.event_id)));
    let stored: i64 =
        sqlx::query_scalar("SELECT stored FROM evidence WHERE event_id = $1 AND name = $2")
            .bind(no_still.event_id.to_string())
            .bind(&lost)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(stored, 0, "{lost} recorded as missing");

    // Same event id, other content: not a duplicate; quarantined, the
    // stored case untouched.
    let mut conflict = ev.clone();
    conflict.camera_id = "cam-south".into();
    let (code, reason) =
        rejected_code(&submit(&i, bundle(&conflict, &k1, &files), topic("edge-01")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::Invalid), "event_id_conflict")
    );

    devices::revoke(db, "edge-02", "stolen").await.unwrap();
    let revoked = bundle(&event("edge-02", SITE, &files), &k2, &files);
    let (code, reason) = rejected_code(&submit(&i, revoked, topic("edge-02")).await);
    assert_eq!(
        (code, reason.as_str()),
        (Some(RejectCode::UnknownDevice), "revoked_device")
    );

    let q = quarantine::list(db, 100).await.unwrap();
    let mut codes: Vec<_> = q.iter().map(|e| e.reason_code.as_str()).collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "bad_signature",
            "event_id_conflict",
            "evidence_mismatch",
            "future_time",
            "malformed",
            "past_limitation",
            "plate_display",
            "plate_grammar",
            "plate_source",
            "revoked_device",
            "signal_not_red",
            "unknown_device",
            "wrong_topic"
        ]
    );
    // Raw bytes of every quarantined message are kept.
    for e in &q {
        assert!(
            ctx.evidence.contains(&e.payload_sha256).await.unwrap(),
            "{e:?}"
        );
    }
    // Over anonymous HTTP, a real signed event (anyone can have one: court
    // packages carry them) with attachments of someone else's is refused
    // and its megabytes are not kept: only the hash, in the quarantine.
    let mut junk_files = Files::new(600_000);
    let ev_j = event("edge-01", SITE, &junk_files);
    junk_files.overview = vec![0x42; 2_000_000];
    let junk = bundle(&ev_j, &k1, &junk_files);
    let o = submit(&i, junk.clone(), Source::Http).await;
    assert_eq!(o.rejection.as_ref().unwrap().0, "evidence_mismatch");
    let digest = protocol::sha256_hex(&junk);
    assert!(
        !ctx.evidence.contains(&digest).await.unwrap(),
        "anonymous junk attached to a signed event is not stored"
    );
    // ... and the server still takes good events.
    let ev3 = event("edge-01", SITE, &files);
    let o = submit(&i, bundle(&ev3, &k1, &files), Source::Http).await;
    assert_eq!(o.ack, Some(Ack::stored(ev3.event_id)));
    // (the two above, the one with a still missing, and this one)
    assert_eq!(cases::case_count(db).await.unwrap(), 4);

    // --- the clip follows as chunks; the last one brings the item ack
    clip_suite(&i, &ev, &files).await;
    heartbeat_suite(&i, &k1).await;
    registry_suite(&i, &k1).await;
}

async fn clip_suite(i: &Ingestor, ev: &protocol::ViolationEvent, files: &Files) {
    let ctx = i.context();
    let clips = Arc::new(ClipAssembler::default());
    let evidence_topic = topics::evidence_topic(SITE, "edge-01").unwrap();
    let item = ev.evidence_item("clip.mp4").unwrap();
    let chunks = split_clip(ev.event_id, "clip.mp4", &files.clip);
    assert_eq!(chunks.len(), 3);
    // Out of order, with one chunk resent.
    for idx in [2usize, 0, 2] {
        let o = clips
            .receive(
                ctx,
                Bytes::from(chunks[idx].encode().unwrap()),
                &evidence_topic,
            )
            .await
            .unwrap();
        assert!(o.ack.is_none(), "no ack before the clip is complete");
    }
    let o = clips
        .receive(
            ctx,
            Bytes::from(chunks[1].encode().unwrap()),
            &evidence_topic,
        )
        .await
        .unwrap();
    assert_eq!(o.ack, Some(Ack::stored(ev.event_id).for_item("clip.mp4")));
    let case = cases::case(&ctx.db, &ev.event_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.evidence_stored, 3);
    assert_eq!(
        &ctx.evidence.get(&item.sha256).await.unwrap()[..],
        &files.clip[..]
    );
    let o = clips
        .receive(
            ctx,
            Bytes::from(chunks[0].encode().unwrap()),
            &evidence_topic,
        )
        .await
        .unwrap();
    assert_eq!(
        o.ack,
        Some(Ack::duplicate(ev.event_id).for_item("clip.mp4"))
    );

    // A clip whose chunks are each intact but not the signed file.
    let files2 = Files::new(300_000);
    let k = key();
    devices::enrol(&ctx.db, "edge-03", SITE, &public_hex(&k))
        .await
        .unwrap();
    let ev2 = event("edge-03", SITE, &files2);
    let o = i
        .submit(Bytes::from(bundle(&ev2, &k, &files2)), topic("edge-03"))
        .await
        .unwrap();
    assert_eq!(o.ack, Some(Ack::stored(ev2.event_id)));
    let mut other = files2.clip.clone();
    other[5] ^= 1;
    let t3 = topics::evidence_topic(SITE, "edge-03").unwrap();
    let mut last = None;
    for c in split_clip(ev2.event_id, "clip.mp4", &other) {
        last = Some(
            clips
                .receive(ctx, Bytes::from(c.encode().unwrap()), &t3)
                .await
                .unwrap(),
        );
    }
    let last = last.unwrap();
    assert_eq!(last.rejection.unwrap().0, "clip_mismatch");
    assert!(matches!(
        last.ack,
        Some(Ack { item: Some(ref n), status: AckStatus::Rejected { code: RejectCode::EvidenceMismatch, .. }, .. }) if n == "clip.mp4"
    ));
    // The chunk of an event that does not exist, and garbage, are quarantined.
    let stray = split_clip(uuid::Uuid::new_v4(), "clip.mp4", &other);
    let o = clips
        .receive(ctx, Bytes::from(stray[0].encode().unwrap()), &t3)
        .await
        .unwrap();
    assert_eq!(o.rejection.unwrap().0, "unknown_event");
    let o = clips
        .receive(ctx, Bytes::from_static(b"TVC1garbage"), &t3)
        .await
        .unwrap();
    assert_eq!(o.rejection.unwrap().0, "malformed");
}

async fn heartbeat_suite(i: &Ingestor, k1: &protocol::SigningKey) {
    let ctx = i.context();
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let hb: protocol::Heartbeat = serde_json::from_value(serde_json::json!({
        "schema_version": "1.0", "device_id": "edge-01", "site": SITE, "time": now,
        "software_version": "edge-agent test", "uptime_s": 10,
        "cameras": [{"camera_id": "cam-north", "state": "streaming", "analysed_fps": 12.5}],
        "outbox": {"depth": 0}, "disk_free_bytes": 1000, "alarms": [],
        "clock": {"status": "synced"}
    }))
    .unwrap();
    let t = topics::heartbeat_topic(SITE, "edge-01").unwrap();
    let json = Bytes::from(hb.sign(k1).unwrap().to_json().unwrap());
    assert!(
        heartbeats::receive(ctx, json.clone(), &t)
            .await
            .unwrap()
            .is_some()
    );
    assert!(heartbeats::receive(ctx, json, &t).await.unwrap().is_some());
    let forged = Bytes::from(hb.sign(&key()).unwrap().to_json().unwrap());
    assert!(
        heartbeats::receive(ctx, forged, &t)
            .await
            .unwrap()
            .is_none()
    );
    let latest = heartbeats::latest(&ctx.db).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].device_id, "edge-01");
    // A newer report replaces it; an older one (replayed, redelivered)
    // does not.
    let mut newer = hb.clone();
    newer.time += time::Duration::seconds(30);
    newer.alarms = vec![protocol::Alarm::OutboxFull];
    let newer_json = Bytes::from(newer.sign(k1).unwrap().to_json().unwrap());
    heartbeats::receive(ctx, newer_json.clone(), &t)
        .await
        .unwrap();
    let mut older = hb.clone();
    older.time -= time::Duration::minutes(10);
    let older_json = Bytes::from(older.sign(k1).unwrap().to_json().unwrap());
    heartbeats::receive(ctx, older_json, &t).await.unwrap();
    let latest = heartbeats::latest(&ctx.db).await.unwrap();
    assert_eq!(
        latest[0].signed_json.as_bytes(),
        &newer_json[..],
        "the newest stays"
    );
    // A box rebooted without its clock (1970, unsynced, its alarm raised)
    // is heard, whatever its time says.
    let mut rebooted = hb.clone();
    rebooted.time = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
    rebooted.clock.status = protocol::ClockSyncStatus::Unsynced;
    rebooted.alarms = vec![protocol::Alarm::ClockUnsynced];
    let rebooted_json = Bytes::from(rebooted.sign(k1).unwrap().to_json().unwrap());
    heartbeats::receive(ctx, rebooted_json.clone(), &t)
        .await
        .unwrap();
    let latest = heartbeats::latest(&ctx.db).await.unwrap();
    assert_eq!(latest[0].signed_json.as_bytes(), &rebooted_json[..]);

    // Reports that carry the agent's run (schema 1.3) are ordered by it and
    // not by the clock: a captured report of an unsynchronised box,
    // replayed, no longer replaces a later one.
    let latest_json = || async {
        heartbeats::latest(&ctx.db).await.unwrap()[0]
            .signed_json
            .clone()
    };
    let of_run = |run: u128, seq: u64, minutes: i64| {
        let mut r = rebooted.clone();
        r.boot = Some(protocol::BootSeq {
            boot_id: uuid::Uuid::from_u128(run),
            seq,
        });
        r.time += time::Duration::minutes(minutes);
        Bytes::from(r.sign(k1).unwrap().to_json().unwrap())
    };
    let (a1, a2) = (of_run(1, 1, 60), of_run(1, 2, 0));
    heartbeats::receive(ctx, a1.clone(), &t).await.unwrap();
    heartbeats::receive(ctx, a2.clone(), &t).await.unwrap();
    assert_eq!(
        latest_json().await.as_bytes(),
        &a2[..],
        "a later place in the run, whatever the clock"
    );
    heartbeats::receive(ctx, a1, &t).await.unwrap();
    assert_eq!(
        latest_json().await.as_bytes(),
        &a2[..],
        "a replayed earlier place is ignored"
    );
    // The agent restarts: a run never seen is newer; the old run is over.
    let b1 = of_run(2, 1, -60);
    heartbeats::receive(ctx, b1.clone(), &t).await.unwrap();
    assert_eq!(
        latest_json().await.as_bytes(),
        &b1[..],
        "a new run replaces the old one"
    );
    heartbeats::receive(ctx, of_run(1, 3, 120), &t)
        .await
        .unwrap();
    assert_eq!(
        latest_json().await.as_bytes(),
        &b1[..],
        "a report of a run that ended is a replay"
    );
    // A report without a run (captured before the agent's upgrade) no
    // longer replaces one that carried a run, and does not wipe it.
    heartbeats::receive(ctx, rebooted_json.clone(), &t)
        .await
        .unwrap();
    assert_eq!(
        latest_json().await.as_bytes(),
        &b1[..],
        "a pre-upgrade report replayed"
    );
    let b2 = of_run(2, 2, -59);
    heartbeats::receive(ctx, b2.clone(), &t).await.unwrap();
    assert_eq!(latest_json().await.as_bytes(), &b2[..]);
    // Two replicas at once: a straggler of the ended run was stored last.
    // The next report of the current run still replaces it.
    sqlx::query("UPDATE heartbeats SET boot_id = $1, boot_seq = 50 WHERE device_id = 'edge-01'")
        .bind(uuid::Uuid::from_u128(1).to_string())
        .execute(ctx.db.pool())
        .await
        .unwrap();
    let b3 = of_run(2, 3, -58);
    heartbeats::receive(ctx, b3.clone(), &t).await.unwrap();
    assert_eq!(
        latest_json().await.as_bytes(),
        &b3[..],
        "the later run wins back"
    );
}

async fn registry_suite(i: &Ingestor, k1: &protocol::SigningKey) {
    let ctx = i.context();
    let dir = tempfile::tempdir().unwrap();
    let owners = dir.path().join("owners.csv");
    let vehicles = dir.path().join("vehicles.csv");
    std::fs::write(
        &owners,
        "owner_id,full_name,national_id,address,phone,email,vneid\n\
         o1,Nguyễn Văn An,001099012345,\"12 Xuân Thủy, Cầu Giấy, Hà Nội\",0912345678,,\n\
         o2,Trần Thị Bình,12345,Hà Nội,,,\n",
    )
    .unwrap();
    std::fs::write(
        &vehicles,
        "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
         30A-123.45,white,car,Toyota Vios,white,active,o1\n\
         30A-999.99,green,car,Kia Morning,red,active,o1\n\
         XX-1,white,car,Ford,blue,active,o1\n\
         29A-111.11,white,car,Ford,blue,active,o9\n",
    )
    .unwrap();
    let err = registry::import(&ctx.db, ctx.grammar, &vehicles, &owners)
        .await
        .unwrap_err();
    let ImportError::Invalid(problems) = err else {
        panic!("{err}")
    };
    let lines: Vec<_> = problems
        .iter()
        .map(|p| (p.file.ends_with("owners.csv"), p.line))
        .collect();
    assert_eq!(
        lines,
        [(true, 3), (false, 3), (false, 4), (false, 5)],
        "{problems:?}"
    );
    // Nothing was written.
    let n: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM owners")
            .fetch_one(ctx.db.pool())
            .await
            .unwrap(),
        0,
    );
    assert_eq!(n, 0);

    std::fs::write(
        &owners,
        "owner_id,full_name,national_id,address,phone,email,vneid\n\
         o1,Nguyễn Văn An,001099012345,\"12 Xuân Thủy, Cầu Giấy, Hà Nội\",0912345678,,\n",
    )
    .unwrap();
    std::fs::write(
        &vehicles,
        "plate_text,plate_colour,vehicle_type,make,colour,registration_status,owner_id\n\
         30A-123.45,white,car,Toyota Vios,white,active,o1\n",
    )
    .unwrap();
    assert_eq!(
        registry::import(&ctx.db, ctx.grammar, &vehicles, &owners)
            .await
            .unwrap(),
        (1, 1)
    );

    // A new case for that plate resolves its owner after commit; another
    // plate stays open as unresolved.
    let files = Files::new(1000);
    let ev = event("edge-01", SITE, &files);
    let mut ev_other = event("edge-01", SITE, &files);
    ev_other.plate.text = Some("51F67890".into());
    ev_other.plate.display = Some("51F-678.90".into());
    for e in [&ev, &ev_other] {
        let o = i
            .submit(Bytes::from(bundle(e, k1, &files)), topic("edge-01"))
            .await
            .unwrap();
        assert_eq!(o.ack, Some(Ack::stored(e.event_id)));
    }
    let status = |id: uuid::Uuid| {
        let db = ctx.db.clone();
        async move {
            for _ in 0..100 {
                let c = cases::case(&db, &id.to_string()).await.unwrap().unwrap();
                if c.owner_status != "pending" {
                    return (c.owner_status, c.owner_id);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("owner of {id} never resolved");
        }
    };
    assert_eq!(
        status(ev.event_id).await,
        ("resolved".into(), Some("o1".into()))
    );
    assert_eq!(status(ev_other.event_id).await, ("unresolved".into(), None));
    // A case left pending (server stopped before its lookup) is resolved
    // by the sweep that runs at start.
    sqlx::query("UPDATE events SET owner_status = 'pending', owner_id = NULL WHERE event_id = $1")
        .bind(ev.event_id.to_string())
        .execute(ctx.db.pool())
        .await
        .unwrap();
    let registry = ctx.registry.clone().unwrap();
    assert!(registry::resolve_pending(&ctx.db, registry.as_ref(), 1000).await >= 1);
    assert_eq!(
        status(ev.event_id).await,
        ("resolved".into(), Some("o1".into()))
    );
    // A reviewer corrects the first case's plate to one nobody owns while
    // the lookup of the machine read is still under way (or the server
    // restarts before the correction's own lookup): the late lookup must
    // not put the misread plate's owner on the case.
    let at_review = |id: uuid::Uuid| {
        let db = ctx.db.clone();
        async move {
            let r = sqlx::query("SELECT owner_status, owner_id FROM events WHERE event_id = $1")
                .bind(id.to_string())
                .fetch_one(db.pool())
                .await
                .unwrap();
            (
                sqlx::Row::get::<String, _>(&r, 0),
                sqlx::Row::get::<Option<String>, _>(&r, 1),
            )
        }
    };
    sqlx::query(
        "UPDATE events SET reviewed_plate = '51F67890', owner_status = 'pending', \
         owner_id = NULL WHERE event_id = $1",
    )
    .bind(ev.event_id.to_string())
    .execute(ctx.db.pool())
    .await
    .unwrap();
    registry::resolve_owners(&ctx.db, registry.as_ref(), std::slice::from_ref(&ev)).await;
    assert_eq!(
        at_review(ev.event_id).await,
        ("pending".into(), None),
        "the machine read's late lookup is not recorded"
    );
    assert!(registry::resolve_pending(&ctx.db, registry.as_ref(), 1000).await >= 1);
    assert_eq!(
        at_review(ev.event_id).await,
        ("unresolved".into(), None),
        "the sweep looks up the corrected plate"
    );
    // Once a case is confirmed with an owner, the notice went to that
    // person: no later lookup changes it (here one that finds nobody).
    sqlx::query(
        "UPDATE events SET owner_status = 'resolved', owner_id = 'o1', confirmed_at = 1 \
         WHERE event_id = $1",
    )
    .bind(ev.event_id.to_string())
    .execute(ctx.db.pool())
    .await
    .unwrap();
    registry::resolve_for(
        &ctx.db,
        registry.as_ref(),
        ev.event_id,
        "51F67890",
        "white",
        "t",
    )
    .await;
    assert_eq!(
        at_review(ev.event_id).await,
        ("resolved".into(), Some("o1".into()))
    );

    let logged: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM registry_access_log WHERE actor = 'ingest'")
            .fetch_one(ctx.db.pool())
            .await
            .unwrap(),
        0,
    );
    assert!(logged >= 2, "every lookup is logged, got {logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = ingest_server::db::Db::sqlite_url(&dir.path().join("test.db"));
    suite(url).await;
}

/// On PostgreSQL over TLS, as at city scale where the database is on
/// another host and carries owners' personal data: the server takes only
/// TLS connections (`hostssl`) and the URL makes the server check its
/// certificate (`sslmode=verify-full&sslrootcert=ca.crt`). Plain
/// PostgreSQL is covered by the other suites (notices, review, ...).
/// Then the refusals: without TLS the database turns the server away, and
/// a CA that did not sign the database's certificate stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_postgres_over_tls() {
    let pki = pki::Pki::new();
    let pg = Postgres::start_tls(&pki);
    let url = pg.fresh_database().await;
    assert!(url.contains("sslmode=verify-full"), "{url}");
    suite(url.clone()).await;

    let base = url.split('?').next().unwrap();
    let rogue = pki.path("rogue-ca.crt");
    for (what, url, expect) in [
        (
            "without TLS",
            format!("{base}?sslmode=disable"),
            "no encryption",
        ),
        (
            "trusting another CA",
            format!("{base}?sslmode=verify-full&sslrootcert={rogue}"),
            "certificate",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        cfg.database.url = url;
        let Err(e) = app::open(&cfg).await else {
            panic!("{what}: the server started");
        };
        let msg = format!("{e:#}");
        assert!(msg.contains(expect), "{what}: {msg}");
    }
    drop(pg);
}
