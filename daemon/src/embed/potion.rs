//! Static embeddings: model2vec models such as potion-base-8M, in pure Rust.
//!
//! A static model is a table with one vector per token id. A text's vector
//! is the mean of the rows of its tokens, scaled to unit length: what
//! model2vec's `StaticModel.encode` computes (tokens without `[CLS]` and
//! `[SEP]`, unknown tokens dropped, then truncated). No neural network runs,
//! so [`StaticEmbedder`] needs neither ONNX Runtime nor a warm-up, and
//! almost all of its time goes to the tokenizer.

use std::path::Path;
use std::sync::Arc;

use mindory_proto::models::{verify_static_model, EmbeddingModel};
use safetensors::{Dtype, SafeTensors};

use super::{normalize, EmbedError, Embedder};

/// Tokens of one text that count; the rest is ignored. Mindory's passages
/// are capped far below this (256 tokens of the chunking tokenizer) and
/// queries are short, so it only bounds the work an absurd input can cause.
pub const MAX_STATIC_TOKENS: usize = 8_192;

/// Bytes of one text handed to the tokenizer. A WordPiece token of English
/// text averages four to five bytes, so this keeps every token up to
/// [`MAX_STATIC_TOKENS`] for any ordinary text, and spares the tokenizer a
/// megabyte-long query whose tail would be truncated anyway.
const MAX_INPUT_BYTES: usize = MAX_STATIC_TOKENS * 32;

/// The name of the table in model2vec's safetensors file.
const TABLE: &str = "embeddings";

/// What both engines of a model share: the table is read once and the
/// ingest and query engines point at the same memory.
struct Table {
    model: &'static EmbeddingModel,
    tokenizer: tokenizers::Tokenizer,
    /// Row-major, `rows × dimensions`.
    vectors: Vec<f32>,
    rows: usize,
    dimensions: usize,
    /// model2vec drops this token before averaging (for word-level
    /// vocabularies it would otherwise swamp the mean).
    unk: Option<u32>,
    /// The vector of a text with no known token (see [`Table::fallback`]).
    fallback: Vec<f32>,
}

/// A model2vec static model, e.g. potion-base-8M.
///
/// Cloning is cheap (the table is shared); [`StaticEmbedder::with_threads`]
/// gives the query engine its own thread count.
#[derive(Clone)]
pub struct StaticEmbedder {
    table: Arc<Table>,
    threads: usize,
}

/// model2vec's `config.json`, the fields that matter for inference.
#[derive(serde::Deserialize)]
struct StaticConfig {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    hidden_dim: Option<usize>,
    #[serde(default)]
    normalize: bool,
}

impl StaticEmbedder {
    /// Loads `model` (a catalogued static model) from `models_dir`;
    /// `threads` threads tokenize a batch.
    pub fn load(models_dir: &Path, model: &'static EmbeddingModel, threads: usize) -> Result<Self, EmbedError> {
        let paths = verify_static_model(models_dir, model)?;
        let engine = |detail: String| EmbedError::Engine(format!("{}: {detail}; run `mindory models fetch` again", model.name));
        let read = |p: &Path| std::fs::read(p).map_err(|e| engine(format!("read {}: {e}", p.display())));

        let config: StaticConfig =
            serde_json::from_slice(&read(&paths.config)?).map_err(|e| engine(format!("{}: {e}", paths.config.display())))?;
        if config.model_type.as_deref().is_some_and(|t| t != "model2vec") {
            return Err(engine(format!(
                "config.json says model_type {:?}, not model2vec",
                config.model_type
            )));
        }
        if config.hidden_dim.is_some_and(|d| d != model.dimensions) {
            return Err(engine(format!(
                "config.json says {} dimensions, the catalogue {}",
                config.hidden_dim.unwrap_or_default(),
                model.dimensions
            )));
        }
        // model2vec scales its output to unit length only when `normalize`
        // is set (it is for potion-base-8M, so the vectors here are exactly
        // model2vec's). Mindory's index needs unit vectors whatever the
        // flag says; without it only the length would differ, and cosine
        // rankings ignore the length.
        if !config.normalize {
            tracing::debug!(
                model = model.id,
                "config.json does not ask for normalized vectors; they are normalized anyway"
            );
        }

        let tokenizer_bytes = read(&paths.tokenizer)?;
        let mut tokenizer =
            tokenizers::Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| engine(format!("{}: {e}", paths.tokenizer.display())))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| engine(format!("cannot switch off truncation: {e}")))?;
        let unk = unknown_token(&tokenizer_bytes, &tokenizer);

        let weights = read(&paths.weights)?;
        let tensors = SafeTensors::deserialize(&weights).map_err(|e| engine(format!("{}: {e}", paths.weights.display())))?;
        let view = tensors
            .tensor(TABLE)
            .map_err(|e| engine(format!("{}: no `{TABLE}` table: {e}", paths.weights.display())))?;
        let (rows, dimensions) = match *view.shape() {
            [rows, dimensions] => (rows, dimensions),
            ref other => return Err(engine(format!("the table has shape {other:?}, expected two dimensions"))),
        };
        if view.dtype() != Dtype::F32 {
            return Err(engine(format!("the table holds {:?}, expected F32", view.dtype())));
        }
        if dimensions != model.dimensions {
            return Err(engine(format!("the table has {dimensions} columns, expected {}", model.dimensions)));
        }
        let vocabulary = tokenizer.get_vocab_size(true);
        if vocabulary > rows {
            return Err(engine(format!(
                "the tokenizer knows {vocabulary} tokens but the table has {rows} rows"
            )));
        }
        // safetensors stores little-endian; the data is not necessarily
        // aligned for a direct cast, so it is copied.
        let vectors: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        drop(weights);

        let mut table = Table {
            model,
            tokenizer,
            vectors,
            rows,
            dimensions,
            unk,
            fallback: Vec::new(),
        };
        table.fallback = table.fallback();
        Ok(StaticEmbedder {
            table: Arc::new(table),
            threads: threads.max(1),
        })
    }

    /// The same model (shared table) tokenizing on `threads` threads.
    pub fn with_threads(&self, threads: usize) -> Self {
        StaticEmbedder {
            table: self.table.clone(),
            threads: threads.max(1),
        }
    }
}

