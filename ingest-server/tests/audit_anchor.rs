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
