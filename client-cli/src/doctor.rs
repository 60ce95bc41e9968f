//! `mindory doctor`: one line per check (model files, socket, daemon,
//! config file, LLM backend, disk space, inotify limits), each OK, WARN or
//! FAIL with what to do next. It reads files itself and asks the daemon
//! only what the daemon alone knows, so it still diagnoses a daemon that
//! will not start.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use mindory_proto::pb::{self, assistant_client::AssistantClient, daemon_client::DaemonClient};
use mindory_proto::{models, paths, PROTOCOL_VERSION};
use serde_json::{json, Value};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug)]
struct Check {
    /// Short name: `models`, `socket`, `daemon`, `config`, `llm`, `disk`, `inotify`.
    name: &'static str,
    level: Level,
    /// What was found.
    detail: String,
    /// What to do about a WARN or FAIL.
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            level: Level::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            level: Level::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the daemon told us, when it answered.
struct DaemonInfo {
    status: pb::StatusResponse,
    llm: Option<pb::LlmInfoResponse>,
}

/// Runs every check, prints the report and exits 1 when any check failed.
pub async fn run(
    socket: &Path,
    models_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    as_json: bool,
) -> Result<ExitCode> {
    let mut checks = Vec::new();
    let models_dir = models_dir.unwrap_or_else(paths::default_models_dir);
    // Hashing ~70 MB takes a moment: do it off the async thread.
    let dir = models_dir.clone();
    checks.push(tokio::task::spawn_blocking(move || check_models(&dir)).await?);

    checks.push(check_socket(socket));
    let (daemon_check, daemon) = if std::fs::symlink_metadata(socket).is_err() {
        // The socket line already says why; connecting would only repeat it.
        let fix = "start it with `mindoryd` (or `mindory service install` to run it at login)";
        (Check::fail("daemon", "not running (no socket)", fix), None)
    } else {
        check_daemon(socket).await
    };
    checks.push(daemon_check);

    let config_path = config
        .or_else(|| daemon.as_ref().and_then(|d| d.llm.as_ref()).map(|l| PathBuf::from(&l.config_path)))
        .unwrap_or_else(default_config_path);
    let (config_check, file_llm) = check_config(&config_path);
    checks.push(config_check);
    checks.push(check_llm(daemon.as_ref().and_then(|d| d.llm.as_ref()), file_llm.as_ref(), &models_dir).await);

    let data_dir = data_dir
        .or_else(|| daemon.as_ref().map(|d| PathBuf::from(&d.status.data_dir)))
        .unwrap_or_else(paths::default_data_dir);
    checks.push(check_disk(&data_dir));
    checks.push(check_inotify(daemon.as_ref().map(|d| d.status.folders.as_slice())));

    let failed = checks.iter().any(|c| c.level == Level::Fail);
    let mut out = std::io::stdout().lock();
    if as_json {
        let value = json!({
            "ok": !failed,
            "checks": checks.iter().map(check_json).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        for c in &checks {
            match &c.fix {
                Some(fix) => writeln!(out, "{:<4}  {:<8} {}; {fix}", c.level.label(), c.name, c.detail)?,
                None => writeln!(out, "{:<4}  {:<8} {}", c.level.label(), c.name, c.detail)?,
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The daemon's default config file (`mindoryd --config` documents it).
fn default_config_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("mindory")
        .join("config.toml")
}

/// Every file of the manifest present with its size and SHA-256 (the daemon
/// checks only sizes at start, so a corrupted file shows up here first).
fn check_models(dir: &Path) -> Check {
    let fix = format!("run `{}` (or pass --models-dir to where the models are)", models::FETCH_COMMAND);
    for file in models::MANIFEST {
        let path = dir.join(file.dest);
        let problem = match std::fs::metadata(&path) {
            Err(_) => Some("missing".to_string()),
            Ok(m) if m.len() != file.size => Some(format!("the wrong size ({} bytes, expected {})", m.len(), file.size)),
            Ok(_) => match models::sha256_file(&path) {
                Err(e) => Some(format!("unreadable ({e})")),
                Ok(digest) if digest != file.sha256 => Some(format!("corrupt (SHA-256 {digest}, expected {})", file.sha256)),
                Ok(_) => None,
            },
        };
        if let Some(problem) = problem {
            return Check::fail("models", format!("{} is {problem}", path.display()), fix);
        }
    }
    Check::ok(
        "models",
        format!(
            "{} files in {} present, sizes and SHA-256 match",
            models::MANIFEST.len(),
            dir.display()
        ),
    )
}

/// The socket file: exists, is a socket, is ours and private.
fn check_socket(socket: &Path) -> Check {
    let start = "pass --socket where the daemon listens, or start it";
    let meta = match std::fs::symlink_metadata(socket) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::fail(
                "socket",
                format!("no socket at {}: no daemon is running there", socket.display()),
                start,
            )
        }
        Err(e) => {
            return Check::fail(
                "socket",
                format!("cannot inspect {}: {e}", socket.display()),
                "check the path and its permissions",
            )
        }
    };
    if !meta.file_type().is_socket() {
        return Check::fail(
            "socket",
            format!("{} exists but is not a socket", socket.display()),
            "pass --socket (or MINDORY_SOCKET) the daemon's socket path; the daemon never replaces a file that is not a socket",
        );
    }
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        return Check::fail(
            "socket",
            format!("{} belongs to uid {}, not you (uid {uid})", socket.display(), meta.uid()),
            "run your own daemon on your own socket",
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    let dir_mode = socket
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .map(|m| m.permissions().mode() & 0o777);
    if mode & 0o077 != 0 || dir_mode.is_some_and(|m| m & 0o077 != 0) {
        return Check::warn(
            "socket",
            format!(
                "{} is readable by others (socket {mode:04o}, directory {:04o}; expected 0600 and 0700)",
                socket.display(),
                dir_mode.unwrap_or(0)
            ),
            "restart the daemon, which recreates both privately, or chmod them",
        );
    }
    Check::ok("socket", format!("{} is a private socket (0600, directory 0700)", socket.display()))
}

/// Hello and Status, each within a short timeout.
async fn check_daemon(socket: &Path) -> (Check, Option<DaemonInfo>) {
    let ask = async {
        let channel = mindory_proto::connect(socket).await.map_err(|e| e.to_string())?;
        let mut daemon = DaemonClient::new(channel.clone());
        let hello = daemon
            .hello(pb::HelloRequest {
                client_protocol_version: PROTOCOL_VERSION,
                client_name: "mindory-doctor".into(),
            })
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner();
        let status = daemon
            .status(pb::StatusRequest {})
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner();
        let llm = AssistantClient::new(channel)
            .llm_info(pb::LlmInfoRequest {})
            .await
            .ok()
            .map(|r| r.into_inner());
        Ok::<_, String>((hello, status, llm))
    };
    match tokio::time::timeout(Duration::from_secs(5), ask).await {
        Err(_) => (
            Check::fail(
                "daemon",
                format!("no answer on {} within 5 s", socket.display()),
                "the daemon may be stuck: `journalctl --user -u mindoryd` or its log says why; restart it",
            ),
            None,
        ),
        Ok(Err(e)) => (
            Check::fail(
                "daemon",
                format!("nothing answers on {}: {e}", socket.display()),
                "a socket left by a daemon that died is replaced when mindoryd starts again",
            ),
            None,
        ),
        Ok(Ok((hello, status, llm))) => {
            let detail = format!(
                "mindoryd {} answers Status: protocol {}, model {}, {} books",
                hello.daemon_version, hello.protocol_version, status.embedding_model, status.books
            );
            let check = if hello.protocol_version == PROTOCOL_VERSION {
                Check::ok("daemon", detail)
            } else {
                Check::warn(
                    "daemon",
                    format!("{detail}; this client speaks protocol {PROTOCOL_VERSION}"),
                    "upgrade the older of mindory and mindoryd",
                )
            };
            (check, Some(DaemonInfo { status, llm }))
        }
    }
}

/// The `[llm]` keys doctor needs when the daemon cannot tell it.
#[derive(Debug, Default)]
struct FileLlm {
    backend: String,
    base_url: String,
}

/// The config file parses as TOML with an `[llm]` table (the daemon checks
/// each key's meaning when it starts).
fn check_config(path: &Path) -> (Check, Option<FileLlm>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                Check::ok("config", format!("no config file at {}; defaults apply", path.display())),
                None,
            )
        }
        Err(e) => {
            return (
                Check::fail("config", format!("cannot read {}: {e}", path.display()), "fix its permissions"),
                None,
            )
        }
    };
    let table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            return (
                Check::fail(
                    "config",
                    format!("{} is not valid TOML: {}", path.display(), e.to_string().trim().replace('\n', " ")),
                    "fix it or move it away to use defaults (mindoryd refuses to start with it)",
                ),
                None,
            )
        }
    };
    let llm = match table.get("llm") {
        None => FileLlm::default(),
        Some(toml::Value::Table(llm)) => {
            let get = |key: &str| llm.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            FileLlm {
                backend: get("backend"),
                base_url: get("base_url"),
            }
        }
        Some(_) => {
            return (
                Check::fail(
                    "config",
                    format!("{}: `llm` is not a table", path.display()),
                    "write the settings under an `[llm]` header",
                ),
                None,
            )
        }
    };
    (Check::ok("config", format!("{} parses", path.display())), Some(llm))
}