/// The id of the tokenizer model's unknown token, as model2vec finds it
/// (`tokenizer.model.unk_token`); `tokenizer.json` is read directly because
/// the tokenizers crate keeps that field private for some model types.
fn unknown_token(tokenizer_json: &[u8], tokenizer: &tokenizers::Tokenizer) -> Option<u32> {
    let json: serde_json::Value = serde_json::from_slice(tokenizer_json).ok()?;
    let model = json.get("model")?;
    match model.get("unk_token") {
        Some(serde_json::Value::String(token)) => tokenizer.token_to_id(token),
        // Unigram models name the id instead.
        _ => model.get("unk_id")?.as_u64().and_then(|id| u32::try_from(id).ok()),
    }
}

impl Table {
    /// The vector of a text with no known token (empty, whitespace, or only
    /// characters the vocabulary lacks). model2vec returns zeros there,
    /// which the index cannot use (a zero vector has no direction, and its
    /// cosine is undefined). Such a text is embedded as the unknown token
    /// instead: deterministic, unit length, and honest (nothing in it was
    /// recognised). A model without an unknown token, or with a zero row
    /// for it, gets the first axis.
    fn fallback(&self) -> Vec<f32> {
        if let Some(mut v) = self.unk.and_then(|id| self.row(id)).map(<[f32]>::to_vec) {
            normalize(&mut v);
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
        let mut axis = vec![0.0; self.dimensions];
        if let Some(first) = axis.first_mut() {
            *first = 1.0;
        }
        axis
    }

    fn row(&self, id: u32) -> Option<&[f32]> {
        let id = id as usize;
        (id < self.rows).then(|| &self.vectors[id * self.dimensions..(id + 1) * self.dimensions])
    }

    /// One text's unit vector.
    fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let text = &text[..floor_char_boundary(text, MAX_INPUT_BYTES)];
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| EmbedError::Engine(format!("{}: tokenizing failed: {e}", self.model.name)))?;
        let mut sum = vec![0.0f32; self.dimensions];
        let mut count = 0usize;
        let known = encoding.get_ids().iter().filter(|id| Some(**id) != self.unk);
        for row in known.take(MAX_STATIC_TOKENS).filter_map(|id| self.row(*id)) {
            sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
            count += 1;
        }
        if count == 0 {
            return Ok(self.fallback.clone());
        }
        // The mean's direction is the sum's; dividing first keeps the
        // numbers model2vec's before normalizing.
        let n = count as f32;
        sum.iter_mut().for_each(|s| *s /= n);
        normalize(&mut sum);
        if sum.iter().all(|x| *x == 0.0) {
            // Known tokens whose rows cancel exactly: as good as none.
            return Ok(self.fallback.clone());
        }
        Ok(sum)
    }
}

/// The largest char boundary of `s` at or below `at`.
pub(super) fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl Embedder for StaticEmbedder {
    fn model_id(&self) -> &str {
        self.table.model.id
    }

    fn dimensions(&self) -> usize {
        self.table.dimensions
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let table = &*self.table;
        let threads = self.threads.min(texts.len());
        if threads <= 1 {
            return texts.iter().map(|t| table.embed_one(t)).collect();
        }
        // Tokenizing is nearly all the work, and each text is independent:
        // the batch is split into one contiguous share per thread, so the
        // result keeps the input order when the shares are joined.
        let share = texts.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = texts
                .chunks(share)
                .map(|part| scope.spawn(move || part.iter().map(|t| table.embed_one(t)).collect::<Result<Vec<_>, _>>()))
                .collect();
            let mut out = Vec::with_capacity(texts.len());
            for worker in workers {
                let part = worker
                    .join()
                    .map_err(|_| EmbedError::Engine(format!("{}: a tokenizing thread panicked", table.model.name)))??;
                out.extend(part);
            }
            Ok(out)
        })
    }
}
