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

pub mod claims;
pub mod conversations;
pub mod prompt;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::llm::{ChatMessage, GenOutcome, GenParams, LlmError, LlmHandle, LlmInfo, Role, TokenCount};
use crate::read::{At, ReadError};
use crate::search::{Hit, Mode, Query, SearchError, Searcher};
use crate::store::{ChunkRecord, StoreError, StoreReader};
use conversations::{Conversations, Turn};
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
    retrieval_ms: u64,
    prompt_ms: u64,
}

impl Prepared {
    /// A summary's prompt: no conversation, no turn to record.
    fn summary(messages: Vec<ChatMessage>, packed: Vec<Packed>, count: &TokenCount, retrieval_ms: u64, prompt_ms: u64) -> Self {
        Prepared {
            conversation_id: String::new(),
            turn_question: String::new(),
            prompt_tokens: count_messages(&messages, count),
            packed,
            messages,
            retrieval_ms,
            prompt_ms,
        }
    }
}

const MASK: u64 = (1 << crate::store::ORDINAL_BITS) - 1;

/// `text[start..end)` counted in chars, in one pass up to `end`.
fn slice_chars(text: &str, start: u64, end: u64) -> String {
    text.chars().skip(start as usize).take(end.saturating_sub(start) as usize).collect()
}

