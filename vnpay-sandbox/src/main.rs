//! `vnpay-sandbox`: runs the stand-in for the VNPay gateway (see the
//! library's documentation and README.md) until interrupted, printing the
//! address it listens on, so a demo script or a test can start it on a free
//! port and read the port back.

use std::net::SocketAddr;

use clap::Parser;
use vnpay_sandbox::{Faults, Options, Sandbox};

/// A stand-in for the VNPay payment gateway (protocol 2.1.0). Not the real
/// gateway: no money moves.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to listen (port 0: a free one, printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The merchant's terminal code (`vnp_TmnCode`).
    #[arg(long, env = "VNPAY_SANDBOX_TMN_CODE")]
    tmn_code: String,
    /// The merchant's secret for `vnp_SecureHash`.
    #[arg(long, env = "VNPAY_SANDBOX_HASH_SECRET", hide_env_values = true)]
    hash_secret: String,
    /// The merchant's IPN URL, e.g.
    /// http://127.0.0.1:8080/api/v1/payments/vnpay/ipn.
    #[arg(long, default_value = "")]
    ipn_url: String,
    /// Send every IPN twice.
    #[arg(long)]
    duplicate_ipn: bool,
    /// Send IPNs with a wrong (signed) amount.
    #[arg(long)]
    wrong_amount_ipn: bool,
    /// Send IPNs with a corrupted hash.
    #[arg(long)]
    bad_hash_ipn: bool,
    /// Hold IPNs until POST /sandbox/ipn/release.
    #[arg(long)]
    hold_ipn: bool,
    /// Send IPNs this many milliseconds after the return.
    #[arg(long, default_value_t = 0)]
    ipn_delay_ms: u64,
    /// Never send IPNs (only querydr tells).
    #[arg(long)]
    drop_ipn: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let sandbox = Sandbox::start(Options {
        listen: a.listen,
        tmn_code: a.tmn_code,
        hash_secret: a.hash_secret,
        ipn_url: a.ipn_url,
        faults: Faults {
            duplicate_ipn: a.duplicate_ipn,
            wrong_amount_ipn: a.wrong_amount_ipn,
            bad_hash_ipn: a.bad_hash_ipn,
            hold_ipn: a.hold_ipn,
            ipn_delay_ms: a.ipn_delay_ms,
            drop_ipn: a.drop_ipn,
        },
    })
    .await?;
    println!("vnpay-sandbox listening on http://{}", sandbox.addr());
    println!("pay_url = \"{}\"", sandbox.pay_url());
    println!("api_url = \"{}\"", sandbox.api_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
