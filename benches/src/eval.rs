//! Retrieval-quality eval: question sets built deterministically from real
//! documents of the shared corpus, relevance rules, and metrics. The bench
//! `benches/retrieval.rs` ingests the documents into a real daemon, asks
//! every query over gRPC in every search mode and prints one table.
//!
//! # Sets
//!
//! - **debian-faq** (`qa/debian-faq.en.txt`) and **r-faq**
//!   (`qa/R-FAQ.pdf.txt`): every numbered section whose title is a question
//!   (it has a `?` or starts with a question word such as "How", "Why" or
//!   "I") becomes a query; its answer body is the gold. The *indexed
//!   document* is rebuilt from the answers only ([`FaqSet::document`],
//!   Markdown): the title page, table of contents and every question line
//!   are dropped (in the R FAQ also the PDF's running heads "Chapter 2: R
//!   Basics 4" and bare page numbers), chapters keep their titles as `#`
//!   headings, a question section gets a neutral `## 7.31` heading, and a
//!   section that is not a question (R FAQ "Lexical scoping", Debian
//!   "dpkg") keeps its title. Answer text is backslash-escaped so Markdown
//!   reads it as plain text. The gold of a question is its own body; when
//!   that is shorter than [`MIN_ANSWER_CHARS`] (a parent such as "How can R
//!   be installed?" whose text is all in its subsections) it is the body
//!   including its subsections; questions whose gold is still shorter are
//!   skipped. The Debian FAQ's end-of-chapter footnotes (after a `-----`
//!   rule) are indexed under "Notes" but belong to no gold. Cross-references
//!   inside answers quote other questions word for word (Debian: `Section
//!   12.1, “What other documentation exists…?”`; R: `Section 2.10 [What is
//!   CRAN?], page 9`); the quoted title is dropped from both the indexed
//!   text and the gold, leaving `Section 12.1` ([`FaqSet::cross_refs_stripped`]).
//! - **keyword**: exact names and rare terms. Drawn with the seeded PRNG
//!   ([`SEED`]) from Pride and Prejudice and Alice (names: capitalized, not
//!   after a sentence end or an opening quote, never written in another case
//!   in the library) and from the two FAQ answer documents (names, and
//!   technical tokens: inner `.`/`_`/`-` or a trailing `()`, such as
//!   `dpkg-deb`, `read.table()`, `kfreebsd-amd64`, but not hyphenated
//!   compounds of words the novels use, such as "side-effect"), each found
//!   in 1–3 places of the whole library's stored text (by case-insensitive
//!   substring count, the same test relevance uses: at most three places,
//!   so only a few passages, are relevant); see [`rare_terms`]. Plus
//!   [`KEYWORD_HANDWRITTEN`], kept only when the library contains them. A
//!   hit is relevant when its text contains the term (case-insensitive,
//!   whitespace-normalized). The query is the bare term.
//! - **chinese**: [`CHINESE`], over Lu Xun's 呐喊 (`txt/CalltoArms.txt`):
//!   six spans copied from the text and three light paraphrases, each
//!   marked `copied` or not; a hit is relevant when it contains the gold
//!   span (for a paraphrase, the original words it rephrases), compared in
//!   [`canon`] form so punctuation and spaces do not matter.
//! - **verbatim**: sentences of 8–30 words sampled with the seeded PRNG from
//!   the daemon's own stored texts (read back with `GetPassage`), evenly
//!   from six books of different formats, each occurring exactly once in the
//!   library ([`sentences`]); a hit is relevant when its text contains the
//!   sentence, whitespace-normalized. The sentences are cut with the same
//!   Unicode sentence boundaries as the chunker, so each lies whole in at
//!   least one stored passage.
//!
//! # Relevance for the FAQ sets
//!
//! Hits are mapped to gold by text, never by offsets. Both sides are put in
//! [`canon`] form (lowercase letters and digits only: whitespace,
//! punctuation, Markdown escapes and PDF line-end hyphens all vanish). A hit
//! is relevant when it shares a contiguous run of at least
//! `min(`[`OVERLAP_CHARS`]`, 60 % of the answer's canon length)` canon chars
//! with the gold answer ([`OverlapGold`]). 64 canon chars are about 80
//! characters of English text: a passage that shares only a URL, a command
//! or a stock phrase with the answer does not count, one that holds a
//! sentence or more of it does; the 60 % lets a short answer count when it
//! sits whole inside a passage. A few answers share such runs with each
//! other (repeated URLs and sentences in the Debian FAQ; a parent question
//! and its subsections by construction), so a hit can be relevant to more
//! than one question.
//!
//! # Metrics
//!
//! Per query, the 1-based rank of the first relevant hit among the top 10
//! ([`first_relevant`]); per set, recall@1, recall@5 and MRR@10
//! ([`Metrics`]).

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use unicode_segmentation::UnicodeSegmentation;

/// Answers shorter than this (characters, whitespace-normalized) make no query.
pub const MIN_ANSWER_CHARS: usize = 80;
/// The shared run (canon chars) that makes a hit relevant to a long answer.
pub const OVERLAP_CHARS: usize = 64;
/// The fraction of a short answer's canon length that must be shared.
pub const OVERLAP_FRACTION: f64 = 0.6;
/// Seed of every random choice: the sets are the same on every run.
pub const SEED: u64 = 0x6d69_6e64_6f72_7921;

/// One query and how its hits are judged.
#[derive(Debug, Clone)]
pub struct Query {
    /// What is sent to `Search`.
    pub text: String,
    /// Which hits count.
    pub relevance: Relevance,
    /// Where it came from ("7.31", "rare term in alice29.txt", …).
    pub origin: String,
}

