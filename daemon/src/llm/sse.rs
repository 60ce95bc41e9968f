//! Incremental Server-Sent Events parsing and decoding of OpenAI-style
//! `chat.completion.chunk` payloads.
//!
//! This module owns the byte-level framing of a `text/event-stream` body and
//! the interpretation of each `data:` payload. It knows nothing about HTTP,
//! retries or timeouts: the client in `lib.rs` feeds it whatever byte slices
//! the network hands over and acts on the events it returns.
//!
//! The framing follows the WHATWG SSE specification
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>):
//! lines may end in `\n`, `\r\n` or a lone `\r`; lines starting with `:` are
//! comments; a blank line dispatches the event; several `data:` lines in one
//! event are joined with `\n`; `event:`, `id:` and `retry:` are accepted but
//! ignored because the OpenAI protocol gives them no meaning; any other field
//! name, including a line that has no colon at all, is ignored.

use serde::Deserialize;

/// One dispatched SSE event that carries data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The joined `data:` payload of one event.
    Data(String),
    /// The OpenAI end-of-stream sentinel `data: [DONE]`.
    Done,
}

/// Incremental SSE parser.
///
/// Bytes are buffered until a full line is available, so a read boundary may
/// fall anywhere, including inside a multi-byte UTF-8 character (line
/// terminators are ASCII, so a complete line always holds complete
/// characters) or between the `\r` and `\n` of a CRLF pair.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous byte was a `\r` that already ended a line; a `\n` that
    /// follows it belongs to the same CRLF terminator and must be skipped.
    after_cr: bool,
    /// Data buffer of the event being assembled (lines joined with `\n`).
    data: String,
    /// Whether the current event has seen at least one `data` field. This is
    /// tracked separately because an empty `data:` line is still data.
    has_data: bool,
}

impl SseParser {
    /// Creates a parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next slice of the body and returns the events completed by it.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => {
                    // Second half of a CRLF whose CR already ended the line.
                    self.after_cr = false;
                }
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.process_line(&line) {
                        events.push(ev);
                    }
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
        events
    }

    /// Signals the end of the body and returns an event that was complete
    /// except for its final blank line.
    ///
    /// The specification says such an event is discarded, but some servers
    /// and proxies omit the final blank line after `data: [DONE]`; accepting
    /// an event whose `data:` lines were themselves fully terminated loses
    /// nothing and avoids a spurious disconnect error. A trailing line with no
    /// terminator at all is still dropped, because it may be truncated.
    pub fn finish(&mut self) -> Option<SseEvent> {
        self.line.clear();
        self.dispatch()
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            // Comment, typically used as a keep-alive.
            return None;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let mut v = &line[i + 1..];
                if v.first() == Some(&b' ') {
                    v = &v[1..];
                }
                (&line[..i], v)
            }
            // Per the spec a line without a colon is a field name with an
            // empty value; only a bare `data` line therefore has any effect.
            None => (line, &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(&String::from_utf8_lossy(value));
            self.has_data = true;
        }
        // `event`, `id`, `retry` and unknown fields carry no meaning here.
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        if data.trim() == "[DONE]" {
            Some(SseEvent::Done)
        } else {
            Some(SseEvent::Data(data))
        }
    }
}

/// What one `data:` JSON payload means to the client.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChunkInfo {
    /// Non-empty content delta of `choices[0]`, if any.
    pub content: Option<String>,
    /// `choices[0].finish_reason`, if present and not null.
    pub finish_reason: Option<String>,
    /// Top-level `usage.prompt_tokens`, if the server sent usage.
    pub prompt_tokens: Option<u64>,
    /// Top-level `usage.completion_tokens`, if the server sent usage.
    pub completion_tokens: Option<u64>,
}

/// Why a `data:` payload could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkError {
    /// The payload is not JSON of the expected shape; holds a description
    /// that includes a short excerpt of the payload.
    Malformed(String),
    /// The payload is an error object reported by the server mid-stream.
    Server { code: Option<u16>, message: String },
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Option<Vec<RawChoice>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default)]
    delta: Option<RawDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Returns at most `max` characters of `s`, with an ellipsis when cut, for
/// use in error messages that must stay short.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Extracts a human-readable message from an OpenAI-style error value,
/// which is either `{"message": ..., "code": ...}` or a bare string.
pub fn error_message(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("message").and_then(|m| m.as_str()).map(str::to_owned),
        _ => None,
    }
}

