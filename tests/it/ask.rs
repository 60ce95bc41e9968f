//! Ask end to end: answers from a real OpenAI-compatible server
//! (llama.cpp's own server, from the xllamacpp wheel, serving the Gemma GGUF) and from the in-process local
//! model, through the daemon and the CLI, with sources checked against the
//! stored text; and every fault an endpoint can throw, from a scripted
//! fake server, each ending in a clear error or a correct answer while the
//! daemon keeps serving.

use std::path::Path;
use std::time::Duration;

use mindory_daemon::llm::config::BackendChoice;
use mindory_daemon::llm::fake::{refused_port, Behaviour, FakeLlm};
use mindory_proto::pb::{self, assistant_client::AssistantClient, library_client::LibraryClient};
use tokio_stream::StreamExt;

use crate::support::{self, cli, fixture, LlamaServer, TestDaemon};

const QUESTION: &str = "How old must a senator be?";

/// Adds the Constitution and waits until it is ready; returns its id.
async fn add_constitution(daemon: &TestDaemon) -> u64 {
    let dir = daemon.root.join("books");
    let files = support::copy_into(&dir, &[fixture("constitution.txt")]);
    let added = daemon.add(&files).await;
    daemon.wait_idle(Duration::from_secs(300)).await;
    added[0].book_id
}

