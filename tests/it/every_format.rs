//! Every Pride and Prejudice conversion finds Darcy's first proposal at rank
//! 1 in Chapter 34, and a PDF passage comes back with the page a reader sees
//! printed on it, which `mindory read --page` then opens.
//!
//! The library is embedded with potion-base-8M, the fast static model:
//! what is tested here is each format's parser, chapters and pages, so the
//! queries are sentences of the books (found by words and by meaning alike),
//! and the six books take seconds to embed instead of minutes. Search by
//! paraphrase with the default model is the Austen test's subject.

use std::time::Duration;

use crate::support::{cli, cli_json, copy_into, corpus, TestDaemon};

/// The opening of Darcy's first proposal, as a reader remembers it.
const PROPOSAL: &str = "In vain I have struggled. It will not do. My feelings will not be repressed.";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_format_cites_chapter_and_page() {
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_into(
        &tmp.path().join("books"),
        &[
            corpus("docx/pp.docx"),
            corpus("odt/pp.odt"),
            corpus("rtf/pp.rtf"),
            corpus("fb2/pp.fb2"),
            corpus("html/pp.html"),
            corpus("pdf/R-intro.pdf"),
        ],
    );
    let daemon = TestDaemon::start_with(tmp.path(), |c| c.embedding_model = "potion-base-8M".into()).await;
    let started = std::time::Instant::now();
    daemon.add(&files).await;
    daemon.wait_idle(Duration::from_secs(1500)).await;
    let books = daemon.books().await;
    let passages: u64 = books.iter().map(|b| b.chunks).sum();
    let embedded = daemon.status().await.embedded_since_start;
    println!(
        "every format: {} books, {passages} passages in {:.0?}; {embedded} embedded, {} reused from identical passages",
        books.len(),
        started.elapsed(),
        passages - embedded
    );
    // The five conversions of one novel share most passages word for word:
    // those are embedded once.
    assert!(embedded < passages, "{embedded} embedded for {passages} passages");

    for ext in ["docx", "odt", "rtf", "fb2", "html"] {
        let book = books.iter().find(|b| b.path.ends_with(&format!("pp.{ext}"))).unwrap();
        assert_eq!(
            (book.status, book.format.as_str()),
            (mindory_proto::pb::BookStatus::Ready as i32, ext),
            "{book:?}"
        );
        // Title, author and language from the file's metadata; pandoc's RTF has none.
        let expected = if ext == "rtf" {
            ("pp", "", "")
        } else {
            ("Pride and Prejudice", "Jane Austen", "en")
        };
        assert_eq!(
            (book.title.as_str(), book.author.as_str(), book.language.as_str()),
            expected,
            "pp.{ext}"
        );
        let hits = daemon.search_in(PROPOSAL, 1, &[book.id]).await;
        let chapter = &hits[0].location.as_ref().unwrap().chapter;
        assert!(chapter.ends_with("Chapter 34"), "pp.{ext}: rank 1 is in {chapter:?}");
        assert!(hits[0].text.contains("ardently"), "pp.{ext}: {}", hits[0].text);
    }

    // A PDF hit carries the printed page label, in both outputs.
    let pdf = books.iter().find(|b| b.path.ends_with("R-intro.pdf")).unwrap();
    let query = "the formula operators resemble the Wilkinson and Rogers notation used by Glim and Genstat";
    let hits = daemon.search_in(query, 1, &[pdf.id]).await;
    let loc = hits[0].location.clone().unwrap();
    // The sentence closes a passage that starts on the page printed "56"
    // and, through the passages' overlap, opens the next one on "57"; both
    // hold it. Either way the label is not the physical page number.
    assert!(
        matches!((loc.page_label.as_str(), loc.page), ("56", Some(62)) | ("57", Some(63))),
        "{:?}",
        hits[0]
    );
    assert!(hits[0].text.contains("Wilkinson and Rogers"), "{}", hits[0].text);
    assert!(loc.chapter.starts_with("11 Statistical models in R"), "{}", loc.chapter);
    let label = loc.page_label.clone();
    let json = cli_json(
        &daemon.socket,
        &["search", "--json", "-k", "1", "--book", &pdf.id.to_string(), query],
    )
    .await;
    assert_eq!(json[0]["page_label"], label.as_str(), "{json}");
    // The same book filter as above: without it the library's other books
    // take part, and the two passages that both hold the sentence (pages 56
    // and 57, tied at the top) may come back in the other order.
    let book = pdf.id.to_string();
    let out = cli(&daemon.socket, &["search", "-k", "1", "--book", &book, query]).await;
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains(&format!("— p. {label}")), "{human}");

    // `read --page` takes the label a citation shows.
    let out = cli(&daemon.socket, &["read", &pdf.id.to_string(), "--page", "57"]).await;
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.contains("— p. 57") && page.contains("Wilkinson and Rogers"),
        "{page}"
    );

    // The manual's table of contents is classified, and a topical query
    // whose words it lists finds the prose, not the contents pages.
    let out = cli(&daemon.socket, &["book", &pdf.id.to_string()]).await;
    let about = String::from_utf8_lossy(&out.stdout);
    assert!(
        about.lines().any(|l| l.starts_with("not prose") && l.contains(" contents")),
        "{about}"
    );
    for query in [
        "Statistical models in R: formulae for statistical models",
        "Reading data from files",
    ] {
        let hits = cli_json(
            &daemon.socket,
            &["search", "--json", "-k", "3", "--book", &pdf.id.to_string(), query],
        )
        .await;
        for hit in hits.as_array().unwrap() {
            assert_eq!(hit["passage_kind"], "body", "{query}: {hit}");
        }
    }
    daemon.stop().await;
}
