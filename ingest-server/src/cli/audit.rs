//! `ingest-server audit …`: walk the audit chain, and make and check
//! signed anchors of it (`ingest_server::audit::anchor`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use ingest_server::app;
use ingest_server::audit::{self, Verification};
use ingest_server::config::Config;
use ingest_server::server_key::ServerKey;

/// `audit anchor`: the chain's head, signed, printed or written to `out`.
pub(super) async fn anchor(cfg: &Config, out: Option<PathBuf>) -> Result<()> {
    let ingestor = app::open(cfg).await?;
    let db = &ingestor.context().db;
    let key = ServerKey::open(cfg, db).await?;
    let a = audit::anchor::make(db, &key, ingest_server::db::now_ms()).await?;
    let text = serde_json::to_string_pretty(&a)? + "\n";
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    eprintln!(
        "anchored entry {} (hash {}): keep it outside the database",
        a.seq, a.hash
    );
    Ok(())
}

/// `audit verify`: the whole chain, then each anchor.
pub(super) async fn verify(cfg: &Config, anchors: &[PathBuf]) -> Result<()> {
    let ingestor = app::open(cfg).await?;
    let db = &ingestor.context().db;
    match audit::verify(db).await? {
        Verification::Intact { entries, head } => {
            println!("audit log intact: {entries} entries, head {head}");
        }
        Verification::Broken { seq, problem } => {
            eprintln!("audit log BROKEN at entry {seq}: {problem}");
            std::process::exit(1);
        }
    }
    let mut failed = false;
    for path in anchors {
        let checked = match std::fs::read_to_string(path) {
            Ok(text) => match audit::anchor::parse(&text) {
                Ok(a) => audit::anchor::check(db, &a)
                    .await
                    .map(|()| (a.seq, a.server_key)),
                Err(e) => Err(e),
            },
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        match checked {
            Ok((seq, key)) => println!(
                "{}: holds (entry {seq}; signed by {key}: compare with the published server key)",
                path.display()
            ),
            Err(e) => {
                eprintln!("{}: DOES NOT HOLD: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
