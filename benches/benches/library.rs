//! Library folders at scale: the 233 State of the Union speeches.
//!
//! 1. Raw fastembed on the passages the daemon will embed (same parser and
//!    chunker, batches of 32, longest first): the model's own throughput.
//! 2. `AddFolder` on the speeches until every book is ready: end-to-end
//!    throughput (walk, hash, parse in the sandbox, chunk, embed, store,
//!    index), and its ratio to 1.
//! 3. Restart: the start-up reconciliation of 233 unchanged files (its scan
//!    time, and embeddings computed: must be 0).
//! 4. Drop-to-searchable latency for a small new file, 10 drops.
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench library`

use std::time::{Duration, Instant};

use mindory_benches::{corpus, models_dir, passages, percentile, BenchDaemon};
use mindory_daemon::embed::{Embedder, FastEmbedder, TokenCounter};
use mindory_proto::pb::{
    self, daemon_client::DaemonClient, events_client::EventsClient, library_client::LibraryClient, search_client::SearchClient,
};
use tokio_stream::StreamExt;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("sotu");
    std::fs::create_dir_all(&lib).unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(corpus("sotu")).unwrap() {
        let src = entry.unwrap().path();
        let dest = lib.join(src.file_name().unwrap());
        std::fs::copy(&src, &dest).unwrap();
        files.push(dest);
    }
    files.sort();

    // 1. Raw model throughput on the same passages.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut raw = FastEmbedder::load(&models_dir(), threads).expect("models present (run `mindory models fetch`)");
    let counter = TokenCounter::new(raw.tokenizer().expect("a loaded session"));
    let texts = passages(&files, &counter);
    let t = Instant::now();
    for batch in texts.chunks(32) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        raw.embed(&refs).unwrap();
    }
    let raw_secs = t.elapsed().as_secs_f64();
    drop(raw);
    let n = texts.len();

    runtime.block_on(async {
        // 2. End to end through a library folder.
        let (daemon, _) = BenchDaemon::start(tmp.path()).await;
        let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
        let mut events = EventsClient::new(channel.clone())
            .subscribe(pb::SubscribeRequest {})
            .await
            .unwrap()
            .into_inner();
        let t = Instant::now();
        let scan = LibraryClient::new(channel.clone())
            .add_folder(pb::AddFolderRequest {
                path: lib.to_string_lossy().into_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .scan
            .unwrap();
        let mut pending: std::collections::HashSet<u64> = scan.queued_ids.iter().copied().collect();
        let mut passages_stored = 0u64;
        while !pending.is_empty() {
            match events.next().await.unwrap().unwrap().kind {
                Some(pb::event::Kind::Ready(r)) if pending.remove(&r.book_id) => passages_stored += r.chunks,
                Some(pb::event::Kind::Failed(f)) => panic!("{}: {}", f.path, f.reason),
                _ => {}
            }
        }
        let e2e_secs = t.elapsed().as_secs_f64();
        daemon.stop().await;

        // 3. Restart: the start-up reconciliation of unchanged files.
        let t = Instant::now();
        let (daemon, serving) = BenchDaemon::start(tmp.path()).await;
        let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
        let report = loop {
            let folders = LibraryClient::new(channel.clone())
                .list_folders(pb::ListFoldersRequest {})
                .await
                .unwrap()
                .into_inner()
                .folders;
            if let Some(r) = folders.first().and_then(|f| f.last_scan.clone()) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let reconciled = t.elapsed();
        let status = DaemonClient::new(channel.clone())
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();

        // 4. Drop-to-searchable latency for a small file.
        let mut latencies = Vec::new();
        for i in 0..10 {
            let word = [
                "amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "heron", "indigo", "juniper",
            ][i];
            let path = lib.join(format!("drop-{i}.md"));
            let t = Instant::now();
            std::fs::write(
                &path,
                format!("# Note {i}\n\nThe {word} lighthouse keeper logs the passing ships at dusk, number {i}.\n"),
            )
            .unwrap();
            let want = path.to_string_lossy().into_owned();
            loop {
                let hits = SearchClient::new(channel.clone())
                    .search(pb::SearchRequest {
                        query: format!("{word} lighthouse keeper logging ships"),
                        k: 1,
                        book_ids: vec![],
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .hits;
                if hits.first().is_some_and(|h| h.path == want) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies.push(t.elapsed());
        }
        latencies.sort();
        daemon.stop().await;

        println!("\n| measure | result |");
        println!("|---|---:|");
        println!("| SOTU files / passages | 233 / {n} (stored {passages_stored}) |");
        println!(
            "| raw fastembed, same passages | {:.1} passages/s ({raw_secs:.0} s) |",
            n as f64 / raw_secs
        );
        println!(
            "| end-to-end folder ingest | {:.1} passages/s ({e2e_secs:.0} s) |",
            n as f64 / e2e_secs
        );
        println!("| ratio | {:.3} |", raw_secs / e2e_secs);
        println!(
            "| restart: serving / start-up reconcile done | {:.0} ms / {:.0} ms (scan {} ms: {} files, {} unchanged, {} queued) |",
            serving.as_secs_f64() * 1e3,
            reconciled.as_secs_f64() * 1e3,
            report.took_ms,
            report.files,
            report.unchanged,
            report.queued
        );
        println!("| embeddings computed by the restart | {} |", status.embedded_since_start);
        println!(
            "| drop-to-searchable, small file (10 drops) | p50 {:.0} ms, max {:.0} ms |",
            percentile(&latencies, 50.0).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3
        );
    });
}
