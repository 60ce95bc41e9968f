//! Answer quality: factual questions over books of the corpus, each with
//! its expected short answer and a phrase the passage that backs it
//! contains, plus questions no book answers. Every question goes through
//! the daemon's `Ask` (hybrid retrieval, packing, the model, the sentence
//! check) as a user would send it, with no book filter.
//!
//! Printed per backend (one table row each):
//! - **right**: the answer contains the expected answer (any listed form,
//!   as whole words, case-insensitive, numbers read as numbers);
//! - **right and cited by the model**: right, and a sentence of it is
//!   `verified` against a passage it cites that contains the backing phrase;
//! - **right and cited**: the same, counting also the citations the sentence
//!   check infers for uncited sentences (shown to the reader as inferred);
//! - **right and cited, corrections included**: the same, counting also a
//!   wrong citation the check corrects (the CLI shows "cites [2], supported
//!   by [1]" and [1] holds the fact);
//! - **refused**: for unanswerable questions, the model said the books do
//!   not say (or retrieval found nothing relevant);
//! - **refused or flagged**: refused, or the sentence check found nothing in
//!   the passages to back the answer (`grounded: false`, which the CLI shows
//!   as "not found in your books");
//! - time to first token p50 and decode tokens/s p50.
//!
//! Every answer goes to `target/answer-eval.tsv` (with the passages that hold
//! the evidence and each claim's cited and supporting passages), the table
//! to `target/answer-eval.md`, and answers with their passages to
//! `target/answer-eval.jsonl`, so the sentence check can be studied without
//! running the model again.
//!
//! `MINDORY_EVAL_LLMS` lists the backends, comma-separated: a local model
//! name (`qwen2.5-coder-1.5b`, `qwen2.5-coder-0.5b`, `gemma-3-270m`) runs in
//! process; `llamacpp:NAME` runs llama.cpp's server (xllamacpp,
//! `MINDORY_LLAMA_PYTHON`) on the same GGUF behind the OpenAI-compatible
//! backend. Default: the default answer model.
//!
//! `MINDORY_EVAL_CONTEXT=1` studies the prompts only: whether the passage
//! holding each answer went into the prompt, and the prompt's size (the
//! model is started and cancelled). `MINDORY_LLM_*` variables change the
//! `[llm]` settings for either run.
//!
//! `MINDORY_EVAL_REJUDGE=target/answer-eval.jsonl` runs no model: it judges
//! the saved answers again with the current sentence check and prints the
//! table and every verdict that changed.
//!
//! `cargo bench -p mindory-benches --bench answers`

use std::path::{Path, PathBuf};
use std::time::Duration;

use mindory_benches::{corpus, BenchDaemon};
use mindory_daemon::assistant::{claims, prompt};
use mindory_daemon::llm::config::BackendChoice;
use mindory_proto::pb::{self, assistant_client::AssistantClient, library_client::LibraryClient};
use tokio_stream::StreamExt;

/// A question, the forms a right answer may take (empty: no book answers
/// it), and a phrase of the passage that backs the answer.
struct Question {
    text: &'static str,
    expect: &'static [&'static str],
    evidence: &'static str,
}

