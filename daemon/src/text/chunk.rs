//! Cuts a book's normalized text into passages for embedding.
//!
//! A passage is ~150–180 words of whole sentences from one section, with a
//! small overlap (the previous passage's last sentence) so that an idea that
//! straddles a boundary is still found. Length is also capped in model tokens
//! so nothing is silently truncated by the 256-token model: a sentence that is
//! too long on its own is split at word boundaries.
//!
//! Invariant: `passage.text == book.text[passage.start..passage.end]`.

use unicode_segmentation::UnicodeSegmentation;

use super::{is_cjk, BookText, PageRef};

/// Knobs for [`chunk`].
#[derive(Debug, Clone, Copy)]
pub struct ChunkConfig {
    /// A passage is closed once it reaches this many words.
    pub target_words: usize,
    /// A passage never goes past this many words.
    pub max_words: usize,
    /// Token budget per passage (the model's cap minus its special tokens,
    /// minus a margin because sentence counts do not add exactly).
    pub max_tokens: usize,
    /// At most this many words are repeated from the previous passage.
    pub overlap_words: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            target_words: 150,
            max_words: 180,
            max_tokens: 240,
            overlap_words: 35,
        }
    }
}

/// One passage: a byte range of the normalized text and where it lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Start byte in the normalized text.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// Index of the section the passage belongs to.
    pub section: usize,
    /// Page of the passage's first paragraph, when known.
    pub page: Option<PageRef>,
    /// Model tokens (estimated by summing its sentences).
    pub tokens: usize,
}

/// A sentence (or a piece of an overlong one) ready to be packed.
#[derive(Debug, Clone)]
struct Unit {
    start: usize,
    end: usize,
    words: usize,
    tokens: usize,
    section: usize,
    page: Option<PageRef>,
}

fn word_count(s: &str) -> usize {
    // CJK text has no spaces; count each ideograph as a word so that the
    // word limits still mean something there (the token cap is what binds).
    let spaced = s.split_whitespace().count();
    let cjk = s.chars().filter(|c| is_cjk(*c)).count();
    spaced.max(cjk)
}

/// Splits the book into passages; `count_tokens` measures text in model tokens.
pub fn chunk(book: &BookText, config: ChunkConfig, count_tokens: &dyn Fn(&str) -> usize) -> Vec<Passage> {
    let mut packer = Packer {
        config,
        passages: Vec::new(),
        current: Vec::new(),
        fresh: false,
    };
    for unit in sentence_units(book, config, count_tokens) {
        if packer.current.last().is_some_and(|u| u.section != unit.section) {
            // Passages never cross a heading, and overlap does not either.
            packer.flush();
            packer.current.clear();
        }
        if packer.fresh && !packer.fits(&unit) {
            packer.flush();
        }
        // The overlap itself must leave room for the new unit.
        while !packer.current.is_empty() && !packer.fits(&unit) {
            packer.current.remove(0);
        }
        packer.current.push(unit);
        packer.fresh = true;
        if packer.words() >= config.target_words {
            packer.flush();
        }
    }
    packer.flush();
    packer.passages
}

/// Accumulates sentences into passages.
struct Packer {
    config: ChunkConfig,
    passages: Vec<Passage>,
    /// Sentences of the passage being built (starting with overlap).
    current: Vec<Unit>,
    /// Whether `current` holds anything not yet in a passage.
    fresh: bool,
}

impl Packer {
    fn words(&self) -> usize {
        self.current.iter().map(|u| u.words).sum()
    }

    fn tokens(&self) -> usize {
        self.current.iter().map(|u| u.tokens).sum()
    }

    fn fits(&self, unit: &Unit) -> bool {
        self.words() + unit.words <= self.config.max_words && self.tokens() + unit.tokens <= self.config.max_tokens
    }

    /// Emits the current passage (if it has new material) and keeps a tail
    /// of whole sentences as overlap.
    fn flush(&mut self) {
        if !self.fresh {
            return;
        }
        let (first, last) = (&self.current[0], &self.current[self.current.len() - 1]);
        self.passages.push(Passage {
            start: first.start,
            end: last.end,
            section: first.section,
            page: first.page.clone(),
            tokens: self.tokens(),
        });
        let mut keep = 0;
        let mut kept_words = 0;
        for u in self.current.iter().rev() {
            if kept_words + u.words > self.config.overlap_words || keep + 1 >= self.current.len() {
                break;
            }
            kept_words += u.words;
            keep += 1;
        }
        self.current.drain(..self.current.len() - keep);
        self.fresh = false;
    }
}

/// Sentences of every paragraph, overlong ones split into word runs.
fn sentence_units(book: &BookText, config: ChunkConfig, count_tokens: &dyn Fn(&str) -> usize) -> Vec<Unit> {
    let mut units = Vec::new();
    for para in &book.paragraphs {
        let text = &book.text[para.start..para.end];
        for (offset, sentence) in text.split_sentence_bound_indices() {
            let trimmed = sentence.trim_end();
            if trimmed.trim().is_empty() {
                continue;
            }
            let start = para.start + offset + (trimmed.len() - trimmed.trim_start().len());
            let end = para.start + offset + trimmed.len();
            let sentence = &book.text[start..end];
            let words = word_count(sentence);
            let tokens = count_tokens(sentence);
            if tokens <= config.max_tokens && words <= config.max_words {
                units.push(Unit {
                    start,
                    end,
                    words,
                    tokens,
                    section: para.section,
                    page: para.page.clone(),
                });
            } else {
                split_long(book, start, end, para.section, para.page.clone(), config, count_tokens, &mut units);
            }
        }
    }
    units
}