/// A rule that says whether a hit's text is relevant to a query.
#[derive(Debug, Clone)]
pub enum Relevance {
    /// Shares a long enough run with a gold answer.
    Overlap(OverlapGold),
    /// Contains this text, case-insensitive, whitespace-normalized (stored
    /// lowercased and normalized).
    ContainsNoCase(String),
    /// Contains this text, whitespace-normalized (stored normalized).
    Contains(String),
    /// Contains this text in [`canon`] form (stored in canon form).
    ContainsCanon(String),
}

impl Relevance {
    /// Case-insensitive containment of `term`.
    pub fn contains_no_case(term: &str) -> Self {
        Relevance::ContainsNoCase(ws_normalize(term).to_lowercase())
    }

    /// Containment of `text`, whitespace-normalized.
    pub fn contains(text: &str) -> Self {
        Relevance::Contains(ws_normalize(text))
    }

    /// Containment of `span` in canon form.
    pub fn contains_canon(span: &str) -> Self {
        Relevance::ContainsCanon(canon(span).into_iter().collect())
    }

    /// Whether a hit with this text is relevant.
    pub fn is_relevant(&self, hit_text: &str) -> bool {
        match self {
            Relevance::Overlap(gold) => gold.overlaps(hit_text),
            Relevance::ContainsNoCase(t) => ws_normalize(hit_text).to_lowercase().contains(t.as_str()),
            Relevance::Contains(t) => ws_normalize(hit_text).contains(t.as_str()),
            Relevance::ContainsCanon(t) => canon(hit_text).into_iter().collect::<String>().contains(t.as_str()),
        }
    }
}

/// A gold answer, ready to test hits against: the hashes of all its canon
/// windows of the required length.
#[derive(Debug, Clone)]
pub struct OverlapGold {
    window: usize,
    grams: HashSet<u64>,
}

impl OverlapGold {
    /// Prepares `answer` (raw text).
    pub fn new(answer: &str) -> Self {
        let c = canon(answer);
        let window = OVERLAP_CHARS.min((c.len() as f64 * OVERLAP_FRACTION).ceil() as usize).max(1);
        let grams = c.windows(window).map(hash_chars).collect();
        OverlapGold { window, grams }
    }

    /// The shared run a hit needs, in canon chars.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Whether `hit` shares a run of [`OverlapGold::window`] canon chars.
    pub fn overlaps(&self, hit: &str) -> bool {
        canon(hit).windows(self.window).any(|w| self.grams.contains(&hash_chars(w)))
    }
}

fn hash_chars(w: &[char]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    w.hash(&mut h);
    h.finish()
}

/// Lowercase letters and digits only (any script): the form in which FAQ
/// answers and hits are compared.
pub fn canon(s: &str) -> Vec<char> {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Whitespace runs folded to one space, trimmed.
pub fn ws_normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first relevant hit's 1-based rank among `hits` (top 10 considered).
pub fn first_relevant<'a>(relevance: &Relevance, hits: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    hits.into_iter().take(10).position(|h| relevance.is_relevant(h)).map(|i| i + 1)
}

/// Recall@1, recall@5 and MRR@10 over a set's queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Queries.
    pub n: usize,
    /// Fraction with a relevant hit first.
    pub r1: f64,
    /// Fraction with a relevant hit in the top 5.
    pub r5: f64,
    /// Mean reciprocal rank of the first relevant hit in the top 10.
    pub mrr10: f64,
}

impl Metrics {
    /// From the first relevant ranks of every query.
    pub fn from_ranks(ranks: &[Option<usize>]) -> Self {
        let n = ranks.len();
        if n == 0 {
            return Metrics::default();
        }
        let frac = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n as f64;
        let mrr10 = ranks
            .iter()
            .map(|r| r.filter(|&r| r <= 10).map_or(0.0, |r| 1.0 / r as f64))
            .sum::<f64>()
            / n as f64;
        Metrics {
            n,
            r1: frac(1),
            r5: frac(5),
            mrr10,
        }
    }
}

/// The seeded PRNG the question sets are drawn with: the same seed draws the
/// same sets.
pub use fastrand::Rng;

// ---------------------------------------------------------------- FAQ sets

/// A FAQ turned into an answers-only document and its questions.
#[derive(Debug, Clone)]
pub struct FaqSet {
    /// File name to write the document under.
    pub file_name: &'static str,
    /// The indexed document (Markdown).
    pub document: String,
    /// The questions with their gold answers (short ones already left out).
    pub questions: Vec<FaqQuestion>,
    /// Questions left out because their answer was too short.
    pub skipped_short: Vec<String>,
    /// Cross-references whose quoted question title was dropped.
    pub cross_refs_stripped: usize,
}

/// One FAQ question.
#[derive(Debug, Clone)]
pub struct FaqQuestion {
    /// Section number ("7.31").
    pub number: String,
    /// The question, as the query.
    pub question: String,
    /// The gold answer (raw text).
    pub answer: String,
}

impl FaqSet {
    /// The questions as queries.
    pub fn queries(&self) -> Vec<Query> {
        self.questions
            .iter()
            .map(|q| Query {
                text: q.question.clone(),
                relevance: Relevance::Overlap(OverlapGold::new(&q.answer)),
                origin: q.number.clone(),
            })
            .collect()
    }
}

const QUESTION_WORDS: &[&str] = &[
    "how", "what", "what's", "why", "where", "which", "who", "when", "is", "are", "can", "could", "should", "does", "do", "did", "will",
    "would", "may", "i", "i'm",
];

