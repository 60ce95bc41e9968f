//! Test fixtures: a daemon on a temp data dir and socket, readiness polling,
//! the CLI binary, corpus paths, and the servers some tests need (llama.cpp,
//! PostgreSQL with pgvector for the vector index's other backend).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use mindory_proto::pb::{self, daemon_client::DaemonClient, library_client::LibraryClient, search_client::SearchClient};
use mindory_proto::PROTOCOL_VERSION;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The shared corpus (read-only).
pub fn corpus(rel: &str) -> PathBuf {
    let root = std::env::var_os("MINDORY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus"));
    let path = root.join(rel);
    assert!(
        path.exists(),
        "corpus file {} is missing; set MINDORY_CORPUS to the shared corpus folder",
        path.display()
    );
    path
}

/// Points a test daemon's LLM at an OpenAI-compatible endpoint serving
/// `model` (the fake endpoint, or llama.cpp's server). Questions are not
/// widened by a first request for the model's own answer: scripted
/// endpoints answer requests in order, and the expansion has its own test
/// (`a_question_is_widened_by_the_models_own_answer`).
pub fn use_endpoint(c: &mut mindory_daemon::Config, url: String, model: &str) {
    c.llm.backend = mindory_daemon::llm::config::BackendChoice::Openai;
    c.llm.base_url = url;
    c.llm.model = model.into();
    c.llm.expand_questions = false;
}

/// A fixture kept in this repository.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The models directory the tests use (fetched by `.ci/run`).
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("MINDORY_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(mindory_proto::paths::default_models_dir);
    if let Err(e) = mindory_proto::models::verify_present(&dir) {
        panic!("{e}");
    }
    dir
}

/// A daemon running in this process on its own temp dir and socket.
pub struct TestDaemon {
    pub root: PathBuf,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), mindory_daemon::DaemonError>>>,
}

impl TestDaemon {
    /// A new temp root (kept for the test's lifetime by the caller's TempDir).
    pub async fn start(root: &Path) -> TestDaemon {
        Self::start_at(root.to_path_buf(), root.join("run").join("mindoryd.sock"), root.join("data")).await
    }

