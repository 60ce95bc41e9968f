//! A book's text as Mindory stores it: parsed blocks in, one normalized string
//! with its sections out, then passages cut from it ([`chunk`]).
//!
//! Every parser produces a [`Document`] (a flat list of headings and
//! paragraphs). [`assemble`] joins the blocks into the book's *normalized
//! text* — NFC, `\n` line ends, paragraphs separated by a blank line, lines
//! inside a paragraph joined — and records where each heading's section starts.
//!
//! Invariant: a passage's char range indexes this normalized text, and the
//! stored passage text equals that slice exactly, so a citation points at the
//! exact place.

pub mod chunk;
pub mod clean;

/// Whether `c` belongs to a script written without spaces between words
/// (Han, kana) or one treated alike (hangul): the chunker counts each such
/// char as a word, the keyword index cuts their runs into bigrams, and
/// search knows the English embedding model does not read them.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF       // Hangul Jamo
        | 0x2E80..=0x2FDF     // CJK radicals, Kangxi radicals
        | 0x3005..=0x3007     // 々 〆 〇
        | 0x3021..=0x3029     // Hangzhou numerals
        | 0x3031..=0x3035     // kana repeat marks
        | 0x303B..=0x303C     // 〻 〼
        | 0x3040..=0x30FF     // Hiragana, Katakana (with ー)
        | 0x3130..=0x318F     // Hangul compatibility Jamo
        | 0x31F0..=0x31FF     // Katakana phonetic extensions
        | 0x3400..=0x4DBF     // CJK extension A
        | 0x4E00..=0x9FFF     // CJK unified ideographs
        | 0xA960..=0xA97F     // Hangul Jamo extended A
        | 0xAC00..=0xD7FF     // Hangul syllables, Jamo extended B
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0xFF66..=0xFF9F     // half-width Katakana
        | 0x20000..=0x3FFFF // CJK extensions B onwards, compatibility supplement
    )
}

use unicode_normalization::UnicodeNormalization;

/// A parsed book before assembly.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Document {
    /// Title from the book's own metadata, if it has one.
    pub title: Option<String>,
    /// Author from the book's own metadata, if it has one.
    pub author: Option<String>,
    /// Language tag (BCP 47, e.g. "en", "de-DE") from the book's metadata.
    pub language: Option<String>,
    /// Headings and paragraphs in reading order.
    pub blocks: Vec<Block>,
}

impl Document {
    /// Moves the text collected in `buf` into a new block (a heading at
    /// `heading` level, or a paragraph), skipping blank text; clears `buf`.
    pub fn push_block(&mut self, buf: &mut String, heading: Option<u8>) {
        let text = buf.trim();
        if !text.is_empty() {
            self.blocks.push(match heading {
                Some(level) => Block::heading(level, text),
                None => Block::paragraph(text),
            });
        }
        buf.clear();
    }
}

/// One heading or paragraph.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Block {
    /// `Some(level)` (1 = top) for a heading, `None` for body text.
    pub heading_level: Option<u8>,
    /// The block's text; inner line breaks are folded by [`assemble`].
    pub text: String,
    /// Page the block is on, for formats that have pages.
    pub page: Option<PageRef>,
}

/// A page of a paged format: its place in the file and the label a reader
/// sees printed on it (roman numerals in front matter, "A-3" in appendices).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageRef {
    /// 1-based physical page number.
    pub number: u32,
    /// The page label, when the file defines one.
    pub label: Option<String>,
}

impl PageRef {
    /// What a citation shows: the label, else the physical number.
    pub fn display(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.number.to_string())
    }
}

impl Block {
    /// A paragraph of body text.
    pub fn paragraph(text: impl Into<String>) -> Self {
        Block {
            heading_level: None,
            text: text.into(),
            page: None,
        }
    }

    /// The same block, placed on `page`.
    pub fn on_page(mut self, page: PageRef) -> Self {
        self.page = Some(page);
        self
    }

    /// A heading at `level` (1 = top).
    pub fn heading(level: u8, text: impl Into<String>) -> Self {
        Block {
            heading_level: Some(level),
            text: text.into(),
            page: None,
        }
    }
}

