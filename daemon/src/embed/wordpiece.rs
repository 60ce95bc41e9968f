//! A fast, exact token counter for BERT WordPiece tokenizers (MiniLM's).
//!
//! Chunking asks "how many model tokens is this?" for every sentence of a
//! book, and for long runs without sentence ends several times more. The
//! `tokenizers` crate answers exactly but slowly here (about 0.7 MB/s: it
//! tracks the alignment of every character through normalization, which a
//! count does not need), so parsing-to-searchable of a 2,415-page manual
//! spent most of its time counting. This module re-implements the three
//! steps a BERT tokenizer takes — `BertNormalizer`, `BertPreTokenizer`,
//! greedy longest-match `WordPiece` — as a count, following the crate's
//! definitions character class by character class.
//!
//! It is only used when `tokenizer.json` describes exactly that pipeline,
//! and a text that holds an added token (`[CLS]`, `[MASK]`, …) is left to
//! the real tokenizer, which splits those out first. The tests check the
//! counts against the real tokenizer on books in several languages.

use std::collections::HashSet;

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

/// Counts WordPiece tokens without building an encoding.
pub(crate) struct WordPieceCounter {
    vocab: HashSet<String>,
    prefix: String,
    max_chars: usize,
    clean_text: bool,
    chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
    /// Added tokens' contents: a text holding one is not counted here.
    added: Vec<String>,
}

impl WordPieceCounter {
    /// The counter for the tokenizer serialized in `json`, or `None` when
    /// that tokenizer is not a plain BERT WordPiece pipeline.
    pub(crate) fn from_json(json: &str) -> Option<Self> {
        let t: serde_json::Value = serde_json::from_str(json).ok()?;
        let normalizer = &t["normalizer"];
        let model = &t["model"];
        if normalizer["type"] != "BertNormalizer" || t["pre_tokenizer"]["type"] != "BertPreTokenizer" || model["type"] != "WordPiece" {
            return None;
        }
        let vocab: HashSet<String> = model["vocab"].as_object()?.keys().cloned().collect();
        let lowercase = normalizer["lowercase"].as_bool().unwrap_or(true);
        Some(WordPieceCounter {
            vocab,
            prefix: model["continuing_subword_prefix"].as_str().unwrap_or("##").to_string(),
            max_chars: model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize,
            clean_text: normalizer["clean_text"].as_bool().unwrap_or(true),
            chinese_chars: normalizer["handle_chinese_chars"].as_bool().unwrap_or(true),
            // An unset `strip_accents` follows `lowercase`, as in BERT.
            strip_accents: normalizer["strip_accents"].as_bool().unwrap_or(lowercase),
            lowercase,
            added: t["added_tokens"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["content"].as_str().map(str::to_string))
                .collect(),
        })
    }

    /// Registers more added tokens (those the embedding engine adds on top
    /// of `tokenizer.json`).
    pub(crate) fn add_tokens(&mut self, contents: impl IntoIterator<Item = String>) {
        self.added.extend(contents);
    }

    /// Tokens of `text` without special tokens, or `None` when the text
    /// holds an added token.
    pub(crate) fn count(&self, text: &str) -> Option<usize> {
        // Added tokens are matched on the raw text, or on the normalized
        // one for some; both are checked, but only when the text has a
        // character an added token starts with (`[` for BERT's).
        let starts = |c: char| {
            self.added
                .iter()
                .any(|a| a.chars().next().is_some_and(|f| f.to_lowercase().eq(c.to_lowercase())))
        };
        if text.chars().any(starts) {
            let lower = text.to_lowercase();
            if self
                .added
                .iter()
                .any(|a| !a.is_empty() && (text.contains(a.as_str()) || lower.contains(&a.to_lowercase())))
            {
                return None;
            }
        }
        let normalized = self.normalize(text);
        let mut count = 0;
        let mut piece = String::new();
        for word in normalized.split(char::is_whitespace) {
            // Punctuation characters are words of their own.
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if is_bert_punctuation(c) {
                    count += self.word_tokens(&word[start..i], &mut piece);
                    count += self.word_tokens(&word[i..i + c.len_utf8()], &mut piece);
                    start = i + c.len_utf8();
                }
            }
            count += self.word_tokens(&word[start..], &mut piece);
        }
        Some(count)
    }

    /// `BertNormalizer`: clean, space out CJK ideographs, strip accents,
    /// lowercase, in that order.
    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_whitespace(c) {
                    out.push(' ');
                    continue;
                }
            }
            if self.chinese_chars && is_chinese_char(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents && !out.is_ascii() {
            out = out.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
        }
        if self.lowercase {
            if out.is_ascii() {
                out.make_ascii_lowercase();
            } else {
                out = out.chars().flat_map(char::to_lowercase).collect();
            }
        }
        out
    }

    /// Greedy longest-match-first WordPiece: the number of pieces, or 1
    /// (`[UNK]`) for a word too long or with a part the vocabulary lacks.
    fn word_tokens(&self, word: &str, piece: &mut String) -> usize {
        if word.is_empty() {
            return 0;
        }
        if self.vocab.contains(word) {
            return 1;
        }
        if word.chars().count() > self.max_chars {
            return 1;
        }
        let mut tokens = 0;
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = false;
            while start < end {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if self.vocab.contains(piece.as_str()) {
                    found = true;
                    break;
                }
                end -= word[start..end].chars().next_back().map_or(1, char::len_utf8);
            }
            if !found {
                return 1;
            }
            tokens += 1;
            start = end;
        }
        tokens
    }
}

/// Whitespace as BERT sees it (tab, newline and carriage return included).
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control characters as BERT sees them: Unicode "other" categories
/// (Cc, Cf, Cs, Co, Cn), except the whitespace controls.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// BERT's punctuation: ASCII punctuation (which includes symbols such as
/// `$` and `^`) and Unicode punctuation categories.
fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// The CJK ideograph blocks BERT spaces out.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}
