//! Replays what fuzzing found (issue 14): every file under
//! `fuzz/regressions/<target>/` goes through the fuzzing facade's entry point
//! for that target ([`crate::fuzzing::run`]), the one its cargo-fuzz target
//! calls, and must come back (parsed or cleanly refused) without panicking.
//! Runs on stable under plain `cargo test`; the fuzz targets need nightly.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::fuzzing;

/// How long one input may take before it counts as a hang. Generous on
/// purpose: this is a check that the parser finishes, not a speed test, and
/// debug builds on a loaded machine are slow. The fuzzer's own limit was 10 s
/// on an optimized build.
const HANG: Duration = Duration::from_secs(120);

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

/// Runs one input in its own thread so that a hang fails the test instead
/// of stalling it, and a panic is reported with the file that caused it.
fn replay(target: &'static str, path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .spawn(move || {
            let known = fuzzing::run(target, &bytes);
            let _ = done_tx.send(known);
        })
        .map_err(|e| e.to_string())?;
    match done_rx.recv_timeout(HANG) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{}: no fuzz target {target:?}", path.display())),
        // The sender was dropped without a result: the thread panicked.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let panic = worker.join().err().map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            Err(format!("{}: panicked: {}", path.display(), panic.unwrap_or_default()))
        }
        // The thread is left running; the test process ends with the test.
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("{}: still running after {HANG:?}", path.display())),
    }
}

#[test]
fn fuzz_regressions_replay_without_panic_or_hang() {
    let dir = regressions_dir();
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in fuzzing::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            replayed += 1;
            if let Err(e) = replay(target, &file) {
                failures.push(e);
            }
        }
    }
    // A folder for a target that does not exist would never be replayed.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !fuzzing::TARGETS.contains(&name.as_str()) {
                failures.push(format!("{}: not a fuzz target", entry.path().display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_targets_are_all_known_to_the_facade() {
    for target in fuzzing::TARGETS {
        assert!(fuzzing::run(target, b""), "{target}");
    }
    assert!(!fuzzing::run("pdf", b"%PDF-1.7"));
}