/// A section of the book: the text under one heading path.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Heading path joined with " › " (empty before the first heading).
    pub heading: String,
    /// Byte offset in the normalized text where the section starts.
    pub start: usize,
}

/// A paragraph's place in the normalized text.
#[derive(Debug, Clone, PartialEq)]
pub struct Paragraph {
    /// Byte range in the normalized text.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// Index into [`BookText::sections`].
    pub section: usize,
    /// Page, when known.
    pub page: Option<PageRef>,
}

/// The normalized text of a book with its structure.
#[derive(Debug, Clone, Default)]
pub struct BookText {
    /// The normalized text passages point into.
    pub text: String,
    /// Sections in order; the first one may have an empty heading.
    pub sections: Vec<Section>,
    /// Paragraphs (headings included) in order.
    pub paragraphs: Vec<Paragraph>,
}

/// Normalizes one block's text: NFC, no control characters, whitespace runs
/// (line breaks included) folded to one space, trimmed.
pub fn normalize_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfc() {
        if c.is_whitespace() || c == '\u{00A0}' {
            pending_space = !out.is_empty();
        } else if c.is_control() || c == '\u{FEFF}' || c == '\u{00AD}' {
            // Control characters, stray BOMs and soft hyphens carry no text.
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Joins blocks into the normalized text and records sections and paragraphs.
pub fn assemble(document: &Document) -> BookText {
    let mut book = BookText::default();
    let mut path: Vec<(u8, String)> = Vec::new();
    for block in &document.blocks {
        let text = normalize_inline(&block.text);
        if text.is_empty() {
            continue;
        }
        if !book.text.is_empty() {
            book.text.push_str("\n\n");
        }
        let start = book.text.len();
        if let Some(level) = block.heading_level {
            while path.last().is_some_and(|(l, _)| *l >= level) {
                path.pop();
            }
            path.push((level, text.clone()));
            let heading = path.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" › ");
            book.sections.push(Section { heading, start });
        } else if book.sections.is_empty() {
            book.sections.push(Section {
                heading: String::new(),
                start,
            });
        }
        book.text.push_str(&text);
        let section = book.sections.len() - 1;
        book.paragraphs.push(Paragraph {
            start,
            end: book.text.len(),
            section,
            page: block.page.clone(),
        });
    }
    book
}

/// Converts byte offsets into char offsets for a sorted list of positions.
///
/// Walks the text once, so converting every passage boundary is linear.
pub fn byte_to_char_offsets(text: &str, sorted_bytes: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(sorted_bytes.len());
    let mut chars = 0usize;
    let mut iter = text.char_indices().peekable();
    for &target in sorted_bytes {
        while let Some(&(b, _)) = iter.peek() {
            if b >= target {
                break;
            }
            iter.next();
            chars += 1;
        }
        out.push(chars);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_joins_lines_and_tracks_heading_paths() {
        let doc = Document {
            blocks: vec![
                Block::paragraph("Front  matter"),
                Block::heading(1, "Part One"),
                Block::heading(2, "Chapter 1"),
                Block::paragraph("It is a truth\nuniversally acknowledged."),
                Block::heading(2, "Chapter 2"),
                Block::paragraph("Café"),
            ],
            ..Document::default()
        };
        let book = assemble(&doc);
        assert_eq!(
            book.text,
            "Front matter\n\nPart One\n\nChapter 1\n\nIt is a truth universally acknowledged.\n\nChapter 2\n\nCafé"
        );
        let headings: Vec<_> = book.sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["", "Part One", "Part One › Chapter 1", "Part One › Chapter 2"]);
        let p = &book.paragraphs[3];
        assert_eq!(&book.text[p.start..p.end], "It is a truth universally acknowledged.");
        assert_eq!(p.section, 2);
    }

    #[test]
    fn byte_offsets_become_char_offsets() {
        let text = "aé中b";
        assert_eq!(byte_to_char_offsets(text, &[0, 1, 3, 6, 7]), vec![0, 1, 2, 3, 4]);
    }
}
