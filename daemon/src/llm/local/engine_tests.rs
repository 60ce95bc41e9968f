//! Tests against the real Gemma 3 270M GGUF file: tokenizer round trips and known
//! encodings, greedy generation, cancellation, context limits, chunked prefill and
//! the sliding-window decode path.
//!
//! The model is the one `mindory models fetch` installs (`MINDORY_MODELS_DIR`
//! or the default models dir); `scripts/test` fetches it first, so a missing
//! file fails the tests with the command to run.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use candle_core::quantized::gguf_file;

use super::super::tokenizer::Tokenizer;
use super::{Finish, GenParams, LocalError, LocalModel, PromptFormat};

fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os(mindory_proto::paths::MODELS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(mindory_proto::paths::default_models_dir);
    let p = dir.join(mindory_proto::models::GEMMA_3_270M.file.dest);
    assert!(p.exists(), "{} is missing; run `mindory models fetch`", p.display());
    Some(p)
}

fn tokenizer() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = model_path()?;
        let mut f = std::fs::File::open(&path).expect("open model file");
        let ct = gguf_file::Content::read(&mut f).expect("parse gguf");
        Some(Tokenizer::from_gguf(&ct).expect("build tokenizer"))
    })
    .as_ref()
}

/// One model shared by all generation tests; the mutex serialises them, which
/// also keeps the test run from competing with itself for the two cores.
fn model() -> Option<&'static Mutex<LocalModel>> {
    static MODEL: OnceLock<Option<Mutex<LocalModel>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = model_path()?;
            Some(Mutex::new(LocalModel::load(&path, 4096).expect("load model")))
        })
        .as_ref()
}

fn greedy(max_tokens: usize) -> GenParams {
    GenParams {
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
        stop: Vec::new(),
    }
}

/// Some varied English text of roughly `words` words, for long-prompt tests.
fn long_text(words: usize) -> String {
    let base = "The library opened early on Tuesday because the archivists wanted to \
        catalogue the new maps before the visitors arrived. Each map showed a river, \
        a mountain range or a coastline, and every one had notes written in the margins \
        by travellers who had crossed those lands centuries ago.";
    let mut s = String::new();
    let mut i = 0;
    while s.split_whitespace().count() < words {
        i += 1;
        s.push_str(&format!("Section {i}. {base} "));
    }
    s
}

#[test]
fn tokenizer_round_trips() {
    let Some(tok) = tokenizer() else { return };
    let samples = [
        "Hello world",
        "plain ASCII, with punctuation!?",
        "Café, naïve, façade, Ærøskøbing, ĳssel",
        "日本語のテキストと中文文本",
        "emoji 🦀🚀👩‍👩‍👧 and flags 🇫🇷",
        "line one\nline two\n\n\nline five\r\n",
        "multiple   spaces    here  and\ttabs\t\t",
        "  leading and trailing  ",
        "<eos> <bos> <end_of_turn> are literal text here",
        "rare chars: \u{1F9EC} \u{2FA1D} \u{10FFFD} \u{0}",
        "",
    ];
    for s in samples {
        let ids = tok.encode(s);
        assert_eq!(tok.decode(&ids), s, "round trip failed for {s:?} -> {ids:?}");
    }
}

#[test]
fn tokenizer_known_encodings() {
    let Some(tok) = tokenizer() else { return };
    let ids = tok.encode("Hello world");
    eprintln!("\"Hello world\" -> {ids:?}");
    assert!(!ids.is_empty() && ids.len() <= 4, "{ids:?}");
    assert_eq!(ids, vec![9259, 1902], "Hello + ▁world");

    // Special tokens in text are never interpreted.
    let ids = tok.encode("<eos>");
    assert!(!ids.contains(&1) && !ids.contains(&2), "{ids:?}");
    assert_eq!(tok.decode(&ids), "<eos>");

    // Newline runs and space runs are user-defined tokens in Gemma's vocabulary.
    assert_eq!(tok.encode("\n"), vec![107]);
    assert_eq!(tok.encode("\n\n"), vec![108]);
    assert_eq!(tok.encode("a  b").len(), 3, "{:?}", tok.encode("a  b"));

    // Byte fallback: a private-use character that is surely not in the vocabulary
    // must come out as its four UTF-8 bytes.
    let ids = tok.encode("\u{10FFFD}");
    let bytes: Vec<u8> = "\u{10FFFD}".bytes().collect();
    let expected: Vec<u32> = bytes
        .iter()
        .map(|b| tok.token_id(&format!("<0x{b:02X}>")).expect("byte token"))
        .collect();
    assert_eq!(ids, expected);
}

