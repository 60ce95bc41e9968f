//! Retrieval quality: recall@5 and MRR@10 of `Search` per search mode on
//! question sets built from real documents (see `mindory_benches::eval` for
//! how each set is built and judged), plus search latency over gRPC.
//!
//! Starts an in-process daemon on a temp dir, ingests the books the chosen
//! sets need (two answers-only FAQ documents written to the temp dir, Pride
//! and Prejudice, Alice, Persuasion, Metamorphosis (EPUB), R-intro (PDF) and
//! Lu Xun's 呐喊: about 2,500 passages, a few minutes of embedding), waits
//! until every book is ready, then sends every query in every mode.
//! Prints one Markdown table (rows: modes; columns: set × metric, then
//! latency p50/p99 over all queries of the mode) and writes it to
//! `target/retrieval-eval.md`, with every query's first relevant rank in
//! `target/retrieval-eval-queries.tsv`.
//!
//! `MINDORY_EVAL_SETS=debian-faq,r-faq` picks sets (default: all of
//! debian-faq, r-faq, keyword, chinese, cross-lingual, verbatim). The library holds only
//! the books the chosen sets need, so scores compare across runs with the
//! same selection.
//!
//! `MINDORY_EVAL_EMBEDDING_MODEL=potion-base-8M` runs the daemon with that
//! embedding model (as `mindoryd --embedding-model`; default MiniLM).
//!
//! `MINDORY_EVAL_DUMP=FILE` writes, per query, each retriever's top 50, the
//! fused hybrid list (k = 10 and 20) and its passages' texts, as JSON lines
//! for replaying fusions and rerankers offline (`scripts/rerank-eval.py`).
//!
//! `MINDORY_EVAL_EXPANSIONS=FILE` adds the row `hybrid+expansion`: hybrid
//! searches widened by the answer model's own short answer to each
//! question, as Ask searches (`[llm] expand_questions`). The file comes
//! from `scripts/expansion-eval.py` (the same instructions, greedy, on
//! llama.cpp with the same GGUF).
//!
//! `cargo bench -p mindory-benches --bench retrieval`

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mindory_benches::eval::{self, LibraryText, Metrics, Query, Relevance, Rng, TermKind};
use mindory_benches::{corpus, percentile, BenchDaemon};
use mindory_proto::pb::{self, library_client::LibraryClient, search_client::SearchClient, SearchMode};

/// The modes compared, one table row each. A new mode the daemon exposes
/// (a reranker, say) is one more entry here.
const MODES: &[(&str, SearchMode)] = &[
    ("hybrid", SearchMode::Hybrid),
    ("vector", SearchMode::Vector),
    ("keyword", SearchMode::Keyword),
];

/// Every set, in table order.
const SETS: &[&str] = &["debian-faq", "r-faq", "keyword", "chinese", "cross-lingual", "verbatim"];

/// Hits asked for per query.
const K: u32 = 10;
/// Verbatim sentences in all.
const VERBATIM_N: usize = 200;

/// A file of the library and the sets that need it.
struct BookSpec {
    label: &'static str,
    path: PathBuf,
    sets: &'static [&'static str],
}

/// A book once ingested.
struct Ingested {
    label: &'static str,
    chunks: u64,
    text: String,
}

