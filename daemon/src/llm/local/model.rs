//! The decoder-only transformer forward pass over quantized GGUF weights for
//! the two architectures Mindory runs, Gemma 3 (`gemma3`) and Qwen 2 / 2.5
//! (`qwen2`), with their rotary tables, key/value cache and causal +
//! sliding-window masks.
//!
//! This is an adapted copy of `candle-transformers` 0.11.1
//! `src/models/quantized_gemma3.rs` and `quantized_qwen2.rs` (with bits of
//! `quantized_nn.rs` and `utils.rs`), Copyright the candle authors, licensed MIT
//! OR Apache-2.0 like this crate. The two architectures share one layer type:
//! Qwen 2 is Gemma 3 without the query/key norms, the post-attention and
//! post-feed-forward norms, the embedding scale and sliding windows, plus biases
//! on the query, key and value projections and SiLU instead of GELU. What changed
//! from the originals and why:
//! - Rotary sin/cos tables cover only the configured context (default 8192) rather
//!   than a hard-coded 131,072 positions, and are computed once per frequency (the
//!   local 10k base and the global 1e6 base) and shared by every layer through
//!   cheap tensor clones, instead of once per layer (~3.6 GB in the original).
//! - Sliding-window layers honour the window during single-token decode too: the
//!   original skipped the mask when `seq_len == 1`, letting them see the whole
//!   cache. Here they attend at most the last `sliding_window` positions (the
//!   current one included, as in llama.cpp and Hugging Face).
//! - Prompts are prefilled in chunks; masks are built from absolute positions for
//!   each chunk against only the keys it may see, so a long prompt never allocates
//!   a prompt x prompt attention matrix.
//! - The key/value cache is a preallocated buffer written in place, not a
//!   `Tensor::cat` per token; sliding layers keep only the last window of keys.
//! - The token embedding is not dequantized to f32 (262,144 x 640 x 4 bytes =
//!   671 MB). Rows are dequantized on lookup from the same Q8_0 tensor that the
//!   tied output projection uses as a quantized matmul, so it costs no extra memory.
//! - Gemma's MLP uses GELU (tanh approximation), its activation in both Hugging
//!   Face (`gelu_pytorch_tanh`) and llama.cpp; the original used SiLU. Qwen's
//!   uses SiLU.
//! - Qwen's original sized its rotary tables for the full 32,768-token context
//!   and dequantized the token embedding to f32 (151,936 x 1,536 x 4 bytes =
//!   933 MB); both get the same treatment as Gemma's.
//! - Grouped-query attention folds the query heads that share a key/value head into
//!   one matmul instead of copying keys and values per head (`repeat_kv`).
//! - Logits are computed only for the last position of the final chunk.
//! - Q4_1/Q5_0/Q5_1 weights are converted to Q8_0 at load time, because candle
//!   0.11 has only scalar kernels for them (see `fast_matmul`).
//! - Every matmul, prefill included, uses candle's quantized kernel (see
//!   `linear` for why an f32 detour was dropped).

use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};

pub const DEFAULT_SLIDING_WINDOW_TYPE: usize = 6;
pub const DEFAULT_ROPE_FREQUENCY: f32 = 1_000_000.;
pub const DEFAULT_ROPE_FREQUENCY_SLIDING: f32 = 10_000.;
/// Tokens per prefill forward pass. Big enough for efficient matmuls, small enough
/// that one chunk's attention scores stay small (4 heads x 256 x keys x 4 bytes).
pub const PREFILL_CHUNK: usize = 256;

/// Wraps a weight as a quantized matmul, converting the block formats that candle
/// 0.11 only implements with scalar code (Q4_1, Q5_0, Q5_1) to Q8_0, which has
/// SIMD kernels. The Q4_K_M Gemma file stores `attn_q`, `attn_k`, `ffn_gate`,
/// `ffn_up` and half of `attn_v` as Q5_0; left as is they took three quarters of
/// the run time. Q8_0 represents every Q5_0 value almost exactly (8 bits for a
/// 5-bit grid) at the cost of about 24 MB more memory for this model.
///
/// With `exact`, the weight is dequantized to f32 instead. Tests use this to compare
/// code paths: quantized matmuls round their activations to 8 bits, so last-bit
/// float differences between two mathematically equal paths can flip roundings and
/// grow to logit differences near 1.0, which would hide real bugs.
fn fast_matmul(qt: QTensor, exact: bool) -> Result<QMatMul> {
    if exact {
        return Ok(QMatMul::Tensor(qt.dequantize(&qt.device())?));
    }
    let qt = match qt.dtype() {
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 if qt.shape().dims().last().is_some_and(|d| d % 32 == 0) => {
            let f = qt.dequantize(&qt.device())?;
            QTensor::quantize(&f, GgmlDType::Q8_0)?
        }
        _ => qt,
    };
    QMatMul::from_qtensor(qt)
}