/// Whether a section title reads as a question.
pub fn is_question(title: &str) -> bool {
    let first = title
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
        .replace('’', "'");
    title.contains('?') || QUESTION_WORDS.contains(&first.as_str())
}

/// A numbered section while parsing.
#[derive(Debug, Default)]
struct Section {
    number: String,
    title: String,
    body: Vec<String>,
}

/// One chapter: its title, its own intro lines, its sections and notes.
#[derive(Debug, Default)]
struct Chapter {
    number: String,
    title: String,
    intro: Vec<String>,
    sections: Vec<Section>,
    notes: Vec<String>,
}

/// `7.31` / `3.1.4` (at least one dot) at the start of `s`, with the rest.
fn split_section_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let num = &s[..end];
    let rest = &s[end..];
    let parts: Vec<&str> = num.trim_end_matches('.').split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) || !rest.starts_with(' ') {
        return None;
    }
    Some((num.trim_end_matches('.'), rest.trim()))
}

/// Escapes every ASCII punctuation char so that Markdown reads plain text.
fn md_escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Body lines (blank lines separate paragraphs) as escaped Markdown.
fn md_paragraphs(lines: &[String], out: &mut String) {
    let mut in_para = false;
    for l in lines {
        let t = l.trim();
        if t.is_empty() {
            if in_para {
                out.push('\n');
                in_para = false;
            }
            continue;
        }
        out.push_str(&md_escape(t));
        out.push('\n');
        in_para = true;
    }
    if in_para {
        out.push('\n');
    }
}

fn body_text(lines: &[String]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n").trim().to_string()
}

/// Builds the document and questions from chapters.
fn assemble_faq(file_name: &'static str, title: &str, chapters: &[Chapter]) -> FaqSet {
    let mut document = format!("---\ntitle: {title}\n---\n\n");
    let mut questions = Vec::new();
    let mut skipped_short = Vec::new();
    for ch in chapters {
        document.push_str(&format!("# {}\n\n", md_escape(&format!("{} {}", ch.number, ch.title))));
        md_paragraphs(&ch.intro, &mut document);
        for (i, s) in ch.sections.iter().enumerate() {
            let q = is_question(&s.title);
            let heading = if q { s.number.clone() } else { format!("{} {}", s.number, s.title) };
            let level = s.number.split('.').count().min(6);
            document.push_str(&format!("{} {}\n\n", "#".repeat(level), md_escape(&heading)));
            md_paragraphs(&s.body, &mut document);
            if !q {
                continue;
            }
            let mut answer = body_text(&s.body);
            if ws_normalize(&answer).chars().count() < MIN_ANSWER_CHARS {
                // A parent whose text is all in its subsections.
                let prefix = format!("{}.", s.number);
                let mut all = s.body.clone();
                for sub in ch.sections[i + 1..].iter().take_while(|t| t.number.starts_with(&prefix)) {
                    all.extend(sub.body.iter().cloned());
                }
                answer = body_text(&all);
            }
            let question = ws_normalize(&s.title);
            if ws_normalize(&answer).chars().count() < MIN_ANSWER_CHARS {
                skipped_short.push(format!("{} {}", s.number, question));
            } else {
                questions.push(FaqQuestion {
                    number: s.number.clone(),
                    question,
                    answer,
                });
            }
        }
        if !ch.notes.is_empty() {
            document.push_str("## Notes\n\n");
            md_paragraphs(&ch.notes, &mut document);
        }
    }
    FaqSet {
        file_name,
        document,
        questions,
        skipped_short,
        cross_refs_stripped: 0,
    }
}

