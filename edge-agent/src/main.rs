//! `edge-agent` command line.

use anyhow::{Result, anyhow};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Traffic enforcement edge agent")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that every model this box needs is present and verified.
    CheckModels,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::CheckModels => {
            let resolver = edge_agent::models::resolver_from_env()?;
            let paths = edge_agent::models::resolve_required(&resolver).map_err(|e| anyhow!(e))?;
            for p in paths {
                println!("ok {}", p.display());
            }
            Ok(())
        }
    }
}