fn main() {
    let selected: Vec<&'static str> = match std::env::var("MINDORY_EVAL_SETS") {
        Ok(v) if !v.trim().is_empty() => {
            let want: Vec<String> = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            for w in &want {
                assert!(
                    SETS.contains(&w.as_str()),
                    "MINDORY_EVAL_SETS: unknown set {w:?}; the sets are {}",
                    SETS.join(",")
                );
            }
            SETS.iter().copied().filter(|s| want.iter().any(|w| w == s)).collect()
        }
        _ => SETS.to_vec(),
    };

    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let read = |rel: &str| {
        let p = corpus(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e} (set MINDORY_CORPUS)", p.display()))
    };
    let debian = eval::debian_faq(&read("qa/debian-faq.en.txt"));
    let rfaq = eval::r_faq(&read("qa/R-FAQ.pdf.txt"));
    // The documents go to the temp dir for ingest, and a copy next to the
    // report for reading.
    let keep = target_dir().join("retrieval-eval");
    std::fs::create_dir_all(&keep).unwrap();
    for set in [&debian, &rfaq] {
        std::fs::write(docs.join(set.file_name), &set.document).unwrap();
        std::fs::write(keep.join(set.file_name), &set.document).unwrap();
        eprintln!(
            "{}: {} questions; {} cross-references lost their quoted titles",
            set.file_name,
            set.questions.len(),
            set.cross_refs_stripped
        );
        if !set.skipped_short.is_empty() {
            eprintln!(
                "{}: skipped (answer under {} chars): {}",
                set.file_name,
                eval::MIN_ANSWER_CHARS,
                set.skipped_short.join("; ")
            );
        }
    }

    let specs = [
        BookSpec {
            label: "debian-faq-answers.md",
            path: docs.join(debian.file_name),
            sets: &["debian-faq", "keyword", "verbatim"],
        },
        BookSpec {
            label: "r-faq-answers.md",
            path: docs.join(rfaq.file_name),
            sets: &["r-faq", "keyword", "verbatim"],
        },
        BookSpec {
            label: "prideprejudice.txt",
            path: corpus("txt/prideprejudice.txt"),
            sets: &["keyword", "cross-lingual"],
        },
        BookSpec {
            label: "alice29.txt",
            path: corpus("txt/alice29.txt"),
            sets: &["keyword", "cross-lingual", "verbatim"],
        },
        BookSpec {
            label: "persuasion.txt",
            path: corpus("txt/persuasion.txt"),
            sets: &["verbatim"],
        },
        BookSpec {
            label: "Metamorphosis-jackson.epub",
            path: corpus("epub/Metamorphosis-jackson.epub"),
            sets: &["verbatim"],
        },
        BookSpec {
            label: "R-intro.pdf",
            path: corpus("pdf/R-intro.pdf"),
            sets: &["verbatim"],
        },
        BookSpec {
            label: "CalltoArms.txt",
            path: corpus("txt/CalltoArms.txt"),
            sets: &["chinese", "cross-lingual"],
        },
    ];
    let specs: Vec<&BookSpec> = specs.iter().filter(|b| b.sets.iter().any(|s| selected.contains(s))).collect();

    let model = std::env::var("MINDORY_EVAL_EMBEDDING_MODEL").ok().filter(|m| !m.trim().is_empty());
    let model_name = model
        .clone()
        .unwrap_or_else(|| mindory_proto::models::EMBEDDING_MODEL_ID.to_string());
    eprintln!("embedding model: {model_name}");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let report = runtime.block_on(async {
        let (daemon, _) = BenchDaemon::start_with(&tmp.path().join("daemon"), |config| {
            if let Some(model) = &model {
                config.embedding_model = model.clone();
            }
        })
        .await;
        let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
        let books = ingest(&channel, &specs).await;
        let report = evaluate(&channel, &selected, &books, &debian, &rfaq, &model_name).await;
        daemon.stop().await;
        report
    });
    if let Ok(windows) = std::env::var("MINDORY_EVAL_WINDOWS") {
        let faqs = [("debian-faq", debian.queries()), ("r-faq", rfaq.queries())];
        let db = tmp.path().join("daemon").join("data").join("mindory.redb");
        println!("{}", windows_experiment(&db, &faqs, &windows));
    }

    println!("\n{report}");
    let target = target_dir();
    std::fs::write(target.join("retrieval-eval.md"), &report).unwrap();
    eprintln!("written to {}", target.join("retrieval-eval.md").display());
}

