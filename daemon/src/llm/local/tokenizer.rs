//! The SentencePiece-style ("llama" / SPM) tokenizer that Gemma GGUF files carry in
//! their metadata: building it from `tokenizer.ggml.*`, encoding text the way
//! llama.cpp does, and decoding token ids back into text, including a streaming
//! decoder that never splits a multi-byte UTF-8 character.
//!
//! No `tokenizer.json` is needed or read: the vocabulary, the merge scores and the
//! token types inside the GGUF file are the whole tokenizer.
//!
//! Encoding follows llama.cpp's `llm_tokenizer_spm` with `parse_special = false`:
//! 1. the raw text is first split around *user-defined* tokens (Gemma lists newline
//!    runs, space runs, tab runs and a few markup pieces as user-defined, and both
//!    SentencePiece and llama.cpp always emit those as single tokens);
//! 2. every other fragment has its spaces replaced by `▁` (U+2581), with no space
//!    prefix because the file says `add_space_prefix = false`;
//! 3. the fragment is split into UTF-8 characters and adjacent symbols are merged
//!    greedily, always taking the pair whose concatenation is the vocabulary piece
//!    with the highest score (ties go to the leftmost pair);
//! 4. any symbol that is still not a vocabulary piece is spelled with `<0xXX>` byte
//!    tokens.
//!
//! Control tokens (`<bos>`, `<eos>`, `<end_of_turn>`, ...) are never produced from
//! text: a user who types "<eos>" gets those five characters encoded literally.

use std::collections::{BinaryHeap, HashMap};

use candle_core::quantized::gguf_file::{Content, Value};

/// The `▁` character SentencePiece uses to stand for a space inside pieces.
const SPACE_MARK: char = '\u{2581}';

/// Token types as stored in `tokenizer.ggml.token_type` (they mirror
/// SentencePiece's `ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte(u8),
}

/// A tokenizer built from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    pieces: Vec<String>,
    pub(crate) scores: Vec<f32>,
    kinds: Vec<TokenKind>,
    /// Pieces that SPM merging may produce from text: normal and user-defined
    /// tokens. Control, unknown, unused and byte tokens are left out so that no
    /// text can ever turn into them.
    pub(crate) mergeable: HashMap<String, u32>,
    /// Byte value to its `<0xXX>` token id, for byte fallback.
    byte_tokens: [Option<u32>; 256],
    /// User-defined pieces, longest first, matched literally in raw text.
    user_defined: Vec<(String, u32)>,
    pub bos_id: u32,
    pub eos_id: u32,
    pub unk_id: u32,
}

/// Why the GGUF tokenizer metadata could not be used.
#[derive(Debug, Clone)]
pub struct TokenizerError(pub String);

impl std::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn meta<'a>(ct: &'a Content, key: &str) -> Result<&'a Value, TokenizerError> {
    ct.metadata
        .get(key)
        .ok_or_else(|| TokenizerError(format!("metadata key {key} is missing")))
}

fn meta_u32(ct: &Content, key: &str, default: u32) -> u32 {
    // Ids may be stored with any integer width, so accept the common ones and fall
    // back to the documented default only when the key is absent or odd.
    match ct.metadata.get(key) {
        Some(v) => v
            .to_u32()
            .or_else(|_| v.to_i32().map(|x| x as u32))
            .or_else(|_| v.to_u64().map(|x| x as u32))
            .unwrap_or(default),
        None => default,
    }
}

