//! The assistant: questions answered by the LLM from the reader's books,
//! with citations (retrieval-augmented generation).
//!
//! `Ask` retrieves the best passages, drops those below the relevance floor
//! (when none is left it says so and calls no model), merges neighbours
//! from the same chapter, packs them into the model's context budget
//! counted with the model's own tokenizer, numbers them [1]..[n] with book,
//! chapter and page, and streams the answer. Afterwards each [n] the answer
//! cites is mapped back to its passage; numbers that were never given are
//! flagged. `Summarize` (a chapter, map-reduce when it does not fit) and
//! `Explain` (the text at a location) stream the same events.
//!
//! Every request streams, in order: one [`AskEvent::Context`], any
//! [`AskEvent::Progress`] (map steps), [`AskEvent::Token`]s, and one
//! [`AskEvent::Done`]. When the receiver of those events is dropped (the
//! gRPC caller went away) the pipeline stops and the model stops with it.
//!
//! `mod.rs` holds the request and event types, [`AssistantError`], the
//! dispatch of a [`Request`] and what every request shares (streaming one
//! answer, mapping its citations, checking its claims); `context.rs` turns
//! retrieval into the prompt's passages and earlier turns into messages;
//! `ask.rs`, `summarize.rs` and `explain.rs` are one request each.

pub mod claims;
pub mod conversations;
pub mod prompt;

mod ask;
mod context;
mod explain;
mod summarize;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::error_kind::ErrorKind;
use crate::llm::{ChatMessage, GenOutcome, GenParams, LlmError, LlmHandle, LlmInfo, TokenCount};
use crate::read::ReadError;
use crate::search::{SearchError, Searcher};
use crate::store::{StoreError, StoreReader};
use context::count_messages;
use conversations::{Conversations, Turn};
pub use prompt::LeftOut;
use prompt::{Candidate, Packed};

/// Characters `Explain` reads from its offset when the caller does not say.
pub const EXPLAIN_CHARS: usize = 600;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssistantError {
    /// Nothing was asked.
    #[error("the question is empty; ask something about your books")]
    EmptyQuestion,
    /// The model failed or none is configured.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// Retrieval failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The location to summarize or explain is not readable.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Reading passages failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The prompt cannot fit the model's context.
    #[error("{0}")]
    NoRoom(String),
    /// The caller went away.
    #[error("the request was cancelled")]
    Cancelled,
    /// A read of the library panicked: a bug, not a model failure.
    #[error("reading the library failed unexpectedly ({0}); ask again, and report it if it repeats")]
    ReadPanicked(String),
}

impl AssistantError {
    /// What kind of failure this is, for the RPC layer: an empty question
    /// is invalid, no room in the model's context is a precondition, and a
    /// wrapped error is whatever kind its own family says it is (so a store
    /// that is restarting reads as unavailable, not internal).
    pub fn kind(&self) -> ErrorKind {
        match self {
            AssistantError::EmptyQuestion => ErrorKind::Invalid,
            AssistantError::NoRoom(_) => ErrorKind::Precondition,
            AssistantError::Cancelled => ErrorKind::Cancelled,
            AssistantError::ReadPanicked(_) => ErrorKind::Internal,
            AssistantError::Llm(e) => e.kind(),
            AssistantError::Read(e) => e.kind(),
            AssistantError::Store(e) => e.kind(),
            AssistantError::Search(e) => e.kind(),
        }
    }
}

/// A passage the pipeline considered, for the client's RAG view.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextPassage {
    /// [n] in the prompt, 0 when left out.
    pub number: u32,
    /// The passage.
    pub passage: Candidate,
    /// Its size in the model's tokens.
    pub tokens: u32,
    /// Why it is not in the prompt.
    pub left_out: Option<LeftOut>,
}

impl From<&Packed> for ContextPassage {
    fn from(p: &Packed) -> Self {
        ContextPassage {
            number: p.number,
            passage: p.passage.clone(),
            tokens: p.tokens as u32,
            left_out: p.left_out,
        }
    }
}

