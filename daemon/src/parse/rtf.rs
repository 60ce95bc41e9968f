//! RTF: text and paragraphs, headings from outline levels (or large bold
//! paragraphs), footnotes, tables as rows, title/author from `\info`.
//!
//! A small tokenizer walks groups and control words with a state stack.
//! Destinations that carry no readable text (font and colour tables, style
//! sheets, pictures, field instructions, anything marked `\*`) are skipped;
//! `\uN` with its `\ucN` fallback and `\'hh` in the document's code page
//! become Unicode.

use super::ParseError;
use crate::text::{Block, Document};

/// Nesting deeper than this is hostile; RTF written by tools rarely passes 30.
const MAX_DEPTH: usize = 512;

/// Destinations whose text is not part of the book.
const SKIP: &[&str] = &[
    "fonttbl",
    "colortbl",
    "stylesheet",
    "pict",
    "object",
    "header",
    "headerl",
    "headerr",
    "headerf",
    "footer",
    "footerl",
    "footerr",
    "footerf",
    "fldinst",
    "xmlnstbl",
    "listtable",
    "listoverridetable",
    "rsidtbl",
    "generator",
    "themedata",
    "colorschememapping",
    "datastore",
    "latentstyles",
    "pgdsctbl",
    "filetbl",
    "revtbl",
    "bkmkstart",
    "bkmkend",
    "comment",
    "annotation",
    "atnid",
    "atnauthor",
    "userprops",
    "nonshppict",
    "shppict",
    "blipuid",
    "mmathPr",
    "listtext",
    "pntext",
    "pntxta",
    "pntxtb",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dest {
    Body,
    Skip,
    Footnote,
    Title,
    Author,
    Info,
}

#[derive(Clone, Debug)]
struct State {
    dest: Dest,
    /// Fallback characters after `\uN`.
    uc: usize,
    bold: bool,
    /// Font size in half-points.
    size: u32,
    /// Paragraph outline level (0 = top), for headings.
    outline: Option<u8>,
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    encoding: &'static encoding_rs::Encoding,
    doc: Document,
    /// The paragraph being collected, with the state at its last text.
    para: String,
    para_bold: bool,
    para_size: u32,
    para_outline: Option<u8>,
    para_has_plain: bool,
    footnotes: Vec<String>,
    footnote: String,
    title: String,
    author: String,
    /// Pending `\'hh` bytes, decoded together (multi-byte code pages).
    hex: Vec<u8>,
}

/// Parses an RTF document.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    if !bytes.starts_with(b"{\\rtf") {
        return Err(ParseError::Invalid("not an RTF file: it does not start with {\\rtf".into()));
    }
    let mut p = Parser {
        bytes,
        pos: 0,
        encoding: encoding_rs::WINDOWS_1252,
        doc: Document::default(),
        para: String::new(),
        para_bold: false,
        para_size: 24,
        para_outline: None,
        para_has_plain: false,
        footnotes: Vec::new(),
        footnote: String::new(),
        title: String::new(),
        author: String::new(),
        hex: Vec::new(),
    };
    p.run()?;
    let mut doc = p.doc;
    doc.title = Some(p.title.trim().to_string()).filter(|t| !t.is_empty());
    doc.author = Some(p.author.trim().to_string()).filter(|t| !t.is_empty());
    Ok(doc)
}