/// Parses a byte-token piece such as `<0x0A>`.
fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Builds the tokenizer from the metadata of an already-parsed GGUF file.
    pub fn from_gguf(ct: &Content) -> Result<Self, TokenizerError> {
        let model = meta(ct, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| TokenizerError(format!("tokenizer.ggml.model: {e}")))?;
        if model != "llama" {
            return Err(TokenizerError(format!(
                "tokenizer.ggml.model is {model:?}, but only the SentencePiece (\"llama\") model is supported"
            )));
        }
        if let Some(Ok(true)) = ct.metadata.get("tokenizer.ggml.add_space_prefix").map(|v| v.to_bool()) {
            // Gemma files say false; a file that asks for a prefix would need the
            // extra leading `▁` to match its training, which this port does not add.
            tracing::warn!("GGUF asks for add_space_prefix, which this tokenizer ignores");
        }
        let tokens = meta(ct, "tokenizer.ggml.tokens")?
            .to_vec()
            .map_err(|e| TokenizerError(format!("tokenizer.ggml.tokens: {e}")))?;
        let n = tokens.len();
        let mut pieces = Vec::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            let s = t
                .to_string()
                .map_err(|e| TokenizerError(format!("token {i} is not a string: {e}")))?;
            pieces.push(s.clone());
        }
        // Scores and types are optional in the GGUF spec; without scores every merge
        // ties and the leftmost pair wins, which is still a deterministic encoding.
        let scores: Vec<f32> = match ct.metadata.get("tokenizer.ggml.scores") {
            Some(v) => {
                let v = v.to_vec().map_err(|e| TokenizerError(format!("tokenizer.ggml.scores: {e}")))?;
                v.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect()
            }
            None => vec![0.0; n],
        };
        let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let v = v.to_vec().map_err(|e| TokenizerError(format!("tokenizer.ggml.token_type: {e}")))?;
                v.iter()
                    .map(|x| x.to_i32().or_else(|_| x.to_u32().map(|u| u as i32)).unwrap_or(1))
                    .collect()
            }
            None => vec![1; n],
        };
        if scores.len() != n || types.len() != n {
            return Err(TokenizerError(format!(
                "tokenizer arrays disagree: {n} tokens, {} scores, {} types",
                scores.len(),
                types.len()
            )));
        }

        let mut kinds = Vec::with_capacity(n);
        let mut mergeable = HashMap::with_capacity(n);
        let mut byte_tokens = [None; 256];
        let mut user_defined = Vec::new();
        for (id, piece) in pieces.iter().enumerate() {
            let id32 = id as u32;
            let kind = match types[id] {
                2 => TokenKind::Unknown,
                3 => TokenKind::Control,
                4 => TokenKind::UserDefined,
                5 => TokenKind::Unused,
                6 => match parse_byte_piece(piece) {
                    Some(b) => TokenKind::Byte(b),
                    None => TokenKind::Unused,
                },
                _ => TokenKind::Normal,
            };
            match kind {
                TokenKind::Normal => {
                    // The first occurrence wins if a piece is listed twice, as in
                    // llama.cpp's text-to-token map.
                    mergeable.entry(piece.clone()).or_insert(id32);
                }
                TokenKind::UserDefined => {
                    mergeable.entry(piece.clone()).or_insert(id32);
                    if !piece.is_empty() {
                        user_defined.push((piece.clone(), id32));
                    }
                }
                TokenKind::Byte(b) => {
                    byte_tokens[b as usize].get_or_insert(id32);
                }
                _ => {}
            }
            kinds.push(kind);
        }
        // Longest first, so a run of three newlines becomes one "\n\n\n" token and
        // not three "\n" tokens.
        user_defined.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        Ok(Self {
            pieces,
            scores,
            kinds,
            mergeable,
            byte_tokens,
            user_defined,
            bos_id: meta_u32(ct, "tokenizer.ggml.bos_token_id", 2),
            eos_id: meta_u32(ct, "tokenizer.ggml.eos_token_id", 1),
            unk_id: meta_u32(ct, "tokenizer.ggml.unknown_token_id", 3),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Looks up a token by its exact piece, whatever its kind (used to find
    /// control tokens such as `<end_of_turn>`).
    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.pieces.iter().position(|p| p == piece).map(|i| i as u32)
    }

    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    pub fn kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    /// Encodes text without BOS. Special tokens written in the text are not
    /// interpreted.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut fragment_start = 0;
        let mut i = 0;
        let bytes = text.as_bytes();
        while i < bytes.len() {
            if let Some((len, id)) = self.user_defined_at(&text[i..]) {
                self.encode_fragment(&text[fragment_start..i], &mut out);
                out.push(id);
                i += len;
                fragment_start = i;
            } else {
                // Advance by one whole character so slicing stays on boundaries.
                i += utf8_len(bytes[i]);
            }
        }
        self.encode_fragment(&text[fragment_start..], &mut out);
        out
    }

    /// The longest user-defined piece that starts `rest`, if any.
    fn user_defined_at(&self, rest: &str) -> Option<(usize, u32)> {
        // The list is small (Gemma has 165 entries), and most never match the first
        // byte, so a linear scan is cheaper than building a trie.
        let first = *rest.as_bytes().first()?;
        self.user_defined
            .iter()
            .find(|(p, _)| p.as_bytes()[0] == first && rest.starts_with(p.as_str()))
            .map(|(p, id)| (p.len(), *id))
    }

    /// SPM-encodes one fragment that contains no user-defined piece.
    fn encode_fragment(&self, raw: &str, out: &mut Vec<u32>) {
        if raw.is_empty() {
            return;
        }
        let text: String = raw.chars().map(|c| if c == ' ' { SPACE_MARK } else { c }).collect();

        // Symbols form a doubly linked list over byte ranges of `text`; a merged
        // symbol absorbs its right neighbour, whose length becomes zero.
        struct Sym {
            start: usize,
            len: usize,
            prev: Option<usize>,
            next: Option<usize>,
        }
        let mut syms: Vec<Sym> = Vec::new();
        for (start, c) in text.char_indices() {
            let idx = syms.len();
            syms.push(Sym {
                start,
                len: c.len_utf8(),
                prev: idx.checked_sub(1),
                next: None,
            });
            if idx > 0 {
                syms[idx - 1].next = Some(idx);
            }
        }

        // Max-heap ordered by score, then by leftmost position, exactly like
        // llama.cpp's `llm_bigram_spm::comparator`.
        #[derive(PartialEq)]
        struct Bigram {
            score: f32,
            left: usize,
            right: usize,
            size: usize,
        }
        impl Eq for Bigram {}
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Bigram {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
            }
        }

        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], left: usize, right: usize| {
            let (l, r) = (&syms[left], &syms[right]);
            let piece = &text[l.start..r.start + r.len];
            if let Some(&id) = self.mergeable.get(piece) {
                heap.push(Bigram {
                    score: self.scores[id as usize],
                    left,
                    right,
                    size: piece.len(),
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, i - 1, i);
        }

        while let Some(bg) = heap.pop() {
            let (l, r) = (&syms[bg.left], &syms[bg.right]);
            // Skip bigrams made stale by an earlier merge of either side.
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
                continue;
            }
            let right_next = r.next;
            syms[bg.left].len += syms[bg.right].len;
            syms[bg.right].len = 0;
            syms[bg.left].next = right_next;
            if let Some(n) = right_next {
                syms[n].prev = Some(bg.left);
            }
            if let Some(p) = syms[bg.left].prev {
                try_add(&mut heap, &syms, p, bg.left);
            }
            if let Some(n) = right_next {
                try_add(&mut heap, &syms, bg.left, n);
            }
        }

        let mut cur = if syms.is_empty() { None } else { Some(0) };
        while let Some(i) = cur {
            let s = &syms[i];
            let piece = &text[s.start..s.start + s.len];
            match self.mergeable.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    // Only single characters can be unknown here (every merge
                    // produces a vocabulary piece), so spell the character's bytes.
                    for b in piece.bytes() {
                        out.push(self.byte_tokens[b as usize].unwrap_or(self.unk_id));
                    }
                }
            }
            cur = s.next;
        }
    }

    /// The bytes a token contributes to the output text. Control and unused tokens
    /// contribute nothing.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        match self.kind(id) {
            Some(TokenKind::Normal) => self.pieces[id as usize].replace(SPACE_MARK, " ").into_bytes(),
            // User-defined pieces are stored with real spaces and newlines already.
            Some(TokenKind::UserDefined) => self.pieces[id as usize].clone().into_bytes(),
            Some(TokenKind::Byte(b)) => vec![b],
            // SentencePiece renders unknown pieces as " ⁇ "; keep that convention so
            // the user can see that something was lost.
            Some(TokenKind::Unknown) => " \u{2047} ".as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    /// Decodes a whole sequence; invalid UTF-8 from stray byte tokens becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut d = StreamDecoder::default();
        let mut s = String::new();
        for &id in ids {
            s.push_str(&d.push(self, id));
        }
        s.push_str(&d.finish());
        s
    }
}

