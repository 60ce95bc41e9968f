//! The byte-level BPE tokenizer (GPT-2 style, `tokenizer.ggml.model = "gpt2"`)
//! that Qwen GGUF files carry in their metadata: vocabulary, merges, token
//! types and the pre-tokenizer's name (`tokenizer.ggml.pre`).
//!
//! Encoding is delegated to the `tokenizers` crate's BPE model, built from the
//! GGUF's own vocabulary and merges with the pre-tokenizer llama.cpp uses for
//! that name (a regex split, then the byte-to-character map), and an NFC
//! normalizer as in Qwen's `tokenizer.json`. No `tokenizer.json` is read.
//!
//! Special tokens are never produced from text: [`ByteBpe::encode`] spells
//! "<|im_end|>" typed by a user or found in a book as ordinary characters.
//! Only [`ByteBpe::encode_markup`], used for the chat template's own text
//! (never for message contents), turns control-token names into their ids.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Content;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::tokenizer::TokenizerError;

/// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2` split (the same as the
/// `pre_tokenizer` of Qwen 2.5's `tokenizer.json`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's own split, for files that say `gpt2` or `default`.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GGUF token types (`tokenizer.ggml.token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// A byte-level BPE tokenizer built from GGUF metadata.
#[derive(Clone)]
pub struct ByteBpe {
    inner: tokenizers::Tokenizer,
    pieces: Vec<String>,
    /// GGUF token type per id.
    types: Vec<i32>,
    /// Control and user-defined tokens, longest first, matched literally in
    /// template markup.
    specials: Vec<(String, u32)>,
    /// Inverse of GPT-2's byte-to-character map.
    byte_of: HashMap<char, u8>,
    /// Prepended to every prompt when the file says `add_bos_token`.
    pub bos_id: Option<u32>,
    pub eos_id: u32,
}

impl std::fmt::Debug for ByteBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteBpe").field("vocab", &self.pieces.len()).finish_non_exhaustive()
    }
}

/// GPT-2's map from bytes to printable characters (`bytes_to_unicode`).
fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        out[b as usize] = if printable {
            b as char
        } else {
            let c = char::from_u32(256 + n).expect("256..512 are valid chars");
            n += 1;
            c
        };
    }
    out
}

fn err(detail: impl std::fmt::Display) -> TokenizerError {
    TokenizerError(detail.to_string())
}

