//! `Summarize`: a chapter (with its subsections) summarized. A chapter
//! too long for the model's context is cut into parts along passage
//! boundaries ([`split_parts`]); each part is summarized on its own (map)
//! and the part summaries into one (reduce).

use std::time::Instant;

use super::context::{slice_chars, PER_MESSAGE_TOKENS};
use super::prompt::{self, Candidate, Packed};
use super::{send, AskContext, AskEvent, Assistant, AssistantError, Events, Prepared};
use crate::llm::{ChatMessage, Role};
use crate::read::At;
use crate::store::{ChunkRecord, StoreError};

impl Assistant {
    pub(super) async fn summarize(&self, t0: Instant, book_id: u64, chapter: u32, out: &Events) -> Result<(), AssistantError> {
        let (info, count) = self.backend().await?;
        let (passage, chunks) = self
            .blocking(move |s| {
                let p = crate::read::passage(s, book_id, At::Chapter(chapter), 0)?;
                // A chapter includes its subsections: read on to the next
                // heading that is not below this one.
                let book = s.book(book_id)?.ok_or(StoreError::NoSuchBook(book_id))?;
                let idx = chapter as usize - 1;
                let prefix = format!("{} › ", book.sections[idx].heading);
                let end = book.sections[idx + 1..]
                    .iter()
                    .find(|x| !x.heading.starts_with(&prefix))
                    .map_or(book.text_chars, |x| x.start);
                let p = if end > p.end {
                    crate::read::Passage {
                        text: s.text(book_id)?.map(|t| slice_chars(&t, p.start, end)).unwrap_or_default(),
                        end,
                        ..p
                    }
                } else {
                    p
                };
                let ids = s.chunk_ids_of(book_id)?;
                let chunks: Vec<ChunkRecord> = s.chunks(&ids)?.into_iter().filter(|c| c.end > p.start && c.start < p.end).collect();
                Ok((p, chunks))
            })
            .await?;
        let retrieval_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        let where_ = if passage.chapter.is_empty() {
            format!("section {chapter} of \"{}\"", passage.title)
        } else {
            format!("the chapter \"{}\" of \"{}\"", passage.chapter, passage.title)
        };
        let max_tokens = info.config.max_tokens as usize;
        let final_instructions = format!(
            "Summarize {where_} for a reader in one or two paragraphs, using only the numbered text below. Cite the parts you use like [1]."
        );
        let fixed = count(&final_instructions) + PER_MESSAGE_TOKENS;
        let budget = Self::passage_budget(&info, max_tokens, fixed)?;
        // Cut the chapter into parts that each fit the budget, along
        // passage boundaries (or take it whole when it fits).
        let whole = Candidate {
            book_id,
            title: passage.title.clone(),
            path: String::new(),
            chapter: passage.chapter.clone(),
            page: passage.page.clone(),
            start: passage.start,
            end: passage.end,
            text: passage.text.clone(),
            chunk_ids: chunks.iter().map(|c| crate::store::chunk_id(c.book_id, c.ordinal)).collect(),
            score: 1.0,
            rank: 1,
            retrievers: Vec::new(),
            core: None,
        };
        let parts = split_parts(whole, &chunks, budget, &*count);
        let n = parts.len();
        let packed: Vec<Packed> = parts
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let tokens = count(&prompt::block(i as u32 + 1, &c));
                Packed::numbered(c, i as u32 + 1, tokens)
            })
            .collect();
        let prompt_ms = t1.elapsed().as_millis() as u64;
        if n == 1 {
            let messages = vec![ChatMessage::new(
                Role::User,
                format!("{final_instructions}\n\n{}Summary:", prompt::render(&packed)),
            )];
            let prepared = Prepared::summary(messages, packed, &count, retrieval_ms, prompt_ms).limited(budget);
            return self.answer(t0, &info, prepared, max_tokens, out, true).await;
        }
        // Map: summarize each part, each summary short enough that all of
        // them fit the final prompt together.
        let map_tokens = (budget / n).min(160).min(max_tokens);
        if map_tokens < 24 {
            return Err(AssistantError::NoRoom(format!(
                "{where_} needs {n} parts in this model's {}-token context, too many to summarize together; raise context_tokens",
                info.context_tokens
            )));
        }
        // The parts go to the model one by one, so there is no one prompt
        // to break down.
        let context = AskContext::new(String::new(), &info, &packed);
        send(out, AskEvent::Context(context)).await?;
        let mut summaries = Vec::with_capacity(n);
        for (i, part) in packed.iter().enumerate() {
            let messages = vec![ChatMessage::new(
                Role::User,
                format!(
                    "Summarize this part of {where_} in two or three sentences.\n\n{}Summary:",
                    prompt::block(part.number, &part.passage)
                ),
            )];
            let (text, _, _) = self.generate(messages, Self::params(&info, map_tokens), out, false, None).await?;
            summaries.push(text.trim().to_string());
            send(
                out,
                AskEvent::Progress {
                    stage: "map".into(),
                    done: i as u32 + 1,
                    total: n as u32,
                },
            )
            .await?;
        }
        // Reduce: the part summaries, numbered like the parts, so the
        // final summary's citations point at the parts' text.
        let mut listing = String::new();
        for (part, summary) in packed.iter().zip(&summaries) {
            listing.push_str(&format!("[{}] {summary}\n\n", part.number));
        }
        let messages = vec![ChatMessage::new(
            Role::User,
            format!("{final_instructions} The numbered items are summaries of consecutive parts of it.\n\n{listing}Summary:"),
        )];
        let prepared = Prepared::summary(messages, packed, &count, retrieval_ms, prompt_ms);
        self.answer(t0, &info, prepared, max_tokens, out, false).await
    }
}

