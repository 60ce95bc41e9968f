//! Paths as text, without losing a byte: how file paths travel on the wire
//! (protobuf strings must be UTF-8) and how the daemon stores them.
//!
//! A Unix file name is any bytes but `/` and NUL, and a name that is not
//! valid UTF-8 (an old Latin-1 archive, a copy from a foreign disk) is still
//! a book someone wants to read. Converting it lossily would fail to open it
//! again and merge two such names into one book. So valid UTF-8 is kept as
//! it is, and each byte of an invalid sequence becomes NUL followed by two
//! hex digits. No real path contains NUL, so the text decodes to exactly the
//! bytes it came from and cannot collide with another path; every UTF-8 path
//! is its own text, so nothing stored before this encoding changes.
//!
//! Invariant: `decode(&encode(p)) == p` for every path `p`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The marker that starts an escaped byte.
const ESCAPE: char = '\0';

/// The text form of `path` (see the module documentation).
pub fn encode(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push(ESCAPE);
            out.push_str(&format!("{byte:02X}"));
        }
    }
    out
}

/// The path a text made by [`encode`] stands for. Text that was not made by
/// it (an ordinary UTF-8 path) is the path it spells.
pub fn decode(text: &str) -> PathBuf {
    if !text.contains(ESCAPE) {
        return PathBuf::from(text);
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(ESCAPE) {
        bytes.extend_from_slice(&rest.as_bytes()[..at]);
        let after = &rest[at + 1..];
        match after.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                bytes.push(byte);
                rest = &after[2..];
            }
            None => {
                // Not an escape this module wrote: keep the character.
                bytes.push(0);
                rest = after;
            }
        }
    }
    bytes.extend_from_slice(rest.as_bytes());
    PathBuf::from(OsString::from_vec(bytes))
}

/// The path a text stands for, written for people: bytes that are not
/// UTF-8 show as U+FFFD, as file managers show them.
pub fn display(text: &str) -> String {
    if text.contains(ESCAPE) {
        decode(text).to_string_lossy().into_owned()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_paths_are_their_own_text() {
        for p in ["/books/Alice.txt", "/书/呐喊.txt", "/a b/c%41.md", ""] {
            assert_eq!(encode(Path::new(p)), p);
            assert_eq!(decode(p), PathBuf::from(p));
        }
    }

    #[test]
    fn other_bytes_round_trip_and_stay_apart() {
        let latin1 = PathBuf::from(OsString::from_vec(b"/books/caf\xe9.txt".to_vec()));
        let other = PathBuf::from(OsString::from_vec(b"/books/caf\xe8.txt".to_vec()));
        let (a, b) = (encode(&latin1), encode(&other));
        assert_eq!(a, "/books/caf\u{0}E9.txt");
        assert_ne!(a, b, "two names that read the same to people stay two paths");
        assert_eq!((decode(&a), decode(&b)), (latin1, other));
        assert_eq!(display(&a), "/books/caf\u{FFFD}.txt");
        // Every single byte, in and around valid text.
        for byte in 1..=255u8 {
            if byte == b'/' {
                continue;
            }
            let p = PathBuf::from(OsString::from_vec(vec![b'x', byte, 0xC3, byte, b'y']));
            assert_eq!(decode(&encode(&p)), p, "byte {byte:#x}");
        }
    }
}