/// Drops the titles that cross-references quote, which repeat other
/// questions word for word: Debian's `Section 12.1, “What other
/// documentation exists…?”` and the R FAQ's `Section 2.10 [What is CRAN?],
/// page 9` both become `Section 12.1` / `Section 2.10`. Returns the text and
/// how many were dropped.
fn strip_cross_refs(text: &str, open: &str, close: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut n = 0;
    while let Some(i) = rest.find("Section ") {
        let after = &rest[i + "Section ".len()..];
        let num_len = after.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(after.len());
        let num = after[..num_len].trim_end_matches('.');
        let tail = &after[num.len()..];
        // The separator may wrap: ",\n    “".
        let sep = tail.strip_prefix(',').unwrap_or(tail);
        let sep = if open.starts_with(',') { sep } else { tail };
        let quoted = sep.trim_start().strip_prefix(open.trim_start_matches(',').trim_start());
        let end = quoted.and_then(|t| {
            let e = t.find(close).filter(|&e| e < 400)?;
            Some(tail.len() - t.len() + e + close.len())
        });
        match end {
            Some(e) if !num.is_empty() => {
                out.push_str(&rest[..i + "Section ".len()]);
                out.push_str(num);
                let mut tail = &tail[e..];
                // The R FAQ adds ", page 9".
                if let Some(p) = tail.strip_prefix(", page ") {
                    tail = p.trim_start_matches(|c: char| c.is_ascii_digit());
                }
                rest = tail;
                n += 1;
            }
            _ => {
                out.push_str(&rest[..i + "Section ".len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, n)
}

/// The Debian FAQ (plain text from its DocBook): chapters "Chapter N. Title",
/// sections "N.M. Question?" at column 0 (wrapped titles continue unindented),
/// answers indented, footnotes after a rule at a chapter's end. Everything
/// before "Chapter 1." (title page, table of contents) is dropped.
pub fn debian_faq(raw: &str) -> FaqSet {
    let raw = raw.replace(['\u{a0}', '\r'], " ");
    let (raw, stripped) = strip_cross_refs(&raw, ", “", "”");
    let lines: Vec<&str> = raw.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Chapter 1."))
        .expect("the Debian FAQ has a \"Chapter 1.\"");
    let mut chapters: Vec<Chapter> = Vec::new();
    let mut in_notes = false;
    let mut i = start;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if let Some(rest) = line.strip_prefix("Chapter ") {
            let (num, title) = rest.split_once(". ").expect("Chapter N. Title");
            chapters.push(Chapter {
                number: format!("{num}."),
                title: title.trim().to_string(),
                ..Chapter::default()
            });
            in_notes = false;
            i += 1;
            continue;
        }
        let ch = chapters.last_mut().expect("inside a chapter");
        if line.len() >= 10 && line.chars().all(|c| c == '-') {
            in_notes = true;
            i += 1;
            continue;
        }
        if !line.starts_with(' ') {
            if let Some((num, title)) = split_section_number(line) {
                let mut title = title.to_string();
                i += 1;
                while i < lines.len() && !lines[i].trim().is_empty() && !lines[i].starts_with(' ') {
                    title.push(' ');
                    title.push_str(lines[i].trim());
                    i += 1;
                }
                ch.sections.push(Section {
                    number: num.to_string(),
                    title,
                    body: Vec::new(),
                });
                in_notes = false;
                continue;
            }
        }
        let target = if in_notes {
            &mut ch.notes
        } else if let Some(s) = ch.sections.last_mut() {
            &mut s.body
        } else {
            &mut ch.intro
        };
        target.push(line.to_string());
        i += 1;
    }
    FaqSet {
        cross_refs_stripped: stripped,
        ..assemble_faq("debian-faq-answers.md", "The Debian GNU/Linux FAQ (answers only)", &chapters)
    }
}

/// A table-of-contents entry of the R FAQ.
#[derive(Debug)]
struct TocEntry {
    number: String,
    title: String,
}

/// Strips a TOC line's dot leader and page number: `Some(title part)` when
/// the line ends an entry.
fn strip_leader(line: &str) -> Option<String> {
    let t = line.trim_end();
    let no_page = t.trim_end_matches(|c: char| c.is_ascii_digit());
    if no_page.len() == t.len() || !no_page.ends_with(' ') {
        return None;
    }
    let title = no_page.trim_end_matches([' ', '.']);
    if !no_page.contains(". .") && !no_page.trim_end().ends_with('.') {
        return None;
    }
    Some(title.to_string())
}

/// The R FAQ (text extracted from its PDF): a dotted table of contents,
/// then chapters "N Title" and sections "N.M Title" (titles may wrap
/// differently than in the TOC), running heads "Chapter 2: R Basics 4" and
/// page numbers on lines of their own.
pub fn r_faq(raw: &str) -> FaqSet {
    let raw = raw.replace('\r', "");
    let lines: Vec<&str> = raw.lines().collect();
    let toc_start = lines
        .iter()
        .position(|l| l.trim() == "Table of Contents")
        .expect("the R FAQ has a table of contents");
    // Entries, joining wrapped titles, until the first chapter repeats.
    let mut toc: Vec<TocEntry> = Vec::new();
    let mut pending: Option<TocEntry> = None;
    let mut body_start = 0;
    for (i, line) in lines.iter().enumerate().skip(toc_start + 1) {
        let line = line.trim();
        if pending.is_none() && toc.len() > 1 && line == format!("{} {}", toc[0].number, toc[0].title) {
            body_start = i;
            break;
        }
        if line.chars().all(|c| c.is_ascii_digit() || "ivxlc".contains(c)) {
            continue; // a page number of the TOC itself
        }
        match pending.take() {
            Some(mut e) => match strip_leader(line) {
                Some(rest) => {
                    e.title = format!("{} {}", e.title, rest);
                    toc.push(e);
                }
                None => {
                    e.title = format!("{} {}", e.title, line);
                    pending = Some(e);
                }
            },
            None => {
                let (num, rest) = line.split_once(' ').expect("a numbered TOC entry");
                assert!(num.chars().all(|c| c.is_ascii_digit() || c == '.'), "TOC line {line:?}");
                let e = TocEntry {
                    number: num.to_string(),
                    title: rest.to_string(),
                };
                match strip_leader(rest) {
                    Some(t) => toc.push(TocEntry { title: t, ..e }),
                    None => pending = Some(e),
                }
            }
        }
    }
    assert!(body_start > 0 && toc.len() > 1, "could not read the R FAQ's table of contents");
    // Body lines without running heads and page numbers.
    let (body_text, stripped) = strip_cross_refs(&lines[body_start..].join("\n"), " [", "]");
    let body: Vec<&str> = body_text
        .lines()
        .map(|l| l.trim_end())
        .filter(|l| !is_running_head(l))
        .filter(|l| !(l.is_empty() || l.chars().all(|c| c.is_ascii_digit())))
        .collect();
    // Find each entry's heading in order; a wrapped heading spans lines.
    let mut heads: Vec<(usize, usize)> = Vec::new(); // [start, end) line range
    let mut at = 0;
    for e in &toc {
        let want: String = canon(&e.title).into_iter().collect();
        let prefix = format!("{} ", e.number);
        let found = (at..body.len()).find_map(|i| {
            let rest = body[i].strip_prefix(&prefix)?;
            let mut got: String = canon(rest).into_iter().collect();
            if got.is_empty() || !want.starts_with(&got) {
                return None;
            }
            let mut j = i + 1;
            while got.len() < want.len() && j < body.len() {
                let more: String = got.clone() + &canon(body[j]).into_iter().collect::<String>();
                if !want.starts_with(&more) {
                    break;
                }
                got = more;
                j += 1;
            }
            (got == want).then_some((i, j))
        });
        let (s, end) = found.unwrap_or_else(|| panic!("the R FAQ's section {} {:?} is not in the text", e.number, e.title));
        heads.push((s, end));
        at = end;
    }
    let mut chapters: Vec<Chapter> = Vec::new();
    for (k, e) in toc.iter().enumerate() {
        let (_, end) = heads[k];
        let next = heads.get(k + 1).map_or(body.len(), |h| h.0);
        let lines = paragraphs_from_pdf_lines(&body[end..next]);
        if !e.number.contains('.') {
            chapters.push(Chapter {
                number: e.number.clone(),
                title: e.title.clone(),
                intro: lines,
                ..Chapter::default()
            });
        } else {
            chapters.last_mut().expect("a section inside a chapter").sections.push(Section {
                number: e.number.clone(),
                title: e.title.clone(),
                body: lines,
            });
        }
    }
    FaqSet {
        cross_refs_stripped: stripped,
        ..assemble_faq("r-faq-answers.md", "R FAQ (answers only)", &chapters)
    }
}

/// "Chapter 2: R Basics 4": the PDF's running head (chapter, title, page).
fn is_running_head(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("Chapter ") else {
        return false;
    };
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(": ") && line.ends_with(|c: char| c.is_ascii_digit())
}

/// PDF text has no blank lines; a line that ends a sentence well short of
/// the measure most likely ends a paragraph: a blank line goes after it.
fn paragraphs_from_pdf_lines(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        out.push(l.to_string());
        if l.chars().count() < 60 && l.ends_with(['.', ':', '?', '!']) {
            out.push(String::new());
        }
    }
    out
}

// ---------------------------------------------------------------- keyword

/// Hand-written keyword queries: names and terms checked to be in the
/// library's texts (the bench drops and reports any that is not).
pub const KEYWORD_HANDWRITTEN: &[&str] = &[
    "Lady Catherine",
    "Mock Turtle",
    "Cheshire",
    "Gretna Green",
    "Pemberley",
    "apt-get",
    "update-alternatives",
    "tasksel",
    "Bioconductor",
    "all.equal",
    "read.table",
    "E: Unable to locate package",
];

/// Word-frequency map of a text (tokens as [`term_of`] cuts them, case kept).
pub fn token_counts(text: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for tok in text.split_whitespace() {
        let t = term_of(tok);
        if !t.is_empty() {
            *m.entry(t.to_lowercase()).or_insert(0) += 1;
        }
    }
    m
}

/// A whitespace token without surrounding punctuation or a possessive "'s".
/// Keeps inner `-`, `_`, `.` and a trailing `()` (R's `source()`).
pub fn term_of(tok: &str) -> &str {
    let mut t = tok.trim_matches(|c: char| !(c.is_alphanumeric() || c == '(' || c == ')'));
    t = t.trim_start_matches(['(', ')']);
    while t.ends_with(')') && t.matches(')').count() > t.matches('(').count() {
        t = &t[..t.len() - 1];
    }
    if !t.ends_with("()") {
        t = t.trim_end_matches(['(', ')']);
    }
    for s in ["'s", "’s"] {
        if let Some(x) = t.strip_suffix(s) {
            t = x;
        }
    }
    t.trim_end_matches(|c: char| !(c.is_alphanumeric() || c == ')'))
}

/// What kind of rare term to look for in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKind {
    /// Capitalized names not at a sentence start ("Gardiner").
    Names,
    /// Names and technical terms (`dpkg-deb`, `read.table()`, `R_HOME`).
    NamesAndTechnical,
}

fn is_technical(t: &str) -> bool {
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    let inner = t.chars().skip(1).collect::<Vec<_>>();
    // Parentheses only as a call's trailing "()".
    let parens_ok = !t.trim_end_matches("()").contains(['(', ')']);
    letters >= 3
        && parens_ok
        && t.chars().count() >= 4
        && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
        && (inner.iter().any(|c| "-_.".contains(*c)) || t.ends_with("()"))
        && !t.contains("..")
        && !t.to_lowercase().starts_with("www")
        && !t.to_lowercase().contains("http")
        && !t.contains("e.g")
        && !t.contains("i.e")
}

fn is_name(t: &str) -> bool {
    let mut cs = t.chars();
    cs.next().is_some_and(|c| c.is_uppercase()) && cs.clone().all(|c| c.is_lowercase()) && t.chars().count() >= 5
}

/// An English compound rather than a name of something technical: only
/// hyphens, and every part a word of `english` ("side-effect", but not
/// "start-stop-daemon" when "daemon" is not in the novels).
fn is_plain_compound(t: &str, english: &HashSet<String>) -> bool {
    t.contains('-') && t.chars().all(|c| c.is_alphabetic() || c == '-') && t.split('-').all(|p| english.contains(&p.to_lowercase()))
}

/// Candidate rare terms of `text`, in order of first appearance, unique:
/// names (capitalized, not after a sentence end) and, for
/// [`TermKind::NamesAndTechnical`], technical tokens (not compounds of
/// `english` words). Whether a candidate is really rare in the whole
/// library is checked by the caller ([`occurrences_no_case`]).
pub fn rare_term_candidates(text: &str, kind: TermKind, library_counts: &HashMap<String, usize>, english: &HashSet<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut sentence_start = true;
    for tok in text.split_whitespace() {
        let t = term_of(tok);
        let after_stop = sentence_start;
        sentence_start = tok.ends_with(['.', '!', '?', ':', '"', '”', '’']) || tok.ends_with(".)");
        if t.is_empty() || !seen.insert(t.to_string()) {
            continue;
        }
        let rare = library_counts.get(&t.to_lowercase()).is_some_and(|&n| (1..=3).contains(&n));
        if !rare {
            continue;
        }
        // A capitalized word after an opening quote may start a sentence.
        let quoted = tok.starts_with(['"', '“', '‘', '\'', '(', '_']);
        let ok = (is_name(t) && !after_stop && !quoted)
            || (kind == TermKind::NamesAndTechnical && is_technical(t) && !is_plain_compound(t, english));
        if ok {
            out.push(t.to_string());
        }
    }
    out
}

/// Non-overlapping case-insensitive occurrences of `term` in `lower_library`
/// (already lowercased and whitespace-normalized).
pub fn occurrences_no_case(term: &str, lower_library: &str) -> usize {
    lower_library.matches(&ws_normalize(term).to_lowercase()).count()
}

/// The whole library's text, for counting terms.
#[derive(Debug, Clone)]
pub struct LibraryText {
    /// Whitespace-normalized.
    pub text: String,
    /// The same, lowercased.
    pub lower: String,
    /// [`token_counts`] of it.
    pub counts: HashMap<String, usize>,
}

impl LibraryText {
    /// From every book's stored text.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let text = texts.into_iter().map(ws_normalize).collect::<Vec<_>>().join(" \u{1} ");
        let lower = text.to_lowercase();
        let counts = token_counts(&text);
        LibraryText { text, lower, counts }
    }

    /// Non-overlapping occurrences of `s`, whitespace-normalized.
    pub fn occurrences(&self, s: &str) -> usize {
        self.text.matches(&ws_normalize(s)).count()
    }
}