impl Parser<'_> {
    fn run(&mut self) -> Result<(), ParseError> {
        let mut stack: Vec<State> = Vec::new();
        let mut state = State {
            dest: Dest::Body,
            uc: 1,
            bold: false,
            size: 24,
            outline: None,
        };
        // Whether the next control word opens a `\*` (ignorable) destination.
        let mut starred = false;
        // Whether the group just opened, so a control word names its destination.
        let mut group_start = false;
        let mut skip_chars = 0usize;
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            match b {
                b'{' => {
                    self.flush_hex(&state);
                    if stack.len() >= MAX_DEPTH {
                        return Err(ParseError::Invalid(format!("damaged RTF: groups nested deeper than {MAX_DEPTH}")));
                    }
                    stack.push(state.clone());
                    group_start = true;
                    starred = false;
                    self.pos += 1;
                }
                b'}' => {
                    self.flush_hex(&state);
                    if state.dest == Dest::Footnote && stack.last().is_some_and(|s| s.dest != Dest::Footnote) {
                        let note = std::mem::take(&mut self.footnote);
                        if !note.trim().is_empty() {
                            self.footnotes.push(note.trim().to_string());
                        }
                    }
                    match stack.pop() {
                        Some(s) => state = s,
                        // Text after the final brace is junk; stop there.
                        None => break,
                    }
                    group_start = false;
                    self.pos += 1;
                }
                b'\\' => {
                    let (word, param) = self.control();
                    let opening = std::mem::take(&mut group_start);
                    if word == "*" {
                        starred = true;
                        group_start = opening;
                        continue;
                    }
                    if skip_chars > 0 {
                        // The \u fallback: a char, a \'hh or a control symbol each count one.
                        if word == "'" || (word.len() == 1 && !word.as_bytes()[0].is_ascii_alphabetic()) {
                            skip_chars -= 1;
                            continue;
                        }
                        skip_chars = 0;
                    }
                    if word != "'" {
                        self.flush_hex(&state);
                    }
                    if opening && state.dest != Dest::Skip {
                        if word == "footnote" {
                            state.dest = Dest::Footnote;
                            starred = false;
                            continue;
                        }
                        if starred || SKIP.contains(&word.as_str()) {
                            state.dest = Dest::Skip;
                            starred = false;
                            continue;
                        }
                    }
                    starred = false;
                    if state.dest == Dest::Skip {
                        continue;
                    }
                    self.word(&word, param, &mut state, &mut skip_chars);
                }
                b'\r' | b'\n' => self.pos += 1,
                _ => {
                    group_start = false;
                    self.pos += 1;
                    if state.dest == Dest::Skip {
                        continue;
                    }
                    if skip_chars > 0 {
                        skip_chars -= 1;
                        continue;
                    }
                    if b >= 0x80 {
                        // Raw 8-bit text (not strictly RTF, but common): a code-page byte.
                        self.hex.push(b);
                        continue;
                    }
                    self.flush_hex(&state);
                    self.push_char(b as char, &state);
                }
            }
        }
        self.flush_hex(&state);
        self.end_paragraph();
        Ok(())
    }

    /// Reads a control word or symbol after the backslash.
    fn control(&mut self) -> (String, Option<i32>) {
        self.pos += 1;
        let Some(&c) = self.bytes.get(self.pos) else {
            return (String::new(), None);
        };
        if !c.is_ascii_alphabetic() {
            self.pos += 1;
            if c == b'\'' {
                let hex = self.bytes.get(self.pos..self.pos + 2).and_then(|h| std::str::from_utf8(h).ok());
                let value = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                self.pos += 2;
                return ("'".into(), value.map(i32::from));
            }
            return ((c as char).to_string(), None);
        }
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_alphabetic) && self.pos - start < 32 {
            self.pos += 1;
        }
        let word = String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned();
        let num_start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) && self.pos - num_start < 11 {
            self.pos += 1;
        }
        let param = std::str::from_utf8(&self.bytes[num_start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok());
        // One space after a control word is its delimiter, not text.
        if self.bytes.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        (word, param)
    }

    fn word(&mut self, word: &str, param: Option<i32>, state: &mut State, skip_chars: &mut usize) {
        let text = |p: &mut Self, s: &str, state: &State| s.chars().for_each(|c| p.push_char(c, state));
        match word {
            "'" => {
                if let Some(v) = param {
                    self.hex.push(v as u8);
                }
            }
            "ansicpg" => {
                if let Some(cp) = param {
                    self.encoding = codepage(cp);
                }
            }
            "u" => {
                if let Some(v) = param {
                    let v = if v < 0 { v + 65536 } else { v } as u32;
                    if let Some(c) = char::from_u32(v) {
                        self.push_char(c, state);
                    }
                    *skip_chars = state.uc;
                }
            }
            "uc" => state.uc = param.unwrap_or(1).clamp(0, 8) as usize,
            "info" => state.dest = Dest::Info,
            "title" if state.dest == Dest::Info => state.dest = Dest::Title,
            "author" if state.dest == Dest::Info => state.dest = Dest::Author,
            _ if state.dest == Dest::Info => state.dest = Dest::Skip,
            "par" | "sect" | "page" | "row" => {
                if state.dest == Dest::Footnote {
                    self.footnote.push('\n');
                } else {
                    self.end_paragraph();
                }
            }
            "line" => self.push_char('\n', state),
            "tab" | "cell" => self.push_char('\t', state),
            "pard" => {
                state.outline = None;
            }
            "plain" => {
                state.bold = false;
                state.size = 24;
            }
            "b" => state.bold = param != Some(0),
            "fs" => state.size = param.unwrap_or(24).clamp(1, 1000) as u32,
            "outlinelevel" => state.outline = param.map(|l| l.clamp(0, 8) as u8),
            "emdash" => text(self, "—", state),
            "endash" => text(self, "–", state),
            "lquote" => text(self, "‘", state),
            "rquote" => text(self, "’", state),
            "ldblquote" => text(self, "“", state),
            "rdblquote" => text(self, "”", state),
            "bullet" => text(self, "•", state),
            "~" => text(self, "\u{a0}", state),
            "_" => text(self, "-", state),
            "{" | "}" | "\\" => text(self, word, state),
            _ => {}
        }
    }

    fn flush_hex(&mut self, state: &State) {
        if self.hex.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.hex);
        let (decoded, _, _) = self.encoding.decode(&bytes);
        for c in decoded.chars() {
            self.push_char(c, state);
        }
    }

    fn push_char(&mut self, c: char, state: &State) {
        match state.dest {
            Dest::Skip | Dest::Info => {}
            Dest::Title => self.title.push(c),
            Dest::Author => self.author.push(c),
            Dest::Footnote => self.footnote.push(c),
            Dest::Body => {
                if !c.is_whitespace() {
                    self.para_outline = state.outline;
                    self.para_size = self.para_size.max(state.size);
                    if state.bold {
                        self.para_bold = true;
                    } else {
                        self.para_has_plain = true;
                    }
                }
                self.para.push(c);
            }
        }
    }

    fn end_paragraph(&mut self) {
        let mut text = std::mem::take(&mut self.para);
        let heading = match self.para_outline {
            Some(level) => Some(level + 1),
            // Word processors without outline levels: a short, all-bold,
            // large paragraph reads as a heading.
            None if self.para_bold && !self.para_has_plain && self.para_size >= 30 && text.split_whitespace().count() <= 12 => {
                Some(if self.para_size >= 36 { 1 } else { 2 })
            }
            None => None,
        };
        self.doc.push_block(&mut text, heading);
        for note in std::mem::take(&mut self.footnotes) {
            self.doc.blocks.push(Block::paragraph(note));
        }
        self.para_bold = false;
        self.para_has_plain = false;
        self.para_size = 0;
        self.para_outline = None;
    }
}

