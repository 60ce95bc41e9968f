//! FictionBook 2: nested `section`s with their `title`s become chapters
//! (nesting depth = heading level), `subtitle`s the level below; paragraphs, verses, subtitles, epigraphs
//! and citations become paragraphs; a `notes` body is kept under "Notes";
//! title, author and language come from `description/title-info`. Embedded
//! images (`binary`) are skipped.

use super::xml::{attr, walk, XmlEvent};
use super::ParseError;
use crate::text::{Block, Document};

/// Whether the bytes look like a FictionBook document.
pub fn sniff(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]);
    head.contains("<FictionBook")
}

/// Decodes the XML using the encoding its declaration names (FB2 files are
/// often windows-1251).
fn decode(bytes: &[u8]) -> String {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_lowercase();
    let label = head
        .split("encoding=")
        .nth(1)
        .and_then(|rest| rest.trim_start_matches(['"', '\'']).split(['"', '\'']).next().map(str::to_string));
    match label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes())) {
        Some(enc) if enc != encoding_rs::UTF_8 => enc.decode_with_bom_removal(bytes).0.into_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Parses an FB2 file.
pub fn parse(bytes: &[u8]) -> Result<Document, ParseError> {
    let xml = decode(bytes);
    let mut doc = Document::default();
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut title_parts: Vec<String> = Vec::new();
    let (mut in_title, mut notes_body, mut skip) = (false, false, 0usize);
    let mut section_depth = 0u8;
    let mut notes: Vec<Block> = Vec::new();
    let (mut first, mut middle, mut last, mut book_title) = (String::new(), String::new(), String::new(), String::new());
    let mut authors: Vec<String> = Vec::new();
    let mut language = String::new();
    walk(&xml, "the FB2 document", |ev| match ev {
        XmlEvent::Start { name, attrs } => {
            if name == "binary" {
                skip += 1;
            }
            if name == "body" {
                notes_body = attr(&attrs, "name").is_some_and(|n| n == "notes" || n == "comments");
                section_depth = 0;
            }
            if name == "section" {
                section_depth = section_depth.saturating_add(1);
            }
            if name == "title" && path.last().map(String::as_str) != Some("title-info") {
                in_title = true;
                title_parts.clear();
            }
            if matches!(
                name.as_str(),
                "p" | "v" | "subtitle" | "text-author" | "first-name" | "middle-name" | "last-name" | "nickname" | "book-title" | "lang"
            ) {
                buf.clear();
            }
            path.push(name);
        }
        XmlEvent::End { name } => {
            path.pop();
            let in_info = path.iter().any(|p| p == "title-info");
            match name.as_str() {
                "binary" => skip = skip.saturating_sub(1),
                "first-name" | "middle-name" | "last-name" | "nickname" if in_info && path.last().map(String::as_str) == Some("author") => {
                    let v = buf.trim().to_string();
                    match name.as_str() {
                        "first-name" => first = v,
                        "middle-name" => middle = v,
                        _ => last = v,
                    }
                    buf.clear();
                }
                "author" if in_info => {
                    let full = [first.as_str(), middle.as_str(), last.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if !full.is_empty() {
                        authors.push(full);
                    }
                    first.clear();
                    middle.clear();
                    last.clear();
                }
                "book-title" if in_info => {
                    book_title = buf.trim().to_string();
                    buf.clear();
                }
                "lang" if in_info && language.is_empty() => {
                    language = buf.trim().to_string();
                    buf.clear();
                }
                // A subtitle's paragraph is the subtitle's text.
                "p" if path.last().map(String::as_str) == Some("subtitle") => {}
                "subtitle" if !in_title && !notes_body && !path.iter().any(|p| p == "description") => {
                    let text = buf.trim().to_string();
                    buf.clear();
                    if !text.is_empty() {
                        doc.blocks.push(Block::heading(section_depth.saturating_add(1), text));
                    }
                }
                "p" | "v" | "subtitle" | "text-author" => {
                    let text = buf.trim().to_string();
                    buf.clear();
                    if text.is_empty() || path.iter().any(|p| p == "description") {
                        return;
                    }
                    if in_title {
                        title_parts.push(text);
                    } else if notes_body {
                        notes.push(Block::paragraph(text));
                    } else {
                        doc.blocks.push(Block::paragraph(text));
                    }
                }
                "title" if in_title => {
                    in_title = false;
                    let heading = title_parts.join(". ");
                    // The body's own title repeats the book title: not a chapter.
                    if heading.is_empty() || section_depth == 0 {
                        return;
                    }
                    if notes_body {
                        notes.push(Block::paragraph(heading));
                    } else {
                        doc.blocks.push(Block::heading(section_depth, heading));
                    }
                }
                "section" => section_depth = section_depth.saturating_sub(1),
                _ => {}
            }
        }
        XmlEvent::Text(t) => {
            if skip == 0 {
                buf.push_str(&t);
            }
        }
    })?;
    if !notes.is_empty() {
        doc.blocks.push(Block::heading(1, "Notes"));
        doc.blocks.extend(notes);
    }
    doc.title = (!book_title.is_empty()).then_some(book_title);
    doc.author = (!authors.is_empty()).then(|| authors.join(", "));
    doc.language = (!language.is_empty()).then_some(language);
    Ok(doc)
}
