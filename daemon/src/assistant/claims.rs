//! Checks an answer against the passages it was given, sentence by sentence,
//! so that a reader can see which statements the books back.
//!
//! Small models forget to write `[n]` about half the time and sometimes cite
//! the wrong number. After generation, each sentence of the answer is a
//! [`Claim`] with a status:
//! - `Verified`: it cites a passage that supports it;
//! - `Wrong`: it cites only passages that do not support it (another passage
//!   may; it is listed in `supporting`);
//! - `Inferred`: it cites nothing, and `supporting` lists the passages that
//!   back it (the best first), shown as inferred citations;
//! - `Unsupported`: no passage backs it ("not found in your books").
//!
//! Support is lexical and explainable: the share of the sentence's content
//! words (numbers included, spelled-out numbers read as digits, stemmed
//! with the Snowball stemmer of the passages' language as the keyword index
//! stems them, stop words and citation markers left out) that
//! occur in the passage, halved when the passage lacks one of the sentence's
//! numbers. It cannot see negation ("must not" and "must" look
//! alike), so a verified claim is one the passage is about, not proof that
//! the model read it right; the threshold is chosen so that paraphrases of a
//! passage pass and sentences about something else do not.

use std::collections::HashSet;

use tantivy::tokenizer::TextAnalyzer;

use super::prompt;
use crate::keyword::tokenize;

/// Share of a sentence's content words a passage must contain to support it.
pub const SUPPORT_THRESHOLD: f32 = 0.6;

/// Sentences with fewer content words than this are not judged ("Yes.",
/// "This is stated in [2]."); two are enough for a short answer ("With
/// Wickham [2].").
const MIN_CONTENT_WORDS: usize = 2;

/// How a sentence of the answer relates to the passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimStatus {
    /// Cites a passage that supports it.
    Verified,
    /// Cites only passages that do not support it.
    Wrong,
    /// Cites nothing; a passage supports it.
    Inferred,
    /// No passage supports it.
    Unsupported,
}

impl ClaimStatus {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Verified => "verified",
            ClaimStatus::Wrong => "wrong",
            ClaimStatus::Inferred => "inferred",
            ClaimStatus::Unsupported => "unsupported",
        }
    }
}

/// One judged sentence of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Char range of the sentence in the answer.
    pub start: u32,
    pub end: u32,
    pub status: ClaimStatus,
    /// Passage numbers the sentence cites (valid ones only).
    pub cited: Vec<u32>,
    /// Passages that support it, best first.
    pub supporting: Vec<u32>,
    /// The best support score over all passages (0–1).
    pub support: f32,
}

