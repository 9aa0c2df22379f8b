//! Signed anchors of the audit chain (`audit::anchor`, `ingest-server audit
//! anchor` / `audit verify --anchor`): an anchor holds while the chain
//! grows, and finds what the chain alone cannot — every entry after an
//! edit rewritten with fresh hashes, and the head with them.

mod common;

use ingest_server::app;
use ingest_server::audit::anchor::{self, AnchorError};
use ingest_server::audit::{self, Verification, Who, entry_hash};
use ingest_server::server_key::ServerKey;
use ingest_server::workflow::Role;
use sqlx::Row;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_finds_a_chain_rewritten_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::local_config(dir.path());
    let ingestor = app::open(&cfg).await.unwrap();
    let db = ingestor.context().db.clone();
    let key = ServerKey::open(&cfg, &db).await.unwrap();
    let who = Who::new("op.lan", Role::Operator);
    let detail = serde_json::json!({"note": "ok"});
    for i in 0..5 {
        audit::record(
            &db,
            1_000 + i,
            &who,
            "case.accept",
            &format!("case:{i}"),
            &detail,
        )
        .await
        .unwrap();
    }
    let a = anchor::make(&db, &key, 2_000).await.unwrap();
    assert_eq!(a.seq, 5);
    anchor::check(&db, &a).await.unwrap();
    // The chain grows: the anchor still holds.
    audit::record(&db, 3_000, &who, "case.accept", "case:5", &detail)
        .await
        .unwrap();
    anchor::check(&db, &a).await.unwrap();

    // An anchor edited, or signed by a key this server never had, is refused.
    let mut edited = a.clone();
    edited.seq = 4;
    assert!(matches!(
        anchor::check(&db, &edited).await,
        Err(AnchorError::BadSignature)
    ));
    let other = tempfile::tempdir().unwrap();
    let stranger = ServerKey::load_or_create(&other.path().join("k"))
        .unwrap()
        .0;
    let forged = anchor::make(&db, &stranger, 2_000).await.unwrap();
    assert!(matches!(
        anchor::check(&db, &forged).await,
        Err(AnchorError::UnknownKey(_))
    ));
    assert!(matches!(
        anchor::parse("{\"seq\":1}"),
        Err(AnchorError::Malformed(_))
    ));
    // A key retired: anchors it signed before still hold, one it signed
    // after does not.
    assert!(
        ingest_server::server_key::retire(&db, &key.public_key_hex())
            .await
            .unwrap()
    );
    anchor::check(&db, &a).await.unwrap();
    let late = anchor::make(&db, &key, ingest_server::db::now_ms() + 60_000)
        .await
        .unwrap();
    assert!(matches!(
        anchor::check(&db, &late).await,
        Err(AnchorError::RetiredKey(_))
    ));

    // Entry 3 edited, and every entry after it and the head rewritten with
    // fresh hashes (the append-only triggers dropped): the chain alone
    // says intact; the anchor does not hold.
    sqlx::raw_sql("DROP TRIGGER audit_log_no_update")
        .execute(db.pool())
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT seq, at, actor, role, action, subject, detail FROM audit_log WHERE seq >= 3 ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut prev: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = 2")
        .fetch_one(db.pool())
        .await
        .unwrap();
    for r in &rows {
        let seq: i64 = r.get(0);
        let subject: String = if seq == 3 {
            "case:someone-else".into()
        } else {
            r.get(5)
        };
        let w = Who {
            actor: r.get(2),
            role: r.get(3),
        };
        let action: String = r.get(4);
        let detail: String = r.get(6);
        let hash = entry_hash(seq, r.get(1), &w, &action, &subject, &detail, &prev);
        sqlx::query("UPDATE audit_log SET subject = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&subject)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(db.pool())
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit::verify(&db).await.unwrap(),
        Verification::Intact { .. }
    ));
    assert!(matches!(
        anchor::check(&db, &a).await,
        Err(AnchorError::Rewritten { seq: 5, .. })
    ));

    // The same through the command line, as an operator would.
    let file = dir.path().join("anchor-5.json");
    std::fs::write(&file, serde_json::to_string(&a).unwrap()).unwrap();
    let (ok, _, err) = common::cli(
        dir.path(),
        &["audit", "verify", "--anchor", file.to_str().unwrap()],
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("DOES NOT HOLD") && err.contains("rewritten"),
        "{err}"
    );
}

/// `audit anchor` writes an anchor that `audit verify --anchor` accepts.
#[test]
fn the_command_line_makes_and_checks_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| common::cli(dir.path(), args);
    let file = dir.path().join("anchor.json");
    let file_arg = file.to_str().unwrap();
    let (ok, out, err) = run(&["audit", "anchor", "--out", file_arg]);
    assert!(ok, "{out}{err}");
    let a = anchor::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(a.seq, 0, "a fresh server's chain is empty");
    let (ok, out, err) = run(&["audit", "verify", "--anchor", file_arg]);
    assert!(ok && out.contains("holds"), "{out}{err}");
    std::fs::write(&file, "not json").unwrap();
    let (ok, _, err) = run(&["audit", "verify", "--anchor", file_arg]);
    assert!(!ok && err.contains("not an audit anchor"), "{err}");
}