/// Picks up to `n` rare terms from `text` with `rng`: candidates found in
/// 1–3 places of the whole library by case-insensitive substring count (the
/// same test relevance uses) and, for names, never in another case there
/// (so "Hope" the word cannot pass for a name), shuffled. `english` is the
/// vocabulary of plain prose (the novels' lowercased words).
pub fn rare_terms(text: &str, kind: TermKind, library: &LibraryText, english: &HashSet<String>, n: usize, rng: &mut Rng) -> Vec<String> {
    let mut cands = rare_term_candidates(text, kind, &library.counts, english);
    rng.shuffle(&mut cands);
    cands
        .into_iter()
        .filter(|t| {
            let any_case = occurrences_no_case(t, &library.lower);
            (1..=3).contains(&any_case) && (is_technical(t) || library.occurrences(t) == any_case)
        })
        .take(n)
        .collect()
}

// ---------------------------------------------------------------- chinese

/// A Chinese query: the query text, the span a relevant hit contains, and
/// whether the query is copied from the text (else lightly paraphrased).
#[derive(Debug, Clone, Copy)]
pub struct ChineseQuery {
    /// Sent to Search.
    pub query: &'static str,
    /// The span of 呐喊 a relevant hit contains (canon form compared).
    pub gold_span: &'static str,
    /// Copied verbatim (the gold span is the query) or paraphrased.
    pub copied: bool,
}

