//! Load while a folder ingests (issue 14): 32 clients × 200 hybrid searches
//! and 4 concurrent Ask streams against a fake OpenAI-compatible endpoint,
//! then a fairness check of one greedy connection against polite ones.
//!
//! This bench owns the whole scenario: it starts the release `mindoryd` as
//! a process of its own (so its peak RSS is the daemon's alone, and what is
//! measured is what users run), a minimal streaming chat-completion server
//! for the Asks, and the clients. The daemon follows a folder of 40 State of
//! the Union speeches (every fifth file of `$MINDORY_CORPUS/sotu`, sorted),
//! and the storm starts as soon as the folder is added:
//!
//! * 32 search clients, each on its own connection, run 200 hybrid searches
//!   (k = 10, varied queries) back to back;
//! * 4 Ask clients, each on its own connection, ask question after question
//!   until the searches are done (they start once a book is searchable,
//!   because the daemon answers an empty library without the model).
//!
//! Printed: errors by gRPC code, search latency percentiles, Ask first-token
//! and total times, the daemon's peak RSS, the books ready when the storm
//! ended (and when ingestion finished), and the storm's duration. Then, once
//! ingestion is done, 8 polite clients (one search at a time each) search
//! alone, and again beside one greedy client with 64 searches in flight on
//! a single connection; the polite clients' p99 must not blow up.
//!
//! `MINDORY_BENCH_EMBED` picks the embedding model (`--embedding-model`;
//! default all-MiniLM-L6-v2, what users run).
//!
//! `cargo build --release --bins && cargo bench -p mindory-benches --bench load`

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mindory_benches::{corpus, percentile, process_peak_mib, process_rss_mib, DaemonProcess};
use mindory_proto::pb::{
    self, assistant_client::AssistantClient, daemon_client::DaemonClient, library_client::LibraryClient, search_client::SearchClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// Search clients during the storm, each on its own connection.
const CLIENTS: usize = 32;
/// Searches each storm client runs, back to back.
const SEARCHES: usize = 200;
/// Concurrent Ask streams during the storm.
const ASKERS: usize = 4;
/// Books in the followed folder.
const BOOKS: usize = 40;
/// Polite clients of the fairness check (one search at a time each).
const POLITE: usize = 8;
/// Searches the greedy client keeps in flight on its one connection.
const GREEDY_IN_FLIGHT: usize = 64;
/// How long each half of the fairness check runs.
const FAIRNESS_FOR: Duration = Duration::from_secs(20);
/// How long to wait for ingestion to finish after the storm before the
/// fairness check runs anyway.
const INGEST_CAP: Duration = Duration::from_secs(900);

/// Subjects of the speeches; crossed with [`ANGLES`] they give 96 distinct
/// queries, so the storm is not one query cached 6,400 times.
const TOPICS: &[&str] = &[
    "taxes on imported goods",
    "the army and the navy",
    "treaties with foreign nations",
    "the public debt",
    "education of the people",
    "railroads across the continent",
    "Indian tribes on the frontier",
    "the banking system and currency",
    "civil rights and equal justice",
    "the price of oil and energy",
    "health care for the elderly",
    "the war against terror",
];
const ANGLES: &[&str] = &[
    "",
    "and the Congress",
    "in the coming year",
    "for working families",
    "reform",
    "history",
    "\"the Union\"",
    "costs",
];
const QUESTIONS: &[&str] = &[
    "What did the presidents say about the public debt?",
    "How should the army and the navy be organized?",
    "What was said about education?",
    "What is the state of the Union?",
];

fn query(client: usize, i: usize) -> String {
    let n = client * 7 + i;
    format!("{} {}", TOPICS[n % TOPICS.len()], ANGLES[(n / TOPICS.len()) % ANGLES.len()])
        .trim()
        .to_string()
}

/// Latencies and errors (by gRPC code) of a group of clients.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
}