/// The whole normalized text of a book, to check char ranges against.
async fn book_text(socket: &Path, book_id: u64) -> Vec<char> {
    let channel = mindory_proto::connect(socket).await.unwrap();
    let p = LibraryClient::new(channel)
        .get_passage(pb::GetPassageRequest {
            book_id,
            at: Some(pb::get_passage_request::At::Offset(0)),
            max_chars: u32::MAX,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.start, 0);
    p.text.chars().collect()
}

/// The number of the longest section (Article I, Section 8: the powers of
/// Congress).
async fn longest_section(socket: &Path, book_id: u64) -> u32 {
    let channel = mindory_proto::connect(socket).await.unwrap();
    let sections = LibraryClient::new(channel)
        .get_book(pb::GetBookRequest { id: book_id })
        .await
        .unwrap()
        .into_inner()
        .sections;
    let (i, _) = sections.iter().enumerate().max_by_key(|(_, s)| s.chunks).expect("sections");
    i as u32 + 1
}

/// The first line of `ask --json`: the context event.
fn first_line(stdout: &[u8]) -> serde_json::Value {
    let line = String::from_utf8_lossy(stdout).lines().next().unwrap_or_default().to_string();
    let context: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(context["event"], "context", "{context}");
    context
}

/// Every event of one Ask, and the error that ended it, if any.
async fn ask(daemon: &TestDaemon, question: &str) -> (Vec<pb::ask_event::Kind>, Option<tonic::Status>) {
    ask_in(daemon, question, "").await
}

/// [`ask`] as a turn of `conversation` ("" = a new one).
async fn ask_in(daemon: &TestDaemon, question: &str, conversation: &str) -> (Vec<pb::ask_event::Kind>, Option<tonic::Status>) {
    let mut stream = match AssistantClient::new(daemon.channel().await)
        .ask(pb::AskRequest {
            question: question.into(),
            conversation_id: conversation.into(),
            ..Default::default()
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.extend(e.kind),
            Err(status) => return (events, Some(status)),
        }
    }
    (events, None)
}

fn done_of(events: &[pb::ask_event::Kind]) -> &pb::AskDone {
    match events.last() {
        Some(pb::ask_event::Kind::Done(d)) => d,
        other => panic!("the last event is not done: {other:?}"),
    }
}

fn tokens_of(events: &[pb::ask_event::Kind]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            pb::ask_event::Kind::Token(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect()
}

/// Checks the JSON lines of `ask --json`: context first, tokens, done last
/// with sources that are real stored text at their char ranges.
fn check_json_answer(stdout: &[u8], text: &[char]) -> serde_json::Value {
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines[0]["event"], "context", "{lines:?}");
    let given = lines[0]["passages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in_prompt"] == true)
        .count();
    assert!(given >= 1, "passages went into the prompt: {}", lines[0]);
    check_context_json(&lines[0]);
    let done = lines.last().unwrap();
    assert_eq!(done["event"], "done");
    let tokens: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "token").collect();
    assert!(tokens.len() >= 2, "the answer streamed in pieces: {} token events", tokens.len());
    let streamed: String = tokens.iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(done["answer"].as_str().unwrap(), streamed, "the answer is what streamed");
    assert!(!streamed.trim().is_empty());
    let sources = done["sources"].as_array().unwrap();
    assert_eq!(sources.len(), given, "every numbered passage is a source");
    for s in sources {
        let (start, end) = (s["start"].as_u64().unwrap() as usize, s["end"].as_u64().unwrap() as usize);
        let stored: String = text[start..end].iter().collect();
        assert_eq!(
            s["text"].as_str().unwrap(),
            stored,
            "source [{}] is the stored text at {start}..{end}",
            s["number"]
        );
        assert!(s["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
    assert!(done["timings"]["first_token_ms"].as_u64().unwrap() > 0);
    assert!(done["completion_tokens"].as_u64().unwrap() >= 2);
    done.clone()
}

/// The RAG view's figures in a context line: a passage left out says why,
/// and the budget's parts add up to the prompt.
fn check_context_json(context: &serde_json::Value) {
    let mut in_prompt_tokens = 0;
    for p in context["passages"].as_array().unwrap() {
        if p["in_prompt"] == true {
            assert!(p["left_out"].is_null(), "{p}");
            in_prompt_tokens += p["tokens"].as_u64().unwrap();
        } else {
            assert!(
                p["left_out"] == "below_floor" || p["left_out"] == "over_budget",
                "a passage left out says why: {p}"
            );
        }
    }
    let budget = &context["budget"];
    assert_eq!(budget["passages"].as_u64().unwrap(), in_prompt_tokens, "{context}");
    let parts: u64 = ["passages", "history", "framing"].iter().map(|k| budget[k].as_u64().unwrap()).sum();
    assert_eq!(parts, context["prompt_tokens"].as_u64().unwrap(), "{context}");
    assert!(budget["framing"].as_u64().unwrap() > 0, "{context}");
    assert!(budget["answer_reserve"].as_u64().unwrap() > 0, "{context}");
    assert!(
        budget["passages"].as_u64().unwrap() <= budget["passage_limit"].as_u64().unwrap(),
        "{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn left_out_passages_say_why_and_the_budget_adds_up() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(vec![
        Behaviour::stream(&["A senator must be thirty", " years old [1]."]),
        Behaviour::stream(&["Nine years [1]."]),
    ])
    .await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
        c.llm.max_tokens = 100;
        // Room for about one passage: the rest are over the budget.
        c.llm.passage_tokens = 300;
    })
    .await;
    add_constitution(&daemon).await;
    let out = cli(&daemon.socket, &["ask", QUESTION, "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let context: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    check_context_json(&context);
    let passages = context["passages"].as_array().unwrap();
    assert!(passages.iter().any(|p| p["left_out"] == "over_budget"), "{context}");
    assert_eq!(context["budget"]["passage_limit"], 300, "{context}");
    assert_eq!(context["budget"]["answer_reserve"], 100, "{context}");
    assert_eq!(context["budget"]["history"], 0, "a first question has no history: {context}");

    // A follow-up carries the first turn as history.
    let conversation = context["conversation_id"].as_str().unwrap().to_string();
    let (events, err) = ask_in(&daemon, "And how long a citizen?", &conversation).await;
    assert!(err.is_none(), "{err:?}");
    let Some(pb::ask_event::Kind::Context(c)) = events.first() else {
        panic!("the first event is the context: {events:?}")
    };
    let b = c.budget.expect("a budget");
    assert!(b.history > 0, "{b:?}");
    assert_eq!(b.passages + b.history + b.framing, c.prompt_tokens, "{b:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ask_through_a_real_openai_compatible_server() {
    let tmp = tempfile::tempdir().unwrap();
    let gemma = support::models_dir().join(mindory_proto::models::GEMMA_3_270M.file.dest);
    let server = LlamaServer::start(&tmp.path().join("llama-server.log"), &gemma, "gemma").await;
    let url = server.url.clone();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "gemma-3-270m");
        c.llm.context_tokens = 2048;
        c.llm.max_tokens = 64;
        c.llm.temperature = 0.0;
    })
    .await;
    let book = add_constitution(&daemon).await;
    let text = book_text(&daemon.socket, book).await;

    let info = support::cli_json(&daemon.socket, &["llm", "--json"]).await;
    assert_eq!(info["backend"], "openai");
    assert_eq!(info["ready"], true, "{info}");

    let t = std::time::Instant::now();
    let out = cli(&daemon.socket, &["ask", QUESTION, "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = check_json_answer(&out.stdout, &text);
    assert_eq!(done["backend"], "openai");
    eprintln!(
        "openai ask: {:?} wall, first token {} ms, {} tokens/s, answer: {}",
        t.elapsed(),
        done["timings"]["first_token_ms"],
        done["timings"]["tokens_per_second"],
        done["answer"]
    );

    // People get the answer, then where it comes from.
    let out = cli(&daemon.socket, &["ask", QUESTION]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("Sources:") || human.contains("Also given to the model"), "{human}");
    assert!(human.contains("constitution"), "sources name the book: {human}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_relevant_means_no_model_call() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(vec![Behaviour::stream(&["should", " not", " be", " called"])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
    })
    .await;
    add_constitution(&daemon).await;
    let (events, err) = ask(&daemon, "What is the recipe for a good sourdough starter with rye flour?").await;
    assert!(err.is_none(), "{err:?}");
    let done = done_of(&events);
    assert!(done.nothing_relevant, "{done:?}");
    let Some(pb::ask_event::Kind::Context(context)) = events.first() else {
        panic!("the first event is the context: {events:?}")
    };
    assert!(context.budget.is_none(), "no prompt, no budget: {context:?}");
    assert!(
        !context.passages.is_empty()
            && context
                .passages
                .iter()
                .all(|p| p.left_out == pb::LeftOut::BelowFloor as i32 && !p.in_prompt),
        "every passage shown is below the floor: {context:?}"
    );
    assert!(done.answer.contains("found nothing"), "{}", done.answer);
    assert!(fake.requests().is_empty(), "the model was not asked");
    daemon.stop().await;
}

