//! Socket rules: private permissions, stale files replaced, a live daemon
//! not displaced, a file that is not a socket never deleted, other users
//! refused, and a clear message when no daemon runs.

use std::os::unix::fs::PermissionsExt;

use crate::support::{cli, cli_path, start_mindoryd, TestDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn socket_permissions_stale_file_and_second_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("run").join("mindoryd.sock");
    let data = tmp.path().join("data");

    // The daemon makes a private directory and a private socket.
    let daemon = TestDaemon::start_at(tmp.path().to_path_buf(), socket.clone(), data.clone()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    let dir_mode = std::fs::metadata(socket.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "socket directory mode");
    daemon.stop().await;

    // A stale socket file (its daemon died) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let daemon = TestDaemon::start_at(tmp.path().to_path_buf(), socket.clone(), data.clone()).await;
    let out = cli(&socket, &["status"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A second daemon on the live socket refuses to start and leaves it alone.
    let (_stop, second) = TestDaemon::spawn(&socket, &tmp.path().join("data2"));
    let err = second.await.unwrap().expect_err("second daemon must refuse");
    assert!(err.to_string().contains("already listening"), "{err}");
    assert!(cli(&socket, &["status"]).await.status.success(), "the first daemon still serves");

    // Another user is refused even when file permissions would let it in.
    if nix::unistd::getuid().is_root() {
        std::fs::set_permissions(socket.parent().unwrap(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cli_bin = cli_path();
        let socket_arg = socket.clone();
        let out = tokio::task::spawn_blocking(move || {
            use std::os::unix::process::CommandExt;
            std::process::Command::new(cli_bin)
                .arg("--socket")
                .arg(socket_arg)
                .arg("status")
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            !out.status.success(),
            "a different uid must be refused: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(cli(&socket, &["status"]).await.status.success());
    }
    daemon.stop().await;

    // No daemon: the CLI says how to start one and exits 1.
    let out = cli(&socket, &["status"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mindoryd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Usage errors exit 2.
    assert_eq!(cli(&socket, &["search"]).await.status.code(), Some(2));

    // A --socket that names someone's regular file: refused, the file kept.
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "my notes").unwrap();
    let (_stop, third) = TestDaemon::spawn(&notes, &tmp.path().join("data3"));
    let err = third.await.unwrap().expect_err("a regular file is not a socket");
    assert!(err.to_string().contains("is a regular file, not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes", "the file is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mindoryd_binary_stops_cleanly_on_sigterm_and_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    // A data dir an older version left world-readable is made private.
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, socket) = start_mindoryd(tmp.path()).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data dir");
    assert_eq!(mode(&data.join("mindory.redb")), 0o600, "database");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(!socket.exists(), "the socket file is removed");

    // `mindory shutdown` takes the same ordered path.
    let (mut child, socket) = start_mindoryd(tmp.path()).await;
    let out = cli(&socket, &["shutdown"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status after Shutdown: {status}");
    assert!(!socket.exists(), "the socket file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_models_name_the_fetch_command() {
    let tmp = tempfile::tempdir().unwrap();
    let config = mindory_daemon::Config::new(tmp.path().join("data"), tmp.path().join("s.sock"), tmp.path().join("no-models"));
    let err = mindory_daemon::run(config, std::future::pending())
        .await
        .expect_err("no models, no daemon");
    assert!(err.to_string().contains("mindory models fetch"), "{err}");
    assert!(!tmp.path().join("s.sock").exists());
}