impl Tally {
    fn record(&mut self, r: Result<Duration, tonic::Status>) {
        match r {
            Ok(d) => self.latencies.push(d),
            Err(e) => *self.errors.entry(format!("{:?}", e.code())).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }

    fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            "0".into()
        } else {
            self.errors.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join(", ")
        }
    }

    /// "p50 / p95 / p99 / max" in ms.
    fn summary(&mut self) -> String {
        if self.latencies.is_empty() {
            return "–".into();
        }
        self.latencies.sort();
        let l = &self.latencies;
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1}",
            ms(percentile(l, 50.0)),
            ms(percentile(l, 95.0)),
            ms(percentile(l, 99.0)),
            ms(*l.last().unwrap())
        )
    }

    fn p(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        percentile(&self.latencies, p)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn search(client: &mut SearchClient<Channel>, q: String) -> Result<Duration, tonic::Status> {
    let t = Instant::now();
    client
        .search(pb::SearchRequest {
            query: q,
            k: 10,
            mode: pb::SearchMode::Hybrid as i32,
            ..Default::default()
        })
        .await?;
    Ok(t.elapsed())
}

/// The answer every chat completion streams: 24 pieces, 5 ms apart, so an
/// answer takes about as long as a fast remote model's short reply.
const PIECES: usize = 24;
const PIECE_DELAY: Duration = Duration::from_millis(5);

/// A minimal OpenAI-compatible endpoint on 127.0.0.1: `GET …/models` lists
/// one model, any POST streams [`PIECES`] chat-completion chunks as
/// server-sent events. One request per connection, the body delimited by
/// closing it, which is all the daemon's HTTP client needs. (The daemon's
/// own fault-injecting fake is compiled only with its test hooks, which
/// the release binaries must not carry.) Returns the base URL up to `/v1`
/// and a counter of completions served.
async fn fake_llm() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let counter = counter.clone();
            tokio::spawn(async move {
                let _ = fake_llm_answer(sock, &counter).await;
            });
        }
    });
    (format!("http://{addr}/v1"), served)
}

async fn fake_llm_answer(mut sock: tokio::net::TcpStream, served: &AtomicU64) -> std::io::Result<()> {
    // Read the head, then as much body as Content-Length says.
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    if head.starts_with("get") {
        let body = r#"{"object":"list","data":[{"id":"fake","object":"model"}]}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(reply.as_bytes()).await?;
        return sock.shutdown().await;
    }
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
        .await?;
    for i in 0..PIECES {
        tokio::time::sleep(PIECE_DELAY).await;
        let chunk = serde_json::json!({
            "id": "chatcmpl-load", "object": "chat.completion.chunk", "created": 0, "model": "fake",
            "choices": [{"index": 0, "delta": {"content": format!("word{i} ")}, "finish_reason": null}]
        });
        sock.write_all(format!("data: {chunk}\n\n").as_bytes()).await?;
        sock.flush().await?;
    }
    sock.write_all(
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
             data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":100,\"completion_tokens\":{PIECES},\"total_tokens\":{}}}}}\n\n\
             data: [DONE]\n\n",
            100 + PIECES
        )
        .as_bytes(),
    )
    .await?;
    served.fetch_add(1, Ordering::Relaxed);
    sock.shutdown().await
}

