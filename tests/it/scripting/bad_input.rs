//! Bad input over raw gRPC: `bad_input.py`, a stock grpcio client with stubs
//! generated from the proto, sends what no Mindory client would, and this
//! test holds what each case must get back: a clear status with a message
//! that is neither UNKNOWN nor INTERNAL (nor a hang), or a bounded answer.
//! Nothing stored may change: the books, the counts and a known search
//! result are the same before and after.

use std::collections::HashMap;

use mindory_daemon::llm::fake::{Behaviour, FakeLlm};
use mindory_proto::pb;

use super::{grpc_python, python_stubs};
use crate::support::{self, fixture, TestDaemon};

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status code, with a message.
    Code(&'static str),
    /// A refusal with a message, whichever client-error code fits: the
    /// point is that it is not a crash, a hang or a blank.
    Refused,
    /// Success.
    Ok,
    /// One of these codes, with a message: for the cases tonic answers
    /// before any Mindory code runs (see [`expectations`]).
    Tonic(&'static [&'static str]),
}

const MAX_K: u64 = 1000;

fn expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        ("search: empty query", Code("INVALID_ARGUMENT")),
        ("search: blank query", Code("INVALID_ARGUMENT")),
        ("search: 100 KB query", Ok),
        ("search: 3 MB query", Ok),
        ("search: k 0", Ok),
        ("search: k 1000000", Ok),
        ("search: k u32 max", Ok),
        ("search: unknown mode", Ok),
        ("search: unknown book", Code("NOT_FOUND")),
        ("search: book id u64 max", Code("NOT_FOUND")),
        ("search: 100000 book ids", Code("NOT_FOUND")),
        ("get book: unknown", Code("NOT_FOUND")),
        ("get book: id 0", Code("NOT_FOUND")),
        ("get book: id u64 max", Code("NOT_FOUND")),
        ("get book: id 2^40 + 1", Code("NOT_FOUND")),
        ("passage: unknown book", Code("NOT_FOUND")),
        ("passage: book id u64 max", Code("NOT_FOUND")),
        ("passage: chapter 0", Code("OUT_OF_RANGE")),
        ("passage: chapter u32 max", Code("OUT_OF_RANGE")),
        ("passage: page 5 of a book without pages", Code("OUT_OF_RANGE")),
        ("passage: page label of a book without pages", Code("OUT_OF_RANGE")),
        ("passage: offset past the end", Code("OUT_OF_RANGE")),
        ("passage: offset u64 max", Code("OUT_OF_RANGE")),
        ("passage: max chars u32 max", Ok),
        ("passage: no location", Ok),
        ("remove book: unknown", Code("NOT_FOUND")),
        ("remove book: id u64 max", Code("NOT_FOUND")),
        ("reindex: unknown book", Code("NOT_FOUND")),
        ("reindex: book id u64 max", Code("NOT_FOUND")),
        ("add: missing file", Ok),
        ("add: empty path", Ok),
        ("add: NUL in path", Ok),
        ("add folder: missing", Refused),
        ("add folder: empty path", Refused),
        ("remove folder: not followed", Refused),
        ("use model: unknown", Refused),
        ("use model: empty name", Refused),
        ("summarize: unknown book", Code("NOT_FOUND")),
        ("summarize: book id u64 max", Code("NOT_FOUND")),
        ("summarize: chapter 0", Code("OUT_OF_RANGE")),
        ("explain: unknown book", Code("NOT_FOUND")),
        ("explain: offset past the end", Code("OUT_OF_RANGE")),
        ("ask: empty question", Code("INVALID_ARGUMENT")),
        ("ask: unknown book", Code("NOT_FOUND")),
        // tonic refuses a request over the limit while reading it, with
        // OUT_OF_RANGE (grpc-go says RESOURCE_EXHAUSTED); the message names
        // the limit (checked below).
        ("search: 5 MB message", Tonic(&["OUT_OF_RANGE", "RESOURCE_EXHAUSTED"])),
        ("add: 5 MB of paths", Tonic(&["OUT_OF_RANGE", "RESOURCE_EXHAUSTED"])),
        // A request that does not decode is INTERNAL in tonic, as in grpc-go
        // and grpc-java; the message says what failed to decode.
        ("search: bytes that are not protobuf", Tonic(&["INTERNAL", "INVALID_ARGUMENT"])),
        ("search: query that is not UTF-8", Tonic(&["INTERNAL", "INVALID_ARGUMENT"])),
        // tonic's router answers an unknown method without a message.
        ("unknown method", Tonic(&["UNIMPLEMENTED"])),
    ]
}

/// Everything a bad request could have changed.
#[derive(Debug, PartialEq)]
struct Stored {
    books: Vec<(u64, String, u64, i32, String)>,
    counts: (u64, u64, u64, u64),
    folders: usize,
    hits: Vec<(u64, String)>,
}

