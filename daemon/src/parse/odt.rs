//! ODT (OpenDocument text): `text:h` headings (with their outline level)
//! become chapters, paragraphs and list items become paragraphs, tables one
//! line per row; footnotes are kept (`[n]` in the text, listed under "Notes"
//! at the end); title and author come from `meta.xml`.

use super::archive::Archive;
use super::xml::{attr, first_text, walk, Tables, XmlEvent};
use super::ParseError;
use crate::text::{Block, Document};

/// Whether a zip holds an OpenDocument text.
pub fn sniff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
        && bytes[..bytes.len().min(120)]
            .windows(39)
            .any(|w| w == b"application/vnd.oasis.opendocument.text")
}

#[derive(Default)]
struct State {
    blocks: Vec<Block>,
    notes: Vec<Block>,
    /// Open paragraphs/headings: (text, heading level).
    stack: Vec<(String, Option<u8>)>,
    /// Depth inside `note-body`: paragraphs there are notes.
    in_note_body: usize,
    note_citation: Option<String>,
    note_text: String,
    tables: Tables,
}

impl State {
    fn push_text(&mut self, text: &str) {
        if let Some(c) = self
            .note_citation
            .as_mut()
            .filter(|_| self.in_note_body == 0 && self.stack.is_empty())
        {
            c.push_str(text);
        } else if let Some(top) = self.stack.last_mut() {
            top.0.push_str(text);
        }
    }
}

/// Parses an ODT file.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    let mut archive = Archive::open(bytes, "ODT")?;
    let content = archive
        .resolve("content.xml")
        .ok_or_else(|| ParseError::Invalid("not an ODT: content.xml is missing".into()))?;
    let xml = archive.read_text(&content)?;
    let mut s = State::default();
    let mut in_citation = false;
    walk(&xml, "content.xml", |ev| match ev {
        XmlEvent::Start { name, attrs } => match name.as_str() {
            "h" => {
                let level = attr(&attrs, "outline-level").and_then(|l| l.parse::<u8>().ok()).unwrap_or(1);
                s.stack.push((String::new(), Some(level.max(1))));
            }
            "p" => s.stack.push((String::new(), None)),
            "s" => {
                let n = attr(&attrs, "c").and_then(|c| c.parse::<usize>().ok()).unwrap_or(1).min(8);
                s.push_text(&" ".repeat(n));
            }
            "tab" => s.push_text(" "),
            "line-break" => s.push_text("\n"),
            "note-citation" => in_citation = true,
            "note-body" => s.in_note_body += 1,
            "table-row" => s.tables.start_row(),
            _ => {}
        },
        XmlEvent::End { name } => match name.as_str() {
            "h" | "p" => {
                let Some((text, level)) = s.stack.pop() else { return };
                let text = text.trim().to_string();
                if text.is_empty() {
                    return;
                }
                if s.in_note_body > 0 {
                    if !s.note_text.is_empty() {
                        s.note_text.push(' ');
                    }
                    s.note_text.push_str(&text);
                } else if let Some(text) = s.tables.add_paragraph(text) {
                    s.blocks.push(match level {
                        Some(l) => Block::heading(l, text),
                        None => Block::paragraph(text),
                    });
                }
            }
            "note-citation" => in_citation = false,
            "note-body" => {
                s.in_note_body = s.in_note_body.saturating_sub(1);
                let citation = s.note_citation.take().unwrap_or_default();
                let text = std::mem::take(&mut s.note_text);
                if !text.is_empty() {
                    s.notes.push(Block::paragraph(format!("[{}] {text}", citation.trim())));
                }
            }
            "table-cell" => s.tables.end_cell(),
            "table-row" => {
                if let Some(line) = s.tables.end_row() {
                    s.blocks.push(Block::paragraph(line));
                }
            }
            _ => {}
        },
        XmlEvent::Text(t) => {
            if in_citation {
                // The citation shows in the text as [n] and labels the note.
                s.note_citation.get_or_insert_with(String::new).push_str(&t);
                if let Some(top) = s.stack.last_mut() {
                    top.0.push_str(&format!("[{}]", t.trim()));
                }
            } else {
                s.push_text(&t);
            }
        }
    })?;
    let mut doc = Document {
        blocks: s.blocks,
        ..Document::default()
    };
    if !s.notes.is_empty() {
        doc.blocks.push(Block::heading(1, "Notes"));
        doc.blocks.extend(s.notes);
    }
    if let Some(name) = archive.resolve("meta.xml") {
        let meta = archive.read_text(&name)?;
        doc.title = first_text(&meta, "title");
        doc.author = first_text(&meta, "initial-creator").or_else(|| first_text(&meta, "creator"));
        doc.language = first_text(&meta, "language");
    }
    Ok(doc)
}
