//! Starting `mindoryd` from the "daemon not running" screen: the binary next
//! to the app's own executable first (an install puts them side by side),
//! then the one on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Where the daemon binary is, if anywhere.
pub fn find_daemon() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("mindoryd")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("mindoryd")).find(|p| p.is_file()))
}

/// Why the daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("mindoryd was not found next to the app or on PATH; install it or start it yourself")]
    NotFound,
    #[error("could not start {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
}

/// Starts the daemon detached, listening on `socket`; returns its path. Its
/// output goes to a log file beside the socket so that a failure can be read.
pub fn start_daemon(socket: &Path) -> Result<PathBuf, LaunchError> {
    let path = find_daemon().ok_or(LaunchError::NotFound)?;
    let log = socket.with_extension("log");
    let out = std::fs::File::create(&log).map(Stdio::from).unwrap_or_else(|_| Stdio::null());
    std::process::Command::new(&path)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            path: path.clone(),
            source,
        })?;
    tracing::info!(daemon = %path.display(), socket = %socket.display(), log = %log.display(), "started mindoryd");
    Ok(path)
}
