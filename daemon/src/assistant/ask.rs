//! `Ask`: a question answered from the library. A follow-up retrieves with
//! the question before it; passages under the relevance floor are shown
//! but not numbered, and when none is left the answer says so without
//! calling the model.

use std::time::Instant;

use super::context::{candidate_of, count_messages, history_messages, merge_neighbours, PER_MESSAGE_TOKENS};
use super::conversations::Turn;
use super::prompt::{self, LeftOut, Packed};
use super::{send, AskContext, AskDone, AskEvent, Assistant, AssistantError, Events, Prepared, Timings};
use crate::llm::{ChatMessage, GenParams, LlmInfo, Role};
use crate::search::Hit;

impl Assistant {
    pub(super) async fn ask(
        &self,
        t0: Instant,
        question: &str,
        books: Vec<u64>,
        conversation: &str,
        k: u32,
        out: &Events,
    ) -> Result<(), AssistantError> {
        let question = question.trim();
        if question.is_empty() {
            return Err(AssistantError::EmptyQuestion);
        }
        let (info, count) = self.backend().await?;
        let (conversation_id, history) = self.conversations.open(conversation);
        // A follow-up ("and what did she answer?") retrieves with the
        // question before it, so pronouns find their passages.
        let query = match history.last() {
            Some(turn) => format!("{} {question}", turn.question),
            None => question.to_string(),
        };
        let k = if k == 0 { info.config.retrieve_k } else { k.min(50) } as usize;
        let floor = info.config.min_score;
        let relevant_first =
            |hits: Vec<Hit>| -> (Vec<Hit>, Vec<Hit>) { hits.into_iter().partition(|h| h.similarity.is_some_and(|s| s >= floor)) };
        let (mut relevant, mut weak) = relevant_first(self.retrieve(&query, k, books.clone(), None).await?);
        // When the library holds something relevant, the model's own short
        // answer widens the search: its words and meaning are often closer
        // to the passage than the question's. A library with nothing
        // relevant is refused below without calling the model at all.
        let mut expansion = None;
        if !relevant.is_empty() && info.config.expand_questions && info.instruct {
            if let Some(guess) = self.guess_answer(&query, &info, out).await? {
                (relevant, weak) = relevant_first(self.retrieve(&query, k, books.clone(), Some(guess.clone())).await?);
                expansion = Some(guess);
            }
        }
        let retrieval_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        let weak: Vec<Packed> = weak
            .iter()
            .map(|h| {
                let c = candidate_of(h);
                let tokens = count(&c.text);
                Packed::left_out(c, tokens, LeftOut::BelowFloor)
            })
            .collect();
        if relevant.is_empty() {
            return self
                .nothing_relevant(t0, &info, conversation_id, question, weak, retrieval_ms, !books.is_empty(), out)
                .await;
        }
        let candidates = self.blocking(move |s| Ok(merge_neighbours(s, &relevant)?)).await?;
        let max_tokens = info.config.max_tokens as usize;
        let mut messages = history_messages(&history, info.context_tokens, &count);
        let frame = format!("{}\n\n{}", prompt::ANSWER_INSTRUCTIONS, prompt::question_message("", question));
        let fixed = count_messages(&messages, &count) + count(&frame) + PER_MESSAGE_TOKENS;
        let budget = Self::retrieved_budget(&info, max_tokens, fixed)?;
        let mut packed = prompt::pack(candidates, budget, &*count);
        packed.extend(weak);
        messages.push(ChatMessage::new(
            Role::User,
            format!(
                "{}\n\n{}",
                prompt::ANSWER_INSTRUCTIONS,
                prompt::question_message(&prompt::render(&packed), question)
            ),
        ));
        let prepared = Prepared::turn(
            conversation_id,
            question.to_string(),
            messages,
            packed,
            &count,
            retrieval_ms,
            t1.elapsed().as_millis() as u64,
        )
        .limited(budget)
        .expanded(expansion);
        self.answer(t0, &info, prepared, max_tokens, out, true).await
    }

    /// The model's short answer to `query` from what it knows, to search
    /// with beside the question (`None` when it wrote nothing). A failure
    /// ends the Ask with the backend's error: the request went through the
    /// same retries and timeouts as the answer's would, so trying the answer
    /// next would only make the reader wait twice for the same error.
    async fn guess_answer(&self, query: &str, info: &LlmInfo, out: &Events) -> Result<Option<String>, AssistantError> {
        let t = Instant::now();
        let messages = vec![
            ChatMessage::new(Role::System, prompt::GUESS_INSTRUCTIONS.to_string()),
            ChatMessage::new(Role::User, query.to_string()),
        ];
        let params = GenParams {
            max_tokens: prompt::GUESS_TOKENS,
            temperature: 0.0,
            top_p: 1.0,
            seed: info.config.seed,
            stop: vec!["\n\n".into()],
        };
        let (guess, _, _) = self.generate(messages, params, out, false, Some(prompt::GUESS_BYTES)).await?;
        let guess = guess.trim().to_string();
        tracing::debug!(ms = t.elapsed().as_millis() as u64, %guess, "question expanded");
        Ok((!guess.is_empty()).then_some(guess))
    }

    #[allow(clippy::too_many_arguments)]
    async fn nothing_relevant(
        &self,
        t0: Instant,
        info: &LlmInfo,
        conversation_id: String,
        question: &str,
        weak: Vec<Packed>,
        retrieval_ms: u64,
        filtered: bool,
        out: &Events,
    ) -> Result<(), AssistantError> {
        let answer = format!(
            "I found nothing in {} about that, so I cannot answer from your books. Try other words, or add a book that covers it.",
            if filtered { "the selected books" } else { "your library" }
        );
        let context = AskContext {
            nothing_relevant: true,
            ..AskContext::new(conversation_id.clone(), info, &weak)
        };
        send(out, AskEvent::Context(context)).await?;
        send(out, AskEvent::Token(answer.clone())).await?;
        self.conversations.record(
            &conversation_id,
            Turn {
                question: question.to_string(),
                answer: answer.clone(),
            },
        );
        let total = t0.elapsed().as_millis() as u64;
        send(
            out,
            AskEvent::Done(Box::new(AskDone {
                answer,
                sources: Vec::new(),
                invalid_citations: Vec::new(),
                timings: Timings {
                    retrieval_ms,
                    total_ms: total,
                    ..Timings::default()
                },
                prompt_tokens: 0,
                completion_tokens: 0,
                conversation_id,
                nothing_relevant: true,
                finish_reason: "stop".into(),
                backend: info.backend.clone(),
                model: info.model.clone(),
                claims: Vec::new(),
                grounded: false,
            })),
        )
        .await
    }
}