const fn q(text: &'static str, expect: &'static [&'static str], evidence: &'static str) -> Question {
    Question { text, expect, evidence }
}

const QUESTIONS: &[Question] = &[
    // The US Constitution (tests/fixtures/constitution.txt).
    q("How old must a senator be?", &["thirty", "30"], "thirty years"),
    q(
        "How old must a member of the House of Representatives be?",
        &["twenty five", "twenty-five", "25"],
        "twenty five years",
    ),
    q(
        "How old must the President be?",
        &["thirty five", "thirty-five", "35"],
        "thirty five years",
    ),
    q("How long is the term of a senator?", &["six", "6"], "six years"),
    q(
        "How many senators does each state have?",
        &["two", "2"],
        "two senators from each state",
    ),
    q(
        "Who is the President of the Senate?",
        &["vice president"],
        "president of the senate",
    ),
    q(
        "Which chamber has the sole power of impeachment?",
        &["house of representatives"],
        "sole power of impeachment",
    ),
    q("Who tries all impeachments?", &["senate"], "sole power to try all impeachments"),
    q(
        "Who presides when the President is tried on impeachment?",
        &["chief justice"],
        "chief justice shall preside",
    ),
    q(
        "What share of the senators present must concur to convict someone who is impeached?",
        &["two thirds", "two-thirds", "2/3"],
        "two thirds of the members present",
    ),
    q(
        "How many years must a representative have been a citizen?",
        &["seven", "7"],
        "seven years a citizen",
    ),
    q(
        "How many years must a senator have been a citizen of the United States?",
        &["nine", "9"],
        "nine years a citizen",
    ),
    q("Who has the power to declare war?", &["congress"], "to declare war"),
    q("How often must Congress assemble?", &["once"], "at least once in every year"),
    q("How long is the President's term of office?", &["four", "4"], "term of four years"),
    q(
        "For how many years must the President have been a resident of the United States?",
        &["fourteen", "14"],
        "fourteen years a resident",
    ),
    q(
        "Where must bills for raising revenue originate?",
        &["house of representatives"],
        "bills for raising revenue shall originate",
    ),
    q(
        "What vote does Congress need to pass a bill over the President's veto?",
        &["two thirds", "two-thirds", "2/3"],
        "two thirds of that house",
    ),
    q(
        "Who is commander in chief of the army and navy?",
        &["president"],
        "commander in chief",
    ),
    q(
        "What must the President take before he enters on the execution of his office?",
        &["oath"],
        "oath or affirmation",
    ),
    q(
        "How often is the enumeration of the people made?",
        &["ten", "10"],
        "term of ten years",
    ),
    q(
        "What does treason against the United States consist of?",
        &["levying war"],
        "levying war",
    ),
    q(
        "How many witnesses are needed to convict a person of treason?",
        &["two", "2"],
        "two witnesses",
    ),
    // Alice's Adventures in Wonderland (txt/alice29.txt).
    q("What was written on the little bottle Alice found?", &["drink me"], "drink me"),
    q("What words were marked on the little cake in currants?", &["eat me"], "eat me"),
    q("What was the Caterpillar smoking?", &["hookah"], "hookah"),
    q(
        "With whom was the Hatter having tea, besides the Dormouse?",
        &["march hare"],
        "march hare",
    ),
    q("What game did the Queen invite Alice to play?", &["croquet"], "croquet"),
    q(
        "What did the White Rabbit take out of its waistcoat-pocket?",
        &["watch"],
        "waistcoat",
    ),
    q("What is Alice's cat called?", &["dinah"], "dinah"),
    q("Who was accused of stealing the tarts?", &["knave"], "knave"),
    q("What did the Queen of Hearts order again and again?", &["off with"], "off with"),
    q("What did the Cheshire Cat leave behind when it vanished?", &["grin"], "grin"),
    // Pride and Prejudice (txt/prideprejudice.txt).
    q("What is the name of Mr. Darcy's estate in Derbyshire?", &["pemberley"], "pemberley"),
    q("With whom does Lydia Bennet run away?", &["wickham"], "wickham"),
    q("Whom does Charlotte Lucas marry?", &["collins"], "collins"),
    q("What is the name of Lady Catherine de Bourgh's estate?", &["rosings"], "rosings"),
    q("What is the name of Mr. Darcy's younger sister?", &["georgiana"], "georgiana"),
    q("Who is Mr. Collins's patroness?", &["catherine"], "patroness"),
    q("Which house near Longbourn does Mr. Bingley take?", &["netherfield"], "netherfield"),
    q(
        "In which town near Longbourn is the militia regiment quartered?",
        &["meryton"],
        "meryton",
    ),
    q("How many daughters do Mr. and Mrs. Bennet have?", &["five", "5"], "five daughters"),
    // Questions no book in the library answers.
    q("What is the capital of Australia?", &[], ""),
    q("How many moons does Jupiter have?", &[], ""),
    q("What salary in dollars does a senator receive each year?", &[], ""),
    q("Who invented the telephone?", &[], ""),
    q("What is the boiling point of water in kelvin?", &[], ""),
];

/// Phrases with which a model says the books do not answer.
const REFUSALS: &[&str] = &[
    "do not say",
    "does not say",
    "don't say",
    "doesn't say",
    "not mention",
    "no mention",
    "not contain",
    "not provide",
    "not specif",
    "no information",
    "not found",
    "cannot answer",
    "can't answer",
    "cannot be answered",
    "cannot determine",
    "not possible to determine",
    "not stated",
    "not given",
    "no answer",
    "not in the passages",
    "not included",
    "not address",
];

fn norm(s: &str) -> String {
    s.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A claim as the sentence check judged it.
struct Judged {
    status: String,
    cited: Vec<u32>,
    supporting: Vec<u32>,
}

impl Row {
    /// Scores one answer into the row and returns its verdict. `sources`
    /// are (number, text) of the passages the answer came with.
    fn judge(
        &mut self,
        question: &Question,
        answer: &str,
        sources: &[(u32, String)],
        claims: &[Judged],
        nothing_relevant: bool,
        grounded: bool,
    ) -> &'static str {
        // Right when an expected form appears as whole words, numbers read
        // as numbers: "thirty-five" is not "thirty", "two-thirds" is "two
        // thirds".
        let said = claims::plain_words(answer);
        let right = question.expect.iter().any(|e| {
            let e = claims::plain_words(e);
            !e.is_empty() && said.windows(e.len()).any(|w| w == e.as_slice())
        });
        let answer = norm(answer);
        let evidence = norm(question.evidence);
        let backs = |n: &u32| sources.iter().any(|(number, text)| number == n && norm(text).contains(&evidence));
        let cited = right && claims.iter().any(|c| c.status == "verified" && c.cited.iter().any(backs));
        let cited_any = cited
            || (right
                && claims
                    .iter()
                    .any(|c| c.status == "inferred" && c.supporting.first().is_some_and(backs)));
        // A citation the check corrects: the model cited a passage that
        // does not back the sentence, and the reader is shown the one that
        // does ("cites [2], supported by [1]").
        let cited_fixed = cited_any
            || (right
                && claims
                    .iter()
                    .any(|c| c.status == "wrong" && c.supporting.first().is_some_and(backs)));
        let refused = nothing_relevant || REFUSALS.iter().any(|r| answer.contains(r));
        if question.expect.is_empty() {
            self.unanswerable += 1;
            self.refused += refused as usize;
            self.flagged += (refused || !grounded) as usize;
            match (refused, grounded) {
                (true, _) => "refused",
                (false, false) => "flagged",
                (false, true) => "answered",
            }
        } else {
            self.answerable += 1;
            self.right += right as usize;
            self.cited += cited as usize;
            self.cited_any += cited_any as usize;
            self.cited_fixed += cited_fixed as usize;
            match (right, cited, cited_any, cited_fixed) {
                (true, true, _, _) => "right, cited",
                (true, false, true, _) => "right, inferred citation",
                (true, false, false, true) => "right, corrected citation",
                (true, false, false, false) => "right",
                _ => "wrong",
            }
        }
    }

    /// The row of the results table.
    fn table_row(&self, backend: &str) -> String {
        let pct = |n: usize, of: usize| format!("{n}/{of} ({:.0} %)", 100.0 * n as f64 / of.max(1) as f64);
        format!(
            "| {backend} | {} | {} | {} | {} | {} | {} | {:.1} s | {:.1} |\n",
            pct(self.right, self.answerable),
            pct(self.cited, self.answerable),
            pct(self.cited_any, self.answerable),
            pct(self.cited_fixed, self.answerable),
            pct(self.refused, self.unanswerable),
            pct(self.flagged, self.unanswerable),
            median(&self.first_token) as f64 / 1e3,
            median(&self.tps),
        )
    }
}

/// Judges saved answers again with the current sentence check, without
/// running a model: each line of `path` (an `answer-eval.jsonl`) has the
/// answer and the passages it came with. Prints the table and the answers
/// whose verdict changed.
fn rejudge(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<(String, Row)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let backend = v["backend"].as_str().unwrap().to_string();
        let question = QUESTIONS
            .iter()
            .find(|q| q.text == v["question"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{} is no longer a question of the eval", v["question"]));
        let answer = v["answer"].as_str().unwrap();
        let sources: Vec<(u32, String)> = v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["number"].as_u64().unwrap() as u32, s["text"].as_str().unwrap().to_string()))
            .collect();
        // The check reads each passage under its header, as the daemon does
        // (the page is not saved; older files have no chapter either).
        let headed: Vec<(u32, String)> = v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let header = prompt::header(
                    s["title"].as_str().unwrap_or_default(),
                    s["chapter"].as_str().unwrap_or_default(),
                    None,
                );
                (
                    s["number"].as_u64().unwrap() as u32,
                    format!("{header}\n{}", s["text"].as_str().unwrap()),
                )
            })
            .collect();
        let given: Vec<(u32, &str)> = headed.iter().filter(|(n, _)| *n > 0).map(|(n, t)| (*n, t.as_str())).collect();
        let checked = claims::check(answer, &given);
        let judged: Vec<Judged> = checked
            .iter()
            .map(|c| Judged {
                status: c.status.as_str().to_string(),
                cited: c.cited.clone(),
                supporting: c.supporting.clone(),
            })
            .collect();
        if rows.last().is_none_or(|(b, _)| *b != backend) {
            rows.push((backend.clone(), Row::default()));
        }
        let row = &mut rows.last_mut().expect("pushed").1;
        let verdict = row.judge(
            question,
            answer,
            &sources,
            &judged,
            v["nothing_relevant"].as_bool().unwrap_or(false),
            claims::grounded(&checked),
        );
        if verdict != v["verdict"].as_str().unwrap() {
            let detail: Vec<String> = checked
                .iter()
                .map(|c| format!("{}{:?}->{:?}@{:.2}", c.status.as_str(), c.cited, c.supporting, c.support))
                .collect();
            println!(
                "{} -> {verdict}: {} [{}] {}",
                v["verdict"],
                question.text,
                detail.join(" "),
                answer.replace('\n', " ")
            );
        }
    }
    println!("\n{}", TABLE_HEAD);
    for (backend, row) in &rows {
        print!("{}", row.table_row(backend));
    }
}

