//! Crashes at named points. `mindoryd` built with `test-hooks` aborts where
//! `MINDORY_CRASH_AT` says: after a job's attempt is recorded, between
//! embedding batches, after a book's content is committed but before the
//! index has it, during an index save, in the middle of a removal and of a
//! move. After each crash a plain restart must end with every file of the
//! library ready exactly once, nothing else stored, and both indexes
//! (vectors and keywords) holding exactly the stored passages.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{cli, cli_json, corpus, eventually, spawn_mindoryd, start_mindoryd};

/// The ten smallest State of the Union speeches (about a dozen passages
/// each), so every crash costs seconds of embedding, not minutes.
fn small_speeches() -> Vec<PathBuf> {
    let mut all: Vec<(u64, PathBuf)> = std::fs::read_dir(corpus("sotu"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (std::fs::metadata(&path).unwrap().len(), path)
        })
        .collect();
    all.sort();
    all.into_iter().take(10).map(|(_, p)| p).collect()
}

fn copy(src: &Path, lib: &Path) {
    std::fs::copy(src, lib.join(src.file_name().unwrap())).unwrap();
}

/// Starts `mindoryd` armed to abort at `point`, runs `action` against its
/// socket (it may fail: the daemon can die under it), and waits for the abort.
async fn crash_at<F, Fut>(root: &Path, point: &str, action: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut child, socket) = spawn_mindoryd(root, &[("MINDORY_CRASH_AT", point)]);
    action(socket).await;
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .unwrap_or_else(|_| panic!("mindoryd did not reach crash point {point} within 300 s"))
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGABRT as i32),
        "{point}: mindoryd ended with {status}"
    );
    let log = std::fs::read_to_string(root.join("mindoryd.log")).unwrap();
    assert!(
        log.contains(&format!("crash point {}", point.split(':').next().unwrap())),
        "{point}"
    );
    assert!(!log.contains('\x1b'), "a log written to a file has no colour codes: {log}");
}

/// Restarts `mindoryd` normally and checks that the store and the index
/// hold exactly the files now in `lib`, each once and ready.
async fn recovers(root: &Path, lib: &Path, point: &str) {
    let (mut child, socket) = start_mindoryd(root).await;
    let mut expected: Vec<String> = std::fs::read_dir(lib)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    let books = eventually(&format!("after {point}: every file ready once"), Duration::from_secs(300), || {
        let socket = socket.clone();
        let expected = expected.clone();
        async move {
            let books = cli_json(&socket, &["books", "--json"]).await;
            let books = books.as_array().unwrap().clone();
            let mut paths: Vec<String> = books.iter().map(|b| b["path"].as_str().unwrap().to_string()).collect();
            paths.sort();
            (paths == expected && books.iter().all(|b| b["status"] == "ready")).then_some(books)
        }
    })
    .await;
    let passages: u64 = books.iter().map(|b| b["chunks"].as_u64().unwrap()).sum();
    assert!(books.iter().all(|b| b["chunks"].as_u64().unwrap() > 0), "{point}: {books:?}");
    eventually(&format!("after {point}: index = store"), Duration::from_secs(60), || {
        let socket = socket.clone();
        async move {
            let status = cli_json(&socket, &["status", "--json"]).await;
            let agree = ["chunks", "vectors", "keyword"]
                .iter()
                .all(|key| status[*key].as_u64() == Some(passages));
            agree.then_some(())
        }
    })
    .await;
    let out = cli(&socket, &["shutdown"]).await;
    assert!(out.status.success(), "{point}: {}", String::from_utf8_lossy(&out.stderr));
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_named_points_lose_and_duplicate_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let lib = root.join("library");
    std::fs::create_dir_all(&lib).unwrap();
    let lib = lib.canonicalize().unwrap();
    let books = small_speeches();

    // A job's attempt is recorded, then the daemon dies: the book is
    // `indexing` with one attempt; the restart resumes it.
    for b in &books[0..4] {
        copy(b, &lib);
    }
    let folder = lib.to_string_lossy().into_owned();
    crash_at(root, "attempt-recorded:2", |socket| async move {
        eventually("mindoryd answers", Duration::from_secs(120), || async {
            cli(&socket, &["status"]).await.status.success().then_some(())
        })
        .await;
        // The daemon may die before it answers this; the folder is
        // committed before any job starts.
        let _ = cli(&socket, &["folders", "add", &folder]).await;
    })
    .await;
    recovers(root, &lib, "attempt-recorded").await;

    // Mid-embedding: vectors computed, nothing stored.
    for b in &books[4..6] {
        copy(b, &lib);
    }
    crash_at(root, "mid-embedding:2", |_| async {}).await;
    recovers(root, &lib, "mid-embedding").await;

    // The store has the content, the index does not.
    copy(&books[6], &lib);
    crash_at(root, "content-committed", |_| async {}).await;
    recovers(root, &lib, "content-committed").await;

    // The index file is replaced but its metadata is not.
    copy(&books[7], &lib);
    crash_at(root, "index-save", |_| async {}).await;
    recovers(root, &lib, "index-save").await;

    // A deleted file's book is gone from the store, not from the index.
    std::fs::remove_file(lib.join(books[0].file_name().unwrap())).unwrap();
    crash_at(root, "mid-removal", |_| async {}).await;
    recovers(root, &lib, "mid-removal").await;

    // A renamed file's new path is committed, its event never sent.
    std::fs::rename(lib.join(books[1].file_name().unwrap()), lib.join("renamed-speech.txt")).unwrap();
    crash_at(root, "mid-move", |_| async {}).await;
    recovers(root, &lib, "mid-move").await;
}