/// The textbook form of the SPM merge rule, quadratic but obviously right: keep
/// merging the adjacent pair whose concatenation is the best-scoring vocabulary
/// piece (leftmost on ties), then spell leftovers as bytes. Only for fragments
/// without user-defined pieces.
fn naive_spm(tok: &Tokenizer, raw: &str) -> Vec<u32> {
    let text: String = raw.chars().map(|c| if c == ' ' { '\u{2581}' } else { c }).collect();
    let mut syms: Vec<String> = text.chars().map(|c| c.to_string()).collect();
    loop {
        let mut best: Option<(f32, usize)> = None;
        for i in 0..syms.len().saturating_sub(1) {
            let cat = format!("{}{}", syms[i], syms[i + 1]);
            if let Some(&id) = tok.mergeable.get(&cat) {
                let sc = tok.scores[id as usize];
                if best.is_none_or(|(b, _)| sc > b) {
                    best = Some((sc, i));
                }
            }
        }
        let Some((_, i)) = best else { break };
        let right = syms.remove(i + 1);
        syms[i].push_str(&right);
    }
    let mut out = Vec::new();
    for s in syms {
        match tok.mergeable.get(&s) {
            Some(&id) => out.push(id),
            None => out.extend(s.bytes().map(|b| tok.token_id(&format!("<0x{b:02X}>")).expect("byte token"))),
        }
    }
    out
}

#[test]
fn heap_encoder_matches_naive_merge_rule() {
    let Some(tok) = tokenizer() else { return };
    let texts = [
        "The capital of France is Paris.",
        "antidisestablishmentarianism and pneumonoultramicroscopic words",
        "Café naïve façade Ærøskøbing ĳssel Zürich",
        "日本語のテキストと中文文本，还有한국어",
        "emoji 🦀🚀👩‍👩‍👧 flags 🇫🇷 \u{10FFFD}",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbb",
        "x=1; y = x*2 // comment {braces} [brackets] <eos>",
        "Section 12. The library opened early on Tuesday because the archivists wanted",
    ];
    for t in texts {
        assert_eq!(tok.encode(t), naive_spm(tok, t), "mismatch for {t:?}");
    }
}

#[test]
fn streaming_decoder_never_splits_characters() {
    let Some(tok) = tokenizer() else { return };
    let s = "\u{10FFFD}x\u{10FFFD}";
    let ids = tok.encode(s);
    let mut d = super::super::tokenizer::StreamDecoder::default();
    let mut pieces = Vec::new();
    for id in ids {
        pieces.push(d.push(tok, id));
    }
    pieces.push(d.finish());
    // Every piece is a complete &str by type; check none is a lone replacement.
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), s);
}

#[test]
fn count_tokens_matches_encode() {
    let Some(m) = model() else { return };
    let m = m.lock().unwrap_or_else(|e| e.into_inner());
    let text = "Counting tokens should agree with encoding: ünïcödé, 漢字, 🦀.";
    assert_eq!(m.count_tokens(text), m.tokenizer().encode(text).len());
    assert_eq!(m.count_tokens(""), 0);
    assert_eq!(m.model_id(), "gemma-3-270m-q4_k_m");
    assert_eq!(m.context_tokens(), 4096);
}

#[test]
fn greedy_capital_of_germany() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    let stats = m
        .generate("The capital of France is Paris. The capital of Germany is", &greedy(12), &mut |t| {
            out.push_str(t);
            true
        })
        .expect("generate");
    eprintln!("continuation: {out:?} stats: {stats:?}");
    assert!(out.contains("Berlin"), "{out:?}");
    assert!(stats.completion_tokens > 0);
}

/// Greedy continuation of `prompt` and its stats.
fn continue_greedy(m: &mut LocalModel, prompt: &str, max_tokens: usize) -> (String, super::GenStats) {
    let mut out = String::new();
    let stats = m
        .generate(prompt, &greedy(max_tokens), &mut |t| {
            out.push_str(t);
            true
        })
        .expect("generate");
    (out, stats)
}

#[test]
fn a_shared_prompt_prefix_is_reused_and_changes_nothing() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let head = "Passages: the capital of France is Paris, the capital of Italy is Rome, \
                the capital of Japan is Tokyo and the capital of Egypt is Cairo. ";
    let germany = format!("{head}Question: the capital of Germany is");
    let spain = format!("{head}Question: the capital of Spain is");
    // Whatever ran before, an unrelated prompt leaves only BOS in common.
    continue_greedy(&mut m, "Unrelated words come first here.", 4);
    let (cold, cold_stats) = continue_greedy(&mut m, &spain, 8);
    assert!(cold_stats.reused_tokens <= 1, "{cold_stats:?}");
    continue_greedy(&mut m, &germany, 8);
    let (warm, warm_stats) = continue_greedy(&mut m, &spain, 8);
    let head_tokens = m.count_tokens(head);
    assert!(
        warm_stats.reused_tokens > head_tokens && warm_stats.reused_tokens < warm_stats.prompt_tokens,
        "the header ({head_tokens} tokens) is reused, the question is fed: {warm_stats:?}"
    );
    assert_eq!(warm, cold, "reusing the prefix must not change the answer");
    assert!(cold.contains("Madrid"), "{cold:?}");
}