/// `xs @ w^T` with the quantized kernel, for decode and prefill alike.
///
/// An earlier version multiplied prefill chunks by a transient f32 copy of
/// each weight, which beat candle 0.10's untiled quantized kernel. candle
/// 0.11.1 tiles prefill rows (each weight quad is read once per tile of
/// quantized rows, on all cores), and the f32 detour became the slow path:
/// measured with `cargo bench --bench llm_speed`, prefill went from 25 to
/// 76–88 tokens/s for Qwen 1.5B and from 107 to 145–150 for Gemma 270M (two
/// runs each) when it was dropped. The price is memory: candle keeps the
/// repacked tiles of every Q4_K/Q6_K weight after first use (about 1.5 GB
/// for Qwen 1.5B).
fn linear(w: &QMatMul, xs: &Tensor) -> Result<Tensor> {
    w.forward(xs)
}

trait ApplyLinear {
    fn apply_linear(&self, xs: &Tensor) -> Result<Tensor>;
}

impl ApplyLinear for QMatMul {
    fn apply_linear(&self, xs: &Tensor) -> Result<Tensor> {
        linear(self, xs)
    }
}

#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn from_qtensor(weight: QTensor, eps: f32) -> Result<Self> {
        // GGUF Gemma norms already include the "+1" of Gemma's RMSNorm, so a plain
        // RMSNorm with the stored weight is correct.
        let weight = weight.dequantize(&weight.device())?;
        Ok(Self { weight, eps })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// The transformer families this module runs, from `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Gemma3,
    Qwen2,
}

impl Arch {
    /// Reads `general.architecture`; anything else is refused with the list of
    /// what is supported.
    pub fn of(ct: &gguf_file::Content) -> Result<Self> {
        let name = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        match name.as_str() {
            "gemma3" | "gemma2" | "gemma" | "gemma-embedding" => Ok(Arch::Gemma3),
            "qwen2" => Ok(Arch::Qwen2),
            other => candle_core::bail!("architecture {other:?} is not supported; Mindory runs gemma3 and qwen2 GGUF models"),
        }
    }

    /// The prefix of the architecture's metadata keys.
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            // Probe like the original, so gemma2-style keys still resolve.
            Arch::Gemma3 => &["gemma3", "gemma2", "gemma", "gemma-embedding"],
            Arch::Qwen2 => &["qwen2"],
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluTanh,
    Silu,
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    act: Activation,
}

impl Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = linear(&self.gate, xs)?;
        let gate = match self.act {
            Activation::GeluTanh => gate.gelu()?,
            Activation::Silu => candle_nn::ops::silu(&gate)?,
        };
        let up = linear(&self.up, xs)?;
        linear(&self.down, &(gate * up)?)
    }
}

/// Sin/cos tables for one rotary base, shared by all layers that use that base.
#[derive(Debug, Clone)]
struct Rotary {
    sin: Tensor,
    cos: Tensor,
}

impl Rotary {
    fn new(head_dim: usize, base: f32, max_positions: usize, device: &Device) -> Result<Self> {
        let inv_freq: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / base.powf(i as f32 / head_dim as f32))
            .collect();
        let n = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, n), device)?;
        let positions = Tensor::arange(0u32, max_positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_positions, 1))?;
        let angles = positions.matmul(&inv_freq)?;
        Ok(Self {
            sin: angles.sin()?,
            cos: angles.cos()?,
        })
    }

    fn apply(&self, q: &Tensor, k: &Tensor, pos: usize) -> Result<(Tensor, Tensor)> {
        let seq_len = q.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq_len)?;
        let sin = self.sin.narrow(0, pos, seq_len)?;
        let q = candle_nn::rotary_emb::rope(&q.contiguous()?, &cos, &sin)?;
        let k = candle_nn::rotary_emb::rope(&k.contiguous()?, &cos, &sin)?;
        Ok((q, k))
    }
}