    /// Starts (or restarts) a daemon on the given paths and waits until it answers.
    pub async fn start_at(root: PathBuf, socket: PathBuf, data_dir: PathBuf) -> TestDaemon {
        let task = Self::spawn(&socket, &data_dir);
        let (stop_tx, task) = task;
        let mut daemon = TestDaemon {
            root,
            socket,
            data_dir,
            stop: Some(stop_tx),
            task: Some(task),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Starts a daemon whose config `tweak` adjusts (parser limits, …).
    pub async fn start_with(root: &Path, tweak: impl FnOnce(&mut mindory_daemon::Config)) -> TestDaemon {
        let socket = root.join("run").join("mindoryd.sock");
        Self::start_at_with(root.to_path_buf(), socket, root.join("data"), tweak).await
    }

    /// Starts (or restarts) a daemon on the given paths with its vector
    /// index on `backend`.
    pub async fn start_at_on(root: PathBuf, socket: PathBuf, data_dir: PathBuf, backend: &Backend) -> TestDaemon {
        Self::start_at_with(root, socket, data_dir, |c| backend.configure(c)).await
    }

    /// Starts (or restarts) a daemon on the given paths, its config adjusted
    /// by `tweak`, and waits until it answers.
    pub async fn start_at_with(
        root: PathBuf,
        socket: PathBuf,
        data_dir: PathBuf,
        tweak: impl FnOnce(&mut mindory_daemon::Config),
    ) -> TestDaemon {
        let (stop_tx, task) = Self::spawn_config(Self::config(&socket, &data_dir), tweak);
        let mut daemon = TestDaemon {
            root,
            socket,
            data_dir,
            stop: Some(stop_tx),
            task: Some(task),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// The test configuration: two workers, and parsing in the sandboxed
    /// worker of the freshly built `mindoryd` (never in-process).
    fn config(socket: &Path, data_dir: &Path) -> mindory_daemon::Config {
        let mut config = mindory_daemon::Config::new(data_dir.to_path_buf(), socket.to_path_buf(), models_dir());
        config.workers = 2;
        config.parser.worker_exe = Some(daemon_path());
        config
    }

    /// Spawns `run` without waiting; returns the stop switch and the task.
    pub fn spawn(socket: &Path, data_dir: &Path) -> (oneshot::Sender<()>, JoinHandle<Result<(), mindory_daemon::DaemonError>>) {
        Self::spawn_config(Self::config(socket, data_dir), |_| {})
    }

    fn spawn_config(
        mut config: mindory_daemon::Config,
        tweak: impl FnOnce(&mut mindory_daemon::Config),
    ) -> (oneshot::Sender<()>, JoinHandle<Result<(), mindory_daemon::DaemonError>>) {
        tweak(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(mindory_daemon::run(config, async move {
            let _ = rx.await;
        }));
        (tx, task)
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(channel) = mindory_proto::connect(&self.socket).await {
                let hello = DaemonClient::new(channel)
                    .hello(pb::HelloRequest {
                        client_protocol_version: PROTOCOL_VERSION,
                        client_name: "tests".into(),
                    })
                    .await;
                if hello.is_ok() {
                    return;
                }
            }
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                let result = self.task.take().expect("checked").await;
                panic!("the daemon exited during start-up: {result:?}");
            }
            assert!(Instant::now() < deadline, "the daemon did not become ready within 120 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fresh gRPC channel.
    pub async fn channel(&self) -> Channel {
        mindory_proto::connect(&self.socket).await.expect("daemon reachable")
    }

    /// Status counters.
    pub async fn status(&self) -> pb::StatusResponse {
        DaemonClient::new(self.channel().await)
            .status(pb::StatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    /// All books.
    pub async fn books(&self) -> Vec<pb::Book> {
        LibraryClient::new(self.channel().await)
            .list_books(pb::ListBooksRequest::default())
            .await
            .expect("list")
            .into_inner()
            .books
    }

    /// Adds paths over gRPC.
    pub async fn add(&self, paths: &[PathBuf]) -> Vec<pb::AddedPath> {
        let paths = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        LibraryClient::new(self.channel().await)
            .add_paths(pb::AddPathsRequest { paths })
            .await
            .expect("add")
            .into_inner()
            .results
    }

    /// Polls until no book is queued or indexing and the queue is empty.
    pub async fn wait_idle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let books = self.books().await;
            let busy = books.iter().any(|b| {
                b.status == pb::BookStatus::Queued as i32
                    || b.status == pb::BookStatus::Indexing as i32
                    || b.status == pb::BookStatus::Embedding as i32
            });
            let status = self.status().await;
            if !busy && status.queue_pending == 0 && status.queue_running == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "ingestion did not finish within {limit:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Searches over gRPC.
    pub async fn search(&self, query: &str, k: u32) -> Vec<pb::SearchHit> {
        self.search_in(query, k, &[]).await
    }

    /// Searches only the given books.
    pub async fn search_in(&self, query: &str, k: u32, book_ids: &[u64]) -> Vec<pb::SearchHit> {
        self.search_with(query, k, book_ids, pb::SearchMode::Hybrid).await
    }

    /// Searches the given books (all when empty) in one mode.
    pub async fn search_with(&self, query: &str, k: u32, book_ids: &[u64], mode: pb::SearchMode) -> Vec<pb::SearchHit> {
        self.try_search(query, k, book_ids, mode).await.expect("search")
    }

    /// [`Self::search_with`], returning the daemon's refusal instead of
    /// panicking on it.
    pub async fn try_search(
        &self,
        query: &str,
        k: u32,
        book_ids: &[u64],
        mode: pb::SearchMode,
    ) -> Result<Vec<pb::SearchHit>, tonic::Status> {
        let request = pb::SearchRequest {
            query: query.into(),
            k,
            book_ids: book_ids.to_vec(),
            mode: mode as i32,
            ..Default::default()
        };
        Ok(SearchClient::new(self.channel().await).search(request).await?.into_inner().hits)
    }

    /// Asks the daemon to stop and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = self.task.take().expect("running").await.expect("daemon task");
        result.expect("daemon stopped cleanly");
        assert!(!self.socket.exists(), "the socket file is removed at shutdown");
    }
}

/// A binary of the workspace next to this test binary.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing; build it first with `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

/// The `mindory` binary.
pub fn cli_path() -> PathBuf {
    workspace_bin("mindory")
}

/// The `mindoryd` binary (also the sandboxed parse worker).
pub fn daemon_path() -> PathBuf {
    workspace_bin("mindoryd")
}

/// Runs the CLI against `socket` and returns its output.
pub async fn cli(socket: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(cli_path())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .await
        .expect("run mindory")
}

/// Runs the CLI and parses stdout as JSON, asserting success.
pub async fn cli_json(socket: &Path, args: &[&str]) -> serde_json::Value {
    let out = cli(socket, args).await;
    assert!(
        out.status.success(),
        "mindory {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "mindory {args:?} printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Copies corpus files into `dir` (the corpus is read-only).
pub fn copy_into(dir: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    files
        .iter()
        .map(|f| {
            let dest = dir.join(f.file_name().unwrap());
            std::fs::copy(f, &dest).unwrap();
            dest
        })
        .collect()
}

/// Starts the real `mindoryd` binary and waits until it answers.
pub async fn start_mindoryd(root: &std::path::Path) -> (tokio::process::Child, std::path::PathBuf) {
    start_mindoryd_with(root, &[]).await
}

/// Starts `mindoryd` with extra environment (`MINDORY_LLM_*` overrides…)
/// and waits until it answers.
pub async fn start_mindoryd_with(root: &std::path::Path, env: &[(&str, &str)]) -> (tokio::process::Child, std::path::PathBuf) {
    let (mut child, socket) = spawn_mindoryd(root, env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !cli(&socket, &["status"]).await.status.success() {
        let log = || {
            let log = std::fs::read_to_string(root.join("mindoryd.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        assert!(
            std::time::Instant::now() < deadline,
            "mindoryd did not become ready; its log ends:\n{}",
            log()
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mindoryd exited during start-up ({status}); its log ends:\n{}", log());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (child, socket)
}

/// The `mindoryd` command every test that runs the binary starts from: its
/// socket (returned too), data under `root`, the shared models, and its
/// config file `ROOT/config.toml`, absent unless a test writes it, so the
/// user's own config never leaks into a test. Where its output goes is the
/// caller's choice.
pub fn mindoryd_command(root: &std::path::Path, env: &[(&str, &str)]) -> (tokio::process::Command, std::path::PathBuf) {
    let socket = root.join("run").join("mindoryd.sock");
    let mut command = tokio::process::Command::new(daemon_path());
    command
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--models-dir")
        .arg(crate::support::models_dir())
        .env("RUST_LOG", "warn,mindory_daemon=info")
        .env("MINDORY_CONFIG", root.join("config.toml"))
        // A test that fails must not leave a daemon behind holding the
        // test runner's output pipe open.
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .envs(env.iter().copied());
    (command, socket)
}

/// Spawns `mindoryd` on `root` without waiting for it; its log goes to
/// `ROOT/mindoryd.log`, for post-mortems.
pub fn spawn_mindoryd(root: &std::path::Path, env: &[(&str, &str)]) -> (tokio::process::Child, std::path::PathBuf) {
    let (mut command, socket) = mindoryd_command(root, env);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("mindoryd.log"))
        .expect("log file");
    let child = command.stderr(log).spawn().expect("start mindoryd");
    (child, socket)
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// llama.cpp's own server (the xllamacpp wheel that `scripts/test`
/// installs, `MINDORY_LLAMA_PYTHON`) on a GGUF, on a free loopback port;
/// killed on drop.
pub struct LlamaServer {
    child: tokio::process::Child,
    port: u16,
    /// Its OpenAI-compatible base URL.
    pub url: String,
}

impl LlamaServer {
    /// Starts the server on `gguf` with llama.cpp's built-in chat template
    /// `template` ("" for the one in the GGUF) and waits until the model is
    /// loaded. Its output goes to `log`.
    pub async fn start(log: &Path, gguf: &Path, template: &str) -> LlamaServer {
        let python = std::env::var("MINDORY_LLAMA_PYTHON").unwrap_or_else(|_| {
            panic!("MINDORY_LLAMA_PYTHON is not set: run the tests through scripts/test, which installs xllamacpp with scripts/llm-test-server")
        });
        assert!(gguf.exists(), "{} is missing; run `mindory models fetch`", gguf.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/llm_test_server.py");
        let child = tokio::process::Command::new(python)
            .arg(launcher)
            .arg("--model")
            .arg(gguf)
            .args(["--port", &port.to_string()])
            .args(["--chat-template", template, "--ctx", "2048", "--threads", "2"])
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start the llama.cpp test server");
        let server = LlamaServer {
            child,
            port,
            url: format!("http://127.0.0.1:{port}/v1"),
        };
        // `/health` answers 200 only once the model is loaded (503 before).
        eventually(
            "the llama.cpp server has loaded its model",
            Duration::from_secs(120),
            || async move {
                let (status, _) = http(port, "GET", "/health", "").await.ok()?;
                (status == 200).then_some(())
            },
        )
        .await;
        server
    }

    /// POSTs a JSON body to one of the server's own endpoints
    /// (`/tokenize`, `/apply-template`, ...) and returns the JSON answer.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let (status, text) = http(self.port, "POST", path, &body.to_string())
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(status, 200, "POST {path} {body}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One HTTP/1.0 exchange on loopback: status code and body.
async fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head}")))?;
    Ok((status, body.to_string()))
}

/// Where a test daemon keeps its vector index: the scenarios that must hold
/// on every backend take one and run once per backend.
#[derive(Debug, Clone)]
pub enum Backend {
    /// usearch files in the data directory (the default).
    Usearch,
    /// A library (schema) in a PostgreSQL database with pgvector.
    Pgvector {
        /// The database's connection URL.
        url: String,
        /// The library name (empty: derived from the data directory).
        library: String,
    },
}

impl Backend {
    /// Points `config`'s `[index]` at this backend.
    pub fn configure(&self, config: &mut mindory_daemon::Config) {
        use mindory_daemon::index::{IndexBackend, IndexConfig};
        config.index = match self {
            Backend::Usearch => IndexConfig::default(),
            Backend::Pgvector { url, library } => IndexConfig {
                backend: IndexBackend::Pgvector,
                url: url.clone(),
                library: library.clone(),
            },
        };
    }
}

/// A throwaway PostgreSQL with pgvector (`scripts/pg-test-server`, which
/// installs it on first use; `scripts/test` installs it before the tests
/// run, so parallel tests never race to install), listening only on a Unix
/// socket in its own temp dir; stopped on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    /// Its connection URL (`postgresql://postgres@%2F…/postgres`).
    pub url: String,
}

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-server")
}

/// Runs `scripts/pg-test-server` with `args` and returns the URL it prints.
fn pg_script_url(args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(pg_script())
        .args(args)
        .output()
        .expect("run scripts/pg-test-server");
    assert!(
        out.status.success(),
        "scripts/pg-test-server {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(url.starts_with("postgresql://"), "{url}");
    url
}

impl PgServer {
    /// Starts a new cluster and waits until it accepts connections (the
    /// script returns once `pg_ctl --wait` and `CREATE EXTENSION` are done).
    pub fn start() -> PgServer {
        // A Unix socket path has room for about 100 bytes: a short dir.
        let dir = tempfile::Builder::new().prefix("mpg").tempdir_in("/tmp").unwrap();
        let url = pg_script_url(&["start".as_ref(), dir.path().as_os_str()]);
        PgServer { dir, url }
    }

    /// Puts PgBouncer in front of this server (`pool_mode` `mode`) on a
    /// free TCP port of 127.0.0.1 and returns its URL
    /// (`postgresql://postgres@localhost:PORT/postgres`). With `tls`, it
    /// accepts only TLS connections, presents the server certificate of
    /// `tls`, and lets the role `certuser` in by its client certificate.
    pub fn bouncer(&self, mode: &str, tls: Option<&TestPki>) -> String {
        if let Some(pki) = tls {
            for (name, text) in [
                ("server.crt", &pki.server_cert),
                ("server.key", &pki.server_key),
                ("client-ca.crt", &pki.ca_cert),
            ] {
                std::fs::write(self.dir.path().join(name), text).unwrap();
            }
        }
        pg_script_url(&["bouncer".as_ref(), self.dir.path().as_os_str(), mode.as_ref()])
    }

    /// A backend on this server for the library `library` ("" derives it).
    pub fn backend(&self, library: &str) -> Backend {
        Backend::Pgvector {
            url: self.url.clone(),
            library: library.into(),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(pg_script()).arg("stop").arg(self.dir.path()).status();
    }
}

/// A throwaway certificate authority for TLS tests: a server certificate for
/// `localhost` and a client certificate for the role `certuser`, both signed
/// by it, and a second, unrelated authority. The client side's files (the CA
/// certificates, the client's certificate and key) are written to `dir`.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// PEM texts for the server side.
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let authority = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let ca = authority("Mindory test CA");
        let other = authority("Someone else's CA");
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params.distinguished_name.push(DnType::CommonName, "certuser");
        let client = client_params.signed_by(&client_key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("ca.pem", ca.pem()),
            ("other-ca.pem", other.pem()),
            ("client.crt", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        TestPki {
            dir,
            ca_cert: ca.pem(),
            server_cert: server.pem(),
            server_key: server_key.serialize_pem(),
        }
    }

    /// A client-side file: `ca.pem`, `other-ca.pem`, `client.crt`, `client.key`.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
