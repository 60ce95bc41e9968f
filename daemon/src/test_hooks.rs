//! Named crash points for the crash-recovery tests.
//!
//! A daemon built with the `test-hooks` feature aborts (as `kill -9` would
//! end it: no unwinding, no flush, no clean stop) when it reaches the point
//! named by `MINDORY_CRASH_AT` — `NAME` for the first time it is reached,
//! `NAME:N` for the N-th. The tests start `mindoryd` with it set, wait for
//! the process to die, restart it without it, and check that nothing was
//! lost or stored twice. Without the feature every point compiles to
//! nothing, so release builds carry no way to be told to crash.
//!
//! The points: `attempt-recorded` (a job's attempt is committed, nothing
//! else yet), `mid-embedding` (after an embedding batch), `content-committed`
//! (a book's content is in the store, not yet in the index), `index-save`
//! (the index file is renamed into place, its metadata not yet),
//! `mid-removal` (a book is removed from the store, not yet from the index),
//! `mid-move` (a book's new path is committed, its event not yet sent),
//! `swap-committed` (a model swap step's vectors are committed).
//!
//! Delay points (`MINDORY_DELAY_AT=NAME:MS`) hold a task at a named point for
//! that long every time it passes, to open a race window on purpose: the
//! one point is `job-started` (an ingest job has read its book's path from
//! the store and not yet opened the file).

/// The environment variable that arms a crash point.
pub const CRASH_AT_ENV: &str = "MINDORY_CRASH_AT";

/// Aborts the process if `name` is the armed crash point and this is the
/// occurrence it names.
#[cfg(feature = "test-hooks")]
pub fn crash_point(name: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let armed = ARMED.get_or_init(|| {
        let spec = std::env::var(CRASH_AT_ENV).ok()?;
        let (point, nth) = match spec.split_once(':') {
            Some((point, n)) => (point.to_string(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((point, nth))
    });
    if let Some((point, nth)) = armed {
        if point == name && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            eprintln!("mindoryd: crash point {name} reached ({CRASH_AT_ENV}); aborting");
            std::process::abort();
        }
    }
}

/// The environment variable that arms a panic point.
pub const PANIC_AT_ENV: &str = "MINDORY_PANIC_AT";

/// Panics (unwinding, unlike a crash point) the first time the point named
/// by `MINDORY_PANIC_AT` is reached, to prove that whoever runs the code
/// there survives a panic in it. The points: `llm-generate` (the local
/// model thread, before a generation) and `embed-batch` (an embedding
/// engine's thread, before a batch). Only the first point reached fires,
/// once per process.
#[cfg(feature = "test-hooks")]
pub fn panic_point(name: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var(PANIC_AT_ENV).is_ok_and(|p| p == name) && !FIRED.swap(true, Ordering::SeqCst) {
        panic!("panic point {name} reached ({PANIC_AT_ENV})");
    }
}

/// Without the `test-hooks` feature panic points do nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn panic_point(_name: &str) {}

/// Without the `test-hooks` feature crash points do nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

/// Set (to anything), the environment variable that makes a book whose
/// file name contains [`CRASH_MARK`] abort the daemon after its first
/// embedding batch, every time: a file that kills the daemon whenever it
/// is read, for the poison tests.
pub const CRASH_ON_MARK_ENV: &str = "MINDORY_CRASH_ON_MARK";
/// See [`CRASH_ON_MARK_ENV`].
pub const CRASH_MARK: &str = "kills-the-daemon";

/// Aborts the process when [`CRASH_ON_MARK_ENV`] is set and `path`'s file
/// name contains [`CRASH_MARK`].
#[cfg(feature = "test-hooks")]
pub fn crash_on_marked_file(path: &std::path::Path) {
    let marked = path.file_name().is_some_and(|n| n.to_string_lossy().contains(CRASH_MARK));
    if marked && std::env::var_os(CRASH_ON_MARK_ENV).is_some() {
        eprintln!(
            "mindoryd: {} is marked to crash the daemon ({CRASH_ON_MARK_ENV}); aborting",
            path.display()
        );
        std::process::abort();
    }
}

/// Without the `test-hooks` feature nothing crashes on a file name.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn crash_on_marked_file(_path: &std::path::Path) {}

/// The environment variable that arms a delay point: `NAME:MS`.
pub const DELAY_AT_ENV: &str = "MINDORY_DELAY_AT";

/// Sleeps for the armed time whenever the named delay point is reached.
#[cfg(feature = "test-hooks")]
pub async fn delay_point(name: &str) {
    let Ok(spec) = std::env::var(DELAY_AT_ENV) else { return };
    let Some((point, ms)) = spec.split_once(':') else { return };
    if point == name {
        if let Ok(ms) = ms.parse::<u64>() {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

/// Without the `test-hooks` feature delay points do nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub async fn delay_point(_name: &str) {}
