//! Markdown: headings become sections; paragraphs, list items, quotes, table
//! rows and code blocks become paragraphs. A YAML front matter block gives
//! title and author; otherwise the first level-1 heading is the title.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::text::Document;

/// Parses decoded Markdown.
pub fn parse(text: &str) -> Document {
    let mut doc = Document::default();
    let body = front_matter(text, &mut doc);
    let parser = Parser::new_ext(
        body,
        Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH,
    );
    let mut buf = String::new();
    let mut heading: Option<u8> = None;
    for event in parser {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut doc, &mut buf, None);
                heading = Some(level_number(level));
            }
            Event::End(TagEnd::Heading(_)) => {
                if heading == Some(1) && doc.title.is_none() && !buf.trim().is_empty() {
                    doc.title = Some(buf.trim().to_string());
                }
                flush(&mut doc, &mut buf, heading.take());
            }
            Event::End(
                TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow | TagEnd::TableHead | TagEnd::FootnoteDefinition,
            ) => flush(&mut doc, &mut buf, None),
            Event::Start(Tag::Item | Tag::TableRow | Tag::TableHead) => flush(&mut doc, &mut buf, None),
            Event::End(TagEnd::TableCell) => buf.push_str(" | "),
            Event::Text(t) | Event::Code(t) => buf.push_str(&t),
            Event::SoftBreak | Event::HardBreak => buf.push('\n'),
            Event::FootnoteReference(label) => {
                buf.push_str(&format!("[{label}]"));
            }
            _ => {}
        }
    }
    flush(&mut doc, &mut buf, None);
    doc
}

fn flush(doc: &mut Document, buf: &mut String, heading: Option<u8>) {
    // Table rows end with a cell separator; drop the trailing one.
    let trimmed_len = buf.trim_end().trim_end_matches(" |").len();
    buf.truncate(trimmed_len);
    doc.push_block(buf, heading);
}

fn level_number(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Reads `title:` and `author:` from a leading `---` YAML block and returns
/// the rest of the text.
fn front_matter<'a>(text: &'a str, doc: &mut Document) -> &'a str {
    let trimmed = text.trim_start_matches('\u{feff}');
    let Some(rest) = trimmed.strip_prefix("---\n").or_else(|| trimmed.strip_prefix("---\r\n")) else {
        return text;
    };
    let Some(end) = rest.find("\n---") else {
        return text;
    };
    for line in rest[..end].lines() {
        if let Some((key, value)) = line.split_once(':') {
            let value = value.trim().trim_matches(['"', '\'']).to_string();
            match key.trim().to_ascii_lowercase().as_str() {
                "title" if !value.is_empty() => doc.title = Some(value),
                "author" if !value.is_empty() => doc.author = Some(value),
                "lang" | "language" if !value.is_empty() => doc.language = Some(value),
                _ => {}
            }
        }
    }
    let after = &rest[end + 4..];
    after.split_once('\n').map_or("", |(_, body)| body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::assemble;

    #[test]
    fn headings_lists_tables_and_front_matter() {
        let doc = parse("---\ntitle: \"Field Notes\"\nauthor: A. Writer\n---\n# Intro\n\nSome *text*\nwrapped.\n\n## Birds\n\n- robin\n- wren\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(doc.title.as_deref(), Some("Field Notes"));
        assert_eq!(doc.author.as_deref(), Some("A. Writer"));
        let book = assemble(&doc);
        assert!(book.text.contains("Some text wrapped."), "{}", book.text);
        assert!(book.text.contains("robin\n\nwren"));
        assert!(book.text.contains("1 | 2"));
        let headings: Vec<_> = book.sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["Intro", "Intro › Birds"]);
    }
}