/// Groups hits with their neighbours in the same chapter: each hit brings
/// the passage before and after it (when they share its heading), and
/// groups that overlap or touch merge. A group keeps the best score and
/// rank among its hits; its text is the book's text over the whole range.
fn merge_neighbours(store: &StoreReader, hits: &[Hit]) -> Result<Vec<Candidate>, StoreError> {
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

fn candidate_of(hit: &Hit) -> Candidate {
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
const PER_MESSAGE_TOKENS: usize = 8;

fn count_messages(messages: &[ChatMessage], count: &TokenCount) -> usize {
    messages.iter().map(|m| count(&m.content) + PER_MESSAGE_TOKENS).sum()
}

/// Earlier turns that fit in a quarter of the context, newest kept first.
fn history_messages(history: &[Turn], context: usize, count: &TokenCount) -> Vec<ChatMessage> {
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
            .map_err(|e| AssistantError::Llm(LlmError::Unavailable(e.to_string())))?
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

    /// Tokens left for passages once the answer, the fixed text and a
    /// safety margin (tokenizers of remote models differ) are set aside.
    fn passage_budget(info: &LlmInfo, max_tokens: usize, fixed: usize) -> Result<usize, AssistantError> {
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
    fn retrieved_budget(info: &LlmInfo, max_tokens: usize, fixed: usize) -> Result<usize, AssistantError> {
        Ok(Self::passage_budget(info, max_tokens, fixed)?.min(info.config.passage_tokens as usize))
    }

    async fn ask(
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
        let mut hits = self
            .searcher
            .search(Query {
                text: query.clone(),
                k,
                books: books.clone(),
                mode: Mode::Hybrid,
            })
            .await?;
        // Passages of a book still being embedded are judged by meaning too.
        self.searcher.fill_similarity(&query, &mut hits).await?;
        let retrieval_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        let floor = info.config.min_score;
        let (relevant, weak): (Vec<Hit>, Vec<Hit>) = hits.into_iter().partition(|h| h.similarity.is_some_and(|s| s >= floor));
        let weak: Vec<Packed> = weak
            .iter()
            .map(|h| {
                let c = candidate_of(h);
                Packed {
                    tokens: count(&c.text),
                    passage: c,
                    number: 0,
                }
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
        let prepared = Prepared {
            conversation_id,
            turn_question: question.to_string(),
            prompt_tokens: count_messages(&messages, &count),
            packed,
            messages,
            retrieval_ms,
            prompt_ms: t1.elapsed().as_millis() as u64,
        };
        self.answer(t0, &info, prepared, max_tokens, out, true).await
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
            conversation_id: conversation_id.clone(),
            passages: weak
                .into_iter()
                .map(|p| ContextPassage {
                    number: 0,
                    tokens: p.tokens as u32,
                    passage: p.passage,
                })
                .collect(),
            backend: info.backend.clone(),
            model: info.model.clone(),
            prompt_tokens: 0,
            context_tokens: info.context_tokens as u32,
            nothing_relevant: true,
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
        let mut passages: Vec<ContextPassage> = p
            .packed
            .iter()
            .map(|x| ContextPassage {
                number: x.number,
                passage: x.passage.clone(),
                tokens: x.tokens as u32,
            })
            .collect();
        passages.sort_by_key(|x| if x.number == 0 { u32::MAX } else { x.number });
        if send_context {
            send(
                out,
                AskEvent::Context(AskContext {
                    conversation_id: p.conversation_id.clone(),
                    passages,
                    backend: info.backend.clone(),
                    model: info.model.clone(),
                    prompt_tokens: p.prompt_tokens as u32,
                    context_tokens: info.context_tokens as u32,
                    nothing_relevant: false,
                }),
            )
            .await?;
        }
        let t_gen = Instant::now();
        let (answer, outcome, first) = self.generate(p.messages, Self::params(info, max_tokens), out, true).await?;
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
    /// token event; otherwise (map steps) pieces are only collected. Stops
    /// as soon as `out` is closed: dropping the piece channel stops the model.
    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        out: &Events,
        forward: bool,
    ) -> Result<(String, GenOutcome, Option<Instant>), AssistantError> {
        let (tx, mut rx) = mpsc::channel::<String>(256);
        let llm = self.llm.clone();
        let task = tokio::spawn(async move { llm.generate(messages, params, tx).await });
        let mut answer = String::new();
        let mut first = None;
        loop {
            tokio::select! {
                piece = rx.recv() => match piece {
                    Some(piece) => {
                        first.get_or_insert_with(Instant::now);
                        answer.push_str(&piece);
                        if forward {
                            send(out, AskEvent::Token(piece)).await?;
                        }
                    }
                    None => break,
                },
                _ = out.closed() => return Err(AssistantError::Cancelled),
            }
        }
        let outcome = task
            .await
            .map_err(|e| AssistantError::Llm(LlmError::Unavailable(e.to_string())))??;
        Ok((answer, outcome, first))
    }

    async fn summarize(&self, t0: Instant, book_id: u64, chapter: u32, out: &Events) -> Result<(), AssistantError> {
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
        let mut parts: Vec<Candidate> = Vec::new();
        if count(&prompt::block(1, &whole)) <= budget || chunks.len() < 2 {
            parts.push(whole);
        } else {
            let mut current: Option<Candidate> = None;
            for c in &chunks {
                let id = crate::store::chunk_id(c.book_id, c.ordinal);
                let extended = current.as_ref().map(|cur| {
                    let end = cur.end.max(c.end);
                    Candidate {
                        end,
                        text: slice_chars(&passage.text, cur.start - passage.start, end.min(passage.end) - passage.start),
                        chunk_ids: cur.chunk_ids.iter().copied().chain([id]).collect(),
                        ..cur.clone()
                    }
                });
                match extended {
                    Some(e) if count(&prompt::block(1, &e)) <= budget => current = Some(e),
                    _ => {
                        parts.extend(current.take());
                        let start = c.start.max(passage.start);
                        let end = c.end.min(passage.end);
                        current = Some(Candidate {
                            start,
                            end,
                            page: c.page.clone(),
                            text: slice_chars(&passage.text, start - passage.start, end - passage.start),
                            chunk_ids: vec![id],
                            ..whole.clone()
                        });
                    }
                }
            }
            parts.extend(current);
        }
        let n = parts.len();
        let packed: Vec<Packed> = parts
            .into_iter()
            .enumerate()
            .map(|(i, c)| Packed {
                tokens: count(&prompt::block(i as u32 + 1, &c)),
                passage: c,
                number: i as u32 + 1,
            })
            .collect();
        let prompt_ms = t1.elapsed().as_millis() as u64;
        if n == 1 {
            let messages = vec![ChatMessage::new(
                Role::User,
                format!("{final_instructions}\n\n{}Summary:", prompt::render(&packed)),
            )];
            let prepared = Prepared::summary(messages, packed, &count, retrieval_ms, prompt_ms);
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
        let context = AskContext {
            conversation_id: String::new(),
            passages: packed
                .iter()
                .map(|p| ContextPassage {
                    number: p.number,
                    passage: p.passage.clone(),
                    tokens: p.tokens as u32,
                })
                .collect(),
            backend: info.backend.clone(),
            model: info.model.clone(),
            prompt_tokens: 0,
            context_tokens: info.context_tokens as u32,
            nothing_relevant: false,
        };
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
            let (text, _, _) = self.generate(messages, Self::params(&info, map_tokens), out, false).await?;
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

    async fn explain(
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
        let mut related = self
            .searcher
            .search(Query {
                text: query.clone(),
                k: 6,
                books: vec![book_id],
                mode: Mode::Hybrid,
            })
            .await?;
        self.searcher.fill_similarity(&query, &mut related).await?;
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
        let mut candidates = vec![own];
        candidates.extend(
            related
                .iter()
                .filter(|h| h.similarity.is_some_and(|s| s >= floor) && (h.end <= passage.start || h.start >= end))
                .map(candidate_of),
        );
        let packed = prompt::pack(candidates, budget, &*count);
        messages.push(ChatMessage::new(Role::User, format!("{}{question}", prompt::render(&packed))));
        let short: String = passage.text.chars().take(80).collect();
        let prepared = Prepared {
            conversation_id,
            turn_question: format!("Explain: {short}…"),
            prompt_tokens: count_messages(&messages, &count),
            packed,
            messages,
            retrieval_ms,
            prompt_ms: t1.elapsed().as_millis() as u64,
        };
        self.answer(t0, &info, prepared, max_tokens, out, true).await
    }
}

async fn send(out: &Events, event: AskEvent) -> Result<(), AssistantError> {
    out.send(Ok(event)).await.map_err(|_| AssistantError::Cancelled)
}