/// `MINDORY_EVAL_WINDOWS=1,2,3` (with `MINDORY_EVAL_DUMP`, whose keyword
/// and phrase lists it reuses): small-unit matching. Each passage is also
/// embedded as windows of that many consecutive sentences, and a passage
/// scores by its best window, by the better of that and itself, or by
/// itself plus half its best window;
/// exact search over the stored vectors, then the daemon's hybrid fusion
/// replayed with that vector list. Prints R@5 / MRR@10 per FAQ set.
fn windows_experiment(db: &std::path::Path, sets: &[(&str, Vec<Query>)], sizes: &str) -> String {
    use mindory_daemon::search::Ranked;
    use std::collections::HashMap;
    // A passage's window vectors, by chunk id.
    type Windows = HashMap<u64, Vec<Vec<f32>>>;
    use mindory_daemon::embed::{Embedder, FastEmbedder};
    let model = mindory_proto::models::EMBEDDING_MODEL_ID;
    let store = mindory_daemon::store::StoreReader::open(db, model).unwrap();
    let mut passages: Vec<(u64, String)> = Vec::new();
    store.for_each_chunk(|id, c| passages.push((id, c.text))).unwrap();
    let text_by_id: HashMap<u64, &str> = passages.iter().map(|(id, t)| (*id, t.as_str())).collect();
    let vectors: HashMap<u64, Vec<f32>> = store.vectors_of_model(model).unwrap().into_iter().collect();
    let mut engine = FastEmbedder::load(&mindory_benches::models_dir(), 2).unwrap();
    let mut embed = |texts: &[String]| -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        for batch in texts.chunks(32) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            out.extend(engine.embed(&refs).unwrap());
        }
        out
    };
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    // Keyword and phrase lists per query, from the dump.
    let dump = std::env::var("MINDORY_EVAL_DUMP").expect("MINDORY_EVAL_WINDOWS needs MINDORY_EVAL_DUMP");
    let mut other_lists: HashMap<String, Vec<(&'static str, Ranked)>> = HashMap::new();
    for line in std::fs::read_to_string(&dump).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut lists = Vec::new();
        for name in ["keyword", "phrase"] {
            if let Some(list) = v["lists"][name].as_array() {
                let list = list
                    .iter()
                    .map(|h| (h[0].as_u64().unwrap(), h[1].as_f64().unwrap() as f32))
                    .collect();
                lists.push((name, list));
            }
        }
        other_lists.insert(v["query"].as_str().unwrap().to_string(), lists);
    }
    let sentences = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut current = String::new();
        for word in text.split_whitespace() {
            current.push_str(word);
            current.push(' ');
            if word.ends_with(['.', '?', '!', ':']) && current.split_whitespace().count() >= 4 {
                out.push(current.trim().to_string());
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            out.push(current.trim().to_string());
        }
        out
    };
    let mut report =
        String::from("\n| vector scoring | set | vector R@5 / MRR@10 | hybrid R@5 / MRR@10 | windows embedded |\n|---|---|---|---|---:|\n");
    let mut variants: Vec<(String, Windows)> = vec![("passage".into(), Windows::new())];
    for size in sizes.split(',').filter_map(|s| s.trim().parse::<usize>().ok()).filter(|&n| n > 0) {
        let t0 = Instant::now();
        let mut owners = Vec::new();
        let mut texts = Vec::new();
        for (id, text) in &passages {
            let sents = sentences(text);
            for start in 0..sents.len().saturating_sub(size - 1).max(1) {
                texts.push(sents[start..(start + size).min(sents.len())].join(" "));
                owners.push(*id);
            }
        }
        let embedded = embed(&texts);
        let mut by_passage = Windows::new();
        for (owner, v) in owners.into_iter().zip(embedded) {
            by_passage.entry(owner).or_default().push(v);
        }
        eprintln!("windows of {size}: {} in {:.0?}", texts.len(), t0.elapsed());
        variants.push((format!("windows of {size}"), by_passage.clone()));
        variants.push((format!("max(passage, windows of {size})"), by_passage.clone()));
        variants.push((format!("passage + half the best of windows of {size}"), by_passage));
    }
    for (set, queries) in sets {
        let query_vectors = embed(&queries.iter().map(|q| q.text.replace('"', " ")).collect::<Vec<_>>());
        for (name, windows) in &variants {
            let mut vector_ranks = Vec::new();
            let mut hybrid_ranks = Vec::new();
            for (q, qv) in queries.iter().zip(&query_vectors) {
                let mut scored: Vec<(u64, f32)> = passages
                    .iter()
                    .map(|(id, _)| {
                        let own = vectors.get(id).map_or(-1.0, |v| dot(v, qv));
                        let best = windows
                            .get(id)
                            .map_or(-1.0, |ws| ws.iter().map(|w| dot(w, qv)).fold(-1.0, f32::max));
                        let score = if name == "passage" {
                            own
                        } else if name.starts_with("max") {
                            own.max(best)
                        } else if name.starts_with("passage +") {
                            own + 0.5 * best
                        } else {
                            best
                        };
                        (*id, score)
                    })
                    .collect();
                scored.sort_by(|a, b| b.1.total_cmp(&a.1));
                scored.truncate(50);
                let text_of = |id: u64| text_by_id.get(&id).copied().unwrap_or("");
                vector_ranks.push(eval::first_relevant(&q.relevance, scored.iter().map(|(id, _)| text_of(*id))));
                let unquoted = q.text.replace('"', " ");
                let words = unquoted.split_whitespace().count();
                let share = mindory_daemon::search::vector_share(&unquoted, words, mindory_daemon::search::shares_for(model));
                let mut lists: Vec<(&'static str, Ranked)> = vec![("vector", scored.clone())];
                lists.extend(other_lists.get(&q.text).cloned().unwrap_or_default());
                let fused = mindory_daemon::search::fuse(&lists, share, 10, &HashSet::new());
                hybrid_ranks.push(eval::first_relevant(&q.relevance, fused.iter().map(|(id, _)| text_of(*id))));
            }
            let v = Metrics::from_ranks(&vector_ranks);
            let h = Metrics::from_ranks(&hybrid_ranks);
            let count: usize = windows.values().map(Vec::len).sum();
            report.push_str(&format!(
                "| {name} | {set} | {:.3} / {:.3} | {:.3} / {:.3} | {count} |\n",
                v.r5, v.mrr10, h.r5, h.mrr10
            ));
        }
    }
    report
}

