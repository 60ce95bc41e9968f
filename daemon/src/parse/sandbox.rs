//! Runs a parser where a bad file cannot hurt the daemon: in a child process
//! with a time limit, a memory limit and no core dumps.
//!
//! Books come from anywhere, and parsers (PDFium above all, which is C++)
//! can crash, loop or allocate without bound on hostile input. So the daemon
//! starts `mindoryd __parse-worker`, writes the file's bytes to its stdin and
//! reads a postcard-encoded [`WorkerReply`] from its stdout. A crash, a
//! timeout or an exhausted memory limit fails that one file with a one-line
//! reason; the daemon and every stored book are untouched.
//!
//! When no `mindoryd` executable can be found (the daemon embedded in another
//! program), parsing falls back to a blocking thread in-process: panics are
//! still contained, but a hang or a native crash is not, and the daemon says
//! so in its log at start.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Format, ParseError};
use crate::text::Document;

/// The hidden first argument that turns `mindoryd` into a parse worker.
pub const WORKER_ARG: &str = "__parse-worker";

/// How parsing is isolated and limited.
#[derive(Debug, Clone)]
pub struct ParserConfig {
    /// The `mindoryd` executable to run as a worker; `None` parses in-process.
    pub worker_exe: Option<PathBuf>,
    /// Wall-clock limit for one file.
    pub timeout: Duration,
    /// Limit on the worker's writable memory (RLIMIT_DATA), in bytes.
    pub memory_limit: u64,
    /// PDFium's shared library, for PDFs.
    pub pdfium: PathBuf,
}

impl ParserConfig {
    /// Defaults: a worker next to the running executable, 5 minutes and
    /// 2 GiB per file (the 2,415-page PDF reference manual needs ~25 s and
    /// ~300 MiB).
    pub fn new(pdfium: PathBuf) -> Self {
        ParserConfig {
            worker_exe: find_worker_exe(),
            timeout: Duration::from_secs(300),
            memory_limit: 2 << 30,
            pdfium,
        }
    }
}

/// `mindoryd` itself, or a `mindoryd` next to the running executable or one
/// directory up (where cargo puts binaries relative to test executables).
pub fn find_worker_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if exe.file_name().is_some_and(|n| n == "mindoryd") {
        return Some(exe);
    }
    let dir = exe.parent()?;
    [dir.join("mindoryd"), dir.parent()?.join("mindoryd")]
        .into_iter()
        .find(|p| p.is_file())
}

/// What the worker sends back.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReply {
    /// The parse result.
    pub result: Result<(Format, Document), ParseError>,
    /// Peak resident memory of the worker, in KiB.
    pub peak_rss_kib: u64,
}

/// A parse result with what it cost.
#[derive(Debug)]
pub struct Parsed {
    /// The format that was detected.
    pub format: Format,
    /// The parsed book.
    pub document: Document,
    /// Wall time of the parse.
    pub elapsed: Duration,
    /// Peak memory of the worker in KiB (0 when parsed in-process).
    pub peak_rss_kib: u64,
}

/// Parses `bytes` (the content of `path`) under `config`'s isolation.
pub async fn parse(config: &ParserConfig, path: &Path, bytes: Vec<u8>) -> Result<Parsed, ParseError> {
    let started = Instant::now();
    let (format, document, peak_rss_kib) = match &config.worker_exe {
        Some(exe) => {
            let reply = run_worker(exe, config, path, &bytes).await?;
            let (format, document) = reply.result?;
            (format, document, reply.peak_rss_kib)
        }
        None => {
            let (path, pdfium) = (path.to_path_buf(), config.pdfium.clone());
            let task = tokio::task::spawn_blocking(move || super::parse(&path, &bytes, &pdfium));
            let (format, document) = match tokio::time::timeout(config.timeout, task).await {
                Err(_) => return Err(timeout_error(config.timeout)),
                Ok(Err(e)) if e.is_panic() => return Err(ParseError::Crashed(panic_message(e.into_panic()))),
                Ok(Err(e)) => return Err(ParseError::Crashed(e.to_string())),
                Ok(Ok(result)) => result?,
            };
            (format, document, 0)
        }
    };
    Ok(Parsed {
        format,
        document,
        elapsed: started.elapsed(),
        peak_rss_kib,
    })
}

