//! Prompt building for answers with citations: numbering passages, packing
//! them into the model's token budget, the instructions, and reading the
//! citations back out of an answer. Pure functions, so they are tested
//! without a model.

use crate::text::PageRef;

/// A passage that may go into a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Book id.
    pub book_id: u64,
    /// Book title.
    pub title: String,
    /// Book path.
    pub path: String,
    /// Heading path.
    pub chapter: String,
    /// Page where it starts.
    pub page: Option<PageRef>,
    /// Char range in the book's normalized text.
    pub start: u64,
    /// End of the char range (exclusive).
    pub end: u64,
    /// The text (neighbours merged).
    pub text: String,
    /// Stored passages it covers.
    pub chunk_ids: Vec<u64>,
    /// Best fused score among the retrieved passages in it.
    pub score: f32,
    /// Best (lowest) rank among them.
    pub rank: u32,
    /// Per-retriever scores of the best one.
    pub retrievers: Vec<crate::search::RetrieverScore>,
    /// The best retrieved passage alone (char range and text), used when
    /// the merged text does not fit.
    pub core: Option<(u64, u64, String, Vec<u64>)>,
}

/// Why a retrieved passage is not in the prompt, for the client's RAG view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftOut {
    /// Its similarity to the question is under the relevance floor.
    BelowFloor,
    /// The passages before it filled the passage budget.
    OverBudget,
}

/// A candidate after packing: its number in the prompt (0 = left out, and
/// why) and its size in tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// The passage as it went in (possibly cut back to its core).
    pub passage: Candidate,
    /// [n] in the prompt; 0 when it did not fit or was not relevant.
    pub number: u32,
    /// Tokens of its rendered block.
    pub tokens: usize,
    /// Why it is not in the prompt (`None` when `number > 0`).
    pub left_out: Option<LeftOut>,
}

impl Packed {
    /// Passage `number` of the prompt.
    pub fn numbered(passage: Candidate, number: u32, tokens: usize) -> Self {
        Packed {
            passage,
            number,
            tokens,
            left_out: None,
        }
    }

    /// A passage shown to the reader but kept out of the prompt.
    pub fn left_out(passage: Candidate, tokens: usize, why: LeftOut) -> Self {
        Packed {
            passage,
            number: 0,
            tokens,
            left_out: Some(why),
        }
    }
}

/// "Title — Chapter — p. 57", the header a passage carries in the prompt
/// and in citations.
pub fn header(title: &str, chapter: &str, page: Option<&PageRef>) -> String {
    mindory_proto::cite::place(title, chapter, &page.map(PageRef::display).unwrap_or_default())
}

/// One numbered block of the prompt.
pub fn block(number: u32, c: &Candidate) -> String {
    format!(
        "[{number}] {}\n{}\n\n",
        header(&c.title, &c.chapter, c.page.as_ref()),
        c.text.trim()
    )
}

/// A passage as the sentence check reads it: its header line, then its
/// text (the block without its number, which would read as a fact "1").
pub fn support_text(c: &Candidate) -> String {
    format!("{}\n{}", header(&c.title, &c.chapter, c.page.as_ref()), c.text.trim())
}