/// One layer's keys and values, stored in place in a buffer shaped
/// `(1, n_kv_head, capacity, head_dim)`.
///
/// `start` is the absolute position of buffer row 0. Global layers keep
/// everything (start stays 0) and grow by doubling up to the context size.
/// Sliding layers have a fixed capacity of `window + PREFILL_CHUNK` and, when full,
/// drop all but the last `window - 1` rows, which is all that a later query can
/// still see.
#[derive(Debug, Clone)]
struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    start: usize,
    len: usize,
    max_capacity: usize,
    window: Option<usize>,
}

impl KvCache {
    fn new(window: Option<usize>, max_capacity: usize) -> Self {
        Self {
            k: None,
            v: None,
            start: 0,
            len: 0,
            max_capacity,
            window,
        }
    }

    fn clear(&mut self) {
        // Dropping the buffers returns their memory between requests; they are
        // cheap to reallocate compared with a forward pass.
        self.k = None;
        self.v = None;
        self.start = 0;
        self.len = 0;
    }

    /// Whether the rows a query at absolute position `pos` attends to are
    /// all here: not beyond what was cached and, for a sliding layer, not
    /// already dropped from the window's front.
    fn can_truncate(&self, pos: usize) -> bool {
        let needed_from = match self.window {
            Some(w) => pos.saturating_sub(w.saturating_sub(1)),
            None => 0,
        };
        pos <= self.start + self.len && self.start <= needed_from
    }

    /// Forgets every row at absolute position `pos` or later; only after
    /// [`can_truncate`](Self::can_truncate) said yes.
    fn truncate(&mut self, pos: usize) {
        self.len = pos - self.start;
    }

    fn capacity(&self) -> usize {
        self.k.as_ref().map(|t| t.dim(2).unwrap_or(0)).unwrap_or(0)
    }

    /// Moves rows `[from, from + count)` of the buffers into fresh buffers of
    /// `new_cap` rows, placing them at row 0.
    fn rebuild(&mut self, from: usize, count: usize, new_cap: usize) -> Result<()> {
        for slot in [&mut self.k, &mut self.v] {
            if let Some(old) = slot.as_ref() {
                let (b, h, _, d) = old.dims4()?;
                let fresh = Tensor::zeros((b, h, new_cap, d), old.dtype(), old.device())?;
                if count > 0 {
                    // Fewer rows than the buffer holds (a cache cut back to a
                    // shared prompt prefix, then outgrown) are a strided
                    // view, and `slice_set` copies only contiguous tensors.
                    fresh.slice_set(&old.narrow(2, from, count)?.contiguous()?, 2, 0)?;
                }
                *slot = Some(fresh);
            }
        }
        Ok(())
    }

    /// Appends `n` new rows at absolute positions `start + len ..`.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let n = k.dim(2)?;
        if self.k.is_none() {
            let (b, h, _, d) = k.dims4()?;
            let cap = match self.window {
                Some(w) => (w + n.max(PREFILL_CHUNK)).min(self.max_capacity.max(n)),
                None => n.max(1024).min(self.max_capacity.max(n)),
            };
            self.k = Some(Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?);
            self.v = Some(Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?);
        }
        if self.len + n > self.capacity() {
            match self.window {
                Some(w) => {
                    let keep = self.len.min(w.saturating_sub(1));
                    let cap = self.capacity().max(keep + n);
                    self.rebuild(self.len - keep, keep, cap)?;
                    self.start += self.len - keep;
                    self.len = keep;
                }
                None => {
                    let mut cap = self.capacity().max(1);
                    while cap < self.len + n {
                        cap *= 2;
                    }
                    let cap = cap.min(self.max_capacity.max(self.len + n));
                    self.rebuild(0, self.len, cap)?;
                }
            }
        }
        let (kb, vb) = match (&self.k, &self.v) {
            (Some(kb), Some(vb)) => (kb, vb),
            _ => candle_core::bail!("kv cache buffers missing after allocation"),
        };
        kb.slice_set(&k.contiguous()?, 2, self.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += n;
        Ok(())
    }

    /// Keys and values from absolute position `from` to the end of the cache.
    fn view_from(&self, from: usize) -> Result<(Tensor, Tensor)> {
        let (kb, vb) = match (&self.k, &self.v) {
            (Some(kb), Some(vb)) => (kb, vb),
            _ => candle_core::bail!("kv cache read before any append"),
        };
        let from = from.max(self.start);
        let offset = from - self.start;
        let count = self.len - offset;
        Ok((kb.narrow(2, offset, count)?, vb.narrow(2, offset, count)?))
    }
}

