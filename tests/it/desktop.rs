//! Living on a desktop: shell completions, man pages, the systemd user
//! unit (written into a temp config dir, never the real user's), `doctor`
//! against a live daemon and against none, and logs without colour codes
//! when stderr is not a terminal.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{cli, cli_path, daemon_path, eventually, mindoryd_command, models_dir, TestDaemon};

/// Runs `mindory ARGS` with HOME and XDG_CONFIG_HOME in `home`, no
/// inherited socket or data settings, and systemctl switched off.
async fn cli_at_home(home: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(cli_path())
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("MINDORY_NO_SYSTEMCTL", "1")
        .env_remove("MINDORY_SOCKET")
        .env_remove("MINDORY_DATA_DIR")
        .env_remove("MINDORY_MODELS_DIR")
        .output()
        .await
        .expect("run mindory")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_completions_and_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = cli_at_home(tmp.path(), &["completions", shell]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "completions {shell}: {stderr}");
        for sub in ["search", "doctor", "service", "completions"] {
            assert!(stdout.contains(sub), "{shell} completions do not mention `{sub}`");
        }
    }
    assert_eq!(cli_at_home(tmp.path(), &["completions", "tcsh"]).await.status.code(), Some(2));

    // Without --out: the main page on stdout.
    let out = cli_at_home(tmp.path(), &["man"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(".TH mindory 1"), "{stdout}");

    let dir = tmp.path().join("man1");
    let out = cli_at_home(tmp.path(), &["man", "--out", dir.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    let main = std::fs::read_to_string(dir.join("mindory.1")).unwrap();
    assert!(main.contains(".TH mindory 1"), "{main}");
    for sub in ["search", "doctor", "service", "man", "completions"] {
        assert!(main.contains(sub), "mindory.1 does not list `{sub}`");
    }
    for page in [
        "mindory-search.1",
        "mindory-doctor.1",
        "mindory-service-install.1",
        "mindory-folders-add.1",
    ] {
        let body = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.trim_end_matches(".1");
        assert!(body.contains(&format!(".TH {name} 1")), "{page}: {body}");
    }
    // groff renders them without complaint, where it is installed.
    if which("groff") {
        for page in ["mindory.1", "mindory-service-install.1"] {
            let out = std::process::Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(dir.join(page))
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "groff on {page}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = std::process::Command::new("groff")
            .args(["-man", "-Tascii"])
            .arg(dir.join("mindory-service-install.1"))
            .output()
            .unwrap();
        // grotty emboldens by overstriking ("X\bX"): drop each struck-over character.
        let mut rendered = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                rendered.pop();
            } else {
                rendered.push(c);
            }
        }
        assert!(rendered.contains("--no-systemctl") && rendered.contains("SYNOPSIS"), "{rendered}");
    } else {
        println!("note: groff is not installed; the man pages were checked as text only");
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_service_unit_install_status_uninstall() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let unit = home.join("config/systemd/user/mindoryd.service");
    let daemon = daemon_path().canonicalize().unwrap();

    // --print writes nothing.
    let out = cli_at_home(home, &["service", "install", "--print"]).await;
    let (printed, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(printed.contains(&format!("ExecStart={}\n", daemon.display())), "{printed}");
    assert!(!unit.exists(), "--print must not install");

    // The unit passes on only what the user chose, quoted for systemd.
    let data = home.join("my books data");
    let out = cli_at_home(home, &["service", "install", "--data-dir", data.to_str().unwrap()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&unit.display().to_string()), "{stdout}");
    assert!(
        stdout.contains("systemctl --user enable --now mindoryd.service"),
        "says what to run: {stdout}"
    );
    let body = std::fs::read_to_string(&unit).unwrap();
    assert!(
        body.contains(&format!("ExecStart={} --data-dir \"{}\"\n", daemon.display(), data.display())),
        "{body}"
    );
    assert!(body.contains("\nRestart=on-failure\n"), "{body}");
    assert!(body.contains("\nWantedBy=default.target\n"), "{body}");
    let leftovers: Vec<_> = std::fs::read_dir(unit.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["mindoryd.service"], "no temp file is left behind");

    if which("systemd-analyze") {
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A bad setting is only a warning naming the file, with exit code 0.
        assert!(
            out.status.success() && !stderr.contains("mindoryd.service"),
            "systemd-analyze verify rejects the unit:\n{stderr}\n{body}"
        );
    } else {
        println!("note: systemd-analyze is not installed; the unit was checked as text only");
    }

    let out = cli_at_home(home, &["service", "status", "--no-systemctl"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("installed") && stdout.contains(&daemon.display().to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("does not answer"), "no daemon runs: {stdout}");

    let out = cli_at_home(home, &["service", "uninstall"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(!unit.exists(), "uninstall removes the unit");
    let out = cli_at_home(home, &["service", "status", "--no-systemctl"]).await;
    assert!(text(&out).0.contains("not installed"), "{}", text(&out).0);

    // A mindoryd that does not exist is refused before anything is written.
    let out = cli_at_home(home, &["service", "install", "--daemon", "/nonexistent/mindoryd"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--daemon"), "{}", text(&out).1);
    assert!(!unit.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_doctor_reports_a_live_daemon_and_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(tmp.path()).await;
    let models = models_dir();
    let config = tmp.path().join("config.toml");
    let args = |json: bool| {
        let mut a = vec![
            "doctor".to_string(),
            "--models-dir".into(),
            models.to_string_lossy().into_owned(),
            "--config".into(),
            config.to_string_lossy().into_owned(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    };
    let run = |socket: &Path, json: bool| {
        let args = args(json);
        let socket = socket.to_path_buf();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&socket, &args).await
        }
    };

    let out = run(&daemon.socket, false).await;
    let (stdout, stderr) = text(&out);
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"))
            .to_string()
    };
    for name in ["models", "socket", "daemon", "config"] {
        assert!(line(name).starts_with("OK "), "{}\n{stdout}", line(name));
    }
    assert!(line("models").contains("SHA-256"), "{stdout}");
    for name in ["llm", "disk", "inotify"] {
        assert!(!line(name).starts_with("FAIL"), "{}", line(name));
    }
    assert!(out.status.success(), "doctor failed against a healthy daemon:\n{stdout}\n{stderr}");

    let json: serde_json::Value = serde_json::from_slice(&run(&daemon.socket, true).await.stdout).unwrap();
    assert_eq!(json["ok"], true, "{json}");
    let socket_check = json["checks"].as_array().unwrap().iter().find(|c| c["check"] == "socket").unwrap();
    assert_eq!(socket_check["status"], "ok", "{json}");
    assert!(socket_check["fix"].is_null());

    // A broken config file is named, with what to do.
    std::fs::write(&config, "[llm\nbackend =").unwrap();
    let out = run(&daemon.socket, false).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out).0;
    assert!(stdout.contains("FAIL  config") && stdout.contains("not valid TOML"), "{stdout}");
    std::fs::remove_file(&config).unwrap();

    // An OpenAI-compatible endpoint that does not answer fails the llm check.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!("[llm]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n"),
    )
    .unwrap();
    let no_daemon = tmp.path().join("elsewhere").join("mindoryd.sock");
    let out = run(&no_daemon, false).await;
    let stdout = text(&out).0;
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  socket") && stdout.contains(&no_daemon.display().to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  daemon"), "{stdout}");
    assert!(
        stdout.contains("FAIL  llm") && stdout.contains(&format!("127.0.0.1:{port}")),
        "{stdout}"
    );

    // A stale socket file with nothing behind it: the daemon line says so.
    std::fs::create_dir_all(no_daemon.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&no_daemon).unwrap());
    let json: serde_json::Value = serde_json::from_slice(&run(&no_daemon, true).await.stdout).unwrap();
    assert_eq!(json["ok"], false);
    let daemon_check = json["checks"].as_array().unwrap().iter().find(|c| c["check"] == "daemon").unwrap();
    assert_eq!(daemon_check["status"], "fail", "{json}");
    assert!(daemon_check["fix"].as_str().unwrap().contains("mindoryd"), "{json}");
    daemon.stop().await;
}

/// Runs the real `mindoryd` with stderr to a pipe (as a service manager
/// runs it) and `env`, waits until it answers, stops it with `mindory
/// shutdown` and returns everything it logged.
async fn mindoryd_log_through_a_pipe(root: &Path, env: &[(&str, &str)]) -> String {
    let (mut command, socket) = mindoryd_command(root, env);
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().expect("start mindoryd");
    // Drain the pipe while waiting, so a chatty start cannot block on it.
    let mut stderr = child.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut buf).await.unwrap();
        buf
    });
    eventually("mindoryd answers", Duration::from_secs(120), || {
        let socket = socket.clone();
        async move { cli(&socket, &["status"]).await.status.success().then_some(()) }
    })
    .await;
    assert!(cli(&socket, &["shutdown"]).await.status.success());
    assert!(child.wait().await.unwrap().success());
    String::from_utf8(reader.await.unwrap()).expect("the log is UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_logs_to_a_pipe_have_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = mindoryd_log_through_a_pipe(&tmp.path().join("plain"), &[]).await;
    assert!(!log.contains('\u{1b}'), "ESC in the log:\n{log}");
    let first = log
        .lines()
        .find(|l| l.contains("INFO"))
        .unwrap_or_else(|| panic!("no INFO line:\n{log}"));
    assert!(
        !first.starts_with("INFO"),
        "outside systemd a line starts with its timestamp: {first}"
    );

    // Under systemd (JOURNAL_STREAM set) lines carry no timestamp: journald
    // stamps each line itself.
    let log = mindoryd_log_through_a_pipe(&tmp.path().join("journal"), &[("JOURNAL_STREAM", "8:12345")]).await;
    assert!(!log.contains('\u{1b}'), "ESC in the log:\n{log}");
    let first = log
        .lines()
        .find(|l| l.contains("INFO"))
        .unwrap_or_else(|| panic!("no INFO line:\n{log}"));
    assert!(first.trim_start().starts_with("INFO"), "a timestamp precedes the level: {first}");

    // The CLI's own -vv output to a pipe is plain too.
    let out = cli(&tmp.path().join("none.sock"), &["-vv", "status"]).await;
    assert!(!out.stderr.contains(&0x1b), "{}", String::from_utf8_lossy(&out.stderr));
}
