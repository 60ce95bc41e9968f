//! PDF: text per page in reading order, page labels, outline chapters,
//! document metadata — built on PDFium's character boxes (see [`pdfium`]).
//!
//! PDFium gives characters with boxes in content-stream order. That order is
//! often, but not always, the reading order: some producers write two columns
//! line by line across the page. So the parser rebuilds the layout itself:
//! characters → lines → a recursive XY-cut that reads a column to its end
//! before the next → paragraphs by line spacing. Running heads and page
//! numbers that repeat on many pages are dropped; words hyphenated at a line
//! end are joined. The outline (bookmarks) supplies chapter headings at the
//! exact place on the page they point at; without an outline, lines set
//! clearly larger than the body text become headings.
//!
//! [`pdfium`]: super::pdfium

use std::collections::HashMap;
use std::path::Path;

use super::pdfium::{self, Char, OutlineEntry, PdfiumError};
use super::ParseError;
use crate::text::{Block, Document, PageRef};

/// Outline entries read at most; a broken outline can be endless.
const MAX_OUTLINE: usize = 20_000;
/// Below this many characters per page on average, a PDF with images is a scan.
const MIN_CHARS_PER_PAGE: usize = 50;

/// PDFium's markers for a hyphen it removed at a line end.
fn is_soft_hyphen_marker(c: char) -> bool {
    matches!(c, '\u{2}' | '\u{FFFE}' | '\u{AD}')
}

/// One line of text on a page.
#[derive(Debug, Clone)]
struct Line {
    text: String,
    left: f32,
    right: f32,
    bottom: f32,
    top: f32,
    /// Median font size of the line's characters.
    size: f32,
    /// The line ends in a hyphen that splits a word.
    hyphenated: bool,
}

impl Line {
    fn height(&self) -> f32 {
        (self.top - self.bottom).max(0.1)
    }
}

/// Parses a PDF with PDFium loaded from `library`.
pub fn parse(bytes: &[u8], library: &Path) -> Result<Document, ParseError> {
    let pdfium = pdfium::load(library).map_err(|e| ParseError::Invalid(e.to_string()))?;
    let doc = pdfium.open_document(bytes).map_err(|e| match e {
        PdfiumError::Encrypted | PdfiumError::Security => ParseError::Invalid(e.to_string()),
        other => ParseError::Invalid(other.to_string()),
    })?;
    let count = doc.page_count();
    if count == 0 {
        return Err(ParseError::Invalid("damaged PDF: it has no pages".into()));
    }

    let mut pages: Vec<Vec<Line>> = Vec::with_capacity(count);
    let mut images = 0usize;
    let mut text_chars = 0usize;
    for index in 0..count {
        let Some(page) = doc.page(index) else {
            pages.push(Vec::new());
            continue;
        };
        images += page.images;
        let lines = order_lines(build_lines(&page.chars));
        text_chars += lines
            .iter()
            .map(|l| l.text.chars().filter(|c| !c.is_whitespace()).count())
            .sum::<usize>();
        pages.push(lines);
    }
    // A page of a real text PDF holds thousands of characters. Images with
    // next to no text (a stray caption, a chart's labels) are a scan.
    if images > 0 && text_chars < MIN_CHARS_PER_PAGE * count {
        return Err(ParseError::Invalid(format!(
            "no text layer (scanned PDF): {count} page(s) of images and {text_chars} characters of text; run OCR on it first"
        )));
    }
    if text_chars == 0 {
        return Err(ParseError::Empty);
    }
    drop_running_heads(&mut pages);

    let labels: Vec<PageRef> = (0..count)
        .map(|i| PageRef {
            number: i as u32 + 1,
            label: doc.page_label(i),
        })
        .collect();
    let outline = doc.outline(MAX_OUTLINE);
    let mut document = Document {
        title: doc.meta("Title"),
        author: doc.meta("Author"),
        language: doc.language(),
        blocks: Vec::new(),
    };
    let body_size = body_font_size(&pages);
    let mut by_page: HashMap<usize, Vec<&OutlineEntry>> = HashMap::new();
    for entry in &outline {
        if entry.page < count {
            by_page.entry(entry.page).or_default().push(entry);
        }
    }
    for (index, lines) in pages.iter().enumerate() {
        let page = &labels[index];
        let mut headings = by_page.remove(&index).unwrap_or_default();
        // Top of the page first (PDF y grows upwards); entries without a
        // position go first, in outline order.
        headings.sort_by(|a, b| b.y.unwrap_or(f32::MAX).total_cmp(&a.y.unwrap_or(f32::MAX)));
        let mut pending = headings.into_iter().peekable();
        let mut skip_title: Option<String> = None;
        for para in paragraphs(lines) {
            while let Some(entry) = pending.next_if(|e| e.y.is_none_or(|y| para.top <= y + 2.0)) {
                document
                    .blocks
                    .push(Block::heading(entry.level, &entry.title).on_page(page.clone()));
                skip_title = Some(entry.title.clone());
            }
            let mut text = para.text.as_str();
            if let Some(title) = skip_title.take() {
                // The heading is printed on the page too; don't index it twice.
                match strip_title(text, &title) {
                    Some(rest) if rest.trim().is_empty() => continue,
                    Some(rest) => text = rest,
                    None => {}
                }
            }
            let heading = (outline.is_empty() && looks_like_heading(&para, body_size)).then(|| heading_level(para.size, body_size));
            match heading {
                Some(level) => document.blocks.push(Block::heading(level, text).on_page(page.clone())),
                None => document.blocks.push(Block::paragraph(text).on_page(page.clone())),
            }
        }
        for entry in pending {
            document
                .blocks
                .push(Block::heading(entry.level, &entry.title).on_page(page.clone()));
        }
    }
    Ok(document)
}