/// A file that kills the daemon every time it is read, next to a healthy
/// book: the daemon dies twice, and only the bad file ends as poison. The
/// healthy book, in progress the first time, runs alone after the restart
/// (an interrupted job is a suspect), so the second death cannot be laid
/// on it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_file_that_kills_the_daemon_becomes_poison() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let lib = root.join("library");
    std::fs::create_dir_all(&lib).unwrap();
    let lib = lib.canonicalize().unwrap();
    let speeches = small_speeches();
    let bad = lib.join(format!("a-{}.txt", mindory_daemon::test_hooks::CRASH_MARK));
    std::fs::copy(&speeches[0], &bad).unwrap();
    // Long enough to be in progress when the bad file kills the daemon.
    let mut all: Vec<(u64, PathBuf)> = std::fs::read_dir(corpus("sotu"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (std::fs::metadata(&path).unwrap().len(), path)
        })
        .collect();
    all.sort();
    let healthy = lib.join("b-healthy.txt");
    std::fs::copy(&all.iter().find(|(size, _)| *size > 40_000).unwrap().1, &healthy).unwrap();

    let armed = [(mindory_daemon::test_hooks::CRASH_ON_MARK_ENV, "1")];
    dies(root, &armed, Some(&lib)).await;
    dies(root, &armed, None).await;

    let (mut child, socket) = spawn_mindoryd(root, &armed);
    let books = eventually("the bad file failed, the healthy book ready", Duration::from_secs(300), || {
        let socket = socket.clone();
        async move {
            let out = cli(&socket, &["books", "--json"]).await;
            let books: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let books = books.as_array()?.clone();
            let settled = books.len() == 2 && books.iter().all(|b| b["status"] == "ready" || b["status"] == "failed");
            settled.then_some(books)
        }
    })
    .await;
    let of = |path: &Path| books.iter().find(|b| b["path"] == path.to_str().unwrap()).unwrap().clone();
    let (bad_book, good_book) = (of(&bad), of(&healthy));
    assert_eq!(bad_book["status"], "failed", "{bad_book}");
    assert!(bad_book["error"].as_str().unwrap().contains("poison"), "{bad_book}");
    assert_eq!(good_book["status"], "ready", "{good_book}");
    let out = cli(&socket, &["shutdown"]).await;
    assert!(out.status.success());
    let _ = child.wait().await;
}

/// Starts `mindoryd` with `env`, adds `lib` if given, and waits for the
/// daemon to abort.
async fn dies(root: &Path, env: &[(&str, &str)], lib: Option<&Path>) {
    let (mut child, socket) = spawn_mindoryd(root, env);
    if let Some(lib) = lib {
        eventually("mindoryd answers", Duration::from_secs(120), || async {
            cli(&socket, &["status"]).await.status.success().then_some(())
        })
        .await;
        let out = cli(&socket, &["add", lib.to_str().unwrap()]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("the marked file kills the daemon")
        .unwrap();
    assert_eq!(status.signal(), Some(nix::sys::signal::Signal::SIGABRT as i32), "{status}");
}
