//! `mass-bridge`: the reference bridge. Serves the bridge protocol
//! (`docs/bridge.md`) on TCP and runs the models it is given on an emulated
//! fixed-point device, so a mesh can use and test the bridge path without
//! hardware.
//!
//! ```text
//! mass-bridge --listen 127.0.0.1:0 --precision 'fixed<16,6>' --ready-file /tmp/bridge.json
//! ```

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use mass_node::bridge::{
    fixed::{Format, Numerics, Rounding},
    server::{self, Options, Ready},
};

/// The reference bridge: an emulated fixed-point accelerator behind the
/// Mass bridge protocol (Open Inference Protocol v2 + mass_hardware/1).
#[derive(Debug, Parser)]
#[command(name = "mass-bridge", version)]
struct Args {
    /// Address to listen on; port 0 lets the OS pick (see --ready-file).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The device's number format: fixed<W,I>, W bits of which I (sign
    /// included) are integer bits.
    #[arg(long, default_value = "fixed<16,6>")]
    precision: Format,
    /// How values between two steps are rounded: half-even or truncate.
    #[arg(long, default_value = "half-even")]
    rounding: Rounding,
    /// Width of the multiply-accumulate register.
    #[arg(long, default_value_t = 48)]
    accumulator_bits: u32,
    /// Largest model, in weights and biases.
    #[arg(long, default_value_t = 1 << 20)]
    max_parameters: u64,
    /// Most layers of a model.
    #[arg(long, default_value_t = 8)]
    max_layers: u32,
    /// Most rows in one infer request.
    #[arg(long, default_value_t = 1024)]
    max_batch: u32,
    /// Most models loaded at once.
    #[arg(long, default_value_t = 16)]
    max_models: u32,
    /// Nominal clock, reported in the capabilities.
    #[arg(long, default_value_t = 250.0)]
    clock_mhz: f32,
    /// Device description, reported in the capabilities.
    #[arg(long)]
    device: Option<String>,
    /// Added to every inference: a slow device (e.g. "50ms").
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// After this many infer requests, hang every further one (the health
    /// endpoint still answers): a stalled device.
    #[arg(long)]
    stall_after: Option<u64>,
    /// Write {"url": ..., "pid": ...} here once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// tracing filter; RUST_LOG wins when set.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let numerics = Numerics::new(args.precision, args.rounding, args.accumulator_bits).map_err(anyhow::Error::msg)?;
    let mut options = Options::new(numerics);
    options.max_parameters = args.max_parameters;
    options.max_layers = args.max_layers;
    options.max_batch = args.max_batch.max(1);
    options.max_models = args.max_models.max(1);
    options.clock_mhz = args.clock_mhz;
    options.delay = args.delay;
    options.stall_after = args.stall_after;
    if let Some(device) = args.device {
        options.device = device;
    }
    let listener =
        std::net::TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("cannot read the listening address")?;
    actix_web::rt::System::new().block_on(async move {
        let server = server::serve(listener, options.clone()).context("cannot start the HTTP server")?;
        let handle = server.handle();
        let running = tokio::spawn(server);
        let url = format!("http://{addr}");
        println!("mass-bridge listening on {url}");
        tracing::info!(%url, precision = %options.numerics.format, rounding = %options.numerics.rounding, "bridge ready");
        if let Some(path) = &args.ready_file {
            server::write_ready(path, &Ready { url, pid: std::process::id() })
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        shutdown_signal().await;
        tracing::info!("stopping");
        handle.stop(true).await;
        let _ = running.await;
        if let Some(path) = &args.ready_file {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
