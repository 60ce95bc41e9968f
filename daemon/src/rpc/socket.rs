//! The socket file: a private directory, stale-file recovery, refusal when
//! another daemon is live, peer-uid checks, and removal at shutdown.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::net::{UnixListener, UnixStream};

use super::ServeError;

fn socket_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Socket {
        path: path.to_path_buf(),
        source,
    }
}

/// Prepares the socket path: creates its directory with mode 0700, refuses
/// if a daemon answers there, and removes a stale socket file.
pub fn claim(path: &Path) -> Result<(), ServeError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(socket_err(path))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(socket_err(path))?;
    } else {
        // Tighten a directory we own (e.g. our default dir made by an older
        // run); never touch someone else's directory such as /tmp.
        let meta = std::fs::metadata(dir).map_err(socket_err(path))?;
        let uid = nix::unistd::getuid().as_raw();
        let is_default_dir = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("mindory"));
        if meta.uid() == uid && is_default_dir && meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(socket_err(path))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only a socket can be stale; anything else there is someone's file.
        if !meta.file_type().is_socket() {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
                kind: crate::files::file_kind(&meta.file_type()),
            });
        }
        let stale = match std::os::unix::net::UnixStream::connect(path) {
            Ok(stream) if listener_alive(&stream) => return Err(ServeError::AlreadyRunning(path.to_path_buf())),
            // A connection was queued, but the daemon that listened is
            // gone: a process it forked (a parse worker between fork and
            // exec when it crashed) still holds the socket, and nobody will
            // ever accept.
            Ok(_) => "removing the socket of a daemon that is gone",
            Err(_) => "removing a stale socket file",
        };
        tracing::info!(path = %path.display(), "{stale}");
        std::fs::remove_file(path).map_err(socket_err(path))?;
    }
    Ok(())
}

/// Whether the process that listens behind `stream` still runs. The peer
/// credentials of a connection not yet accepted are the listener's, taken
/// when it called `listen`; when they cannot be read the listener is taken
/// to be alive, so a live daemon is never displaced.
fn listener_alive(stream: &std::os::unix::net::UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) if cred.pid() > 0 => {
            let exists = !matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(cred.pid()), None),
                Err(nix::errno::Errno::ESRCH)
            );
            // A daemon that died before its parent reaped it is a zombie:
            // it still has a pid but will never accept again.
            exists && !is_zombie(cred.pid())
        }
        _ => true,
    }
}

/// Whether `pid` has exited and waits to be reaped, from the state letter
/// in `/proc/PID/stat` (after the command name, which is in parentheses
/// and may itself hold spaces and parentheses). Unreadable counts as not.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .unwrap_or(false)
}

/// Binds the socket with mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    // A stale file may have appeared since `claim` (another daemon that died).
    if std::fs::symlink_metadata(path).is_ok() {
        claim(path)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(socket_err(path))?;
    Ok(listener)
}

/// Whether the peer runs as our own user (SO_PEERCRED). Root's clients are
/// refused too unless the daemon itself runs as root.
pub fn peer_allowed(stream: &UnixStream) -> bool {
    let uid = nix::unistd::getuid().as_raw();
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == uid => true,
        Ok(cred) => {
            tracing::warn!(peer_uid = cred.uid(), "refusing a connection from another user");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "refusing a connection whose credentials cannot be read");
            false
        }
    }
}

/// Removes the socket file at shutdown, if a socket is still what is there.
pub fn release(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_socket()) {
        tracing::warn!(path = %path.display(), "the socket path holds something else now; leaving it");
        return;
    }
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket whose listener lives refuses the claim; one whose listener
    /// has exited while a process it forked still holds the socket (a
    /// daemon that died mid-spawn) is stale, though it takes connections.
    #[test]
    fn a_socket_is_live_only_while_its_listener_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mindoryd.sock");

        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(
            matches!(claim(&path), Err(ServeError::AlreadyRunning(_))),
            "our own listener is live"
        );
        assert!(path.exists(), "a live daemon's socket is kept");
        drop(live);

        std::fs::remove_file(&path).unwrap();
        let (mut holder, orphan) = listener_that_forks_and_exits(&path);
        assert!(holder.wait().unwrap().success(), "the listener's process is gone");
        let held = std::os::unix::net::UnixStream::connect(&path).is_ok();
        let claimed = claim(&path);
        let _ = nix::sys::signal::kill(orphan, nix::sys::signal::Signal::SIGKILL);
        assert!(held, "the forked child keeps the socket taking connections");
        assert!(claimed.is_ok(), "{claimed:?}");
        assert!(!path.exists(), "the stale socket is removed");

        // The same with the listener not yet reaped: a zombie has a pid
        // that signals reach, yet it will never accept.
        let (mut holder, orphan) = listener_that_forks_and_exits(&path);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !is_zombie(holder.id() as i32) {
            assert!(std::time::Instant::now() < deadline, "the listener exits");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let claimed = claim(&path);
        let _ = nix::sys::signal::kill(orphan, nix::sys::signal::Signal::SIGKILL);
        holder.wait().unwrap();
        assert!(claimed.is_ok(), "a zombie listener is not live: {claimed:?}");
        assert!(!path.exists(), "the stale socket is removed");
    }

    /// Starts a process that listens on `path`, forks a child that keeps
    /// the socket open for a minute, and exits; returns it and the child.
    fn listener_that_forks_and_exits(path: &Path) -> (std::process::Child, nix::unistd::Pid) {
        let mut holder = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import os, socket, sys, time\n\
                 s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)\n\
                 pid = os.fork()\n\
                 if pid == 0:\n    os.close(1); time.sleep(60); os._exit(0)\n\
                 print(pid, flush=True)\n\
                 os._exit(0)\n",
            )
            .arg(path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
        let orphan = nix::unistd::Pid::from_raw(line.trim().parse().expect("the forked child's pid"));
        (holder, orphan)
    }
}