/// Length of the UTF-8 sequence that starts with `b` (1 for continuation bytes so a
/// scan always makes progress; never used on them when slicing valid `str`s).
fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// What a stream decoder needs from a tokenizer.
pub trait TokenBytes {
    /// The bytes token `id` contributes to the output text.
    fn token_bytes(&self, id: u32) -> Vec<u8>;
}

impl TokenBytes for Tokenizer {
    fn token_bytes(&self, id: u32) -> Vec<u8> {
        Tokenizer::token_bytes(self, id)
    }
}

/// Turns a stream of token ids into text pieces without ever splitting a UTF-8
/// character: bytes from `<0xXX>` tokens are held back until they complete one.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Adds one token and returns whatever text is now complete (possibly "").
    pub fn push<T: TokenBytes + ?Sized>(&mut self, tok: &T, id: u32) -> String {
        self.pending.extend_from_slice(&tok.token_bytes(id));
        self.drain(false)
    }

    /// Returns the remaining text; bytes that never formed a character become U+FFFD.
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    fn drain(&mut self, flush: bool) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix is valid UTF-8 by construction of `valid_up_to`.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            // A genuinely invalid sequence will never complete.
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            // An incomplete character at the end: wait for more bytes
                            // unless the stream is over.
                            self.pending.drain(..valid);
                            if flush {
                                out.push('\u{FFFD}');
                                self.pending.clear();
                            }
                            return out;
                        }
                    }
                }
            }
        }
    }
}