/// Cuts `whole` (a chapter's text and char range) into parts whose numbered
/// blocks each fit `budget` tokens by `count`, along the boundaries of
/// `chunks` (the stored passages overlapping it, in order). A part grows
/// passage by passage while it fits; the passage that does not fit starts
/// the next part, so a passage longer than the budget is a part of its own
/// (over budget). It returns `whole` alone when it fits or when there are
/// fewer than two passages to cut along.
///
/// A part spans its first passage's start to its last passage's end, so
/// what lies between two parts' passages (blank lines, any text no passage
/// holds) is in neither, and the chunker's overlap (the sentence a
/// passage repeats from the one before) is in both parts around a cut.
pub(crate) fn split_parts(whole: Candidate, chunks: &[ChunkRecord], budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<Candidate> {
    let mut parts: Vec<Candidate> = Vec::new();
    if count(&prompt::block(1, &whole)) <= budget || chunks.len() < 2 {
        parts.push(whole);
    } else {
        let mut current: Option<Candidate> = None;
        for c in chunks {
            let id = crate::store::chunk_id(c.book_id, c.ordinal);
            let extended = current.as_ref().map(|cur| {
                let end = cur.end.max(c.end);
                Candidate {
                    end,
                    text: slice_chars(&whole.text, cur.start - whole.start, end.min(whole.end) - whole.start),
                    chunk_ids: cur.chunk_ids.iter().copied().chain([id]).collect(),
                    ..cur.clone()
                }
            });
            match extended {
                Some(e) if count(&prompt::block(1, &e)) <= budget => current = Some(e),
                _ => {
                    parts.extend(current.take());
                    let start = c.start.max(whole.start);
                    let end = c.end.min(whole.end);
                    current = Some(Candidate {
                        start,
                        end,
                        page: c.page.clone(),
                        text: slice_chars(&whole.text, start - whole.start, end - whole.start),
                        chunk_ids: vec![id],
                        ..whole.clone()
                    });
                }
            }
        }
        parts.extend(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens are words here, which is all the cutting needs.
    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    /// A chapter that starts at char 100 of its book, so offsets within the
    /// chapter and within the book differ.
    fn chapter(text: &str) -> Candidate {
        Candidate {
            book_id: 1,
            title: "Book".into(),
            path: String::new(),
            chapter: "Chapter".into(),
            page: None,
            start: 100,
            end: 100 + text.chars().count() as u64,
            text: text.into(),
            chunk_ids: Vec::new(),
            score: 1.0,
            rank: 1,
            retrievers: Vec::new(),
            core: None,
        }
    }

    /// Stored passages over the given char ranges of the chapter's text.
    fn passages(whole: &Candidate, ranges: &[(u64, u64)]) -> Vec<ChunkRecord> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| ChunkRecord {
                book_id: 1,
                ordinal: i as u32,
                text: slice_chars(&whole.text, a, b),
                start: whole.start + a,
                end: whole.start + b,
                heading: whole.chapter.clone(),
                page: None,
            })
            .collect()
    }

    /// Paragraphs of the given word counts, each passage one paragraph with
    /// the blank line after it, so the passages tile the text.
    fn tiled(sizes: &[usize]) -> (Candidate, Vec<ChunkRecord>) {
        let mut text = String::new();
        let mut ranges = Vec::new();
        for (p, &n) in sizes.iter().enumerate() {
            let start = text.chars().count() as u64;
            let para: Vec<String> = (0..n).map(|w| format!("p{p}w{w}")).collect();
            text.push_str(&para.join(" "));
            if p + 1 < sizes.len() {
                text.push_str("\n\n");
            }
            ranges.push((start, text.chars().count() as u64));
        }
        let mut whole = chapter(&text);
        let chunks = passages(&whole, &ranges);
        // As `summarize` builds it: the whole chapter covers every passage.
        whole.chunk_ids = ids(&chunks);
        (whole, chunks)
    }

    /// Tokens a numbered block costs beyond its text (number and header).
    fn overhead() -> usize {
        words(&prompt::block(1, &chapter("")))
    }

    fn ids(chunks: &[ChunkRecord]) -> Vec<u64> {
        chunks.iter().map(|c| crate::store::chunk_id(c.book_id, c.ordinal)).collect()
    }

    #[test]
    fn a_chapter_that_fits_is_one_part() {
        let (whole, chunks) = tiled(&[10, 10, 10]);
        let parts = split_parts(whole.clone(), &chunks, overhead() + 30, &words);
        assert_eq!(parts, vec![whole]);
    }

    #[test]
    fn parts_end_at_passage_boundaries_and_fit_the_budget() {
        let (whole, chunks) = tiled(&[10; 6]);
        let budget = overhead() + 25;
        let parts = split_parts(whole.clone(), &chunks, budget, &words);
        assert_eq!(parts.len(), 3, "{parts:#?}");
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.chunk_ids, ids(&chunks[2 * i..2 * i + 2]));
            assert_eq!(part.start, chunks[2 * i].start);
            assert_eq!(part.end, chunks[2 * i + 1].end);
            assert!(part.text.starts_with(&format!("p{}w0 ", 2 * i)), "{}", part.text);
            assert!(words(&prompt::block(1, part)) <= budget);
            assert_eq!((part.book_id, &part.title, &part.chapter), (1, &whole.title, &whole.chapter));
        }
    }

    #[test]
    fn every_character_is_in_exactly_one_part_in_order() {
        let (whole, chunks) = tiled(&[7, 12, 3, 9, 15, 4, 8, 11]);
        for extra in 15..80 {
            let parts = split_parts(whole.clone(), &chunks, overhead() + extra, &words);
            let joined: String = parts.iter().map(|p| p.text.as_str()).collect();
            assert_eq!(joined, whole.text, "budget {extra}");
            assert_eq!(parts.first().unwrap().start, whole.start);
            assert_eq!(parts.last().unwrap().end, whole.end);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start, "budget {extra}");
            }
            let all: Vec<u64> = parts.iter().flat_map(|p| p.chunk_ids.clone()).collect();
            assert_eq!(all, ids(&chunks), "budget {extra}");
        }
    }

    #[test]
    fn a_passage_longer_than_the_budget_is_a_part_of_its_own() {
        let (whole, chunks) = tiled(&[10, 40, 10]);
        let parts = split_parts(whole.clone(), &chunks, overhead() + 15, &words);
        let got: Vec<Vec<u64>> = parts.iter().map(|p| p.chunk_ids.clone()).collect();
        let want: Vec<Vec<u64>> = ids(&chunks).into_iter().map(|id| vec![id]).collect();
        assert_eq!(got, want);
        assert_eq!(words(&parts[1].text), 40);
        // With a single passage there is nothing to cut along: the chapter
        // goes whole, over budget.
        let (whole, chunks) = tiled(&[40]);
        assert_eq!(split_parts(whole.clone(), &chunks, overhead() + 15, &words), vec![whole]);
    }

    #[test]
    fn an_empty_chapter_is_one_empty_part() {
        let whole = chapter("");
        let parts = split_parts(whole.clone(), &[], overhead() + 10, &words);
        assert_eq!(parts, vec![whole]);
    }

    #[test]
    fn overlaps_and_gaps_between_passages_are_kept_as_the_passages_have_them() {
        // The chunker repeats a passage's last sentence at the start of the
        // next one; a cut between them leaves that sentence in both parts.
        let text = "One two three. Four five six. Seven eight nine.";
        let whole = chapter(text);
        let chunks = passages(&whole, &[(0, 29), (15, 47)]);
        let parts = split_parts(whole.clone(), &chunks, overhead() + 6, &words);
        let texts: Vec<&str> = parts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["One two three. Four five six.", "Four five six. Seven eight nine."]);
        // Text no passage holds, between two parts, is in neither.
        let text = "One two three.\n\nLoose line\n\nFour five six.";
        let whole = chapter(text);
        let chunks = passages(&whole, &[(0, 14), (28, 42)]);
        let parts = split_parts(whole.clone(), &chunks, overhead() + 3, &words);
        let texts: Vec<&str> = parts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["One two three.", "Four five six."]);
    }
}
