//! The vector index's two backends side by side at 100k passages: the time
//! to rebuild the index from stored vectors, search latency (p50/p99, k = 10)
//! without and with a book filter, and recall@10 against exact search.
//! Vectors are synthetic (random unit vectors, 384 dimensions, like the
//! search bench's library): random vectors are a hard case for HNSW, so the
//! recall is a floor. The searches call the index directly (no gRPC, no
//! query embedding): what differs between the backends is measured alone.
//! PostgreSQL comes from `scripts/pg-test-server` (a throwaway cluster on a
//! Unix socket, fsync off), on the same machine.
//!
//! `nice -n 19 cargo bench -p mindory-benches --bench pgvector`
//! (`MINDORY_BENCH_N` changes the library size.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mindory_benches::percentile;
use mindory_daemon::index::pgvector::PgLibrary;
use mindory_daemon::index::{PgVectorIndex, UsearchIndex, VectorIndex};

const DIMENSIONS: usize = 384;
const QUERIES: usize = 300;
const RECALL_QUERIES: usize = 50;
const K: usize = 10;
const PER_BOOK: u64 = 100;

fn unit_vector(rng: &mut fastrand::Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIMENSIONS).map(|_| rng.f32() - 0.5).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// The exact `K` nearest keys of `query`.
fn exact(vectors: &[(u64, Vec<f32>)], query: &[f32]) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = vectors
        .iter()
        .map(|(key, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), *key))
        .collect();
    scored.select_nth_unstable_by(K, |a, b| b.0.total_cmp(&a.0));
    scored[..K].iter().map(|(_, key)| *key).collect()
}

struct Row {
    backend: &'static str,
    rebuild: Duration,
    plain: Vec<Duration>,
    filtered: Vec<Duration>,
    filtered_full: f64,
    recall: f64,
}

fn measure(backend: &'static str, index: &dyn VectorIndex, vectors: &[(u64, Vec<f32>)], queries: &[Vec<f32>], truth: &[Vec<u64>]) -> Row {
    let t0 = Instant::now();
    index.replace_all(vectors).unwrap();
    let rebuild = t0.elapsed();
    eprintln!("{backend}: rebuilt {} vectors in {rebuild:.1?}", vectors.len());
    let books = vectors.len() as u64 / PER_BOOK;
    let mut plain = Vec::new();
    let mut filtered = Vec::new();
    let mut full = 0usize;
    for (i, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let hits = index.search(q, K, None).unwrap();
        plain.push(t.elapsed());
        assert_eq!(hits.len(), K);
        // Two books of the library: 200 of 100k passages pass the filter.
        let chosen = [(i as u64 * 7) % books, (i as u64 * 13 + 1) % books];
        let t = Instant::now();
        let hits = index.search(q, K, Some(&chosen)).unwrap();
        filtered.push(t.elapsed());
        full += usize::from(hits.len() == K);
        assert!(hits.iter().all(|(key, _)| chosen.contains(&(key >> 24))));
    }
    let mut found = 0usize;
    for (q, t) in queries.iter().zip(truth) {
        found += index.search(q, K, None).unwrap().iter().filter(|(key, _)| t.contains(key)).count();
    }
    plain.sort();
    filtered.sort();
    Row {
        backend,
        rebuild,
        plain,
        filtered,
        filtered_full: full as f64 / queries.len() as f64,
        recall: found as f64 / (truth.len() * K) as f64,
    }
}

fn main() {
    // `cargo bench` passes --bench; there is nothing to filter.
    let n: u64 = std::env::var("MINDORY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut rng = fastrand::Rng::with_seed(42);
    let vectors: Vec<(u64, Vec<f32>)> = (0..n)
        .map(|i| ((i / PER_BOOK) << 24 | (i % PER_BOOK), unit_vector(&mut rng)))
        .collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| unit_vector(&mut rng)).collect();
    let t0 = Instant::now();
    let truth: Vec<Vec<u64>> = queries[..RECALL_QUERIES].iter().map(|q| exact(&vectors, q)).collect();
    eprintln!("exact neighbours of {RECALL_QUERIES} queries in {:.1?}", t0.elapsed());

    let usearch = UsearchIndex::new(DIMENSIONS).unwrap();
    let mut rows = vec![measure("usearch (f16)", &usearch, &vectors, &queries, &truth)];
    drop(usearch);

    let dir = tempfile::Builder::new().prefix("mpgb").tempdir_in("/tmp").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-server");
    let out = std::process::Command::new(&script).arg("start").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    {
        let library = Arc::new(PgLibrary::connect(&url, "bench").unwrap());
        let index = PgVectorIndex::create(&library, "bench-model", DIMENSIONS).unwrap();
        rows.push(measure("pgvector (f32)", &index, &vectors, &queries, &truth));
    }
    let _ = std::process::Command::new(&script).arg("stop").arg(dir.path()).status();

    println!();
    println!("{n} passages, {DIMENSIONS} dimensions, k = {K}, {QUERIES} queries (recall on {RECALL_QUERIES})");
    println!("| backend | rebuild | search p50 | search p99 | 2-book filter p50 | p99 | filtered searches with k hits | recall@10 |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} s | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} % | {:.3} |",
            r.backend,
            r.rebuild.as_secs_f64(),
            percentile(&r.plain, 50.0).as_secs_f64() * 1e3,
            percentile(&r.plain, 99.0).as_secs_f64() * 1e3,
            percentile(&r.filtered, 50.0).as_secs_f64() * 1e3,
            percentile(&r.filtered, 99.0).as_secs_f64() * 1e3,
            r.filtered_full * 100.0,
            r.recall
        );
    }
}
