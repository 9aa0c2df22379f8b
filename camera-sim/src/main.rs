//! `camera-sim --file recording.mp4 [--listen 127.0.0.1:8554] [--mount /cam1]`:
//! serves the recording as a looping live RTSP stream until Ctrl-C or
//! SIGTERM. Prints `camera-sim serving rtsp://...` once it listens (tests
//! start it on port 0 and read the address from that line).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

#[derive(Parser)]
#[command(
    version,
    about = "Serve a recording as a looping live RTSP camera stream"
)]
struct Cli {
    /// The recording to serve.
    #[arg(long)]
    file: PathBuf,
    /// Address and port (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8554")]
    listen: String,
    /// Mount path of the stream.
    #[arg(long, default_value = "/cam1")]
    mount: String,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (address, port) = cli
        .listen
        .rsplit_once(':')
        .with_context(|| format!("--listen {}: expected address:port", cli.listen))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--listen {}: bad port", cli.listen))?;
    if !cli.mount.starts_with('/') {
        anyhow::bail!("--mount {}: must start with /", cli.mount);
    }
    // SIGINT and SIGTERM are blocked in every thread (the server's threads
    // inherit the mask) and waited for here.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().context("blocking SIGINT/SIGTERM")?;
    let running = camera_sim::start(&camera_sim::SimConfig {
        file: cli.file,
        address: address.to_string(),
        port,
        mount: cli.mount,
    })?;
    println!("camera-sim serving {}", running.url);
    let sig = signals.wait().context("waiting for a signal")?;
    eprintln!("camera-sim: {sig}, stopping");
    running.stop();
    Ok(())
}