/// Where a prompt's tokens go (the RAG view's budget bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PromptBudget {
    /// The numbered passages.
    pub passages: u32,
    /// Earlier turns of the conversation.
    pub history: u32,
    /// Instructions, the question and the chat markers.
    pub framing: u32,
    /// Set aside for the answer.
    pub answer_reserve: u32,
    /// The most the passages were allowed (0 when not limited).
    pub passage_limit: u32,
}

/// The first event of every answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AskContext {
    /// The conversation to continue with.
    pub conversation_id: String,
    /// Passages considered, numbered ones first.
    pub passages: Vec<ContextPassage>,
    /// "local" or "openai".
    pub backend: String,
    /// The model.
    pub model: String,
    /// Tokens of the whole prompt.
    pub prompt_tokens: u32,
    /// The model's context window.
    pub context_tokens: u32,
    /// Nothing relevant was found; no model is called.
    pub nothing_relevant: bool,
    /// The prompt's tokens by part (`None` when there is no one prompt).
    pub budget: Option<PromptBudget>,
    /// The model's short answer that widened retrieval (empty: none).
    pub expansion: String,
}

impl AskContext {
    /// The context of an answer by `info`'s model over `packed`, numbered
    /// passages first; no prompt figures yet.
    fn new(conversation_id: String, info: &LlmInfo, packed: &[Packed]) -> Self {
        let mut passages: Vec<ContextPassage> = packed.iter().map(ContextPassage::from).collect();
        passages.sort_by_key(|x| if x.number == 0 { u32::MAX } else { x.number });
        AskContext {
            conversation_id,
            passages,
            backend: info.backend.clone(),
            model: info.model.clone(),
            prompt_tokens: 0,
            context_tokens: info.context_tokens as u32,
            nothing_relevant: false,
            budget: None,
            expansion: String::new(),
        }
    }
}

/// A numbered passage and whether the answer cites it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Its [n].
    pub number: u32,
    /// The passage.
    pub passage: Candidate,
    /// The answer cites it.
    pub cited: bool,
}

/// Where the time went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// Embedding the question and searching.
    pub retrieval_ms: u64,
    /// Merging, packing and counting tokens.
    pub prompt_ms: u64,
    /// From the request to the first token.
    pub first_token_ms: u64,
    /// From sending the prompt to the last token.
    pub generation_ms: u64,
    /// Answer tokens per second after the first.
    pub tokens_per_second: f32,
    /// The whole request.
    pub total_ms: u64,
}

/// The last event of every answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AskDone {
    /// The whole answer.
    pub answer: String,
    /// Numbered passages, with whether each is cited.
    pub sources: Vec<Source>,
    /// Cited numbers no passage had.
    pub invalid_citations: Vec<u32>,
    /// Where the time went.
    pub timings: Timings,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// The conversation to continue with.
    pub conversation_id: String,
    /// Nothing relevant was found.
    pub nothing_relevant: bool,
    /// "stop" or "length".
    pub finish_reason: String,
    /// "local" or "openai".
    pub backend: String,
    /// The model.
    pub model: String,
    /// Each judged sentence of the answer against the passages.
    pub claims: Vec<claims::Claim>,
    /// Whether the passages back the answer at all (some sentence is
    /// verified or inferred); false means "not found in your books".
    pub grounded: bool,
}

/// One streamed event.
#[derive(Debug, Clone, PartialEq)]
pub enum AskEvent {
    /// What went into the prompt.
    Context(AskContext),
    /// A piece of the answer.
    Token(String),
    /// A map-reduce step finished.
    Progress {
        /// "map".
        stage: String,
        /// Parts done.
        done: u32,
        /// Parts in all.
        total: u32,
    },
    /// The end.
    Done(Box<AskDone>),
}

/// Where events go.
pub type Events = mpsc::Sender<Result<AskEvent, AssistantError>>;