/// Splits an overlong sentence into pieces under the limits, at word
/// boundaries (or at character boundaries for unspaced scripts).
#[allow(clippy::too_many_arguments)]
fn split_long(
    book: &BookText,
    start: usize,
    end: usize,
    section: usize,
    page: Option<PageRef>,
    config: ChunkConfig,
    count_tokens: &dyn Fn(&str) -> usize,
    units: &mut Vec<Unit>,
) {
    let text = &book.text[start..end];
    // Candidate cut points: after each word, or after each char for CJK.
    let mut cuts: Vec<usize> = text.split_word_bound_indices().map(|(i, w)| i + w.len()).collect();
    if cuts.last() != Some(&text.len()) {
        cuts.push(text.len());
    }
    let fits = |from: usize, to: usize| {
        let piece = &text[from..to];
        word_count(piece) <= config.max_words && count_tokens(piece) <= config.max_tokens
    };
    // Each piece ends at the last cut that fits. Token counts only grow as
    // a piece grows, so that cut is found by galloping then bisecting: a
    // few tokenizer calls per piece instead of one per word, which made a
    // long run without sentence ends (code, tables, a PDF's index pages)
    // quadratic.
    let mut piece_start = 0usize;
    let mut i = 0;
    while i < cuts.len() {
        if !fits(piece_start, cuts[i]) {
            // Not even one word fits: force the cut.
            push_piece(
                book,
                start + piece_start,
                start + cuts[i],
                section,
                page.clone(),
                count_tokens,
                units,
            );
            piece_start = cuts[i];
            i += 1;
            continue;
        }
        // Invariant: cut `good` fits; no cut from `bad` on does (`bad` may
        // be one past the last cut). Gallop, then bisect.
        let mut good = i;
        let mut bad = cuts.len();
        let mut step = 1;
        while good + step < cuts.len() {
            if !fits(piece_start, cuts[good + step]) {
                bad = good + step;
                break;
            }
            good += step;
            step *= 2;
        }
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if fits(piece_start, cuts[mid]) {
                good = mid;
            } else {
                bad = mid;
            }
        }
        if good == cuts.len() - 1 {
            // The rest fits: it is the last piece.
            break;
        }
        push_piece(
            book,
            start + piece_start,
            start + cuts[good],
            section,
            page.clone(),
            count_tokens,
            units,
        );
        piece_start = cuts[good];
        i = good + 1;
    }
    if piece_start < text.len() {
        push_piece(book, start + piece_start, end, section, page.clone(), count_tokens, units);
    }
}

fn push_piece(
    book: &BookText,
    start: usize,
    end: usize,
    section: usize,
    page: Option<PageRef>,
    count_tokens: &dyn Fn(&str) -> usize,
    units: &mut Vec<Unit>,
) {
    let raw = &book.text[start..end];
    let lead = raw.len() - raw.trim_start().len();
    let trail = raw.len() - raw.trim_end().len();
    let (start, end) = (start + lead, end - trail);
    if start >= end {
        return;
    }
    let piece = &book.text[start..end];
    units.push(Unit {
        start,
        end,
        words: word_count(piece),
        tokens: count_tokens(piece),
        section,
        page,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{assemble, Block, Document};

    fn approx_tokens(s: &str) -> usize {
        word_count(s) * 4 / 3 + 1
    }

    fn book(blocks: Vec<Block>) -> BookText {
        assemble(&Document {
            blocks,
            ..Document::default()
        })
    }

    #[test]
    fn passages_are_exact_slices_within_limits_and_sections() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank today. ";
        let long = sentence.repeat(60);
        let b = book(vec![
            Block::heading(1, "Chapter 1"),
            Block::paragraph(long.clone()),
            Block::heading(1, "Chapter 2"),
            Block::paragraph(long),
        ]);
        let passages = chunk(&b, ChunkConfig::default(), &approx_tokens);
        assert!(passages.len() >= 8, "{}", passages.len());
        for p in &passages {
            let text = &b.text[p.start..p.end];
            assert!(word_count(text) <= 180, "{}", word_count(text));
            assert!(approx_tokens(text) <= 260);
            assert!(!text.starts_with(' ') && !text.ends_with(' '));
            // A passage never spans two sections.
            let section_end = b.sections.get(p.section + 1).map_or(b.text.len(), |s| s.start);
            assert!(p.start >= b.sections[p.section].start && p.end <= section_end);
        }
        // Consecutive passages in a section overlap a little.
        assert!(passages[1].start < passages[0].end);
        // Every sentence is covered.
        let covered: usize = passages.iter().map(|p| p.end).max().unwrap();
        assert_eq!(covered, b.text.len());
    }

    #[test]
    fn overlong_sentences_and_unspaced_scripts_are_split() {
        let b = book(vec![Block::paragraph("词".repeat(2000))]);
        let count = |s: &str| s.chars().count();
        let passages = chunk(&b, ChunkConfig::default(), &count);
        assert!(passages.len() >= 9);
        for p in &passages {
            assert!(count(&b.text[p.start..p.end]) <= 240);
        }
        assert_eq!(passages.last().unwrap().end, b.text.len());
    }

    #[test]
    fn short_text_is_one_passage() {
        let b = book(vec![Block::paragraph("Hello there. General Kenobi.")]);
        let passages = chunk(&b, ChunkConfig::default(), &approx_tokens);
        assert_eq!(passages.len(), 1);
        assert_eq!(&b.text[passages[0].start..passages[0].end], "Hello there. General Kenobi.");
    }
}