#[derive(Debug, Clone)]
struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    /// Projection biases (Qwen).
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    /// Per-head query and key norms (Gemma).
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    attn_norm: RmsNorm,
    /// Norms of the attention and feed-forward outputs (Gemma).
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    post_ffn_norm: Option<RmsNorm>,
    mlp: Mlp,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    /// `Some(window)` for local (sliding-window) layers.
    window: Option<usize>,
    rotary: Rotary,
    cache: KvCache,
}

/// Additive mask for queries at absolute positions `q0..q0+n` against keys at
/// absolute positions `k0..k0+kv_len`: 0 where attention is allowed, -inf where the
/// key is in the future or (for sliding layers) `window` or more positions back.
fn build_mask(n: usize, q0: usize, k0: usize, kv_len: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let mut mask = Vec::with_capacity(n * kv_len);
    for i in 0..n {
        let q = q0 + i;
        for j in 0..kv_len {
            let k = k0 + j;
            let visible = k <= q && window.is_none_or(|w| q - k < w);
            mask.push(if visible { 0f32 } else { f32::NEG_INFINITY });
        }
    }
    Tensor::from_vec(mask, (n, kv_len), device)
}

/// `x` plus the bias when there is one.
fn add_bias(x: Tensor, bias: &Option<Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => x.broadcast_add(b),
        None => Ok(x),
    }
}

/// `norm(x)` when there is a norm, else `x`.
fn maybe_norm(norm: &Option<RmsNorm>, x: Tensor) -> Result<Tensor> {
    match norm {
        Some(n) => n.forward(&x),
        None => Ok(x),
    }
}

impl Layer {
    fn attention(&mut self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let q = add_bias(self.wq.apply_linear(x)?, &self.bq)?
            .reshape((b, n, self.n_head, self.head_dim))?
            .transpose(1, 2)?;
        let k = add_bias(self.wk.apply_linear(x)?, &self.bk)?
            .reshape((b, n, self.n_kv_head, self.head_dim))?
            .transpose(1, 2)?;
        let v = add_bias(self.wv.apply_linear(x)?, &self.bv)?
            .reshape((b, n, self.n_kv_head, self.head_dim))?
            .transpose(1, 2)?;
        let q = maybe_norm(&self.q_norm, q)?;
        let k = maybe_norm(&self.k_norm, k)?;
        let (q, k) = self.rotary.apply(&q, &k, pos)?;

        self.cache.append(&k, &v.contiguous()?)?;
        // The oldest key any query of this chunk may see: everything for global
        // layers, the last `window` positions before the first query otherwise.
        let first_key = match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        };
        let (k, v) = self.cache.view_from(first_key)?;
        let k0 = first_key.max(self.cache.start);
        let kv_len = k.dim(2)?;

        // Fold the query heads that share one key/value head into the row
        // dimension: (b, kv_heads, group * n, head_dim). Heads of one group are
        // adjacent, so this is a plain reshape of the contiguous queries.
        let group = self.n_head / self.n_kv_head;
        let q = q.contiguous()?.reshape((b, self.n_kv_head, group * n, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = if n == 1 {
            // A single query at the newest position sees exactly the keys in the
            // view (the view was already cut to the window), so no mask is needed.
            scores
        } else {
            let mask = build_mask(n, pos, k0, kv_len, self.window, x.device())?;
            let scores = scores.reshape((b, self.n_kv_head, group, n, kv_len))?;
            scores.broadcast_add(&mask)?.reshape((b, self.n_kv_head, group * n, kv_len))?
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v.contiguous()?)?; // (b, kv, group * n, d)
        let out = out
            .reshape((b, self.n_head, n, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, n, self.n_head * self.head_dim))?;
        linear(&self.wo, &out)
    }

    fn forward(&mut self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let residual = x;
        let h = self.attn_norm.forward(x)?;
        let h = self.attention(&h, pos)?;
        let h = maybe_norm(&self.post_attn_norm, h)?;
        let x = (h + residual)?;
        let residual = &x;
        let h = self.ffn_norm.forward(&x)?;
        let h = self.mlp.forward(&h)?;
        let h = maybe_norm(&self.post_ffn_norm, h)?;
        h + residual
    }
}

/// Model hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub block_count: usize,
    pub embedding_length: usize,
    pub head_count: usize,
    pub head_count_kv: usize,
    pub key_length: usize,
    /// The local layers' window (Gemma); `None` when every layer is global.
    pub sliding_window: Option<usize>,
    pub sliding_window_type: usize,
    pub rope_freq_base: f32,
    pub rope_freq_base_sliding: f32,
    pub rms_norm_eps: f32,
    pub context_length: usize,
}

