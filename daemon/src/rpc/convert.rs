//! Conversions between the daemon's types and the generated wire types.

use mindory_proto::pb;

use super::error::RpcError;
use crate::events::{Event, EventKind};
use crate::ingest::AddResult;
use crate::search::Hit;
use crate::store::{BookRecord, BookStatus};

/// A book id from the wire. Ids above [`crate::store::MAX_BOOK_ID`] (and
/// 0) name no book and never can: they are refused here, at the edge,
/// because the store computes a book's passage range as `id + 1` shifted
/// into a chunk id, which overflows for them (a panic in a debug build, a
/// range over another book's passages in a release one).
pub(crate) fn book_id(id: u64) -> Result<u64, RpcError> {
    if id == 0 || id > crate::store::MAX_BOOK_ID {
        return Err(RpcError::Store(crate::store::StoreError::NoSuchBook(id)));
    }
    Ok(id)
}

/// What a `ListBooks` page token starts with; the id of the last book of the
/// page it follows comes after it. The prefix only makes a token that was
/// not made here (a page number, an id) fail loudly rather than page from
/// somewhere.
const PAGE_TOKEN_PREFIX: &str = "after-";

/// The `ListBooks` page token that continues after book `last_id`.
pub(crate) fn page_token(last_id: u64) -> String {
    format!("{PAGE_TOKEN_PREFIX}{last_id}")
}

/// The book id a `ListBooks` page token continues after: 0 (from the first
/// book) for an empty token; a token not made by [`page_token`] is refused.
pub(crate) fn page_after(token: &str) -> Result<u64, RpcError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix(PAGE_TOKEN_PREFIX)
        .and_then(|id| id.parse::<u64>().ok())
        .filter(|id| *id <= crate::store::MAX_BOOK_ID)
        .ok_or_else(|| {
            RpcError::Invalid(format!(
                "invalid page_token {token:?}: send the next_page_token of the previous ListBooks response, or an empty one for the first page"
            ))
        })
}

/// [`book_id`] for each id of a list.
pub(crate) fn book_ids(ids: Vec<u64>) -> Result<Vec<u64>, RpcError> {
    ids.into_iter().map(book_id).collect()
}

pub(crate) fn book(b: BookRecord) -> pb::Book {
    let status = match b.status {
        BookStatus::Queued => pb::BookStatus::Queued,
        BookStatus::Indexing => pb::BookStatus::Indexing,
        BookStatus::Ready => pb::BookStatus::Ready,
        BookStatus::Failed => pb::BookStatus::Failed,
        BookStatus::Embedding => pb::BookStatus::Embedding,
    };
    pb::Book {
        id: b.id,
        title: b.title,
        author: b.author,
        path: b.path,
        format: b.format,
        status: status as i32,
        error: b.error,
        chunks: b.chunk_count,
        content_hash: b.content_hash,
        size_bytes: b.size,
        added_at_ms: b.added_at_ms,
        updated_at_ms: b.updated_at_ms,
        text_chars: b.text_chars,
        language: b.language,
        // Counted per book on request (GetBook), not for every listed book.
        passage_kinds: Default::default(),
        sections: b
            .sections
            .into_iter()
            .map(|s| pb::Section {
                heading: s.heading,
                chunks: s.chunks,
                start: s.start,
            })
            .collect(),
    }
}

pub(crate) fn added(r: AddResult) -> pb::AddedPath {
    match r {
        AddResult::Queued { path, book_id } => pb::AddedPath {
            path,
            outcome: pb::AddOutcome::Queued as i32,
            book_id,
            reason: String::new(),
        },
        AddResult::Unchanged { path, book_id } => pb::AddedPath {
            path,
            outcome: pb::AddOutcome::Unchanged as i32,
            book_id,
            reason: String::new(),
        },
        AddResult::Rejected { path, reason } => pb::AddedPath {
            path,
            outcome: pb::AddOutcome::Rejected as i32,
            book_id: 0,
            reason,
        },
    }
}

