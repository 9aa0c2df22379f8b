//! Several servers starting at once against one fresh PostgreSQL database
//! (the replicas of a first deployment): every one of them must start,
//! none stopped by another's migration.
//!
//! Forced: the test's own session creates the migration ledger
//! (`schema_migrations`) in a transaction it keeps open, as a server of an
//! earlier version would be doing at that moment; the three servers start
//! and the test commits only once all three wait (on that transaction, or
//! on each other's migration lock). PostgreSQL answers a `CREATE TABLE IF
//! NOT EXISTS` that raced another session's create with a unique violation
//! on its catalog (`pg_type_typname_nsp_index`), not with "exists".

mod common;

use std::time::{Duration, Instant};

use common::Postgres;
use ingest_server::db::Db;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_starting_at_once_all_migrate() {
    let pg = Postgres::start();
    let url = pg.fresh_database().await;
    let mut me = sqlx::AnyConnection::connect(&format!("{url}?application_name=test"))
        .await
        .unwrap();
    let mut other = me.begin().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *other)
    .await
    .unwrap();
    let servers: Vec<_> = (0..3)
        .map(|i| {
            let url = format!("{url}?application_name=server{i}");
            tokio::spawn(async move { Db::connect(&url).await })
        })
        .collect();
    let mut watch = sqlx::AnyConnection::connect(&format!("{url}?application_name=watch"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name LIKE 'server%' \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting >= 3 || servers.iter().any(|s| s.is_finished()) {
            break;
        }
        assert!(Instant::now() < deadline, "the servers never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.commit().await.unwrap();
    for (i, s) in servers.into_iter().enumerate() {
        let db = s.await.unwrap();
        assert!(db.is_ok(), "server {i} did not start: {:?}", db.err());
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut me)
            .await
            .unwrap();
    let distinct: std::collections::BTreeSet<_> = versions.iter().collect();
    assert_eq!(distinct.len(), versions.len(), "each migration once");
    assert!(versions.len() >= 20, "{versions:?}");
}