/// What a client asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// A question about the library.
    Ask {
        /// The question.
        question: String,
        /// Restrict to these books.
        books: Vec<u64>,
        /// Conversation to continue ("" = new).
        conversation_id: String,
        /// Passages to retrieve (0 = configured default).
        k: u32,
    },
    /// Summarize a chapter.
    Summarize {
        /// The book.
        book_id: u64,
        /// 1-based section number.
        chapter: u32,
    },
    /// Explain the text at a location.
    Explain {
        /// The book.
        book_id: u64,
        /// Char offset.
        at: u64,
        /// Characters (0 = [`EXPLAIN_CHARS`]).
        chars: u32,
        /// Conversation to continue ("" = new).
        conversation_id: String,
    },
}

/// The pipeline and what it reads from.
#[derive(Clone)]
pub struct Assistant {
    store: StoreReader,
    searcher: Searcher,
    llm: LlmHandle,
    conversations: Arc<Conversations>,
}

/// The prompt of one answer, ready to send.
struct Prepared {
    conversation_id: String,
    /// Recorded as the turn's question; empty = not recorded.
    turn_question: String,
    packed: Vec<Packed>,
    messages: Vec<ChatMessage>,
    prompt_tokens: usize,
    /// Tokens of the messages before the last (earlier turns).
    history_tokens: usize,
    /// The passage budget `packed` was packed into (0 = not limited).
    passage_limit: usize,
    retrieval_ms: u64,
    prompt_ms: u64,
    /// The short answer that widened retrieval (empty: none).
    expansion: String,
}

impl Prepared {
    /// A prompt that is a turn of `conversation_id`, recorded as
    /// `turn_question` once answered (Ask, Explain).
    fn turn(
        conversation_id: String,
        turn_question: String,
        messages: Vec<ChatMessage>,
        packed: Vec<Packed>,
        count: &TokenCount,
        retrieval_ms: u64,
        prompt_ms: u64,
    ) -> Self {
        let history = &messages[..messages.len().saturating_sub(1)];
        Prepared {
            conversation_id,
            turn_question,
            prompt_tokens: count_messages(&messages, count),
            history_tokens: count_messages(history, count),
            passage_limit: 0,
            packed,
            messages,
            retrieval_ms,
            prompt_ms,
            expansion: String::new(),
        }
    }

    /// Records the expansion retrieval searched with.
    fn expanded(self, expansion: Option<String>) -> Self {
        Prepared {
            expansion: expansion.unwrap_or_default(),
            ..self
        }
    }

    /// A summary's prompt: no conversation, no turn to record.
    fn summary(messages: Vec<ChatMessage>, packed: Vec<Packed>, count: &TokenCount, retrieval_ms: u64, prompt_ms: u64) -> Self {
        Self::turn(String::new(), String::new(), messages, packed, count, retrieval_ms, prompt_ms)
    }

    /// Records the passage budget the passages were packed into.
    fn limited(self, passage_limit: usize) -> Self {
        Prepared { passage_limit, ..self }
    }

    /// Where the prompt's tokens go, with `answer_reserve` set aside.
    fn budget(&self, answer_reserve: usize) -> PromptBudget {
        let passages: usize = self.packed.iter().filter(|p| p.number > 0).map(|p| p.tokens).sum();
        PromptBudget {
            passages: passages as u32,
            history: self.history_tokens as u32,
            framing: self.prompt_tokens.saturating_sub(passages + self.history_tokens) as u32,
            answer_reserve: answer_reserve as u32,
            passage_limit: self.passage_limit as u32,
        }
    }
}

impl Assistant {
    /// An assistant over the daemon's store, index and LLM.
    pub fn new(store: StoreReader, searcher: Searcher, llm: LlmHandle) -> Self {
        Assistant {
            store,
            searcher,
            llm,
            conversations: Arc::new(Conversations::default()),
        }
    }