impl Config {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch = Arch::of(ct)?;
        let prefixes = arch.prefixes();
        let prefix = prefixes
            .iter()
            .find(|p| ct.metadata.contains_key(&format!("{p}.attention.head_count")))
            .copied()
            .unwrap_or(prefixes[0]);
        let get = |s: &str| {
            let key = format!("{prefix}.{s}");
            match ct.metadata.get(&key) {
                None => candle_core::bail!("cannot find {key} in metadata"),
                Some(v) => Ok(v),
            }
        };
        let u = |s: &str| -> Result<usize> { Ok(get(s)?.to_u32()? as usize) };
        let embedding_length = u("embedding_length")?;
        let head_count = u("attention.head_count")?;
        if head_count == 0 {
            candle_core::bail!("{prefix}.attention.head_count is 0");
        }
        Ok(Self {
            arch,
            block_count: u("block_count")?,
            embedding_length,
            head_count,
            head_count_kv: u("attention.head_count_kv")?,
            // Qwen files leave the head size implicit.
            key_length: u("attention.key_length").unwrap_or(embedding_length / head_count),
            sliding_window: match arch {
                Arch::Gemma3 => Some(u("attention.sliding_window")?),
                Arch::Qwen2 => None,
            },
            sliding_window_type: u("attention.sliding_window_type").unwrap_or(DEFAULT_SLIDING_WINDOW_TYPE),
            rope_freq_base: get("rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(DEFAULT_ROPE_FREQUENCY),
            rope_freq_base_sliding: get("rope.local_freq_base")
                .and_then(|v| v.to_f32())
                .unwrap_or(DEFAULT_ROPE_FREQUENCY_SLIDING),
            rms_norm_eps: get("attention.layer_norm_rms_epsilon")?.to_f32()?,
            context_length: u("context_length").unwrap_or(8192),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    /// Tied Q8_0 token embedding: rows are dequantized on lookup, and the same
    /// quantized tensor is the output projection.
    embedding: QMatMul,
    output: QMatMul,
    /// Gemma multiplies the embeddings by sqrt(embedding_length); Qwen does not.
    embed_scale: Option<f64>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    max_positions: usize,
    /// Absolute position of the next token to be fed.
    next_pos: usize,
}

impl Model {
    /// Loads all weights. `max_positions` bounds the rotary tables and the cache.
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        Self::from_gguf_with(ct, reader, max_positions, device, false)
    }

    /// Like `from_gguf`; `exact` keeps the layer weights as dequantized f32 (about
    /// 400 MB more, and slower), which makes the forward pass a continuous function
    /// of its inputs. Only meant for tests and debugging.
    pub fn from_gguf_with<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        max_positions: usize,
        device: &Device,
        exact: bool,
    ) -> Result<Self> {
        let cfg = Config::from_gguf(ct)?;
        if cfg.head_count_kv == 0 || cfg.head_count % cfg.head_count_kv != 0 {
            candle_core::bail!(
                "head_count {} is not a multiple of head_count_kv {}",
                cfg.head_count,
                cfg.head_count_kv
            );
        }
        let eps = cfg.rms_norm_eps;
        let embd = Arc::new(ct.tensor(reader, "token_embd.weight", device)?);
        let embedding = QMatMul::from_arc(embd.clone())?;
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => QMatMul::from_qtensor(ct.tensor(reader, "output.weight", device)?)?,
            // Gemma ties the output projection to the embedding; Qwen 2.5 1.5B
            // has its own (small Qwen models tie theirs too).
            false => QMatMul::from_arc(embd)?,
        };
        let norm = RmsNorm::from_qtensor(ct.tensor(reader, "output_norm.weight", device)?, eps)?;

        // One table per rotary base, cloned (sharing storage) into each layer.
        let rot_global = Rotary::new(cfg.key_length, cfg.rope_freq_base, max_positions, device)?;
        let rot_local = match cfg.sliding_window {
            Some(_) => Rotary::new(cfg.key_length, cfg.rope_freq_base_sliding, max_positions, device)?,
            None => rot_global.clone(),
        };
        let gemma = cfg.arch == Arch::Gemma3;

        let mut layers = Vec::with_capacity(cfg.block_count);
        for i in 0..cfg.block_count {
            let p = format!("blk.{i}");
            // Both kinds of weight read from the same reader, so they are fetched
            // through one closure that returns the raw quantized tensor.
            let mut t = |name: &str| ct.tensor(reader, &format!("{p}.{name}.weight"), device);
            let wq = fast_matmul(t("attn_q")?, exact)?;
            let wk = fast_matmul(t("attn_k")?, exact)?;
            let wv = fast_matmul(t("attn_v")?, exact)?;
            let wo = fast_matmul(t("attn_output")?, exact)?;
            let gate = fast_matmul(t("ffn_gate")?, exact)?;
            let up = fast_matmul(t("ffn_up")?, exact)?;
            let down = fast_matmul(t("ffn_down")?, exact)?;
            let attn_norm = RmsNorm::from_qtensor(t("attn_norm")?, eps)?;
            let ffn_norm = RmsNorm::from_qtensor(t("ffn_norm")?, eps)?;
            let mut gemma_norm = |name: &str| -> Result<Option<RmsNorm>> {
                match gemma {
                    true => Ok(Some(RmsNorm::from_qtensor(t(name)?, eps)?)),
                    false => Ok(None),
                }
            };
            let q_norm = gemma_norm("attn_q_norm")?;
            let k_norm = gemma_norm("attn_k_norm")?;
            let post_attn_norm = gemma_norm("post_attention_norm")?;
            let post_ffn_norm = gemma_norm("post_ffw_norm")?;
            let mut bias = |name: &str| -> Result<Option<Tensor>> {
                let key = format!("{p}.{name}.bias");
                match ct.tensor_infos.contains_key(&key) {
                    true => Ok(Some(ct.tensor(reader, &key, device)?.dequantize(device)?)),
                    false => Ok(None),
                }
            };
            let (bq, bk, bv) = (bias("attn_q")?, bias("attn_k")?, bias("attn_v")?);
            // Every `sliding_window_type`-th layer is global; the rest are local.
            let window = cfg.sliding_window.filter(|_| (i + 1) % cfg.sliding_window_type != 0);
            let sliding = window.is_some();
            layers.push(Layer {
                wq,
                wk,
                wv,
                wo,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                attn_norm,
                post_attn_norm,
                ffn_norm,
                post_ffn_norm,
                mlp: Mlp {
                    gate,
                    up,
                    down,
                    act: if gemma { Activation::GeluTanh } else { Activation::Silu },
                },
                n_head: cfg.head_count,
                n_kv_head: cfg.head_count_kv,
                head_dim: cfg.key_length,
                window,
                rotary: if sliding { rot_local.clone() } else { rot_global.clone() },
                cache: KvCache::new(window, max_positions),
            });
        }
        Ok(Self {
            embedding,
            output,
            embed_scale: gemma.then(|| (cfg.embedding_length as f64).sqrt()),
            layers,
            norm,
            max_positions,
            next_pos: 0,
        })
    }

