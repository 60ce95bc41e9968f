//! One tokenizer type over the two kinds a GGUF file can carry: SentencePiece
//! (`tokenizer.ggml.model = "llama"`, Gemma) and byte-level BPE (`"gpt2"`,
//! Qwen). The engine, prompt packing and token counting use only this type.

use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use super::bpe::ByteBpe;
use super::error::{gguf_error, LocalError};
use super::tokenizer::{TokenBytes, Tokenizer, TokenizerError};

/// The tokenizer of a GGUF model, whichever kind it is.
#[derive(Debug, Clone)]
pub enum GgufTokenizer {
    /// SentencePiece (Gemma).
    Spm(Box<Tokenizer>),
    /// Byte-level BPE (Qwen).
    Bpe(Box<ByteBpe>),
}

impl GgufTokenizer {
    /// Builds the tokenizer named by `tokenizer.ggml.model`.
    pub fn from_gguf(ct: &Content) -> Result<Self, TokenizerError> {
        let model = ct
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        match model.as_str() {
            "llama" => Ok(GgufTokenizer::Spm(Box::new(Tokenizer::from_gguf(ct)?))),
            "gpt2" => Ok(GgufTokenizer::Bpe(Box::new(ByteBpe::from_gguf(ct)?))),
            other => Err(TokenizerError(format!(
                "tokenizer.ggml.model is {other:?}; supported are \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE)"
            ))),
        }
    }

    /// Reads only the GGUF's metadata (not its weights) and builds the
    /// tokenizer from it: enough to count tokens for prompt packing.
    pub fn from_file(path: &Path) -> Result<Self, LocalError> {
        let (ct, _) = open_gguf(path)?;
        GgufTokenizer::from_gguf(&ct).map_err(|e| gguf_error(path, e.0))
    }

    /// Encodes text (no BOS); special-token names in it stay text.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            GgufTokenizer::Spm(t) => t.encode(text),
            GgufTokenizer::Bpe(t) => t.encode(text),
        }
    }

    /// Encodes a chat template's own markup, where control-token names
    /// (`<|im_start|>`) stand for their ids.
    pub fn encode_markup(&self, text: &str) -> Vec<u32> {
        match self {
            // Gemma base files carry no chat template; their prompts are text.
            GgufTokenizer::Spm(t) => t.encode(text),
            GgufTokenizer::Bpe(t) => t.encode_markup(text),
        }
    }

    /// Tokens `text` encodes to, without BOS.
    pub fn count(&self, text: &str) -> usize {
        self.encode(text).len()
    }

    /// The token every prompt starts with, when the model wants one.
    pub fn bos_id(&self) -> Option<u32> {
        match self {
            GgufTokenizer::Spm(t) => Some(t.bos_id),
            GgufTokenizer::Bpe(t) => t.bos_id,
        }
    }

    pub fn eos_id(&self) -> u32 {
        match self {
            GgufTokenizer::Spm(t) => t.eos_id,
            GgufTokenizer::Bpe(t) => t.eos_id,
        }
    }

    /// Looks up a token by its exact piece (control tokens included).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        match self {
            GgufTokenizer::Spm(t) => t.token_id(piece),
            GgufTokenizer::Bpe(t) => t.token_id(piece),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            GgufTokenizer::Spm(t) => t.vocab_size(),
            GgufTokenizer::Bpe(t) => t.vocab_size(),
        }
    }

    /// The raw piece of token `id` (a control token's name included).
    pub fn decode_piece(&self, id: u32) -> String {
        match self {
            GgufTokenizer::Spm(t) => t.piece(id).unwrap_or_default().to_string(),
            GgufTokenizer::Bpe(t) => t.piece(id).unwrap_or_default().to_string(),
        }
    }

    /// Decodes a whole sequence; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut d = super::tokenizer::StreamDecoder::default();
        let mut s = String::new();
        for &id in ids {
            s.push_str(&d.push(self, id));
        }
        s.push_str(&d.finish());
        s
    }
}

impl TokenBytes for GgufTokenizer {
    fn token_bytes(&self, id: u32) -> Vec<u8> {
        match self {
            GgufTokenizer::Spm(t) => t.token_bytes(id),
            GgufTokenizer::Bpe(t) => t.token_bytes(id),
        }
    }
}

/// A reader on an open GGUF file.
pub(super) type GgufReader = std::io::BufReader<std::fs::File>;

/// Opens a GGUF file and reads its metadata; the reader is left at the
/// tensor data, for a caller that loads the weights too.
pub(super) fn open_gguf(path: &Path) -> Result<(Content, GgufReader), LocalError> {
    let file = std::fs::File::open(path).map_err(|source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = std::io::BufReader::new(file);
    let ct = Content::read(&mut reader).map_err(|e| gguf_error(path, e.to_string()))?;
    Ok((ct, reader))
}
