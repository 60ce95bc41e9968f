//! `mindoryd`: the Mindory daemon binary. Parses flags, sets up tracing,
//! and runs [`mindory_daemon::run`] until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mindory_proto::paths;

/// The Mindory daemon: ingests, embeds and indexes books; serves clients on a Unix socket.
#[derive(Debug, Parser)]
#[command(name = "mindoryd", version)]
struct Args {
    /// Socket to listen on [default: $XDG_RUNTIME_DIR/mindory/mindoryd.sock]
    #[arg(long, env = paths::SOCKET_ENV)]
    socket: Option<PathBuf>,
    /// Where the database and index live [default: $XDG_DATA_HOME/mindory]
    #[arg(long, env = paths::DATA_DIR_ENV)]
    data_dir: Option<PathBuf>,
    /// Where the model files are [default: $XDG_DATA_HOME/mindory/models]
    #[arg(long, env = paths::MODELS_DIR_ENV)]
    models_dir: Option<PathBuf>,
    /// Ingest workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mindory_daemon::telemetry::install_tracing(args.verbose);
    let data_dir = args.data_dir.unwrap_or_else(paths::default_data_dir);
    let models_dir = args.models_dir.unwrap_or_else(paths::default_models_dir);
    let socket = args.socket.unwrap_or_else(paths::default_socket_path);
    let mut config = mindory_daemon::Config::new(data_dir, socket, models_dir);
    config.workers = args.workers.max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mindoryd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mindory_daemon::run(config, signals())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mindoryd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::error!("cannot install signal handlers; stop the daemon with `mindory shutdown`");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