/// Which backend answers questions; for an OpenAI-compatible endpoint,
/// whether it answers `GET /models` within a few seconds.
async fn check_llm(daemon: Option<&pb::LlmInfoResponse>, file: Option<&FileLlm>, models_dir: &Path) -> Check {
    let (backend, base_url, ready, detail) = match daemon {
        Some(info) => (info.backend.clone(), info.base_url.clone(), Some(info.ready), info.detail.clone()),
        None => {
            let file = file.map_or((String::new(), String::new()), |f| (f.backend.clone(), f.base_url.clone()));
            (file.0, file.1, None, String::new())
        }
    };
    if !base_url.is_empty() && (backend == "openai" || daemon.is_none()) {
        return match probe_endpoint(&base_url).await {
            Ok(code) if (200..300).contains(&code) => {
                Check::ok("llm", format!("OpenAI-compatible endpoint {base_url} answers (HTTP {code})"))
            }
            Ok(code @ (401 | 403)) => Check::warn(
                "llm",
                format!("endpoint {base_url} answers HTTP {code}"),
                "check the API key (the variable `api_key_env` names in config.toml)",
            ),
            Ok(code) => Check::warn(
                "llm",
                format!("endpoint {base_url} answers HTTP {code} to GET /models"),
                "check `base_url` in config.toml (it ends in /v1)",
            ),
            Err(e) => Check::fail(
                "llm",
                format!("endpoint {base_url} does not answer: {e}"),
                "start the server or fix `base_url` in config.toml",
            ),
        };
    }
    match (backend.as_str(), ready) {
        // The daemon's detail goes on to explain how to switch models;
        // its first clause is what a one-line report needs.
        ("local", Some(true)) => Check::ok(
            "llm",
            format!(
                "local model {} ready ({})",
                daemon.map_or("", |i| i.model.as_str()),
                detail.split(';').next().unwrap_or_default().trim()
            ),
        ),
        ("none", _) | ("local", Some(false)) => Check::warn(
            "llm",
            if detail.is_empty() {
                "no LLM backend".to_string()
            } else {
                format!("no LLM answers: {detail}")
            },
            format!(
                "`{}` installs a local model, or set `[llm] base_url` in config.toml",
                models::FETCH_COMMAND
            ),
        ),
        (b, Some(r)) => {
            let state = if r { "ready" } else { "not ready" };
            Check::ok("llm", format!("backend {b}, {state}: {detail}"))
        }
        (_, None) => match models::installed_llm(models_dir) {
            Some(m) => Check::ok("llm", format!("daemon not asked; local model {} installed", m.name)),
            None => Check::warn(
                "llm",
                "daemon not asked; no local model installed and no endpoint configured",
                format!("`{}` installs one, or set `[llm] base_url` in config.toml", models::FETCH_COMMAND),
            ),
        },
    }
}

