//! The local model's engine: Mindory's in-process, offline text generator for
//! GGUF models of the `gemma3` and `qwen2` architectures: loading the file (its
//! weights, tokenizer and chat template), the public `LocalModel` API the daemon
//! drives from a dedicated thread, sampling, stop handling and streaming of text
//! pieces.
//!
//! Everything runs on the CPU through candle; nothing is fetched from the network.
//! Generation applies a mild repeat penalty to base models only: without it
//! base models such as Gemma 3 270M fall into loops quickly, while an instruct
//! model answering from passages must be free to repeat their words (the
//! penalty made it avoid the very tokens of the fact it should copy).

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

use std::path::Path;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::chat::{Prompt, PromptFormat};
use super::error::LocalError;
use super::model::{self, Model};
use super::tokenizer::StreamDecoder;
use super::tokens::GgufTokenizer;

/// Penalty applied to a base model's logits of tokens seen in the recent
/// window (the strength llama.cpp used by default until it turned the
/// penalty off; see [`repeat_penalty`]).
pub const REPEAT_PENALTY: f32 = 1.1;
/// How many most recent tokens (prompt included) the repeat penalty looks at.
pub const REPEAT_LAST_N: usize = 64;

/// Generation parameters for one call: the same type both backends take.
/// A temperature of 0 (or less) means greedy decoding; a `top_p` outside
/// (0, 1) disables nucleus sampling; generation stops before any `stop`
/// string, which is never emitted.
pub use crate::llm::GenParams;

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 0.95,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of sequence, end of turn or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The callback returned false.
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct GenStats {
    /// Prompt tokens, BOS included.
    pub prompt_tokens: usize,
    /// Of those, how many the cache already held from the previous call
    /// (a shared prefix), so were not computed again.
    pub reused_tokens: usize,
    pub completion_tokens: usize,
    pub prefill_ms: u64,
    /// From the start of the call to the first sampled token.
    pub first_token_ms: u64,
    pub total_ms: u64,
    pub finish: Finish,
}

pub struct LocalModel {
    model: Model,
    tokenizer: GgufTokenizer,
    format: PromptFormat,
    path: std::path::PathBuf,
    device: Device,
    model_id: String,
    context: usize,
    /// Token ids that end generation: `<eos>` and `<end_of_turn>` when present.
    stop_ids: Vec<u32>,
    /// The tokens whose keys and values the cache holds, position by
    /// position; empty when the cache is cleared or in an unknown state.
    cached: Vec<u32>,
}

/// llama.cpp's `general.file_type` numbers for the common quantisations.
fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "f32",
        1 => "f16",
        2 => "q4_0",
        3 => "q4_1",
        7 => "q8_0",
        8 => "q5_0",
        9 => "q5_1",
        10 => "q2_k",
        11 => "q3_k_s",
        12 => "q3_k_m",
        13 => "q3_k_l",
        14 => "q4_k_s",
        15 => "q4_k_m",
        16 => "q5_k_s",
        17 => "q5_k_m",
        18 => "q6_k",
        32 => "bf16",
        _ => return None,
    })
}

