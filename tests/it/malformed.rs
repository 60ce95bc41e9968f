//! The whole malformed corpus through a live daemon: every file ends
//! `failed` with a one-line reason (or `ready`, when the PDF engine repairs
//! it), nothing crashes the daemon, and the book stored before is untouched.
//! Planted crashes, hangs and memory hogs in the parse worker are contained
//! by the sandbox's limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{cli, cli_json, copy_into, corpus, fixture, TestDaemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_corpus_fails_cleanly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start_with(tmp.path(), |config| {
        config.parser.timeout = Duration::from_secs(20);
        config.parser.memory_limit = 1 << 30;
    })
    .await;
    let good = copy_into(&tmp.path().join("good"), &[fixture("looking-glass.md")]);
    daemon.add(&good).await;
    daemon.wait_idle(Duration::from_secs(300)).await;
    let before = cli_json(&daemon.socket, &["books", "--json"]).await;
    let query = "slithy toves gyre and gimble in the wabe";
    let hit_before = daemon.search(query, 1).await;

    // Every malformed file, fuzzed PDFs named .pdf, each broken zip as
    // .epub, .docx and .odt, and three planted worker failures.
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let mut bad: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(corpus("malformed/pdf")).unwrap() {
        let src = entry.unwrap().path();
        let dest = bad_dir.join(src.file_name().unwrap()).with_extension("pdf");
        std::fs::copy(&src, &dest).unwrap();
        bad.push(dest);
    }
    for entry in std::fs::read_dir(corpus("malformed/zip")).unwrap() {
        let src = entry.unwrap().path();
        for ext in ["epub", "docx", "odt"] {
            let dest = bad_dir.join(src.file_name().unwrap()).with_extension(ext);
            std::fs::copy(&src, &dest).unwrap();
            bad.push(dest);
        }
    }
    bad.extend(copy_into(&bad_dir, &[corpus("malformed/epub/epubcheck-invalid.epub")]));
    for name in ["mindory-test-abort.txt", "mindory-test-hang.txt", "mindory-test-bloat.txt"] {
        let path = bad_dir.join(name);
        std::fs::write(&path, "Planted: the parse worker misbehaves on this name.").unwrap();
        bad.push(path);
    }

    let started = std::time::Instant::now();
    let results = daemon.add(&bad).await;
    assert_eq!(results.len(), bad.len());
    daemon.wait_idle(Duration::from_secs(900)).await;
    let elapsed = started.elapsed();

    let books = cli_json(&daemon.socket, &["books", "--json"]).await;
    let books = books.as_array().unwrap();
    let (mut failed, mut ready, mut crashed) = (0, 0, Vec::new());
    for path in &bad {
        let p = path.to_string_lossy();
        let book = books
            .iter()
            .find(|b| b["path"] == *p)
            .unwrap_or_else(|| panic!("{p} is not listed"));
        match book["status"].as_str().unwrap() {
            "failed" => {
                let reason = book["error"].as_str().unwrap();
                assert!(!reason.is_empty() && !reason.contains('\n'), "{p}: {reason:?}");
                if reason.contains("parser crashed") {
                    crashed.push(format!("{p}: {reason}"));
                }
                failed += 1;
            }
            "ready" => ready += 1,
            other => panic!("{p} ended {other}"),
        }
    }
    println!(
        "malformed corpus: {} files, {failed} failed with a reason, {ready} repaired and ready, {} crashed the parser, {elapsed:.0?}",
        bad.len(),
        crashed.len()
    );
    let reason_of = |name: &str| {
        books
            .iter()
            .find(|b| b["path"].as_str().unwrap().ends_with(name))
            .and_then(|b| b["error"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    // The only crash is the planted abort; the hang hits the time limit and
    // the hog the memory limit.
    assert_eq!(crashed.len(), 1, "{crashed:#?}");
    assert!(
        reason_of("mindory-test-abort.txt").contains("SIGABRT"),
        "{}",
        reason_of("mindory-test-abort.txt")
    );
    assert!(
        reason_of("mindory-test-hang.txt").contains("longer than 20 s"),
        "{}",
        reason_of("mindory-test-hang.txt")
    );
    assert!(
        reason_of("mindory-test-bloat.txt").contains("memory limit"),
        "{}",
        reason_of("mindory-test-bloat.txt")
    );
    assert!(reason_of("bigzero-zip.epub").contains("not an EPUB") || reason_of("bigzero-zip.epub").contains("decompress"));

    // `books --failed` lists them, one line each.
    let out = cli(&daemon.socket, &["books", "--failed"]).await;
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("bad1.pdf") && !listing.contains("looking-glass"), "{listing}");

    // The book stored before is untouched and still found.
    let after = cli_json(&daemon.socket, &["books", "--json"]).await;
    let kept = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|b| b["path"].as_str().unwrap().ends_with("looking-glass.md"))
            .cloned()
    };
    assert_eq!(kept(&before), kept(&after));
    let hit_after = daemon.search(query, 1).await;
    assert_eq!(hit_before[0].chunk_id, hit_after[0].chunk_id);
    assert_eq!(hit_before[0].text, hit_after[0].text);
    daemon.stop().await;
}