    /// Runs `request`, streaming its events into `out`; a failure is sent
    /// as the last item (unless the receiver is gone).
    pub async fn run(&self, request: Request, out: Events) {
        let t0 = Instant::now();
        let result = match request {
            Request::Ask {
                question,
                books,
                conversation_id,
                k,
            } => self.ask(t0, &question, books, &conversation_id, k, &out).await,
            Request::Summarize { book_id, chapter } => self.summarize(t0, book_id, chapter, &out).await,
            Request::Explain {
                book_id,
                at,
                chars,
                conversation_id,
            } => self.explain(t0, book_id, at, chars, &conversation_id, &out).await,
        };
        match result {
            Ok(()) | Err(AssistantError::Cancelled) | Err(AssistantError::Llm(LlmError::Cancelled)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "answer failed");
                let _ = out.send(Err(e)).await;
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StoreReader) -> Result<T, AssistantError> + Send + 'static,
    ) -> Result<T, AssistantError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| AssistantError::ReadPanicked(e.to_string()))?
    }

    /// The backend's info, or the reason there is none.
    async fn backend(&self) -> Result<(LlmInfo, TokenCount), AssistantError> {
        let info = self.llm.backend().await?;
        match info.counter.clone() {
            Some(count) => Ok((info, count)),
            None => Err(LlmError::NotConfigured(info.detail).into()),
        }
    }

    fn params(info: &LlmInfo, max_tokens: usize) -> GenParams {
        GenParams {
            max_tokens,
            temperature: info.config.temperature,
            top_p: info.config.top_p,
            seed: info.config.seed,
            stop: Vec::new(),
        }
    }

    /// Sends the context (unless a map-reduce already did), streams the
    /// answer, then sends the sources.
    async fn answer(
        &self,
        t0: Instant,
        info: &LlmInfo,
        p: Prepared,
        max_tokens: usize,
        out: &Events,
        send_context: bool,
    ) -> Result<(), AssistantError> {
        if send_context {
            let context = AskContext {
                prompt_tokens: p.prompt_tokens as u32,
                budget: Some(p.budget(max_tokens)),
                expansion: p.expansion.clone(),
                ..AskContext::new(p.conversation_id.clone(), info, &p.packed)
            };
            send(out, AskEvent::Context(context)).await?;
        }
        let t_gen = Instant::now();
        let (answer, outcome, first) = self.generate(p.messages, Self::params(info, max_tokens), out, true, None).await?;
        let numbered = p.packed.iter().filter(|x| x.number > 0).count() as u32;
        let cited = prompt::citations(&answer);
        let invalid_citations: Vec<u32> = cited.iter().copied().filter(|n| *n == 0 || *n > numbered).collect();
        let claims = {
            // The header goes with the text, as the model saw it.
            let given: Vec<(u32, String)> = p
                .packed
                .iter()
                .filter(|x| x.number > 0)
                .map(|x| (x.number, prompt::support_text(&x.passage)))
                .collect();
            let given: Vec<(u32, &str)> = given.iter().map(|(n, t)| (*n, t.as_str())).collect();
            claims::check(&answer, &given)
        };
        let grounded = claims::grounded(&claims);
        let mut sources: Vec<Source> = p
            .packed
            .into_iter()
            .filter(|x| x.number > 0)
            .map(|x| Source {
                number: x.number,
                cited: cited.contains(&x.number),
                passage: x.passage,
            })
            .collect();
        sources.sort_by_key(|s| s.number);
        if !p.turn_question.is_empty() {
            self.conversations.record(
                &p.conversation_id,
                Turn {
                    question: p.turn_question,
                    answer: answer.clone(),
                },
            );
        }
        let total_ms = t0.elapsed().as_millis() as u64;
        let generation_ms = t_gen.elapsed().as_millis() as u64;
        let first_token_ms = first.map_or(total_ms, |f| f.duration_since(t0).as_millis() as u64);
        let decode_secs = first.map_or(0.0, |f| f.elapsed().as_secs_f32());
        let tokens_per_second = if outcome.completion_tokens > 1 && decode_secs > 0.0 {
            (outcome.completion_tokens - 1) as f32 / decode_secs
        } else {
            0.0
        };
        let prompt_tokens = if outcome.prompt_tokens > 0 {
            outcome.prompt_tokens
        } else {
            p.prompt_tokens as u64
        };
        send(
            out,
            AskEvent::Done(Box::new(AskDone {
                answer,
                sources,
                invalid_citations,
                timings: Timings {
                    retrieval_ms: p.retrieval_ms,
                    prompt_ms: p.prompt_ms,
                    first_token_ms,
                    generation_ms,
                    tokens_per_second,
                    total_ms,
                },
                prompt_tokens,
                completion_tokens: outcome.completion_tokens,
                conversation_id: p.conversation_id,
                nothing_relevant: false,
                finish_reason: outcome.finish,
                backend: info.backend.clone(),
                model: info.model.clone(),
                claims,
                grounded,
            })),
        )
        .await
    }

    /// Runs one generation. With `forward`, each piece goes to `out` as a
    /// token event; otherwise (map steps, a question's guess) pieces are only
    /// collected. Stops as soon as `out` is closed: dropping the piece
    /// channel stops the model. With `limit`, it also stops once that many
    /// bytes are collected, for an endpoint that ignores `max_tokens`.
    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        out: &Events,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<(String, GenOutcome, Option<Instant>), AssistantError> {
        let (tx, mut rx) = mpsc::channel::<String>(256);
        let llm = self.llm.clone();
        let task = tokio::spawn(async move { llm.generate(messages, params, tx).await });
        let mut answer = String::new();
        let mut first = None;
        let mut cut = false;
        loop {
            tokio::select! {
                piece = rx.recv() => match piece {
                    Some(piece) => {
                        first.get_or_insert_with(Instant::now);
                        answer.push_str(&piece);
                        if forward {
                            send(out, AskEvent::Token(piece)).await?;
                        }
                        if limit.is_some_and(|l| answer.len() >= l) {
                            cut = true;
                            break;
                        }
                    }
                    None => break,
                },
                _ = out.closed() => return Err(AssistantError::Cancelled),
            }
        }
        drop(rx);
        let outcome = task.await.map_err(|e| AssistantError::Llm(LlmError::Unavailable(e.to_string())))?;
        let outcome = match outcome {
            // The model was stopped here, by the limit.
            Err(LlmError::Cancelled) if cut => GenOutcome {
                finish: "length".into(),
                ..GenOutcome::default()
            },
            outcome => outcome?,
        };
        Ok((answer, outcome, first))
    }
}