pub(crate) fn search_query(req: pb::SearchRequest) -> crate::search::Query {
    use crate::search::Mode;
    // An unknown mode from a newer client falls back to the default.
    let mode = match pb::SearchMode::try_from(req.mode) {
        Ok(pb::SearchMode::Vector) => Mode::Vector,
        Ok(pb::SearchMode::Keyword) => Mode::Keyword,
        Ok(pb::SearchMode::Hybrid) | Err(_) => Mode::Hybrid,
    };
    // The searcher clamps `k` (`search::MAX_K`), clips the query
    // (`search::MAX_QUERY_CHARS`) and refuses a filter naming a book that
    // does not exist, ids outside the id space included.
    crate::search::Query {
        text: req.query,
        k: req.k as usize,
        books: req.book_ids,
        mode,
        expansion: Some(req.expansion).filter(|e| !e.trim().is_empty()),
    }
}

pub(crate) fn hit(h: Hit) -> pb::SearchHit {
    pb::SearchHit {
        score: h.score,
        book_id: h.book_id,
        title: h.title,
        path: h.path,
        location: Some(location_of(h.chapter, h.page, h.start, h.end)),
        text: h.text,
        chunk_id: h.chunk_id,
        retrievers: retrievers(h.retrievers),
        still_embedding: h.still_embedding,
        passage_kind: match h.kind {
            crate::text::clean::PassageKind::Body => String::new(),
            other => other.name().to_string(),
        },
    }
}

pub(crate) fn event(e: Event) -> pb::Event {
    use pb::event::Kind;
    let kind = match e.kind {
        EventKind::Queued { book_id, path } => Kind::Queued(pb::IngestQueued { book_id, path }),
        EventKind::Started { book_id, path } => Kind::Started(pb::IngestStarted { book_id, path }),
        EventKind::Searchable { book_id, title, chunks } => Kind::Searchable(pb::BookSearchable { book_id, title, chunks }),
        EventKind::Progress { book_id, done, total } => Kind::Progress(pb::IngestProgress { book_id, done, total }),
        EventKind::Ready {
            book_id,
            title,
            chunks,
            embedded,
        } => Kind::Ready(pb::BookReady {
            book_id,
            title,
            chunks,
            embedded,
        }),
        EventKind::Failed { book_id, path, reason } => Kind::Failed(pb::BookFailed { book_id, path, reason }),
        EventKind::Removed { book_id } => Kind::Removed(pb::BookRemoved { book_id }),
        EventKind::Moved { book_id, from, to } => Kind::Moved(pb::BookMoved { book_id, from, to }),
        EventKind::ScanStarted { folder } => Kind::ScanStarted(pb::FolderScanStarted { folder }),
        EventKind::ScanFinished { folder, report } => Kind::ScanFinished(pb::FolderScanFinished {
            folder,
            report: Some(scan_report(report)),
        }),
        EventKind::QueueDepth { pending, running } => Kind::Queue(pb::QueueDepth { pending, running }),
        EventKind::SwapProgress { model, done, total } => Kind::SwapProgress(pb::ModelSwapProgress { model, done, total }),
        EventKind::SwapFinished { from, to } => Kind::SwapFinished(pb::ModelSwapFinished { from, to }),
        EventKind::SwapCancelled { model, reason } => Kind::SwapCancelled(pb::ModelSwapCancelled { model, reason }),
    };
    pb::Event {
        seq: e.seq,
        at_ms: e.at_ms,
        kind: Some(kind),
    }
}

pub(crate) fn lagged(dropped: u64) -> pb::Event {
    pb::Event {
        seq: 0,
        at_ms: 0,
        kind: Some(pb::event::Kind::Lagged(pb::Lagged { dropped })),
    }
}

pub(crate) fn passage(p: crate::read::Passage) -> pb::Passage {
    pb::Passage {
        book_id: p.book_id,
        title: p.title,
        chapter: p.chapter,
        page: p.page.as_ref().map(|p| p.number),
        page_label: p.page.map(|p| p.display()).unwrap_or_default(),
        start: p.start,
        end: p.end,
        text: p.text,
        text_chars: p.text_chars,
    }
}

