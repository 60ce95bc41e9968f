//! Seeds a daemon's data folder with a synthetic library of small books, for
//! the desktop app's benchmark (`SEEDED=1 scripts/bench-app`): thousands of
//! books written straight into the store in seconds, where ingesting as many
//! files through the embedding model takes an hour on a busy machine. Each
//! book has one short passage with a random vector; the daemon builds its
//! vector and keyword indexes from the store at its first start.
//!
//! `seed_books DATA_DIR BOOKS`; behind the `app-seed` feature so that no
//! ordinary build or test run compiles it:
//! `cargo build --workspace --examples --features mindory-benches/app-seed`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("seed_books: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The seeding; errors are sentences (anyhow is not a dependency of this
/// crate, and one tool is not worth a change of the lockfile).
fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let (Some(data), Some(books)) = (args.next(), args.next()) else {
        return Err("usage: seed_books DATA_DIR BOOKS (the daemon's --data-dir and how many books to write)".into());
    };
    let data = PathBuf::from(data);
    let books: u64 = books
        .to_str()
        .and_then(|b| b.parse().ok())
        .ok_or("BOOKS must be a whole number, such as 5000")?;
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let db = data.join("mindory.redb");
    // One passage per book and the active model's dimensions (MiniLM, 384):
    // the Library lists books, so their contents only need to be valid.
    mindory_daemon::store::seed_synthetic_library(&db, mindory_proto::models::EMBEDDING_MODEL_ID, books, 1, 384, 42, &[])
        .map_err(|e| format!("cannot seed {}: {e}; is a daemon using that data folder?", db.display()))?;
    println!("seeded {books} books into {}", db.display());
    Ok(())
}