/// Peak and current resident memory of a process, in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A `mindoryd` process answering with the local model `model` (greedy,
/// at most `max_tokens` per answer) with the Constitution added and ready.
/// `extra` adds environment (a panic point).
async fn start_local_with_constitution(
    root: &Path,
    model: &str,
    max_tokens: &str,
    extra: &[(&str, &str)],
) -> (tokio::process::Child, std::path::PathBuf) {
    let mut env = vec![
        ("MINDORY_LLM_BACKEND", "local"),
        ("MINDORY_LLM_LOCAL_MODEL", model),
        ("MINDORY_LLM_MAX_TOKENS", max_tokens),
        ("MINDORY_LLM_TEMPERATURE", "0"),
    ];
    env.extend_from_slice(extra);
    let (child, socket) = support::start_mindoryd_with(root, &env).await;
    let books = support::copy_into(&root.join("books"), &[fixture("constitution.txt")]);
    let out = cli(&socket, &["add", "--wait", books[0].to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (child, socket)
}

/// `mindory shutdown`, and the process exits cleanly within a minute.
async fn shut_down(socket: &Path, child: &mut tokio::process::Child) {
    let out = cli(socket, &["shutdown"]).await;
    assert!(out.status.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

/// The local backend's stated memory bound: the whole daemon (embedding
/// model, store, index and Gemma with an 8k context) stays under this.
const LOCAL_PEAK_MIB: u64 = 2048;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_gemma_survives_a_panic_answers_offline_summarizes_and_explains() {
    let tmp = tempfile::tempdir().unwrap();
    // The model thread panics on its first request (a test-hooks panic
    // point): that request fails with a clear error, the next ones work.
    let panic = [(mindory_daemon::test_hooks::PANIC_AT_ENV, "llm-generate")];
    let (mut child, socket) = start_local_with_constitution(tmp.path(), "gemma-3-270m", "48", &panic).await;
    let pid = child.id().unwrap();
    let (_, rss_before) = memory_mib(pid);
    let out = cli(&socket, &["ask", QUESTION]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("crashed"), "{stderr}");

    let info = support::cli_json(&socket, &["llm", "--json"]).await;
    assert_eq!(info["backend"], "local", "{info}");
    assert_eq!(info["context_tokens"], 8192);

    let text = book_text(&socket, 1).await;

    let out = cli(&socket, &["ask", QUESTION, "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = check_json_answer(&out.stdout, &text);
    assert_eq!(done["backend"], "local");
    assert_eq!(first_line(&out.stdout)["expansion"], "", "a base model does not widen the question");
    eprintln!(
        "local ask: first token {} ms, {} tokens/s, answer: {}",
        done["timings"]["first_token_ms"], done["timings"]["tokens_per_second"], done["answer"]
    );

    // The longest section fits an 8k context in one part; the answer streams.
    let article = longest_section(&socket, 1).await;
    let out = cli(&socket, &["summarize", "1", "--chapter", &article.to_string(), "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "context");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "done");
    assert!(!last["answer"].as_str().unwrap().trim().is_empty());

    // Explain a citation's location.
    let start = done["sources"][0]["start"].as_u64().unwrap().to_string();
    let out = cli(&socket, &["explain", "1", "--at", &start, "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "context");
    assert_eq!(lines[0]["passages"][0]["number"], 1);
    assert!(lines[0]["passages"][0]["start"].as_u64().unwrap() <= start.parse::<u64>().unwrap());
    assert_eq!(lines.last().unwrap()["event"], "done");

    let (peak, rss_after) = memory_mib(pid);
    eprintln!("local backend memory: RSS {rss_before} MiB before, {rss_after} MiB after; peak {peak} MiB (bound {LOCAL_PEAK_MIB})");
    assert!(
        peak < LOCAL_PEAK_MIB,
        "the daemon peaked at {peak} MiB with the local model, over the {LOCAL_PEAK_MIB} MiB bound"
    );
    shut_down(&socket, &mut child).await;
}

/// The stated memory bound with the default local model: 1.1 GB of weights,
/// about 1.5 GB of kernel tiles candle repacks them into on the first
/// question, the 8k-context cache, and the rest of the daemon.
const QWEN_PEAK_MIB: u64 = 5120;

/// The default local model (Qwen2.5-Coder-1.5B-Instruct through its own
/// chat template) answers the question a base model gets wrong, offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_qwen_answers_the_senator_question() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, socket) = start_local_with_constitution(tmp.path(), "qwen2.5-coder-1.5b", "96", &[]).await;
    let pid = child.id().unwrap();
    let info = support::cli_json(&socket, &["llm", "--json"]).await;
    assert_eq!(info["backend"], "local", "{info}");
    assert!(info["model"].as_str().unwrap().contains("qwen2.5-coder-1.5b"), "{info}");

    let text = book_text(&socket, 1).await;
    let out = cli(
        &socket,
        &["ask", "How old must a senator be, and for how long a citizen?", "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = check_json_answer(&out.stdout, &text);
    let context = first_line(&out.stdout);
    assert!(
        !context["expansion"].as_str().unwrap().trim().is_empty(),
        "the instruct model widened the question: {context}"
    );
    let answer = done["answer"].as_str().unwrap().to_lowercase();
    eprintln!(
        "qwen ask: first token {} ms, {} tokens/s, answer: {answer}",
        done["timings"]["first_token_ms"], done["timings"]["tokens_per_second"]
    );
    assert!(answer.contains("30") || answer.contains("thirty"), "{answer}");
    assert!(answer.contains('9') || answer.contains("nine"), "{answer}");
    // The sentence that answers is backed by a passage the reader can open.
    assert_eq!(done["grounded"], true, "{done}");
    let claims = done["claims"].as_array().unwrap();
    assert!(
        claims.iter().any(|c| c["status"] == "verified" || c["status"] == "inferred"),
        "{claims:?}"
    );
    let (peak, _) = memory_mib(pid);
    eprintln!("local qwen memory: peak {peak} MiB (bound {QWEN_PEAK_MIB})");
    assert!(
        peak < QWEN_PEAK_MIB,
        "the daemon peaked at {peak} MiB with Qwen 1.5B, over the {QWEN_PEAK_MIB} MiB bound"
    );
    shut_down(&socket, &mut child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn summarize_map_reduces_a_chapter_too_long_for_the_context() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(vec![Behaviour::stream(&["A part", " summary [1]."])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
        c.llm.context_tokens = 512;
        c.llm.max_tokens = 32;
    })
    .await;
    let book = add_constitution(&daemon).await;
    let article = longest_section(&daemon.socket, book).await;
    let mut stream = AssistantClient::new(daemon.channel().await)
        .summarize(pb::SummarizeRequest {
            book_id: book,
            chapter: article,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.extend(e.unwrap().kind);
    }
    let pb::ask_event::Kind::Context(context) = &events[0] else {
        panic!("{:?}", events[0])
    };
    let parts = context.passages.len();
    assert!(parts >= 3, "the section is cut into parts for a 512-token context: {parts}");
    let progress = events.iter().filter(|e| matches!(e, pb::ask_event::Kind::Progress(_))).count();
    assert_eq!(progress, parts, "one map step per part");
    // One request per part, then the reduce.
    assert_eq!(fake.requests().len(), parts + 1);
    let done = done_of(&events);
    assert_eq!(done.answer, "A part summary [1].");
    assert_eq!(done.sources.len(), parts);
    assert!(done.sources[0].cited && !done.sources[1].cited);
    // Parts tile the chapter in order.
    for w in context.passages.windows(2) {
        assert!(w[0].location.as_ref().unwrap().end <= w[1].location.as_ref().unwrap().end);
    }
    daemon.stop().await;
}

fn error_of(err: Option<tonic::Status>) -> tonic::Status {
    err.expect("the answer should have failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_faults_end_in_clear_errors_or_correct_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeLlm::start(vec![Behaviour::stream(&["ok"])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
        c.llm.first_token_timeout_s = 2;
        c.llm.total_timeout_s = 30;
        c.llm.max_retries = 2;
        c.llm.retry_backoff_ms = 20;
    })
    .await;
    add_constitution(&daemon).await;

    // 500, then a good answer: retried, and the answer is whole.
    fake.set_script(vec![
        Behaviour::Status(500, "boom".into()),
        Behaviour::stream(&["Thirty", " years [1]."]),
    ]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(tokens_of(&events), "Thirty years [1].");
    let done = done_of(&events);
    assert!(done.sources[0].cited && done.invalid_citations.is_empty(), "{done:?}");
    assert_eq!(fake.requests().len(), 2, "one retry after the 500");
    let body = fake.requests()[1].body.clone().unwrap();
    let prompt = body["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains("[1] constitution") && prompt.contains(QUESTION),
        "numbered passages and the question: {prompt}"
    );

    // 429, then a good answer.
    fake.set_script(vec![
        Behaviour::Status(429, r#"{"error":{"message":"slow down"}}"#.into()),
        Behaviour::stream(&["Thirty."]),
    ]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done_of(&events).answer, "Thirty.");

    // 429 for ever: a clear error after the retries.
    fake.set_script(vec![Behaviour::Status(429, r#"{"error":{"message":"slow down"}}"#.into())]);
    let status = error_of(ask(&daemon, QUESTION).await.1);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("429") && status.message().contains("3 attempts"),
        "{}",
        status.message()
    );

    // No first token within the timeout.
    fake.set_script(vec![Behaviour::Hang]);
    let t = std::time::Instant::now();
    let status = error_of(ask(&daemon, QUESTION).await.1);
    assert!(status.message().contains("first-token timeout"), "{}", status.message());
    assert!(t.elapsed() < Duration::from_secs(10), "the timeout is honoured: {:?}", t.elapsed());

    // Malformed data: a clear error naming it.
    fake.set_script(vec![Behaviour::Malformed(vec!["data: <html>oops</html>".into(), "".into()])]);
    let status = error_of(ask(&daemon, QUESTION).await.1);
    assert!(status.message().contains("malformed"), "{}", status.message());

    // Harmless junk (comments, unknown fields, keep-alives) is ignored.
    let chunk = |s: &str| format!(r#"data: {{"choices":[{{"delta":{{"content":"{s}"}},"finish_reason":null}}]}}"#);
    fake.set_script(vec![Behaviour::Malformed(vec![
        ": keep-alive".into(),
        "".into(),
        "event: message".into(),
        "retry: 10".into(),
        "junk line without a colon".into(),
        chunk("Thirty"),
        "".into(),
        "".into(),
        chunk(" years."),
        "".into(),
        "data: [DONE]".into(),
        "".into(),
    ])]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done_of(&events).answer, "Thirty years.");

    // Disconnect mid-stream: the pieces before it arrived, then an error.
    fake.set_script(vec![Behaviour::DisconnectAfter {
        pieces: vec!["Thirty".into(), " years".into(), " old.".into()],
        n: 2,
    }]);
    let (events, err) = ask(&daemon, QUESTION).await;
    let status = error_of(err);
    assert!(status.message().contains("after 2 token"), "{}", status.message());
    assert_eq!(tokens_of(&events), "Thirty years");
    assert_eq!(fake.requests().len(), 1, "no retry once text reached the caller");

    // A citation of a passage that was never given is flagged.
    fake.set_script(vec![Behaviour::stream(&["Thirty [1], or forty [99]."])]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done_of(&events).invalid_citations, vec![99]);

    // Every sentence is checked against the passages: an uncited fact gets
    // an inferred citation, a citation of a passage that does not say it is
    // flagged, and a claim no passage makes is "not found in your books".
    fake.set_script(vec![Behaviour::stream(&[
        "A Senator must have attained the age of thirty years and been nine years a citizen. ",
        "Bananas ripen quickly in tropical greenhouses [1]. ",
        "Unicorns graze peacefully on distant volcanic meadows.",
    ])]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    let done = done_of(&events);
    let statuses: Vec<&str> = done.claims.iter().map(|c| c.status.as_str()).collect();
    assert_eq!(statuses, ["inferred", "wrong", "unsupported"], "{:?}", done.claims);
    let inferred = &done.claims[0];
    let source = done.sources.iter().find(|s| s.number == inferred.supporting[0]).unwrap();
    assert!(
        source.text.contains("thirty Years"),
        "inferred from the passage that says it: {}",
        source.text
    );
    assert_eq!(done.claims[1].cited, vec![1]);
    let sentence: String = done
        .answer
        .chars()
        .skip(done.claims[2].start as usize)
        .take((done.claims[2].end - done.claims[2].start) as usize)
        .collect();
    assert_eq!(sentence, "Unicorns graze peacefully on distant volcanic meadows.");
    assert!(done.grounded);

    // An answer the passages do not back at all is marked so.
    fake.set_script(vec![Behaviour::stream(&[
        "Senators serve twelve years and must be eighteen years old.",
    ])]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    let done = done_of(&events);
    assert!(!done.grounded, "{:?}", done.claims);
    assert_eq!(done.claims[0].status, "unsupported");

    // The client cancels mid-answer: the upstream request is dropped.
    fake.set_script(vec![Behaviour::SlowStream {
        piece: "word ".into(),
        interval_ms: 200,
        count: 100,
    }]);
    let mut stream = AssistantClient::new(daemon.channel().await)
        .ask(pb::AskRequest {
            question: QUESTION.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut tokens = 0;
    while tokens < 2 {
        if let Some(pb::ask_event::Kind::Token(_)) = stream.next().await.unwrap().unwrap().kind {
            tokens += 1;
        }
    }
    drop(stream);
    assert!(
        fake.wait_client_closed(Duration::from_secs(5)).await,
        "the daemon closed the upstream request when its caller went away"
    );

    // Through all of that the daemon kept serving.
    daemon.status().await;
    fake.set_script(vec![Behaviour::stream(&["Still", " here [1]."])]);
    let (events, err) = ask(&daemon, QUESTION).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done_of(&events).answer, "Still here [1].");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_refused_and_no_backend_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/v1", refused_port());
    let daemon = TestDaemon::start_with(&tmp.path().join("refused"), move |c| {
        support::use_endpoint(c, url, "fake");
        c.llm.max_retries = 1;
        c.llm.retry_backoff_ms = 20;
    })
    .await;
    add_constitution(&daemon).await;
    let status = error_of(ask(&daemon, QUESTION).await.1);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("cannot connect") && status.message().contains("is the server running"),
        "{}",
        status.message()
    );
    let info = support::cli(&daemon.socket, &["llm"]).await;
    assert!(!info.status.success(), "not ready means exit 1");
    assert!(String::from_utf8_lossy(&info.stdout).contains("ready:    no"));
    daemon.status().await;
    daemon.stop().await;

    // No backend at all: Ask says how to configure one.
    let daemon = TestDaemon::start_with(&tmp.path().join("none"), |c| c.llm.backend = BackendChoice::None).await;
    let out = cli(&daemon.socket, &["ask", QUESTION]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mindory models fetch") && err.contains("base_url"), "{err}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_question_is_widened_by_the_models_own_answer() {
    use mindory_daemon::assistant::prompt::{GUESS_INSTRUCTIONS, GUESS_TOKENS};
    use mindory_daemon::search::{EXPANDED_KEYWORD, EXPANDED_VECTOR};
    let tmp = tempfile::tempdir().unwrap();
    // The first request is the model's own answer, the second the answer
    // from the passages.
    let guess = "A Senator must have attained to the Age of thirty Years.";
    let fake = FakeLlm::start(vec![Behaviour::stream(&[guess]), Behaviour::stream(&["Thirty years [1]."])]).await;
    let url = fake.url();
    let daemon = TestDaemon::start_with(tmp.path(), move |c| {
        support::use_endpoint(c, url, "fake");
        c.llm.expand_questions = true;
    })
    .await;
    add_constitution(&daemon).await;
    // Neither "senator" nor "thirty" is in the question.
    let question = "How old must one be to sit in the upper chamber?";
    let (events, err) = ask(&daemon, question).await;
    assert!(err.is_none(), "{err:?}");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "a guess, then the answer");
    let first = requests[0].body.clone().unwrap();
    assert_eq!(first["messages"][0]["content"], GUESS_INSTRUCTIONS, "{first}");
    assert_eq!(first["messages"][1]["content"], question, "{first}");
    assert_eq!(first["max_tokens"], GUESS_TOKENS, "{first}");
    let Some(pb::ask_event::Kind::Context(context)) = events.first() else {
        panic!("the first event is the context: {events:?}")
    };
    assert_eq!(context.expansion, guess);
    // The guess's words found the passage that holds the fact: first, and
    // ranked by the widened retrievers.
    let top = &context.passages[0];
    assert!(top.text.contains("Age of thirty Years"), "{}", top.text);
    let widened: Vec<&str> = top.retrievers.iter().map(|r| r.retriever.as_str()).collect();
    assert!(
        widened.contains(&EXPANDED_KEYWORD) && widened.contains(&EXPANDED_VECTOR),
        "{widened:?}"
    );
    let second = requests[1].body.clone().unwrap().to_string();
    assert!(second.contains("Age of thirty Years"), "the passage went into the prompt");
    assert_eq!(done_of(&events).answer, "Thirty years [1].");

    // Search takes an expansion from scripts too, in hybrid mode only, and
    // never for a quoted phrase, which stays a filter.
    let search = |query: &str, mode: pb::SearchMode, expansion: &str| {
        let request = pb::SearchRequest {
            query: query.into(),
            k: 5,
            mode: mode as i32,
            expansion: expansion.into(),
            ..Default::default()
        };
        let channel = daemon.channel();
        async move {
            pb::search_client::SearchClient::new(channel.await)
                .search(request)
                .await
                .unwrap()
                .into_inner()
                .hits
        }
    };
    let names =
        |hits: &[pb::SearchHit]| -> Vec<String> { hits.iter().flat_map(|h| h.retrievers.iter().map(|r| r.retriever.clone())).collect() };
    let hits = search(question, pb::SearchMode::Hybrid, guess).await;
    assert!(hits[0].text.contains("Age of thirty Years"), "{}", hits[0].text);
    assert!(names(&hits).iter().any(|n| n == EXPANDED_KEYWORD), "{:?}", names(&hits));
    for (query, mode) in [
        (question, pb::SearchMode::Keyword),
        (question, pb::SearchMode::Vector),
        ("\"upper chamber\"", pb::SearchMode::Hybrid),
    ] {
        let hits = search(query, mode, guess).await;
        assert!(
            !names(&hits).iter().any(|n| n.ends_with("+expansion")),
            "{query} {mode:?}: {:?}",
            names(&hits)
        );
    }

    // An endpoint that ignores `max_tokens` cannot make the guess long: it
    // is cut, and the answer follows.
    let endless: Vec<String> = (0..400).map(|i| format!("word{i} ")).collect();
    let endless: Vec<&str> = endless.iter().map(String::as_str).collect();
    fake.set_script(vec![Behaviour::stream(&endless), Behaviour::stream(&["Thirty years [1]."])]);
    let (events, err) = ask(&daemon, question).await;
    assert!(err.is_none(), "{err:?}");
    let Some(pb::ask_event::Kind::Context(context)) = events.first() else {
        panic!("the first event is the context: {events:?}")
    };
    let cap = mindory_daemon::assistant::prompt::GUESS_BYTES;
    assert!(
        context.expansion.len() >= cap / 2 && context.expansion.len() <= cap + 10,
        "{}",
        context.expansion.len()
    );
    assert_eq!(done_of(&events).answer, "Thirty years [1].");

    // An endpoint refusing the guess ends the Ask with its error at once,
    // instead of sending the answer's request to fail the same way.
    fake.set_script(vec![Behaviour::Status(400, r#"{"error":{"message":"model not found"}}"#.into())]);
    let (_, err) = ask(&daemon, question).await;
    let err = err.expect("the Ask fails");
    assert!(err.message().contains("model not found"), "{err:?}");
    assert_eq!(fake.requests().len(), 1, "one request for the guess, none for the answer");
    daemon.stop().await;
}
