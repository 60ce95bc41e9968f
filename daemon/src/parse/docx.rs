//! DOCX (Office Open XML): paragraphs in document order; paragraphs whose
//! style is a heading (or has an outline level) become chapters; tables
//! become one line per row; list items keep a bullet; footnotes and endnotes
//! are kept (marked `[n]` in the text and listed under "Notes" at the end);
//! title and author come from the document properties.

use std::collections::HashMap;

use super::archive::Archive;
use super::xml::{attr, first_text, walk, Tables, XmlEvent};
use super::ParseError;
use crate::text::{Block, Document};

/// Whether a zip holds a Word document.
pub fn sniff_entries(archive: &Archive) -> bool {
    archive.resolve("word/document.xml").is_some()
}

/// Heading level per style id, from `word/styles.xml`.
fn heading_styles(styles: &str) -> HashMap<String, u8> {
    let mut levels = HashMap::new();
    let (mut current, mut name, mut outline): (Option<String>, String, Option<u8>) = (None, String::new(), None);
    let _ = walk(styles, "styles.xml", |ev| match ev {
        XmlEvent::Start { name: n, attrs } if n == "style" => {
            current = attr(&attrs, "styleId").map(str::to_string);
            name.clear();
            outline = None;
        }
        XmlEvent::Start { name: n, attrs } if n == "name" && current.is_some() => name = attr(&attrs, "val").unwrap_or("").to_lowercase(),
        XmlEvent::Start { name: n, attrs } if n == "outlineLvl" && current.is_some() => {
            outline = attr(&attrs, "val")
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|l| *l < 9)
                .map(|l| l + 1);
        }
        XmlEvent::End { name: n } if n == "style" => {
            if let Some(id) = current.take() {
                let from_name = name.strip_prefix("heading ").and_then(|l| l.trim().parse::<u8>().ok());
                let level = if name == "title" { Some(1) } else { from_name.or(outline) };
                if let Some(level) = level {
                    levels.insert(id, level);
                }
            }
        }
        _ => {}
    });
    levels
}

/// Paragraph collector shared by the body and the notes.
#[derive(Default)]
struct Collector {
    blocks: Vec<Block>,
    /// Open paragraphs (text boxes nest paragraphs inside paragraphs).
    stack: Vec<(String, Option<u8>, bool)>,
    in_text: bool,
    tables: Tables,
}

impl Collector {
    fn on(&mut self, ev: XmlEvent, styles: &HashMap<String, u8>) {
        match ev {
            XmlEvent::Start { name, attrs } => match name.as_str() {
                "p" => self.stack.push((String::new(), None, false)),
                "pStyle" => {
                    if let (Some(top), Some(id)) = (self.stack.last_mut(), attr(&attrs, "val")) {
                        top.1 = styles
                            .get(id)
                            .copied()
                            .or_else(|| id.to_lowercase().strip_prefix("heading").and_then(|l| l.parse().ok()));
                    }
                }
                "outlineLvl" => {
                    if let (Some(top), Some(l)) = (self.stack.last_mut(), attr(&attrs, "val").and_then(|v| v.parse::<u8>().ok())) {
                        if l < 9 {
                            top.1 = Some(l + 1);
                        }
                    }
                }
                "numPr" => {
                    if let Some(top) = self.stack.last_mut() {
                        top.2 = true;
                    }
                }
                "t" => self.in_text = true,
                "tab" => self.push_text(" "),
                "br" | "cr" => self.push_text("\n"),
                "footnoteReference" | "endnoteReference" => {
                    let id = attr(&attrs, "id").unwrap_or("?").to_string();
                    self.push_text(&format!("[{id}]"));
                }
                "tr" => self.tables.start_row(),
                _ => {}
            },
            XmlEvent::End { name } => match name.as_str() {
                "t" => self.in_text = false,
                "p" => {
                    let Some((text, level, listed)) = self.stack.pop() else { return };
                    let text = text.trim().to_string();
                    if text.is_empty() {
                        return;
                    }
                    let Some(text) = self.tables.add_paragraph(text) else { return };
                    if let Some(level) = level {
                        self.blocks.push(Block::heading(level, text));
                    } else if listed {
                        self.blocks.push(Block::paragraph(format!("• {text}")));
                    } else {
                        self.blocks.push(Block::paragraph(text));
                    }
                }
                "tc" => self.tables.end_cell(),
                "tr" => {
                    if let Some(line) = self.tables.end_row() {
                        self.blocks.push(Block::paragraph(line));
                    }
                }
                _ => {}
            },
            XmlEvent::Text(t) if self.in_text => self.push_text(&t),
            XmlEvent::Text(_) => {}
        }
    }

    fn push_text(&mut self, text: &str) {
        if let Some(top) = self.stack.last_mut() {
            top.0.push_str(text);
        }
    }
}

/// Footnotes or endnotes as "[id] text" paragraphs (separators skipped).
fn notes(xml: &str, what: &str, element: &str, styles: &HashMap<String, u8>) -> Result<Vec<Block>, ParseError> {
    let mut out = Vec::new();
    let mut current: Option<(String, Collector)> = None;
    walk(xml, what, |ev| match &ev {
        XmlEvent::Start { name, attrs } if name == element => {
            let skip = attr(attrs, "type").is_some_and(|t| t.contains("eparator") || t == "continuationNotice");
            current = (!skip).then(|| (attr(attrs, "id").unwrap_or("?").to_string(), Collector::default()));
        }
        XmlEvent::End { name } if name == element => {
            if let Some((id, c)) = current.take() {
                let text = c.blocks.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join(" ");
                if !text.trim().is_empty() {
                    out.push(Block::paragraph(format!("[{id}] {text}")));
                }
            }
        }
        _ => {
            if let Some((_, c)) = current.as_mut() {
                c.on(ev, styles);
            }
        }
    })?;
    Ok(out)
}

/// Parses a DOCX file.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    let mut archive = Archive::open(bytes, "DOCX")?;
    let main = archive
        .resolve("word/document.xml")
        .ok_or_else(|| ParseError::Invalid("not a DOCX: word/document.xml is missing".into()))?;
    let styles = match archive.resolve("word/styles.xml") {
        Some(name) => heading_styles(&archive.read_text(&name)?),
        None => HashMap::new(),
    };
    let body = archive.read_text(&main)?;
    let mut collector = Collector::default();
    walk(&body, "word/document.xml", |ev| collector.on(ev, &styles))?;
    let mut doc = Document {
        blocks: collector.blocks,
        ..Document::default()
    };

    let mut all_notes = Vec::new();
    for (file, element) in [("word/footnotes.xml", "footnote"), ("word/endnotes.xml", "endnote")] {
        if let Some(name) = archive.resolve(file) {
            all_notes.extend(notes(&archive.read_text(&name)?, file, element, &styles)?);
        }
    }
    if !all_notes.is_empty() {
        doc.blocks.push(Block::heading(1, "Notes"));
        doc.blocks.extend(all_notes);
    }
    if let Some(name) = archive.resolve("docProps/core.xml") {
        let core = archive.read_text(&name)?;
        doc.title = first_text(&core, "title");
        doc.author = first_text(&core, "creator");
        doc.language = first_text(&core, "language");
    }
    Ok(doc)
}
