//! [`OpenAiError`]: every way a call to the endpoint can fail, with the
//! hint each HTTP status gets, and the short descriptions of error bodies
//! and transport errors that go into the messages.

use std::fmt;

use crate::error_kind::ErrorKind;
use crate::llm::sse::{self, excerpt};

/// Longest error-body excerpt carried in an error, in characters.
pub(super) const EXCERPT_CHARS: usize = 300;

/// Every way a call can fail. Messages name the URL (never the key) and say
/// what to try next, because they end up in front of a user.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    #[error("invalid LLM configuration: {detail}; fix the LLM section of config.toml")]
    InvalidConfig { detail: String },

    #[error("cannot connect to {url} after {attempts} attempt(s): {detail}; is the server running? check `base_url` in config.toml")]
    Connect { url: String, attempts: u32, detail: String },

    #[error("request to {url} failed after {attempts} attempt(s) before any answer: {detail}; check that `base_url` points at an HTTP server that is up and healthy")]
    Transport { url: String, attempts: u32, detail: String },

    #[error("{url} answered HTTP {code} after {attempts} attempt(s): {excerpt}; {hint}", hint = status_hint(*code))]
    Status {
        url: String,
        code: u16,
        attempts: u32,
        excerpt: String,
    },

    #[error("{url} still answered 429 Too Many Requests after {attempts} attempts: {excerpt}; the server is busy: send fewer concurrent requests or raise `max_retries` in config.toml")]
    RateLimited { url: String, attempts: u32, excerpt: String },

    #[error("no answer from {url} within the first-token timeout of {secs} s; the model may still be loading or the prompt is very long: raise `first_token_timeout` in config.toml or use a smaller model")]
    FirstTokenTimeout { url: String, secs: f64 },

    #[error("generation from {url} exceeded the total timeout of {secs} s after {after_tokens} token(s); raise `total_timeout` in config.toml or lower max_tokens")]
    TotalTimeout { url: String, secs: f64, after_tokens: u64 },

    #[error("malformed response from {url}: {detail}; is `base_url` pointing at an OpenAI-compatible server?")]
    Malformed { url: String, detail: String },

    #[error("{url} ended the stream after {after_tokens} token(s) without finishing: {detail}; the server may have crashed or run out of memory, check its log")]
    Disconnected { url: String, after_tokens: u64, detail: String },

    #[error("{url} reported an error in the stream after {after_tokens} token(s){}: {message}; check the server's log", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    ServerError {
        url: String,
        code: Option<u16>,
        after_tokens: u64,
        message: String,
    },

    #[error("request cancelled because the caller went away")]
    Cancelled,
}

impl OpenAiError {
    /// What kind of failure this is, for the RPC layer. A caller that went
    /// away is `Cancelled`; everything else means the endpoint could not be
    /// used for this request, which a retry or a fixed server may cure, so
    /// it is `Unavailable`. That includes `InvalidConfig`: a configuration
    /// the client cannot be built from never gets this far (the backend is
    /// then "not configured"), so here it is a request the endpoint cannot
    /// take (a temperature that is not a number), mapped like the others.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenAiError::Cancelled => ErrorKind::Cancelled,
            OpenAiError::InvalidConfig { .. }
            | OpenAiError::Connect { .. }
            | OpenAiError::Transport { .. }
            | OpenAiError::Status { .. }
            | OpenAiError::RateLimited { .. }
            | OpenAiError::FirstTokenTimeout { .. }
            | OpenAiError::TotalTimeout { .. }
            | OpenAiError::Malformed { .. }
            | OpenAiError::Disconnected { .. }
            | OpenAiError::ServerError { .. } => ErrorKind::Unavailable,
        }
    }
}

impl OpenAiError {
    /// The same error with `key` and any `Bearer …` credential removed from
    /// every text it carries. Servers echo what they were sent: a 401 body
    /// such as "Incorrect API key provided: sk-…" would otherwise reach the
    /// WARN log and the user's screen.
    pub fn redacted(mut self, key: Option<&str>) -> Self {
        if let Some(text) = self.free_text() {
            *text = redact(text, key);
        }
        self
    }

    /// The text a server or a transport put into this error (an excerpt, a
    /// detail, a message), the only part that can carry what was sent.
    fn free_text(&mut self) -> Option<&mut String> {
        match self {
            OpenAiError::InvalidConfig { detail }
            | OpenAiError::Connect { detail, .. }
            | OpenAiError::Transport { detail, .. }
            | OpenAiError::Malformed { detail, .. }
            | OpenAiError::Disconnected { detail, .. } => Some(detail),
            OpenAiError::Status { excerpt, .. } | OpenAiError::RateLimited { excerpt, .. } => Some(excerpt),
            OpenAiError::ServerError { message, .. } => Some(message),
            OpenAiError::FirstTokenTimeout { .. } | OpenAiError::TotalTimeout { .. } | OpenAiError::Cancelled => None,
        }
    }
}

