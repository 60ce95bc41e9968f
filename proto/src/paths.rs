//! Where Mindory keeps its socket, its data and its model files by default.
//!
//! The rules follow the XDG base directory specification:
//! - socket: `$XDG_RUNTIME_DIR/mindory/mindoryd.sock`; when `XDG_RUNTIME_DIR`
//!   is unset, `$TMPDIR/mindory-$UID/mindoryd.sock` (`/tmp` when `TMPDIR` is
//!   unset). The directory is private to the user (mode 0700) either way.
//! - data: `$XDG_DATA_HOME/mindory` (usually `~/.local/share/mindory`).
//! - models: `<data>/models`.
//!
//! Every default can be overridden: `MINDORY_SOCKET`, `MINDORY_DATA_DIR`,
//! `MINDORY_MODELS_DIR`, or the matching command-line flags.

use std::path::PathBuf;

/// Environment variable that overrides the socket path on both sides.
pub const SOCKET_ENV: &str = "MINDORY_SOCKET";
/// Environment variable that overrides the data directory.
pub const DATA_DIR_ENV: &str = "MINDORY_DATA_DIR";
/// Environment variable that overrides the models directory.
pub const MODELS_DIR_ENV: &str = "MINDORY_MODELS_DIR";

/// The socket path used when neither `--socket` nor `MINDORY_SOCKET` is given.
pub fn default_socket_path() -> PathBuf {
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(runtime).join("mindory").join("mindoryd.sock");
    }
    let uid = nix::unistd::getuid();
    std::env::temp_dir().join(format!("mindory-{uid}")).join("mindoryd.sock")
}

/// The data directory used when neither `--data-dir` nor `MINDORY_DATA_DIR` is given.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| std::env::temp_dir().join("mindory-data"))
        .join("mindory")
}

/// The models directory used when neither `--models-dir` nor `MINDORY_MODELS_DIR` is given.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os(DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(default_data_dir)
        .join("models")
}