#[test]
fn stop_string_is_not_emitted() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let mut params = greedy(20);
    params.stop = vec!["Berlin".to_string()];
    let mut out = String::new();
    let stats = m
        .generate("The capital of France is Paris. The capital of Germany is", &params, &mut |t| {
            out.push_str(t);
            true
        })
        .expect("generate");
    assert_eq!(stats.finish, Finish::Stop, "{out:?}");
    assert!(!out.contains("Berlin"), "{out:?}");
}

#[test]
fn cancel_stops_early() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let mut calls = 0;
    let params = GenParams {
        max_tokens: 50,
        temperature: 0.8,
        top_p: 0.9,
        seed: 7,
        stop: Vec::new(),
    };
    let stats = m
        .generate("Once upon a time", &params, &mut |_| {
            calls += 1;
            calls < 3
        })
        .expect("generate");
    assert_eq!(stats.finish, Finish::Cancelled);
    assert_eq!(calls, 3);
    assert!(stats.completion_tokens < 50);
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let params = GenParams {
        max_tokens: 10,
        temperature: 0.9,
        top_p: 0.9,
        seed: 42,
        stop: Vec::new(),
    };
    let run = |m: &mut LocalModel| {
        let mut s = String::new();
        m.generate("My favourite book is", &params, &mut |t| {
            s.push_str(t);
            true
        })
        .expect("generate");
        s
    };
    let a = run(&mut m);
    let b = run(&mut m);
    assert_eq!(a, b, "same seed, same prompt, same text (KV cache reset works)");
}

#[test]
fn prompt_too_long_is_reported() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let text = long_text(4000);
    let n = m.count_tokens(&text);
    assert!(n + 1 > 4096 - 10, "test text too short: {n}");
    match m.generate(&text, &greedy(10), &mut |_| true) {
        Err(LocalError::PromptTooLong { tokens, limit }) => {
            assert_eq!(tokens, n + 1);
            assert_eq!(limit, 4096 - 10);
        }
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    // A short prompt with a huge answer budget is rejected too.
    assert!(matches!(
        m.generate("Hi", &greedy(4096), &mut |_| true),
        Err(LocalError::PromptTooLong { .. })
    ));
}

#[test]
fn long_prompt_chunked_prefill_and_sliding_decode() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    // ~1,500 tokens: several prefill chunks, and decoding beyond position 512 so
    // sliding layers must drop keys that fall out of their window.
    let mut prompt = long_text(1150);
    prompt.push_str("\nQuestion: what did the archivists want to catalogue?\nAnswer: the new");
    let n = m.count_tokens(&prompt);
    assert!((1300..1900).contains(&n), "prompt has {n} tokens");
    let mut out = String::new();
    let stats = m
        .generate(&prompt, &greedy(8), &mut |t| {
            out.push_str(t);
            true
        })
        .expect("generate");
    eprintln!("long prompt ({n} tokens) -> {out:?} {stats:?}");
    assert_eq!(stats.prompt_tokens, n + 1);
    assert!(stats.completion_tokens > 0);
    assert!(out.to_lowercase().contains("map"), "{out:?}");

    // The same text with another question: a query near the end only
    // sees the last 511 keys of a sliding layer, which its cache still
    // holds, so the whole text is reused.
    let again = prompt.replace("Question: what did", "Question: tell me, what did");
    let (out2, stats2) = continue_greedy(&mut m, &again, 8);
    assert!(stats2.reused_tokens > n - 20, "{stats2:?}");
    assert!(out2.to_lowercase().contains("map"), "{out2:?}");
    // A change near the start: the sliding layers have dropped the keys a
    // query there would see, so nothing is reused and the prompt is fed
    // whole, with the first answer.
    let (head, tail) = prompt.split_at(prompt.find(' ').expect("a space"));
    let changed = format!("{head} indeed{tail}");
    let (out3, stats3) = continue_greedy(&mut m, &changed, 8);
    assert_eq!(stats3.reused_tokens, 0, "{stats3:?}");
    assert!(out3.to_lowercase().contains("map"), "{out3:?}");
}

