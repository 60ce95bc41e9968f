//! Scale (issue 15): how the vector index stores vectors, and a library of a
//! million passages served by the release daemon.
//!
//! 1. **A real-embedding subset.** Passages from a mix of corpus books
//!    (novels, reference manuals, speeches) are embedded with the default
//!    model, and a query is made from each of a sample of them (its first
//!    dozen words, embedded as a query). Cached in
//!    `target/scale-bench/real-N.json`, since embedding is the slow part.
//! 2. **Quantization.** An index of `MINDORY_SCALE_COMPARE` vectors (the
//!    real ones plus random unit vectors) is built once per scalar kind;
//!    printed: build time, the engine's memory, file size, search time, and
//!    recall@10 of the real queries against exact (brute-force) search;
//!    then the same vectors in PostgreSQL with pgvector (`MINDORY_SCALE_KINDS`
//!    picks rows).
//! 3. **A million passages.** `MINDORY_SCALE_PASSAGES` passages (default
//!    1,000,000) are written into a new store: the real passages, and
//!    synthetic books whose passages are real text (cycled, so the keyword
//!    index has real posting lists) with random vectors (for size). The
//!    release `mindoryd` then starts on it twice: the first start rebuilds
//!    both indexes, the second is the cold start users see. Printed: both
//!    start times, resident memory idle and after searching (anonymous and
//!    file-backed pages apart: the index is memory-mapped), search latency
//!    over gRPC per mode (query embedding included), recall@10 of the saved
//!    index against exact search over every stored vector, and disk sizes.
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench scale`
//! (`MINDORY_SCALE_STAGES=compare,million` picks stages; `MINDORY_SCALE_DIR`
//! keeps the library there, so a second run skips seeding and rebuilding;
//! `MINDORY_SCALE_MEMORY_LIMIT=MiB` serves it once more from a daemon held
//! to that much memory, page cache included, in a cgroup-v1 memory group,
//! which needs root.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mindory_benches::{corpus, models_dir, passages, percentile, proc_status_mib, DaemonProcess};
use mindory_daemon::index::{ScalarKind, UsearchIndex, VectorIndex};
use mindory_daemon::store::{random_unit_vector, seed_books, SeedBook, StoreReader};
use mindory_proto::models::EMBEDDING_MODEL_ID;
use mindory_proto::pb::{self, search_client::SearchClient};
use serde_json::json;

const DIMENSIONS: usize = 384;
/// Passages per synthetic book (a long novel has about 800).
const PER_BOOK: usize = 1000;
const K: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn cache_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scale-bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Embedded passages and queries made from them.
struct Real {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    queries: Vec<(String, Vec<f32>)>,
}

/// The real-embedding subset: `n` passages, `q` queries (cached).
fn real_subset(n: usize, q: usize) -> Real {
    let cache = cache_dir().join(format!("real-{n}-{q}.json"));
    if let Ok(bytes) = std::fs::read(&cache) {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let texts: Vec<String> = serde_json::from_value(v["texts"].clone()).unwrap();
        let vectors: Vec<Vec<f32>> = serde_json::from_value(v["vectors"].clone()).unwrap();
        let queries: Vec<(String, Vec<f32>)> = serde_json::from_value(v["queries"].clone()).unwrap();
        eprintln!(
            "real subset: {} passages, {} queries (cached in {})",
            texts.len(),
            queries.len(),
            cache.display()
        );
        return Real { texts, vectors, queries };
    }
    let counter = mindory_daemon::embed::TokenCounter::minilm(&models_dir()).expect("tokenizer");
    let mut files = vec![
        corpus("epub/pp.epub"),
        corpus("epub/policy.epub"),
        corpus("epub/developers-reference.epub"),
        corpus("epub/live-manual.en.epub"),
        corpus("pdf/R-intro.pdf"),
        corpus("pdf/debian-reference.en.pdf"),
    ];
    let mut speeches: Vec<PathBuf> = std::fs::read_dir(corpus("sotu")).unwrap().map(|e| e.unwrap().path()).collect();
    speeches.sort();
    files.extend(speeches.into_iter().step_by(4));
    let mut all = passages(&files, &counter);
    let mut rng = fastrand::Rng::with_seed(15);
    rng.shuffle(&mut all);
    all.truncate(n);
    let mut engine = mindory_daemon::embed::load_engine(EMBEDDING_MODEL_ID, &models_dir(), 2).expect("model");
    let t0 = Instant::now();
    let mut vectors = Vec::with_capacity(all.len());
    for (i, batch) in all.chunks(32).enumerate() {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        vectors.extend(engine.embed(&refs).expect("embeds"));
        if i % 20 == 0 {
            eprintln!("embedded {} of {} in {:.0?}", vectors.len(), all.len(), t0.elapsed());
        }
    }
    let picks: Vec<usize> = (0..q).map(|_| rng.usize(..all.len())).collect();
    let query_texts: Vec<String> = picks
        .iter()
        .map(|&i| all[i].split_whitespace().take(12).collect::<Vec<_>>().join(" "))
        .collect();
    let refs: Vec<&str> = query_texts.iter().map(String::as_str).collect();
    let query_vectors = engine.embed(&refs).expect("embeds");
    let queries: Vec<(String, Vec<f32>)> = query_texts.into_iter().zip(query_vectors).collect();
    std::fs::write(
        &cache,
        serde_json::to_vec(&json!({"texts": all, "vectors": vectors, "queries": queries})).unwrap(),
    )
    .unwrap();
    eprintln!("real subset: {} passages embedded in {:.0?}", all.len(), t0.elapsed());
    Real {
        texts: all,
        vectors,
        queries,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Exact top-`K` keys for each query over `(key, vector)`, on every core.
fn exact(queries: &[Vec<f32>], vectors: &[(u64, Vec<f32>)]) -> Vec<Vec<(u64, f32)>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = queries
            .chunks(share)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|q| {
                            let mut best: Vec<(f32, u64)> = Vec::with_capacity(K + 1);
                            for (key, v) in vectors {
                                let s = dot(q, v);
                                if best.len() < K || s > best[K - 1].0 {
                                    let at = best.partition_point(|(b, _)| *b >= s);
                                    best.insert(at, (s, *key));
                                    best.truncate(K);
                                }
                            }
                            best.into_iter().map(|(s, k)| (k, s)).collect()
                        })
                        .collect::<Vec<Vec<(u64, f32)>>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

/// Mean recall@K of `index` for `queries` against `truth` (each query's
/// exact top K with scores), and the search times. A returned key counts
/// when it is one of the exact top K, or when its exact similarity ties the
/// K-th (duplicate passages make several keys equally right); `vector`
/// gives a key's stored vector for that check.
fn recall<'a>(
    index: &dyn VectorIndex,
    queries: &[Vec<f32>],
    truth: &[Vec<(u64, f32)>],
    vector: impl Fn(u64) -> Option<&'a [f32]>,
) -> (f64, Vec<Duration>) {
    recall_of_wider(index, queries, truth, K, vector)
}

/// [`recall`] of the first `K` hits of searches for `k` (at least `K`):
/// how a larger candidate list (pgvector's `ef_search` follows `k`) ranks.
fn recall_of_wider<'a>(
    index: &dyn VectorIndex,
    queries: &[Vec<f32>],
    truth: &[Vec<(u64, f32)>],
    k: usize,
    vector: impl Fn(u64) -> Option<&'a [f32]>,
) -> (f64, Vec<Duration>) {
    let mut found = 0usize;
    let mut times = Vec::with_capacity(queries.len());
    for (q, t) in queries.iter().zip(truth) {
        let t0 = Instant::now();
        let hits = index.search(q, k, None).unwrap();
        times.push(t0.elapsed());
        let kth = t.last().map_or(f32::MIN, |(_, s)| *s);
        found += hits
            .iter()
            .take(K)
            .filter(|(key, _)| t.iter().any(|(k, _)| k == key) || vector(*key).is_some_and(|v| dot(q, v) >= kth - 1e-5))
            .count();
    }
    times.sort();
    (found as f64 / (queries.len() * K) as f64, times)
}

/// Adds every vector on every core (as the daemon's rebuild does).
fn build(index: &UsearchIndex, vectors: &[(u64, Vec<f32>)], threads: usize) {
    // Room for all first, with slack: the check each add makes is not
    // atomic with the add itself when several threads insert.
    index.ensure_capacity(vectors.len() + 4096).unwrap();
    let share = vectors.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in vectors.chunks(share) {
            scope.spawn(move || {
                for (key, v) in part {
                    if let Err(e) = index.add(*key, v) {
                        panic!("adding {key}: {e}");
                    }
                }
            });
        }
    });
}

fn compare(real: &Real, n: usize) {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut vectors: Vec<(u64, Vec<f32>)> = real.vectors.iter().cloned().enumerate().map(|(i, v)| (i as u64, v)).collect();
    while vectors.len() < n {
        vectors.push((vectors.len() as u64, random_unit_vector(&mut rng, DIMENSIONS)));
    }
    let queries: Vec<Vec<f32>> = real.queries.iter().map(|(_, v)| v.clone()).collect();
    let truth = exact(&queries, &vectors);
    println!(
        "\n## Quantization: {n} vectors ({} real), {} real queries, k = {K}\n",
        real.vectors.len(),
        queries.len()
    );
    println!("| scalar | build | engine memory | file | ef | search p50 | recall@{K} |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let tmp = tempfile::tempdir_in(cache_dir()).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `MINDORY_SCALE_KINDS` picks rows (`f32,f32-1,f16,e4m3,i8,pgvector`).
    let kinds = std::env::var("MINDORY_SCALE_KINDS").unwrap_or_else(|_| "f32,f32-1,f16,e4m3,i8,pgvector".into());
    let wanted = |name: &str| kinds.split(',').any(|k| k.trim() == name);
    for (name, kind, threads) in [
        ("f32", ScalarKind::F32, cores),
        ("f32, built on 1 thread", ScalarKind::F32, 1),
        ("f16", ScalarKind::F16, cores),
        ("e4m3", ScalarKind::E4M3, cores),
        ("i8", ScalarKind::I8, cores),
    ] {
        let short = if threads == 1 {
            "f32-1".to_string()
        } else {
            format!("{kind:?}").to_lowercase()
        };
        if !wanted(&short) {
            continue;
        }
        let index = UsearchIndex::with_quantization(DIMENSIONS, kind).unwrap();
        let t0 = Instant::now();
        build(&index, &vectors, threads);
        let took = t0.elapsed();
        let file = tmp.path().join(format!("{kind:?}-{threads}.usearch"));
        index.save(&file).unwrap();
        for ef in [64, 128, 256] {
            index.set_expansion_search(ef);
            let (r, times) = recall(&index, &queries, &truth, |key| vectors.get(key as usize).map(|(_, v)| v.as_slice()));
            println!(
                "| {name} | {:.1} s | {:.0} MiB | {:.0} MiB | {ef} | {:.2} ms | {r:.4} |",
                took.as_secs_f64(),
                index.memory_usage() as f64 / 1048576.0,
                std::fs::metadata(&file).unwrap().len() as f64 / 1048576.0,
                percentile(&times, 0.5).as_secs_f64() * 1000.0
            );
        }
    }
    if wanted("pgvector") {
        pgvector_recall(&vectors, &queries, &truth);
    }
}

/// The same vectors in PostgreSQL with pgvector (HNSW, cosine; a throwaway
/// server from `scripts/pg-test-server`): build time and recall@10 at the
/// `ef_search` the daemon uses for k = 10, and at larger ones.
fn pgvector_recall(vectors: &[(u64, Vec<f32>)], queries: &[Vec<f32>], truth: &[Vec<(u64, f32)>]) {
    use mindory_daemon::index::pgvector::PgLibrary;
    use mindory_daemon::index::PgVectorIndex;
    let dir = tempfile::Builder::new().prefix("mpgs").tempdir_in("/tmp").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-test-server");
    let out = std::process::Command::new(&script).arg("start").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    {
        let library = std::sync::Arc::new(PgLibrary::connect(&url, "scale").unwrap());
        let index = PgVectorIndex::create(&library, "scale-model", DIMENSIONS).unwrap();
        let t0 = Instant::now();
        index.replace_all(vectors).unwrap();
        let took = t0.elapsed();
        let by_key = |key: u64| vectors.get(key as usize).map(|(_, v)| v.as_slice());
        let (r, times) = recall(&index, queries, truth, by_key);
        println!(
            "| pgvector (f32, m = 16, ef_construction = 64) | {:.1} s | | | the daemon's (k = {K}) | {:.2} ms | {r:.4} |",
            took.as_secs_f64(),
            percentile(&times, 0.5).as_secs_f64() * 1000.0
        );
        // A larger k raises the session's ef_search to k (the daemon's floor
        // is 128): the top 10 of a k = 200 search is what ef_search = 200
        // returns.
        for wide in [100usize, 200] {
            let (r, times) = recall_of_wider(&index, queries, truth, wide, by_key);
            println!(
                "| pgvector, top {K} of k = {wide} | | | | {wide} | {:.2} ms | {r:.4} |",
                percentile(&times, 0.5).as_secs_f64() * 1000.0
            );
        }
    }
    let _ = std::process::Command::new(&script).arg("stop").arg(dir.path()).status();
}

/// Latency per mode: (mode, p50, p99).
type Latencies = Vec<(String, Duration, Duration)>;

/// 400 searches per mode over gRPC, each a real query made unique by a
/// counter so that no cache answers it.
fn search_pass(runtime: &tokio::runtime::Runtime, daemon: &DaemonProcess, real: &Real, n: usize) -> Latencies {
    let mut client = runtime.block_on(async { SearchClient::new(daemon.channel().await) });
    let mut latencies = Vec::new();
    for mode in [pb::SearchMode::Vector, pb::SearchMode::Hybrid, pb::SearchMode::Keyword] {
        let mut samples: Vec<Duration> = (0..400)
            .map(|j| {
                let (text, _) = &real.queries[j % real.queries.len()];
                let t = Instant::now();
                let hits = runtime
                    .block_on(client.search(pb::SearchRequest {
                        query: format!("{text} {}", j / real.queries.len()),
                        k: K as u32,
                        book_ids: vec![],
                        mode: mode as i32,
                        ..Default::default()
                    }))
                    .unwrap()
                    .into_inner()
                    .hits;
                assert!(!hits.is_empty(), "no hits in a library of {n}");
                t.elapsed()
            })
            .collect();
        samples.sort();
        latencies.push((
            mode.as_str_name().trim_start_matches("SEARCH_MODE_").to_lowercase(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
        ));
    }
    latencies
}

/// `MINDORY_SCALE_MEMORY_LIMIT` (MiB): also serve the library from a
/// daemon held to that much memory, page cache included.
fn memory_limit_mib() -> Option<u64> {
    std::env::var("MINDORY_SCALE_MEMORY_LIMIT")
        .ok()
        .map(|v| v.parse().expect("MINDORY_SCALE_MEMORY_LIMIT is a number of MiB"))
}

/// What the memory-limited pass saw.
struct Limited {
    limit_mib: u64,
    peak_mib: f64,
    rss: (f64, f64, f64),
    latencies: Latencies,
}

/// A third start of the daemon, inside a cgroup-v1 memory group of
/// `limit_mib` from its first instruction, after the page cache was dropped
/// so that every page of the mapped indexes it touches is read again and
/// charged to it. The kernel then has to evict the mapped indexes' pages
/// to stay under the limit: this shows whether the daemon serves a
/// million passages within the memory target, and at what latency. Needs
/// root and the v1 memory controller; says why not otherwise.
fn limited_pass(runtime: &tokio::runtime::Runtime, root: &Path, real: &Real, n: usize, limit_mib: u64) -> Result<Limited, String> {
    let group = Path::new("/sys/fs/cgroup/memory/mindory-scale-bench");
    if !group.exists() {
        std::fs::create_dir(group).map_err(|e| format!("cannot create {}: {e}", group.display()))?;
    }
    // The group goes whichever way this returns (a setting refused, the
    // page cache not dropped, a panic): the kernel removes an empty group's
    // directory; one with a process still in it stays, and says so.
    struct Removed<'a>(&'a Path);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            if let Err(e) = std::fs::remove_dir(self.0) {
                eprintln!("cannot remove the memory group {}: {e}", self.0.display());
            }
        }
    }
    let _removed = Removed(group);
    let write = |file: &str, value: String| std::fs::write(group.join(file), value).map_err(|e| format!("cannot write {file}: {e}"));
    write("memory.limit_in_bytes", format!("{}", limit_mib << 20))?;
    write("memory.max_usage_in_bytes", "0".into())?;
    std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(|e| format!("cannot drop the page cache: {e}"))?;
    let daemon = runtime.block_on(DaemonProcess::start_in(root, &[OsStr::new("-v")], Some(group)));
    let latencies = search_pass(runtime, &daemon, real, n);
    let rss = rss(daemon.pid);
    let peak_mib = std::fs::read_to_string(group.join("memory.max_usage_in_bytes"))
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1048576.0;
    runtime.block_on(daemon.stop());
    Ok(Limited {
        limit_mib,
        peak_mib,
        rss,
        latencies,
    })
}

/// VmRSS, RssAnon and RssFile of `pid`, in MiB.
fn rss(pid: u32) -> (f64, f64, f64) {
    let status = format!("/proc/{pid}/status");
    let field = |name| proc_status_mib(&status, name);
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

fn size_mib(path: &Path) -> f64 {
    walk_size(path) as f64 / 1048576.0
}

fn walk_size(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path).unwrap().map(|e| walk_size(&e.unwrap().path())).sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// The `ms=` a daemon log line carrying `message` reports.
fn logged_ms(log: &str, message: &str) -> String {
    log.lines()
        .find(|l| l.contains(message))
        .and_then(|l| l.split("ms=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map_or("?".into(), |ms| format!("{:.1} s", ms.parse::<f64>().unwrap_or(0.0) / 1000.0))
}

/// Writes `n` passages into a new store at `db`: the real ones, then
/// synthetic books of real text with random vectors. Returns the count.
fn seed(real: &Real, n: usize, db: &Path) -> usize {
    let real_books = real
        .texts
        .chunks(100)
        .zip(real.vectors.chunks(100))
        .enumerate()
        .map(|(b, (texts, vectors))| SeedBook {
            title: format!("Real passages {b}"),
            passages: texts.iter().cloned().zip(vectors.iter().cloned()).collect(),
        });
    let synthetic = n.saturating_sub(real.texts.len());
    let mut rng = fastrand::Rng::with_seed(42);
    let texts = &real.texts;
    let synthetic_books = (0..synthetic.div_ceil(PER_BOOK)).map(move |b| {
        let count = PER_BOOK.min(synthetic - b * PER_BOOK);
        SeedBook {
            title: format!("Synthetic book {b}"),
            passages: (0..count)
                .map(|i| {
                    (
                        texts[(b * PER_BOOK + i) % texts.len()].clone(),
                        random_unit_vector(&mut rng, DIMENSIONS),
                    )
                })
                .collect(),
        }
    });
    seed_books(db, EMBEDDING_MODEL_ID, real_books.chain(synthetic_books)).unwrap() as usize
}

fn million(real: &Real, n: usize) {
    // `MINDORY_SCALE_DIR` keeps the library between runs: seeding and the
    // first start's rebuild take most of an hour at a million passages, and
    // the cold-start and search figures can then be measured again alone.
    let kept = std::env::var_os("MINDORY_SCALE_DIR").map(PathBuf::from);
    let temp = match &kept {
        Some(_) => None,
        None => Some(tempfile::tempdir_in(cache_dir()).unwrap()),
    };
    let root: &Path = match (&kept, &temp) {
        (Some(dir), _) => dir,
        (None, Some(t)) => t.path(),
        (None, None) => unreachable!(),
    };
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("mindory.redb");
    let t0 = Instant::now();
    let seeded_before = db.exists();
    let written = if seeded_before {
        let reader = StoreReader::open(&db, EMBEDDING_MODEL_ID).unwrap();
        let (_, chunks, _) = reader.counts().unwrap();
        eprintln!("kept library in {}: {chunks} passages, not seeded again", root.display());
        chunks as usize
    } else {
        seed(real, n, &db)
    };
    let seeded = t0.elapsed();
    eprintln!("seeded {written} passages in {seeded:.0?}");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let t0 = Instant::now();
    let daemon = runtime.block_on(DaemonProcess::start(root, &[OsStr::new("-v")]));
    let first_start = t0.elapsed();
    let first_log = daemon.log();
    runtime.block_on(daemon.stop());
    eprintln!("first start took {first_start:.0?} (it rebuilds the indexes unless the kept library has them)");

    let t0 = Instant::now();
    let daemon = runtime.block_on(DaemonProcess::start(root, &[OsStr::new("-v")]));
    let cold_start = t0.elapsed();
    // Idle is after the ingest engine lets its session go, as a daemon
    // that has nothing to embed does a minute after it starts.
    std::thread::sleep(mindory_daemon::embed::RELEASE_AFTER_IDLE + Duration::from_secs(5));
    let idle = rss(daemon.pid);
    let latencies = search_pass(&runtime, &daemon, real, n);
    let busy = rss(daemon.pid);
    let cold_log = daemon.log();
    runtime.block_on(daemon.stop());
    let limited = memory_limit_mib().map(|limit| limited_pass(&runtime, root, real, n, limit));

    // Recall of the index the daemon saved, against exact search over every
    // stored vector.
    let reader = StoreReader::open(&db, EMBEDDING_MODEL_ID).unwrap();
    let mut stored = Vec::with_capacity(n);
    reader.for_each_vector(|key, record| stored.push((key, record.vector))).unwrap();
    drop(reader);
    let queries: Vec<Vec<f32>> = real.queries.iter().map(|(_, v)| v.clone()).collect();
    let truth = exact(&queries, &stored);
    let saved = UsearchIndex::view(&data.join("index.usearch"), DIMENSIONS).unwrap();
    let by_key: std::collections::HashMap<u64, usize> = stored.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
    let (r, _) = recall(&saved, &queries, &truth, |key| by_key.get(&key).map(|&i| stored[i].1.as_slice()));

    println!(
        "\n## A library of {written} passages ({} real), release mindoryd\n",
        real.texts.len()
    );
    println!("| measure | value |");
    println!("|---|---:|");
    match seeded_before {
        true => println!("| seeding the store (bench) | kept from an earlier run |"),
        false => println!("| seeding the store (bench) | {:.0} s |", seeded.as_secs_f64()),
    }
    println!(
        "| first start: vector index rebuild | {} |",
        logged_ms(&first_log, "vector index ready")
    );
    println!(
        "| first start: keyword index rebuild | {} |",
        logged_ms(&first_log, "keyword index ready")
    );
    println!("| first start to serving | {:.1} s |", first_start.as_secs_f64());
    println!("| **cold start to serving** | **{:.0} ms** |", cold_start.as_secs_f64() * 1000.0);
    println!(
        "| cold start: embedding model load / vector index open / keyword index open (side by side) | {} / {} / {} |",
        logged_ms(&cold_log, "embedding model loaded"),
        logged_ms(&cold_log, "vector index ready"),
        logged_ms(&cold_log, "keyword index ready")
    );
    println!("| RSS idle (anon + file) | {:.0} MiB ({:.0} + {:.0}) |", idle.0, idle.1, idle.2);
    println!(
        "| RSS after 1,200 searches (anon + file) | {:.0} MiB ({:.0} + {:.0}) |",
        busy.0, busy.1, busy.2
    );
    for (mode, p50, p99) in &latencies {
        println!(
            "| search {mode} p50 / p99 (gRPC, k = {K}) | {:.1} / {:.1} ms |",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
    match limited {
        Some(Ok(l)) => {
            println!(
                "| **under a {} MiB memory cgroup** (page cache dropped first): peak usage, RSS after 1,200 searches (anon + file) | {:.0} MiB, {:.0} MiB ({:.0} + {:.0}) |",
                l.limit_mib, l.peak_mib, l.rss.0, l.rss.1, l.rss.2
            );
            for (mode, p50, p99) in &l.latencies {
                println!(
                    "| under the cgroup: search {mode} p50 / p99 | {:.1} / {:.1} ms |",
                    p50.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0
                );
            }
        }
        Some(Err(why)) => println!("| under a memory cgroup | not measured: {why} |"),
        None => {}
    }
    println!("| **HNSW recall@{K} vs exact** ({} real queries) | **{r:.4}** |", queries.len());
    println!("| disk: store (redb) | {:.0} MiB |", size_mib(&db));
    println!("| disk: vector index | {:.0} MiB |", size_mib(&data.join("index.usearch")));
    println!("| disk: keyword index | {:.0} MiB |", size_mib(&data.join("keyword")));
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let stages = std::env::var("MINDORY_SCALE_STAGES").unwrap_or_else(|_| "compare,million".into());
    let real = real_subset(env_usize("MINDORY_SCALE_REAL", 4000), env_usize("MINDORY_SCALE_QUERIES", 200));
    if stages.contains("compare") {
        compare(&real, env_usize("MINDORY_SCALE_COMPARE", 100_000));
    }
    if stages.contains("million") {
        million(&real, env_usize("MINDORY_SCALE_PASSAGES", 1_000_000));
    }
}