async fn send(out: &Events, event: AskEvent) -> Result<(), AssistantError> {
    out.send(Ok(event)).await.map_err(|_| AssistantError::Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_kind() {
        assert_eq!(AssistantError::EmptyQuestion.kind(), ErrorKind::Invalid);
        assert_eq!(AssistantError::NoRoom("full".into()).kind(), ErrorKind::Precondition);
        assert_eq!(AssistantError::Cancelled.kind(), ErrorKind::Cancelled);
        assert_eq!(AssistantError::Llm(LlmError::Cancelled).kind(), ErrorKind::Cancelled);
        assert_eq!(
            AssistantError::Llm(LlmError::NotConfigured("none".into())).kind(),
            ErrorKind::Precondition
        );
        assert_eq!(
            AssistantError::Llm(LlmError::Unavailable("gone".into())).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            AssistantError::Llm(LlmError::Crashed("panic".into())).kind(),
            ErrorKind::Unavailable
        );
        let refused = crate::llm::openai::OpenAiError::Connect {
            url: "http://h/v1/chat/completions".into(),
            attempts: 1,
            detail: "Connection refused".into(),
        };
        assert_eq!(AssistantError::Llm(refused.into()).kind(), ErrorKind::Unavailable);
        assert_eq!(AssistantError::Store(StoreError::NoSuchBook(7)).kind(), ErrorKind::NotFound);
        assert_eq!(AssistantError::Read(ReadError::NotReady(7)).kind(), ErrorKind::Precondition);
        assert_eq!(
            AssistantError::Read(ReadError::OutOfRange("page 9".into())).kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            AssistantError::Search(SearchError::Store(StoreError::NoSuchBook(7))).kind(),
            ErrorKind::NotFound
        );
        // A wrapped error keeps its family's kind: nothing to search for is
        // an invalid request (an Explain of an empty selection), and a store
        // that is restarting is unavailable, not internal.
        assert_eq!(AssistantError::Search(SearchError::EmptyQuery).kind(), ErrorKind::Invalid);
        assert_eq!(
            AssistantError::Store(StoreError::Unavailable("restarting".into())).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(AssistantError::ReadPanicked("boom".into()).kind(), ErrorKind::Internal);
    }
}
