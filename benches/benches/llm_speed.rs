//! Speed of the in-process LLM engine against llama.cpp on the same GGUF,
//! the same chat messages (rendered by each engine's own chat template),
//! the same threads and greedy decoding: prefill and decode tokens/s, and
//! their ratios (target ≥ 0.8 on both). llama.cpp is the prebuilt xllamacpp
//! wheel (`MINDORY_LLAMA_PYTHON`, as `scripts/llm-test-server` prints),
//! driven by `scripts/llm_speed.py`, which reports llama.cpp's own timings.
//!
//! The prompt is a question over the first ~1,000 tokens of the US
//! Constitution, the size of a lean Ask prompt; each engine answers it once
//! to warm up, then `RUNS` times with a fresh cache; medians are printed.
//! `MINDORY_BENCH_LLM=NAME` picks the model (default: the default answer
//! model), `MINDORY_BENCH_THREADS` the threads (default: every core).
//!
//! `cargo bench -p mindory-benches --bench llm_speed`

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use mindory_daemon::llm::local::LocalModel;
use mindory_daemon::llm::{ChatMessage, GenParams, Role};

const RUNS: usize = 3;
const MAX_TOKENS: usize = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn messages() -> Vec<ChatMessage> {
    let book = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/constitution.txt")).unwrap();
    let excerpt: String = book.chars().take(4200).collect();
    vec![
        ChatMessage::new(Role::System, "Answer the question from the passage only, in one or two sentences."),
        ChatMessage::new(
            Role::User,
            format!("Passage:\n{excerpt}\n\nQuestion: How old must a member of the House of Representatives be?"),
        ),
    ]
}

/// (prompt tokens, prefill tok/s, decode tok/s) medians.
struct Speed {
    prompt: usize,
    prefill: f64,
    decode: f64,
    answer: String,
}

fn local(gguf: &Path, messages: &[ChatMessage]) -> Speed {
    let t = Instant::now();
    let mut model = LocalModel::load(gguf, 4096).unwrap();
    eprintln!(
        "local: loaded in {} ms, RSS {:.0} MiB",
        t.elapsed().as_millis(),
        mindory_benches::rss_mib()
    );
    let prompt = model.prompt(messages).unwrap();
    let params = GenParams {
        max_tokens: MAX_TOKENS,
        ..GenParams::default()
    };
    let (mut prefill, mut decode, mut tokens, mut answer) = (Vec::new(), Vec::new(), 0, String::new());
    for run in 0..=RUNS {
        let mut text = String::new();
        let stats = model
            .generate_while(&prompt, &params, &|| true, &mut |piece| {
                text.push_str(piece);
                true
            })
            .unwrap();
        if run == 0 {
            eprintln!(
                "local: after one answer RSS {:.0} MiB, peak {:.0} MiB",
                mindory_benches::rss_mib(),
                mindory_benches::peak_mib()
            );
            continue;
        }
        tokens = stats.prompt_tokens;
        prefill.push(stats.prompt_tokens as f64 / (stats.prefill_ms as f64 / 1e3));
        let decode_ms = stats.total_ms.saturating_sub(stats.first_token_ms) as f64;
        decode.push(stats.completion_tokens.saturating_sub(1) as f64 / (decode_ms / 1e3));
        answer = text;
    }
    Speed {
        prompt: tokens,
        prefill: median(prefill),
        decode: median(decode),
        answer,
    }
}

fn llama(python: &str, gguf: &Path, threads: usize, messages: &[ChatMessage]) -> Speed {
    let json: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            serde_json::json!({"role": role, "content": m.content})
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/llm_speed.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .arg("--model")
        .arg(gguf)
        .args(["--threads", &threads.to_string(), "--runs", &RUNS.to_string()])
        .args(["--max-tokens", &MAX_TOKENS.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run scripts/llm_speed.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&json).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "llm_speed.py failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (mut prefill, mut decode, mut tokens, mut answer) = (Vec::new(), Vec::new(), 0, String::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        tokens = v["prompt_n"].as_u64().unwrap() as usize;
        prefill.push(v["prompt_n"].as_f64().unwrap() / (v["prompt_ms"].as_f64().unwrap() / 1e3));
        // llama.cpp times the tokens after the first in `predicted_ms`.
        decode.push(v["predicted_n"].as_f64().unwrap() / (v["predicted_ms"].as_f64().unwrap() / 1e3));
        answer = v["text"].as_str().unwrap_or_default().to_string();
    }
    Speed {
        prompt: tokens,
        prefill: median(prefill),
        decode: median(decode),
        answer,
    }
}

fn main() {
    let (name, gguf, threads) = mindory_benches::bench_llm();
    let messages = messages();
    let ours = local(&gguf, &messages);
    eprintln!("local answer: {}", ours.answer.trim());
    let theirs = std::env::var("MINDORY_LLAMA_PYTHON").ok().map(|python| {
        let s = llama(&python, &gguf, threads, &messages);
        eprintln!("llama.cpp answer: {}", s.answer.trim());
        s
    });
    println!("\nmodel {name}, {threads} threads, greedy, {MAX_TOKENS}-token answers, medians of {RUNS} runs\n");
    println!("| engine | prompt tokens | prefill tokens/s | decode tokens/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| in process (candle) | {} | {:.1} | {:.1} |",
        ours.prompt, ours.prefill, ours.decode
    );
    match theirs {
        Some(t) => {
            println!("| llama.cpp (xllamacpp) | {} | {:.1} | {:.1} |", t.prompt, t.prefill, t.decode);
            println!(
                "| ratio | | **{:.2}** | **{:.2}** |",
                ours.prefill / t.prefill,
                ours.decode / t.decode
            );
        }
        None => eprintln!("MINDORY_LLAMA_PYTHON is unset: no llama.cpp row (run scripts/llm-test-server)"),
    }
}
