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

/// Reads a book file whole, refusing anything that is not a regular file
/// and anything over [`MAX_FILE_BYTES`], without ever blocking on it.
///
/// Paths come from users and from whatever lands in a watched folder. A
/// character device such as `/dev/zero` reports a length of 0 and never
/// ends; opening a FIFO blocks until a writer appears (a stuck blocking
/// thread per call, until the pool is exhausted). So the file is opened
/// with `O_NONBLOCK` (which returns at once for a FIFO and means nothing for
/// a regular file), its type is checked on the open descriptor (not on the
/// path, which could be swapped in between), and the read stops one byte
/// past the limit whatever the file claims its size is.
pub fn read_book_file(path: &Path) -> Result<Vec<u8>, ReadFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadFileError::Open)?;
    let meta = file.metadata().map_err(ReadFileError::Open)?;
    if !meta.file_type().is_file() {
        return Err(ReadFileError::NotRegular(file_kind(&meta.file_type())));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadFileError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(ReadFileError::Read)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadFileError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Makes the data directory private to its owner: the directory and every
/// directory under it 0700, every file 0600. The library's text is in there,
/// and older versions created it 0755 with files 0644, so this also runs on
/// an existing directory at every start. Symbolic links are not followed,
/// and only what the daemon's user owns is changed.
pub fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = nix::unistd::getuid().as_raw();
    let tighten = |path: &Path, meta: &std::fs::Metadata, mode: u32| -> std::io::Result<()> {
        if meta.uid() == uid && meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    };
    tighten(dir, &std::fs::symlink_metadata(dir)?, 0o700)?;
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        let meta = entry.metadata().map_err(std::io::Error::other)?;
        if meta.is_dir() {
            tighten(entry.path(), &meta, 0o700)?;
        } else if meta.is_file() {
            tighten(entry.path(), &meta, 0o600)?;
        }
    }
    Ok(())
}

/// What a path is when it is not a regular file, in words.
pub fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// How the failure reason of a book starts when its file was not there when
/// its job ran. Reconciliation queues such a book again as soon as it finds
/// the file at its path (a folder renamed and renamed back, a disk mounted
/// again), instead of taking the unchanged size and mtime as "done".
pub const GONE: &str = "the file was gone when its turn came";

/// Why a book file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// Opening it (or reading its metadata) failed.
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    /// It is a device, a FIFO, a socket…
    #[error("not a regular file ({0}); add regular files or folders")]
    NotRegular(&'static str),
    /// Over [`MAX_FILE_BYTES`].
    #[error("too large ({0} bytes; the limit is {MAX_FILE_BYTES})")]
    TooLarge(u64),
    /// Reading it failed part way.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
}

