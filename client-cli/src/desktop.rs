//! Living on a desktop: `mindory service` (a systemd user unit that starts
//! `mindoryd` at login), `mindory completions` (shell completion scripts)
//! and `mindory man` (man pages), all generated from the CLI's own clap
//! definition or from the paths the user chose, so they never drift from
//! the binary that wrote them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use mindory_proto::pb::{self, daemon_client::DaemonClient};
use mindory_proto::PROTOCOL_VERSION;

use crate::{Cli, CompletionShell, ServiceAction};

/// The unit's file name; `systemctl --user … mindoryd.service` names it.
pub const UNIT_NAME: &str = "mindoryd.service";

/// `$XDG_CONFIG_HOME/systemd/user/mindoryd.service` (`~/.config/…` when
/// `XDG_CONFIG_HOME` is unset), where systemd looks for a user's own units.
pub fn unit_path() -> Result<PathBuf> {
    let config = dirs::config_dir().context("cannot find your config directory: set HOME or XDG_CONFIG_HOME")?;
    Ok(config.join("systemd").join("user").join(UNIT_NAME))
}

/// Runs `mindory service …`. `socket_arg` is the `--socket` the user gave
/// (flag or `MINDORY_SOCKET`), which the unit passes on; `socket` is where
/// this client looks for the daemon either way.
pub async fn service(action: ServiceAction, socket_arg: Option<&Path>, socket: &Path) -> Result<ExitCode> {
    match action {
        ServiceAction::Install {
            print,
            no_systemctl,
            daemon,
            data_dir,
            models_dir,
        } => {
            let daemon = match daemon {
                Some(path) => {
                    let path = std::path::absolute(&path).unwrap_or(path);
                    if !is_executable(&path) {
                        bail!("{} is not an executable file; pass --daemon the path of mindoryd", path.display());
                    }
                    path
                }
                None => find_mindoryd()?,
            };
            let mut args = Vec::new();
            // Only what the user chose is written into the unit: everything
            // else stays mindoryd's own default, which follows the login
            // session's XDG directories.
            for (flag, value) in [
                ("--socket", socket_arg),
                ("--data-dir", data_dir.as_deref()),
                ("--models-dir", models_dir.as_deref()),
            ] {
                if let Some(value) = value {
                    args.push(flag.to_string());
                    args.push(
                        std::path::absolute(value)
                            .unwrap_or_else(|_| value.to_path_buf())
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
            let unit = unit_text(&daemon, &args);
            if print {
                print!("{unit}");
                return Ok(ExitCode::SUCCESS);
            }
            install(&unit, no_systemctl, socket).await
        }
        ServiceAction::Uninstall { no_systemctl } => uninstall(no_systemctl),
        ServiceAction::Status { no_systemctl } => status(no_systemctl, socket).await,
    }
}

/// The unit file. `Restart=on-failure` brings the daemon back after a crash
/// but not after `mindory shutdown` (a clean exit), so the user can stop it.
pub fn unit_text(daemon: &Path, args: &[String]) -> String {
    let mut exec = quote_exec_arg(&daemon.to_string_lossy());
    for arg in args {
        exec.push(' ');
        exec.push_str(&quote_exec_arg(arg));
    }
    format!(
        "# Written by `mindory service install`; `mindory service uninstall` removes it.\n\
         [Unit]\n\
         Description=Mindory daemon: search and read your books by meaning\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}

/// One word of an `ExecStart=` line: `%` and `$` are systemd specifiers and
/// variables, so they are doubled; a word with spaces, quotes or
/// backslashes is double-quoted with C-style escapes.
fn quote_exec_arg(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    if escaped.is_empty() || escaped.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';')) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `mindoryd` next to the running `mindory` (both come from one build or
/// one package), else the first on `PATH`; always an absolute path, since
/// systemd does not search the user's `PATH`.
pub fn find_mindoryd() -> Result<PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let beside = dir.join("mindoryd");
        if is_executable(&beside) {
            return Ok(beside);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("mindoryd");
            if is_executable(&candidate) {
                return Ok(std::path::absolute(&candidate).unwrap_or(candidate));
            }
        }
    }
    bail!("cannot find mindoryd next to mindory or on PATH; install it (cargo install --path daemon) or pass --daemon PATH")
}

/// Whether `systemctl --user` can reach a user manager: systemctl is
/// installed and the login session has a user bus (containers, ssh
/// sessions without lingering and non-systemd systems have none).
fn systemctl_usable() -> bool {
    std::process::Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `systemctl --user ARGS`, returning its trimmed stdout, or why it failed.
fn systemctl(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if stderr.is_empty() { stdout } else { stderr })
    }
}

/// What to run by hand when this command cannot run systemctl itself.
fn manual_steps(out: &mut impl Write, verb: &str, steps: &[&str]) -> std::io::Result<()> {
    writeln!(out, "systemctl --user is not usable here; to {verb}, run:")?;
    for step in steps {
        writeln!(out, "  {step}")?;
    }
    writeln!(
        out,
        "without systemd, start mindoryd from your shell profile instead (see README, \"Living on a desktop\")"
    )
}

async fn install(unit: &str, no_systemctl: bool, socket: &Path) -> Result<ExitCode> {
    let path = unit_path()?;
    let dir = path.parent().expect("the unit path has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}; check its permissions", dir.display()))?;
    // A temp file in the same directory renamed over the unit: systemd (or
    // a reload racing this command) never reads a half-written unit.
    let mut tmp = tempfile::Builder::new()
        .prefix(".mindoryd.service.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}; check its permissions", dir.display()))?;
    tmp.write_all(unit.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write the unit in {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).context("cannot set the unit's permissions")?;
    }
    tmp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the unit into place at {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "wrote {}", path.display())?;
    let steps = ["systemctl --user daemon-reload", "systemctl --user enable --now mindoryd.service"];
    if no_systemctl || !systemctl_usable() {
        manual_steps(&mut out, "start mindoryd now and at every login", &steps)?;
        return Ok(ExitCode::SUCCESS);
    }
    // A daemon started by hand holds the socket: the service's own daemon
    // would refuse to start and systemd would keep restarting it.
    if systemctl(&["is-active", UNIT_NAME]).is_err() && daemon_answers(socket).await.is_ok() {
        writeln!(
            out,
            "note: a mindoryd already answers on {}; stop it with `mindory shutdown`, then run `systemctl --user restart mindoryd.service`",
            socket.display()
        )?;
    }
    systemctl(&["daemon-reload"])
        .map_err(anyhow::Error::msg)
        .context("`systemctl --user daemon-reload` failed; run it by hand")?;
    systemctl(&["enable", "--now", UNIT_NAME])
        .map_err(anyhow::Error::msg)
        .context("`systemctl --user enable --now mindoryd.service` failed; `journalctl --user -u mindoryd` says why")?;
    writeln!(out, "enabled and started {UNIT_NAME}: mindoryd runs now and at every login")?;
    writeln!(out, "its log: journalctl --user -u mindoryd")?;
    Ok(ExitCode::SUCCESS)
}

