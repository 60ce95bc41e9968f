//! `Explain`: the text at a location explained in plain words, with
//! related passages of the same book for context.

use std::time::Instant;

use super::context::{candidate_of, count_messages, history_messages, PER_MESSAGE_TOKENS};
use super::prompt::{self, Candidate, LeftOut, Packed};
use super::{Assistant, AssistantError, Events, Prepared, EXPLAIN_CHARS};
use crate::llm::{ChatMessage, Role};
use crate::read::At;

impl Assistant {
    pub(super) async fn explain(
        &self,
        t0: Instant,
        book_id: u64,
        at: u64,
        chars: u32,
        conversation: &str,
        out: &Events,
    ) -> Result<(), AssistantError> {
        let (info, count) = self.backend().await?;
        let (conversation_id, history) = self.conversations.open(conversation);
        let chars = if chars == 0 { EXPLAIN_CHARS } else { chars as usize };
        let passage = self
            .blocking(move |s| Ok(crate::read::passage(s, book_id, At::Offset(at), chars)?))
            .await?;
        let path = self
            .blocking(move |s| Ok(s.book(book_id)?.map(|b| b.path).unwrap_or_default()))
            .await?;
        // Related passages of the same book give the model context.
        let query: String = passage.text.chars().take(1000).collect();
        let related = self.retrieve(&query, 6, vec![book_id], None).await?;
        let retrieval_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        let floor = info.config.min_score;
        let max_tokens = info.config.max_tokens as usize;
        let question =
            "Explain passage [1] in plain words: what it says and means, and any names, terms or references a reader may not know. \
                        Use the other passages only where they help, and cite every passage you use like [2].";
        let mut messages = history_messages(&history, info.context_tokens, &count);
        let fixed = count_messages(&messages, &count) + count(question) + 2 * PER_MESSAGE_TOKENS;
        let budget = Self::retrieved_budget(&info, max_tokens, fixed)?;
        let mut text = passage.text.clone();
        // The passage itself must go in: cut it to half the budget at most.
        while count(&text) > budget / 2 && text.chars().count() > 200 {
            let keep = text.chars().count() * 3 / 4;
            text = text.chars().take(keep).collect();
        }
        let end = passage.start + text.chars().count() as u64;
        let own = Candidate {
            book_id,
            title: passage.title.clone(),
            path,
            chapter: passage.chapter.clone(),
            page: passage.page.clone(),
            start: passage.start,
            end,
            text,
            chunk_ids: Vec::new(),
            score: 1.0,
            rank: 0,
            retrievers: Vec::new(),
            core: None,
        };
        // Hits inside the passage itself are the passage; the others are
        // related, and those under the relevance floor are shown to the
        // reader as left out.
        let (relevant, weak): (Vec<_>, Vec<_>) = related
            .iter()
            .filter(|h| h.end <= passage.start || h.start >= end)
            .partition(|h| h.similarity.is_some_and(|s| s >= floor));
        let mut candidates = vec![own];
        candidates.extend(relevant.into_iter().map(candidate_of));
        let mut packed = prompt::pack(candidates, budget, &*count);
        packed.extend(weak.into_iter().map(|h| {
            let c = candidate_of(h);
            let tokens = count(&c.text);
            Packed::left_out(c, tokens, LeftOut::BelowFloor)
        }));
        messages.push(ChatMessage::new(Role::User, format!("{}{question}", prompt::render(&packed))));
        let short: String = passage.text.chars().take(80).collect();
        let prepared = Prepared::turn(
            conversation_id,
            format!("Explain: {short}…"),
            messages,
            packed,
            &count,
            retrieval_ms,
            t1.elapsed().as_millis() as u64,
        )
        .limited(budget);
        self.answer(t0, &info, prepared, max_tokens, out, true).await
    }
}
