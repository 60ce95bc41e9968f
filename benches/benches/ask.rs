//! Ask latency for both LLM backends on the US Constitution (the repo's
//! fixture): time to first token, decode tokens/s, and the daemon's own
//! overhead before the model sees the prompt (retrieval, and merging +
//! packing + token counting). Prints a table of medians over the questions.
//!
//! The OpenAI-compatible backend is llama.cpp's server (the xllamacpp wheel)
//! on the same GGUF with the same threads (`MINDORY_LLAMA_PYTHON`, as
//! `scripts/llm-test-server` prints). `MINDORY_BENCH_LLM=NAME` picks the local
//! model (default: the default answer model, Qwen2.5-Coder-1.5B-Instruct;
//! `gemma-3-270m` for the small base model); `MINDORY_BENCH_THREADS` the
//! threads of both engines (default: every core).
//!
//! `cargo bench -p mindory-benches --bench ask`

use std::path::Path;
use std::time::Duration;

use mindory_benches::BenchDaemon;
use mindory_daemon::llm::config::BackendChoice;
use mindory_proto::pb::{self, assistant_client::AssistantClient, library_client::LibraryClient};
use tokio_stream::StreamExt;

const QUESTIONS: &[&str] = &[
    "How old must a senator be?",
    "Who has the power to declare war?",
    "How is the President elected?",
    "What does the first amendment protect?",
    "How can the Constitution be amended?",
];

#[derive(Default)]
struct Row {
    first_token: Vec<u64>,
    tps: Vec<f32>,
    retrieval: Vec<u64>,
    prompt: Vec<u64>,
    prompt_tokens: Vec<u64>,
}

fn median<T: Copy + PartialOrd>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn run(root: &Path, tweak: impl FnOnce(&mut mindory_daemon::Config)) -> Row {
    let (daemon, _) = BenchDaemon::start_with(root, tweak).await;
    let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/constitution.txt");
    LibraryClient::new(channel.clone())
        .add_paths(pb::AddPathsRequest {
            paths: vec![book.to_string_lossy().into_owned()],
        })
        .await
        .unwrap();
    loop {
        let books = LibraryClient::new(channel.clone())
            .list_books(pb::ListBooksRequest::default())
            .await
            .unwrap()
            .into_inner()
            .books;
        if books.iter().all(|b| b.status == pb::BookStatus::Ready as i32) && !books.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut row = Row::default();
    // One warm-up answer loads the local model; it is not counted.
    for (i, q) in std::iter::once(&"Warm up: what is the preamble about?")
        .chain(QUESTIONS)
        .enumerate()
    {
        let mut stream = AssistantClient::new(channel.clone())
            .ask(pb::AskRequest {
                question: q.to_string(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(e) = stream.next().await {
            if let Some(pb::ask_event::Kind::Done(d)) = e.unwrap().kind {
                let t = d.timings.unwrap();
                if i > 0 {
                    row.first_token.push(t.first_token_ms);
                    row.tps.push(t.tokens_per_second);
                    row.retrieval.push(t.retrieval_ms);
                    row.prompt.push(t.prompt_ms);
                    row.prompt_tokens.push(d.prompt_tokens);
                }
            }
        }
    }
    daemon.stop().await;
    row
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (name, gguf, threads) = mindory_benches::bench_llm();
    eprintln!("model {name}, {threads} threads");
    let mut rows = Vec::new();
    runtime.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let local_path = gguf.to_string_lossy().into_owned();
        let local = run(&tmp.path().join("local"), |c| {
            c.llm.backend = BackendChoice::Local;
            c.llm.local_model = local_path;
            c.llm.temperature = 0.0;
            c.llm.max_tokens = 128;
        })
        .await;
        rows.push(("local (in process)", local));
        match std::env::var("MINDORY_LLAMA_PYTHON") {
            Ok(python) => {
                let (mut server, url) = mindory_benches::llama_server(&python, &gguf, &name, threads).await;
                let openai = run(&tmp.path().join("openai"), |c| {
                    c.llm.backend = BackendChoice::Openai;
                    c.llm.base_url = url;
                    c.llm.model = name.clone();
                    c.llm.temperature = 0.0;
                    c.llm.max_tokens = 128;
                })
                .await;
                let _ = server.kill().await;
                rows.push(("openai (llama.cpp server, xllamacpp)", openai));
            }
            Err(_) => eprintln!("MINDORY_LLAMA_PYTHON is unset: the OpenAI-compatible row is left out (run scripts/llm-test-server)"),
        }
    });
    println!("\n| backend | prompt tokens | retrieval ms | prompt building ms | first token ms | decode tokens/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in &rows {
        println!(
            "| {name} | {} | {} | {} | {} | {:.1} |",
            median(&r.prompt_tokens),
            median(&r.retrieval),
            median(&r.prompt),
            median(&r.first_token),
            median(&r.tps)
        );
    }
    println!("\nmedians over {} questions, 128-token answers at temperature 0", QUESTIONS.len());
}
