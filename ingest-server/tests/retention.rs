//! Retention, run unchanged against SQLite and a real PostgreSQL: the
//! evidence of rejected cases goes after `rejected_days`, of paid cases
//! after `closed_days`, of quarantined messages after `quarantine_days`;
//! bytes another case still needs stay; packs are rewritten so that the
//! deleted bytes are really gone from the disk; a purged case cannot be
//! reopened; every purge is in the audit log; a second run does nothing.
//! A pack whose ingest batch never committed (the server stopped between
//! the pack and the commit, the device resent) goes once nothing kept
//! names its files; a committed pack whose marker was left loses only the
//! marker.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use ingest_server::audit::{self, Verification};
use ingest_server::db::now_ms;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::retention::{self, RetentionConfig};
use ingest_server::review::{ReviewError, Reviewer};
use ingest_server::workflow::{Action, Actor, Role, WorkflowError};
use ingest_server::{app, devices, quarantine};
use protocol::sha256_hex;
use sqlx::Row;

const SITE: &str = "dn-haichau-bachdang";
const DAY: i64 = 86_400_000;

async fn open(url: &str, dir: &Path) -> Ingestor {
    let mut cfg = local_config(dir);
    cfg.database.url = url.to_string();
    app::open(&cfg).await.unwrap()
}