const TABLE_HEAD: &str = "| backend | right | right, cited by the model | right, cited (model or inferred) | right, cited (model, inferred or corrected) | unanswerable refused | refused or flagged | first token p50 | decode tokens/s p50 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|";

#[derive(Default)]
struct Row {
    right: usize,
    cited: usize,
    cited_any: usize,
    cited_fixed: usize,
    answerable: usize,
    refused: usize,
    flagged: usize,
    unanswerable: usize,
    first_token: Vec<u64>,
    tps: Vec<f32>,
}

/// Adds the books and waits until they are ready.
async fn ingest(channel: &tonic::transport::Channel, files: &[PathBuf]) {
    LibraryClient::new(channel.clone())
        .add_paths(pb::AddPathsRequest {
            paths: files.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
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
        if books.len() == files.len() && books.iter().all(|b| b.status == pb::BookStatus::Ready as i32) {
            return;
        }
        assert!(
            !books.iter().any(|b| b.status == pb::BookStatus::Failed as i32),
            "a book failed: {books:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether only the prompts are studied (`MINDORY_EVAL_CONTEXT=1`).
fn context_only() -> bool {
    std::env::var("MINDORY_EVAL_CONTEXT").is_ok_and(|v| v == "1")
}

/// The prompt study: for each answerable question, whether a passage that
/// went into the prompt holds the evidence, whether any retrieved one did,
/// and the prompt's size. Each Ask is dropped as soon as its context event
/// arrives, so the model only starts (and is cancelled): minutes, not a
/// quarter of an hour, to compare packing settings.
async fn packing(channel: &tonic::transport::Channel, backend: &str) {
    let (mut in_prompt, mut retrieved, mut answerable) = (0, 0, 0);
    let mut tokens = Vec::new();
    let mut counts = Vec::new();
    for question in QUESTIONS.iter().filter(|q| !q.expect.is_empty()) {
        let mut stream = AssistantClient::new(channel.clone())
            .ask(pb::AskRequest {
                question: question.text.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let context = loop {
            match stream.next().await.expect("a context event").unwrap().kind {
                Some(pb::ask_event::Kind::Context(c)) => break c,
                _ => continue,
            }
        };
        drop(stream);
        let evidence = norm(question.evidence);
        let holds = |p: &&pb::ContextPassage| norm(&p.text).contains(&evidence);
        let prompt_hit = context.passages.iter().filter(|p| p.in_prompt).find(holds).map(|p| p.number);
        let any_hit = context.passages.iter().find(holds).map(|p| p.rank);
        answerable += 1;
        in_prompt += prompt_hit.is_some() as usize;
        retrieved += any_hit.is_some() as usize;
        tokens.push(context.prompt_tokens);
        counts.push(context.passages.iter().filter(|p| p.in_prompt).count() as u32);
        let shape: Vec<String> = context
            .passages
            .iter()
            .map(|p| format!("{}:r{}:{:.3}:{}t", p.number, p.rank, p.score, p.tokens))
            .collect();
        eprintln!(
            "[{backend}] evidence in prompt as {prompt_hit:?}, retrieved at rank {any_hit:?}, {} prompt tokens: {} [{}]",
            context.prompt_tokens,
            question.text,
            shape.join(" ")
        );
    }
    println!(
        "\n| backend | evidence in the prompt | evidence retrieved | prompt tokens p50 | passages in the prompt p50 |\n|---|---:|---:|---:|---:|\n| {backend} | {in_prompt}/{answerable} | {retrieved}/{answerable} | {} | {} |",
        median(&tokens),
        median(&counts)
    );
}

async fn ask(channel: &tonic::transport::Channel, question: &str) -> pb::AskDone {
    let mut stream = AssistantClient::new(channel.clone())
        .ask(pb::AskRequest {
            question: question.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(e) = stream.next().await {
        if let Some(pb::ask_event::Kind::Done(d)) = e.unwrap().kind {
            return d;
        }
    }
    panic!("no done event for {question:?}");
}

async fn run(root: &Path, files: &[PathBuf], backend: &str, tsv: &mut String, jsonl: &mut String) -> Row {
    let llama = backend.strip_prefix("llamacpp:");
    let name = llama.unwrap_or(backend).to_string();
    let gguf = mindory_benches::llm_gguf(&name);
    let mut server = None;
    let url = match llama {
        None => None,
        Some(_) => {
            let python =
                std::env::var("MINDORY_LLAMA_PYTHON").expect("MINDORY_LLAMA_PYTHON (scripts/llm-test-server) for a llamacpp: backend");
            let (child, url) = mindory_benches::llama_server(&python, &gguf, &name, 2).await;
            server = Some(child);
            Some(url)
        }
    };
    let (daemon, _) = BenchDaemon::start_with(root, |c| {
        c.llm.temperature = 0.0;
        c.llm.max_tokens = 128;
        // MINDORY_LLM_PASSAGE_TOKENS, MINDORY_LLM_RETRIEVE_K and the other
        // [llm] variables try other settings.
        c.llm.apply_env(|k| std::env::var(k).ok()).expect("MINDORY_LLM_* variables");
        match &url {
            None => {
                c.llm.backend = BackendChoice::Local;
                c.llm.local_model = gguf.to_string_lossy().into_owned();
            }
            Some(url) => {
                c.llm.backend = BackendChoice::Openai;
                c.llm.base_url = url.clone();
                c.llm.model = name.clone();
            }
        }
    })
    .await;
    let channel = mindory_proto::connect(&daemon.socket).await.unwrap();
    ingest(&channel, files).await;
    let mut row = Row::default();
    if context_only() {
        packing(&channel, backend).await;
        daemon.stop().await;
        return row;
    }
    for question in QUESTIONS {
        let done = ask(&channel, question.text).await;
        let sources: Vec<(u32, String)> = done.sources.iter().map(|s| (s.number, s.text.clone())).collect();
        let claims: Vec<Judged> = done
            .claims
            .iter()
            .map(|c| Judged {
                status: c.status.clone(),
                cited: c.cited.clone(),
                supporting: c.supporting.clone(),
            })
            .collect();
        let verdict = row.judge(question, &done.answer, &sources, &claims, done.nothing_relevant, done.grounded);
        if let Some(t) = &done.timings {
            row.first_token.push(t.first_token_ms);
            row.tps.push(t.tokens_per_second);
        }
        let evidence = norm(question.evidence);
        let claims: Vec<String> = done
            .claims
            .iter()
            .map(|c| format!("{}{:?}->{:?}@{:.2}", c.status, c.cited, c.supporting, c.support))
            .collect();
        let evidence_in: Vec<u32> = done
            .sources
            .iter()
            .filter(|s| !evidence.is_empty() && norm(&s.text).contains(&evidence))
            .map(|s| s.number)
            .collect();
        jsonl.push_str(
            &serde_json::json!({
                "backend": backend,
                "question": question.text,
                "expect": question.expect,
                "evidence": question.evidence,
                "evidence_in": evidence_in,
                "verdict": verdict,
                "nothing_relevant": done.nothing_relevant,
                "answer": done.answer,
                "sources": done.sources.iter().map(|s| serde_json::json!({
                    "number": s.number,
                    "title": s.title,
                    "chapter": s.location.as_ref().map(|l| l.chapter.clone()).unwrap_or_default(),
                    "text": s.text,
                })).collect::<Vec<_>>(),
                "claims": claims,
            })
            .to_string(),
        );
        jsonl.push('\n');
        eprintln!(
            "[{backend}] {verdict}: {} -> {}",
            question.text,
            done.answer.trim().replace('\n', " ")
        );
        tsv.push_str(&format!(
            "{backend}\t{verdict}\t{}\t{:?}\t{}\t{}\t{}\n",
            question.text,
            evidence_in,
            claims.join(","),
            done.grounded,
            done.answer.trim().replace(['\n', '\t'], " ")
        ));
    }
    daemon.stop().await;
    if let Some(mut s) = server {
        let _ = s.kill().await;
    }
    row
}

fn median<T: Copy + PartialOrd + Default>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    if let Some(saved) = std::env::var_os("MINDORY_EVAL_REJUDGE") {
        rejudge(Path::new(&saved));
        return;
    }
    let backends: Vec<String> = std::env::var("MINDORY_EVAL_LLMS")
        .unwrap_or_else(|_| mindory_proto::models::DEFAULT_LLM.name.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let files = vec![
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/constitution.txt"),
        corpus("txt/alice29.txt"),
        corpus("txt/prideprejudice.txt"),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // One library for every backend: the books are embedded once.
    let tmp = tempfile::tempdir().unwrap();
    let mut tsv = String::from("backend\tverdict\tquestion\tevidence in\tclaims\tgrounded\tanswer\n");
    let mut jsonl = String::new();
    let mut table = format!("{TABLE_HEAD}\n");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    for backend in &backends {
        let row = runtime.block_on(run(tmp.path(), &files, backend, &mut tsv, &mut jsonl));
        if context_only() {
            // The prompt study printed its own table; the saved answers stay.
            continue;
        }
        table.push_str(&row.table_row(backend));
        // Written after every backend: a run of all four takes over an
        // hour, and one stopped early keeps what it finished.
        println!("\n{table}");
        std::fs::write(target.join("answer-eval.md"), &table).unwrap();
        std::fs::write(target.join("answer-eval.tsv"), &tsv).unwrap();
        std::fs::write(target.join("answer-eval.jsonl"), &jsonl).unwrap();
    }
}