/// `GET {base_url}/models` with a 3 s timeout: the HTTP status, or why none came.
async fn probe_endpoint(base_url: &str) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let mut request = client.get(&url);
    if let Ok(key) = std::env::var("OPENAI_API_KEY") {
        request = request.bearer_auth(key);
    }
    match request.send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => {
            // reqwest's top-level message is generic; the cause says what happened.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            Err(msg)
        }
    }
}

/// Free space on the file system of the data directory (or its nearest
/// existing ancestor, before the first start).
fn check_disk(data_dir: &Path) -> Check {
    let mut probe = data_dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    let stat = match nix::sys::statvfs::statvfs(probe) {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                "disk",
                format!("cannot measure free space on {}: {e}", probe.display()),
                "check the data directory",
            )
        }
    };
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    let mib = free >> 20;
    let detail = format!("{} MiB free on the file system of {}", mib, data_dir.display());
    // The database and indexes grow with the library (a few MB per book),
    // and a swap of embedding model briefly holds two vector indexes.
    if mib < 256 {
        Check::fail(
            "disk",
            detail,
            "free some space or move the data dir (--data-dir / MINDORY_DATA_DIR)",
        )
    } else if mib < 2048 {
        Check::warn("disk", detail, "a large library or a model swap may run out; free some space")
    } else {
        Check::ok("disk", detail)
    }
}