/// Books by status: (ready, failed, total).
async fn books(channel: &Channel) -> (usize, usize, usize) {
    let books = LibraryClient::new(channel.clone())
        .list_books(pb::ListBooksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .books;
    let count = |s: pb::BookStatus| books.iter().filter(|b| b.status == s as i32).count();
    (count(pb::BookStatus::Ready), count(pb::BookStatus::Failed), books.len())
}

/// One Ask: time to the first token and to the end, or its error.
async fn ask(client: &mut AssistantClient<Channel>, question: &str) -> Result<(Duration, Duration, bool), tonic::Status> {
    let t = Instant::now();
    let mut stream = client
        .ask(pb::AskRequest {
            question: question.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut first = None;
    let mut nothing_relevant = false;
    while let Some(event) = stream.next().await {
        match event?.kind {
            Some(pb::ask_event::Kind::Token(_)) if first.is_none() => first = Some(t.elapsed()),
            Some(pb::ask_event::Kind::Done(d)) => nothing_relevant = d.nothing_relevant,
            _ => {}
        }
    }
    let total = t.elapsed();
    Ok((first.unwrap_or(total), total, nothing_relevant))
}

/// Polite clients (one search at a time each, own connections) for
/// [`FAIRNESS_FOR`], optionally beside a greedy client with
/// [`GREEDY_IN_FLIGHT`] searches in flight on one connection.
async fn fairness(daemon: &DaemonProcess, greedy: bool) -> (Tally, Tally, usize) {
    let until = Instant::now() + FAIRNESS_FOR;
    let greedy_tasks: Vec<_> = if greedy {
        // Clones of one channel share its single HTTP/2 connection.
        let channel = daemon.channel().await;
        (0..GREEDY_IN_FLIGHT)
            .map(|t| {
                let mut client = SearchClient::new(channel.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut i = 0;
                    while Instant::now() < until {
                        tally.record(search(&mut client, query(100 + t, i)).await);
                        i += 1;
                    }
                    tally
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut polite_tasks = Vec::new();
    for c in 0..POLITE {
        let mut client = SearchClient::new(daemon.channel().await);
        polite_tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0;
            while Instant::now() < until {
                tally.record(search(&mut client, query(c, i)).await);
                i += 1;
            }
            tally
        }));
    }
    let mut polite = Tally::default();
    for t in polite_tasks {
        polite.merge(t.await.unwrap());
    }
    let mut greedy = Tally::default();
    for t in greedy_tasks {
        greedy.merge(t.await.unwrap());
    }
    let done = greedy.latencies.len();
    (polite, greedy, done)
}

fn main() {
    let model = std::env::var("MINDORY_BENCH_EMBED").unwrap_or_else(|_| "all-MiniLM-L6-v2".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("speeches");
    std::fs::create_dir(&folder).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus("sotu")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().step_by(5).take(BOOKS) {
        std::fs::copy(f, folder.join(f.file_name().unwrap())).unwrap();
    }
    runtime.block_on(async {
        let (llm_url, completions) = fake_llm().await;
        let config = tmp.path().join("config.toml");
        // The floor at 0 sends every question to the endpoint, even while the
        // library is young and its best passage is a weak match.
        std::fs::write(
            &config,
            format!("[llm]\nbackend = \"openai\"\nbase_url = \"{llm_url}\"\nmodel = \"fake\"\nmax_tokens = 64\nmin_score = 0.0\n"),
        )
        .unwrap();
        let daemon = DaemonProcess::start(tmp.path(), &[OsStr::new("--config"), config.as_os_str(), OsStr::new("--embedding-model"), OsStr::new(&model)]).await;
        let pid = daemon.pid;
        // The daemon's resident memory, sampled every 50 ms; VmHWM gives the
        // true peak between samples.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            tokio::spawn(async move {
                let mut max_rss = 0f64;
                while sampling.load(Ordering::Relaxed) {
                    max_rss = max_rss.max(process_rss_mib(pid));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                max_rss
            })
        };
        let channel = daemon.channel().await;

        let t_ingest = Instant::now();
        LibraryClient::new(channel.clone())
            .add_folder(pb::AddFolderRequest {
                path: folder.to_string_lossy().into_owned(),
            })
            .await
            .unwrap();

        // The storm.
        eprintln!("mindoryd {pid} ({model}) follows {BOOKS} speeches; storm");
        let t_storm = Instant::now();
        let storm_done = Arc::new(AtomicBool::new(false));
        let mut searchers = Vec::new();
        for c in 0..CLIENTS {
            let mut client = SearchClient::new(daemon.channel().await);
            searchers.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                for i in 0..SEARCHES {
                    tally.record(search(&mut client, query(c, i)).await);
                }
                tally
            }));
        }
        let mut askers = Vec::new();
        for a in 0..ASKERS {
            let channel = daemon.channel().await;
            let storm_done = storm_done.clone();
            askers.push(tokio::spawn(async move {
                // The daemon answers an empty library without the model, so
                // the Asks start once some passages are searchable.
                let mut status = DaemonClient::new(channel.clone());
                while status.status(pb::StatusRequest {}).await.unwrap().into_inner().vectors_indexed == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let mut client = AssistantClient::new(channel);
                let (mut first, mut total, mut errors, mut nothing) = (Tally::default(), Tally::default(), Tally::default(), 0);
                let mut i = a;
                while !storm_done.load(Ordering::Relaxed) {
                    match ask(&mut client, QUESTIONS[i % QUESTIONS.len()]).await {
                        Ok((f, t, n)) => {
                            first.latencies.push(f);
                            total.latencies.push(t);
                            nothing += usize::from(n);
                        }
                        Err(e) => errors.record(Err(e)),
                    }
                    i += 1;
                }
                (first, total, errors, nothing)
            }));
        }
        let mut storm = Tally::default();
        for s in searchers {
            storm.merge(s.await.unwrap());
        }
        let storm_took = t_storm.elapsed();
        eprintln!("storm done in {:.1} s", storm_took.as_secs_f64());
        let (ready_at_storm_end, failed_at_storm_end, listed_at_storm_end) = books(&channel).await;
        let chunks_at_storm_end = DaemonClient::new(channel.clone())
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .vectors_indexed;
        storm_done.store(true, Ordering::Relaxed);
        let (mut first, mut total, mut ask_errors, mut nothing) = (Tally::default(), Tally::default(), Tally::default(), 0);
        for a in askers {
            let (f, t, e, n) = a.await.unwrap();
            first.merge(f);
            total.merge(t);
            ask_errors.merge(e);
            nothing += n;
        }
        let peak_storm = process_peak_mib(pid);

        // The rest of the ingestion, quiet.
        let ingest_took = loop {
            let s = DaemonClient::new(channel.clone()).status(pb::StatusRequest {}).await.unwrap().into_inner();
            let (ready, failed, listed) = books(&channel).await;
            if (listed == BOOKS && ready + failed == BOOKS && s.queue_pending == 0 && s.queue_running == 0)
                || t_ingest.elapsed() > INGEST_CAP
            {
                break t_ingest.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (ready_end, failed_end, _) = books(&channel).await;
        eprintln!("ingestion done in {:.1} s; fairness check", ingest_took.as_secs_f64());
        let status = DaemonClient::new(channel.clone()).status(pb::StatusRequest {}).await.unwrap().into_inner();

        // Fairness: polite clients alone, then beside a greedy connection.
        let (mut alone, _, _) = fairness(&daemon, false).await;
        let (mut beside, mut greedy, greedy_done) = fairness(&daemon, true).await;
        let peak_end = process_peak_mib(pid);
        sampling.store(false, Ordering::Relaxed);
        let max_rss = sampler.await.unwrap();
        daemon.stop().await;

        println!("\n## Load: {CLIENTS} clients × {SEARCHES} searches and {ASKERS} Ask streams while {BOOKS} speeches ingest ({model})\n");
        println!("| measure | value |");
        println!("|---|---:|");
        println!(
            "| searches (hybrid, k=10) | {} ok, errors {} |",
            storm.latencies.len(),
            storm.errors_text()
        );
        println!("| search p50 / p95 / p99 / max ms | {} |", storm.summary());
        println!(
            "| storm duration | {:.1} s ({:.0} searches/s) |",
            storm_took.as_secs_f64(),
            storm.latencies.len() as f64 / storm_took.as_secs_f64()
        );
        println!(
            "| Asks (fake endpoint, {PIECES} tokens) | {} ok ({} nothing relevant), errors {}; {} completions served |",
            total.latencies.len(),
            nothing,
            ask_errors.errors_text(),
            completions.load(Ordering::Relaxed)
        );
        println!("| Ask first token p50 / p95 / p99 / max ms | {} |", first.summary());
        println!("| Ask total p50 / p95 / p99 / max ms | {} |", total.summary());
        println!(
            "| books ready when the storm ended | {ready_at_storm_end} of {BOOKS} ({listed_at_storm_end} listed, {failed_at_storm_end} failed; {chunks_at_storm_end} passages embedded) |"
        );
        println!(
            "| ingestion of the folder | {ready_end} ready, {failed_end} failed in {:.1} s ({} passages) |",
            ingest_took.as_secs_f64(),
            status.chunks
        );
        println!("| daemon peak RSS (VmHWM) | {peak_storm:.0} MiB after the storm, {peak_end:.0} MiB at the end (max sampled VmRSS {max_rss:.0} MiB) |");
        println!("\n### Fairness: {POLITE} polite clients vs one greedy connection ({GREEDY_IN_FLIGHT} in flight), {} s each\n", FAIRNESS_FOR.as_secs());
        println!("| clients | searches | p50 / p95 / p99 / max ms | errors |");
        println!("|---|---:|---:|---:|");
        println!("| polite, alone | {} | {} | {} |", alone.latencies.len(), alone.summary(), alone.errors_text());
        println!("| polite, beside greedy | {} | {} | {} |", beside.latencies.len(), beside.summary(), beside.errors_text());
        println!("| greedy (one connection) | {greedy_done} | {} | {} |", greedy.summary(), greedy.errors_text());
        let ratio = ms(beside.p(99.0)) / ms(alone.p(99.0));
        println!("\npolite p99 beside greedy / alone: {ratio:.2}×");

        let errors = storm.error_count() + ask_errors.error_count() + alone.error_count() + beside.error_count() + greedy.error_count();
        assert_eq!(errors, 0, "every call must succeed");
    });
}
