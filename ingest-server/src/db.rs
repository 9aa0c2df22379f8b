//! The database: one `sqlx` pool over SQLite (the embedded default, a file
//! under the data directory, in WAL mode with full fsync) or PostgreSQL
//! (when the configured URL says `postgres://`), and the schema migrations
//! for both, kept side by side in `migrations/sqlite` and
//! `migrations/postgres`.
//!
//! Why `sqlx::Any`: every query in this crate is plain SQL with `$1`-style
//! binds that both databases accept, so one code path serves both and the
//! same test suite proves both. Column types are restricted to what `Any`
//! carries (integers, doubles, text, blobs); times are Unix milliseconds.
//!
//! Migrations are embedded in the binary and applied in order at start, each
//! in its own transaction, recorded in `schema_migrations` with a checksum so
//! an edited, already-applied migration stops the server instead of drifting.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use thiserror::Error;

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A migration: version, name and SQL for each backend.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "review",
        sqlite: include_str!("../migrations/sqlite/0002_review.sql"),
        postgres: include_str!("../migrations/postgres/0002_review.sql"),
    },
    Migration {
        version: 3,
        name: "sso",
        sqlite: include_str!("../migrations/sqlite/0003_sso.sql"),
        postgres: include_str!("../migrations/postgres/0003_sso.sql"),
    },
    Migration {
        version: 4,
        name: "decision",
        sqlite: include_str!("../migrations/sqlite/0004_decision.sql"),
        postgres: include_str!("../migrations/postgres/0004_decision.sql"),
    },
    Migration {
        version: 5,
        name: "payments",
        sqlite: include_str!("../migrations/sqlite/0005_payments.sql"),
        postgres: include_str!("../migrations/postgres/0005_payments.sql"),
    },
    Migration {
        version: 6,
        name: "notices",
        sqlite: include_str!("../migrations/sqlite/0006_notices.sql"),
        postgres: include_str!("../migrations/postgres/0006_notices.sql"),
    },
    Migration {
        version: 7,
        name: "citizens",
        sqlite: include_str!("../migrations/sqlite/0007_citizens.sql"),
        postgres: include_str!("../migrations/postgres/0007_citizens.sql"),
    },
    Migration {
        version: 8,
        name: "cameras",
        sqlite: include_str!("../migrations/sqlite/0008_cameras.sql"),
        postgres: include_str!("../migrations/postgres/0008_cameras.sql"),
    },
    Migration {
        version: 9,
        name: "broker_auth",
        sqlite: include_str!("../migrations/sqlite/0009_broker_auth.sql"),
        postgres: include_str!("../migrations/postgres/0009_broker_auth.sql"),
    },
    Migration {
        version: 10,
        name: "evidence_packs",
        sqlite: include_str!("../migrations/sqlite/0010_evidence_packs.sql"),
        postgres: include_str!("../migrations/postgres/0010_evidence_packs.sql"),
    },
    Migration {
        version: 11,
        name: "api_tokens",
        sqlite: include_str!("../migrations/sqlite/0011_api_tokens.sql"),
        postgres: include_str!("../migrations/postgres/0011_api_tokens.sql"),
    },
    Migration {
        version: 12,
        name: "retention",
        sqlite: include_str!("../migrations/sqlite/0012_retention.sql"),
        postgres: include_str!("../migrations/postgres/0012_retention.sql"),
    },
    Migration {
        version: 13,
        name: "payment_integrity",
        sqlite: include_str!("../migrations/sqlite/0013_payment_integrity.sql"),
        postgres: include_str!("../migrations/postgres/0013_payment_integrity.sql"),
    },
    Migration {
        version: 14,
        name: "server_secrets",
        sqlite: include_str!("../migrations/sqlite/0014_server_secrets.sql"),
        postgres: include_str!("../migrations/postgres/0014_server_secrets.sql"),
    },
    Migration {
        version: 15,
        name: "quarantine_once",
        sqlite: include_str!("../migrations/sqlite/0015_quarantine_once.sql"),
        postgres: include_str!("../migrations/postgres/0015_quarantine_once.sql"),
    },
    Migration {
        version: 16,
        name: "heartbeat_runs",
        sqlite: include_str!("../migrations/sqlite/0016_heartbeat_runs.sql"),
        postgres: include_str!("../migrations/postgres/0016_heartbeat_runs.sql"),
    },
    Migration {
        version: 17,
        name: "warning_withdrawn",
        sqlite: include_str!("../migrations/sqlite/0017_warning_withdrawn.sql"),
        postgres: include_str!("../migrations/postgres/0017_warning_withdrawn.sql"),
    },
    Migration {
        version: 18,
        name: "owner_lookups",
        sqlite: include_str!("../migrations/sqlite/0018_owner_lookups.sql"),
        postgres: include_str!("../migrations/postgres/0018_owner_lookups.sql"),
    },
    Migration {
        version: 19,
        name: "owner_copies",
        sqlite: include_str!("../migrations/sqlite/0019_owner_copies.sql"),
        postgres: include_str!("../migrations/postgres/0019_owner_copies.sql"),
    },
    Migration {
        version: 20,
        name: "case_revisions",
        sqlite: include_str!("../migrations/sqlite/0020_case_revisions.sql"),
        postgres: include_str!("../migrations/postgres/0020_case_revisions.sql"),
    },
    Migration {
        version: 21,
        name: "owner_lookup_lease",
        sqlite: include_str!("../migrations/sqlite/0021_owner_lookup_lease.sql"),
        postgres: include_str!("../migrations/postgres/0021_owner_lookup_lease.sql"),
    },
    Migration {
        version: 22,
        name: "session_activity",
        sqlite: include_str!("../migrations/sqlite/0022_session_activity.sql"),
        postgres: include_str!("../migrations/postgres/0022_session_activity.sql"),
    },
    Migration {
        version: 23,
        name: "retention_gaps",
        sqlite: include_str!("../migrations/sqlite/0023_retention_gaps.sql"),
        postgres: include_str!("../migrations/postgres/0023_retention_gaps.sql"),
    },
];

