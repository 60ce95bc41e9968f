//! From retrieval to the prompt's passages: hybrid retrieval with every
//! hit's similarity, neighbours of the same chapter merged into candidates,
//! the token budgets passages are packed into, and earlier turns of a
//! conversation as chat messages.

use std::collections::HashMap;

use super::conversations::Turn;
use super::prompt::Candidate;
use super::{Assistant, AssistantError};
use crate::llm::{ChatMessage, LlmInfo, Role, TokenCount};
use crate::search::{Hit, Mode, Query};
use crate::store::{ChunkRecord, StoreError, StoreReader};

const MASK: u64 = (1 << crate::store::ORDINAL_BITS) - 1;

/// `text[start..end)` counted in chars, in one pass up to `end`.
pub(super) fn slice_chars(text: &str, start: u64, end: u64) -> String {
    text.chars().skip(start as usize).take(end.saturating_sub(start) as usize).collect()
}

/// Groups hits with their neighbours in the same chapter: each hit brings
/// the passage before and after it (when they share its heading), and
/// groups that overlap or touch merge. A group keeps the best score and
/// rank among its hits; its text is the book's text over the whole range.
pub(super) fn merge_neighbours(store: &StoreReader, hits: &[Hit]) -> Result<Vec<Candidate>, StoreError> {
    let mut wanted: Vec<u64> = Vec::new();
    for h in hits {
        if h.chunk_id & MASK > 0 {
            wanted.push(h.chunk_id - 1);
        }
        wanted.push(h.chunk_id + 1);
    }
    let neighbours: HashMap<u64, ChunkRecord> = store
        .chunks(&wanted)?
        .into_iter()
        .map(|c| (crate::store::chunk_id(c.book_id, c.ordinal), c))
        .collect();
    struct Group {
        book: u64,
        heading: String,
        lo: u64,
        hi: u64,
        best: usize,
    }
    let mut groups: Vec<Group> = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        let same = |id: u64| neighbours.get(&id).is_some_and(|c| c.heading == h.chapter);
        let lo = if h.chunk_id & MASK > 0 && same(h.chunk_id - 1) {
            h.chunk_id - 1
        } else {
            h.chunk_id
        };
        let hi = if same(h.chunk_id + 1) { h.chunk_id + 1 } else { h.chunk_id };
        match groups
            .iter_mut()
            .find(|g| g.book == h.book_id && g.heading == h.chapter && lo <= g.hi + 1 && g.lo <= hi + 1)
        {
            // Hits come best first, so the group's best hit stays the first.
            Some(g) => {
                g.lo = g.lo.min(lo);
                g.hi = g.hi.max(hi);
            }
            None => groups.push(Group {
                book: h.book_id,
                heading: h.chapter.clone(),
                lo,
                hi,
                best: i,
            }),
        }
    }
    let mut texts: HashMap<u64, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let best = &hits[g.best];
        let ids: Vec<u64> = (g.lo..=g.hi).collect();
        let chunks = store.chunks(&ids)?;
        let (Some(first), Some(last)) = (chunks.first(), chunks.iter().max_by_key(|c| c.end)) else {
            continue;
        };
        let (start, end) = (first.start, last.end);
        if let std::collections::hash_map::Entry::Vacant(e) = texts.entry(g.book) {
            e.insert(store.text(g.book)?);
        }
        let text = match texts.get(&g.book).and_then(Option::as_ref) {
            Some(t) if ids.len() > 1 => slice_chars(t, start, end),
            _ => best.text.clone(),
        };
        let single = ids.len() == 1;
        out.push(Candidate {
            book_id: best.book_id,
            title: best.title.clone(),
            path: best.path.clone(),
            chapter: best.chapter.clone(),
            page: if single { best.page.clone() } else { first.page.clone() },
            start: if single { best.start } else { start },
            end: if single { best.end } else { end },
            text,
            chunk_ids: ids,
            score: best.score,
            rank: best.rank(),
            retrievers: best.retrievers.clone(),
            core: (!single).then(|| (best.start, best.end, best.text.clone(), vec![best.chunk_id])),
        });
    }
    Ok(out)
}