fn read_proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// inotify limits: each followed folder takes one inotify instance and one
/// watch per directory inside it. Other programs share both limits, so a
/// count close to the limit is already a warning.
fn check_inotify(folders: Option<&[pb::Folder]>) -> Check {
    let (Some(watches), Some(instances)) = (
        read_proc_number("/proc/sys/fs/inotify/max_user_watches"),
        read_proc_number("/proc/sys/fs/inotify/max_user_instances"),
    ) else {
        return Check::warn(
            "inotify",
            "cannot read /proc/sys/fs/inotify limits",
            "folders may fall back to polling; `mindory folders ls` shows how each is followed",
        );
    };
    let limits = format!("max_user_watches {watches}, max_user_instances {instances}");
    let Some(folders) = folders else {
        return Check::ok("inotify", format!("{limits}; followed folders unknown (the daemon did not answer)"));
    };
    let evented: Vec<&pb::Folder> = folders.iter().filter(|f| f.mode == "events").collect();
    let polled = folders.len() - evented.len();
    let dirs: u64 = evented.iter().map(|f| count_dirs(Path::new(&f.path), watches + 1)).sum();
    let detail = format!(
        "{limits}; {} folders followed by events ({dirs} directories), {polled} polled",
        evented.len()
    );
    let fix = "raise the limits: `sudo sysctl fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=512` (and in /etc/sysctl.d to keep them)";
    if dirs * 10 > watches * 9 || (evented.len() as u64) * 2 > instances {
        Check::warn("inotify", detail, fix)
    } else if polled > 0 && folders.iter().any(|f| f.mode_reason.contains("limit")) {
        Check::warn("inotify", format!("{detail}; some folders are polled because of a limit"), fix)
    } else {
        Check::ok("inotify", detail)
    }
}

/// Directories under `root`, itself included, counting at most `cap`.
fn count_dirs(root: &Path, cap: u64) -> u64 {
    let mut stack = vec![root.to_path_buf()];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        count += 1;
        if count >= cap {
            break;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
    count
}

/// One check as `doctor --json` prints it (docs/cli-json.md).
fn check_json(c: &Check) -> Value {
    json!({"check": c.name, "status": c.level.label().to_lowercase(), "detail": c.detail, "fix": c.fix})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_models_dir_fails_naming_the_fetch_command() {
        let tmp = tempfile::tempdir().unwrap();
        let c = check_models(tmp.path());
        assert_eq!(c.level, Level::Fail);
        assert!(c.fix.as_deref().unwrap().contains("mindory models fetch"));
        assert_eq!(check_json(&c)["status"], "fail");
    }

    #[test]
    fn config_must_parse_and_defaults_apply_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        assert_eq!(check_config(&path).0.level, Level::Ok);
        std::fs::write(&path, "[llm]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n").unwrap();
        let (c, llm) = check_config(&path);
        assert_eq!(c.level, Level::Ok);
        assert_eq!(llm.unwrap().base_url, "http://127.0.0.1:9/v1");
        std::fs::write(&path, "[llm\nbackend = ").unwrap();
        assert_eq!(check_config(&path).0.level, Level::Fail);
    }
}