/// Groups a page's characters into lines. PDFium marks line ends with
/// (usually generated) CR/LF; a jump to a different baseline also ends a line.
fn build_lines(chars: &[Char]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut current: Vec<&Char> = Vec::new();
    let mut text = String::new();
    let mut hyphen = false;
    let flush = |current: &mut Vec<&Char>, text: &mut String, hyphen: &mut bool, lines: &mut Vec<Line>| {
        let boxed: Vec<&&Char> = current.iter().filter(|c| !c.c.is_whitespace() && c.right > c.left).collect();
        if !boxed.is_empty() && !text.trim().is_empty() {
            let mut sizes: Vec<f32> = boxed.iter().map(|c| c.size).collect();
            sizes.sort_by(f32::total_cmp);
            lines.push(Line {
                text: std::mem::take(text).trim().to_string(),
                left: boxed.iter().map(|c| c.left).fold(f32::MAX, f32::min),
                right: boxed.iter().map(|c| c.right).fold(f32::MIN, f32::max),
                bottom: boxed.iter().map(|c| c.bottom).fold(f32::MAX, f32::min),
                top: boxed.iter().map(|c| c.top).fold(f32::MIN, f32::max),
                size: sizes[sizes.len() / 2],
                hyphenated: *hyphen,
            });
        }
        text.clear();
        current.clear();
        *hyphen = false;
    };
    for ch in chars {
        if ch.c == '\r' || ch.c == '\n' {
            flush(&mut current, &mut text, &mut hyphen, &mut lines);
            continue;
        }
        if is_soft_hyphen_marker(ch.c) {
            // PDFium keeps the word whole across the break; the rest of the
            // word is on the next line, so end this one as hyphenated.
            flush(&mut current, &mut text, &mut true.clone(), &mut lines);
            if let Some(last) = lines.last_mut() {
                last.hyphenated = true;
            }
            continue;
        }
        let visible = !ch.c.is_whitespace() && ch.right > ch.left;
        if visible {
            // Compare with the line so far, not the previous glyph: a comma or
            // an apostrophe has a small box off the middle of the line.
            let mut boxed = current.iter().filter(|c| !c.c.is_whitespace() && c.right > c.left).peekable();
            if boxed.peek().is_some() {
                let (mut bottom, mut top, mut prev) = (f32::MAX, f32::MIN, None);
                for c in boxed {
                    bottom = bottom.min(c.bottom);
                    top = top.max(c.top);
                    prev = Some(*c);
                }
                let prev = prev.expect("non-empty");
                let mid = (ch.bottom + ch.top) / 2.0;
                let new_baseline = mid < bottom - 1.0 || mid > top + 1.0;
                let far_back = ch.right < prev.left - 2.0 * prev.size.max(1.0);
                if new_baseline || far_back {
                    flush(&mut current, &mut text, &mut hyphen, &mut lines);
                }
            }
        }
        if ch.c.is_control() {
            continue;
        }
        current.push(ch);
        text.push(ch.c);
    }
    flush(&mut current, &mut text, &mut hyphen, &mut lines);
    lines
}

