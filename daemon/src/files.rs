//! File facts: which files Mindory reads, what they look like on disk
//! (size, modification time, content hash) and how a folder is walked. A
//! leaf used by ingest and by the folder watcher's reconciliation alike, so
//! the two cannot disagree about a file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::parse::Format;

/// Files larger than this are refused: no book is this big, a disk image is.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// Hex SHA-256 of a byte slice.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A file's modification time in ns since the epoch (0 when unknown).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec())
}

/// Directory depth followed at most (symlink loops are also cut by inode).
const MAX_DEPTH: usize = 64;

/// Whether a file name is one Mindory never ingests: hidden files, partial
/// downloads, editor swap and lock files, temporary files.
pub fn ignored_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with('~')
        || [".part", ".crdownload", ".swp", ".swx", ".tmp", ".partial", ".download"]
            .iter()
            .any(|ext| lower.ends_with(ext))
}

/// Whether `path` is a file the library would ingest (by name).
pub fn wanted(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    !ignored_name(&name) && Format::from_extension(path).is_some()
}

/// What a file looks like on disk right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

/// Lists the wanted files under each scope path (a directory is walked
/// recursively, a file is itself, a missing path yields nothing). Hidden
/// directories are skipped; symlinked directories are followed once.
pub fn walk(scopes: &[PathBuf]) -> HashMap<PathBuf, Seen> {
    let mut found = HashMap::new();
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    for scope in scopes {
        walk_one(scope, 0, &mut visited, &mut found);
    }
    found
}

fn walk_one(path: &Path, depth: usize, visited: &mut HashSet<(u64, u64)>, found: &mut HashMap<PathBuf, Seen>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_file() {
        if wanted(path) && meta.len() <= MAX_FILE_BYTES {
            found.insert(
                path.to_path_buf(),
                Seen {
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                },
            );
        }
        return;
    }
    if !meta.is_dir() || depth > MAX_DEPTH || !visited.insert((meta.dev(), meta.ino())) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        walk_one(&entry.path(), depth + 1, visited, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_names() {
        for name in [
            ".hidden.txt",
            "book.epub.part",
            "x.crdownload",
            "~$draft.docx",
            ".x.swp",
            "a.tmp",
            "notes.txt~",
        ] {
            assert!(ignored_name(name), "{name}");
        }
        assert!(!ignored_name("Pride and Prejudice.epub"));
        assert!(!wanted(Path::new("/b/photo.jpg")));
        assert!(wanted(Path::new("/b/book.pdf")));
    }
}
