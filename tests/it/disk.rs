//! The data directory's disk: full during ingest, and read-only at start.
//!
//! Each test mounts a small tmpfs in a mount namespace of its own (the test
//! runs in its own process, so the mount is its alone and vanishes with
//! it). That needs root, as CI has; elsewhere the test says it did not run.

use std::path::Path;
use std::time::Duration;

use nix::mount::{mount, MsFlags};

use crate::support::{cli, cli_json, corpus, eventually, fixture, TestDaemon};

/// Enters a private mount namespace and mounts a tmpfs of `size` at `dir`;
/// false when this process may not (not root).
fn private_tmpfs(dir: &Path, size: &str, flags: MsFlags) -> bool {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        eprintln!("NOT RUN: a private tmpfs needs root ({e}); CI runs this test as root");
        return false;
    }
    // Mounts made here must not propagate to the rest of the machine.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some(format!("size={size},mode=0700").as_str()),
    )
    .unwrap();
    true
}

/// A disk that fills up during ingest: the books that do not fit end their
/// `add --wait` with a reason that says the disk is full, `status` says so,
/// the daemon keeps serving what it had, and once there is space again the
/// same books are ingested without anyone asking; a restart then finds the
/// database whole.
#[test]
fn a_full_disk_defers_ingest_keeps_serving_and_resumes_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    if !private_tmpfs(&data, "3m", MsFlags::empty()) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limit = Duration::from_secs(120);
        // The data dir is ROOT/data, the tmpfs. Fast embeddings: the disk is
        // what this test is about.
        let start = || TestDaemon::start_with(tmp.path(), |c| c.embedding_model = "potion-base-8M".into());
        let daemon = start().await;
        let glass = tmp.path().join("looking-glass.md");
        std::fs::copy(fixture("looking-glass.md"), &glass).unwrap();
        let out = cli(&daemon.socket, &["add", "--wait", glass.to_str().unwrap()]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let query = "slithy toves gyre and gimble";
        let before = daemon.search(query, 1).await;
        assert!(before[0].path.ends_with("looking-glass.md"));

        // Three novels do not fit in what is left of 3 MB.
        let novels: Vec<String> = ["prideprejudice", "persuasion", "sensesensibility"]
            .iter()
            .map(|n| corpus(&format!("txt/{n}.txt")).to_string_lossy().into_owned())
            .collect();
        let mut args = vec!["add", "--wait"];
        args.extend(novels.iter().map(String::as_str));
        let out = tokio::time::timeout(limit, cli(&daemon.socket, &args))
            .await
            .expect("add --wait returns while the disk is full");
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("disk") && said.contains("full"), "{said}");
        let status = cli_json(&daemon.socket, &["status", "--json"]).await;
        let fault = status["storage_fault"].as_str().unwrap_or_default().to_string();
        assert!(fault.contains("full"), "status names the fault: {status}");
        // The books that did not fit wait as queued, each saying why, not
        // `indexing` as the store was left; `status` counts them as pending.
        // Polled: a retry may be running (then they are `indexing`) for
        // the moment it takes the disk to refuse it again.
        let waiting = eventually("the deferred novels show as queued, disk full", limit, || async {
            let books = cli_json(&daemon.socket, &["books", "--json"]).await;
            let novels: Vec<serde_json::Value> = books
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| !b["path"].as_str().unwrap().ends_with("looking-glass.md"))
                .cloned()
                .collect();
            let queued = novels.len() == 3
                && novels.iter().all(|b| {
                    let error = b["error"].as_str().unwrap_or_default();
                    b["status"] == "queued" && error.contains("full") && error.contains("again")
                });
            queued.then_some(novels)
        })
        .await;
        let status = cli_json(&daemon.socket, &["status", "--json"]).await;
        let depth = status["queue"]["pending"].as_u64().unwrap_or(0) + status["queue"]["running"].as_u64().unwrap_or(0);
        assert!(depth >= 3, "the waiting books are still in the queue: {status} {waiting:?}");
        // Still serving what was stored before, unchanged.
        let during = daemon.search(query, 1).await;
        assert_eq!((during[0].book_id, &during[0].text), (before[0].book_id, &before[0].text));

        // Space comes back: nobody asks again, and the novels get in.
        mount(None::<&str>, &data, None::<&str>, MsFlags::MS_REMOUNT, Some("size=64m,mode=0700")).unwrap();
        eventually("the novels ingested once there is space", limit, || async {
            let books = cli_json(&daemon.socket, &["books", "--json"]).await;
            let books = books.as_array().unwrap().clone();
            (books.len() == 4 && books.iter().all(|b| b["status"] == "ready")).then_some(())
        })
        .await;
        let hits = daemon.search("Mr. Darcy and Elizabeth", 1).await;
        assert!(hits[0].path.ends_with("prideprejudice.txt"), "{hits:?}");
        let status = cli_json(&daemon.socket, &["status", "--json"]).await;
        assert!(
            status["storage_fault"].is_null(),
            "the fault clears once a book is stored: {status}"
        );
        daemon.stop().await;

        // A restart finds everything, and the passage stored first as it was.
        let again = start().await;
        assert_eq!(again.books().await.len(), 4);
        let after = again.search(query, 1).await;
        assert_eq!(after[0].text, before[0].text);
        again.stop().await;
    });
}

/// A data directory on a read-only file system: `mindoryd` exits at once
/// with an error naming the directory, the cause and what to do.
#[test]
fn a_read_only_data_dir_stops_the_daemon_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    if !private_tmpfs(&data, "1m", MsFlags::MS_RDONLY) {
        return;
    }
    let socket = tmp.path().join("run").join("mindoryd.sock");
    let out = std::process::Command::new(crate::support::daemon_path())
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(&data)
        .arg("--models-dir")
        .arg(crate::support::models_dir())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(data.to_str().unwrap()) && said.contains("Read-only file system") && said.contains("--data-dir"),
        "{said}"
    );
    assert!(!socket.exists(), "no socket is left behind");
}
