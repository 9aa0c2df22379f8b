//! `Db::begin_write` on SQLite: a transaction that reads and then writes
//! must wait for another writer, not fail with "database is locked".
//!
//! With SQLite's deferred `BEGIN`, transaction A reads (taking a snapshot),
//! B writes and commits, and A's first write then fails at once — the busy
//! timeout does not help, A's snapshot is stale. This is how the notice
//! channel heartbeat and the device heartbeats failed under load. Forced
//! here: A holds its transaction open across B's whole attempt.

use std::time::Duration;

use ingest_server::db::Db;
use sqlx::{Executor, Row};

async fn count(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM t")
        .fetch_one(&mut **tx)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_writer_waits_for_another_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&Db::sqlite_url(&dir.path().join("db.sqlite")))
        .await
        .unwrap();
    db.pool()
        .execute("CREATE TABLE t (who TEXT NOT NULL, seen BIGINT NOT NULL)")
        .await
        .unwrap();

    let mut a = db.begin_write().await.unwrap();
    let a_saw = count(&mut a).await;

    let other = db.clone();
    let b = tokio::spawn(async move {
        let mut b = other.begin_write().await?;
        let seen = count(&mut b).await;
        sqlx::query("INSERT INTO t (who, seen) VALUES ('b', $1)")
            .bind(seen)
            .execute(&mut *b)
            .await?;
        b.commit().await
    });
    // B gets as far as it can while A is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_wrote = sqlx::query("INSERT INTO t (who, seen) VALUES ('a', $1)")
        .bind(a_saw)
        .execute(&mut *a)
        .await;
    let a_done = match a_wrote {
        Ok(_) => a.commit().await,
        Err(e) => Err(e),
    };
    let b_done = b.await.unwrap();
    assert!(a_done.is_ok(), "A failed: {a_done:?}");
    assert!(b_done.is_ok(), "B failed: {b_done:?}");

    // Serialised: B read after A's commit, so each saw what came before it.
    let rows = sqlx::query("SELECT who, seen FROM t ORDER BY seen")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .collect();
    assert_eq!(rows, vec![("a".into(), 0), ("b".into(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reading_writers_at_once_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&Db::sqlite_url(&dir.path().join("db.sqlite")))
        .await
        .unwrap();
    db.pool()
        .execute("CREATE TABLE t (who TEXT NOT NULL, seen BIGINT NOT NULL)")
        .await
        .unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin_write().await?;
                let seen = count(&mut tx).await;
                tokio::task::yield_now().await;
                sqlx::query("INSERT INTO t (who, seen) VALUES ($1, $2)")
                    .bind(format!("w{i}"))
                    .bind(seen)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
        })
        .collect();
    for t in tasks {
        let done = t.await.unwrap();
        assert!(done.is_ok(), "a writer failed: {done:?}");
    }
    // Every writer saw a different count: none read a stale snapshot.
    let distinct: i64 = sqlx::query("SELECT COUNT(DISTINCT seen) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(distinct, 24);
}
