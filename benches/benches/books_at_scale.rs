//! A library of 10,000 books: what the per-folder and per-listing paths cost
//! when the store is large (issue 15). The store is seeded with 10,000
//! synthetic books (one passage each, random vectors); a folder of 50 small
//! real files is added beside them and ingested. Then, each repeated 20
//! times, median reported:
//! 1. the rescan of that folder with every file unchanged (`AddFolder` on a
//!    known folder is a full reconciliation of it; its `took_ms` and the
//!    RPC's wall time);
//! 2. `ListBooks` of every book (page size 0), and of its first page of 500.
//!
//! `cargo bench -p mindory-benches --bench books_at_scale`

use std::time::{Duration, Instant};

use mindory_benches::{percentile, BenchDaemon};
use mindory_proto::pb::{self, events_client::EventsClient, library_client::LibraryClient};
use tokio_stream::StreamExt;

/// Books seeded into the store.
const BOOKS: u64 = 10_000;
/// Real files in the library folder.
const FILES: usize = 50;
/// Samples per measure.
const RUNS: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    let t = Instant::now();
    mindory_daemon::store::seed_synthetic_library(
        &tmp.path().join("data/mindory.redb"),
        mindory_proto::models::EMBEDDING_MODEL_ID,
        BOOKS,
        1,
        384,
        42,
        &[],
    )
    .unwrap();
    eprintln!("seeded {BOOKS} books in {:?}", t.elapsed());
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for i in 0..FILES {
        std::fs::write(
            lib.join(format!("note-{i:03}.txt")),
            format!("Note {i}. The keeper of lighthouse {i} logs the passing ships at dusk.\n"),
        )
        .unwrap();
    }

    runtime.block_on(async {
        let (daemon, _) = BenchDaemon::start(tmp.path()).await;
        let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
        let mut library = LibraryClient::new(channel.clone());
        let mut events = EventsClient::new(channel.clone())
            .subscribe(pb::SubscribeRequest {})
            .await
            .unwrap()
            .into_inner();
        let add = pb::AddFolderRequest {
            path: lib.to_string_lossy().into_owned(),
        };
        let scan = library.add_folder(add.clone()).await.unwrap().into_inner().scan.unwrap();
        let mut pending: std::collections::HashSet<u64> = scan.queued_ids.iter().copied().collect();
        while !pending.is_empty() {
            match events.next().await.unwrap().unwrap().kind {
                Some(pb::event::Kind::Ready(r)) => {
                    pending.remove(&r.book_id);
                }
                Some(pb::event::Kind::Failed(f)) => panic!("{}: {}", f.path, f.reason),
                _ => {}
            }
        }

        // 1. Rescans of the unchanged folder.
        let (mut walls, mut scans) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let t = Instant::now();
            let report = library.add_folder(add.clone()).await.unwrap().into_inner().scan.unwrap();
            walls.push(t.elapsed());
            assert_eq!((report.files, report.unchanged), (FILES as u64, FILES as u64));
            scans.push(Duration::from_millis(report.took_ms));
        }
        walls.sort();
        scans.sort();

        // 2. Listings.
        let list = |page_size: u32| {
            let mut library = library.clone();
            async move {
                let mut times = Vec::new();
                let mut count = 0;
                for _ in 0..RUNS {
                    let t = Instant::now();
                    let page = library
                        .list_books(pb::ListBooksRequest {
                            page_size,
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    times.push(t.elapsed());
                    count = page.books.len();
                }
                times.sort();
                (percentile(&times, 50.0), count)
            }
        };
        let (all, all_count) = list(0).await;
        let (first, first_count) = list(500).await;
        daemon.stop().await;

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "\n| measure ({} books in the store, median of {RUNS}) | result |",
            BOOKS + FILES as u64
        );
        println!("|---|---:|");
        println!(
            "| rescan of a folder of {FILES} unchanged files: RPC / scan | {:.1} ms / {:.0} ms |",
            ms(percentile(&walls, 50.0)),
            ms(percentile(&scans, 50.0))
        );
        println!("| ListBooks, every book ({all_count}) | {:.1} ms |", ms(all));
        println!("| ListBooks, first page ({first_count} books) | {:.1} ms |", ms(first));
    });
}