/// `text` with `key` (when set) and every `Bearer <token>` replaced by
/// `[redacted]`. Run before any excerpt is cut, so a key split by the cut
/// cannot survive as a prefix.
pub(crate) fn redact(text: &str, key: Option<&str>) -> String {
    let mut out = match key.map(str::trim).filter(|k| k.len() >= 4) {
        Some(k) => text.replace(k, "[redacted]"),
        None => text.to_string(),
    };
    let mut from = 0;
    while let Some(i) = out[from..].find("Bearer ").map(|i| i + from) {
        let token_start = i + "Bearer ".len();
        let token_end = out[token_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'))
            .map_or(out.len(), |j| token_start + j);
        if out[token_start..token_end] != *"[redacted]" {
            out.replace_range(token_start..token_end, "[redacted]");
        }
        from = token_start + "[redacted]".len().min(out.len() - token_start);
    }
    out
}

/// The next step to suggest for an HTTP error status.
fn status_hint(code: u16) -> &'static str {
    match code {
        401 | 403 => "check `api_key` in config.toml",
        404 => "check that `base_url` ends with the API prefix (usually /v1) and that `model` exists on the server",
        400 | 413 | 422 => "the server rejected the request; the prompt may exceed the model's context or a parameter is unsupported",
        500..=599 => "the server failed; check its log",
        _ => "check the server's log",
    }
}

/// Short description of an error body: OpenAI's `error.message` if the body
/// is such JSON, else the start of the raw text.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(sse::error_message))
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "));
    if msg.is_empty() {
        "(empty body)".into()
    } else {
        excerpt(&msg, EXCERPT_CHARS)
    }
}

/// The most specific description of a transport error. reqwest's top-level
/// message ("error sending request for url …") repeats the URL that our own
/// message already names and hides the useful part, such as "Connection
/// refused" or "invalid peer certificate", at the bottom of the source chain.
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut root: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = root.source() {
        root = s;
    }
    let mut text = root.to_string();
    if std::ptr::addr_eq(root, e as &(dyn std::error::Error + 'static)) {
        // No source chain: fall back to reqwest's own text minus the URL.
        text = format!("{}", ReqwestNoUrl(e));
    }
    if e.is_timeout() && !text.to_lowercase().contains("time") {
        text.push_str(" (timed out)");
    }
    text
}

/// Displays a reqwest error without its URL, which callers already print.
struct ReqwestNoUrl<'a>(&'a reqwest::Error);

impl fmt::Display for ReqwestNoUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.0.to_string();
        match self.0.url() {
            Some(u) => f.write_str(&full.replace(&format!(" for url ({u})"), "")),
            None => f.write_str(&full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bearer_tokens_are_redacted() {
        let key = "sk-live-0123456789abcdef";
        let body = format!("Incorrect API key provided: {key}. Header was Authorization: Bearer {key}, retry");
        let clean = redact(&body, Some(key));
        assert!(!clean.contains("0123456789"), "{clean}");
        assert!(clean.contains("Incorrect API key provided: [redacted]"), "{clean}");
        // A bearer token the key setting does not know is cut too.
        let other = redact("got Bearer abc.def-ghi; please", None);
        assert_eq!(other, "got Bearer [redacted]; please");
        let err = OpenAiError::Status {
            url: "http://h/v1/chat/completions".into(),
            code: 401,
            attempts: 1,
            excerpt: body_excerpt(format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}"}}}}"#).as_bytes()),
        }
        .redacted(Some(key));
        assert!(!err.to_string().contains(key), "{err}");
        assert!(err.to_string().contains("[redacted]"), "{err}");
    }

    #[test]
    fn body_excerpt_prefers_openai_message_and_is_short() {
        assert_eq!(body_excerpt(br#"{"error":{"message":"bad model","type":"x"}}"#), "bad model");
        let long = "x".repeat(1000);
        assert_eq!(body_excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(body_excerpt(b""), "(empty body)");
    }

    #[test]
    fn kinds() {
        assert_eq!(OpenAiError::Cancelled.kind(), ErrorKind::Cancelled);
        let refused = OpenAiError::Connect {
            url: "http://h/v1/chat/completions".into(),
            attempts: 3,
            detail: "Connection refused".into(),
        };
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        let not_found = OpenAiError::Status {
            url: "http://h/v1/chat/completions".into(),
            code: 404,
            attempts: 1,
            excerpt: "no such model".into(),
        };
        assert_eq!(not_found.kind(), ErrorKind::Unavailable);
    }
}