fn uninstall(no_systemctl: bool) -> Result<ExitCode> {
    let path = unit_path()?;
    let mut out = std::io::stdout().lock();
    let usable = !no_systemctl && systemctl_usable();
    if usable {
        // Not enabled or not loaded is fine: the goal is that it is not.
        if let Err(e) = systemctl(&["disable", "--now", UNIT_NAME]) {
            writeln!(out, "note: `systemctl --user disable --now {UNIT_NAME}`: {e}")?;
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => writeln!(out, "removed {}", path.display())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => writeln!(out, "no unit at {}; nothing to remove", path.display())?,
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}; remove it by hand", path.display())),
    }
    if usable {
        systemctl(&["daemon-reload"])
            .map_err(anyhow::Error::msg)
            .context("`systemctl --user daemon-reload` failed; run it by hand")?;
    } else {
        manual_steps(
            &mut out,
            "stop mindoryd and forget the unit",
            &["systemctl --user disable --now mindoryd.service", "systemctl --user daemon-reload"],
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects and says hello, within a short timeout: "mindoryd VERSION
/// (protocol N)" or why not.
pub async fn daemon_answers(socket: &Path) -> Result<String, String> {
    let hello = async {
        let channel = mindory_proto::connect(socket).await.map_err(|e| e.to_string())?;
        DaemonClient::new(channel)
            .hello(pb::HelloRequest {
                client_protocol_version: PROTOCOL_VERSION,
                client_name: "mindory-cli".into(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.message().to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), hello).await {
        Ok(Ok(h)) => Ok(format!("mindoryd {} (protocol {})", h.daemon_version, h.protocol_version)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

async fn status(no_systemctl: bool, socket: &Path) -> Result<ExitCode> {
    let path = unit_path()?;
    let mut out = std::io::stdout().lock();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let exec = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap_or("(no ExecStart)");
            writeln!(out, "unit       {} installed: {exec}", path.display())?;
        }
        Err(_) => writeln!(
            out,
            "unit       not installed ({}); `mindory service install` writes it",
            path.display()
        )?,
    }
    if no_systemctl {
        writeln!(out, "systemd    not asked (--no-systemctl)")?;
    } else if !systemctl_usable() {
        writeln!(
            out,
            "systemd    systemctl --user is not usable here (no systemd or no user session bus)"
        )?;
    } else {
        // is-active and is-enabled exit non-zero for "inactive" and
        // "disabled" but still print the state.
        let state = |args: &[&str]| match systemctl(args) {
            Ok(s) | Err(s) => s,
        };
        let active = state(&["is-active", UNIT_NAME]);
        let enabled = state(&["is-enabled", UNIT_NAME]);
        writeln!(out, "systemd    {active}, {enabled}")?;
    }
    match daemon_answers(socket).await {
        Ok(who) => writeln!(out, "daemon     {who} answers on {}", socket.display())?,
        Err(e) => writeln!(out, "daemon     does not answer on {}: {e}", socket.display())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `mindory completions SHELL`.
pub fn completions(shell: CompletionShell) -> Result<ExitCode> {
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "mindory", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `mindory man [--out DIR]`: with a directory, `mindory.1` and one page per
/// subcommand at every depth (`mindory-folders-add.1`, …); without, the
/// main page on stdout.
pub fn man(out_dir: Option<&Path>) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    // Building propagates global flags (--socket, -v) into every subcommand.
    cmd.build();
    let Some(dir) = out_dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}; choose another --out", dir.display()))?;
    let mut written = Vec::new();
    write_pages(&cmd, "mindory", dir, &mut written)?;
    println!("wrote {} man pages into {}", written.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    // clap takes owned names only with its `string` feature; leaking a few
    // short names in a process that exits right after is cheaper than
    // rebuilding clap for every crate of the workspace.
    let page = cmd
        .clone()
        .name(&*Box::leak(name.to_string().into_boxed_str()))
        .bin_name(name.replace('-', " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
