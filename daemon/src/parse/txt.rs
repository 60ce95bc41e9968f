//! Plain text: paragraphs are separated by blank lines; chapter headings,
//! title and author are recognised by the conventions books use.
//!
//! Headings are lines such as "Chapter 34", "CHAPTER IV", "Book II", "第三章",
//! or any short line underlined with `===`/`---`. Part-like words (volume,
//! book, part) make level-1 headings and the rest level 2, so a citation
//! reads "VOLUME II › CHAPTER 12". A short line right after a chapter heading
//! (Alice's "Down the Rabbit-Hole") joins it as the chapter's name.

use crate::text::{Block, Document};

/// Parses decoded plain text.
pub fn parse(text: &str) -> Document {
    let paragraphs = split_paragraphs(text);
    let mut doc = Document::default();
    let mut i = 0;
    while i < paragraphs.len() {
        let para = &paragraphs[i];
        if let Some(level) = heading_level(para) {
            let mut heading = para.join(" ");
            // A chapter's name often follows its number on a line of its own.
            if let Some(next) = paragraphs.get(i + 1) {
                if next.len() == 1 && is_chapter_name(&next[0]) && heading_level(next).is_none() {
                    heading = format!("{heading}. {}", next[0].trim());
                    i += 1;
                }
            }
            doc.blocks
                .push(Block::heading(level, heading.trim().trim_end_matches('.').to_string()));
        } else if let Some(underlined) = underlined_heading(para) {
            doc.blocks.push(Block::heading(2, underlined));
        } else {
            doc.blocks.push(Block::paragraph(para.join("\n")));
        }
        i += 1;
    }
    front_matter(&mut doc);
    doc
}

/// Lines grouped by blank lines (lines of only whitespace count as blank).
fn split_paragraphs(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line.to_string());
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

const PART_WORDS: &[&str] = &["volume", "book", "part"];
const CHAPTER_WORDS: &[&str] = &[
    "chapter",
    "canto",
    "section",
    "letter",
    "act",
    "scene",
    "stave",
    "prologue",
    "epilogue",
    "preface",
    "introduction",
    "appendix",
    "kapitel",
    "chapitre",
    "capítulo",
    "capitolo",
    "глава",
];

fn is_number_word(w: &str) -> bool {
    let w = w.trim_end_matches(['.', ':']);
    !w.is_empty()
        && (w.chars().all(|c| c.is_ascii_digit())
            || w.chars().all(|c| "ivxlcdmIVXLCDM".contains(c))
            || [
                "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "first", "second",
                "third", "fourth", "fifth", "last", "the",
            ]
            .contains(&w.to_lowercase().as_str()))
}

/// Level of a chapter-style heading paragraph, if it is one.
fn heading_level(para: &[String]) -> Option<u8> {
    if para.len() != 1 {
        return None;
    }
    let line = para[0].trim();
    if line.chars().count() > 70 {
        return None;
    }
    // 第三章 / 第十回 / 第一节: classic Chinese chapter markers.
    if line.starts_with('第') && line.chars().take(12).any(|c| matches!(c, '章' | '回' | '节' | '卷')) {
        return Some(if line.contains('卷') { 1 } else { 2 });
    }
    let mut words = line.split_whitespace();
    let first = words.next()?.to_lowercase();
    let first = first.trim_end_matches(['.', ':']);
    let second = words.next();
    let numbered = second.is_some_and(is_number_word);
    if PART_WORDS.contains(&first) && numbered {
        return Some(1);
    }
    if CHAPTER_WORDS.contains(&first) && (numbered || (second.is_none() && first != "act" && first != "book")) {
        return Some(2);
    }
    None
}

fn is_chapter_name(line: &str) -> bool {
    let line = line.trim();
    let n = line.chars().count();
    (2..=60).contains(&n)
        && !line.ends_with(['.', ',', ';', '!', '?', '"', '\'', '”', '’'])
        && line.chars().next().is_some_and(|c| c.is_uppercase())
}

/// `Title` over a line of `===` or `---` (at least three) is a heading.
fn underlined_heading(para: &[String]) -> Option<String> {
    if para.len() != 2 {
        return None;
    }
    let (title, rule) = (para[0].trim(), para[1].trim());
    let is_rule = rule.len() >= 3 && rule.chars().all(|c| matches!(c, '=' | '-' | '~' | '*' | '─' | '—'));
    (is_rule && !title.is_empty() && title.chars().count() <= 70).then(|| title.to_string())
}

/// Takes the title and author from the opening lines, Gutenberg style:
/// a short first line is the title; "By X" (or a name-like line right after
/// the title) is the author.
fn front_matter(doc: &mut Document) {
    let first = match doc.blocks.first() {
        Some(b) if b.heading_level.is_none() && !b.text.contains('\n') && b.text.trim().chars().count() <= 80 => b.text.trim().to_string(),
        _ => return,
    };
    doc.title = Some(first);
    for block in doc.blocks.iter().skip(1).take(6) {
        if block.heading_level.is_some() {
            break;
        }
        let line = block.text.trim();
        if let Some(rest) = line.strip_prefix("By ").or_else(|| line.strip_prefix("by ")) {
            doc.author = Some(rest.trim().to_string());
            return;
        }
    }
    if let Some(second) = doc.blocks.get(1) {
        let line = second.text.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let name_like = (2..=4).contains(&words.len())
            && !line.contains('\n')
            && words
                .iter()
                .all(|w| w.chars().next().is_some_and(char::is_uppercase) && !w.chars().any(|c| c.is_ascii_digit()));
        if second.heading_level.is_none() && name_like {
            doc.author = Some(line.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::assemble;

    #[test]
    fn gutenberg_front_matter_and_chapters() {
        let doc = parse("PRIDE AND PREJUDICE\n\nBy Jane Austen\n\n\n\nChapter 1\n\n\nIt is a truth\nuniversally acknowledged.\n\nChapter 2\n\nMr. Bennet was among the earliest.\n");
        assert_eq!(doc.title.as_deref(), Some("PRIDE AND PREJUDICE"));
        assert_eq!(doc.author.as_deref(), Some("Jane Austen"));
        let book = assemble(&doc);
        let headings: Vec<_> = book.sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["", "Chapter 1", "Chapter 2"]);
    }

    #[test]
    fn volumes_chapter_names_and_underlines() {
        let doc = parse("ALICE'S ADVENTURES\n\nLewis Carroll\n\nVOLUME I\n\nCHAPTER I\n\nDown the Rabbit-Hole\n\nAlice was tired.\n\n自序\n------\n\n我在年青时候也曾经做过许多梦。");
        assert_eq!(doc.author.as_deref(), Some("Lewis Carroll"));
        let book = assemble(&doc);
        let headings: Vec<_> = book.sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(
            headings,
            ["", "VOLUME I", "VOLUME I › CHAPTER I. Down the Rabbit-Hole", "VOLUME I › 自序"]
        );
    }
}