/// Decoding token by token past the sliding window must give the same logits as
/// prefilling the same tokens in chunks: both paths must apply the same causal and
/// sliding-window visibility, and cache compaction must keep the right keys.
///
/// This uses a model whose layer weights are dequantized to f32: with quantized
/// matmuls the two paths legitimately differ by up to ~1 logit, because activations
/// are rounded to 8 bits and tiny float differences flip roundings. In f32 they
/// agree to ~1e-4, so a window or mask bug (which shifts logits by whole units)
/// stands out.
#[test]
fn decode_path_matches_chunked_prefill_past_the_window() {
    let Some(path) = model_path() else { return };
    let Some(tok) = tokenizer() else { return };
    // Hold the shared model's lock so the two big tests do not run at once.
    let _guard = model().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
    let dev = candle_core::Device::Cpu;
    let mut f = std::io::BufReader::new(std::fs::File::open(&path).expect("open model"));
    let ct = gguf_file::Content::read(&mut f).expect("parse gguf");
    let mut m = super::super::model::Model::from_gguf_with(&ct, &mut f, 2048, &dev, true).expect("load exact model");
    let mut ids = vec![tok.bos_id];
    ids.extend(tok.encode(&long_text(900)));
    ids.truncate(1000);
    assert_eq!(ids.len(), 1000);

    let a = m.forward(&ids, &dev).expect("prefill all");
    let a: Vec<f32> = a.to_vec1().expect("logits");

    // 700 prefilled tokens, then 300 decode steps: the sliding layers' caches fill
    // up and are compacted during decode, well past the 512-token window.
    m.clear_kv_cache();
    let split = 700;
    let mut b = m.forward(&ids[..split], &dev).expect("prefill part");
    for &t in &ids[split..] {
        b = m.forward(&[t], &dev).expect("decode");
    }
    let b: Vec<f32> = b.to_vec1().expect("logits");
    let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    let max_diff = diff(&a, &b);
    eprintln!("max |prefill - decode| logit difference (f32 weights): {max_diff}");
    assert!(max_diff < 2e-3, "max diff {max_diff}");
    assert_eq!(super::argmax(&a), super::argmax(&b));
}

#[test]
fn a_caller_who_goes_away_stops_a_long_prefill_within_one_chunk() {
    let Some(m) = model() else { return };
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    let prompt = long_text(1150);
    assert!(m.count_tokens(&prompt) > 3 * super::super::model::PREFILL_CHUNK);
    // Wanted for the first chunk only, as when the gRPC caller drops mid-prefill.
    let asked = std::cell::Cell::new(0);
    let still_wanted = || {
        asked.set(asked.get() + 1);
        asked.get() == 1
    };
    let mut texts = 0;
    let stats = m
        .generate_while(&super::Prompt::text(prompt.as_str()), &greedy(8), &still_wanted, &mut |_| {
            texts += 1;
            true
        })
        .expect("generate");
    assert_eq!(stats.finish, Finish::Cancelled);
    assert_eq!(asked.get(), 2, "stopped before the second chunk");
    assert_eq!((stats.completion_tokens, texts), (0, 0));
    // The abandoned prompt leaves nothing behind for the next one.
    let mut out = String::new();
    m.generate("The capital of France is Paris. The capital of Germany is", &greedy(12), &mut |t| {
        out.push_str(t);
        true
    })
    .expect("generate after a cancelled prefill");
    assert!(out.contains("Berlin"), "{out:?}");
}

/// The backend starts with the tokenizer alone (the metadata it was built
/// from is dropped), and the first request reads the file again and loads
/// the weights: the model answers and reports itself loaded.
#[tokio::test]
async fn the_backend_starts_with_its_tokenizer_and_loads_the_model_on_the_first_request() {
    use crate::llm::{Backend, ChatMessage, Role};
    let Some(path) = model_path() else { return };
    let backend = super::super::LocalBackend::start(&path, &crate::llm::config::LlmConfig::default()).expect("start the backend");
    // Room for every piece, so the model thread never waits for this reader.
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let question = vec![ChatMessage::new(Role::User, "What is the capital of France?")];
    let outcome = backend
        .generate(question, greedy(4), tx)
        .await
        .expect("the first request loads the model and answers");
    let mut text = String::new();
    while let Some(piece) = rx.recv().await {
        text.push_str(&piece);
    }
    assert!(outcome.completion_tokens > 0 && !text.is_empty(), "{outcome:?} {text:?}");
    let (ready, detail) = backend.readiness().await;
    assert!(ready && detail.contains("loaded from"), "{detail}");
}

/// An instruct model copies facts and `[n]` from its passages, so it gets no
/// repeat penalty; a base model continuing a transcript keeps it against loops.
#[test]
fn only_base_models_get_a_repeat_penalty() {
    use super::super::chat::ChatTemplate;
    assert_eq!(super::repeat_penalty(&PromptFormat::Transcript), super::REPEAT_PENALTY);
    const { assert!(super::REPEAT_PENALTY > 1.0) };
    let chatml = ChatTemplate::new("{{ messages[0]['content'] }}".into(), String::new(), String::new()).unwrap();
    assert_eq!(super::repeat_penalty(&PromptFormat::Template(Box::new(chatml))), 1.0);
}
