//! [`HttpBackend`]: the OpenAI-compatible client behind the LLM actor's
//! [`Backend`](crate::llm::Backend) trait, with the token counter the
//! prompt builder uses for an endpoint whose tokenizer is unknown.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{OpenAiClient, OpenAiConfig, OpenAiError};
use crate::llm::{ChatMessage, GenParams};

/// The HTTP backend: an [`OpenAiClient`] behind the actor's [`Backend`]
/// trait, with a token counter for packing prompts.
pub struct HttpBackend {
    client: std::sync::Arc<OpenAiClient>,
    context: usize,
    counter: crate::llm::TokenCount,
    counter_note: &'static str,
}

impl HttpBackend {
    /// Builds the client from the `[llm]` settings. The API key is read
    /// from the environment variable the config names, now, and kept only
    /// in the client's sensitive header.
    pub fn new(config: &crate::llm::config::LlmConfig, models_dir: &std::path::Path) -> Result<Self, OpenAiError> {
        if config.base_url.trim().is_empty() {
            return Err(OpenAiError::InvalidConfig {
                detail: "`base_url` is empty; set it to the server's prefix up to and including /v1".into(),
            });
        }
        if config.model.trim().is_empty() {
            return Err(OpenAiError::InvalidConfig {
                detail: "`model` is empty; set it to a model the server offers (`GET /v1/models` lists them)".into(),
            });
        }
        let mut cfg = OpenAiConfig::new(config.base_url.clone(), config.model.clone());
        cfg.api_key = std::env::var(&config.api_key_env).ok().filter(|k| !k.trim().is_empty());
        cfg.connect_timeout = Duration::from_secs(config.connect_timeout_s.max(1));
        cfg.first_token_timeout = Duration::from_secs(config.first_token_timeout_s.max(1));
        cfg.total_timeout = Duration::from_secs(config.total_timeout_s.max(1));
        cfg.max_retries = config.max_retries;
        cfg.backoff = Duration::from_millis(config.retry_backoff_ms);
        let client = OpenAiClient::new(cfg)?;
        // The endpoint's tokenizer is unknown. An installed local model's
        // vocabulary (Qwen's 152k, Gemma's 262k) is a
        // close proxy for modern models when its GGUF is installed;
        // otherwise a conservative estimate (a token per 3 bytes) keeps
        // prompts inside the window.
        let gguf = crate::llm::local_model_path("", models_dir);
        let (counter, counter_note): (crate::llm::TokenCount, _) = match crate::llm::local::GgufTokenizer::from_file(&gguf) {
            Ok(t) => {
                let t = std::sync::Arc::new(t);
                (
                    std::sync::Arc::new(move |s: &str| t.count(s)),
                    "prompt sizes counted with the local model's tokenizer",
                )
            }
            Err(_) => (
                std::sync::Arc::new(|s: &str| s.len().div_ceil(3)),
                "prompt sizes estimated at 3 bytes per token",
            ),
        };
        Ok(HttpBackend {
            client: std::sync::Arc::new(client),
            context: config.context_tokens as usize,
            counter,
            counter_note,
        })
    }
}

impl crate::llm::Backend for HttpBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> String {
        self.client.config().model.clone()
    }

    fn context_tokens(&self) -> usize {
        self.context
    }

    fn counter(&self) -> crate::llm::TokenCount {
        self.counter.clone()
    }

    fn base_url(&self) -> String {
        self.client.config().base_url.clone()
    }

    fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        tx: mpsc::Sender<String>,
    ) -> futures::future::BoxFuture<'static, Result<crate::llm::GenOutcome, crate::llm::LlmError>> {
        let client = self.client.clone();
        Box::pin(async move {
            match client.stream_chat(&messages, &params, &tx).await {
                Ok(stats) => Ok(crate::llm::GenOutcome {
                    prompt_tokens: stats.prompt_tokens.unwrap_or(0),
                    completion_tokens: stats.completion_tokens,
                    first_token_ms: stats.first_token_ms,
                    total_ms: stats.total_ms,
                    finish: stats.finish_reason.unwrap_or_else(|| "stop".into()),
                }),
                Err(OpenAiError::Cancelled) => Err(crate::llm::LlmError::Cancelled),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn readiness(&self) -> futures::future::BoxFuture<'static, (bool, String)> {
        let client = self.client.clone();
        let note = self.counter_note;
        Box::pin(async move {
            match client.models().await {
                Ok(models) => (
                    true,
                    format!(
                        "{} answers; it serves {}; {note}",
                        client.config().base_url,
                        if models.is_empty() {
                            "no listed models".to_string()
                        } else {
                            models.join(", ")
                        }
                    ),
                ),
                Err(e) => (false, e.to_string()),
            }
        })
    }
}
