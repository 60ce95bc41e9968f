//! Zip containers (EPUB, DOCX, ODT) read defensively: the number of entries
//! is capped, and every read is capped per entry and per archive, so a zip
//! bomb fails fast with a reason instead of filling memory.

use std::io::{Cursor, Read};

use super::ParseError;

/// At most this many bytes are decompressed from one entry…
pub const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;
/// …and from the whole archive.
pub const MAX_ARCHIVE_BYTES: u64 = 512 * 1024 * 1024;
/// Archives with more entries than this are refused.
pub const MAX_ENTRIES: usize = 20_000;

/// A zip archive with a decompression budget.
pub struct Archive {
    zip: zip::ZipArchive<Cursor<Vec<u8>>>,
    budget: u64,
    kind: &'static str,
}

impl Archive {
    /// Opens `bytes` as a zip; `kind` ("EPUB", "DOCX", …) names it in errors.
    pub fn open(bytes: &[u8], kind: &'static str) -> Result<Archive, ParseError> {
        let zip = zip::ZipArchive::new(Cursor::new(bytes.to_vec()))
            .map_err(|e| ParseError::Invalid(format!("not a readable {kind} (zip) archive: {e}")))?;
        if zip.len() > MAX_ENTRIES {
            return Err(ParseError::Invalid(format!(
                "{kind} has {} entries (the limit is {MAX_ENTRIES})",
                zip.len()
            )));
        }
        Ok(Archive {
            zip,
            budget: MAX_ARCHIVE_BYTES,
            kind,
        })
    }

    /// Reads one entry, within the budget.
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, ParseError> {
        let kind = self.kind;
        let mut entry = self
            .zip
            .by_name(name)
            .map_err(|e| ParseError::Invalid(format!("{kind} entry {name}: {e}")))?;
        if entry.encrypted() {
            return Err(ParseError::Invalid(format!("encrypted {kind} entry {name}")));
        }
        let cap = MAX_ENTRY_BYTES.min(self.budget);
        let mut out = Vec::new();
        (&mut entry)
            .take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| ParseError::Invalid(format!("{kind} entry {name} is damaged: {e}")))?;
        if out.len() as u64 > cap {
            return Err(ParseError::Invalid(format!(
                "{kind} entry {name} decompresses past {cap} bytes (zip bomb?)"
            )));
        }
        self.budget -= out.len() as u64;
        Ok(out)
    }

    /// Reads one entry as UTF-8 text (lossy).
    pub fn read_text(&mut self, name: &str) -> Result<String, ParseError> {
        let bytes = self.read(name)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The entry name matching `path`, tolerating percent-encoding and case.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let decoded = percent_decode(path);
        for candidate in [path, decoded.as_str()] {
            if self.zip.index_for_name(candidate).is_some() {
                return Some(candidate.to_string());
            }
        }
        let lower = decoded.to_lowercase();
        self.zip.file_names().find(|n| n.to_lowercase() == lower).map(str::to_string)
    }
}

/// Decodes `%XX` escapes (as in EPUB hrefs).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}