/// Where to read; no location means the start of the book.
pub(crate) fn location(at: Option<pb::get_passage_request::At>) -> crate::read::At {
    use crate::read::At;
    use pb::get_passage_request::At as WireAt;
    match at {
        Some(WireAt::Chapter(n)) => At::Chapter(n),
        Some(WireAt::Page(p)) => At::Page(p.to_string()),
        Some(WireAt::PageLabel(p)) => At::Page(p),
        Some(WireAt::Offset(o)) => At::Offset(o),
        None => At::Offset(0),
    }
}

/// The most characters one `GetPassage` answer carries, whatever it asks
/// for: at most four UTF-8 bytes each, so the answer always fits the 4 MiB
/// that stock gRPC clients (tonic, grpcio, grpc-go) accept by default. A
/// client reads on from the answer's `end` (`text_chars` is the book's length).
pub(crate) const MAX_PASSAGE_CHARS: u32 = 1_000_000;

/// How many characters to read at `at` for a request's `max_chars`: 0 keeps
/// its meaning (2,000 from an offset, else the whole chapter or page), but
/// nothing goes past [`MAX_PASSAGE_CHARS`]. An unbounded whole chapter of a
/// book without headings is the whole book, megabytes a client would refuse.
pub(crate) fn passage_limit(at: &crate::read::At, max_chars: u32) -> usize {
    let max = match (max_chars, at) {
        (0, crate::read::At::Offset(_)) => 0,
        (0, _) => MAX_PASSAGE_CHARS,
        (n, _) => n.min(MAX_PASSAGE_CHARS),
    };
    max as usize
}

pub(crate) fn scan_report(r: crate::library::ScanReport) -> pb::ScanReport {
    pb::ScanReport {
        files: r.files,
        unchanged: r.unchanged,
        queued: r.queued,
        moved: r.moved,
        removed: r.removed,
        unsettled: r.unsettled,
        took_ms: r.took_ms,
        queued_ids: r.queued_ids,
    }
}

pub(crate) fn folder(f: crate::library::FolderInfo) -> pb::Folder {
    use crate::library::WatchMode;
    let (mode, mode_reason) = match f.mode {
        WatchMode::Events => ("events".to_string(), String::new()),
        WatchMode::Polling(reason) => ("polling".to_string(), reason),
    };
    pb::Folder {
        path: f.path,
        mode,
        mode_reason,
        last_scan: f.last_scan.map(scan_report),
    }
}

fn location_of(chapter: String, page: Option<crate::text::PageRef>, start: u64, end: u64) -> pb::Location {
    pb::Location {
        chapter,
        page: page.as_ref().map(|p| p.number),
        page_label: page.map(|p| p.display()).unwrap_or_default(),
        start,
        end,
    }
}

fn retrievers(r: Vec<crate::search::RetrieverScore>) -> Vec<pb::RetrieverScore> {
    r.into_iter()
        .map(|r| pb::RetrieverScore {
            retriever: r.retriever.to_string(),
            score: r.score,
            rank: r.rank,
        })
        .collect()
}

fn context_passage(p: crate::assistant::ContextPassage) -> pb::ContextPassage {
    let c = p.passage;
    pb::ContextPassage {
        number: p.number,
        book_id: c.book_id,
        title: c.title,
        path: c.path,
        location: Some(location_of(c.chapter, c.page, c.start, c.end)),
        text: c.text,
        score: c.score,
        rank: c.rank,
        retrievers: retrievers(c.retrievers),
        in_prompt: p.number > 0,
        chunk_ids: c.chunk_ids,
        tokens: p.tokens,
        left_out: match p.left_out {
            None => pb::LeftOut::None,
            Some(crate::assistant::LeftOut::BelowFloor) => pb::LeftOut::BelowFloor,
            Some(crate::assistant::LeftOut::OverBudget) => pb::LeftOut::OverBudget,
        } as i32,
    }
}

fn prompt_budget(b: crate::assistant::PromptBudget) -> pb::PromptBudget {
    pb::PromptBudget {
        passages: b.passages,
        history: b.history,
        framing: b.framing,
        answer_reserve: b.answer_reserve,
        passage_limit: b.passage_limit,
    }
}