/// Queries over Lu Xun's 呐喊 (`txt/CalltoArms.txt`). Copied ones are spans
/// of the text; paraphrased ones say the same thing in other words and are
/// judged by the original span they paraphrase.
pub const CHINESE: &[ChineseQuery] = &[
    ChineseQuery {
        query: "窃书不能算偷",
        gold_span: "窃书不能算偷",
        copied: true,
    },
    ChineseQuery {
        query: "我冒了严寒，回到相隔二千余里，别了二十余年的故乡去。",
        gold_span: "我冒了严寒，回到相隔二千余里，别了二十余年的故乡去",
        copied: true,
    },
    ChineseQuery {
        query: "孔乙己是站着喝酒而穿长衫的唯一的人。",
        gold_span: "孔乙己是站着喝酒而穿长衫的唯一的人",
        copied: true,
    },
    ChineseQuery {
        query: "回字有四样写法",
        gold_span: "回字有四样写法",
        copied: true,
    },
    ChineseQuery {
        query: "其实地上本没有路，走的人多了，也便成了路。",
        gold_span: "其实地上本没有路，走的人多了，也便成了路",
        copied: true,
    },
    ChineseQuery {
        query: "救救孩子",
        gold_span: "救救孩子",
        copied: true,
    },
    ChineseQuery {
        query: "我年轻的时候也做过很多梦，后来大多都忘记了",
        gold_span: "我在年青时候也曾经做过许多梦，后来大半忘却了",
        copied: false,
    },
    ChineseQuery {
        query: "一间没有窗户、无法打破的铁屋子，里面的人都睡着了",
        gold_span: "假如一间铁屋子，是绝无窗户而万难破毁的",
        copied: false,
    },
    ChineseQuery {
        query: "掌柜说孔乙己还欠着十九个钱",
        gold_span: "还欠十九个钱",
        copied: false,
    },
];

// ---------------------------------------------------------- cross-lingual

/// A query in one language whose answer is a passage in the other: Chinese
/// questions about English books and English questions about Lu Xun's 呐喊.
/// Written by hand as translations or paraphrases of the span (never
/// sharing its words), and checked against the texts.
#[derive(Debug, Clone, Copy)]
pub struct CrossLingualQuery {
    /// Sent to Search.
    pub query: &'static str,
    /// The book (a library label) that holds the gold span.
    pub book: &'static str,
    /// The span a relevant hit contains (canon form compared).
    pub gold_span: &'static str,
}

