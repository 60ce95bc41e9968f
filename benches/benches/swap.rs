//! Embedding model hot swap on a 4,000-passage library: search latency
//! before and during the swap, errors during it, and how long it takes.
//!
//! The library (State of the Union speeches, about 4,000 passages) is
//! ingested with potion-base-8M, then switched to all-MiniLM-L6-v2 with
//! `UseModel`. While the swap runs, a client searches without pause; every
//! search must succeed. Printed: p50/p99 before and during, the ratio of the
//! p99s, errors, and the swap's duration.
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench swap`

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

fn main() {
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

        let mut client = SearchClient::new(channel.clone());
        let mut before = Vec::new();
        for i in 0..300 {
            before.push(search(&mut client, i).await.unwrap());
        }
        before.sort();

        let t = Instant::now();
        daemon_client
            .use_model(pb::UseModelRequest {
                name: "all-MiniLM-L6-v2".into(),
            })
            .await
            .unwrap();
        let mut during = Vec::new();
        let mut errors = Vec::new();
        let mut i = 0;
        loop {
            i += 1;
            match search(&mut client, i).await {
                Ok(d) => during.push(d),
                Err(e) => errors.push(e.to_string()),
            }
            if i % 20 == 0 {
                let s = daemon_client.status(pb::StatusRequest {}).await.unwrap().into_inner();
                if s.swap.is_none() && s.embedding_model.contains("MiniLM") {
                    break;
                }
            }
        }
        let took = t.elapsed();
        during.sort();
        daemon.stop().await;

        println!("\n| hot swap potion-base-8M → all-MiniLM-L6-v2 | result |");
        println!("|---|---:|");
        println!("| library | {added} speeches, {passages} passages |");
        println!(
            "| swap duration | {:.0} s ({:.1} passages/s) |",
            took.as_secs_f64(),
            passages as f64 / took.as_secs_f64()
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| search p50 / p99 before (potion) | {:.2} / {:.2} ms |",
            ms(percentile(&before, 50.0)),
            ms(percentile(&before, 99.0))
        );
        println!(
            "| search p50 / p99 during the swap ({} searches) | {:.2} / {:.2} ms |",
            during.len(),
            ms(percentile(&during, 50.0)),
            ms(percentile(&during, 99.0))
        );
        println!(
            "| p99 during / before | {:.2} |",
            ms(percentile(&during, 99.0)) / ms(percentile(&before, 99.0))
        );
        println!("| search errors during the swap | {} |", errors.len());
        assert!(errors.is_empty(), "{errors:?}");
    });
}