/// Orders lines for reading with a recursive XY-cut: a region is split at
/// its widest empty horizontal or vertical band, top before bottom and left
/// before right, so a column is read to its end before the next one starts.
fn order_lines(lines: Vec<Line>) -> Vec<Line> {
    let mut out = Vec::with_capacity(lines.len());
    xy_cut(lines, &mut out, 0);
    out
}

fn xy_cut(mut lines: Vec<Line>, out: &mut Vec<Line>, depth: usize) {
    if lines.len() <= 1 || depth > 64 {
        lines.sort_by(|a, b| b.top.total_cmp(&a.top).then(a.left.total_cmp(&b.left)));
        out.extend(lines);
        return;
    }
    let mut heights: Vec<f32> = lines.iter().map(Line::height).collect();
    heights.sort_by(f32::total_cmp);
    let line_height = heights[heights.len() / 2];

    // Widest vertical gutter (an x band no line crosses), wide enough to be
    // a column gap and with real text on both sides.
    let vertical = widest_gap(lines.iter().map(|l| (l.left, l.right)))
        .filter(|&(_, gap)| gap >= (1.2 * line_height).max(6.0))
        .filter(|&(at, _)| {
            let left = lines.iter().filter(|l| l.right <= at).count();
            let right = lines.len() - left;
            left >= 2 && right >= 2
        });
    // Widest horizontal band between lines (y grows upwards).
    let horizontal = widest_gap(lines.iter().map(|l| (l.bottom, l.top)));

    match (vertical, horizontal) {
        (Some((at, gap)), h) if h.is_none_or(|(_, hgap)| gap > hgap) => {
            let (left, right): (Vec<Line>, Vec<Line>) = lines.into_iter().partition(|l| l.right <= at);
            xy_cut(left, out, depth + 1);
            xy_cut(right, out, depth + 1);
        }
        (_, Some((at, gap))) if gap > 0.5 * line_height => {
            let (top, bottom): (Vec<Line>, Vec<Line>) = lines.into_iter().partition(|l| l.bottom >= at);
            xy_cut(top, out, depth + 1);
            xy_cut(bottom, out, depth + 1);
        }
        _ => {
            // No clear cut: rows top to bottom (lines whose middles are
            // close share a row), each row left to right.
            lines.sort_by(|a, b| b.top.total_cmp(&a.top));
            let mut row: Vec<Line> = Vec::new();
            let mut row_mid = f32::MAX;
            for line in lines {
                let mid = (line.bottom + line.top) / 2.0;
                if !row.is_empty() && (row_mid - mid).abs() >= 0.5 * line_height {
                    row.sort_by(|a, b| a.left.total_cmp(&b.left));
                    out.append(&mut row);
                }
                if row.is_empty() {
                    row_mid = mid;
                }
                row.push(line);
            }
            row.sort_by(|a, b| a.left.total_cmp(&b.left));
            out.append(&mut row);
        }
    }
}

/// The widest gap between intervals, as (middle of the gap, width).
fn widest_gap(intervals: impl Iterator<Item = (f32, f32)>) -> Option<(f32, f32)> {
    let mut spans: Vec<(f32, f32)> = intervals.collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best: Option<(f32, f32)> = None;
    let mut reach = spans.first()?.1;
    for &(start, end) in &spans[1..] {
        if start > reach {
            let gap = start - reach;
            if best.is_none_or(|(_, g)| gap > g) {
                best = Some(((start + reach) / 2.0, gap));
            }
        }
        reach = reach.max(end);
    }
    best
}