    /// Forgets all cached keys and values; the next token is position 0.
    pub fn clear_kv_cache(&mut self) {
        for l in &mut self.layers {
            l.cache.clear();
        }
        self.next_pos = 0;
    }

    /// Keeps the cached keys and values of the first `pos` positions and
    /// forgets the rest, so a prompt that shares its first `pos` tokens with
    /// the previous one is fed from there on. Returns false, with the cache
    /// cleared, when some layer no longer holds what that needs (a sliding
    /// layer that moved past it); the caller then feeds the whole prompt.
    pub fn truncate_kv_cache(&mut self, pos: usize) -> bool {
        // Check every layer before changing any, so a refusal leaves no
        // half-truncated cache behind.
        let ok = pos <= self.next_pos && self.layers.iter().all(|l| l.cache.can_truncate(pos));
        if !ok {
            self.clear_kv_cache();
            return false;
        }
        for l in &mut self.layers {
            l.cache.truncate(pos);
        }
        self.next_pos = pos;
        true
    }

    /// Feeds `tokens` at the current position, chunking long inputs, and returns
    /// the logits (f32, vocabulary-sized) for the last token.
    pub fn forward(&mut self, tokens: &[u32], device: &Device) -> Result<Tensor> {
        match self.forward_while(tokens, device, &|| true)? {
            Some(logits) => Ok(logits),
            None => candle_core::bail!("forward produced no output"),
        }
    }

