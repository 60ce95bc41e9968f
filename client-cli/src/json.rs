//! The `--json` shapes: the scripting contract in `docs/cli-json.md`.
//! Fields are only ever added, never renamed or removed.

pub use mindory_proto::json::{book_status, event, scan};
use mindory_proto::json::{left_out, prompt_budget};
use mindory_proto::pb;
use serde_json::{json, Value};

pub fn status(s: &pb::StatusResponse) -> Value {
    json!({
        "protocol_version": s.protocol_version,
        "version": s.daemon_version,
        "model": s.embedding_model,
        "swap": s.swap.as_ref().map(|w| json!({"model": w.model, "done": w.done, "total": w.total})),
        "books": s.books,
        "chunks": s.chunks,
        "queue": { "pending": s.queue_pending, "running": s.queue_running },
        "embedded": s.embedded_since_start,
        "vectors": s.vectors_indexed,
        "keyword": s.keyword_indexed,
        "data_dir": s.data_dir,
        "storage_fault": (!s.storage_fault.is_empty()).then_some(&s.storage_fault),
        "folders": s.folders.iter().map(folder).collect::<Vec<_>>(),
        "uptime_ms": s.uptime_ms,
    })
}

pub fn book(b: &pb::Book) -> Value {
    json!({
        "id": b.id,
        "title": b.title,
        "author": b.author,
        "language": if b.language.is_empty() { Value::Null } else { Value::String(b.language.clone()) },
        "path": b.path,
        "format": b.format,
        "status": book_status(b.status),
        "error": if b.error.is_empty() { Value::Null } else { Value::String(b.error.clone()) },
        "chunks": b.chunks,
    })
}

pub fn hit(rank: usize, h: &pb::SearchHit) -> Value {
    let loc = h.location.clone().unwrap_or_default();
    json!({
        "rank": rank,
        "score": h.score,
        "book_id": h.book_id,
        "title": h.title,
        "path": h.path,
        "chapter": if loc.chapter.is_empty() { Value::Null } else { Value::String(loc.chapter) },
        "page": loc.page,
        "page_label": if loc.page_label.is_empty() { Value::Null } else { Value::String(loc.page_label) },
        "start": loc.start,
        "end": loc.end,
        "text": h.text,
        "still_embedding": h.still_embedding,
        "passage_kind": if h.passage_kind.is_empty() { "body" } else { h.passage_kind.as_str() },
        "retrievers": h.retrievers.iter().map(|r| json!({"retriever": r.retriever, "score": r.score, "rank": r.rank})).collect::<Vec<_>>(),
    })
}

pub fn folder(f: &pb::Folder) -> Value {
    json!({
        "path": f.path,
        "mode": f.mode,
        "mode_reason": if f.mode_reason.is_empty() { Value::Null } else { Value::String(f.mode_reason.clone()) },
        "last_scan": f.last_scan.as_ref().map(scan),
    })
}

fn location(loc: &Option<pb::Location>) -> (Value, Value, Value, u64, u64) {
    let loc = loc.clone().unwrap_or_default();
    (
        if loc.chapter.is_empty() {
            Value::Null
        } else {
            Value::String(loc.chapter)
        },
        json!(loc.page),
        if loc.page_label.is_empty() {
            Value::Null
        } else {
            Value::String(loc.page_label)
        },
        loc.start,
        loc.end,
    )
}

/// One line of `ask --json` (and `summarize`/`explain --json`).
pub fn ask_event(kind: &pb::ask_event::Kind) -> Value {
    use pb::ask_event::Kind;
    match kind {
        Kind::Context(c) => json!({
            "event": "context",
            "conversation_id": c.conversation_id,
            "backend": c.backend,
            "model": c.model,
            "prompt_tokens": c.prompt_tokens,
            "context_tokens": c.context_tokens,
            "nothing_relevant": c.nothing_relevant,
            "expansion": c.expansion,
            "budget": prompt_budget(c.budget.as_ref()),
            "passages": c.passages.iter().map(|p| {
                let (chapter, page, page_label, start, end) = location(&p.location);
                json!({
                    "number": p.number,
                    "in_prompt": p.in_prompt,
                    "left_out": left_out(p.left_out),
                    "book_id": p.book_id,
                    "title": p.title,
                    "path": p.path,
                    "chapter": chapter,
                    "page": page,
                    "page_label": page_label,
                    "start": start,
                    "end": end,
                    "score": p.score,
                    "rank": p.rank,
                    "retrievers": p.retrievers.iter().map(|r| json!({"retriever": r.retriever, "score": r.score, "rank": r.rank})).collect::<Vec<_>>(),
                    "chunk_ids": p.chunk_ids,
                    "tokens": p.tokens,
                    "text": p.text,
                })
            }).collect::<Vec<_>>(),
        }),
        Kind::Token(t) => json!({"event": "token", "text": t.text}),
        Kind::Progress(p) => json!({"event": "progress", "stage": p.stage, "done": p.done, "total": p.total}),
        Kind::Done(d) => {
            let t = d.timings.unwrap_or_default();
            json!({
                "event": "done",
                "answer": d.answer,
                "sources": d.sources.iter().map(|s| {
                    let (chapter, page, page_label, start, end) = location(&s.location);
                    json!({
                        "number": s.number,
                        "cited": s.cited,
                        "book_id": s.book_id,
                        "title": s.title,
                        "path": s.path,
                        "chapter": chapter,
                        "page": page,
                        "page_label": page_label,
                        "start": start,
                        "end": end,
                        "text": s.text,
                    })
                }).collect::<Vec<_>>(),
                "invalid_citations": d.invalid_citations,
                "timings": {
                    "retrieval_ms": t.retrieval_ms,
                    "prompt_ms": t.prompt_ms,
                    "first_token_ms": t.first_token_ms,
                    "generation_ms": t.generation_ms,
                    "tokens_per_second": t.tokens_per_second,
                    "total_ms": t.total_ms,
                },
                "prompt_tokens": d.prompt_tokens,
                "completion_tokens": d.completion_tokens,
                "conversation_id": d.conversation_id,
                "nothing_relevant": d.nothing_relevant,
                "finish_reason": d.finish_reason,
                "backend": d.backend,
                "model": d.model,
                "grounded": d.grounded,
                "claims": d.claims.iter().map(|c| {
                    let text: String = d.answer.chars().skip(c.start as usize).take(c.end.saturating_sub(c.start) as usize).collect();
                    json!({
                        "start": c.start,
                        "end": c.end,
                        "text": text,
                        "status": c.status,
                        "cited": c.cited,
                        "supporting": c.supporting,
                        "support": c.support,
                    })
                }).collect::<Vec<_>>(),
            })
        }
    }
}

/// `mindory llm --json`.
pub fn llm(i: &pb::LlmInfoResponse) -> Value {
    json!({
        "backend": i.backend,
        "model": i.model,
        "ready": i.ready,
        "detail": i.detail,
        "context_tokens": i.context_tokens,
        "max_tokens": i.max_tokens,
        "temperature": i.temperature,
        "base_url": if i.base_url.is_empty() { Value::Null } else { Value::String(i.base_url.clone()) },
        "config_path": i.config_path,
    })
}

pub fn embedding_model(m: &pb::EmbeddingModel) -> Value {
    json!({
        "name": m.name,
        "id": m.id,
        "dimensions": m.dimensions,
        "installed": m.installed,
        "active": m.active,
        "swapping_in": m.swapping_in,
        "licence": m.licence,
    })
}