/// Decodes one `data:` payload of a chat completion stream.
pub fn parse_chunk(data: &str) -> Result<ChunkInfo, ChunkError> {
    let raw: RawChunk = serde_json::from_str(data)
        .map_err(|e| ChunkError::Malformed(format!("data payload is not a valid chunk ({e}): {:?}", excerpt(data, 120))))?;
    if let Some(err) = raw.error {
        let code = err.get("code").and_then(|c| c.as_u64()).and_then(|c| u16::try_from(c).ok());
        let message = error_message(&err).unwrap_or_else(|| excerpt(&err.to_string(), 300));
        return Err(ChunkError::Server {
            code,
            message: excerpt(&message, 300),
        });
    }
    let mut info = ChunkInfo::default();
    if let Some(choice) = raw.choices.and_then(|c| c.into_iter().next()) {
        info.content = choice.delta.and_then(|d| d.content).filter(|c| !c.is_empty());
        info.finish_reason = choice.finish_reason;
    }
    if let Some(u) = raw.usage {
        info.prompt_tokens = u.prompt_tokens;
        info.completion_tokens = u.completion_tokens;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            out.extend(p.feed(part));
        }
        out.extend(p.finish());
        out
    }

    /// A stream resembling what llama.cpp and OpenAI send, with a multi-byte
    /// character, comments, keep-alives and mixed line endings thrown in.
    const REALISTIC: &str = concat!(
        ": keep-alive comment\r\n",
        "\r\n",
        "event: message\n",
        "id: 1\n",
        "retry: 1000\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n",
        "\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße, \"},\"finish_reason\":null}]}\n\n",
        ":\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"世界 🌍\"},\"finish_reason\":null}]}\r\r",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    );

    fn expected_realistic() -> Vec<SseEvent> {
        vec![
            SseEvent::Data(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#.into()),
            SseEvent::Data(r#"{"choices":[{"index":0,"delta":{"content":"Grüße, "},"finish_reason":null}]}"#.into()),
            SseEvent::Data(r#"{"choices":[{"index":0,"delta":{"content":"世界 🌍"},"finish_reason":null}]}"#.into()),
            SseEvent::Data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.into()),
            SseEvent::Data(r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#.into()),
            SseEvent::Done,
        ]
    }

    #[test]
    fn whole_stream_in_one_read() {
        assert_eq!(feed_all(&[REALISTIC.as_bytes()]), expected_realistic());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let bytes = REALISTIC.as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(feed_all(&[a, b]), expected_realistic(), "split at {i}");
        }
    }

    #[test]
    fn split_at_every_pair_of_boundaries() {
        // Two cuts exercise a line that spans three reads.
        let bytes = REALISTIC.as_bytes();
        for i in (0..bytes.len()).step_by(3) {
            for j in i..=bytes.len() {
                let parts = [&bytes[..i], &bytes[i..j], &bytes[j..]];
                assert_eq!(feed_all(&parts), expected_realistic(), "cuts {i},{j}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let parts: Vec<&[u8]> = REALISTIC.as_bytes().chunks(1).collect();
        assert_eq!(feed_all(&parts), expected_realistic());
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_terminator() {
        // If the LF were treated as a second line end, it would dispatch the
        // event early; here the two data lines must stay one event.
        let evs = feed_all(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(evs, vec![SseEvent::Data("a\nb".into())]);
    }

    #[test]
    fn lone_cr_line_endings() {
        let evs = feed_all(&[b"data: x\r\rdata: y\r\r"]);
        assert_eq!(evs, vec![SseEvent::Data("x".into()), SseEvent::Data("y".into())]);
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        let evs = feed_all(&[b"data: {\"a\":\ndata:  1}\ndata:\n\n"]);
        // Only one leading space is stripped, and an empty data line still
        // contributes a line.
        assert_eq!(evs, vec![SseEvent::Data("{\"a\":\n 1}\n".into())]);
    }

    #[test]
    fn comments_keepalives_and_unknown_lines_are_ignored() {
        let evs = feed_all(&[b":ping\n\n\n\nevent: foo\nid: 9\nretry: 5\njunk without colon\nfoo: bar\n\ndata: ok\n\n"]);
        assert_eq!(evs, vec![SseEvent::Data("ok".into())]);
    }

    #[test]
    fn bare_data_line_counts_as_empty_data() {
        let evs = feed_all(&[b"data\n\n"]);
        assert_eq!(evs, vec![SseEvent::Data(String::new())]);
    }

    #[test]
    fn done_sentinel() {
        assert_eq!(feed_all(&[b"data: [DONE]\n\n"]), vec![SseEvent::Done]);
        assert_eq!(feed_all(&[b"data:[DONE]\r\n\r\n"]), vec![SseEvent::Done]);
    }

    #[test]
    fn missing_final_blank_line_is_tolerated_but_unterminated_line_is_not() {
        assert_eq!(feed_all(&[b"data: [DONE]\n"]), vec![SseEvent::Done]);
        assert_eq!(feed_all(&[b"data: [DO"]), vec![]);
    }

    #[test]
    fn chunk_decoding() {
        let c = parse_chunk(r#"{"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}"#).unwrap();
        assert_eq!(c.content.as_deref(), Some("hi"));
        assert_eq!(c.finish_reason, None);

        let c = parse_chunk(r#"{"choices":[{"delta":{"content":null},"finish_reason":"length"}]}"#).unwrap();
        assert_eq!(c.content, None);
        assert_eq!(c.finish_reason.as_deref(), Some("length"));

        let c = parse_chunk(r#"{"choices":[{"delta":{"content":""}}]}"#).unwrap();
        assert_eq!(c.content, None);

        let c = parse_chunk(r#"{"choices":[{}]}"#).unwrap();
        assert_eq!(c, ChunkInfo::default());

        let c = parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#).unwrap();
        assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(5), Some(2)));

        let c = parse_chunk(r#"{"usage":null,"choices":null}"#).unwrap();
        assert_eq!(c, ChunkInfo::default());
    }

    #[test]
    fn chunk_errors() {
        match parse_chunk("{not json") {
            Err(ChunkError::Malformed(d)) => assert!(d.contains("{not json"), "{d}"),
            other => panic!("{other:?}"),
        }
        match parse_chunk(r#"{"error":{"message":"context too long","code":400}}"#) {
            Err(ChunkError::Server { code, message }) => {
                assert_eq!(code, Some(400));
                assert_eq!(message, "context too long");
            }
            other => panic!("{other:?}"),
        }
        match parse_chunk(r#"{"choices":"nope"}"#) {
            Err(ChunkError::Malformed(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn excerpt_is_char_safe() {
        assert_eq!(excerpt("äöü", 2), "äö…");
        assert_eq!(excerpt("ab", 2), "ab");
    }
}