/// Drops running heads and page numbers: a page's first or last line whose
/// text, digits aside, recurs at the top or bottom of many pages.
fn drop_running_heads(pages: &mut [Vec<Line>]) {
    if pages.len() < 4 {
        return;
    }
    let key = |l: &Line| {
        l.text
            .chars()
            .filter(|c| !c.is_ascii_digit() && !c.is_whitespace())
            .collect::<String>()
            .to_lowercase()
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for lines in pages.iter() {
        let mut keys: Vec<String> = Vec::new();
        for line in lines.iter().take(2).chain(lines.iter().rev().take(2)) {
            keys.push(key(line));
        }
        keys.sort();
        keys.dedup();
        for k in keys {
            *counts.entry(k).or_default() += 1;
        }
    }
    // Running heads change with the chapter, so a head recurs on only the
    // pages of its chapter: a low threshold still catches it.
    let threshold = (pages.len() / 20).max(3);
    let is_furniture = |l: &Line| {
        let k = key(l);
        let roman = !l.text.is_empty() && l.text.chars().all(|c| "ivxlcdmIVXLCDM".contains(c));
        k.is_empty() || roman || counts.get(&k).is_some_and(|&n| n >= threshold)
    };
    for lines in pages.iter_mut() {
        for _ in 0..2 {
            if lines.first().is_some_and(|l| is_furniture(l) && l.text.chars().count() < 120) {
                lines.remove(0);
            }
        }
        for _ in 0..2 {
            if lines.last().is_some_and(|l| is_furniture(l) && l.text.chars().count() < 120) {
                lines.pop();
            }
        }
    }
}

/// A paragraph assembled from consecutive lines.
struct Para {
    text: String,
    top: f32,
    size: f32,
    lines: usize,
}

/// Joins lines into paragraphs: a new paragraph starts after a gap larger
/// than the usual line spacing, at a change of font size, when the reading
/// order jumps (a new column), or after a short line ending a sentence.
fn paragraphs(lines: &[Line]) -> Vec<Para> {
    let mut out: Vec<Para> = Vec::new();
    let mut gaps: Vec<f32> = lines.windows(2).map(|w| w[0].bottom - w[1].top).filter(|g| *g >= 0.0).collect();
    gaps.sort_by(f32::total_cmp);
    let usual_gap = gaps.get(gaps.len() / 2).copied().unwrap_or(2.0);
    let max_right = lines.iter().map(|l| l.right).fold(f32::MIN, f32::max);
    let mut prev: Option<&Line> = None;
    for line in lines {
        let new_para = match prev {
            None => true,
            Some(p) => {
                let gap = p.bottom - line.top;
                let jumped = gap < -p.height() || line.left > p.right;
                let spaced = gap > usual_gap + 0.6 * p.height().min(line.height());
                let resized = (line.size - p.size).abs() > 0.15 * p.size.max(line.size);
                let ended = p.right < max_right - 0.15 * (max_right - p.left).max(1.0)
                    && p.text.ends_with(['.', '!', '?', ':', '"', '”', '\'', '’'])
                    && !p.hyphenated;
                // A first-line indent after a sentence end starts a paragraph.
                let indent = line.left - p.left;
                let indented = indent > 0.8 * p.size && indent < 6.0 * p.size && p.text.ends_with(['.', '!', '?', ':', '"', '”']);
                jumped || spaced || resized || ended || indented
            }
        };
        if new_para {
            out.push(Para {
                text: line.text.clone(),
                top: line.top,
                size: line.size,
                lines: 1,
            });
        } else if let Some(para) = out.last_mut() {
            let hyphenated = prev.is_some_and(|p| p.hyphenated);
            if hyphenated {
                if para.text.ends_with('-') && !para.text.ends_with("--") {
                    para.text.pop();
                }
            } else {
                para.text.push(' ');
            }
            para.text.push_str(&line.text);
            para.lines += 1;
        }
        prev = Some(line);
    }
    out
}

/// The font size most characters of the book are set in.
fn body_font_size(pages: &[Vec<Line>]) -> f32 {
    let mut weight: HashMap<u32, usize> = HashMap::new();
    for line in pages.iter().flatten() {
        *weight.entry((line.size * 2.0).round() as u32).or_default() += line.text.len();
    }
    weight
        .into_iter()
        .max_by_key(|&(size, n)| (n, size))
        .map_or(10.0, |(size, _)| size as f32 / 2.0)
}

/// Without an outline: a short paragraph clearly larger than the body text,
/// not ending like a sentence, is a heading.
fn looks_like_heading(para: &Para, body: f32) -> bool {
    para.size >= body * 1.2 && para.lines <= 3 && para.text.split_whitespace().count() <= 14 && !para.text.ends_with(['.', ',', ';'])
}

fn heading_level(size: f32, body: f32) -> u8 {
    match size / body {
        r if r >= 1.7 => 1,
        r if r >= 1.4 => 2,
        _ => 3,
    }
}

/// When `text` starts with `title` (ignoring case, spacing and punctuation,
/// and a section number such as "1", "2.3" or "IV." before it), returns the rest.
fn strip_title<'a>(text: &'a str, title: &str) -> Option<&'a str> {
    strip_exact(text, title).or_else(|| {
        let (number, rest) = text.split_once(char::is_whitespace)?;
        let numbered = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.' || "IVXLivxl".contains(c));
        if numbered {
            strip_exact(rest, title)
        } else {
            None
        }
    })
}

