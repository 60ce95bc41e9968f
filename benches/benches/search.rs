//! Search latency over gRPC, query embedding included, at 10k and 100k
//! stored passages, in each mode (hybrid, vector, keyword), plus cold start
//! to serving and resident memory with the model loaded. Vectors are
//! synthetic (random, for size); passage texts are real prose (the State of
//! the Union speeches, cycled) so the keyword index has real posting lists;
//! queries are real text.
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
    let prose = sotu_passages();
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
            &prose,
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
        let mut by_mode = Vec::new();
        for mode in [pb::SearchMode::Hybrid, pb::SearchMode::Vector, pb::SearchMode::Keyword] {
            let mut samples: Vec<Duration> = (0..400)
                .map(|j| {
                    let q = format!("{} {}", QUERIES[j % QUERIES.len()], j);
                    let t = Instant::now();
                    runtime
                        .block_on(client.search(pb::SearchRequest {
                            query: q,
                            k: 10,
                            book_ids: vec![],
                            mode: mode as i32,
                            ..Default::default()
                        }))
                        .unwrap();
                    t.elapsed()
                })
                .collect();
            samples.sort();
            by_mode.push((percentile(&samples, 50.0), percentile(&samples, 99.0)));
        }
        table.push((n, by_mode, rebuild_start, cold_start, rss_mib()));
        runtime.block_on(daemon.stop());
    }
    println!(
        "\n| passages | hybrid p50 / p99 | vector p50 / p99 | keyword p50 / p99 | start with index rebuild | cold start (saved index) | process RSS after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (n, by_mode, rebuild, cold, rss) in table {
        let modes: Vec<String> = by_mode
            .iter()
            .map(|(p50, p99)| format!("{:.2} / {:.2} ms", ms(*p50), ms(*p99)))
            .collect();
        println!(
            "| {n} | {} | {:.2} s | {:.2} s | {rss:.0} MiB |",
            modes.join(" | "),
            rebuild.as_secs_f64(),
            cold.as_secs_f64()
        );
    }
}

/// Real prose for the synthetic passages: the State of the Union speeches'
/// paragraphs, gathered into passages of about 150 words.
fn sotu_passages() -> Vec<String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(mindory_benches::corpus("sotu"))
        .expect("the corpus (set MINDORY_CORPUS)")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    let mut current = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for paragraph in text.split("\n\n") {
            let paragraph = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
            if paragraph.is_empty() {
                continue;
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&paragraph);
            if current.split_whitespace().count() >= 150 {
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
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
