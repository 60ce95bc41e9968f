//! The fuzzing facade (issue 14): one function, [`run`], that feeds bytes to
//! the entry point a cargo-fuzz target names. The targets in `fuzz/` call it,
//! and the unit test `fuzzing::regressions` replays the saved findings of
//! `fuzz/regressions/<target>/` through it, so a finding is replayed on stable
//! exactly as it was found. Not an API: hidden from the docs, free to change.

use std::io::Cursor;
use std::path::Path;

use mindory_proto::pb;
use prost::Message;

use crate::parse::{self, Format};
use crate::text::chunk::{chunk, ChunkConfig};
use crate::text::{assemble, Block, Document};

/// Every target [`run`] knows, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[&str] = &[
    "text", "html", "markdown", "epub", "docx", "odt", "fb2", "rtf", "mobi", "chunk", "sse", "gguf", "wire",
];

/// Feeds `bytes` to the entry point of `target`; false for an unknown target.
/// Errors are the expected outcome for most inputs and are dropped; a panic
/// (or an assertion below failing) is a finding.
pub fn run(target: &str, bytes: &[u8]) -> bool {
    let format = match target {
        "text" => Format::Text,
        "html" => Format::Html,
        "markdown" => Format::Markdown,
        "epub" => Format::Epub,
        "docx" => Format::Docx,
        "odt" => Format::Odt,
        "fb2" => Format::Fb2,
        "rtf" => Format::Rtf,
        "mobi" => Format::Mobi,
        "chunk" => return chunk_book(bytes),
        "sse" => return sse(bytes),
        "gguf" => return gguf(bytes),
        "wire" => return wire(bytes),
        _ => return false,
    };
    // One parser with no detection in front: the daemon only hands it what
    // detection called its format, but the parser must hold on anything.
    // PDF is not here: it needs PDFium and runs in its own subprocess.
    let _ = parse::parse_as(format, bytes, Path::new(""));
    if format == Format::Text {
        // Detection reads every format's magic: without an extension and
        // with one that the content may contradict.
        let _ = parse::detect(Path::new("book"), bytes);
        let _ = parse::detect(Path::new("book.epub"), bytes);
    }
    true
}

/// Assembly and the chunker. The first four bytes pick the chunk limits
/// (zero and inverted limits are what a bad configuration would give); the
/// rest is text whose lines become blocks, a line starting with `#`s being a
/// heading of that level. Every passage must be an in-bounds range of the
/// book text on character boundaries, in a section that exists.
fn chunk_book(bytes: &[u8]) -> bool {
    let Some((knobs, rest)) = bytes.split_first_chunk::<4>() else {
        return true;
    };
    let config = ChunkConfig {
        target_words: knobs[0] as usize,
        max_words: knobs[1] as usize,
        max_tokens: knobs[2] as usize,
        overlap_words: knobs[3] as usize % 64,
    };
    let text = String::from_utf8_lossy(rest);
    let mut doc = Document::default();
    for line in text.split('\n') {
        let level = line.bytes().take_while(|b| *b == b'#').count();
        doc.blocks.push(if level > 0 {
            Block::heading(level.min(9) as u8, &line[level..])
        } else {
            Block::paragraph(line)
        });
    }
    let book = assemble(&doc);
    // One token per four bytes and at least one per word: near a real model.
    let count = |s: &str| s.len().div_ceil(4).max(s.split_whitespace().count());
    for p in chunk(&book, config, &count) {
        assert!(p.start <= p.end && p.end <= book.text.len(), "{p:?}");
        assert!(book.text.is_char_boundary(p.start) && book.text.is_char_boundary(p.end), "{p:?}");
        assert!(p.section < book.sections.len().max(1), "{p:?}");
    }
    true
}

/// The OpenAI client's Server-Sent Events parser and chunk decoder. The
/// first byte picks the size of the reads the body arrives in, so that read
/// boundaries fall inside lines, CRLF pairs and characters.
fn sse(bytes: &[u8]) -> bool {
    use crate::llm::sse::{parse_chunk, SseEvent, SseParser};
    let Some((&step, body)) = bytes.split_first() else {
        return true;
    };
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for piece in body.chunks(step as usize % 17 + 1) {
        events.extend(parser.feed(piece));
    }
    events.extend(parser.finish());
    for event in events {
        if let SseEvent::Data(data) = event {
            let _ = parse_chunk(&data);
        }
    }
    let _ = parse_chunk(&String::from_utf8_lossy(body));
    true
}

/// A GGUF file's metadata read from memory and what the local backend builds
/// from it: the tokenizer and the prompt format, then the tokenizer run both
/// ways over the text after the input's last NUL byte, and a conversation
/// rendered.
fn gguf(bytes: &[u8]) -> bool {
    use crate::llm::local::{GgufTokenizer, PromptFormat};
    use crate::llm::{ChatMessage, Role};
    let tail = bytes.iter().rposition(|b| *b == 0).map_or(&bytes[..0], |i| &bytes[i + 1..]);
    let text = String::from_utf8_lossy(tail);
    let Ok(ct) = candle_core::quantized::gguf_file::Content::read(&mut Cursor::new(bytes)) else {
        return true;
    };
    let Ok(tok) = GgufTokenizer::from_gguf(&ct) else {
        return true;
    };
    let ids = tok.encode(&text);
    tok.decode(&ids);
    tok.encode_markup(&text);
    if let Ok(format) = PromptFormat::from_gguf(&ct, &tok) {
        let messages = [ChatMessage::new(Role::System, "Answer."), ChatMessage::new(Role::User, text)];
        if let Ok(prompt) = format.prompt(&messages) {
            prompt.tokens(&tok);
        }
    }
    true
}

/// The inbound wire conversions (`rpc/convert.rs`) on requests decoded from
/// the bytes as tonic decodes them. Every request type reads the same bytes;
/// one that does not fit a message's schema leaves that message empty.
fn wire(bytes: &[u8]) -> bool {
    use crate::rpc::convert;
    let _ = convert::search_query(pb::SearchRequest::decode(bytes).unwrap_or_default());
    let _ = convert::location(pb::GetPassageRequest::decode(bytes).unwrap_or_default().at);
    let _ = convert::ask_request(pb::AskRequest::decode(bytes).unwrap_or_default());
    let _ = convert::summarize_request(pb::SummarizeRequest::decode(bytes).unwrap_or_default());
    let _ = convert::explain_request(pb::ExplainRequest::decode(bytes).unwrap_or_default());
    true
}

// The replay of `fuzz/regressions/` lives beside the entry points it calls.
#[cfg(test)]
#[path = "fuzz_regressions.rs"]
mod regressions;