fn timeout_error(limit: Duration) -> ParseError {
    ParseError::Invalid(format!(
        "parsing took longer than {} s, the limit; the file is pathological or damaged",
        limit.as_secs()
    ))
}

/// The text a panic carried (its `&str` or `String` payload).
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

async fn run_worker(exe: &Path, config: &ParserConfig, path: &Path, bytes: &[u8]) -> Result<WorkerReply, ParseError> {
    let crashed = |detail: String| ParseError::Crashed(detail);
    let mut command = tokio::process::Command::new(exe);
    command
        .arg(WORKER_ARG)
        .arg(path)
        .arg(&config.pdfium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The worker reads untrusted bytes: it gets only the variables it
        // needs, never the daemon's whole environment (which may hold the
        // LLM's API key).
        .env_clear()
        .envs(WORKER_ENV.iter().filter_map(|k| std::env::var_os(k).map(|v| (*k, v))))
        .kill_on_drop(true);
    // The integration tests plant crashes, hangs and memory hogs in the
    // worker; only a daemon built with `test-hooks` arms them.
    #[cfg(feature = "test-hooks")]
    command.env(TEST_HOOKS_ENV, "1");
    // No code of ours runs between fork and exec (no `pre_exec`), so the
    // standard library starts the worker with posix_spawn (a vfork), which
    // neither copies the daemon's page tables (gigabytes with a model
    // loaded) nor leaves a forked copy of the daemon holding its socket and
    // database for as long as a fork would. The limits are set from here
    // instead, before the worker has any of the file: it reads nothing
    // until the bytes come on its stdin.
    let mut child = command
        .spawn()
        .map_err(|e| crashed(format!("cannot start the parse worker {}: {e}", exe.display())))?;
    limit(&child, config.memory_limit).map_err(|e| crashed(format!("cannot limit the parse worker's memory: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        // Feed and drain concurrently: a worker that writes a large reply
        // before reading all its input must not deadlock against us.
        let feed = async {
            // A worker that dies early closes the pipe; its exit status tells why.
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, out_res, _) = tokio::join!(feed, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        out_res.map_err(|e| crashed(format!("cannot read the parse worker's reply: {e}")))?;
        let status = child.wait().await.map_err(|e| crashed(e.to_string()))?;
        Ok::<_, ParseError>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(config.timeout, work).await {
        Ok(result) => result?,
        // Dropping `work` drops the child, and `kill_on_drop` kills it.
        Err(_) => return Err(timeout_error(config.timeout)),
    };
    let err = String::from_utf8_lossy(&err);
    if status.success() {
        return postcard::from_bytes(&out).map_err(|e| crashed(format!("unreadable reply from the parse worker: {e}")));
    }
    use std::os::unix::process::ExitStatusExt;
    if err.contains("memory allocation of") || err.contains("std::bad_alloc") || err.contains("Out of memory") {
        return Err(ParseError::Invalid(format!(
            "parsing needed more than {} MiB, the memory limit; the file is pathological or damaged",
            config.memory_limit >> 20
        )));
    }
    let how = match status.signal() {
        Some(signal) => nix::sys::signal::Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string()),
        None => format!("exit code {}", status.code().unwrap_or(-1)),
    };
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    Err(crashed(if last.is_empty() { how } else { format!("{how}: {last}") }))
}

/// Sets a started worker's limits: `memory` bytes of writable memory
/// (RLIMIT_DATA) and no core dumps. A worker that cannot be limited is
/// killed when its handle drops (`kill_on_drop`).
fn limit(child: &tokio::process::Child, memory: u64) -> std::io::Result<()> {
    let pid = child.id().ok_or_else(|| std::io::Error::other("the worker has already exited"))?;
    for (resource, value) in [(libc::RLIMIT_DATA, memory), (libc::RLIMIT_CORE, 0)] {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: prlimit reads `limit` and writes nothing (old is null).
        if unsafe { libc::prlimit(pid as libc::pid_t, resource, &limit, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The worker process: reads the bytes on stdin, parses, writes the reply
/// on stdout. Arguments: the file's path (for its name and extension) and
/// PDFium's library path. Its limits were set by the daemon that started it.
pub fn worker_main(args: &[std::ffi::OsString]) -> ExitCode {
    let (Some(path), Some(pdfium)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mindoryd {WORKER_ARG} PATH PDFIUM_LIBRARY < bytes");
        return ExitCode::from(2);
    };
    let path = Path::new(path);
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes) {
        eprintln!("cannot read the file's bytes from stdin: {e}");
        return ExitCode::from(2);
    }
    let hooks = std::env::var_os(TEST_HOOKS_ENV).is_some();
    // A panic is a parser bug, not a crash of this process: report it as one
    // line in the reply, without a backtrace on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let result = match std::panic::catch_unwind(|| {
        if hooks {
            test_hooks(path);
        }
        super::parse(path, &bytes, Path::new(pdfium))
    }) {
        Ok(result) => result,
        Err(payload) => Err(ParseError::Crashed(format!("panic: {}", panic_message(payload)))),
    };
    let reply = WorkerReply {
        result,
        peak_rss_kib: peak_rss_kib(),
    };
    let encoded = postcard::to_allocvec(&reply).expect("in-memory serialization cannot fail");
    if let Err(e) = std::io::Write::write_all(&mut std::io::stdout().lock(), &encoded) {
        eprintln!("cannot write the reply: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// `mindoryd __parse-dump FILE`: prints what the parser makes of a file —
/// metadata, then one line per block with its page and heading level — to
/// debug a book that reads badly.
pub fn dump_main(args: &[std::ffi::OsString], pdfium: &Path) -> ExitCode {
    let Some(path) = args.first().map(Path::new) else {
        eprintln!("usage: mindoryd __parse-dump FILE");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match super::parse(path, &bytes, pdfium) {
        Ok((format, doc)) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "format {} | title {:?} | author {:?} | language {:?}",
                format.name(),
                doc.title,
                doc.author,
                doc.language
            );
            for block in &doc.blocks {
                let page = block.page.as_ref().map(|p| format!("[p.{}] ", p.display())).unwrap_or_default();
                let mark = block
                    .heading_level
                    .map(|l| format!("{} ", "#".repeat(l as usize)))
                    .unwrap_or_default();
                // A closed pipe (`| head`) just ends the dump.
                if writeln!(out, "{page}{mark}{}", block.text).is_err() {
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// The environment a parse worker inherits: locale and time zone (text
/// decoding and dates), and where temporary files go. Everything else, the
/// API key and `RUST_LOG` included, is cleared.
pub const WORKER_ENV: &[&str] = &["LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// Set by a daemon built with the `test-hooks` feature: arms [`test_hooks`].
const TEST_HOOKS_ENV: &str = "MINDORY_PARSE_TEST_HOOKS";

/// Planted failures the integration tests use to prove containment: a file
/// named `mindory-test-panic…`, `…-abort…`, `…-hang…` or `…-bloat…` panics,
/// aborts, hangs or allocates without bound. They can only hurt this worker
/// process. `…-env…` fails with the names of the worker's environment
/// variables.
fn test_hooks(path: &Path) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.contains("mindory-test-panic") {
        panic!("planned parser panic for {name}");
    }
    if name.contains("mindory-test-env") {
        // Reports which variables the worker was given, for the test that
        // checks the environment is cleared.
        let mut names: Vec<String> = std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        names.sort();
        panic!("environment: {}", names.join(","));
    }
    if name.contains("mindory-test-abort") {
        std::process::abort();
    }
    if name.contains("mindory-test-hang") {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    if name.contains("mindory-test-bloat") {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 64 << 20]);
        }
    }
}

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |usage| usage.max_rss().max(0) as u64)
}