fn source(s: crate::assistant::Source) -> pb::Source {
    let c = s.passage;
    pb::Source {
        number: s.number,
        book_id: c.book_id,
        title: c.title,
        path: c.path,
        location: Some(location_of(c.chapter, c.page, c.start, c.end)),
        text: c.text,
        cited: s.cited,
    }
}

pub(crate) fn ask_event(e: crate::assistant::AskEvent) -> pb::AskEvent {
    use crate::assistant::AskEvent;
    use pb::ask_event::Kind;
    let kind = match e {
        AskEvent::Context(c) => Kind::Context(pb::AskContext {
            conversation_id: c.conversation_id,
            passages: c.passages.into_iter().map(context_passage).collect(),
            backend: c.backend,
            model: c.model,
            prompt_tokens: c.prompt_tokens,
            context_tokens: c.context_tokens,
            nothing_relevant: c.nothing_relevant,
            budget: c.budget.map(prompt_budget),
            expansion: c.expansion,
        }),
        AskEvent::Token(text) => Kind::Token(pb::AskToken { text }),
        AskEvent::Progress { stage, done, total } => Kind::Progress(pb::AskProgress { stage, done, total }),
        AskEvent::Done(d) => {
            let d = *d;
            Kind::Done(pb::AskDone {
                answer: d.answer,
                sources: d.sources.into_iter().map(source).collect(),
                invalid_citations: d.invalid_citations,
                timings: Some(pb::Timings {
                    retrieval_ms: d.timings.retrieval_ms,
                    prompt_ms: d.timings.prompt_ms,
                    first_token_ms: d.timings.first_token_ms,
                    generation_ms: d.timings.generation_ms,
                    tokens_per_second: d.timings.tokens_per_second,
                    total_ms: d.timings.total_ms,
                }),
                prompt_tokens: d.prompt_tokens,
                completion_tokens: d.completion_tokens,
                conversation_id: d.conversation_id,
                nothing_relevant: d.nothing_relevant,
                finish_reason: d.finish_reason,
                backend: d.backend,
                model: d.model,
                claims: d
                    .claims
                    .into_iter()
                    .map(|c| pb::Claim {
                        start: c.start,
                        end: c.end,
                        status: c.status.as_str().into(),
                        cited: c.cited,
                        supporting: c.supporting,
                        support: c.support,
                    })
                    .collect(),
                grounded: d.grounded,
            })
        }
    };
    pb::AskEvent { kind: Some(kind) }
}

pub(crate) fn llm_info(i: crate::llm::LlmInfo) -> pb::LlmInfoResponse {
    pb::LlmInfoResponse {
        backend: i.backend,
        model: i.model,
        ready: i.ready,
        detail: i.detail,
        context_tokens: i.context_tokens as u32,
        base_url: i.base_url,
        config_path: i.config_path.display().to_string(),
        max_tokens: i.config.max_tokens,
        temperature: i.config.temperature,
    }
}

pub(crate) fn ask_request(r: pb::AskRequest) -> Result<crate::assistant::Request, RpcError> {
    Ok(crate::assistant::Request::Ask {
        question: r.question,
        books: book_ids(r.book_ids)?,
        conversation_id: r.conversation_id,
        k: r.k,
    })
}

pub(crate) fn summarize_request(r: pb::SummarizeRequest) -> Result<crate::assistant::Request, RpcError> {
    Ok(crate::assistant::Request::Summarize {
        book_id: book_id(r.book_id)?,
        chapter: r.chapter,
    })
}

pub(crate) fn explain_request(r: pb::ExplainRequest) -> Result<crate::assistant::Request, RpcError> {
    Ok(crate::assistant::Request::Explain {
        book_id: book_id(r.book_id)?,
        at: r.at,
        chars: r.chars,
        conversation_id: r.conversation_id,
    })
}