/// Judges every sentence of `answer` against `passages` (number, text);
/// the text may start with the passage's header line (title, chapter), so
/// that "as Section 2 says" can be checked too.
pub fn check(answer: &str, passages: &[(u32, &str)]) -> Vec<Claim> {
    // The passages say which language the words are in; an answer in
    // another language shares few stems with them anyway.
    let sample: String = passages.iter().map(|(_, t)| *t).collect::<Vec<_>>().join("\n");
    let mut stemmer = tokenize::detect_language(&sample).map(tokenize::stemmed_analyzer);
    let mut words = |text: &str| words(text, stemmer.as_mut());
    let vocab: Vec<(u32, HashSet<String>)> = passages.iter().map(|(n, t)| (*n, words(t).into_iter().collect())).collect();
    let mut claims: Vec<Claim> = Vec::new();
    let valid = |sentence: &str| -> Vec<u32> {
        prompt::citations(sentence)
            .into_iter()
            .filter(|n| passages.iter().any(|(p, _)| p == n))
            .collect()
    };
    // Whether the sentence before this one was judged (an unjudged or
    // judged sentence in between ends the carry-over below).
    let mut previous_judged = false;
    for (start, end) in sentences(answer) {
        let sentence = &answer[start..end];
        let content: Vec<String> = words(&strip_citations(sentence)).into_iter().filter(|w| !is_stop(w)).collect();
        let cited = valid(sentence);
        let judged = content.len() >= MIN_CONTENT_WORDS;
        if !judged {
            // "This is stated in [2]." claims nothing itself; its citations
            // belong to the sentence before it.
            if previous_judged {
                carry_back(&mut claims, &cited);
            }
            previous_judged = false;
            continue;
        }
        // Which of the sentence's words each passage holds, looked up once.
        let held: Vec<Vec<bool>> = vocab
            .iter()
            .map(|(_, set)| content.iter().map(|w| set.contains(w)).collect())
            .collect();
        // Each word also weighs by how rare it is among the passages: a word
        // every passage has ("Senate" in the Constitution's sections) says
        // little about which one backs the sentence, one only a single
        // passage has ("concur") says much.
        let weights: Vec<f32> = (0..content.len())
            .map(|i| {
                let holding = held.iter().filter(|h| h[i]).count().max(1);
                (1.0 + vocab.len() as f32 / holding as f32).ln()
            })
            .collect();
        let total_weight: f32 = weights.iter().sum();
        // (passage, share of the words it holds, share by weight).
        let mut scored: Vec<(u32, f32, f32)> = vocab
            .iter()
            .zip(&held)
            .map(|((n, _), held)| {
                let share = held.iter().filter(|h| **h).count() as f32 / content.len() as f32;
                let weighted = held.iter().zip(&weights).filter(|(h, _)| **h).map(|(_, w)| w).sum::<f32>() / total_weight;
                // Numbers are the facts small models get wrong ("20 years"
                // for thirty): a passage that lacks one of the sentence's
                // numbers does not support it, whatever else matches.
                let numbers_match = content.iter().zip(held).all(|(w, h)| *h || !w.chars().all(|c| c.is_ascii_digit()));
                let halve = if numbers_match { 1.0 } else { 0.5 };
                (*n, share * halve, weighted * halve)
            })
            .collect();
        // Whether a passage supports the sentence is the plain share (the
        // threshold was set on it); among those that do, the one holding
        // the sentence's rarer words comes first, as the inferred or the
        // corrected citation.
        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.total_cmp(&a.1)).then(a.0.cmp(&b.0)));
        let support = scored.iter().map(|s| s.1).fold(0.0, f32::max);
        let supporting: Vec<u32> = scored.iter().filter(|s| s.1 >= SUPPORT_THRESHOLD).map(|s| s.0).collect();
        let status = match (cited.is_empty(), supporting.is_empty()) {
            (false, _) if cited.iter().any(|n| supporting.contains(n)) => ClaimStatus::Verified,
            (false, _) => ClaimStatus::Wrong,
            (true, false) => ClaimStatus::Inferred,
            (true, true) => ClaimStatus::Unsupported,
        };
        // A reference sentence the cited passage backs ("This is stated
        // in Section 2 [1].") may be citing the claim before it as well.
        if status == ClaimStatus::Verified && previous_judged {
            carry_back(&mut claims, &cited);
        }
        previous_judged = true;
        let chars = |b: usize| answer[..b].chars().count() as u32;
        claims.push(Claim {
            start: chars(start),
            end: chars(end),
            status,
            cited,
            supporting,
            support,
        });
    }
    claims
}

/// Models often cite in the next sentence ("Charlotte marries Mr. Collins.
/// This is stated in [2]."): `cited`, the citations of such a sentence,
/// verify the last claim when it cites nothing and one of them supports it.
fn carry_back(claims: &mut [Claim], cited: &[u32]) {
    if let Some(last) = claims.last_mut() {
        if last.cited.is_empty() {
            if let Some(n) = cited.iter().find(|n| last.supporting.contains(n)) {
                last.cited = vec![*n];
                last.status = ClaimStatus::Verified;
            }
        }
    }
}

/// Whether the passages back the answer at all: some judged sentence is
/// verified or inferred (an answer with no judged sentence counts as backed).
pub fn grounded(claims: &[Claim]) -> bool {
    claims.is_empty()
        || claims
            .iter()
            .any(|c| matches!(c.status, ClaimStatus::Verified | ClaimStatus::Inferred))
}

