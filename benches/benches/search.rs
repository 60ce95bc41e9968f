//! Search latency over gRPC, query embedding included, at 10k and 100k
//! stored passages (synthetic vectors for size; the query is real), plus
//! cold start to serving and resident memory with the model loaded.
//!
//! `cargo bench -p mindory-benches --bench search`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mindory_benches::{percentile, rss_mib, BenchDaemon};
use mindory_proto::pb::{self, search_client::SearchClient};

const QUERIES: &[&str] = &[
    "a proposal of marriage that is refused",
    "the weather at sea during a storm",
    "how taxes are collected by the government",
    "a letter explaining past conduct",
    "children playing in the garden",
];

fn bench_search(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut table = Vec::new();
    for &(books, per_book) in &[(100u64, 100u32), (1000, 100)] {
        let n = books * per_book as u64;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("data")).unwrap();
        let t0 = Instant::now();
        mindory_daemon::store::seed_synthetic_library(
            &tmp.path().join("data/mindory.redb"),
            mindory_proto::models::EMBEDDING_MODEL_ID,
            books,
            per_book,
            384,
            42,
        )
        .unwrap();
        eprintln!("seeded {n} passages in {:?}", t0.elapsed());
        // First start rebuilds the index from stored vectors; the second
        // loads the saved index: that one is the cold start we report.
        let (daemon, rebuild_start) = runtime.block_on(BenchDaemon::start(tmp.path()));
        runtime.block_on(daemon.stop());
        let (daemon, cold_start) = runtime.block_on(BenchDaemon::start(tmp.path()));
        let mut client = runtime.block_on(async { SearchClient::new(mindory_proto::connect(&daemon.socket).await.unwrap()) });
        let mut i = 0usize;
        c.bench_function(&format!("search_grpc_{n}"), |b| {
            b.iter(|| {
                i += 1;
                let q = QUERIES[i % QUERIES.len()];
                runtime
                    .block_on(client.search(pb::SearchRequest {
                        query: q.into(),
                        k: 10,
                        book_ids: vec![],
                        ..Default::default()
                    }))
                    .unwrap()
            })
        });
        let mut samples: Vec<Duration> = (0..400)
            .map(|j| {
                let q = format!("{} {}", QUERIES[j % QUERIES.len()], j);
                let t = Instant::now();
                runtime
                    .block_on(client.search(pb::SearchRequest {
                        query: q,
                        k: 10,
                        book_ids: vec![],
                        ..Default::default()
                    }))
                    .unwrap();
                t.elapsed()
            })
            .collect();
        samples.sort();
        table.push((
            n,
            percentile(&samples, 50.0),
            percentile(&samples, 99.0),
            rebuild_start,
            cold_start,
            rss_mib(),
        ));
        runtime.block_on(daemon.stop());
    }
    println!("\n| passages | search p50 | search p99 | start with index rebuild | cold start (saved index) | process RSS after |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, p50, p99, rebuild, cold, rss) in table {
        println!(
            "| {n} | {:.2} ms | {:.2} ms | {:.2} s | {:.2} s | {rss:.0} MiB |",
            ms(p50),
            ms(p99),
            rebuild.as_secs_f64(),
            cold.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench_search
}
criterion_main!(benches);