/// The cross-lingual set: nine Chinese queries over Alice and Pride and
/// Prejudice, nine English queries over 呐喊 (`txt/CalltoArms.txt`).
pub const CROSS_LINGUAL: &[CrossLingualQuery] = &[
    CrossLingualQuery {
        query: "柴郡猫慢慢消失，最后只剩下一个笑容",
        book: "alice29.txt",
        gold_span: "a grin without a cat",
    },
    CrossLingualQuery {
        query: "兔子从背心口袋里掏出一块怀表看了看",
        book: "alice29.txt",
        gold_span: "took a watch out of its waistcoat-pocket",
    },
    CrossLingualQuery {
        query: "帽匠问：为什么乌鸦像写字台？",
        book: "alice29.txt",
        gold_span: "Why is a raven like a writing-desk",
    },
    CrossLingualQuery {
        query: "帽匠说现在永远是六点钟，总是喝茶的时间",
        book: "alice29.txt",
        gold_span: "always six o'clock now",
    },
    CrossLingualQuery {
        query: "爱丽丝喊道：越来越奇怪了！",
        book: "alice29.txt",
        gold_span: "Curiouser and curiouser",
    },
    CrossLingualQuery {
        query: "凡是有钱的单身汉，总想娶位太太，这已经成了一条举世公认的真理",
        book: "prideprejudice.txt",
        gold_span: "It is a truth universally acknowledged",
    },
    CrossLingualQuery {
        query: "达西说她还过得去，但还没有漂亮到能打动他的地步",
        book: "prideprejudice.txt",
        gold_span: "tolerable; but not handsome enough to tempt me",
    },
    CrossLingualQuery {
        query: "达西向伊丽莎白表白，说他多么热烈地爱慕她",
        book: "prideprejudice.txt",
        gold_span: "how ardently I admire and love you",
    },
    CrossLingualQuery {
        query: "莉迪亚跟一个军官私奔到苏格兰去了",
        book: "prideprejudice.txt",
        gold_span: "gone off to Scotland",
    },
    CrossLingualQuery {
        query: "Kong Yiji was the only customer who drank standing up but wore a long gown.",
        book: "CalltoArms.txt",
        gold_span: "孔乙己是站着喝酒而穿长衫的唯一的人",
    },
    CrossLingualQuery {
        query: "Actually the earth had no roads to begin with, but when many people walk the same way, a road is made.",
        book: "CalltoArms.txt",
        gold_span: "其实地上本没有路，走的人多了，也便成了路",
    },
    CrossLingualQuery {
        query: "Taking books cannot be counted as stealing!",
        book: "CalltoArms.txt",
        gold_span: "窃书不能算偷",
    },
    CrossLingualQuery {
        query: "Save the children",
        book: "CalltoArms.txt",
        gold_span: "救救孩子",
    },
    CrossLingualQuery {
        query: "Imagine an iron house without a single window and practically indestructible",
        book: "CalltoArms.txt",
        gold_span: "假如一间铁屋子，是绝无窗户而万难破毁的",
    },
    CrossLingualQuery {
        query: "I braved the bitter cold to travel more than two thousand li back to the home I had left over twenty years before.",
        book: "CalltoArms.txt",
        gold_span: "我冒了严寒，回到相隔二千余里，别了二十余年的故乡去",
    },
    CrossLingualQuery {
        query: "I am a man too, and they want to eat me!",
        book: "CalltoArms.txt",
        gold_span: "我也是人，他们想要吃我了",
    },
    CrossLingualQuery {
        query: "The man in black held out a steamed bun dyed bright red",
        book: "CalltoArms.txt",
        gold_span: "一只手却撮着一个鲜红的馒头",
    },
    CrossLingualQuery {
        query: "Do you know the four ways of writing the character hui?",
        book: "CalltoArms.txt",
        gold_span: "回字有四样写法",
    },
];

// ---------------------------------------------------------------- verbatim