/// On a schedule (`[audit] anchor_dir`): a directory that is not there
/// stops the start; the running server anchors the chain at start into the
/// directory; a head already anchored is not written again (nor replaced),
/// a new head gets its own file, and each file checks against the chain.
/// A chain edited behind the newest anchor is not anchored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_anchors_the_chain_on_a_schedule() {
    use ingest_server::audit::anchoring::{AnchoringError, anchor_to};
    let dir = tempfile::tempdir().unwrap();
    let anchors = dir.path().join("anchors");
    let mut cfg = common::local_config(dir.path());
    cfg.audit.anchor_dir = anchors.clone();
    cfg.validate().unwrap();
    // A directory that is not there (a share not mounted) stops the start:
    // it is never created, lest anchors fill the local disk.
    let refused = app::start(&cfg).await.err().map(|e| e.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("audit.anchor_dir")),
        "{refused:?}"
    );
    assert!(!anchors.exists());
    std::fs::create_dir(&anchors).unwrap();
    let server = app::start(&cfg).await.unwrap();
    let db = server.ingestor.context().db.clone();
    let files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while files(&anchors).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no anchor written at start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = files(&anchors);
    assert_eq!(first.len(), 1, "{first:?}");
    let a = anchor::parse(&std::fs::read_to_string(&first[0]).unwrap()).unwrap();
    anchor::check(&db, &a).await.unwrap();

    // The same head again: nothing new, the file kept as it was.
    let key = ServerKey::open(&cfg, &db).await.unwrap();
    let before = std::fs::read_to_string(&first[0]).unwrap();
    let again = anchor_to(&db, &key, &anchors, a.at + 1).await.unwrap();
    assert_eq!(again, None);
    assert_eq!(std::fs::read_to_string(&first[0]).unwrap(), before);
    // A new head: its own file, which holds.
    let who = Who::new("op.lan", Role::Operator);
    audit::record(
        &db,
        a.at + 2,
        &who,
        "case.accept",
        "case:x",
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    let made = anchor_to(&db, &key, &anchors, a.at + 3)
        .await
        .unwrap()
        .unwrap();
    let b = anchor::parse(&std::fs::read_to_string(&made).unwrap()).unwrap();
    assert_eq!(b.seq, a.seq + 1);
    anchor::check(&db, &b).await.unwrap();
    assert_eq!(files(&anchors).len(), 2);
    // No temporary files left behind.
    assert!(
        files(&anchors)
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "json"))
    );

    // A broken chain is not anchored.
    sqlx::query("DROP TRIGGER IF EXISTS audit_log_no_update")
        .execute(db.pool())
        .await
        .ok();
    let edited = sqlx::query("UPDATE audit_log SET detail = '{\"x\":1}' WHERE seq = 1")
        .execute(db.pool())
        .await;
    if edited.is_ok() {
        let refused = anchor_to(&db, &key, &anchors, a.at + 4).await;
        assert!(
            matches!(
                refused,
                Err(AnchoringError::Previous { .. }
                    | AnchoringError::Anchor(AnchorError::Broken { .. }))
            ),
            "{refused:?}"
        );
        assert_eq!(files(&anchors).len(), 2);
    } else {
        panic!("could not stage an edited entry: {edited:?}");
    }
}

/// `[audit]` is checked at start: a relative directory or an interval
/// out of range is refused, naming the field; the environment overrides.
#[test]
fn the_anchor_schedule_is_validated() {
    use ingest_server::config::Config;
    let mut cfg = Config::default();
    cfg.audit.anchor_dir = "anchors".into();
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("audit.anchor_dir"), "{e}");
    cfg.audit.anchor_dir = "/var/lib/anchors".into();
    cfg.audit.anchor_interval_s = 5;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("audit.anchor_interval_s"), "{e}");
    let mut cfg = Config::default();
    cfg.apply_env(|k| match k {
        "INGEST_AUDIT_ANCHOR_DIR" => Some("/srv/anchors".into()),
        "INGEST_AUDIT_ANCHOR_INTERVAL_S" => Some("600".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(
        cfg.audit.anchor_dir,
        std::path::PathBuf::from("/srv/anchors")
    );
    assert_eq!(cfg.audit.anchor_interval_s, 600);
    let bad = Config::default()
        .apply_env(|k| (k == "INGEST_AUDIT_ANCHOR_INTERVAL_S").then(|| "hourly".to_string()));
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("INGEST_AUDIT_ANCHOR_INTERVAL_S")
    );
}