async fn stored(daemon: &TestDaemon) -> Stored {
    let status = daemon.status().await;
    let folders = pb::library_client::LibraryClient::new(daemon.channel().await)
        .list_folders(pb::ListFoldersRequest {})
        .await
        .expect("folders")
        .into_inner()
        .folders
        .len();
    Stored {
        books: daemon
            .books()
            .await
            .into_iter()
            .map(|b| (b.id, b.path, b.chunks, b.status, b.content_hash))
            .collect(),
        counts: (status.books, status.chunks, status.vectors_indexed, status.keyword_indexed),
        folders,
        // Scores as text: the same index must give the very same floats.
        hits: daemon
            .search("How old must a senator be?", 5)
            .await
            .into_iter()
            .map(|h| (h.chunk_id, h.score.to_string()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_over_raw_grpc_gets_clear_statuses_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A bad request must never reach the model: the test checks that this
    // answer was never asked for.
    let fake = FakeLlm::start(vec![Behaviour::stream(&["never asked"])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| support::use_endpoint(c, url, "fake")).await;
    let added = daemon.add(&[fixture("constitution.txt")]).await;
    let book = added[0].book_id;
    daemon.wait_idle(std::time::Duration::from_secs(300)).await;
    let before = stored(&daemon).await;
    assert_eq!(before.books.len(), 1, "{before:?}");
    assert!(!before.hits.is_empty(), "the known search finds something: {before:?}");
    let passages = before.books[0].2;
    let text_chars = daemon_text_chars(&daemon, book).await;

    let python = grpc_python();
    let work = tmp.path().join("py");
    python_stubs(&python, &work).await;
    let script = super::repo().join("tests/it/scripting/bad_input.py");
    let book = book.to_string();
    let stdout = super::run_script(
        &python,
        &script,
        &daemon.socket,
        &work,
        Some(&work),
        &["--book-id".as_ref(), book.as_ref()],
    )
    .await;
    // The whole table, for whoever reads a failure (or runs --no-capture).
    println!("{stdout}");
    let results: HashMap<String, serde_json::Value> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["case"].as_str().unwrap().to_string(), v)
        })
        .collect();

    let mut wrong = Vec::new();
    for (case, expect) in expectations() {
        let Some(got) = results.get(case) else {
            wrong.push(format!("{case}: not run"));
            continue;
        };
        let (code, message) = (got["code"].as_str().unwrap(), got["message"].as_str().unwrap());
        let fine = match expect {
            Expect::Ok => code == "OK",
            Expect::Code(want) => code == want && !message.is_empty(),
            Expect::Tonic(codes) => codes.contains(&code) && (code == "UNIMPLEMENTED" || !message.is_empty()),
            Expect::Refused => !matches!(code, "OK" | "UNKNOWN" | "INTERNAL" | "DEADLINE_EXCEEDED" | "UNAVAILABLE") && !message.is_empty(),
        };
        if !fine {
            wrong.push(format!("{case}: expected {expect:?}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "{} cases misbehaved:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(results.len(), expectations().len(), "every case has an expectation: {stdout}");

    // The successful answers are bounded.
    let n = |case: &str, key: &str| results[case][key].as_u64().unwrap_or_else(|| panic!("{case}: no {key}"));
    assert_eq!(n("search: k 0", "hits"), 10, "k 0 means the default");
    for case in ["search: 100 KB query", "search: 3 MB query", "search: unknown mode"] {
        assert!(n(case, "hits") <= 10, "{case}: {}", results[case]);
    }
    // Hybrid ranks every passage by meaning, so it lists them all (at most
    // MAX_K); keyword mode only those holding the word.
    assert_eq!(n("search: k 1000000", "hits"), passages.min(MAX_K), "every passage, at most MAX_K");
    let keyword = n("search: k u32 max", "hits");
    assert!(keyword > 0 && keyword <= passages.min(MAX_K), "keyword hits: {keyword}");
    assert_eq!(n("passage: max chars u32 max", "chars"), text_chars, "the whole (small) book");
    assert!(n("passage: no location", "chars") <= 2000);
    for case in ["add: missing file", "add: empty path", "add: NUL in path"] {
        let got = &results[case];
        assert_eq!(got["outcomes"], serde_json::json!(["ADD_OUTCOME_REJECTED"]), "{case}: {got}");
        assert!(!got["reasons"][0].as_str().unwrap().is_empty(), "{case}: a reason: {got}");
    }
    for case in ["search: 5 MB message", "add: 5 MB of paths"] {
        let message = results[case]["message"].as_str().unwrap();
        assert!(message.contains("4194304"), "{case}: the message names the limit: {message}");
    }

    for case in ["search: bytes that are not protobuf", "search: query that is not UTF-8"] {
        let message = results[case]["message"].as_str().unwrap();
        assert!(message.contains("failed to decode"), "{case}: {message}");
    }

    assert_eq!(stored(&daemon).await, before, "bad input changed what is stored");
    assert!(fake.requests().is_empty(), "no bad request reached the model");
    daemon.stop().await;
}

/// The book's length in characters (to check an unbounded read of it).
async fn daemon_text_chars(daemon: &TestDaemon, book: u64) -> u64 {
    pb::library_client::LibraryClient::new(daemon.channel().await)
        .get_book(pb::GetBookRequest { id: book })
        .await
        .expect("get book")
        .into_inner()
        .text_chars
}