/// Byte ranges of the sentences of `text`: cut after `.`, `!`, `?` (and
/// their CJK forms) followed by a space or the end, and at line breaks;
/// surrounding whitespace trimmed, empty pieces dropped. A citation right
/// after the full stop ("… States. [1]") stays with its sentence.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let cut = match c {
            '\n' => Some(i),
            '。' | '！' | '？' => Some(i + c.len_utf8()),
            '.' | '!' | '?' => match chars.peek() {
                None => Some(i + 1),
                Some((_, next)) if next.is_whitespace() => {
                    // Keep a following "[n]" with this sentence.
                    let rest = &text[i + 1..];
                    let trimmed = rest.trim_start_matches([' ', '\t']);
                    if trimmed.starts_with('[') {
                        trimmed.find(']').map(|close| i + 1 + (rest.len() - trimmed.len()) + close + 1)
                    } else {
                        Some(i + 1)
                    }
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(end) = cut {
            push_trimmed(text, start, end, &mut out);
            start = end;
            // Skip what the cut already covered.
            while chars.peek().is_some_and(|(j, _)| *j < end) {
                chars.next();
            }
        }
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    if lead + trail < piece.len() {
        out.push((start + lead, end - trail));
    }
}

/// The sentence without its citation markers (`[1]`, `[2, 3]`,
/// `[Passage 2]`): brackets holding a digit and at most a short word.
fn strip_citations(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if after[..close].chars().any(|c| c.is_ascii_digit()) && after[..close].chars().count() <= 20 => {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The words of `text` as the check compares them, unstemmed: lowercase
/// letter/digit runs with spelled-out numbers as digits, so "thirty-five"
/// is one word, `35`, and never matches "thirty". The answer eval judges
/// an answer right with it.
pub fn plain_words(text: &str) -> Vec<String> {
    words(text, None)
}

/// Normalized words: lowercase letter/digit runs, spelled-out numbers as
/// digits ("thirty five" and "thirty-five" are 35), stemmed by `stemmer`
/// when there is one; CJK ideographs one by one. Stop words are tested
/// before stemming would change them, so they are kept whole.
fn words(text: &str, mut stemmer: Option<&mut TextAnalyzer>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // The value of the last word when it was a spelled-out tens number.
    let mut tens: Option<u32> = None;
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if w.chars().any(crate::text::is_cjk) {
            out.extend(w.chars().map(|c| c.to_string()));
            tens = None;
            continue;
        }
        let lower = w.to_lowercase();
        match (tens, number_word(&lower)) {
            (Some(t), Some(n)) if (1..10).contains(&n) => {
                *out.last_mut().expect("the tens word was pushed") = (t + n).to_string();
                tens = None;
            }
            (_, Some(n)) => {
                out.push(n.to_string());
                tens = ((20..100).contains(&n) && n % 10 == 0).then_some(n);
            }
            (_, None) => {
                let stemmed = match stemmer.as_deref_mut() {
                    Some(an) if !is_stop(&lower) => tokenize::analyze(an, &lower).into_iter().next().map(|(_, t)| t),
                    _ => None,
                };
                out.push(stemmed.unwrap_or(lower));
                tens = None;
            }
        }
    }
    out
}

fn number_word(w: &str) -> Option<u32> {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    if let Some(i) = ONES.iter().position(|o| *o == w) {
        return Some(i as u32);
    }
    if let Some(i) = TENS.iter().position(|t| *t == w) {
        return Some(20 + 10 * i as u32);
    }
    match w {
        "hundred" => Some(100),
        "thousand" => Some(1000),
        _ => None,
    }
}

/// Words that carry no claim of their own.
fn is_stop(w: &str) -> bool {
    const STOP: &[&str] = &[
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "them",
        "he",
        "she",
        "his",
        "her",
        "him",
        "we",
        "you",
        "your",
        "our",
        "i",
        "me",
        "my",
        "not",
        "no",
        "so",
        "if",
        "than",
        "then",
        "also",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "how",
        "why",
        "all",
        "any",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "according",
        "passage",
        "passages",
        "text",
        "answer",
        "based",
        "state",
        "says",
        "said",
        "mention",
        "mentioned",
        "provided",
        "given",
        "such",
        "other",
        "into",
        "about",
        "only",
        "very",
        "more",
        "most",
        "some",
        "each",
        "both",
        "least",
        "per",
    ];
    (w.len() < 3 && w.parse::<u64>().is_err()) || STOP.contains(&w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENATE: &str = "No Person shall be a Senator who shall not have attained to the Age of thirty Years, and been nine \
                          Years a Citizen of the United States, and who shall not, when elected, be an Inhabitant of that State \
                          for which he shall be chosen.";
    const WAR: &str = "The Congress shall have Power To declare War, grant Letters of Marque and Reprisal, and make Rules \
                       concerning Captures on Land and Water.";

    fn statuses(answer: &str) -> Vec<(String, ClaimStatus, Vec<u32>)> {
        check(answer, &[(1, SENATE), (2, WAR)])
            .into_iter()
            .map(|c| {
                let s: String = answer.chars().skip(c.start as usize).take((c.end - c.start) as usize).collect();
                (s, c.status, c.supporting)
            })
            .collect()
    }

    #[test]
    fn a_cited_paraphrase_with_digits_is_verified() {
        let got = statuses("A senator must be at least 30 years old and a citizen for nine years [1].");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, ClaimStatus::Verified, "{got:?}");
        assert_eq!(
            got[0].0,
            "A senator must be at least 30 years old and a citizen for nine years [1]."
        );
    }

    #[test]
    fn compound_number_words_are_one_number() {
        let president = "No Person except a natural born Citizen shall be eligible to the Office of President; neither shall \
                         any Person be eligible to that Office who shall not have attained to the Age of thirty five Years.";
        let claims = check("The President must be at least 35 years old [1].", &[(1, president)]);
        assert_eq!(claims[0].status, ClaimStatus::Verified, "{claims:?}");
        let claims = check("The President must be at least thirty years old [1].", &[(1, president)]);
        assert_eq!(claims[0].status, ClaimStatus::Wrong, "thirty is not thirty-five: {claims:?}");
    }

    #[test]
    fn word_forms_meet_through_the_stemmer() {
        let trial = "The Senate shall have the sole Power to try all Impeachments. When the President of the United \
                     States is tried, the Chief Justice shall preside: And no Person shall be convicted without the \
                     Concurrence of two thirds of the Members present.";
        // "senators"/"Senate", "impeached"/"Impeachments", "convict"/"convicted".
        let claims = check(
            "Two thirds of the senators present must concur to convict someone who is impeached [1].",
            &[(1, trial)],
        );
        assert_eq!(claims[0].status, ClaimStatus::Verified, "{claims:?}");
    }

    #[test]
    fn a_citation_in_the_next_sentence_counts_for_the_one_it_supports() {
        let got = statuses("Congress has the power to declare war. This is stated in [2].");
        assert_eq!(got.len(), 1, "the citation sentence alone is not judged: {got:?}");
        assert_eq!(got[0].1, ClaimStatus::Verified, "{got:?}");
        let claims = check(
            "Congress has the power to declare war. This is stated in [2].",
            &[(1, SENATE), (2, WAR)],
        );
        assert_eq!(claims[0].cited, vec![2]);
        // A citation of a passage that does not support the sentence before
        // it leaves that sentence inferred.
        let got = statuses("Congress has the power to declare war. This is stated in [1].");
        assert_eq!(got[0].1, ClaimStatus::Inferred, "{got:?}");
        // Only the sentence right before is helped.
        let got = statuses("Congress has the power to declare war. The moon is far away. See [2].");
        assert_eq!(got[0].1, ClaimStatus::Inferred, "{got:?}");
        // A sentence that makes its own claim, which its citation does not
        // back, lends that citation to nobody.
        let got = statuses("Congress has the power to declare war. Bananas ripen quickly in greenhouses [2].");
        assert_eq!(got[0].1, ClaimStatus::Inferred, "{got:?}");
        assert_eq!(got[1].1, ClaimStatus::Wrong, "{got:?}");
        // One that the cited passage backs does.
        let got = statuses("Congress may declare war. It may also grant letters of marque and reprisal [2].");
        assert_eq!(got[0].1, ClaimStatus::Verified, "{got:?}");
    }

    #[test]
    fn the_wrong_number_is_flagged_and_the_right_one_named() {
        let got = statuses("A senator must be thirty years old and nine years a citizen [2].");
        assert_eq!(got[0].1, ClaimStatus::Wrong, "{got:?}");
        assert_eq!(got[0].2, vec![1]);
    }

    #[test]
    fn an_uncited_sentence_gets_an_inferred_citation() {
        let got = statuses("Congress has the power to declare war. Senators are chosen for six years by lot.");
        assert_eq!(got[0].1, ClaimStatus::Inferred, "{got:?}");
        assert_eq!(got[0].2, vec![2]);
        assert_eq!(got[1].1, ClaimStatus::Unsupported, "{got:?}");
    }

    #[test]
    fn the_passage_with_the_rarer_words_is_named_first() {
        // Each passage holds three of the sentence's four words; only the
        // second holds "lantern", which no other passage has.
        let passages = [
            (1, "The river flows under the bridge, built of stone."),
            (2, "A river bridge with a lantern."),
            (3, "The old river bridge, all of stone."),
        ];
        let claims = check("The river bridge has a stone lantern.", &passages);
        assert_eq!(claims[0].status, ClaimStatus::Inferred, "{claims:?}");
        assert_eq!(claims[0].supporting, vec![2, 1, 3], "{claims:?}");
        assert!((claims[0].support - 0.75).abs() < 1e-6, "support stays the plain share: {claims:?}");
    }

    #[test]
    fn citations_after_the_full_stop_stay_with_their_sentence() {
        let got = statuses("Congress may declare war and grant letters of marque. [2]\nThe moon is made of cheese.");
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "Congress may declare war and grant letters of marque. [2]");
        assert_eq!(got[0].1, ClaimStatus::Verified);
        assert_eq!(got[1].1, ClaimStatus::Unsupported);
        assert!(!grounded(&check("The moon is made of green cheese.", &[(1, SENATE)])));
        assert!(grounded(&check("Yes.", &[(1, SENATE)])), "too short to judge");
    }

    #[test]
    fn offsets_are_chars_and_cjk_is_compared_by_character() {
        let passage = "我在年青时候也曾经做过许多梦，后来大半忘却了。";
        let answer = "他年轻时做过许多梦 [1]。";
        let claims = check(answer, &[(1, passage)]);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].end as usize, answer.chars().count());
        assert_eq!(claims[0].status, ClaimStatus::Verified, "{claims:?}");
    }
}
