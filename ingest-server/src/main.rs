//! `ingest-server`: loads and validates the configuration, then serves.

use anyhow::{Context, Result};
use clap::Parser;
use ingest_server::{config::Config, web};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Traffic enforcement ingest server (IOC)")]
struct Cli {
    /// Configuration file (TOML); embedded defaults when absent.
    #[arg(long, env = "INGEST_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;

    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("binding {}", cfg.http.listen))?;
    let addr = listener.local_addr()?;
    // Printed on stdout for people and for tests that start us on port 0.
    println!("ingest-server listening on http://{addr}");
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "serving");
    axum::serve(listener, web::router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