/// Numbers candidates in order and keeps those that fit in `budget` tokens:
/// a merged passage that does not fit falls back to its core passage, and
/// a smaller later passage may still fit after a large one did not.
pub fn pack(candidates: Vec<Candidate>, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<Packed> {
    let mut used = 0usize;
    let mut next = 1u32;
    let mut out = Vec::with_capacity(candidates.len());
    for mut c in candidates {
        let mut tokens = count(&block(next, &c));
        if used + tokens > budget {
            if let Some((start, end, text, ids)) = c.core.clone() {
                let core = Candidate {
                    start,
                    end,
                    text,
                    chunk_ids: ids,
                    ..c.clone()
                };
                let core_tokens = count(&block(next, &core));
                if used + core_tokens <= budget {
                    c = core;
                    tokens = core_tokens;
                }
            }
        }
        if used + tokens <= budget {
            used += tokens;
            out.push(Packed::numbered(c, next, tokens));
            next += 1;
        } else {
            out.push(Packed::left_out(c, tokens, LeftOut::OverBudget));
        }
    }
    out
}

/// The passages block of a prompt, in number order.
pub fn render(packed: &[Packed]) -> String {
    let mut s = String::new();
    for p in packed.iter().filter(|p| p.number > 0) {
        s.push_str(&block(p.number, &p.passage));
    }
    s
}

/// Instructions for answering from numbered passages.
pub const ANSWER_INSTRUCTIONS: &str =
    "You are Mindory, a reading assistant. Answer the reader's question using only the numbered passages from their books. \
After every sentence that uses a passage, cite it with its number in square brackets, like [1] or [2][3]. \
If the passages do not answer the question, say that the books do not say, instead of guessing. Answer in a few sentences.";

/// Instructions for the short answer that widens a question's retrieval
/// (`[llm] expand_questions`): written from the model's own knowledge, in
/// the terse register of the reference text it should find.
pub const GUESS_INSTRUCTIONS: &str = "Answer the question in one or two short sentences, as a reference manual would.";

/// The longest guess, in tokens: two sentences; more would outweigh the
/// question's own words in the search.
pub const GUESS_TOKENS: usize = 48;

/// The guess is cut here even if the endpoint ignores `max_tokens`: 48
/// tokens are about 250 bytes of English and 150 of Chinese, so this only
/// stops a model that would otherwise keep the reader waiting.
pub const GUESS_BYTES: usize = 600;

/// The user message: passages, then the question.
pub fn question_message(passages: &str, question: &str) -> String {
    format!("Passages:\n\n{passages}Question: {question}")
}

/// Every citation number in `answer`, in order of first appearance:
/// `[3]`, `[1, 2]`, `[2-4]`, `[Passage 5]`. Ranges are capped so a typo
/// like `[1-100000]` cannot flood the list.
pub fn citations(answer: &str) -> Vec<u32> {
    let mut found: Vec<u32> = Vec::new();
    let mut push = |n: u32| {
        if !found.contains(&n) {
            found.push(n);
        }
    };
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        let inner = after[..close].trim();
        rest = &after[close + 1..];
        // An optional leading word: "[Passage 2]", "[source 1, 3]".
        let inner = inner
            .trim_start_matches(|c: char| c.is_alphabetic())
            .trim_start_matches(['.', ':', ' ']);
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ',' | ' ' | '-' | '–' | ';'))
        {
            continue;
        }
        for part in inner.split([',', ';']) {
            let part = part.trim();
            if let Some((a, b)) = part.split_once(['-', '–']) {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    if a <= b && b - a <= 20 {
                        (a..=b).for_each(&mut push);
                    }
                }
            } else if let Ok(n) = part.parse::<u32>() {
                push(n);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(text: &str, core: Option<&str>) -> Candidate {
        Candidate {
            book_id: 1,
            title: "T".into(),
            path: "/t".into(),
            chapter: "C".into(),
            page: None,
            start: 0,
            end: text.chars().count() as u64,
            text: text.into(),
            chunk_ids: vec![1, 2, 3],
            score: 0.5,
            rank: 1,
            retrievers: vec![],
            core: core.map(|c| (10, 10 + c.len() as u64, c.to_string(), vec![2])),
        }
    }

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn packing_numbers_what_fits_and_falls_back_to_the_core() {
        let long = "w ".repeat(50);
        let packed = pack(
            vec![
                cand("a b c", None),
                cand(&long, Some("core words only")),
                cand(&long, None),
                cand("d e", None),
            ],
            30,
            &words,
        );
        let numbers: Vec<u32> = packed.iter().map(|p| p.number).collect();
        assert_eq!(
            numbers,
            vec![1, 2, 0, 3],
            "the too-long third is left out, the small fourth still fits"
        );
        let why: Vec<Option<LeftOut>> = packed.iter().map(|p| p.left_out).collect();
        assert_eq!(why, vec![None, None, Some(LeftOut::OverBudget), None]);
        assert_eq!(
            packed[1].passage.text, "core words only",
            "the merged text did not fit, its core did"
        );
        assert_eq!(packed[1].passage.chunk_ids, vec![2]);
        assert!(packed.iter().filter(|p| p.number > 0).map(|p| p.tokens).sum::<usize>() <= 30);
        let rendered = render(&packed);
        assert!(
            rendered.starts_with("[1] T — C\na b c") && rendered.contains("[3] T — C\nd e"),
            "{rendered}"
        );
    }

    #[test]
    fn citations_in_their_usual_shapes() {
        assert_eq!(citations("He proposes [2]. She refuses [1][3], twice [2, 4]."), vec![2, 1, 3, 4]);
        assert_eq!(citations("See [Passage 5] and [2-4] and [source: 7]."), vec![5, 2, 3, 4, 7]);
        assert_eq!(
            citations("Arrays like a[i] or [note] or [1-100000] are not citations"),
            Vec::<u32>::new()
        );
        assert_eq!(citations("unclosed [3"), Vec::<u32>::new());
    }

    #[test]
    fn headers_carry_chapter_and_page() {
        let page = PageRef {
            number: 63,
            label: Some("57".into()),
        };
        assert_eq!(
            header("R intro", "Statistical models", Some(&page)),
            "R intro — Statistical models — p. 57"
        );
        assert_eq!(header("Emma", "", None), "Emma");
    }
}
