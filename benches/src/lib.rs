//! Shared helpers for the criterion benches: the models dir, the corpus,
//! an in-process daemon on a temp dir, and percentile summaries.

pub mod eval;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mindory_proto::pb::{self, daemon_client::DaemonClient};

/// The models directory (as for the tests: `MINDORY_MODELS_DIR` or the default).
pub fn models_dir() -> PathBuf {
    std::env::var_os("MINDORY_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(mindory_proto::paths::default_models_dir)
}

/// A file of the shared corpus.
pub fn corpus(rel: &str) -> PathBuf {
    let root = std::env::var_os("MINDORY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    root.join(rel)
}

/// A daemon running in-process on `root` until dropped.
pub struct BenchDaemon {
    /// The daemon's socket.
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), mindory_daemon::DaemonError>>>,
}

impl BenchDaemon {
    /// Starts a daemon on `root/data` and waits until it answers; returns it
    /// and the time from start to serving.
    pub async fn start(root: &Path) -> (BenchDaemon, Duration) {
        Self::start_with(root, |_| {}).await
    }

    /// Like [`BenchDaemon::start`], with the config adjusted by `tweak`.
    pub async fn start_with(root: &Path, tweak: impl FnOnce(&mut mindory_daemon::Config)) -> (BenchDaemon, Duration) {
        let socket = root.join("mindoryd.sock");
        let mut config = mindory_daemon::Config::new(root.join("data"), socket.clone(), models_dir());
        tweak(&mut config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let t0 = std::time::Instant::now();
        let task = tokio::spawn(mindory_daemon::run(config, async move {
            let _ = rx.await;
        }));
        loop {
            if let Ok(ch) = mindory_proto::connect(&socket).await {
                if DaemonClient::new(ch).hello(pb::HelloRequest::default()).await.is_ok() {
                    break;
                }
            }
            assert!(!task.is_finished(), "the daemon exited during start-up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (
            BenchDaemon {
                socket,
                stop: Some(tx),
                task: Some(task),
            },
            t0.elapsed(),
        )
    }

    /// Stops the daemon and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("daemon task").expect("clean stop");
        }
    }
}

/// The p-th percentile (0–100) of durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Resident set size of this process in MiB (Linux).
pub fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The passages the daemon would embed for `files` (same parser and
/// chunker), longest first, as the raw-model baseline of the ingest benches.
pub fn passages(files: &[PathBuf], counter: &mindory_daemon::embed::TokenCounter) -> Vec<String> {
    use mindory_daemon::text::{self, chunk::ChunkConfig};
    let pdfium = mindory_proto::models::ModelPaths::new(&models_dir()).pdfium;
    let mut chunks: Vec<(usize, String)> = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).expect("corpus file");
        let (_, doc) = mindory_daemon::parse::parse(path, &bytes, &pdfium).expect("parses");
        let book = text::assemble(&doc);
        chunks.extend(
            text::chunk::chunk(&book, ChunkConfig::default(), &|s| counter.count(s))
                .into_iter()
                .map(|p| (p.tokens, book.text[p.start..p.end].to_string())),
        );
    }
    chunks.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    chunks.into_iter().map(|(_, s)| s).collect()
}