/// Sentences of `words` (inclusive range) words in a stored text: paragraphs
/// are split at blank lines, sentences at Unicode sentence boundaries (as
/// the chunker does), whitespace-normalized. Sentences with fewer than five
/// alphabetic words (code, tables, numbers) or with a dot leader (a PDF's
/// table of contents) are left out.
pub fn sentences(text: &str, words: std::ops::RangeInclusive<usize>) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        for s in para.split_sentence_bounds() {
            let s = ws_normalize(s);
            let n = s.split_whitespace().count();
            let alpha = s
                .split_whitespace()
                .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
                .count();
            // A table of contents line ("Data permanency . . . . 6") is no sentence.
            if words.contains(&n) && alpha >= 5 && !s.contains(". . .") {
                out.push(s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_needs_a_long_shared_run() {
        let answer = "Debian GNU/Linux is a particular distribution of the Linux operating system, and numerous packages that run on it. \
                      Debian GNU/Linux is the result of a volunteer effort.";
        let gold = OverlapGold::new(answer);
        assert_eq!(gold.window(), 64);
        assert!(gold.overlaps(&format!("Intro text. {answer} More.")));
        // Line-end hyphenation, Markdown escapes and spacing do not matter.
        assert!(gold.overlaps("Debian GNU\\/Linux is a particu-\nlar distribution of the Linux operating sys- tem, and"));
        assert!(!gold.overlaps("Debian GNU/Linux is a particular distribution."));
        let short = OverlapGold::new("Use apt-get install r-base to install R.");
        assert!(short.window() < 64);
        assert!(short.overlaps("... use apt-get install r-base to install R."));
    }

    #[test]
    fn metrics() {
        let m = Metrics::from_ranks(&[Some(1), Some(3), None, Some(7)]);
        assert_eq!(m.n, 4);
        assert_eq!(m.r1, 0.25);
        assert_eq!(m.r5, 0.5);
        assert!((m.mrr10 - (1.0 + 1.0 / 3.0 + 1.0 / 7.0) / 4.0).abs() < 1e-9);
    }

    #[test]
    fn debian_faq_drops_questions_and_toc() {
        let raw = "Title\n\nTable of Contents\n\n1. Overview\n    1.1. What is this FAQ?\n\n\
                   Chapter\u{a0}1.\u{a0}Overview\n\n1.1. What is this FAQ? It is\nlong?\n\n    This document gives frequently asked questions (with their\n    answers!) about the Debian distribution and about the project.\n\n\
                   1.2. Authors\n\n    Written by many people over many years of the project, who are thanked here.\n\n\
                   ---------------------------------------------------------------------\n\n    ^[1] A footnote.\n";
        let set = debian_faq(raw);
        assert_eq!(set.questions.len(), 1);
        assert_eq!(set.questions[0].number, "1.1");
        assert_eq!(set.questions[0].question, "What is this FAQ? It is long?");
        assert!(set.questions[0].answer.starts_with("This document gives"));
        assert!(!set.questions[0].answer.contains("footnote"));
        assert!(!set.document.contains("What is this"), "{}", set.document);
        assert!(set.document.contains("# 1\\. Overview"));
        assert!(set.document.contains("## 1\\.1\n"));
        assert!(set.document.contains("## 1\\.2 Authors"));
        assert!(set.document.contains("A footnote"));
    }

    #[test]
    fn r_faq_wrapped_headings_and_running_heads() {
        let raw = "R FAQ\ni\nTable of Contents\n1 Basics . . . . . . . . 1\n1.1 What is R? . . . . 1\n\
                   1.2 Why does the output depend on the\norder of factors? . . . . 2\n2 Bugs . . . . . . 3\n\
                   2.1 What is a bug? . . . . 3\n1\n1 Basics\n1.1 What is R?\nR is a system for statistical computation and graphics, with a language plus a\n\
                   Chapter 1: Basics 2\nrun-time environment.\n1.2 Why does the output depend\non the order of factors?\n\
                   Because the sums of squares are sequential, so the order in which terms enter the model matters.\n3\n2 Bugs\n2.1 What is a bug?\nShort.\n";
        let set = r_faq(raw);
        let numbers: Vec<_> = set.questions.iter().map(|q| q.number.as_str()).collect();
        assert_eq!(numbers, ["1.1", "1.2"]);
        assert_eq!(set.questions[1].question, "Why does the output depend on the order of factors?");
        assert!(set.questions[0].answer.contains("with a language plus a\nrun-time environment."));
        assert_eq!(set.skipped_short.len(), 1);
        assert!(!set.document.contains("Chapter 1:"));
        assert!(!set.document.contains("What is"));
    }

    #[test]
    fn the_corpus_faqs_parse() {
        let read = |rel: &str| std::fs::read_to_string(crate::corpus(rel)).ok();
        let (Some(d), Some(r)) = (read("qa/debian-faq.en.txt"), read("qa/R-FAQ.pdf.txt")) else {
            eprintln!("corpus not found; skipped");
            return;
        };
        for (set, range) in [(debian_faq(&d), 100..=150), (r_faq(&r), 70..=90)] {
            let n = set.questions.len();
            eprintln!("{}: {n} questions, skipped {:?}", set.file_name, set.skipped_short);
            assert!(range.contains(&n), "{}: {n} questions", set.file_name);
            for q in &set.questions {
                // No question line survives in the indexed document.
                let line = ws_normalize(&q.question);
                assert!(!ws_normalize(&set.document).contains(&md_escape(&line)), "{} {line}", q.number);
                assert!(
                    !q.answer.contains("Chapter ") || !q.answer.lines().any(is_running_head),
                    "{}",
                    q.number
                );
            }
        }
    }

    #[test]
    fn cross_references_lose_their_quoted_titles() {
        let (t, n) = strip_cross_refs("see Section 12.1, “What other\n    docs exist?”. And Section 3 here.", ", “", "”");
        assert_eq!((t.as_str(), n), ("see Section 12.1. And Section 3 here.", 1));
        let (t, n) = strip_cross_refs("(see Section 2.6 [Are there\nbinaries?], page 6), Chapter 5 [X], page 2", " [", "]");
        assert_eq!((t.as_str(), n), ("(see Section 2.6), Chapter 5 [X], page 2", 1));
    }

    #[test]
    fn terms_and_sentences() {
        assert_eq!(term_of("“Gardiner’s"), "Gardiner");
        assert_eq!(term_of("(read.table())."), "read.table()");
        assert_eq!(term_of("apt-get,"), "apt-get");
        assert!(is_technical("dpkg-deb") && is_technical("source()") && !is_technical("1.7.1"));
        assert!(!is_technical("as.character(NA") && !is_technical("Sources(.gz"));
        let english: HashSet<String> = ["side", "effect", "start", "stop"].map(String::from).into();
        assert!(is_plain_compound("side-effect", &english) && !is_plain_compound("start-stop-daemon", &english));
        let s = sentences(
            "Short one. This sentence has exactly nine words in it, see.\n\nNext para here.",
            8..=30,
        );
        assert_eq!(s, ["This sentence has exactly nine words in it, see."]);
    }
}
