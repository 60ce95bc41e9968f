//! What the webview sees: every protobuf message the app forwards, turned
//! into plain JSON with camelCase-free snake_case keys and enums as words.
//!
//! The generated prost types do not implement `Serialize` (and the proto crate
//! is shared with the daemon, which has no use for serde), so the app converts
//! here, once, instead of sprinkling `json!` over the command layer. Daemon
//! events and enum words come from `mindory_proto::json`, the same shapes as
//! `mindory events --json`. The TypeScript side mirrors these shapes in
//! `client-tauri/src/api.ts`.

use mindory_proto::cite;
use mindory_proto::json::{add_outcome, book_status, left_out, prompt_budget};
pub use mindory_proto::json::{event, scan as scan_report};
use mindory_proto::pb;
use serde_json::{json, Value};

pub fn book(b: &pb::Book) -> Value {
    json!({
        "id": b.id,
        "title": b.title,
        "author": b.author,
        "path": b.path,
        "format": b.format,
        "status": book_status(b.status),
        "error": b.error,
        "chunks": b.chunks,
        "size_bytes": b.size_bytes,
        "added_at_ms": b.added_at_ms,
        "updated_at_ms": b.updated_at_ms,
        "text_chars": b.text_chars,
        "language": b.language,
        "sections": b.sections.iter().map(|s| json!({"heading": s.heading, "chunks": s.chunks, "start": s.start})).collect::<Vec<_>>(),
        "passage_kinds": b.passage_kinds,
    })
}

pub fn folder(f: &pb::Folder) -> Value {
    json!({
        "path": f.path, "mode": f.mode, "mode_reason": f.mode_reason,
        "last_scan": f.last_scan.as_ref().map(scan_report),
    })
}

pub fn status(s: &pb::StatusResponse) -> Value {
    json!({
        "protocol_version": s.protocol_version,
        "daemon_version": s.daemon_version,
        "embedding_model": s.embedding_model,
        "books": s.books,
        "chunks": s.chunks,
        "queue_pending": s.queue_pending,
        "queue_running": s.queue_running,
        "embedded_since_start": s.embedded_since_start,
        "vectors_indexed": s.vectors_indexed,
        "keyword_indexed": s.keyword_indexed,
        "data_dir": s.data_dir,
        "uptime_ms": s.uptime_ms,
        "folders": s.folders.iter().map(folder).collect::<Vec<_>>(),
        "swap": s.swap.as_ref().map(|w| json!({"model": w.model, "done": w.done, "total": w.total})),
    })
}

pub fn added(a: &pb::AddedPath) -> Value {
    json!({"path": a.path, "outcome": add_outcome(a.outcome), "book_id": a.book_id, "reason": a.reason})
}

/// A location with its citation label ("Title — Chapter — p. N") ready to show.
pub fn location(title: &str, l: Option<&pb::Location>) -> Value {
    let l = l.cloned().unwrap_or_default();
    json!({
        "chapter": l.chapter,
        "page": l.page,
        "page_label": l.page_label,
        "start": l.start,
        "end": l.end,
        "place": cite::place(title, &l.chapter, &l.page_label),
    })
}

pub fn retrievers(r: &[pb::RetrieverScore]) -> Value {
    r.iter()
        .map(|s| json!({"retriever": s.retriever, "score": s.score, "rank": s.rank}))
        .collect()
}

pub fn hit(h: &pb::SearchHit) -> Value {
    json!({
        "score": h.score,
        "book_id": h.book_id,
        "title": h.title,
        "path": h.path,
        "location": location(&h.title, h.location.as_ref()),
        "text": h.text,
        "chunk_id": h.chunk_id,
        "retrievers": retrievers(&h.retrievers),
        "passage_kind": h.passage_kind,
        "still_embedding": h.still_embedding,
    })
}

pub fn passage(p: &pb::Passage) -> Value {
    json!({
        "book_id": p.book_id,
        "title": p.title,
        "chapter": p.chapter,
        "page": p.page,
        "page_label": p.page_label,
        "start": p.start,
        "end": p.end,
        "text": p.text,
        "text_chars": p.text_chars,
        "place": cite::place(&p.title, &p.chapter, &p.page_label),
    })
}

fn context_passage(p: &pb::ContextPassage) -> Value {
    json!({
        "number": p.number,
        "book_id": p.book_id,
        "title": p.title,
        "path": p.path,
        "location": location(&p.title, p.location.as_ref()),
        "text": p.text,
        "score": p.score,
        "rank": p.rank,
        "retrievers": retrievers(&p.retrievers),
        "in_prompt": p.in_prompt,
        "left_out": left_out(p.left_out),
        "chunk_ids": p.chunk_ids,
        "tokens": p.tokens,
    })
}

/// One streamed assistant event as `{kind: "context"|"token"|"progress"|"done", ...}`.
pub fn ask_event(e: &pb::AskEvent) -> Value {
    use pb::ask_event::Kind;
    match &e.kind {
        Some(Kind::Context(c)) => json!({
            "kind": "context",
            "conversation_id": c.conversation_id,
            "passages": c.passages.iter().map(context_passage).collect::<Vec<_>>(),
            "backend": c.backend,
            "model": c.model,
            "prompt_tokens": c.prompt_tokens,
            "context_tokens": c.context_tokens,
            "nothing_relevant": c.nothing_relevant,
            "budget": prompt_budget(c.budget.as_ref()),
        }),
        Some(Kind::Token(t)) => json!({"kind": "token", "text": t.text}),
        Some(Kind::Progress(p)) => json!({"kind": "progress", "stage": p.stage, "done": p.done, "total": p.total}),
        Some(Kind::Done(d)) => json!({
            "kind": "done",
            "answer": d.answer,
            "sources": d.sources.iter().map(|s| json!({
                "number": s.number, "book_id": s.book_id, "title": s.title, "path": s.path,
                "location": location(&s.title, s.location.as_ref()), "text": s.text, "cited": s.cited,
            })).collect::<Vec<_>>(),
            "invalid_citations": d.invalid_citations,
            "timings": d.timings.as_ref().map(|t| json!({
                "retrieval_ms": t.retrieval_ms, "prompt_ms": t.prompt_ms, "first_token_ms": t.first_token_ms,
                "generation_ms": t.generation_ms, "tokens_per_second": t.tokens_per_second, "total_ms": t.total_ms,
            })),
            "prompt_tokens": d.prompt_tokens,
            "completion_tokens": d.completion_tokens,
            "conversation_id": d.conversation_id,
            "nothing_relevant": d.nothing_relevant,
            "finish_reason": d.finish_reason,
            "backend": d.backend,
            "model": d.model,
            "claims": d.claims.iter().map(|c| json!({
                "start": c.start, "end": c.end, "status": c.status, "cited": c.cited,
                "supporting": c.supporting, "support": c.support,
            })).collect::<Vec<_>>(),
            "grounded": d.grounded,
        }),
        None => json!({"kind": "unknown"}),
    }
}

pub fn llm_info(i: &pb::LlmInfoResponse) -> Value {
    json!({
        "backend": i.backend, "model": i.model, "ready": i.ready, "detail": i.detail,
        "context_tokens": i.context_tokens, "base_url": i.base_url, "config_path": i.config_path,
        "max_tokens": i.max_tokens, "temperature": i.temperature,
    })
}