/// Paths that are not regular files are refused at once with a reason that
/// names what they are, and the daemon keeps serving: `/dev/zero` (length 0,
/// never ends) once grew the daemon to its OOM kill, and a FIFO blocked
/// `add` and then `shutdown` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_and_fifos_are_refused_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = TestDaemon::start(tmp.path()).await;
    let fifo = tmp.path().join("pipe.txt");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let started = std::time::Instant::now();
    let out = cli(&daemon.socket, &["add", "/dev/zero", fifo.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "add returned after {:?}",
        started.elapsed()
    );
    assert!(stdout.contains("/dev/zero") && stdout.contains("a character device"), "{stdout}");
    assert!(stdout.contains("pipe.txt") && stdout.contains("named pipe"), "{stdout}");
    let books = cli_json(&daemon.socket, &["books", "--json"]).await;
    assert_eq!(books.as_array().unwrap().len(), 0, "nothing was stored: {books}");
    // Still serving, and it stops cleanly.
    let status = cli(&daemon.socket, &["status"]).await;
    assert!(status.status.success());
    daemon.stop().await;
}

/// File names that are not UTF-8 (an old Latin-1 archive): each is its own
/// book, read from its exact name, whether it comes in a folder or by
/// itself; people see U+FFFD where the odd byte is, and `--json` carries the
/// name without losing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_that_are_not_utf8_are_ingested_each_as_its_own_book() {
    use mindory_proto::path_text;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("latin1");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    // "café" and "cafè" in Latin-1: to a lossy conversion both are "caf\u{FFFD}".
    let e_acute = dir.join(OsStr::from_bytes(b"caf\xe9.txt"));
    let e_grave = dir.join(OsStr::from_bytes(b"caf\xe8.txt"));
    std::fs::write(
        &e_acute,
        "The lighthouse keeper counted forty gulls on the northern rocks at dawn.\n",
    )
    .unwrap();
    std::fs::write(&e_grave, "A baker in the valley sold rye loaves shaped like sleeping foxes.\n").unwrap();
    let alone = tmp.path().join(OsStr::from_bytes(b"na\xefve.md"));
    std::fs::write(&alone, "# Notes\n\nThe astronomer mapped seven comets with a brass telescope.\n").unwrap();

    let daemon = TestDaemon::start(tmp.path()).await;
    let out = cli(&daemon.socket, &["add", "--wait", dir.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The file by itself, its name passed as the OS gives it.
    let out = tokio::process::Command::new(crate::support::cli_path())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["add", "--wait"])
        .arg(&alone)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let books = cli_json(&daemon.socket, &["books", "--json"]).await;
    let books = books.as_array().unwrap();
    assert_eq!(books.len(), 3, "{books:?}");
    let mut paths: Vec<PathBuf> = books
        .iter()
        .map(|b| {
            assert_eq!(b["status"], "ready", "{b}");
            path_text::decode(b["path"].as_str().unwrap())
        })
        .collect();
    paths.sort();
    let mut expected = vec![e_acute.clone(), e_grave.clone(), alone.canonicalize().unwrap()];
    expected.sort();
    assert_eq!(paths, expected);

    for (query, file) in [
        ("gulls counted by a lighthouse keeper", &e_acute),
        ("rye loaves shaped like foxes", &e_grave),
        ("comets mapped with a telescope", &alone),
    ] {
        let hits = daemon.search(query, 1).await;
        assert_eq!(path_text::decode(&hits[0].path), file.canonicalize().unwrap(), "{query}");
    }
    let id = books
        .iter()
        .find(|b| path_text::decode(b["path"].as_str().unwrap()) == e_acute)
        .map(|b| b["id"].to_string())
        .unwrap();
    let human = cli(&daemon.socket, &["book", &id]).await;
    let human = String::from_utf8(human.stdout).expect("human output is UTF-8");
    assert!(human.contains("caf\u{FFFD}.txt"), "{human}");
    daemon.stop().await;
}
