//! Embedding throughput per model: all-MiniLM-L6-v2 (ONNX), potion-base-8M
//! (static) and use-multilingual (ONNX with string input), on the same real
//! passages.
//!
//! `MINDORY_BENCH_MODELS=all-MiniLM-L6-v2,use-multilingual` picks models by
//! short name (default: every catalogued model).
//!
//! The passages are what the daemon would embed (same parser, same chunker,
//! MiniLM's token counter) from Austen novels and Alice, 2,000 of them
//! picked evenly from the length-sorted list so the sample keeps the
//! corpus's mix of lengths (`MINDORY_BENCH_PASSAGES=N` changes the number).
//! Each model embeds them once in batches of 32, longest first, on the
//! ingest engine (all cores), like an ingest job: that pass gives the
//! passages/s of the table. Criterion then times one batch of 32 typical
//! passages on the ingest engine and one short query on the query engine
//! (one thread), for each model.
//!
//! The table also gives the process's resident memory after each model's
//! pass, after the ingest engine released its memory as an idle daemon's
//! does, and its peak (run one model per invocation for a clean peak), and
//! how long the first batch after the release takes (it loads the session
//! again).
//!
//! `cargo bench -p mindory-benches --bench embed_models`

use std::time::{Duration, Instant};

use criterion::Criterion;
use mindory_benches::{corpus, models_dir, passages, proc_status_mib};
use mindory_daemon::embed::{load_engine, return_freed_memory, TokenCounter};
use mindory_proto::models::{embedding_model, EmbeddingModel, EMBEDDING_MODELS};

const BOOKS: &[&str] = &[
    "txt/prideprejudice.txt",
    "txt/persuasion.txt",
    "txt/emma.txt",
    "txt/alice29.txt",
    "txt/northangerabbey.txt",
    "txt/sensesensibility.txt",
];

fn main() {
    let wanted: usize = std::env::var("MINDORY_BENCH_PASSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = models_dir();
    let counter = TokenCounter::minilm(&dir).expect("models present (run `mindory models fetch`)");
    let mut all = Vec::new();
    for book in BOOKS {
        all.extend(passages(&[corpus(book)], &counter));
        if all.len() >= wanted * 2 {
            break;
        }
    }
    assert!(all.len() >= wanted, "the books give only {} passages", all.len());
    // Evenly spaced over the length-sorted list, longest first.
    all.sort_by_cached_key(|p| std::cmp::Reverse(counter.count(p)));
    let texts: Vec<String> = (0..wanted).map(|i| all[i * all.len() / wanted].clone()).collect();
    let tokens: usize = texts.iter().map(|t| counter.count(t)).sum();
    eprintln!(
        "{} passages, {:.0} MiniLM tokens on average",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // A batch from the middle of the length distribution, and a query.
    let middle = texts.len() / 2;
    let batch: Vec<&str> = texts[middle..(middle + 32).min(texts.len())].iter().map(String::as_str).collect();
    let query = "why did Elizabeth refuse Mr Darcy's first proposal";

    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let models: Vec<&EmbeddingModel> = match std::env::var("MINDORY_BENCH_MODELS") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|name| embedding_model(name).unwrap_or_else(|e| panic!("MINDORY_BENCH_MODELS: {e}")))
            .collect(),
        _ => EMBEDDING_MODELS.iter().collect(),
    };
    let mut rows = Vec::new();
    for model in models {
        let t = Instant::now();
        let mut ingest = load_engine(model.name, &dir, threads).expect("model loads");
        let mut queries = load_engine(model.name, &dir, 1).expect("model loads");
        let load = t.elapsed();

        let t = Instant::now();
        for chunk in texts.chunks(32) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            ingest.embed(&refs).expect("embeds");
        }
        let pass = t.elapsed();
        // What the engines keep after an ingest-like pass (ONNX Runtime's
        // arena holds on to its largest batch's tensors), and the process's
        // peak so far (cumulative when several models run in one process).
        let kept = proc_status_mib("/proc/self/status", "VmRSS:");
        let peak = proc_status_mib("/proc/self/status", "VmHWM:");
        ingest.release();
        return_freed_memory();
        let released = proc_status_mib("/proc/self/status", "VmRSS:");
        let t = Instant::now();
        ingest.embed(&batch).expect("embeds after a release");
        let after_release = t.elapsed();

        let mut batch_times = Vec::new();
        criterion.bench_function(&format!("{}_batch_of_32", model.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    ingest.embed(&batch).expect("embeds");
                    let e = t.elapsed();
                    batch_times.push(e);
                    total += e;
                }
                total
            })
        });
        let mut query_times = Vec::new();
        criterion.bench_function(&format!("{}_one_query", model.name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    queries.embed(&[query]).expect("embeds");
                    let e = t.elapsed();
                    query_times.push(e);
                    total += e;
                }
                total
            })
        });
        rows.push((
            model.name,
            load,
            pass,
            median(batch_times),
            median(query_times),
            kept,
            released,
            after_release,
            peak,
        ));
    }
    criterion.final_summary();

    println!(
        "\n| model | load | {wanted} passages | passages/s | batch of 32 (median) | one query (median) | RSS after the pass | RSS after a release | first batch after it | peak RSS (process) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, load, pass, batch, query, kept, released, after_release, peak) in &rows {
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.1} | {:.2} ms | {:.3} ms | {kept:.0} MiB | {released:.0} MiB | {:.2} ms | {peak:.0} MiB |",
            load.as_secs_f64(),
            pass.as_secs_f64(),
            wanted as f64 / pass.as_secs_f64(),
            batch.as_secs_f64() * 1e3,
            query.as_secs_f64() * 1e3,
            after_release.as_secs_f64() * 1e3
        );
    }
    println!("\n{threads} threads for the passages, one for the query.");
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
