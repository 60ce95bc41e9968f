//! Retrieval end to end on a small library of several formats and two
//! languages: sentences typed from memory come back first, names and rare
//! terms are found by keyword where meaning alone misses, quoted phrases
//! match exactly, Chinese is keyword-searchable, and a keyword index rebuilt
//! from the store after its deletion answers exactly as before.

use std::collections::HashMap;
use std::time::Duration;

use mindory_proto::pb::{self, events_client::EventsClient, library_client::LibraryClient};
use tokio_stream::StreamExt;

use crate::support::{copy_into, corpus, fixture, TestDaemon};

async fn search(daemon: &TestDaemon, query: &str, k: u32, mode: pb::SearchMode) -> Vec<pb::SearchHit> {
    daemon.search_with(query, k, &[], mode).await
}

/// A book's whole normalized text.
async fn text_of(daemon: &TestDaemon, book: &pb::Book) -> String {
    LibraryClient::new(daemon.channel().await)
        .get_passage(pb::GetPassageRequest {
            book_id: book.id,
            at: Some(pb::get_passage_request::At::Offset(0)),
            max_chars: book.text_chars as u32,
        })
        .await
        .expect("get passage")
        .into_inner()
        .text
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Sentences of 8–30 words on one line of prose (no headings, no lists).
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let flat = squash(paragraph);
        let mut start = 0;
        let chars: Vec<(usize, char)> = flat.char_indices().collect();
        for (i, &(at, c)) in chars.iter().enumerate() {
            let ends = matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|(_, n)| *n == ' ');
            if ends {
                let sentence = flat[start..at + c.len_utf8()].trim().to_string();
                let words = sentence.split_whitespace().count();
                if (8..=30).contains(&words) && sentence.chars().filter(|c| c.is_alphabetic()).count() > 30 {
                    out.push(sentence);
                }
                start = at + c.len_utf8();
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hybrid_retrieval_finds_sentences_names_phrases_and_chinese() {
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_into(
        &tmp.path().join("books"),
        &[
            corpus("txt/prideprejudice.txt"),
            corpus("txt/alice29.txt"),
            corpus("txt/CalltoArms.txt"),
            corpus("epub/Metamorphosis-jackson.epub"),
            fixture("constitution.txt"),
            fixture("federalist-10.html"),
        ],
    );
    let daemon = TestDaemon::start(tmp.path()).await;
    let mut events = EventsClient::new(daemon.channel().await)
        .subscribe(pb::SubscribeRequest {})
        .await
        .expect("subscribe")
        .into_inner();
    let added = daemon.add(&files).await;
    let pride = added.iter().find(|a| a.path.ends_with("prideprejudice.txt")).unwrap().book_id;

    // Staged ingest: Pride and Prejudice (hundreds of passages, a minute of
    // embedding) is searchable by keyword as soon as it is parsed, says so
    // per hit, and reads as `embedding` meanwhile.
    tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(event) = events.next().await {
            if let Some(pb::event::Kind::Searchable(s)) = event.expect("event").kind {
                if s.book_id == pride {
                    return;
                }
            }
        }
        panic!("the event stream ended before Pride and Prejudice was searchable");
    })
    .await
    .expect("Pride and Prejudice searchable by keyword within 300 s");
    let hits = daemon.search_with("Chamberlayne", 3, &[], pb::SearchMode::Hybrid).await;
    let top = hits.first().expect("a keyword hit while embedding");
    assert_eq!(top.book_id, pride);
    assert!(top.text.contains("Chamberlayne"));
    let early = top.still_embedding;
    let status = daemon.books().await.into_iter().find(|b| b.id == pride).unwrap().status;
    // Embedding several hundred passages takes far longer than the search
    // above, so the book cannot have finished in between.
    assert!(early, "a passage found right after `searchable` has no vector yet: {top:?}");
    assert_eq!(status, pb::BookStatus::Embedding as i32);

    daemon.wait_idle(Duration::from_secs(900)).await;
    let hits = daemon.search_with("Chamberlayne", 3, &[], pb::SearchMode::Hybrid).await;
    assert!(!hits[0].still_embedding, "ready books' passages all have vectors");
    let books = daemon.books().await;
    assert!(books.iter().all(|b| b.status == pb::BookStatus::Ready as i32), "{books:?}");
    let status = daemon.status().await;
    assert_eq!(status.keyword_indexed, status.chunks, "every passage is keyword-searchable");
    let by_file = |name: &str| books.iter().find(|b| b.path.ends_with(name)).unwrap().clone();

    // 200 sentences typed verbatim, from four books in three formats: the
    // passage holding each comes first.
    let mut pool: Vec<(u64, String)> = Vec::new();
    for name in [
        "prideprejudice.txt",
        "alice29.txt",
        "Metamorphosis-jackson.epub",
        "constitution.txt",
    ] {
        let book = by_file(name);
        let text = text_of(&daemon, &book).await;
        let found = sentences(&text);
        assert!(found.len() > 20, "{name}: only {} sentences", found.len());
        pool.extend(found.into_iter().map(|s| (book.id, s)));
    }
    let mut rng = fastrand::Rng::with_seed(20261130);
    let mut first = 0;
    let mut misses = Vec::new();
    let sample: Vec<(u64, String)> = (0..200).map(|_| pool[rng.usize(..pool.len())].clone()).collect();
    for (book_id, sentence) in &sample {
        let hits = search(&daemon, sentence, 3, pb::SearchMode::Hybrid).await;
        let top = hits.first().expect("a hit");
        if top.book_id == *book_id && squash(&top.text).contains(sentence.as_str()) {
            first += 1;
        } else {
            misses.push(sentence.clone());
        }
    }
    println!("verbatim sentences at rank 1: {first}/200");
    assert!(first >= 198, "{first}/200 verbatim sentences at rank 1; missed: {misses:#?}");

    // A name that appears in one chapter only: keyword and hybrid find it
    // first; the embedding alone has no idea who that is.
    let pp = by_file("prideprejudice.txt");
    let pp_text = text_of(&daemon, &pp).await;
    let name = "Chamberlayne";
    assert_eq!(pp_text.matches(name).count(), 1, "{name} is mentioned once");
    for mode in [pb::SearchMode::Keyword, pb::SearchMode::Hybrid] {
        let hits = search(&daemon, name, 5, mode).await;
        assert!(hits[0].text.contains(name), "{mode:?}: {:?}", hits[0].text);
        assert_eq!(hits[0].book_id, pp.id);
    }
    let vector = search(&daemon, name, 5, pb::SearchMode::Vector).await;
    assert!(!vector[0].text.contains(name), "the embedding alone found {name} first");

    // Every hit carries each retriever's opinion.
    let hits = search(&daemon, "Lady Catherine de Bourgh", 5, pb::SearchMode::Hybrid).await;
    let kinds: Vec<&str> = hits[0].retrievers.iter().map(|r| r.retriever.as_str()).collect();
    assert!(
        kinds.contains(&"keyword") && kinds.contains(&"vector") && kinds.contains(&"fused"),
        "{kinds:?}"
    );

    // A quoted phrase returns only passages containing it, in both modes
    // that read words.
    for mode in [pb::SearchMode::Keyword, pb::SearchMode::Hybrid] {
        let hits = search(&daemon, "\"grinning from ear to ear\"", 10, mode).await;
        assert!(!hits.is_empty(), "{mode:?}");
        for h in &hits {
            assert!(
                squash(&h.text).to_lowercase().contains("grinning from ear to ear"),
                "{mode:?}: {}",
                h.text
            );
        }
        let hits = search(&daemon, "tea \"March Hare\"", 10, mode).await;
        assert!(hits.iter().all(|h| h.text.contains("March Hare")), "{mode:?}");
    }
    // Vector mode reads meaning only: quotes neither filter nor empty its
    // list (they once did, which lost every quoted FAQ question).
    let quoted = search(&daemon, "tea \"March Hare\"", 10, pb::SearchMode::Vector).await;
    let plain = search(&daemon, "tea March Hare", 10, pb::SearchMode::Vector).await;
    assert!(!quoted.is_empty(), "a quoted query in vector mode finds passages");
    assert_eq!(
        quoted.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        plain.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
        "quotes do not change a vector search"
    );

    // Chinese by keyword: a phrase from the preface of Call to Arms.
    let zh = by_file("CalltoArms.txt");
    let hits = search(&daemon, "我在年青时候也曾经做过许多梦", 3, pb::SearchMode::Keyword).await;
    assert_eq!(hits[0].book_id, zh.id);
    assert!(hits[0].text.contains("做过许多梦"), "{}", hits[0].text);

    // Punctuation-heavy queries are words, never syntax errors.
    for q in [
        "E: Unable to locate package",
        "lapply(x, f) [[1]]",
        "AND OR NOT ((",
        "\"unbalanced quote",
    ] {
        search(&daemon, q, 5, pb::SearchMode::Keyword).await;
    }

    // A megabyte pasted as a query is read up to its first 4,096 characters.
    let pasted = "Chamberlayne ".repeat(80_000);
    let started = std::time::Instant::now();
    let hits = search(&daemon, &pasted, 3, pb::SearchMode::Hybrid).await;
    assert!(!hits.is_empty());
    eprintln!("a {} KB query took {:?}", pasted.len() / 1024, started.elapsed());

    // A book filter names books that exist: an unknown id, or one too large
    // to be a book id (it once wrapped onto another book's passages), is
    // refused.
    for id in [999_999, 1 << 40, u64::MAX] {
        let err = daemon
            .try_search("Chamberlayne", 3, &[id], pb::SearchMode::Hybrid)
            .await
            .expect_err("an unknown book in the filter");
        assert_eq!(err.code(), tonic::Code::NotFound, "{id}: {err}");
        assert!(err.message().contains(&format!("no book {id}")), "{err}");
    }

    // The keyword index is derived data: deleted, it is rebuilt from the
    // store at start and answers exactly as before.
    let queries = [
        "Chamberlayne",
        "Mock Turtle soup",
        "\"We the People\"",
        "我在年青时候",
        "insect Gregor bed",
    ];
    let mut before: HashMap<&str, Vec<u64>> = HashMap::new();
    for q in queries {
        let hits = search(&daemon, q, 10, pb::SearchMode::Keyword).await;
        before.insert(q, hits.iter().map(|h| h.chunk_id).collect());
    }
    let (root, socket, data) = (daemon.root.clone(), daemon.socket.clone(), daemon.data_dir.clone());
    daemon.stop().await;
    std::fs::remove_dir_all(data.join("keyword")).unwrap();
    let daemon = TestDaemon::start_at(root, socket, data).await;
    assert_eq!(daemon.status().await.keyword_indexed, status.chunks);
    for q in queries {
        let hits = search(&daemon, q, 10, pb::SearchMode::Keyword).await;
        let ids: Vec<u64> = hits.iter().map(|h| h.chunk_id).collect();
        assert_eq!(ids, before[q], "{q}");
    }
    daemon.stop().await;
}