fn strip_exact<'a>(text: &'a str, title: &str) -> Option<&'a str> {
    let want: Vec<char> = title.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
    if want.is_empty() {
        return None;
    }
    let mut matched = 0;
    for (i, c) in text.char_indices() {
        if !c.is_alphanumeric() {
            continue;
        }
        let mut lower = c.to_lowercase();
        if lower.all(|l| {
            want.get(matched) == Some(&l) && {
                matched += 1;
                true
            }
        }) {
            if matched == want.len() {
                return Some(&text[i + c.len_utf8()..]);
            }
        } else {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, left: f32, right: f32, top: f32) -> Line {
        Line {
            text: text.into(),
            left,
            right,
            bottom: top - 10.0,
            top,
            size: 10.0,
            hyphenated: false,
        }
    }

    #[test]
    fn two_columns_are_read_one_after_the_other() {
        // A title across the page, then two columns whose lines share baselines.
        let mut lines = vec![line("Title", 100.0, 400.0, 800.0)];
        for i in 0..5 {
            let top = 760.0 - 14.0 * i as f32;
            lines.push(line(&format!("L{i}"), 50.0, 280.0, top));
            lines.push(line(&format!("R{i}"), 310.0, 540.0, top));
        }
        let order: Vec<String> = order_lines(lines).into_iter().map(|l| l.text).collect();
        assert_eq!(order, ["Title", "L0", "L1", "L2", "L3", "L4", "R0", "R1", "R2", "R3", "R4"]);
    }

    #[test]
    fn single_column_keeps_top_to_bottom_order() {
        let lines: Vec<Line> = (0..6)
            .map(|i| line(&format!("{i}"), 50.0, 500.0 - 30.0 * (i % 2) as f32, 700.0 - 12.0 * i as f32))
            .collect();
        let order: Vec<String> = order_lines(lines).into_iter().map(|l| l.text).collect();
        assert_eq!(order, ["0", "1", "2", "3", "4", "5"]);
    }

    #[test]
    fn hyphenated_lines_join_into_one_word() {
        let mut a = line("an exam-", 50.0, 500.0, 700.0);
        a.hyphenated = true;
        let b = line("ple of joining", 50.0, 300.0, 688.0);
        let paras = paragraphs(&[a, b]);
        assert_eq!(paras.len(), 1);
        assert_eq!(paras[0].text, "an example of joining");
    }

    #[test]
    fn titles_are_stripped_from_the_text_they_start() {
        assert_eq!(
            strip_title("1 Introduction and preliminaries", "1 Introduction and preliminaries"),
            Some("")
        );
        assert_eq!(
            strip_title("2.1  Vectors and assignment The rest", "2.1 Vectors and assignment"),
            Some(" The rest")
        );
        assert_eq!(strip_title("Something else", "Vectors"), None);
        assert_eq!(strip_title("1 Foo Hello", "Foo"), Some(" Hello"));
    }
}