/// The encoding of a Windows code page number.
fn codepage(cp: i32) -> &'static encoding_rs::Encoding {
    use encoding_rs::*;
    match cp {
        874 => WINDOWS_874,
        932 => SHIFT_JIS,
        936 => GBK,
        949 => EUC_KR,
        950 => BIG5,
        1250 => WINDOWS_1250,
        1251 => WINDOWS_1251,
        1253 => WINDOWS_1253,
        1254 => WINDOWS_1254,
        1255 => WINDOWS_1255,
        1256 => WINDOWS_1256,
        1257 => WINDOWS_1257,
        1258 => WINDOWS_1258,
        65001 => UTF_8,
        _ => WINDOWS_1252,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_headings_unicode_and_skipped_tables() {
        let rtf = br#"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Times;}}{\info{\title Caf\'e9 Book}{\author Ann}}
{\pard\outlinelevel0\b\fs36 Chapter 1\par}
{\pard Hello {\i world}\'97 na\u239?ve {\*\generator Junk;}end.\par}
{\pard Note here{\footnote\pard The note.}.\par}
}"#;
        let doc = parse(rtf).unwrap();
        assert_eq!(doc.title.as_deref(), Some("Café Book"));
        assert_eq!(doc.author.as_deref(), Some("Ann"));
        let texts: Vec<(Option<u8>, &str)> = doc.blocks.iter().map(|b| (b.heading_level, b.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (Some(1), "Chapter 1"),
                (None, "Hello world— naïve end."),
                (None, "Note here."),
                (None, "The note.")
            ]
        );
    }

    #[test]
    fn hostile_nesting_fails_cleanly() {
        let mut rtf = b"{\\rtf1 ".to_vec();
        rtf.extend(std::iter::repeat_n(b'{', 100_000));
        assert!(matches!(parse(&rtf), Err(ParseError::Invalid(_))));
    }
}