/// Lower-case, dash-separated form of a name ("Gemma 3 270m" -> "gemma-3-270m").
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_alphanumeric() || c == '.' || c == '_' {
            out.extend(c.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn model_id_from(ct: &gguf_file::Content, path: &Path) -> String {
    let name = ct
        .metadata
        .get("general.name")
        .and_then(|v| v.to_string().ok())
        .map(|s| slug(s))
        .filter(|s| !s.is_empty());
    let ft = ct
        .metadata
        .get("general.file_type")
        .and_then(|v| v.to_u32().ok())
        .and_then(file_type_name);
    match (name, ft) {
        (Some(n), Some(f)) => format!("{n}-{f}"),
        (Some(n), None) => n,
        _ => path
            .file_stem()
            .map(|s| slug(&s.to_string_lossy()))
            .unwrap_or_else(|| "gguf-model".to_string()),
    }
}

/// The repeat penalty for a model that takes its prompts in `format`: none
/// (1.0) for an instruct model with a chat template, [`REPEAT_PENALTY`] for a
/// base model continuing a transcript.
///
/// Why: an instruct model is trained to end its turn rather than loop, and
/// its job here is to copy facts, numbers and citation brackets from the
/// passages, which are exactly the recently seen tokens a penalty pushes
/// down. On the answer eval, Qwen2.5-Coder 1.5B with the penalty answered
/// three questions wrongly whose fact stood in passage [1], and llama.cpp
/// (penalty off by default) answered them right on the same GGUF.
pub fn repeat_penalty(format: &PromptFormat) -> f32 {
    match format {
        PromptFormat::Transcript => REPEAT_PENALTY,
        PromptFormat::Template(_) => 1.0,
    }
}

/// Divides positive logits and multiplies negative ones of recently seen tokens,
/// as in llama.cpp and candle's `apply_repeat_penalty`.
fn apply_repeat_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    let mut seen = std::collections::HashSet::with_capacity(recent.len());
    for &t in recent {
        if !seen.insert(t) {
            continue;
        }
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l >= 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Temperature + top-p sampling over raw logits (after penalties).
fn sample(logits: &[f32], temperature: f32, top_p: f32, rng: &mut fastrand::Rng) -> u32 {
    // NaN and non-positive temperatures both mean greedy decoding.
    if temperature.is_nan() || temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / temperature as f64;
    let mut probs: Vec<f64> = logits.iter().map(|&l| ((l as f64 - max as f64) * inv_t).exp()).collect();
    let sum: f64 = probs.iter().sum();
    for p in &mut probs {
        *p /= sum;
    }
    let mut candidates: Vec<u32>;
    if top_p > 0.0 && top_p < 1.0 {
        // Sorting all 262k probabilities each step is slow, so first try the 2,048
        // most likely tokens; the nucleus almost always lies inside them, and if it
        // does not, fall back to the full sort. The result is exact either way.
        let by_prob_desc = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]);
        let mut idx: Vec<u32> = (0..probs.len() as u32).collect();
        let k = 2048.min(idx.len());
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, by_prob_desc);
        }
        let mut head: Vec<u32> = idx[..k].to_vec();
        head.sort_by(by_prob_desc);
        let mut cum = 0.0;
        let mut cut = None;
        for (i, &t) in head.iter().enumerate() {
            cum += probs[t as usize];
            if cum >= top_p as f64 {
                cut = Some(i + 1);
                break;
            }
        }
        candidates = match cut {
            Some(c) => head[..c].to_vec(),
            None => {
                idx.sort_by(by_prob_desc);
                let mut cum = 0.0;
                let mut c = idx.len();
                for (i, &t) in idx.iter().enumerate() {
                    cum += probs[t as usize];
                    if cum >= top_p as f64 {
                        c = i + 1;
                        break;
                    }
                }
                idx.truncate(c);
                idx
            }
        };
    } else {
        candidates = (0..probs.len() as u32).collect();
    }
    let total: f64 = candidates.iter().map(|&t| probs[t as usize]).sum();
    let mut r = rng.f64() * total;
    for &t in &candidates {
        r -= probs[t as usize];
        if r < 0.0 {
            return t;
        }
    }
    // Rounding can leave a sliver of mass; the last candidate takes it.
    candidates.pop().unwrap_or_else(|| argmax(logits))
}

/// Holds back text that might be the start of a stop string, so a stop string is
/// never partly emitted.
struct StopFilter<'a> {
    stops: &'a [String],
    held: String,
}

enum Filtered {
    /// Emit this text and continue.
    Continue(String),
    /// Emit this text (what preceded the stop string) and stop.
    Stop(String),
}

