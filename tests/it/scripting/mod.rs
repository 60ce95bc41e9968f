//! Scripting over gRPC from another language: the documented Python example
//! (`examples/python/mindory_client.py`, stock grpcio) adds a book and follows
//! its events, lists the library, searches and streams an answer from a real
//! daemon, so the example cannot rot. [`discovery`] covers reflection and
//! health, [`bad_input`] what a raw gRPC client can send that no Mindory
//! client would.

mod bad_input;
mod discovery;

use std::path::{Path, PathBuf};

use mindory_daemon::llm::fake::{Behaviour, FakeLlm};

use crate::support::{self, fixture, TestDaemon};

/// The Python with grpcio, grpcio-tools, grpcio-reflection and
/// grpcio-health-checking that `scripts/test` installs.
fn grpc_python() -> String {
    std::env::var("MINDORY_GRPC_PYTHON").unwrap_or_else(|_| {
        panic!("MINDORY_GRPC_PYTHON is not set: run the tests through scripts/test, which installs grpcio with scripts/grpc-python")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_example_scripts_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(vec![Behaviour::stream(&["A senator must be", " thirty years old [1]."])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
    })
    .await;
    let python = grpc_python();
    let work = tmp.path().join("py");
    python_stubs(&python, &work).await;
    std::fs::copy(repo().join("examples/python/mindory_client.py"), work.join("mindory_client.py")).unwrap();

    let constitution = fixture("constitution.txt");
    let question = "How old must a senator be?";
    let stdout = run_script(
        &python,
        &work.join("mindory_client.py"),
        &daemon.socket,
        &work,
        None,
        &[
            "--add".as_ref(),
            constitution.as_os_str(),
            "--search".as_ref(),
            question.as_ref(),
            "--ask".as_ref(),
            question.as_ref(),
        ],
    )
    .await;
    for expected in [
        "connected: mindoryd",
        "ready: constitution (40 passages)",
        "#1 constitution — 40 passages (BOOK_STATUS_READY)",
        "1. constitution — Section. 3",
        "A senator must be thirty years old [1].",
        "[1] constitution — Section. 3",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert_eq!(fake.requests().len(), 1, "one answer streamed");
    daemon.stop().await;
}

/// The repository's root.
/// Runs a Python script against the test daemon's `socket` (never the
/// user's `MINDORY_SOCKET`) from `cwd`, with `pythonpath` or none, and
/// `args` after `--socket`; asserts that it succeeded and returns what it
/// printed.
async fn run_script(
    python: &str,
    script: &Path,
    socket: &Path,
    cwd: &Path,
    pythonpath: Option<&Path>,
    args: &[&std::ffi::OsStr],
) -> String {
    let mut command = tokio::process::Command::new(python);
    command
        .arg(script)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .current_dir(cwd)
        .env_remove("MINDORY_SOCKET");
    match pythonpath {
        Some(dir) => command.env("PYTHONPATH", dir),
        None => command.env_remove("PYTHONPATH"),
    };
    let out = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Generates the Python stubs (`mindory_pb2`, `mindory_pb2_grpc`) from the
/// proto into `work`, as the example's setup says.
async fn python_stubs(python: &str, work: &Path) {
    std::fs::create_dir_all(work).unwrap();
    let out = tokio::process::Command::new(python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo().join("proto"))
        .arg(format!("--python_out={}", work.display()))
        .arg(format!("--grpc_python_out={}", work.display()))
        .arg(repo().join("proto/mindory.proto"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "protoc: {}", String::from_utf8_lossy(&out.stderr));
}
