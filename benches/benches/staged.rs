//! Staged ingest: how soon a big book is searchable by keyword after it
//! lands in a watched folder, while its passages are still being embedded.
//!
//! `fullrefman.pdf` (the R reference manual, 2,415 pages) is copied into an
//! empty library folder. Measured: the `searchable` event (parsed, stored,
//! keyword-indexed) and the first keyword hit for a rare term from the
//! manual, both from the copy; then the embedding rate for 60 s, after which
//! the bench stops (embedding the whole manual takes many minutes and is
//! the ingest benches' business).
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench staged`

use std::time::{Duration, Instant};

use mindory_benches::{corpus, BenchDaemon};
use mindory_proto::pb::{self, events_client::EventsClient, library_client::LibraryClient, search_client::SearchClient};
use tokio_stream::StreamExt;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("books");
    std::fs::create_dir_all(&lib).unwrap();
    runtime.block_on(async {
        // A short drain: the stop at the end must not wait for the embedding.
        let (daemon, _) = BenchDaemon::start_with(tmp.path(), |c| c.drain_timeout = Duration::from_secs(1)).await;
        let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
        let mut events = EventsClient::new(channel.clone())
            .subscribe(pb::SubscribeRequest {})
            .await
            .unwrap()
            .into_inner();
        LibraryClient::new(channel.clone())
            .add_folder(pb::AddFolderRequest {
                path: lib.to_string_lossy().into_owned(),
            })
            .await
            .unwrap();

        let t = Instant::now();
        std::fs::copy(corpus("pdf/fullrefman.pdf"), lib.join("fullrefman.pdf")).unwrap();
        let (book_id, chunks) = loop {
            let event = events.next().await.expect("event stream").unwrap();
            match event.kind {
                Some(pb::event::Kind::Searchable(s)) => break (s.book_id, s.chunks),
                Some(pb::event::Kind::Failed(f)) => panic!("fullrefman.pdf failed: {}", f.reason),
                _ => {}
            }
        };
        let searchable = t.elapsed();
        let first_hit = loop {
            let hits = SearchClient::new(channel.clone())
                .search(pb::SearchRequest {
                    query: "mahalanobis".into(),
                    k: 3,
                    book_ids: vec![book_id],
                    mode: pb::SearchMode::Hybrid as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .hits;
            if let Some(hit) = hits.first() {
                assert!(hit.still_embedding, "the manual cannot be embedded already");
                break t.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };

        // The embedding rate while the book is searchable by keyword.
        let mut done = 0;
        let watch = Instant::now();
        let limit = Duration::from_secs(60);
        while watch.elapsed() < limit {
            let Ok(Some(event)) = tokio::time::timeout(limit - watch.elapsed().min(limit), events.next()).await else {
                break;
            };
            if let Some(pb::event::Kind::Progress(p)) = event.unwrap().kind {
                done = p.done;
            }
        }
        let embedded_secs = watch.elapsed().as_secs_f64();
        daemon.stop().await;

        println!("\n| fullrefman.pdf (2,415 pages) | result |");
        println!("|---|---:|");
        println!("| passages | {chunks} |");
        println!("| copy → `searchable` event | {:.2} s |", searchable.as_secs_f64());
        println!(
            "| copy → first keyword hit (\"mahalanobis\", hybrid, still embedding) | {:.2} s |",
            first_hit.as_secs_f64()
        );
        println!(
            "| vectors committed in the next {embedded_secs:.0} s | {done} ({:.1} passages/s) |",
            done as f64 / embedded_secs
        );
    });
}
