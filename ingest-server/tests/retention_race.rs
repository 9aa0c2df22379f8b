//! Two replicas ingesting the same event at the same moment, on one
//! PostgreSQL and one evidence store: both find the stills not yet indexed
//! and write a pack; the one whose index rows lose the race (`ON CONFLICT
//! DO NOTHING`) must not leave its copy behind, named by no index row and
//! no marker, where retention would never find it. The race is forced: a
//! third connection holds `LOCK TABLE evidence_index IN SHARE ROW
//! EXCLUSIVE MODE` while both submit, then lets go. The case is rejected;
//! 91 days later retention has left none of the stills' bytes on disk.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ingest_server::db::now_ms;
use ingest_server::ingest::{Ingestor, Source};
use ingest_server::retention::{self, RetentionConfig};
use ingest_server::review::Reviewer;
use ingest_server::workflow::{Action, Actor, Role};
use ingest_server::{app, devices};
use sqlx::Connection;

const SITE: &str = "dn-haichau-bachdang";
const DAY: i64 = 86_400_000;

async fn open(url: &str, dir: &Path) -> Ingestor {
    let mut cfg = local_config(dir);
    cfg.database.url = url.to_string();
    app::open(&cfg).await.unwrap()
}

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

/// Files under `dir` holding `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_packed_by_the_replica_that_lost_the_race_does_not_outlive_retention() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let a = open(&url, dir.path()).await;
    let b = open(&url, dir.path()).await;
    let ctx = a.context().clone();
    let k = key();
    devices::enrol(&ctx.db, "edge-race", SITE, &public_hex(&k))
        .await
        .unwrap();
    let pattern = |seed: u8, n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(89) ^ seed ^ (i >> 7) as u8)
            .collect()
    };
    let files = Files {
        overview: pattern(5, 7000),
        plate: pattern(9, 900),
        clip: pattern(13, 500),
    };
    let ev = event("edge-race", SITE, &files);
    let id = ev.event_id.to_string();
    let raw = Bytes::from(bundle(&ev, &k, &files));

    // Hold the index: both replicas write their pack, then wait to index it.
    let mut lock = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE evidence_index IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let (ra, rb) = (raw.clone(), raw.clone());
    let (a2, b2) = (a.clone(), b.clone());
    let ta = tokio::spawn(async move { a2.submit(ra, Source::Http).await });
    let tb = tokio::spawn(async move { b2.submit(rb, Source::Http).await });
    let evidence_dir = dir.path().join("evidence");
    // Both packs are on disk before the index is let go.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while holding(&evidence_dir, &files.overview).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "both replicas did not pack"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    for t in [ta, tb] {
        let o = t.await.unwrap().unwrap();
        assert!(o.rejection.is_none(), "{:?}", o.rejection);
    }
    assert_eq!(
        holding(&evidence_dir, &files.overview).len(),
        1,
        "one copy of the still once both batches committed"
    );

    // Rejected; 91 days later its evidence is gone from the disk.
    let r = Reviewer {
        db: &ctx.db,
        grammar: ctx.grammar,
        fines: &ctx.fines,
        registry: ctx.registry.as_deref(),
    };
    let op = Actor {
        id: "op.lan".into(),
        role: Role::Operator,
    };
    let now = now_ms();
    r.act(&id, &Action::Claim, &op, "", now).await.unwrap();
    let reject = Action::Reject {
        code: "plate_unreadable".into(),
    };
    r.act(&id, &reject, &op, "", now).await.unwrap();
    let report = retention::run(
        &ctx.db,
        &ctx.evidence,
        &RetentionConfig::default(),
        now + 91 * DAY,
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.cases, 1, "{report:?}");
    for (what, bytes) in [("overview", &files.overview), ("plate", &files.plate)] {
        let left = holding(&evidence_dir, bytes);
        assert!(left.is_empty(), "the {what} still lies in {left:?}");
    }
}
