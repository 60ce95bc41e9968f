//! Reconciliation: make the store agree with what is on disk under a scope
//! (a folder, or the paths a burst of file-system events touched).
//!
//! One algorithm serves the initial scan, the watcher, polling, the periodic
//! sweep and the start-up check, so they cannot disagree:
//! 1. walk the scope (stat only) and list the supported, non-ignored files;
//! 2. a file whose path, size and mtime match its book costs nothing (unless
//!    the book failed because its file was missing: it is read again);
//! 3. a file still being written (mtime in the last second, not seen before
//!    with the same size and mtime) is left for the next pass;
//! 4. every other file is hashed: same hash as a book that vanished from the
//!    scope is a move (same book, no re-embedding); otherwise it is queued
//!    (new or changed; identical content elsewhere is copied, not embedded);
//! 5. books whose files vanished and did not move are removed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::files::{content_hash, walk, Seen};
use crate::store::{BookRecord, FileState};

/// A file modified this recently may still be being written.
pub const SETTLE: Duration = Duration::from_millis(1000);

/// Whether `path` lies in (or is) one of `scopes`.
pub fn in_scope(path: &std::path::Path, scopes: &[PathBuf]) -> bool {
    scopes.iter().any(|s| path.starts_with(s))
}

/// Whether a book failed only because its file was missing when its job
/// ran: finding the file is then a reason to read it, even unchanged.
fn failed_for_gone_file(book: &BookRecord) -> bool {
    book.status == crate::store::BookStatus::Failed && book.error.starts_with(crate::files::GONE)
}

/// The plan for one reconciliation, computed without touching the store.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Wanted files found.
    pub files: usize,
    /// Files whose size and mtime match their book: nothing to do.
    pub unchanged: usize,
    /// Files that may still be being written; look again later.
    pub unsettled: Vec<(PathBuf, Seen)>,
    /// New or changed files with their content hash, to queue.
    pub queue: Vec<(PathBuf, FileState)>,
    /// (book id, new path, state): files that moved (same content).
    pub moves: Vec<(u64, PathBuf, FileState)>,
    /// Books whose files are gone.
    pub removals: Vec<u64>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Compares what is on disk under `scopes` with `books` and decides.