impl ReadFileError {
    /// Whether the file was simply not there (as opposed to unreadable).
    pub fn is_gone(&self) -> bool {
        matches!(self, ReadFileError::Open(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

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
/// directories are skipped; symbolic links (to files or directories) are
/// followed only when their target lies inside the scope's canonical path,
/// and a directory is read once however many links lead to it.
///
/// `walkdir` does the walking. Two of our rules it cannot express by
/// itself, so the entry filter adds them: a directory is read at most once
/// in the whole walk, across every scope (walkdir only cuts loops back to an
/// ancestor; we also skip a second path to a directory already walked, as a
/// set of `(device, inode)` pairs), and only entries below a scope are
/// checked for a hidden name (a scope is walked whatever its name).
/// Entries that cannot be read (broken symlinks, directories without
/// permission, loops) arrive as errors and are skipped.
pub fn walk(scopes: &[PathBuf]) -> HashMap<PathBuf, Seen> {
    use std::os::unix::fs::MetadataExt;
    let mut found = HashMap::new();
    let mut visited: HashSet<(u64, u64)> = HashSet::new();
    for scope in scopes {
        // A scope is depth 0: directories down to MAX_DEPTH are read, so
        // files down to MAX_DEPTH + 1 are seen.
        let walker = walkdir::WalkDir::new(scope).follow_links(true).max_depth(MAX_DEPTH + 1);
        // Links are followed only while they stay inside the scope: a link
        // to `/` in a downloads folder once queued the whole file system.
        let root = std::fs::canonicalize(scope).unwrap_or_else(|_| scope.clone());
        let entries = walker.into_iter().filter_entry(|entry| {
            if entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.') {
                return false;
            }
            if entry.depth() > 0 && entry.path_is_symlink() && !std::fs::canonicalize(entry.path()).is_ok_and(|t| t.starts_with(&root)) {
                return false;
            }
            // A directory too deep to be read is not marked visited, so a
            // shorter path to it can still be walked.
            if !entry.file_type().is_dir() || entry.depth() > MAX_DEPTH {
                return true;
            }
            entry.metadata().is_ok_and(|meta| visited.insert((meta.dev(), meta.ino())))
        });
        for entry in entries.flatten() {
            // Followed through symlinks, like the walk itself.
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            // Empty files are no books (10,000 of them once kept the queue
            // busy for 13 minutes).
            if meta.is_file() && wanted(path) && meta.len() > 0 && meta.len() <= MAX_FILE_BYTES {
                found.insert(
                    path.to_path_buf(),
                    Seen {
                        size: meta.len(),
                        mtime_ns: mtime_ns(&meta),
                    },
                );
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir_all(dir.join("index")).unwrap();
        std::fs::write(dir.join("mindory.redb"), "db").unwrap();
        std::fs::write(dir.join("index").join("vectors"), "v").unwrap();
        for (p, m) in [(dir.clone(), 0o755), (dir.join("index"), 0o755)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::fs::set_permissions(dir.join("mindory.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("index")), 0o700);
        assert_eq!(mode(&dir.join("mindory.redb")), 0o600);
        assert_eq!(mode(&dir.join("index").join("vectors")), 0o600);
    }

    #[test]
    fn only_regular_files_are_read_and_nothing_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let book = dir.path().join("book.txt");
        std::fs::write(&book, "Call me Ishmael.").unwrap();
        assert_eq!(read_book_file(&book).unwrap(), b"Call me Ishmael.");
        // A device that reports length 0 and never ends.
        let err = read_book_file(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, ReadFileError::NotRegular("a character device")), "{err}");
        // A FIFO with no writer: opening it must not wait for one.
        let fifo = dir.path().join("pipe.txt");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_book_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("named pipe"), "{err}");
        let err = read_book_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file (a folder)"), "{err}");
        let err = read_book_file(&dir.path().join("missing.txt")).unwrap_err();
        assert!(err.to_string().starts_with("cannot open:"), "{err}");
    }

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

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"text").unwrap();
    }

    fn found(scopes: &[PathBuf], root: &Path) -> Vec<String> {
        let mut names: Vec<String> = walk(scopes)
            .into_keys()
            .map(|p| p.strip_prefix(root).unwrap_or(&p).display().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn walk_skips_hidden_and_unwanted_and_follows_a_directory_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lib");
        touch(&root.join("a.txt"));
        touch(&root.join("photo.jpg"));
        touch(&root.join(".hidden.txt"));
        touch(&root.join(".git/inside.txt"));
        touch(&root.join("sub/b.md"));
        touch(&tmp.path().join("outside/c.txt"));
        // Links that leave the scope (to a directory or a file outside it,
        // or to `/`) are not followed.
        std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("link1")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside/c.txt"), root.join("c-link.txt")).unwrap();
        std::os::unix::fs::symlink("/", root.join("everything")).unwrap();
        // Two links to one directory inside it: read once, through whichever
        // path comes first.
        touch(&root.join("shelf/e.txt"));
        std::os::unix::fs::symlink(root.join("shelf"), root.join("alias1")).unwrap();
        std::os::unix::fs::symlink(root.join("shelf"), root.join("alias2")).unwrap();
        // A loop back to the scope and a broken link end nothing.
        std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("gone"), root.join("broken.txt")).unwrap();
        let names = found(std::slice::from_ref(&root), &root);
        assert!(
            !names.iter().any(|n| n.ends_with("c.txt") || n.starts_with("everything")),
            "{names:?}"
        );
        let shelved: Vec<&String> = names.iter().filter(|n| n.ends_with("e.txt")).collect();
        assert_eq!(shelved.len(), 1, "{names:?}");
        let rest: Vec<&String> = names.iter().filter(|n| !n.ends_with("e.txt")).collect();
        assert_eq!(rest, ["a.txt", "sub/b.md"]);
        // A scope can be a file, a hidden-named directory, or missing.
        let hidden = tmp.path().join(".books");
        touch(&hidden.join("d.txt"));
        let scopes = [root.join("a.txt"), hidden.clone(), tmp.path().join("missing"), hidden];
        assert_eq!(found(&scopes, tmp.path()), [".books/d.txt", "lib/a.txt"]);
    }

    #[test]
    fn walk_reads_directories_down_to_the_depth_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dir = tmp.path().to_path_buf();
        for depth in 0..=MAX_DEPTH + 1 {
            touch(&dir.join(format!("f{depth}.txt")));
            dir = dir.join("d");
        }
        let names = found(&[tmp.path().to_path_buf()], tmp.path());
        // Directories at depth 0..=MAX_DEPTH are read; the files in them
        // are at depth 1..=MAX_DEPTH + 1.
        assert_eq!(names.len(), MAX_DEPTH + 1, "{names:?}");
        assert!(names.iter().any(|n| n.ends_with(&format!("f{MAX_DEPTH}.txt"))));
        assert!(!names.iter().any(|n| n.ends_with(&format!("f{}.txt", MAX_DEPTH + 1))));
    }
}
