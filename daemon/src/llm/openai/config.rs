//! [`OpenAiConfig`]: how to reach one OpenAI-compatible server, with the
//! documented defaults and a `Debug` that never shows the key.

use std::fmt;
use std::time::Duration;

/// Connection settings for one OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Prefix up to and including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
    /// A trailing slash is ignored.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer …`; never logged or shown by `Debug`.
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// From sending a request to the first non-empty content delta.
    pub first_token_timeout: Duration,
    /// Whole `stream_chat` call, retries and backoff included.
    pub total_timeout: Duration,
    /// Extra attempts after the first one; only before the first token.
    pub max_retries: u32,
    /// Base delay of the exponential backoff.
    pub backoff: Duration,
}

impl OpenAiConfig {
    /// A configuration with the documented defaults.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(300),
            max_retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    // Hand-written so that the key can never leak through `{:?}` in a log
    // line or a panic message; only its presence is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::openai::OpenAiClient;

    #[test]
    fn config_debug_redacts_key() {
        let mut cfg = OpenAiConfig::new("http://127.0.0.1:1/v1", "m");
        cfg.api_key = Some("sk-secret-123".into());
        let s = format!("{cfg:?}");
        assert!(!s.contains("sk-secret-123"), "{s}");
        assert!(s.contains("<redacted>"));
        let c = OpenAiClient::new(cfg).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("sk-secret-123"), "{s}");
    }
}