pub(crate) fn embedding_model(m: mindory_proto::models::EmbeddingModelStatus, active: &str, swapping: Option<&str>) -> pb::EmbeddingModel {
    pb::EmbeddingModel {
        name: m.name.to_string(),
        id: m.id.to_string(),
        dimensions: m.dimensions as u32,
        installed: m.installed,
        active: m.id == active,
        swapping_in: swapping == Some(m.id),
        licence: mindory_proto::models::embedding_model(m.id)
            .map(|e| e.licence.to_string())
            .unwrap_or_default(),
    }
}

/// The `[embed]` server's model in `models list`: always "installed"; its
/// vector length is known once it has been loaded (0 before).
pub(crate) fn remote_embedding_model(id: &str, dimensions: usize, active: &str, swapping: Option<&str>) -> pb::EmbeddingModel {
    pb::EmbeddingModel {
        name: crate::swap::REMOTE_NAME.to_string(),
        id: id.to_string(),
        dimensions: dimensions as u32,
        installed: true,
        active: id == active,
        swapping_in: swapping == Some(id),
        licence: "set by the server's model".to_string(),
    }
}

pub(crate) fn use_outcome(o: crate::swap::UseOutcome) -> pb::UseModelOutcome {
    use crate::swap::UseOutcome as O;
    match o {
        O::AlreadyActive => pb::UseModelOutcome::AlreadyActive,
        O::Started => pb::UseModelOutcome::Started,
        O::InProgress => pb::UseModelOutcome::InProgress,
        O::Cancelled => pb::UseModelOutcome::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::At;

    /// Ids that name no book are refused before the store sees them: above
    /// `MAX_BOOK_ID`, `id + 1` would overflow into another book's range.
    #[test]
    fn rpc_book_ids_outside_the_id_space_are_not_found() {
        let max = crate::store::MAX_BOOK_ID;
        for bad in [0, max + 1, max + 2, u64::MAX, (1 << 40) + 1] {
            let e = book_id(bad).expect_err("no such book");
            assert!(
                matches!(e, RpcError::Store(crate::store::StoreError::NoSuchBook(id)) if id == bad),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(book_id(1).unwrap(), 1);
        assert_eq!(book_id(max).unwrap(), max);
        assert!(book_ids(vec![1, 2, u64::MAX]).is_err());
    }

    /// Page tokens come back as they were made; anything else is an invalid
    /// argument whose message says what to send.
    #[test]
    fn rpc_page_tokens_round_trip_and_strangers_are_refused() {
        assert_eq!(page_after("").unwrap(), 0);
        assert_eq!(page_after(&page_token(42)).unwrap(), 42);
        for bad in ["42", "after-", "after-x", "after--1", "after-18446744073709551615", "page 2"] {
            let e = page_after(bad).expect_err(bad);
            assert!(matches!(&e, RpcError::Invalid(m) if m.contains("next_page_token")), "{bad}: {e:?}");
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
        }
    }

    /// A passage is bounded whatever the request says; 0 keeps its meaning.
    #[test]
    fn rpc_passage_answers_are_bounded() {
        let max = MAX_PASSAGE_CHARS as usize;
        assert_eq!(passage_limit(&At::Offset(5), 0), 0, "0 from an offset is read's default (2,000)");
        assert_eq!(passage_limit(&At::Chapter(1), 0), max, "a whole chapter, bounded");
        assert_eq!(passage_limit(&At::Page("iv".into()), 0), max);
        assert_eq!(passage_limit(&At::Chapter(1), u32::MAX), max);
        assert_eq!(passage_limit(&At::Offset(0), 300), 300);
        // Four bytes a character at most, plus the other fields: under 4 MiB.
        assert!(max * 4 + 64 * 1024 < 4 * 1024 * 1024);
    }

    /// `k` and the book ids pass through for the searcher to clamp and
    /// check; an unknown mode from a newer client is the default.
    #[test]
    fn rpc_search_query_leaves_bounds_to_the_searcher() {
        let query = search_query(pb::SearchRequest {
            query: "q".into(),
            k: u32::MAX,
            book_ids: vec![u64::MAX],
            mode: 99,
            ..Default::default()
        });
        assert_eq!(
            (query.k, query.books, query.mode),
            (u32::MAX as usize, vec![u64::MAX], crate::search::Mode::Hybrid)
        );
    }
}