/// Files of their own for one case (`seed`), with the plate crop given.
fn files(seed: u8, plate: &[u8]) -> Files {
    let pattern = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(97) ^ seed ^ (i >> 8) as u8)
            .collect()
    };
    Files {
        overview: pattern(6000),
        plate: plate.to_vec(),
        clip: pattern(900),
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Whether any file under `dir` holds `needle`.
fn on_disk(dir: &Path, needle: &[u8]) -> bool {
    walk(dir).iter().any(|p| {
        std::fs::read(p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    })
}

async fn stored_flags(i: &Ingestor, id: &str) -> Vec<i64> {
    sqlx::query("SELECT stored FROM evidence WHERE event_id = $1 ORDER BY name")
        .bind(id)
        .fetch_all(i.context().db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

async fn suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    let ctx = i.context().clone();
    let db = &ctx.db;
    let k = key();
    devices::enrol(db, "edge-ret", SITE, &public_hex(&k))
        .await
        .unwrap();

    // A and D have files of their own; B and C share a plate crop (the
    // same bytes, stored once, in B's pack).
    let shared: Vec<u8> = (0..800u32).map(|i| (i * 7 % 251) as u8).collect();
    let own: Vec<Vec<u8>> = (0..4u8)
        .map(|s| {
            (0..700u32)
                .map(|i| (i as u8) ^ s.wrapping_mul(53))
                .collect()
        })
        .collect();
    let fa = files(11, &own[0]);
    let fb = files(22, &shared);
    let fc = files(33, &shared);
    let fd = files(44, &own[3]);
    let mut ids = Vec::new();
    let mut bundles = Vec::new();
    for f in [&fa, &fb, &fc, &fd] {
        let ev = event("edge-ret", SITE, f);
        ids.push(ev.event_id.to_string());
        bundles.push(Bytes::from(bundle(&ev, &k, f)));
        let o = i
            .submit(bundles[bundles.len() - 1].clone(), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
    }
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // Owners contested A and C with a photo each (the citizen app's path
    // is tests/citizen.rs; here only the rows matter).
    let photo_a = ctx
        .evidence
        .put(Bytes::from_static(b"photo for A"))
        .await
        .unwrap();
    let photo_c = ctx
        .evidence
        .put(Bytes::from_static(b"photo for C"))
        .await
        .unwrap();
    for (n, (id, photo)) in [(a, &photo_a), (c, &photo_c)].into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO contests (id, event_id, owner_id, reason, photo_sha256, photo_type, \
             created_at) VALUES ($1, $2, 'owner-1', 'not my car', $3, 'image/jpeg', $4)",
        )
        .bind(format!("contest-{n}"))
        .bind(id)
        .bind(photo)
        .bind(now_ms())
        .execute(db.pool())
        .await
        .unwrap();
    }
    // A message from a device nobody enrolled, over MQTT: quarantined with
    // its bytes (over HTTP only a signed bundle's bytes are kept).
    let stranger = key();
    let raw = bundle(&event("edge-unknown", SITE, &fa), &stranger, &fa);
    let topic = format!("tv/v1/{SITE}/edge-unknown/events");
    let o = i
        .submit(Bytes::from(raw.clone()), Source::Mqtt(topic))
        .await
        .unwrap();
    assert!(o.rejection.is_some());
    let raw_sha = sha256_hex(&raw);
    assert!(ctx.evidence.contains(&raw_sha).await.unwrap());

    // A and B rejected by an operator, D paid.
    let r = Reviewer {
        db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let now = now_ms();
    let op = Actor {
        id: "op.lan".into(),
        role: Role::Operator,
    };
    let unreadable = Action::Reject {
        code: "plate_unreadable".into(),
    };
    for id in [a, b] {
        r.act(id, &Action::Claim, &op, "", now).await.unwrap();
        r.act(id, &unreadable, &op, "", now).await.unwrap();
    }
    // Paying goes through police, notice and the gateway (tests/payments.rs);
    // here only the state and when it was reached matter.
    sqlx::query("UPDATE events SET state = 'paid', state_changed_at = $1 WHERE event_id = $2")
        .bind(now)
        .bind(d)
        .execute(db.pool())
        .await
        .unwrap();

    let cfg = RetentionConfig::default();
    let evidence_dir = dir.path().join("evidence");
    let run = |at: i64, dry: bool| {
        let (db, store, cfg) = (db.clone(), ctx.evidence.clone(), cfg.clone());
        async move { retention::run(&db, &store, &cfg, at, dry).await.unwrap() }
    };

    // --- before the periods end, nothing goes
    let r10 = run(now + 10 * DAY, false).await;
    assert_eq!(
        (r10.cases, r10.files_removed, r10.quarantine_rows),
        (0, 0, 0)
    );
    assert!(on_disk(&evidence_dir, &fa.overview));

    // --- after 100 days: the two rejections and the quarantined message
    assert_eq!(run(now + 100 * DAY, true).await.cases, 2, "dry run");
    assert!(
        on_disk(&evidence_dir, &fa.overview),
        "a dry run deletes nothing"
    );
    // The packs as they were, to play a purge that stopped before it
    // deleted the old packs (below).
    let packs = evidence_dir.join("packs");
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = walk(&packs)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    // A clip D's device began and never finished (one chunk of three,
    // staged as `clips.rs` stages it): video no case will ever hold.
    let stale: Vec<u8> = (0..500u32).map(|i| (i * 13 % 241) as u8 ^ 0x5a).collect();
    let d_id = uuid::Uuid::parse_str(d).unwrap();
    ctx.evidence
        .put_chunk(d_id, "late.mp4", 0, Bytes::from(stale.clone()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO clip_chunks (event_id, name, idx, count, total_size, sha256, received_at) \
         VALUES ($1, 'late.mp4', 0, 3, 1500, $2, $3)",
    )
    .bind(d)
    .bind(sha256_hex(&stale))
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    assert!(on_disk(&evidence_dir, &stale));
    assert_eq!(run(now + 10 * DAY, false).await.stale_clips, 0, "not yet");
    let r100 = run(now + 100 * DAY, false).await;
    assert_eq!(r100.stale_clips, 1, "{r100:?}");
    assert!(!on_disk(&evidence_dir, &stale), "the staged chunk is gone");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clip_chunks")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(r100.cases, 2);
    assert!(r100.problems.is_empty(), "{:?}", r100.problems);
    // A's two stills and contest photo, B's overview, the quarantined
    // message.
    assert_eq!(r100.files_removed, 5, "{r100:?}");
    assert_eq!(r100.quarantine_rows, 1);
    assert!(r100.packs_rewritten >= 1, "{r100:?}");
    assert!(!ctx.evidence.contains(&photo_a).await.unwrap());
    assert_eq!(
        ctx.evidence.get(&photo_c).await.unwrap(),
        &b"photo for C"[..]
    );
    let photos: Vec<Option<String>> = sqlx::query("SELECT photo_sha256 FROM contests ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(photos, [None, Some(photo_c.clone())]);
    for gone in [&fa.overview, &fa.plate, &fb.overview, &raw] {
        assert!(
            !ctx.evidence.contains(&sha256_hex(gone)).await.unwrap(),
            "{} still indexed",
            sha256_hex(gone)
        );
        assert!(
            !on_disk(&evidence_dir, gone),
            "deleted bytes are still on disk"
        );
    }
    // What C (open) still needs is still there and still reads right,
    // including the plate crop that moved out of B's pack.
    for kept in [&fc.overview, &shared, &fd.overview, &fd.plate] {
        assert_eq!(
            ctx.evidence.get(&sha256_hex(kept)).await.unwrap(),
            Bytes::from(kept.clone())
        );
    }
    // The rows say so (clip, overview, plate): the clip never arrived, the
    // stills are gone, but for B's plate crop, which C still needs (it
    // goes when the last case naming it is purged).
    assert_eq!(stored_flags(&i, a).await, [0, 0, 0]);
    assert_eq!(stored_flags(&i, b).await, [0, 0, 1]);
    assert_eq!(stored_flags(&i, c).await, [0, 1, 1]);
    assert!(quarantine::list(db, 10).await.unwrap().is_empty());

    // --- the old packs come back, as a stop between the index commit and
    // the deletion leaves them (recorded as superseded): rebuilding the
    // index does not bring purged files back, and the next run deletes them
    let mut restored = 0;
    for (p, b) in &before {
        if !p.exists() {
            std::fs::write(p, b).unwrap();
            let key = p.strip_prefix(&evidence_dir).unwrap().to_str().unwrap();
            sqlx::query("INSERT INTO superseded_packs (pack, at) VALUES ($1, $2)")
                .bind(key)
                .bind(now)
                .execute(db.pool())
                .await
                .unwrap();
            restored += 1;
        }
    }
    assert!(restored >= 2, "A's pack and B's were replaced");
    let re = ctx.evidence.reindex(true).await.unwrap();
    assert!(re.problems.is_empty(), "{:?}", re.problems);
    assert_eq!(
        re.purged_skipped, 3,
        "A's two stills and B's overview: {re:?}"
    );
    for gone in [&fa.overview, &fa.plate, &fb.overview] {
        assert!(!ctx.evidence.contains(&sha256_hex(gone)).await.unwrap());
    }

    // --- a purged rejection cannot be reopened
    let sup = Actor {
        id: "sup.minh".into(),
        role: Role::Supervisor,
    };
    assert!(matches!(
        r.act(
            a,
            &Action::Reopen,
            &sup,
            "the plate is readable after all",
            now + 101 * DAY
        )
        .await,
        Err(ReviewError::Refused(WorkflowError::EvidencePurged))
    ));

    // --- the audit log names each case, and still verifies
    let trail = audit::for_subject(db, &format!("case:{a}")).await.unwrap();
    let purge = trail
        .iter()
        .find(|e| e.action == "evidence.purge")
        .expect("purge audited");
    assert_eq!(purge.actor, "retention");
    assert!(purge.detail.contains("rejected"), "{}", purge.detail);
    assert!(matches!(
        audit::verify(db).await.unwrap(),
        Verification::Intact { .. }
    ));

    // --- a second run finds no case or file left, only the superseded packs
    let again = run(now + 100 * DAY, false).await;
    assert_eq!(
        (
            again.cases,
            again.files_removed,
            again.quarantine_rows,
            again.packs_deleted
        ),
        (0, 0, 0, restored)
    );
    for gone in [&fa.overview, &fa.plate, &fb.overview] {
        assert!(
            !on_disk(&evidence_dir, gone),
            "a superseded pack is still on disk"
        );
    }

    // --- B's bundle delivered again (an edge that never got its ack): a
    // duplicate, whose stills the batch packs again; the next run
    // deletes them again
    let o = i.submit(bundles[1].clone(), Source::Http).await.unwrap();
    assert!(o.rejection.is_none(), "{:?}", o.rejection);
    assert!(
        ctx.evidence
            .contains(&sha256_hex(&fb.overview))
            .await
            .unwrap()
    );
    let redelivered = run(now + 100 * DAY, false).await;
    assert_eq!(redelivered.files_removed, 1, "{redelivered:?}");
    assert!(
        !ctx.evidence
            .contains(&sha256_hex(&fb.overview))
            .await
            .unwrap()
    );
    assert!(!on_disk(&evidence_dir, &fb.overview));

    // --- the paid case after its two years
    let r800 = run(now + 800 * DAY, false).await;
    assert_eq!((r800.cases, r800.files_removed), (1, 2), "{r800:?}");
    assert!(!on_disk(&evidence_dir, &fd.overview));
    assert_eq!(
        ctx.evidence.get(&sha256_hex(&shared)).await.unwrap().len(),
        shared.len(),
        "C still needs the shared crop"
    );
}

/// The `pending/` marker of pack `key`, on disk.
fn marker_of(evidence_dir: &Path, key: &str) -> std::path::PathBuf {
    evidence_dir.join(key.replacen("packs/", "pending/", 1))
}

/// X's batch wrote its pack, then the server stopped before the commit;
/// the device resent, and the retry's pack was indexed. Y's and Z's
/// batches committed but their markers were not deleted, and Y's index
/// rows are lost as in a database restored from an older copy.
async fn uncommitted_suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    let ctx = i.context().clone();
    let (db, store) = (&ctx.db, &ctx.evidence);
    let k = key();
    devices::enrol(db, "edge-crash", SITE, &public_hex(&k))
        .await
        .unwrap();
    let evidence_dir = dir.path().join("evidence");
    let (fx, fy, fz) = (
        files(71, &[7; 600]),
        files(72, &[8; 600]),
        files(73, &[9; 600]),
    );
    let digest_of = |b: &[u8]| (sha256_hex(b), Bytes::from(b.to_vec()));

    // The crash: the batch's pack (and its marker) written through the
    // same call as `commit_batch` makes, never indexed.
    let crashed = store
        .put_pack(vec![digest_of(&fx.overview), digest_of(&fx.plate)])
        .await
        .unwrap();
    let orphan = evidence_dir.join(&crashed[0].pack);
    assert!(orphan.exists());
    let mut ids = Vec::new();
    for f in [&fx, &fy, &fz] {
        let ev = event("edge-crash", SITE, f);
        let o = i
            .submit(Bytes::from(bundle(&ev, &k, f)), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
        ids.push(ev.event_id.to_string());
    }
    let pack_of = |b: &[u8]| {
        let d = sha256_hex(b);
        async move { store.locate(&d).await.unwrap().key.to_string() }
    };
    let (pack_y, pack_z) = (pack_of(&fy.overview).await, pack_of(&fz.overview).await);
    assert_ne!(pack_of(&fx.overview).await, crashed[0].pack, "the retry's");
    for key in [&pack_y, &pack_z] {
        let m = marker_of(&evidence_dir, key);
        assert!(!m.exists(), "deleted after the commit");
        std::fs::create_dir_all(m.parent().unwrap()).unwrap();
        std::fs::write(&m, key.as_bytes()).unwrap();
    }
    sqlx::query("DELETE FROM evidence_index WHERE pack = $1")
        .bind(&pack_y)
        .execute(db.pool())
        .await
        .unwrap();

    let cfg = RetentionConfig::default();
    let run = |at: i64| {
        let (db, store, cfg) = (db.clone(), store.clone(), cfg.clone());
        async move { retention::run(&db, &store, &cfg, at, false).await.unwrap() }
    };
    let now = now_ms();
    let fresh = run(now).await;
    assert!(marker_of(&evidence_dir, &pack_z).exists(), "{fresh:?}");
    // While X's case is kept, its orphan copy stays (so does the restored
    // Y's pack, which its case names).
    run(now + 10 * DAY).await;
    assert!(orphan.exists() && on_disk(&evidence_dir, &fx.overview));
    assert!(evidence_dir.join(&pack_y).exists());

    // X rejected; 91 days later its evidence goes, both copies.
    let r = Reviewer {
        db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op.lan".into(),
        role: Role::Operator,
    };
    r.act(&ids[0], &Action::Claim, &op, "", now).await.unwrap();
    let unreadable = Action::Reject {
        code: "plate_unreadable".into(),
    };
    r.act(&ids[0], &unreadable, &op, "", now).await.unwrap();
    let r91 = run(now + 91 * DAY).await;
    assert_eq!(r91.cases, 1, "{r91:?}");
    for gone in [&fx.overview, &fx.plate] {
        assert!(!on_disk(&evidence_dir, gone), "a copy is still on disk");
    }
    assert!(!orphan.exists() && !marker_of(&evidence_dir, &crashed[0].pack).exists());
    assert_eq!(r91.uncommitted_packs, 1, "{r91:?}");
    // Z committed: only its marker went.
    assert!(!marker_of(&evidence_dir, &pack_z).exists());
    assert_eq!(
        store.get(&sha256_hex(&fz.plate)).await.unwrap(),
        Bytes::from(fz.plate.clone())
    );
    // Y's pack is kept with its marker, and reported until reindexed.
    assert!(evidence_dir.join(&pack_y).exists());
    assert!(marker_of(&evidence_dir, &pack_y).exists());
    assert!(
        r91.problems.len() == 1 && r91.problems[0].contains(&pack_y),
        "{:?}",
        r91.problems
    );
    let re = store.reindex(false).await.unwrap();
    assert_eq!(re.added, 2, "{re:?}");
    assert_eq!(
        store.get(&sha256_hex(&fy.overview)).await.unwrap(),
        Bytes::from(fy.overview.clone())
    );
    let last = run(now + 92 * DAY).await;
    assert!(last.problems.is_empty(), "{:?}", last.problems);
    let pending = evidence_dir.join("pending");
    assert!(
        !pending.exists() || walk(&pending).is_empty(),
        "no marker left"
    );
    assert!(evidence_dir.join(&pack_y).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_packs_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    uncommitted_suite(ingest_server::db::Db::sqlite_url(&dir.path().join("t.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_packs_on_postgres() {
    let pg = Postgres::start();
    uncommitted_suite(pg.fresh_database().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(ingest_server::db::Db::sqlite_url(&dir.path().join("t.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    let pg = Postgres::start();
    suite(pg.fresh_database().await).await;
}

/// A case nobody decided (`new`) past the one-year limitation period is
/// closed by retention as rejected (`limitation_expired`, with its
/// transition and audit entry), and the rejected case's retention then
/// deletes its stills and the gateway's copy of its owner; a decided fine
/// (`confirmed`) past the period is left alone. A case purged keeps its
/// contest, payment and follow-up message rows, without their personal
/// parts (the contest's text, the payer's IP and the gateway's raw
/// answers, the police's words), amounts and references intact.
async fn expiry_suite(url: String) {
    let dir = tempfile::tempdir().unwrap();
    let i = open(&url, dir.path()).await;
    let ctx = i.context().clone();
    let db = &ctx.db;
    let k = key();
    devices::enrol(db, "edge-exp", SITE, &public_hex(&k))
        .await
        .unwrap();
    let own: Vec<Vec<u8>> = (0..3u8)
        .map(|s| {
            (0..700u32)
                .map(|i| (i as u8) ^ s.wrapping_mul(71) ^ 0x33)
                .collect()
        })
        .collect();
    let fs: Vec<Files> = (0..3u8)
        .map(|s| files(60 + s, &own[usize::from(s)]))
        .collect();
    let mut ids = Vec::new();
    for f in &fs {
        let ev = event("edge-exp", SITE, f);
        ids.push(ev.event_id.to_string());
        let o = i
            .submit(Bytes::from(bundle(&ev, &k, f)), Source::Http)
            .await
            .unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
    }
    let (undecided, confirmed, paid) = (&ids[0], &ids[1], &ids[2]);
    // The owner lookups ingest starts must be over before the rows are
    // set by hand below (a late one would overwrite the owner).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE owner_status = 'pending'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "owner lookups");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let now = now_ms();
    // The gateway's copy of the undecided case's owner, as a lookup
    // leaves it (`registry/http.rs`).
    let plate: String = sqlx::query_scalar("SELECT plate_text FROM events WHERE event_id = $1")
        .bind(undecided)
        .fetch_one(db.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO owners (owner_id, full_name, national_id, address, copied_at) \
         VALUES ('gw-1', 'Phạm Văn Đức', '001077000111', 'Hải Phòng', $1)",
    )
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO vehicles (plate_text, plate_colour, vehicle_type, make, colour, \
         registration_status, owner_id, copied_at) \
         VALUES ($1, 'white', 'car', 'Kia', 'red', 'active', 'gw-1', $2)",
    )
    .bind(&plate)
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE events SET owner_id = 'gw-1', owner_status = 'found' WHERE event_id = $1")
        .bind(undecided)
        .execute(db.pool())
        .await
        .unwrap();
    // A confirmed fine, and a paid one with its contest, payment and the
    // police's follow-up message (only the rows matter here).
    for (id, state) in [(confirmed, "confirmed"), (paid, "paid")] {
        sqlx::query("UPDATE events SET state = $1, state_changed_at = $2 WHERE event_id = $3")
            .bind(state)
            .bind(now)
            .bind(id)
            .execute(db.pool())
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO contests (id, event_id, owner_id, reason, created_at) \
         VALUES ('c-paid', $1, 'o-x', 'Tôi đã bán xe cho anh Nam ở 12 Lê Lợi', $2)",
    )
    .bind(paid)
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (txn_ref, event_id, gateway, amount_vnd, state, client_ip, \
         created_at, expires_at, updated_at, transaction_no, settled_by, ipn_params, \
         query_result) VALUES ('T1', $1, 'vnpay', 800000, 'paid', '203.0.113.9', $2, $2, $2, \
         'VNP123', 'ipn', '{\"vnp_CardHolder\":\"NGUYEN VAN A\"}', '{\"vnp_IpAddr\":\"203.0.113.9\"}')",
    )
    .bind(paid)
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notices (notice_id, event_id, created_at, detected_at, notify_by, respond_by) \
         VALUES ('n-paid', $1, $2, $2, $2, $2)",
    )
    .bind(paid)
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notice_messages (message_id, notice_id, event_id, kind, reason, created_at) \
         VALUES ('m-paid', 'n-paid', $1, 'contest_rejected', 'Ảnh cho thấy chị Lan lái xe', $2)",
    )
    .bind(paid)
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();

    let cfg = RetentionConfig::default();
    let evidence_dir = dir.path().join("evidence");
    let run = |at: i64| {
        let (db, store, cfg) = (db.clone(), ctx.evidence.clone(), cfg.clone());
        async move { retention::run(&db, &store, &cfg, at, false).await.unwrap() }
    };
    let state = |id: String| async move {
        let r = sqlx::query(
            "SELECT state, reject_code, evidence_purged_at FROM events WHERE event_id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap();
        (
            r.get::<String, _>(0),
            r.get::<Option<String>, _>(1),
            r.get::<Option<i64>, _>(2).is_some(),
        )
    };

    // --- within the period, nothing is closed
    assert_eq!(run(now + 300 * DAY).await.expired, 0);
    assert_eq!(state(undecided.clone()).await, ("new".into(), None, false));

    // --- past it, the undecided case is rejected by the system
    let dry = retention::run(db, &ctx.evidence, &cfg, now + 366 * DAY, true)
        .await
        .unwrap();
    assert_eq!(dry.expired, 1, "a dry run counts it");
    assert_eq!(
        state(undecided.clone()).await.0,
        "new",
        "and closes nothing"
    );
    let at = now + 366 * DAY;
    let r = run(at).await;
    assert_eq!(r.expired, 1, "{r:?}");
    assert_eq!(
        state(undecided.clone()).await,
        ("rejected".into(), Some("limitation_expired".into()), false)
    );
    assert_eq!(
        state(confirmed.clone()).await.0,
        "confirmed",
        "a decided fine is a legal record"
    );
    let t = sqlx::query(
        "SELECT actor, role, action, from_state, to_state, at FROM case_transitions \
         WHERE event_id = $1",
    )
    .bind(undecided)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (
            t.get::<String, _>(0),
            t.get::<String, _>(1),
            t.get::<String, _>(2),
            t.get::<String, _>(3),
            t.get::<String, _>(4),
            t.get::<i64, _>(5)
        ),
        (
            "retention".into(),
            "system".into(),
            "reject".into(),
            "new".into(),
            "rejected".into(),
            at
        )
    );
    let trail = audit::for_subject(db, &format!("case:{undecided}"))
        .await
        .unwrap();
    let e = trail
        .iter()
        .find(|e| e.action == "case.reject")
        .expect("rejection audited");
    assert_eq!(e.actor, "retention");
    assert!(e.detail.contains("limitation_expired"), "{}", e.detail);
    // The reason is a managed one (the console shows its label).
    let label: String =
        sqlx::query_scalar("SELECT label_en FROM rejection_reasons WHERE code = $1")
            .bind(retention::LIMITATION_EXPIRED)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(label.contains("imitation"), "{label}");
    assert!(
        on_disk(&evidence_dir, &fs[0].overview),
        "kept until rejected_days"
    );
    assert_eq!(run(at).await.expired, 0, "closed once");

    // --- the rejected case's retention: the stills and the owner copy go
    let r = run(at + 91 * DAY).await;
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(state(undecided.clone()).await.2, "purged");
    assert!(!on_disk(&evidence_dir, &fs[0].overview));
    assert!(!on_disk(&evidence_dir, &fs[0].plate));
    assert_eq!((r.owner_copies, r.vehicle_copies), (1, 1), "{r:?}");
    let owners: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM owners WHERE owner_id = 'gw-1'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(owners, 0);
    assert!(
        on_disk(&evidence_dir, &fs[1].overview),
        "the confirmed fine's stay"
    );
    assert_eq!(state(confirmed.clone()).await.0, "confirmed");

    // --- the paid case, purged: its rows stay without their personal parts
    let r = run(now + 800 * DAY).await;
    assert!(state(paid.clone()).await.2, "{r:?}");
    let c: String = sqlx::query_scalar("SELECT reason FROM contests WHERE id = 'c-paid'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(c, "");
    let p = sqlx::query(
        "SELECT client_ip, ipn_params, query_result, amount_vnd, transaction_no, state \
         FROM payments WHERE txn_ref = 'T1'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        (
            p.get::<String, _>(0),
            p.get::<Option<String>, _>(1),
            p.get::<Option<String>, _>(2),
            p.get::<i64, _>(3),
            p.get::<String, _>(4),
            p.get::<String, _>(5)
        ),
        (
            String::new(),
            None,
            None,
            800_000,
            "VNP123".into(),
            "paid".into()
        )
    );
    let m: String =
        sqlx::query_scalar("SELECT reason FROM notice_messages WHERE message_id = 'm-paid'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(m, "");
    assert!(matches!(
        audit::verify(db).await.unwrap(),
        Verification::Intact { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_cases_expire_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    expiry_suite(ingest_server::db::Db::sqlite_url(&dir.path().join("t.db"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_cases_expire_on_postgres() {
    let pg = Postgres::start();
    expiry_suite(pg.fresh_database().await).await;
}