impl ByteBpe {
    /// Builds the tokenizer from the metadata of an already-parsed GGUF file.
    pub fn from_gguf(ct: &Content) -> Result<Self, TokenizerError> {
        let get = |key: &str| ct.metadata.get(key).ok_or_else(|| err(format!("the GGUF has no {key}")));
        let pre = get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().map_err(err).cloned())
            .unwrap_or_else(|_| "default".into());
        let split = match pre.as_str() {
            "qwen2" => QWEN2_SPLIT,
            "gpt2" | "default" => GPT2_SPLIT,
            other => {
                return Err(err(format!(
                    "tokenizer.ggml.pre is {other:?}; this byte-level BPE supports \"qwen2\" and \"gpt2\""
                )))
            }
        };
        let tokens = get("tokenizer.ggml.tokens")?.to_vec().map_err(err)?;
        let mut pieces = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            pieces.push(t.to_string().map_err(|e| err(format!("token {i} is not a string: {e}")))?.clone());
        }
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v.to_vec().map_err(err)?.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            None => vec![1; pieces.len()],
        };
        if types.len() != pieces.len() {
            return Err(err(format!("{} token types for {} tokens", types.len(), pieces.len())));
        }
        let merges = get("tokenizer.ggml.merges")?.to_vec().map_err(err)?;
        let mut pairs = Vec::with_capacity(merges.len());
        for (i, m) in merges.iter().enumerate() {
            let m = m.to_string().map_err(|e| err(format!("merge {i} is not a string: {e}")))?;
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| err(format!("merge {i} ({m:?}) is not two pieces")))?;
            pairs.push((a.to_string(), b.to_string()));
        }
        // Only normal tokens take part in merging; special ones are matched
        // separately and only in template markup.
        let vocab: Vocab = pieces
            .iter()
            .enumerate()
            .filter(|&(i, _)| !matches!(types[i], TYPE_CONTROL | TYPE_USER_DEFINED))
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        // Every merge must make a normal token out of two normal tokens. The
        // BPE builder checks that too, but it first copies the merged pair
        // into a buffer as long as the longest vocabulary entry, and panics
        // when the pair is longer (found by fuzzing: a merge whose result is
        // a control token, so not in the vocabulary). A damaged GGUF must
        // fail with a reason instead.
        for (i, (a, b)) in pairs.iter().enumerate() {
            let merged = format!("{a}{b}");
            let missing = [a, b, &merged].into_iter().find(|p| !vocab.contains_key(p.as_str())).cloned();
            if let Some(missing) = missing {
                return Err(err(format!(
                    "merge {i} ({a} {b}) uses or makes {missing:?}, which is not a normal token"
                )));
            }
        }
        let bpe = BPE::builder().vocab_and_merges(vocab, pairs).build().map_err(err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_normalizer(Some(NFC)).map_err(err)?;
        let split = Split::new(SplitPattern::Regex(split.into()), SplitDelimiterBehavior::Isolated, false).map_err(err)?;
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ])));

        let mut specials: Vec<(String, u32)> = pieces
            .iter()
            .enumerate()
            .filter(|&(i, p)| matches!(types[i], TYPE_CONTROL | TYPE_USER_DEFINED) && !p.is_empty())
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let id = |key: &str| ct.metadata.get(key).and_then(|v| v.to_u32().ok());
        let eos_id = id("tokenizer.ggml.eos_token_id").ok_or_else(|| err("the GGUF has no tokenizer.ggml.eos_token_id"))?;
        let add_bos = ct
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos_id = if add_bos { id("tokenizer.ggml.bos_token_id") } else { None };
        let chars = byte_chars();
        let byte_of = (0..=255u8).map(|b| (chars[b as usize], b)).collect();
        Ok(ByteBpe {
            inner,
            pieces,
            types,
            specials,
            byte_of,
            bos_id,
            eos_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Looks up a token by its exact piece (used to find `<|im_end|>`).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.specials
            .iter()
            .find(|(p, _)| p == piece)
            .map(|&(_, id)| id)
            .or_else(|| self.pieces.iter().position(|p| p == piece).map(|i| i as u32))
    }

    /// The stored piece of token `id`.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// Encodes text; special-token names in it stay text.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        if text.is_empty() {
            return Vec::new();
        }
        match self.inner.encode_fast(text, false) {
            Ok(e) => e.get_ids().to_vec(),
            // The model has every byte as a token, so encoding cannot fail on
            // any valid string; an error here is a bug worth seeing.
            Err(e) => {
                tracing::error!(error = %e, "byte-level BPE failed to encode text");
                Vec::new()
            }
        }
    }

    /// Encodes a chat template's own text: the control-token names in it
    /// (`<|im_start|>`) become their ids, the rest is encoded as text.
    pub fn encode_markup(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut plain_from = 0;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if rest.starts_with('<') {
                if let Some((p, id)) = self.specials.iter().find(|(p, _)| rest.starts_with(p.as_str())) {
                    out.extend(self.encode(&text[plain_from..i]));
                    out.push(*id);
                    i += p.len();
                    plain_from = i;
                    continue;
                }
            }
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
        out.extend(self.encode(&text[plain_from..]));
        out
    }

    /// The bytes a token contributes to the output text: control tokens
    /// contribute nothing, user-defined ones their literal text.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(piece) = self.pieces.get(id as usize) else {
            return Vec::new();
        };
        match self.types[id as usize] {
            TYPE_CONTROL => Vec::new(),
            TYPE_USER_DEFINED => piece.clone().into_bytes(),
            _ => piece.chars().map(|c| self.byte_of.get(&c).copied().unwrap_or(b'?')).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection_over_printable_chars() {
        let chars = byte_chars();
        let unique: std::collections::HashSet<char> = chars.iter().copied().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(chars[b' ' as usize], 'Ġ');
        assert_eq!(chars[b'\n' as usize], 'Ċ');
        assert_eq!(chars[b'a' as usize], 'a');
    }
}