/// `books` must hold every book whose path lies in `scopes`
/// (`StoreReader::books_in`, a range of the paths table per scope); books
/// outside them are ignored, so passing more costs only time.
/// `seen_before` holds files found unsettled by the previous pass: a file
/// that kept its size and mtime since then is settled.
pub fn plan(scopes: &[PathBuf], books: &[BookRecord], seen_before: &HashMap<PathBuf, Seen>, now: SystemTime) -> Plan {
    let found = walk(scopes);
    let mut plan = Plan {
        files: found.len(),
        ..Plan::default()
    };
    let by_path: HashMap<&str, &BookRecord> = books.iter().map(|b| (b.path.as_str(), b)).collect();
    let now_ns = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let mut fresh: Vec<(PathBuf, FileState)> = Vec::new();
    let mut paths: Vec<&PathBuf> = found.keys().collect();
    paths.sort();
    for path in paths {
        let seen = found[path];
        let key = mindory_proto::path_text::encode(path);
        if let Some(book) = by_path.get(key.as_str()) {
            if book.size == seen.size && book.mtime_ns == seen.mtime_ns && !failed_for_gone_file(book) {
                plan.unchanged += 1;
                continue;
            }
        }
        let recent = now_ns.saturating_sub(seen.mtime_ns) < SETTLE.as_nanos() as i64;
        if recent && seen_before.get(path) != Some(&seen) {
            plan.unsettled.push((path.clone(), seen));
            continue;
        }
        match crate::files::read_book_file(path) {
            Ok(bytes) => fresh.push((
                path.clone(),
                FileState {
                    hash: content_hash(&bytes),
                    size: bytes.len() as u64,
                    mtime_ns: seen.mtime_ns,
                },
            )),
            Err(e) => plan.unreadable.push((path.clone(), e.to_string())),
        }
    }
    // Books in scope whose file is gone: candidates for a move, else removal.
    let mut vanished: Vec<&BookRecord> = books
        .iter()
        .filter(|b| {
            let path = mindory_proto::path_text::decode(&b.path);
            in_scope(&path, scopes) && !found.contains_key(&path) && !path.exists()
        })
        .collect();
    for (path, state) in fresh {
        let known = by_path.contains_key(mindory_proto::path_text::encode(&path).as_str());
        let moved_from = (!known)
            .then(|| vanished.iter().position(|b| b.content_hash == state.hash))
            .flatten();
        match moved_from {
            Some(i) => {
                let book = vanished.swap_remove(i);
                plan.moves.push((book.id, path, state));
            }
            None => plan.queue.push((path, state)),
        }
    }
    plan.removals = vanished.iter().map(|b| b.id).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::mtime_ns;
    use crate::store::BookStatus;
    use std::path::Path;

    fn book(id: u64, path: &Path, hash: &str, size: u64, mtime_ns: i64) -> BookRecord {
        BookRecord {
            id,
            path: path.to_string_lossy().into_owned(),
            content_hash: hash.into(),
            size,
            title: String::new(),
            author: String::new(),
            format: "txt".into(),
            status: BookStatus::Ready,
            error: String::new(),
            added_at_ms: 0,
            updated_at_ms: 0,
            chunk_count: 1,
            text_chars: 1,
            sections: Vec::new(),
            language: String::new(),
            mtime_ns,
            attempts: 0,
        }
    }

    fn state_of(path: &Path) -> (u64, i64) {
        let m = std::fs::metadata(path).unwrap();
        (m.len(), mtime_ns(&m))
    }

    #[test]
    fn unchanged_moved_changed_new_removed_and_unsettled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let same = root.join("same.txt");
        std::fs::write(&same, "same").unwrap();
        let moved_to = root.join("sub/moved.txt");
        std::fs::write(&moved_to, "moved content").unwrap();
        let changed = root.join("changed.txt");
        std::fs::write(&changed, "new text").unwrap();
        let new = root.join("new.md");
        std::fs::write(&new, "# new").unwrap();
        std::fs::write(root.join("photo.jpg"), "not a book").unwrap();
        std::fs::write(root.join(".hidden.txt"), "hidden").unwrap();

        let (s, m) = state_of(&same);
        let (c, _) = state_of(&changed);
        let books = vec![
            book(1, &same, &content_hash(b"same"), s, m),
            book(2, &root.join("old-name.txt"), &content_hash(b"moved content"), 13, 1),
            book(3, &changed, &content_hash(b"old text"), c, 1),
            book(4, &root.join("deleted.txt"), &content_hash(b"gone"), 4, 1),
            book(5, Path::new("/elsewhere/keep.txt"), &content_hash(b"gone"), 4, 1),
        ];
        let plan = plan(std::slice::from_ref(&root), &books, &HashMap::new(), later);
        assert_eq!((plan.files, plan.unchanged), (4, 1));
        assert_eq!(
            plan.moves.iter().map(|(id, p, _)| (*id, p.clone())).collect::<Vec<_>>(),
            [(2, moved_to)]
        );
        let queued: Vec<&PathBuf> = plan.queue.iter().map(|(p, _)| p).collect();
        assert_eq!(queued, [&changed, &new]);
        assert_eq!(plan.removals, [4]);

        // Seen right after writing, a file waits until it is seen again unchanged.
        let now = SystemTime::now();
        let plan1 = super::plan(std::slice::from_ref(&new), &[], &HashMap::new(), now);
        assert_eq!(plan1.unsettled.len(), 1);
        assert!(plan1.queue.is_empty());
        let before: HashMap<PathBuf, Seen> = plan1.unsettled.into_iter().collect();
        let plan2 = super::plan(std::slice::from_ref(&new), &[], &before, now);
        assert_eq!(plan2.queue.len(), 1);
    }

    #[test]
    fn a_book_failed_for_its_missing_file_is_read_again_when_the_file_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (a, b) = (root.join("a.txt"), root.join("b.txt"));
        std::fs::write(&a, "back again").unwrap();
        std::fs::write(&b, "broken").unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        let failed = |id, path: &Path, text: &[u8], error: String| {
            let (size, mtime) = state_of(path);
            BookRecord {
                status: BookStatus::Failed,
                error,
                ..book(id, path, &content_hash(text), size, mtime)
            }
        };
        let books = vec![
            failed(1, &a, b"back again", format!("{} ({})", crate::files::GONE, a.display())),
            // Failed for another reason: unchanged means nothing to do.
            failed(2, &b, b"broken", "not valid UTF-8".into()),
        ];
        let plan = plan(std::slice::from_ref(&root), &books, &HashMap::new(), later);
        assert_eq!(plan.queue.iter().map(|(p, _)| p).collect::<Vec<_>>(), [&a]);
        assert_eq!(plan.unchanged, 1);
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/book.txt"), "text").unwrap();
        std::os::unix::fs::symlink(&root, root.join("a/loop")).unwrap();
        let found = walk(std::slice::from_ref(&root));
        assert_eq!(found.len(), 1);
    }
}