/// Database failures.
#[derive(Debug, Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL scheme in `{0}` (expected sqlite: or postgres://)")]
    Scheme(String),
    /// sqlx said no.
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// An applied migration differs from the one in this binary.
    #[error("migration {version} ({name}) was changed after it was applied (checksum differs)")]
    MigrationChanged {
        /// Its version.
        version: i64,
        /// Its name.
        name: &'static str,
    },
}

/// The pool and what is behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`) and applies
    /// the migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::Scheme(redact(url)));
        };
        let opts = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // WAL: readers never block the writer; FULL: a
                            // commit is on disk when it returns (acks depend on it).
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 30000").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?
            }
        };
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    /// The SQLite URL for a database file (created if missing).
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Opens a transaction that will write: every writing transaction in
    /// this crate starts here, not with `pool().begin()`.
    ///
    /// Why: SQLite's plain `BEGIN` is deferred — the transaction takes the
    /// write lock only at its first write. One that reads first (is this
    /// heartbeat newer? is this owner known?) and then writes fails at
    /// once with "database is locked" when another connection wrote in
    /// between, whatever the busy timeout, because its snapshot is stale.
    /// `BEGIN IMMEDIATE` takes the write lock at the start (waiting up to
    /// the busy timeout for it), so writers queue instead of failing.
    /// PostgreSQL has no such failure: its rows lock as they are written,
    /// and the transactions that need more take their locks explicitly
    /// (`audit::begin`, the case lock).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Applies every migration not yet applied.
    ///
    /// On PostgreSQL, servers starting at once against one database (the
    /// replicas of a deployment) take turns: each holds a session advisory
    /// lock ([`MIGRATION_LOCK`]) from before its first statement to after
    /// its last, on one connection; should migrating fail, that connection
    /// is closed, which releases the lock. The ledger's `CREATE TABLE IF
    /// NOT EXISTS` is retried when another session created the table at the
    /// same moment (a server of an earlier version, which takes no advisory
    /// lock: PostgreSQL answers that race with a unique violation on its
    /// catalog, `pg_type_typname_nsp_index`, not with "exists").
    pub async fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Sqlite {
            return self.migrate_on(&mut conn).await;
        }
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        match self.migrate_on(&mut conn).await {
            Ok(()) => {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
            Err(e) => {
                // Closing the session releases the lock.
                let _ = sqlx::Connection::close(conn.detach()).await;
                Err(e)
            }
        }
    }

    async fn migrate_on(&self, conn: &mut sqlx::AnyConnection) -> Result<(), DbError> {
        const LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)";
        let mut tries = 0;
        loop {
            match conn.execute(LEDGER).await {
                Ok(_) => break,
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() && tries < 3 => {
                    tracing::info!("schema_migrations was created by another server meanwhile");
                    tries += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        for m in MIGRATIONS {
            let sql = match self.backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if self.backend == Backend::Postgres {
                // Servers of earlier versions take this lock, not the
                // advisory one: they must not migrate at the same time.
                sqlx::query("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
            }
            let applied = sqlx::query("SELECT checksum FROM schema_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
            match applied {
                Some(row) => {
                    let old: String = row.try_get(0)?;
                    if old != checksum {
                        return Err(DbError::MigrationChanged {
                            version: m.version,
                            name: m.name,
                        });
                    }
                }
                None => {
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(m.version)
                    .bind(m.name)
                    .bind(checksum)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                    tracing::info!(version = m.version, name = m.name, "applied migration");
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// The PostgreSQL advisory lock key [`Db::migrate`] holds while it
/// migrates ("tv-migr" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x0074_762d_6d69_6772;

/// Now as Unix milliseconds (UTC).
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn migrations_are_in_step() {
        for m in MIGRATIONS {
            let tables = |sql: &str| {
                // Tables, indexes and columns; triggers are written in
                // each database's own dialect.
                sql.lines()
                    .filter(|l| {
                        l.starts_with("CREATE TABLE")
                            || l.contains("INDEX")
                            || l.starts_with("ALTER TABLE")
                    })
                    .map(|l| l.replace("BIGINT", "INTEGER"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(tables(m.sqlite), tables(m.postgres), "migration {}", m.name);
        }
    }
}
