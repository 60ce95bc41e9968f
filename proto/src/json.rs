//! JSON for the wire types that every client shows the same way: enum
//! values as words, and the daemon's events in the shape that
//! `mindory events --json` documents (`docs/cli-json.md`). The CLI and the
//! desktop app both print or forward these, so the shapes live here once;
//! each client keeps its own JSON for the messages it lays out differently.
//!
//! Fields are only ever added, never renamed or removed: scripts read them.

use serde_json::{json, Value};

use crate::pb;

/// A book status as a word: "queued", "indexing", "embedding", "ready",
/// "failed" ("unknown" for a value this build does not know).
pub fn book_status(status: i32) -> &'static str {
    match pb::BookStatus::try_from(status).unwrap_or(pb::BookStatus::Unspecified) {
        pb::BookStatus::Queued => "queued",
        pb::BookStatus::Indexing => "indexing",
        pb::BookStatus::Embedding => "embedding",
        pb::BookStatus::Ready => "ready",
        pb::BookStatus::Failed => "failed",
        pb::BookStatus::Unspecified => "unknown",
    }
}

/// What `Add` did with a path: "queued", "unchanged", "rejected".
pub fn add_outcome(outcome: i32) -> &'static str {
    match pb::AddOutcome::try_from(outcome).unwrap_or(pb::AddOutcome::Unspecified) {
        pb::AddOutcome::Queued => "queued",
        pb::AddOutcome::Unchanged => "unchanged",
        pb::AddOutcome::Rejected => "rejected",
        pb::AddOutcome::Unspecified => "unknown",
    }
}

/// Why a retrieved passage is not in the prompt: `null` when it is,
/// "below_floor" (not relevant enough) or "over_budget" (no room left).
pub fn left_out(reason: i32) -> Value {
    match pb::LeftOut::try_from(reason) {
        Ok(pb::LeftOut::None) => Value::Null,
        Ok(pb::LeftOut::BelowFloor) => json!("below_floor"),
        Ok(pb::LeftOut::OverBudget) => json!("over_budget"),
        Err(_) => json!("unknown"),
    }
}

/// A folder scan's counts, and the ids of the books it queued.
pub fn scan(r: &pb::ScanReport) -> Value {
    json!({
        "queued_ids": r.queued_ids,
        "files": r.files,
        "unchanged": r.unchanged,
        "queued": r.queued,
        "moved": r.moved,
        "removed": r.removed,
        "unsettled": r.unsettled,
        "took_ms": r.took_ms,
    })
}

/// One daemon event as `{type, seq, at_ms, ...fields}`; an event of a newer
/// daemon that this build does not know is `{"type": "unknown"}`, so a
/// client can still refresh on it.
pub fn event(e: &pb::Event) -> Value {
    use pb::event::Kind;
    let mut v = match &e.kind {
        Some(Kind::Queued(q)) => json!({"type": "queued", "book_id": q.book_id, "path": q.path}),
        Some(Kind::Started(s)) => json!({"type": "started", "book_id": s.book_id, "path": s.path}),
        Some(Kind::Searchable(s)) => json!({"type": "searchable", "book_id": s.book_id, "title": s.title, "chunks": s.chunks}),
        Some(Kind::Progress(p)) => json!({"type": "progress", "book_id": p.book_id, "done": p.done, "total": p.total}),
        Some(Kind::Ready(r)) => {
            json!({"type": "ready", "book_id": r.book_id, "title": r.title, "chunks": r.chunks, "embedded": r.embedded})
        }
        Some(Kind::Failed(f)) => json!({"type": "failed", "book_id": f.book_id, "path": f.path, "reason": f.reason}),
        Some(Kind::Removed(r)) => json!({"type": "removed", "book_id": r.book_id}),
        Some(Kind::Lagged(l)) => json!({"type": "lagged", "dropped": l.dropped}),
        Some(Kind::Moved(m)) => json!({"type": "moved", "book_id": m.book_id, "from": m.from, "to": m.to}),
        Some(Kind::ScanStarted(s)) => json!({"type": "scan_started", "folder": s.folder}),
        Some(Kind::ScanFinished(s)) => {
            let mut v = scan(&s.report.clone().unwrap_or_default());
            v["type"] = json!("scan_finished");
            v["folder"] = json!(s.folder);
            v
        }
        Some(Kind::SwapProgress(p)) => json!({"type": "swap_progress", "model": p.model, "done": p.done, "total": p.total}),
        Some(Kind::SwapFinished(f)) => json!({"type": "swap_finished", "from": f.from, "to": f.to}),
        Some(Kind::SwapCancelled(c)) => json!({"type": "swap_cancelled", "model": c.model, "reason": c.reason}),
        Some(Kind::Queue(q)) => json!({"type": "queue", "pending": q.pending, "running": q.running}),
        None => json!({"type": "unknown"}),
    };
    v["seq"] = json!(e.seq);
    v["at_ms"] = json!(e.at_ms);
    v
}

/// Where an answer's prompt tokens go, `null` when there was no one prompt.
pub fn prompt_budget(b: Option<&pb::PromptBudget>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => json!({
            "passages": b.passages,
            "history": b.history,
            "framing": b.framing,
            "answer_reserve": b.answer_reserve,
            "passage_limit": b.passage_limit,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_type_and_sequence() {
        let e = pb::Event {
            seq: 7,
            at_ms: 1000,
            kind: Some(pb::event::Kind::ScanFinished(pb::FolderScanFinished {
                folder: "/books".into(),
                report: Some(pb::ScanReport {
                    files: 3,
                    queued: 2,
                    ..Default::default()
                }),
            })),
        };
        let v = event(&e);
        assert_eq!(v["type"], "scan_finished");
        assert_eq!(v["folder"], "/books");
        assert_eq!(v["files"], 3);
        assert_eq!(v["queued"], 2);
        assert_eq!(v["seq"], 7);
        assert_eq!(event(&pb::Event::default())["type"], "unknown");
    }

    #[test]
    fn enum_words() {
        assert_eq!(book_status(pb::BookStatus::Embedding as i32), "embedding");
        assert_eq!(book_status(99), "unknown");
        assert_eq!(add_outcome(pb::AddOutcome::Rejected as i32), "rejected");
        assert_eq!(left_out(pb::LeftOut::None as i32), Value::Null);
        assert_eq!(left_out(pb::LeftOut::OverBudget as i32), "over_budget");
        assert_eq!(left_out(pb::LeftOut::BelowFloor as i32), "below_floor");
    }
}