/// A hit as a candidate on its own, without neighbours.
pub(super) fn candidate_of(hit: &Hit) -> Candidate {
    Candidate {
        book_id: hit.book_id,
        title: hit.title.clone(),
        path: hit.path.clone(),
        chapter: hit.chapter.clone(),
        page: hit.page.clone(),
        start: hit.start,
        end: hit.end,
        text: hit.text.clone(),
        chunk_ids: vec![hit.chunk_id],
        score: hit.score,
        rank: hit.rank(),
        retrievers: hit.retrievers.clone(),
        core: None,
    }
}

/// Tokens the chat framing adds per message (role markers, separators).
pub(super) const PER_MESSAGE_TOKENS: usize = 8;

/// Tokens of `messages`, framing included.
pub(super) fn count_messages(messages: &[ChatMessage], count: &TokenCount) -> usize {
    messages.iter().map(|m| count(&m.content) + PER_MESSAGE_TOKENS).sum()
}

/// Earlier turns that fit in a quarter of the context, newest kept first.
pub(super) fn history_messages(history: &[Turn], context: usize, count: &TokenCount) -> Vec<ChatMessage> {
    let mut budget = context / 4;
    let mut kept: Vec<ChatMessage> = Vec::new();
    for turn in history.iter().rev() {
        let cost = count(&turn.question) + count(&turn.answer) + 2 * PER_MESSAGE_TOKENS;
        if cost > budget {
            break;
        }
        budget -= cost;
        kept.push(ChatMessage::new(Role::Assistant, turn.answer.clone()));
        kept.push(ChatMessage::new(Role::User, turn.question.clone()));
    }
    kept.reverse();
    kept
}

impl Assistant {
    /// The `k` best passages for `query` (hybrid, widened by `expansion`
    /// when given), each with its cosine similarity to the query itself:
    /// passages of a book still being embedded are judged by meaning too,
    /// and the relevance floor never reads the model's guess.
    pub(super) async fn retrieve(
        &self,
        query: &str,
        k: usize,
        books: Vec<u64>,
        expansion: Option<String>,
    ) -> Result<Vec<Hit>, AssistantError> {
        let mut hits = self
            .searcher
            .search(Query {
                text: query.to_string(),
                k,
                books,
                mode: Mode::Hybrid,
                expansion,
            })
            .await?;
        self.searcher.fill_similarity(query, &mut hits).await?;
        Ok(hits)
    }

    /// Tokens left for passages once the answer, the fixed text and a
    /// safety margin (tokenizers of remote models differ) are set aside.
    pub(super) fn passage_budget(info: &LlmInfo, max_tokens: usize, fixed: usize) -> Result<usize, AssistantError> {
        let context = info.context_tokens;
        let margin = context / 20 + 16;
        context
            .checked_sub(max_tokens + fixed + margin)
            .filter(|b| *b >= 32)
            .ok_or_else(|| {
                AssistantError::NoRoom(format!(
                    "the question, earlier turns and a {max_tokens}-token answer leave no room for passages in the model's \
                     {context}-token context; start a new conversation, ask a shorter question, or raise context_tokens / lower max_tokens"
                ))
            })
    }

    /// The budget for retrieved passages (Ask, Explain): what the window
    /// leaves, capped at `passage_tokens` because every prompt token costs
    /// prefill time before the first answer token. Summarize is not capped:
    /// it must fit as much of the chapter as the window holds.
    pub(super) fn retrieved_budget(info: &LlmInfo, max_tokens: usize, fixed: usize) -> Result<usize, AssistantError> {
        Ok(Self::passage_budget(info, max_tokens, fixed)?.min(info.config.passage_tokens as usize))
    }
}