impl<'a> StopFilter<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    fn push(&mut self, text: &str) -> Filtered {
        self.held.push_str(text);
        let first_hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_hit {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Filtered::Stop(out);
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let mut keep_from = self.held.len();
        for (i, _) in self.held.char_indices() {
            let tail = &self.held[i..];
            if self.stops.iter().any(|s| s.len() > tail.len() && s.starts_with(tail)) {
                keep_from = i;
                break;
            }
        }
        let out = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        Filtered::Continue(out)
    }

    fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

impl LocalModel {
    /// Loads weights and tokenizer; `context` caps prompt+answer tokens (e.g. 8192).
    pub fn load(path: &Path, context: usize) -> Result<Self, LocalError> {
        let (ct, mut reader) = super::tokens::open_gguf(path)?;
        let gguf_err = |detail: String| super::error::gguf_error(path, detail);
        let cfg = model::Config::from_gguf(&ct).map_err(|e| gguf_err(e.to_string()))?;
        if context < 2 {
            return Err(LocalError::InvalidParams(format!(
                "context of {context} tokens is too small; use e.g. 8192"
            )));
        }
        // Never promise more positions than the model was trained for.
        let context = context.min(cfg.context_length);
        let tokenizer = GgufTokenizer::from_gguf(&ct).map_err(|e| gguf_err(e.0))?;
        let format = PromptFormat::from_gguf(&ct, &tokenizer).map_err(gguf_err)?;
        let device = Device::Cpu;
        let model = Model::from_gguf(&ct, &mut reader, context, &device).map_err(|e| gguf_err(e.to_string()))?;
        // Every end-of-turn token the families use, whatever the file names
        // as its EOS.
        let mut stop_ids = vec![tokenizer.eos_id()];
        for end in ["<end_of_turn>", "<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = tokenizer.token_id(end) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        tracing::debug!(threads = candle_core::utils::get_num_threads(), context, "loaded local model");
        Ok(Self {
            model,
            model_id: model_id_from(&ct, path),
            tokenizer,
            format,
            path: path.to_path_buf(),
            device,
            context,
            stop_ids,
            cached: Vec::new(),
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn context_tokens(&self) -> usize {
        self.context
    }

    /// Number of tokens `text` encodes to, without BOS.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text).len()
    }

    /// The tokenizer, for callers that need ids (tests, prompt packing).
    pub fn tokenizer(&self) -> &GgufTokenizer {
        &self.tokenizer
    }

    /// How this model wants its messages.
    pub fn format(&self) -> &PromptFormat {
        &self.format
    }

    /// Renders chat messages in the model's own format.
    pub fn prompt(&self, messages: &[crate::llm::ChatMessage]) -> Result<Prompt, LocalError> {
        self.format.prompt(messages).map_err(|detail| LocalError::Template {
            path: self.path.clone(),
            detail,
        })
    }

    /// Streams text pieces to `on_text`; returning false from it stops generation (cancel).
    /// `prompt` is plain text (no template).
    pub fn generate(&mut self, prompt: &str, params: &GenParams, on_text: &mut dyn FnMut(&str) -> bool) -> Result<GenStats, LocalError> {
        self.generate_while(&Prompt::text(prompt), params, &|| true, on_text)
    }

    /// [`generate`](Self::generate) that also asks `still_wanted` between
    /// prefill chunks: a caller who went away during a long prompt (seconds
    /// on a CPU) is noticed within one chunk rather than at the first token.
    pub fn generate_while(
        &mut self,
        prompt: &Prompt,
        params: &GenParams,
        still_wanted: &dyn Fn() -> bool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenStats, LocalError> {
        let t0 = Instant::now();
        let mut tokens = Vec::new();
        tokens.extend(self.tokenizer.bos_id());
        tokens.extend(prompt.tokens(&self.tokenizer));
        let prompt_tokens = tokens.len();
        let limit = self.context.saturating_sub(params.max_tokens);
        if prompt_tokens > limit {
            return Err(LocalError::PromptTooLong {
                tokens: prompt_tokens,
                limit,
            });
        }
        if params.temperature.is_infinite() {
            return Err(LocalError::InvalidParams(
                "temperature must be finite; use 0 for greedy decoding or e.g. 0.7".into(),
            ));
        }

        // Every prompt starts with the same template header and instructions,
        // so the keys and values of the prefix it shares with what the cache
        // holds are kept and only the rest is fed. That is exact: a
        // position's keys and values depend only on the tokens up to it. At
        // least the last prompt token is fed, for the logits to sample from.
        // Nothing else of the previous call is used.
        let shared = self
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt_tokens - 1);
        let reused = if shared > 0 && self.model.truncate_kv_cache(shared) {
            shared
        } else {
            self.model.clear_kv_cache();
            0
        };
        // Until the prefill succeeds the cache's state is only known up to
        // `reused`; a cancelled or failed call must not be reused past it.
        self.cached.truncate(reused);
        let mut stats = GenStats {
            prompt_tokens,
            reused_tokens: reused,
            completion_tokens: 0,
            prefill_ms: 0,
            first_token_ms: 0,
            total_ms: 0,
            finish: Finish::Length,
        };
        if params.max_tokens == 0 {
            stats.total_ms = ms(t0);
            return Ok(stats);
        }

        let Some(mut logits) = self.model.forward_while(&tokens[reused..], &self.device, still_wanted)? else {
            stats.finish = Finish::Cancelled;
            stats.prefill_ms = ms(t0);
            stats.total_ms = stats.prefill_ms;
            return Ok(stats);
        };
        stats.prefill_ms = ms(t0);
        self.cached.clone_from(&tokens);

        // Seeded, so that sampling with the same seed and prompt gives the
        // same text.
        let mut rng = fastrand::Rng::with_seed(params.seed);
        let mut decoder = StreamDecoder::default();
        let mut stops = StopFilter::new(&params.stop);
        let mut finish = Finish::Length;
        let mut stop_string_hit = false;
        let penalty = repeat_penalty(&self.format);
        for step in 0..params.max_tokens {
            let mut l: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
            if penalty != 1.0 {
                let recent = &tokens[tokens.len().saturating_sub(REPEAT_LAST_N)..];
                apply_repeat_penalty(&mut l, recent, penalty);
            }
            let next = sample(&l, params.temperature, params.top_p, &mut rng);
            if step == 0 {
                stats.first_token_ms = ms(t0);
            }
            if self.stop_ids.contains(&next) {
                finish = Finish::Stop;
                break;
            }
            tokens.push(next);
            stats.completion_tokens += 1;

            let piece = decoder.push(&self.tokenizer, next);
            if !piece.is_empty() {
                match stops.push(&piece) {
                    Filtered::Continue(text) => {
                        if !text.is_empty() && !on_text(&text) {
                            finish = Finish::Cancelled;
                            break;
                        }
                    }
                    Filtered::Stop(text) => {
                        if !text.is_empty() {
                            // The caller may still cancel here; stopping either way.
                            let _ = on_text(&text);
                        }
                        finish = Finish::Stop;
                        stop_string_hit = true;
                        break;
                    }
                }
            }
            if step + 1 == params.max_tokens {
                break;
            }
            // A failed step leaves the cache one token short of `tokens`;
            // `cached` is only extended after the step succeeded.
            logits = self.model.forward(&[next], &self.device)?;
            self.cached.push(next);
        }

        if finish != Finish::Cancelled && !stop_string_hit {
            // Flush the bytes of an unfinished character and any text held back for
            // a stop string that never completed.
            let rest = decoder.finish();
            let tail = match stops.push(&rest) {
                Filtered::Continue(mut t) => {
                    t.push_str(&stops.finish());
                    t
                }
                Filtered::Stop(t) => {
                    finish = Finish::Stop;
                    t
                }
            };
            if !tail.is_empty() {
                // Generation is over, so a cancel request here changes nothing.
                let _ = on_text(&tail);
            }
        }
        stats.finish = finish;
        stats.total_ms = ms(t0);
        Ok(stats)
    }
}

/// The daemon moves the model onto a dedicated thread, so it must stay `Send`.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<LocalModel>();
};