/// Cargo's target directory (where the report goes).
fn target_dir() -> PathBuf {
    let t = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&t).unwrap();
    t
}

/// Adds the files, waits until each is ready (or failed), fetches the ready
/// ones' stored texts.
async fn ingest(channel: &tonic::transport::Channel, specs: &[&BookSpec]) -> Vec<Ingested> {
    let mut library = LibraryClient::new(channel.clone());
    let t0 = Instant::now();
    let added = library
        .add_paths(pb::AddPathsRequest {
            paths: specs.iter().map(|b| b.path.to_string_lossy().into_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let mut ids = Vec::new();
    for (spec, r) in specs.iter().zip(&added) {
        assert_ne!(
            r.outcome,
            pb::AddOutcome::Rejected as i32,
            "{} was rejected: {}",
            spec.label,
            r.reason
        );
        ids.push(r.book_id);
    }
    let mut last_print = Instant::now();
    let books = loop {
        let books = library
            .list_books(pb::ListBooksRequest::default())
            .await
            .unwrap()
            .into_inner()
            .books;
        let ours: Vec<&pb::Book> = ids.iter().filter_map(|id| books.iter().find(|b| b.id == *id)).collect();
        let done = ours.len() == ids.len()
            && ours
                .iter()
                .all(|b| b.status == pb::BookStatus::Ready as i32 || b.status == pb::BookStatus::Failed as i32);
        if done {
            break books;
        }
        if last_print.elapsed() > Duration::from_secs(20) {
            let ready = ours.iter().filter(|b| b.status == pb::BookStatus::Ready as i32).count();
            eprintln!(
                "ingesting: {ready}/{} books ready after {:.0} s",
                ids.len(),
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        assert!(t0.elapsed() < Duration::from_secs(3600), "ingest took over an hour");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut out = Vec::new();
    for (spec, id) in specs.iter().zip(&ids) {
        let b = books.iter().find(|b| b.id == *id).unwrap();
        if b.status != pb::BookStatus::Ready as i32 {
            assert!(!spec.label.ends_with("-answers.md"), "{} failed: {}", spec.label, b.error);
            eprintln!("warning: {} failed ({}); the sets go on without it", spec.label, b.error);
            continue;
        }
        let text = book_text(&mut library, b.id, b.text_chars).await;
        out.push(Ingested {
            label: spec.label,
            chunks: b.chunks,
            text,
        });
    }
    eprintln!(
        "ingested {} books, {} passages, in {:.0} s",
        out.len(),
        out.iter().map(|b| b.chunks).sum::<u64>(),
        t0.elapsed().as_secs_f64()
    );
    out
}

/// A book's whole normalized text, read with `GetPassage` in pieces.
async fn book_text(library: &mut LibraryClient<tonic::transport::Channel>, id: u64, total: u64) -> String {
    let mut text = String::new();
    let mut at = 0u64;
    while at < total {
        let p = library
            .get_passage(pb::GetPassageRequest {
                book_id: id,
                at: Some(pb::get_passage_request::At::Offset(at)),
                max_chars: 400_000,
            })
            .await
            .unwrap()
            .into_inner();
        // The passage starts at its paragraph's beginning, maybe before `at`.
        text.extend(p.text.chars().skip((at - p.start) as usize));
        assert!(p.end > at, "GetPassage made no progress at {at} of book {id}");
        at = p.end;
    }
    text
}

/// Builds the chosen sets over the ingested texts, runs every query in
/// every mode, returns the Markdown report.
async fn evaluate(
    channel: &tonic::transport::Channel,
    selected: &[&'static str],
    books: &[Ingested],
    debian: &eval::FaqSet,
    rfaq: &eval::FaqSet,
    model: &str,
) -> String {
    let library = LibraryText::new(books.iter().map(|b| b.text.as_str()));
    let text_of = |label: &str| books.iter().find(|b| b.label == label).map(|b| b.text.as_str());
    let mut notes: Vec<String> = Vec::new();
    let mut sets: Vec<(&'static str, Vec<Query>)> = Vec::new();
    for &set in selected {
        let queries = match set {
            "debian-faq" => debian.queries(),
            "r-faq" => rfaq.queries(),
            "keyword" => keyword_queries(&library, &text_of, &mut notes),
            "chinese" => chinese_queries(&text_of, &mut notes),
            "cross-lingual" => cross_lingual_queries(&text_of, &mut notes),
            "verbatim" => verbatim_queries(&library, books, &mut notes),
            _ => unreachable!(),
        };
        eprintln!("{set}: {} queries", queries.len());
        sets.push((set, queries));
    }

    let expansions = expansions();
    let mut modes: Vec<(&str, SearchMode)> = MODES.to_vec();
    if !expansions.is_empty() {
        modes.push((EXPANDED, SearchMode::Hybrid));
    }
    let mut search = SearchClient::new(channel.clone());
    for &(_, mode) in MODES {
        // Warm-up (model and caches); not counted.
        let _ = search.search(request("warm up", mode)).await;
    }
    let mut latencies: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut metrics: BTreeMap<(&str, &str), Metrics> = BTreeMap::new();
    let mut tsv = String::from("mode\tset\torigin\trank\tquery\ttop hit\n");
    let mut errors = Vec::new();
    for &(mode_name, mode) in &modes {
        for (set, queries) in &sets {
            let mut ranks = Vec::with_capacity(queries.len());
            for q in queries {
                let t = Instant::now();
                let mut req = request(&q.text, mode);
                if mode_name == EXPANDED {
                    req.expansion = expansions.get(&q.text).cloned().unwrap_or_default();
                }
                let result = search.search(req).await;
                let took = t.elapsed();
                let mut top = String::new();
                let rank = match result {
                    Ok(r) => {
                        latencies.entry(mode_name).or_default().push(took);
                        let hits = r.into_inner().hits;
                        if let Some(h) = hits.first() {
                            let snippet: String = h.text.chars().take(100).collect();
                            top = format!("{} @{}: {}", h.title, h.location.as_ref().map_or(0, |l| l.start), snippet);
                        }
                        eval::first_relevant(&q.relevance, hits.iter().map(|h| h.text.as_str()))
                    }
                    Err(status) => {
                        errors.push(format!("{mode_name} {set} {:?}: {}", q.text, status.message()));
                        None
                    }
                };
                tsv.push_str(&format!(
                    "{mode_name}\t{set}\t{}\t{}\t{}\t{}\n",
                    q.origin,
                    rank.map_or("-".to_string(), |r| r.to_string()),
                    q.text.replace(['\t', '\n'], " "),
                    top.replace(['\t', '\n'], " ")
                ));
                ranks.push(rank);
            }
            metrics.insert((mode_name, set), Metrics::from_ranks(&ranks));
        }
    }
    // For tuning the fusion offline: each retriever's own top 50 per query,
    // with relevance, as JSON lines (`MINDORY_EVAL_DUMP=FILE`). For
    // replaying a reranker offline, the daemon's fused hybrid list too, as
    // the eval sees it (k = 10) and deeper (k = 20, whose fusion draws on
    // more candidates, so its top 10 may differ), with the text of every
    // passage in either (`texts`, by chunk id).
    if let Ok(dump) = std::env::var("MINDORY_EVAL_DUMP") {
        let mut out = String::new();
        for (set, queries) in &sets {
            for q in queries {
                let mut lists = serde_json::Map::new();
                let unquoted = q.text.replace('"', " ");
                let words = unquoted.split_whitespace().count();
                let mut asks = vec![
                    ("vector", q.text.clone(), SearchMode::Vector),
                    ("keyword", q.text.clone(), SearchMode::Keyword),
                ];
                if mindory_daemon::search::PHRASE_WORDS.contains(&words) {
                    asks.push(("phrase", format!("\"{unquoted}\""), SearchMode::Keyword));
                }
                if let Some(guess) = expansions.get(&q.text) {
                    let widened = format!("{} {guess}", q.text);
                    asks.push((mindory_daemon::search::EXPANDED_VECTOR, widened.clone(), SearchMode::Vector));
                    asks.push((mindory_daemon::search::EXPANDED_KEYWORD, widened, SearchMode::Keyword));
                }
                let mut asks: Vec<(&str, String, SearchMode, u32)> =
                    asks.into_iter().map(|(name, text, mode)| (name, text, mode, 50)).collect();
                asks.push(("hybrid", q.text.clone(), SearchMode::Hybrid, K));
                asks.push(("hybrid20", q.text.clone(), SearchMode::Hybrid, 20));
                let mut texts = serde_json::Map::new();
                for (name, text, mode, k) in asks {
                    let mut req = request(&text, mode);
                    req.k = k;
                    let hits = match search.search(req).await {
                        Ok(r) => r.into_inner().hits,
                        Err(_) => Vec::new(),
                    };
                    let list: Vec<serde_json::Value> = hits
                        .iter()
                        .map(|h| {
                            let relevant = eval::first_relevant(&q.relevance, [h.text.as_str()]).is_some();
                            let kind = if h.passage_kind.is_empty() {
                                "body"
                            } else {
                                h.passage_kind.as_str()
                            };
                            serde_json::json!([h.chunk_id, h.score, relevant, kind, h.text.split_whitespace().count()])
                        })
                        .collect();
                    if mode == SearchMode::Hybrid {
                        for h in &hits {
                            texts.insert(h.chunk_id.to_string(), h.text.clone().into());
                        }
                    }
                    lists.insert(name.to_string(), serde_json::Value::Array(list));
                }
                out.push_str(&serde_json::json!({"set": set, "query": q.text, "lists": lists, "texts": texts}).to_string());
                out.push('\n');
            }
        }
        std::fs::write(&dump, out).unwrap();
        eprintln!("wrote the retrievers' lists to {dump}");
    }
    if !errors.is_empty() {
        eprintln!("{} searches failed, e.g.:", errors.len());
        for e in errors.iter().take(5) {
            eprintln!("  {e}");
        }
        notes.push(format!("{} searches failed (counted as misses), e.g. {}", errors.len(), errors[0]));
    }

    // The table: rows = modes, columns = set × metric, then latency.
    let mut header = vec!["mode".to_string()];
    for (set, _) in &sets {
        if *set == "verbatim" {
            header.push(format!("{set} @1"));
        }
        header.push(format!("{set} R@5"));
        header.push(format!("{set} MRR@10"));
    }
    header.push("p50 ms".into());
    header.push("p99 ms".into());
    let mut out = String::from("# Retrieval eval\n\n");
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|---|{}\n", "---:|".repeat(header.len() - 1)));
    for &(mode_name, _) in &modes {
        let mut row = vec![mode_name.to_string()];
        for (set, _) in &sets {
            let m = metrics[&(mode_name, *set)];
            if *set == "verbatim" {
                row.push(format!("{:.3}", m.r1));
            }
            row.push(format!("{:.3}", m.r5));
            row.push(format!("{:.3}", m.mrr10));
        }
        let mut lat = latencies.remove(mode_name).unwrap_or_default();
        lat.sort();
        if lat.is_empty() {
            row.extend(["-".to_string(), "-".to_string()]);
        } else {
            row.push(format!("{:.1}", ms(percentile(&lat, 50.0))));
            row.push(format!("{:.1}", ms(percentile(&lat, 99.0))));
        }
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    let counts: Vec<String> = sets.iter().map(|(s, q)| format!("{s} {}", q.len())).collect();
    out.push_str(&format!(
        "\nQueries: {}. k = {K}; latency is the client-side gRPC round trip per query, over all sets.\n",
        counts.join(", ")
    ));
    out.push_str(&format!("Embedding model: {model}.\n"));
    out.push_str(&format!(
        "Library: {} ({} passages).\n",
        books
            .iter()
            .map(|b| format!("{} {}", b.label, b.chunks))
            .collect::<Vec<_>>()
            .join(", "),
        books.iter().map(|b| b.chunks).sum::<u64>()
    ));
    for n in &notes {
        out.push_str(&format!("\n- {n}"));
    }
    if !notes.is_empty() {
        out.push('\n');
    }
    std::fs::write(target_dir().join("retrieval-eval-queries.tsv"), tsv).unwrap();
    out
}

/// The row of hybrid searches widened by the answer model's guesses.
const EXPANDED: &str = "hybrid+expansion";

/// The answer model's short answers to the questions, by question
/// (`MINDORY_EVAL_EXPANSIONS=FILE`, JSON lines `{"query": …, "answer": …}`
/// written by `scripts/expansion-eval.py`); empty when not given. Questions
/// without one search as in hybrid mode, as Ask does when the model writes
/// nothing.
fn expansions() -> std::collections::HashMap<String, String> {
    let Some(path) = std::env::var_os("MINDORY_EVAL_EXPANSIONS") else {
        return Default::default();
    };
    // Benches run in their package's folder; a relative path is read from
    // the workspace root, where the commands in the docs run.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let path = path.display();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}: {l}"));
            let field = |name: &str| {
                v[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{path}: no \"{name}\" in {l}"))
                    .to_string()
            };
            (field("query"), field("answer"))
        })
        .collect()
}

fn request(query: &str, mode: SearchMode) -> pb::SearchRequest {
    pb::SearchRequest {
        query: query.to_string(),
        k: K,
        mode: mode as i32,
        ..Default::default()
    }
}

/// Rare terms picked with the seeded PRNG from four books, plus the
/// hand-written ones that the library really contains.
fn keyword_queries<'a>(library: &LibraryText, text_of: &dyn Fn(&str) -> Option<&'a str>, notes: &mut Vec<String>) -> Vec<Query> {
    let mut rng = Rng::with_seed(eval::SEED);
    // Plain English: the novels' words, to tell "side-effect" from "dpkg-deb".
    let english: HashSet<String> = ["prideprejudice.txt", "alice29.txt", "persuasion.txt"]
        .iter()
        .filter_map(|l| text_of(l))
        .flat_map(|t| eval::token_counts(t).into_keys())
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let sources = [
        ("prideprejudice.txt", TermKind::Names, 8),
        ("alice29.txt", TermKind::Names, 6),
        ("debian-faq-answers.md", TermKind::NamesAndTechnical, 9),
        ("r-faq-answers.md", TermKind::NamesAndTechnical, 9),
    ];
    for (label, kind, n) in sources {
        let Some(text) = text_of(label) else { continue };
        for term in eval::rare_terms(text, kind, library, &english, n, &mut rng) {
            if seen.insert(term.to_lowercase()) {
                out.push(Query {
                    relevance: Relevance::contains_no_case(&term),
                    origin: format!("rare:{label}"),
                    text: term,
                });
            }
        }
    }
    let mut missing = Vec::new();
    for &term in eval::KEYWORD_HANDWRITTEN {
        if eval::occurrences_no_case(term, &library.lower) == 0 {
            missing.push(term);
        } else if seen.insert(term.to_lowercase()) {
            out.push(Query {
                text: term.to_string(),
                relevance: Relevance::contains_no_case(term),
                origin: "hand-written".into(),
            });
        }
    }
    if !missing.is_empty() {
        notes.push(format!(
            "keyword: hand-written terms not in the library, left out: {}",
            missing.join(", ")
        ));
    }
    out
}

/// The Chinese queries whose gold span is really in the book.
fn chinese_queries<'a>(text_of: &dyn Fn(&str) -> Option<&'a str>, notes: &mut Vec<String>) -> Vec<Query> {
    let Some(text) = text_of("CalltoArms.txt") else {
        notes.push("chinese: CalltoArms.txt is not in the library".into());
        return Vec::new();
    };
    let book: String = eval::canon(text).into_iter().collect();
    let mut out = Vec::new();
    for q in eval::CHINESE {
        let span: String = eval::canon(q.gold_span).into_iter().collect();
        if !book.contains(&span) {
            notes.push(format!("chinese: gold span {:?} is not in the text, query left out", q.gold_span));
            continue;
        }
        out.push(Query {
            text: q.query.to_string(),
            relevance: Relevance::contains_canon(q.gold_span),
            origin: if q.copied { "copied".into() } else { "paraphrased".into() },
        });
    }
    out
}

/// The cross-lingual queries whose gold span is really in their book; the
/// origin says the direction (`zh→en`: a Chinese query, an English answer).
fn cross_lingual_queries<'a>(text_of: &dyn Fn(&str) -> Option<&'a str>, notes: &mut Vec<String>) -> Vec<Query> {
    let mut out = Vec::new();
    for q in eval::CROSS_LINGUAL {
        let Some(text) = text_of(q.book) else {
            notes.push(format!("cross-lingual: {} is not in the library", q.book));
            continue;
        };
        let book: String = eval::canon(text).into_iter().collect();
        let span: String = eval::canon(q.gold_span).into_iter().collect();
        if !book.contains(&span) {
            notes.push(format!(
                "cross-lingual: gold span {:?} is not in {}, query left out",
                q.gold_span, q.book
            ));
            continue;
        }
        let direction = if q.book == "CalltoArms.txt" { "en→zh" } else { "zh→en" };
        out.push(Query {
            text: q.query.to_string(),
            relevance: Relevance::contains_canon(q.gold_span),
            origin: direction.into(),
        });
    }
    out
}

/// [`VERBATIM_N`] sentences sampled evenly from six books of different
/// formats, each found exactly once in the library.
fn verbatim_queries(library: &LibraryText, books: &[Ingested], notes: &mut Vec<String>) -> Vec<Query> {
    let labels = [
        "persuasion.txt",
        "alice29.txt",
        "Metamorphosis-jackson.epub",
        "R-intro.pdf",
        "debian-faq-answers.md",
        "r-faq-answers.md",
    ];
    let sources: Vec<&Ingested> = labels.iter().filter_map(|l| books.iter().find(|b| b.label == *l)).collect();
    if sources.len() < labels.len() {
        notes.push(format!("verbatim: sampled from {} of {} books", sources.len(), labels.len()));
    }
    let mut rng = Rng::with_seed(eval::SEED ^ 0x7665_7262);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, b) in sources.iter().enumerate() {
        let quota = VERBATIM_N / sources.len() + usize::from(i < VERBATIM_N % sources.len());
        let mut cands = eval::sentences(&b.text, 8..=30);
        rng.shuffle(&mut cands);
        let before = out.len();
        for s in cands {
            if out.len() - before == quota {
                break;
            }
            if library.occurrences(&s) == 1 && seen.insert(s.clone()) {
                out.push(Query {
                    relevance: Relevance::contains(&s),
                    origin: format!("sentence:{}", b.label),
                    text: s,
                });
            }
        }
        if out.len() - before < quota {
            notes.push(format!("verbatim: only {} sentences from {}", out.len() - before, b.label));
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
