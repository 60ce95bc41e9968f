//! HTML: the `<title>` (or first `<h1>`) and `<meta name="author">` give the
//! metadata; `<h1>`–`<h6>` become sections; block elements become paragraphs.
//! Script, style, template and other non-content elements are skipped.

use scraper::{ElementRef, Html, Node, Selector};

use crate::text::Document;

/// Parses decoded HTML.
pub fn parse(text: &str) -> Document {
    let html = Html::parse_document(text);
    let mut doc = Document::default();
    let title_sel = Selector::parse("title").expect("static selector");
    doc.title = html
        .select(&title_sel)
        .next()
        .map(|t| t.text().collect::<String>().trim().to_string())
        .filter(|t| !t.is_empty());
    let meta_sel = Selector::parse(r#"meta[name="author"], meta[name="dc.creator"], meta[name="DC.creator"]"#).expect("static selector");
    doc.author = html
        .select(&meta_sel)
        .find_map(|m| m.value().attr("content"))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    // <html lang="…">, else the Content-Language meta.
    doc.language = html
        .root_element()
        .value()
        .attr("lang")
        .or_else(|| html.root_element().value().attr("xml:lang"))
        .map(str::to_string)
        .or_else(|| {
            let sel = Selector::parse(r#"meta[http-equiv="Content-Language"], meta[name="language"], meta[name="dc.language"]"#)
                .expect("static selector");
            html.select(&sel).find_map(|m| m.value().attr("content")).map(str::to_string)
        })
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    let body_sel = Selector::parse("body").expect("static selector");
    let root = html.select(&body_sel).next().unwrap_or_else(|| html.root_element());
    let mut buf = String::new();
    walk(root, &mut doc, &mut buf, 0);
    doc.push_block(&mut buf, None);
    if doc.title.is_none() {
        doc.title = doc.blocks.iter().find(|b| b.heading_level == Some(1)).map(|b| b.text.clone());
    }
    doc
}

const SKIPPED: &[&str] = &[
    "script", "style", "template", "noscript", "head", "svg", "math", "iframe", "object", "button", "select", "nav",
];
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "blockquote",
    "pre",
    "li",
    "dd",
    "dt",
    "tr",
    "table",
    "ul",
    "ol",
    "dl",
    "figure",
    "figcaption",
    "address",
    "hr",
    "br",
    "caption",
    "details",
    "summary",
];

/// Nesting deeper than this is read as plain text: recursion must not be
/// able to overflow the stack on hostile input.
const MAX_DEPTH: usize = 256;

fn walk(element: ElementRef, doc: &mut Document, buf: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        for text in element.text() {
            buf.push_str(text);
        }
        return;
    }
    for child in element.children() {
        match child.value() {
            Node::Text(text) => buf.push_str(text),
            Node::Element(e) => {
                let name = e.name();
                if SKIPPED.contains(&name) {
                    continue;
                }
                let Some(child_ref) = ElementRef::wrap(child) else { continue };
                if let Some(level) = name
                    .strip_prefix('h')
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|l| (1..=6).contains(l))
                {
                    doc.push_block(buf, None);
                    walk(child_ref, doc, buf, depth + 1);
                    doc.push_block(buf, Some(level));
                } else if BLOCKS.contains(&name) {
                    doc.push_block(buf, None);
                    walk(child_ref, doc, buf, depth + 1);
                    doc.push_block(buf, font_heading(child_ref));
                } else {
                    if matches!(name, "td" | "th") && !buf.trim().is_empty() {
                        buf.push_str(" | ");
                    }
                    walk(child_ref, doc, buf, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// Old-style headings, as Mobipocket books and converted documents write
/// them: a block whose whole content is bold text in a large `<font size>`
/// (`<p><font size="7"><b>Title</b></font></p>`). Sizes 7, 6 and 5 (or +3,
/// +2, +1 over the default 3) become levels 1, 2 and 3.
fn font_heading(block: ElementRef) -> Option<u8> {
    let mut node = block;
    let (mut bold, mut size) = (false, 3i32);
    for _ in 0..8 {
        let mut elements = node.children().filter(|c| match c.value() {
            Node::Text(t) => !t.trim().is_empty(),
            Node::Element(_) => true,
            _ => false,
        });
        let only = elements.next()?;
        if elements.next().is_some() {
            break;
        }
        // Down to the text itself: the chain of wrappers is complete.
        let Some(element) = ElementRef::wrap(only) else { break };
        match element.value().name() {
            "b" | "strong" => bold = true,
            "font" => {
                if let Some(v) = element.value().attr("size").map(str::trim) {
                    size = match v.strip_prefix('+') {
                        Some(rel) => 3 + rel.parse::<i32>().ok()?,
                        None => v.parse().ok()?,
                    };
                }
            }
            "span" | "a" | "i" | "em" => {}
            _ => return None,
        }
        node = element;
    }
    let words = block.text().collect::<String>().split_whitespace().count();
    (bold && size >= 5 && (1..=20).contains(&words)).then(|| (8 - size.min(7)) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::assemble;

    #[test]
    fn title_headings_and_no_script_text() {
        let doc = parse(
            r#"<!DOCTYPE html><html><head><title>The Book</title><meta name="author" content="Ann Author"><style>p{color:red}</style></head>
            <body><script>var secret = 1;</script><h1>Part I</h1><h2>Chapter 1</h2><p>First <em>para</em>
            graph.</p><p>Second.</p><table><tr><td>a</td><td>b</td></tr></table></body></html>"#,
        );
        assert_eq!(doc.title.as_deref(), Some("The Book"));
        assert_eq!(doc.author.as_deref(), Some("Ann Author"));
        let book = assemble(&doc);
        assert!(!book.text.contains("secret") && !book.text.contains("color"));
        assert!(book.text.contains("First para graph.\n\nSecond.\n\na | b"), "{}", book.text);
        assert_eq!(book.sections.last().unwrap().heading, "Part I › Chapter 1");
    }

    #[test]
    fn large_bold_font_blocks_are_headings() {
        let doc = parse(
            r#"<html><body><p><font size="7"><b><font color="red">1. Kann das?</font></b></font></p><p>Ja.</p>
            <p><font size="5"><b>1.1 Weiter</b></font></p><p><font size="5"><b>bold</b> and plain</font></p></body></html>"#,
        );
        let levels: Vec<(Option<u8>, &str)> = doc.blocks.iter().map(|b| (b.heading_level, b.text.as_str())).collect();
        assert_eq!(
            levels,
            [
                (Some(1), "1. Kann das?"),
                (None, "Ja."),
                (Some(3), "1.1 Weiter"),
                (None, "bold and plain")
            ]
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let html = format!(
            "<html><body>{}deep text{}</body></html>",
            "<div>".repeat(5_000),
            "</div>".repeat(5_000)
        );
        let doc = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || parse(&html))
            .unwrap()
            .join()
            .unwrap();
        assert!(doc.blocks.iter().any(|b| b.text.contains("deep text")));
    }
}
