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
    status_mib("VmRSS:")
}

/// Peak resident set size of this process in MiB (Linux).
pub fn peak_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Resident set size of process `pid` in MiB (Linux; 0 once it is gone).
pub fn process_rss_mib(pid: u32) -> f64 {
    proc_status_mib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Peak resident set size of process `pid` in MiB (Linux; 0 once it is gone).
pub fn process_peak_mib(pid: u32) -> f64 {
    proc_status_mib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// A release binary of the workspace (`mindoryd`, `mindory`) beside the
/// bench's own executable, which must have been built first: the benches
/// that run the daemon as a process measure what users run.
pub fn release_bin(name: &str) -> PathBuf {
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release --bins` first",
        bin.display()
    );
    bin
}

/// The release `mindoryd` as a child process on `root/data` (socket and
/// log in `root`); killed if the bench panics. The benches that measure what
/// users run (memory of the daemon alone, cold start of a process) use it.
pub struct DaemonProcess {
    child: tokio::process::Child,
    /// The daemon's process id.
    pub pid: u32,
    /// The daemon's socket.
    pub socket: PathBuf,
    log: PathBuf,
}

impl DaemonProcess {
    /// Starts the daemon with `args` after the socket, data and models
    /// directories, and waits until it answers `Hello`.
    pub async fn start(root: &Path, args: &[&std::ffi::OsStr]) -> DaemonProcess {
        Self::start_in(root, args, None).await
    }

    /// [`DaemonProcess::start`], inside the cgroup (v1) directory `cgroup`
    /// when one is given: a shell joins it (writing 0 to `cgroup.procs`
    /// moves the writer) and then becomes the daemon, so every page the
    /// daemon ever touches is charged to the group.
    pub async fn start_in(root: &Path, args: &[&std::ffi::OsStr], cgroup: Option<&Path>) -> DaemonProcess {
        let socket = root.join("mindoryd.sock");
        let log = root.join("mindoryd.log");
        let mut command = match cgroup {
            Some(group) => {
                let mut sh = tokio::process::Command::new("sh");
                sh.arg("-c")
                    .arg("echo 0 > \"$0\" && exec \"$@\"")
                    .arg(group.join("cgroup.procs"))
                    .arg(release_bin("mindoryd"));
                sh
            }
            None => tokio::process::Command::new(release_bin("mindoryd")),
        };
        let child = command
            .arg("--socket")
            .arg(&socket)
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--models-dir")
            .arg(models_dir())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start mindoryd");
        let pid = child.id().unwrap();
        let mut daemon = DaemonProcess { child, pid, socket, log };
        loop {
            if let Ok(ch) = mindory_proto::connect(&daemon.socket).await {
                if DaemonClient::new(ch).hello(pb::HelloRequest::default()).await.is_ok() {
                    break;
                }
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("mindoryd exited during start-up ({status}):\n{}", daemon.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        daemon
    }

    /// The whole log the daemon wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A new connection to the daemon.
    pub async fn channel(&self) -> tonic::transport::Channel {
        mindory_proto::connect(&self.socket).await.expect("connect")
    }

    /// Asks the daemon to shut down and waits (a minute at most) for a
    /// clean exit.
    pub async fn stop(mut self) {
        let _ = DaemonClient::new(self.channel().await)
            .shutdown(pb::ShutdownRequest::default())
            .await;
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => assert!(status.unwrap().success(), "mindoryd stopped badly:\n{}", self.log_tail()),
            Err(_) => panic!("mindoryd did not stop within a minute"),
        }
    }
}

/// A kB field of `/proc/self/status`, in MiB (0 when absent).
fn status_mib(field: &str) -> f64 {
    proc_status_mib("/proc/self/status", field)
}

/// A kB field of a `/proc/*/status` file, in MiB (0 when absent).
pub fn proc_status_mib(path: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The GGUF of the local answer model `name`, which must be installed.
pub fn llm_gguf(name: &str) -> PathBuf {
    let model = mindory_proto::models::llm_model(name)
        .unwrap_or_else(|| panic!("no local model {name:?}; the models are {}", mindory_proto::models::llm_names()));
    let gguf = models_dir().join(model.file.dest);
    assert!(
        gguf.exists(),
        "{} is missing; run `mindory models fetch --llm {name}`",
        gguf.display()
    );
    gguf
}

/// The LLM benches' model and threads: `MINDORY_BENCH_LLM` (default: the
/// default answer model) and `MINDORY_BENCH_THREADS` (default: every core).
/// Sets `CANDLE_NUM_THREADS`, which candle reads once, to the same count.
pub fn bench_llm() -> (String, PathBuf, usize) {
    let name = std::env::var("MINDORY_BENCH_LLM").unwrap_or_else(|_| mindory_proto::models::DEFAULT_LLM.name.into());
    let gguf = llm_gguf(&name);
    let threads: usize = std::env::var("MINDORY_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    (name, gguf, threads)
}

/// llama.cpp's OpenAI-compatible server (`scripts/llm_test_server.py` with
/// the xllamacpp interpreter `python`) on `gguf`, once it accepts
/// connections; killed when the child is dropped. Returns the child and its
/// base URL (up to `/v1`). Gemma's base file has no chat template, so the
/// server is given llama.cpp's built-in one; other files use their own.
pub async fn llama_server(python: &str, gguf: &Path, name: &str, threads: usize) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/llm_test_server.py");
    let child = tokio::process::Command::new(python)
        .arg(launcher)
        .arg("--model")
        .arg(gguf)
        .args(["--port", &port.to_string(), "--ctx", "8192", "--threads", &threads.to_string()])
        .args(["--chat-template", if name.starts_with("gemma") { "gemma" } else { "" }])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start scripts/llm_test_server.py");
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, format!("http://127.0.0.1:{port}/v1"))
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