    /// Like [`forward`](Self::forward), but asks `keep_going` before each
    /// chunk and returns `None` as soon as it says no, so a long prefill can
    /// be abandoned within one chunk. The cache then holds a partial prompt;
    /// callers clear it before the next one.
    pub fn forward_while(&mut self, tokens: &[u32], device: &Device, keep_going: &dyn Fn() -> bool) -> Result<Option<Tensor>> {
        if tokens.is_empty() {
            candle_core::bail!("forward called with no tokens");
        }
        if self.next_pos + tokens.len() > self.max_positions {
            candle_core::bail!(
                "position {} exceeds the {} positions this model was loaded for",
                self.next_pos + tokens.len(),
                self.max_positions
            );
        }
        let mut last = None;
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            if !keep_going() {
                return Ok(None);
            }
            last = Some(self.forward_chunk(chunk, device)?);
        }
        match last {
            Some(x) => {
                // Only the final position is needed to sample the next token.
                let n = x.dim(1)?;
                let x = x.i((.., n - 1, ..))?;
                let x = self.norm.forward(&x)?;
                Ok(Some(self.output.forward(&x)?.squeeze(0)?))
            }
            None => candle_core::bail!("forward produced no output"),
        }
    }

    /// Runs one chunk through all layers and returns the final hidden states.
    fn forward_chunk(&mut self, tokens: &[u32], device: &Device) -> Result<Tensor> {
        let pos = self.next_pos;
        let ids = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let mut x = self.embedding.embedding(&ids)?;
        if let Some(scale) = self.embed_scale {
            x = (x * scale)?;
        }
        for layer in self.layers.iter_mut() {
            x = layer.forward(&x, pos)?;
        }
        self.next_pos += tokens.len();
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_mask_uses_absolute_positions() {
        // Queries at positions 10..13 against keys 8..13 with a window of 3: each
        // query sees itself and the two positions before it.
        let m = build_mask(3, 10, 8, 5, Some(3), &Device::Cpu).unwrap();
        let m: Vec<Vec<f32>> = m.to_vec2().unwrap();
        let ninf = f32::NEG_INFINITY;
        assert_eq!(m[0], vec![0., 0., 0., ninf, ninf]);
        assert_eq!(m[1], vec![ninf, 0., 0., 0., ninf]);
        assert_eq!(m[2], vec![ninf, ninf, 0., 0., 0.]);
        let g = build_mask(2, 1, 0, 3, None, &Device::Cpu).unwrap();
        let g: Vec<Vec<f32>> = g.to_vec2().unwrap();
        assert_eq!(g[0], vec![0., 0., ninf]);
        assert_eq!(g[1], vec![0., 0., 0.]);
    }

    /// `n` rows for two heads (as real caches have several, which makes a
    /// run of rows a strided view) holding `1000 + position` in every
    /// element of row `position`.
    fn rows(n: usize, from: usize) -> Tensor {
        let data: Vec<f32> = (0..2).flat_map(|_| (0..n).flat_map(|i| [1000.0 + (from + i) as f32; 4])).collect();
        Tensor::from_vec(data, (1, 2, n, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn a_cache_cut_back_to_a_prefix_grows_again_with_its_rows_in_place() {
        // A long prompt, then one sharing only its first rows (a question's
        // guess after an answer), then a longer one: the cut-back cache is
        // outgrown and moved to a larger buffer from a partial view.
        for window in [None, Some(6)] {
            let mut cache = KvCache::new(window, 4096);
            cache.append(&rows(1100, 0), &rows(1100, 0)).unwrap();
            assert!(cache.can_truncate(3) || window.is_some());
            let kept = if window.is_some() { cache.start + cache.len } else { 3 };
            cache.truncate(kept);
            let grow = cache.capacity() + 10;
            cache.append(&rows(grow, kept), &rows(grow, kept)).unwrap();
            let (k, v) = cache.view_from(0).unwrap();
            let first: Vec<f32> = k.narrow(2, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(first[0], 1000.0 + cache.start as f32, "{window:?}");
            let last: Vec<f32> = v
                .narrow(2, k.dim(2).unwrap() - 1, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(last[0], 1000.0 + (kept + grow - 1) as f32, "{window:?}");
        }
    }
}
