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
    /// Embedding model: `all-MiniLM-L6-v2` (default), `potion-base-8M` or
    /// `use-multilingual` (short name or id; `mindory models fetch` installs
    /// them all).
    #[arg(long, env = "MINDORY_EMBEDDING_MODEL")]
    embedding_model: Option<String>,
    /// Ingest workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seconds one file may take to parse before it fails.
    #[arg(long, default_value_t = 300)]
    parse_timeout: u64,
    /// MiB of memory one file's parser may use before it fails.
    #[arg(long, default_value_t = 2048)]
    parse_memory_mib: u64,
    /// How library folders are followed [env: MINDORY_WATCH].
    #[arg(long, value_enum)]
    watch: Option<Watch>,
    /// Seconds between rescans of polled folders.
    #[arg(long, default_value_t = 5)]
    poll_interval: u64,
    /// Minutes between sweeps of every folder (catches anything events missed).
    #[arg(long, default_value_t = 15)]
    sweep_interval: u64,
    /// Config file with the `[llm]`, `[embed]` and `[index]` settings [default: $XDG_CONFIG_HOME/mindory/config.toml]
    #[arg(long, env = mindory_daemon::llm::config::CONFIG_ENV)]
    config: Option<PathBuf>,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The values `--watch` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Watch {
    /// inotify, falling back to polling where it cannot work.
    Events,
    /// Polling everywhere.
    Poll,
}

fn main() -> ExitCode {
    // The daemon runs itself as a sandboxed parse worker (see parse::sandbox).
    // Arguments as the OS gives them: a book's path need not be UTF-8.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let first = argv.get(1).and_then(|a| a.to_str());
    if first == Some(mindory_daemon::parse::sandbox::WORKER_ARG) {
        return mindory_daemon::parse::sandbox::worker_main(&argv[2..]);
    }
    if first == Some("__parse-dump") {
        let models = std::env::var_os(paths::MODELS_DIR_ENV).map_or_else(paths::default_models_dir, PathBuf::from);
        return mindory_daemon::parse::sandbox::dump_main(&argv[2..], &mindory_proto::models::ModelPaths::new(&models).pdfium);
    }
    // The local LLM decodes one token at a time: candle's worker threads
    // spin-wait between tiny kernels, and on two cores two of them fighting
    // ingestion's ONNX threads made decoding 6x slower. So the model gets
    // half the cores (one here) and ingestion keeps the rest; an explicit
    // setting wins. Set before any thread starts.
    let half = (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1);
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, half.to_string());
        }
    }
    // Everything the daemon writes (the database, the indexes, the socket)
    // is the library's text or a way into it: no other user reads it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let args = Args::parse();
    mindory_daemon::telemetry::install_tracing(args.verbose);
    let data_dir = args.data_dir.unwrap_or_else(paths::default_data_dir);
    let models_dir = args.models_dir.unwrap_or_else(paths::default_models_dir);
    let socket = args.socket.unwrap_or_else(paths::default_socket_path);
    let mut config = mindory_daemon::Config::new(data_dir, socket, models_dir);
    config.workers = args.workers.max(1);
    if let Some(model) = args.embedding_model {
        config.embedding_model = model;
    }
    config.parser.timeout = std::time::Duration::from_secs(args.parse_timeout.max(1));
    config.parser.memory_limit = args.parse_memory_mib.max(64) << 20;
    if let Some(watch) = args.watch {
        config.watch.force_polling = watch == Watch::Poll;
    }
    config.watch.poll_interval = std::time::Duration::from_secs(args.poll_interval.max(1));
    config.watch.sweep_interval = std::time::Duration::from_secs(args.sweep_interval.max(1) * 60);
    config.config_path = args.config.unwrap_or_else(mindory_daemon::llm::config::default_path);
    config.llm = match mindory_daemon::llm::config::load(&config.config_path) {
        Ok(llm) => llm,
        Err(e) => {
            eprintln!("mindoryd: {e}");
            return ExitCode::from(2);
        }
    };
    config.index = match mindory_daemon::index::config::load(&config.config_path) {
        Ok(index) => index,
        Err(e) => {
            eprintln!("mindoryd: {e}");
            return ExitCode::from(2);
        }
    };
    config.embed = match mindory_daemon::embed::remote::load(&config.config_path) {
        Ok(embed) => embed,
        Err(e) => {
            eprintln!("mindoryd: {e}");
            return ExitCode::from(2);
        }
    };
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
