//! Embedding model hot swap on a 4,000-passage library: search latency
//! before and during the swap, errors during it, and how long it takes.
//!
//! The library (State of the Union speeches, about 4,000 passages) is
//! ingested with potion-base-8M, then switched to all-MiniLM-L6-v2 with
//! `UseModel`, then back. Before each swap, a client measures normal search
//! latency; while the swap runs, it searches in two alternating shapes:
//! back to back (a saturating script) and paced at 20 searches/s (people and
//! frontends). Every search must succeed. Printed: one table row per swap
//! and shape with p50/p99 normal and during, the ratio of the p99s, errors,
//! and the swap's duration.
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench swap`
//!
//! `MINDORY_SWAP_BENCH_SECS=N` measures only the first N seconds of the first
//! swap, then cancels it (with `UseModel` of the active model) and stops:
//! a quick look at latency while trying a change; the full run is the figure.

use std::time::{Duration, Instant};

use mindory_benches::{corpus, percentile, BenchDaemon};
use mindory_proto::pb::{self, daemon_client::DaemonClient, library_client::LibraryClient, search_client::SearchClient};

const QUERIES: &[&str] = &[
    "taxes on imported goods",
    "the army and the navy",
    "treaties with foreign nations",
    "the public debt and its payment",
    "education of the people",
    "railroads across the continent",
    "Indian tribes on the frontier",
    "the banking system and currency",
];

/// How a client searches: back to back (one search in flight at all
/// times, the worst case for two cores), or paced like a person or a few
/// frontends (one search every [`PACE`]).
#[derive(Clone, Copy)]
enum Shape {
    BackToBack,
    Paced,
}

const SHAPES: [Shape; 2] = [Shape::BackToBack, Shape::Paced];
/// Interval between paced searches.
const PACE: Duration = Duration::from_millis(50);
/// How long each shape runs to measure normal latency.
const NORMAL_FOR: Duration = Duration::from_secs(15);
/// How long each shape runs before the other takes over during the swap.
const SLICE: Duration = Duration::from_secs(5);

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::BackToBack => "back to back",
            Shape::Paced => "paced, 20/s",
        }
    }

    async fn pause(self) {
        if let Shape::Paced = self {
            tokio::time::sleep(PACE).await;
        }
    }
}

async fn search(client: &mut SearchClient<tonic::transport::Channel>, i: usize) -> Result<Duration, tonic::Status> {
    let t = Instant::now();
    client
        .search(pb::SearchRequest {
            query: format!("{} {}", QUERIES[i % QUERIES.len()], i),
            k: 10,
            ..Default::default()
        })
        .await?;
    Ok(t.elapsed())
}

/// Waits until every stored passage is searchable both ways: the ingest
/// queue empties when books are keyword-searchable, while their embedding
/// may still be running, and that work would land in the "normal" figures.
async fn wait_settled(client: &mut DaemonClient<tonic::transport::Channel>) {
    loop {
        let s = client.status(pb::StatusRequest {}).await.unwrap().into_inner();
        let idle = s.queue_pending == 0 && s.queue_running == 0 && s.swap.is_none();
        if idle && s.vectors_indexed >= s.chunks && s.keyword_indexed >= s.chunks {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    let cut_after = std::env::var("MINDORY_SWAP_BENCH_SECS")
        .ok()
        .map(|v| Duration::from_secs(v.parse().expect("MINDORY_SWAP_BENCH_SECS is a number of seconds")));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(corpus("sotu")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    runtime.block_on(async {
        let (daemon, _) = BenchDaemon::start_with(tmp.path(), |c| c.embedding_model = "potion-base-8M".into()).await;
        let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
        let mut daemon_client = DaemonClient::new(channel.clone());
        // About 4,000 passages: speeches in order until the library has them.
        let mut added = 0;
        for chunk in files.chunks(10) {
            LibraryClient::new(channel.clone())
                .add_paths(pb::AddPathsRequest {
                    paths: chunk.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
                })
                .await
                .unwrap();
            added += chunk.len();
            loop {
                let s = daemon_client.status(pb::StatusRequest {}).await.unwrap().into_inner();
                if s.queue_pending == 0 && s.queue_running == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if daemon_client.status(pb::StatusRequest {}).await.unwrap().into_inner().chunks >= 4000 {
                break;
            }
        }
        let passages = daemon_client.status(pb::StatusRequest {}).await.unwrap().into_inner().chunks;
        println!("\nlibrary: {added} speeches, {passages} passages\n");
        println!("| swap | load | searches | p50 / p99 normal | p50 / p99 during | p99 ratio | errors | swap duration |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        let mut failures = Vec::new();
        // There, and back: the slow model's swap runs long, the fast one's
        // is short but is measured against the slower model's searches.
        for (from, to) in [("potion-base-8M", "all-MiniLM-L6-v2"), ("all-MiniLM-L6-v2", "potion-base-8M")] {
            wait_settled(&mut daemon_client).await;
            let mut client = SearchClient::new(channel.clone());
            let mut normal = [Vec::new(), Vec::new()];
            for (shape, samples) in SHAPES.iter().zip(&mut normal) {
                let until = Instant::now() + NORMAL_FOR;
                let mut i = 0;
                while Instant::now() < until {
                    samples.push(search(&mut client, i).await.unwrap());
                    i += 1;
                    shape.pause().await;
                }
            }

            let t = Instant::now();
            daemon_client.use_model(pb::UseModelRequest { name: to.into() }).await.unwrap();
            let mut during = [Vec::new(), Vec::new()];
            let mut errors = Vec::new();
            let mut i = 0;
            let mut cut = false;
            // Alternate the two load shapes in slices until the swap is done,
            // so both see the same stretch of the swap.
            'swap: loop {
                for (shape, samples) in SHAPES.iter().zip(&mut during) {
                    let until = Instant::now() + SLICE;
                    while Instant::now() < until {
                        i += 1;
                        match search(&mut client, i).await {
                            Ok(d) => samples.push(d),
                            Err(e) => errors.push(e.to_string()),
                        }
                        if i % 10 == 0 {
                            if cut_after.is_some_and(|c| t.elapsed() >= c) {
                                daemon_client.use_model(pb::UseModelRequest { name: from.into() }).await.unwrap();
                                cut = true;
                                break 'swap;
                            }
                            let s = daemon_client.status(pb::StatusRequest {}).await.unwrap().into_inner();
                            if s.swap.is_none() && s.embedding_model.contains(to) {
                                break 'swap;
                            }
                        }
                        shape.pause().await;
                    }
                }
            }
            let took = t.elapsed();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            for ((shape, mut normal), mut during) in SHAPES.iter().zip(std::mem::take(&mut normal)).zip(during) {
                normal.sort();
                during.sort();
                if during.is_empty() {
                    continue;
                }
                let ratio = ms(percentile(&during, 99.0)) / ms(percentile(&normal, 99.0));
                let duration = if cut {
                    format!("cut after {:.0} s", took.as_secs_f64())
                } else {
                    format!(
                        "{:.0} s ({:.1} passages/s)",
                        took.as_secs_f64(),
                        passages as f64 / took.as_secs_f64()
                    )
                };
                println!(
                    "| {from} → {to} | {} | {} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {ratio:.2} | {} | {duration} |",
                    shape.label(),
                    during.len(),
                    ms(percentile(&normal, 50.0)),
                    ms(percentile(&normal, 99.0)),
                    ms(percentile(&during, 50.0)),
                    ms(percentile(&during, 99.0)),
                    errors.len(),
                );
            }
            failures.extend(errors);
            if cut {
                break;
            }
        }
        daemon.stop().await;
        assert!(failures.is_empty(), "{failures:?}");
    });
}
