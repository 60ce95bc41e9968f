//! End-to-end ingest throughput against raw fastembed on the same passages.
//!
//! Raw: the passages of a book (same parser and chunker), sorted by length,
//! embedded in batches of 32 straight through `FastEmbedder`. End to end: the
//! daemon re-ingests the same file (`Reindex`: read, hash, parse, chunk,
//! embed, store, index) until its `ready` event. The ratio of throughputs is
//! what the pipeline keeps of the model's speed.
//!
//! `cargo bench -p mindory-benches --bench ingest`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mindory_benches::{corpus, models_dir, passages, BenchDaemon};
use mindory_daemon::embed::{Embedder, FastEmbedder, TokenCounter};
use mindory_proto::pb::{self, events_client::EventsClient, library_client::LibraryClient};
use tokio_stream::StreamExt;

fn bench_ingest(c: &mut Criterion) {
    let book = corpus(&std::env::var("MINDORY_BENCH_BOOK").unwrap_or_else(|_| "txt/alice29.txt".into()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut raw = FastEmbedder::load(&models_dir(), threads).expect("models present (run `mindory models fetch`)");
    let counter = TokenCounter::new(raw.tokenizer().expect("a loaded session"));
    let texts = passages(std::slice::from_ref(&book), &counter);
    let n = texts.len();

    let mut raw_times = Vec::new();
    c.bench_function(&format!("raw_fastembed_{n}_passages"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                for batch in texts.chunks(32) {
                    let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                    raw.embed(&refs).unwrap();
                }
                let e = t.elapsed();
                raw_times.push(e);
                total += e;
            }
            total
        })
    });
    drop(raw);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join(book.file_name().unwrap());
    std::fs::copy(&book, &copy).unwrap();
    let (daemon, _) = runtime.block_on(BenchDaemon::start(tmp.path()));
    let channel = runtime.block_on(mindory_proto::connect(&daemon.socket)).unwrap();
    let mut e2e_times = Vec::new();
    let mut first = true;
    c.bench_function(&format!("daemon_ingest_{n}_passages"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let e = runtime.block_on(async {
                    let mut events = EventsClient::new(channel.clone())
                        .subscribe(pb::SubscribeRequest {})
                        .await
                        .unwrap()
                        .into_inner();
                    let mut library = LibraryClient::new(channel.clone());
                    let t = Instant::now();
                    if first {
                        library
                            .add_paths(pb::AddPathsRequest {
                                paths: vec![copy.to_string_lossy().into_owned()],
                            })
                            .await
                            .unwrap();
                    } else {
                        library.reindex(pb::ReindexRequest { book_ids: vec![] }).await.unwrap();
                    }
                    while let Some(ev) = events.next().await {
                        match ev.unwrap().kind {
                            Some(pb::event::Kind::Ready(_)) => break,
                            Some(pb::event::Kind::Failed(f)) => panic!("{}", f.reason),
                            _ => {}
                        }
                    }
                    t.elapsed()
                });
                first = false;
                e2e_times.push(e);
                total += e;
            }
            total
        })
    });
    runtime.block_on(daemon.stop());

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (raw_m, e2e_m) = (median(&mut raw_times), median(&mut e2e_times));
    let (raw_tp, e2e_tp) = (n as f64 / raw_m.as_secs_f64(), n as f64 / e2e_m.as_secs_f64());
    println!("\n| book | passages | raw fastembed | end-to-end ingest | ratio |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| {} | {n} | {raw_tp:.1} passages/s | {e2e_tp:.1} passages/s | {:.3} |",
        book.file_name().unwrap().to_string_lossy(),
        e2e_tp / raw_tp
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(30));
    targets = bench_ingest
}
criterion_main!(benches);
