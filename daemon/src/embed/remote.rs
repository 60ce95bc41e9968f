//! Embedding through a remote OpenAI-compatible server: the `[embed]` table
//! of `config.toml` ([`EmbedConfig`]) and [`RemoteEmbedder`], the engine that
//! sends passages to `POST <base_url>/embeddings` (llama.cpp's server, vLLM,
//! Hugging Face TEI, Ollama, Infinity) instead of running a model here.
//!
//! The engine keeps the [`Embedder`] contract of the local ones: it runs on
//! an embedding thread and answers a whole batch with unit-length vectors in
//! order. Inside a batch it splits the texts into requests of `batch_size`
//! and keeps `concurrency` of them in flight (on a small tokio runtime of its
//! own, created on the thread that embeds), so ingest throughput follows the
//! server rather than the local CPU. Each request has a timeout and is
//! retried with exponential backoff on connection errors, timeouts, 5xx and
//! 429; when the retries run out the error is "unavailable", which makes the
//! ingest pool defer the book and run it again later instead of failing it.
//! An answer that is not embeddings (not JSON, the wrong count or length, a
//! number that is not finite) fails the book with the endpoint and the reason.
//!
//! A remote model is a different model from every local one, even when the
//! server runs the same weights: its id is `openai:<model>@<host>`, recorded
//! with every vector, so the store's one-model-per-library rule and the
//! model swap apply to it as to any other model. The API key comes from
//! `MINDORY_EMBED_API_KEY`, never from the file; it only ever sits in a
//! header marked sensitive and is cut out of any error text.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::{normalize, EmbedError, Embedder};
use crate::error_kind::ErrorKind;
use crate::llm::config::{env_overrides, parse_error, read_section, ConfigError};
use crate::llm::openai::{body_excerpt, error_chain, redact, retry_after, retry_delay};

/// Environment variable holding the embedding server's API key, if it needs one.
pub const API_KEY_ENV: &str = "MINDORY_EMBED_API_KEY";

/// The prefix of every remote model id.
pub const REMOTE_PREFIX: &str = "openai:";

/// Where passages are embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedBackend {
    /// The catalogued model (`--embedding-model`) in this process.
    #[default]
    Local,
    /// An OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
}

impl std::str::FromStr for EmbedBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(EmbedBackend::Local),
            "openai" => Ok(EmbedBackend::Openai),
            other => Err(format!("unknown embedding backend {other:?}; use local or openai")),
        }
    }
}

/// The `[embed]` table of `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// Where passages are embedded.
    pub backend: EmbedBackend,
    /// Endpoint prefix up to and including `/v1`, e.g. `http://gpu-box:8080/v1`.
    pub base_url: String,
    /// Model name sent to the server (and part of the model id).
    pub model: String,
    /// Passages per request.
    pub batch_size: usize,
    /// Requests in flight at once while ingesting.
    pub concurrency: usize,
    /// Seconds one request may take, from sending to the whole answer.
    pub timeout_s: u64,
    /// Seconds to establish a connection.
    pub connect_timeout_s: u64,
    /// Retries of one request (connection errors, timeouts, 5xx, 429).
    pub max_retries: u32,
    /// Base delay of the exponential backoff between retries, in ms.
    pub retry_backoff_ms: u64,
    /// Vector length; 0 asks the server at start (which must then be up).
    pub dimensions: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            backend: EmbedBackend::Local,
            base_url: String::new(),
            model: String::new(),
            batch_size: 32,
            concurrency: 2,
            timeout_s: 60,
            connect_timeout_s: 5,
            max_retries: 4,
            retry_backoff_ms: 250,
            dimensions: 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    embed: EmbedConfig,
}

/// Reads `[embed]` from `path` (defaults when the file does not exist), then
/// applies `MINDORY_EMBED_*` overrides from the process environment.
pub fn load(path: &Path) -> Result<EmbedConfig, ConfigError> {
    let mut config = read_section(path, parse)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    Ok(config)
}

fn parse(path: &Path, text: &str) -> Result<EmbedConfig, ConfigError> {
    toml::from_str::<FileConfig>(text)
        .map(|f| f.embed)
        .map_err(|e| parse_error(path, e))
}

impl EmbedConfig {
    /// Applies overrides; `env` looks a variable up (the process environment
    /// in the daemon, a map in tests).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let config = self;
        env_overrides!(config, env;
            "MINDORY_EMBED_BACKEND" => backend,
            "MINDORY_EMBED_BASE_URL" => base_url as string,
            "MINDORY_EMBED_MODEL" => model as string,
            "MINDORY_EMBED_BATCH_SIZE" => batch_size,
            "MINDORY_EMBED_CONCURRENCY" => concurrency,
            "MINDORY_EMBED_TIMEOUT_S" => timeout_s,
            "MINDORY_EMBED_CONNECT_TIMEOUT_S" => connect_timeout_s,
            "MINDORY_EMBED_MAX_RETRIES" => max_retries,
            "MINDORY_EMBED_RETRY_BACKOFF_MS" => retry_backoff_ms,
            "MINDORY_EMBED_DIMENSIONS" => dimensions,
        );
        Ok(())
    }

    /// The model id vectors from this endpoint are recorded with:
    /// `openai:<model>@<host>:<port>`. Host and port are part of it because
    /// two servers (one host, two ports is common) may give the same name,
    /// such as `embed`, to different weights, and vectors of two models must
    /// never meet in one library. A server moved elsewhere is a new model to
    /// the library: `mindory models use` re-embeds, or the old address is
    /// kept reachable.
    pub fn model_id(&self) -> Result<String, RemoteError> {
        let url = self.endpoint()?;
        Ok(format!(
            "{REMOTE_PREFIX}{}@{}:{}",
            self.model.trim(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        ))
    }

    /// `<base_url>/embeddings`, after checking the settings.
    fn endpoint(&self) -> Result<Url, RemoteError> {
        let invalid = |detail: String| RemoteError::InvalidConfig { detail };
        let trimmed = self.base_url.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(invalid(
                "`base_url` is empty; set it to the server's API prefix, e.g. http://127.0.0.1:8080/v1".into(),
            ));
        }
        let base = Url::parse(trimmed).map_err(|e| invalid(format!("`base_url` {trimmed:?} is not a URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(format!(
                "`base_url` {trimmed:?} must be an http:// or https:// URL with a host"
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            // URLs appear in error messages and model ids, so they must not
            // carry credentials; the key has its own variable.
            return Err(invalid(format!(
                "`base_url` must not contain credentials; put the key in {API_KEY_ENV}"
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(format!("`base_url` {trimmed:?} must not have a query or fragment")));
        }
        if self.model.trim().is_empty() {
            return Err(invalid(
                "`model` is empty; set it to the embedding model's name on the server".into(),
            ));
        }
        if self.batch_size == 0 || self.concurrency == 0 || self.timeout_s == 0 || self.connect_timeout_s == 0 {
            return Err(invalid(
                "`batch_size`, `concurrency`, `timeout_s` and `connect_timeout_s` must be greater than zero".into(),
            ));
        }
        Url::parse(&format!("{trimmed}/embeddings")).map_err(|e| invalid(format!("cannot build the embeddings URL from `base_url`: {e}")))
    }
}

/// Every way embedding through the server can fail. Messages name the URL
/// (never the key) and say what to try next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The `[embed]` settings cannot work.
    #[error("invalid embedding server configuration: {detail}; fix the [embed] section of config.toml")]
    InvalidConfig {
        /// What is wrong.
        detail: String,
    },
    /// The library's vectors come from a remote model this configuration
    /// does not reach.
    #[error("the library is embedded with {model_id}, but [embed] in config.toml does not point at it ({configured}); set backend = \"openai\" with that server's base_url and model, or switch the library to a local model with `mindory models use`")]
    NotConfigured {
        /// The library's model.
        model_id: String,
        /// What the configuration names instead.
        configured: String,
    },
    /// No usable answer after every retry: the server is down, overloaded
    /// or too slow. The book waits and is embedded again later.
    #[error("the embedding server {url} did not answer after {attempts} attempt(s): {detail}; is it running? the books wait and are embedded once it answers")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// Requests made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The server refused the request (a 4xx other than 429).
    #[error("the embedding server {url} answered HTTP {code}: {excerpt}; {hint}", hint = status_hint(*code))]
    Refused {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        code: u16,
        /// The start of the error body (key redacted).
        excerpt: String,
    },
    /// The server answered, but not with the embeddings asked for.
    #[error("the embedding server {url} sent a bad answer: {reason}; check that `base_url` points at an OpenAI-compatible embeddings endpoint and `model` is an embedding model")]
    BadAnswer {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl RemoteError {
    /// What kind of failure this is. Only an unreachable server is
    /// "unavailable" (the ingest pool defers the book); a refusal or a bad
    /// answer will not get better by itself.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::Unreachable { .. } => ErrorKind::Unavailable,
            RemoteError::InvalidConfig { .. }
            | RemoteError::NotConfigured { .. }
            | RemoteError::Refused { .. }
            | RemoteError::BadAnswer { .. } => ErrorKind::Precondition,
        }
    }
}

/// The next step to suggest for a refusal.
fn status_hint(code: u16) -> &'static str {
    match code {
        401 | 403 => "check the key in MINDORY_EMBED_API_KEY",
        404 => "check that `base_url` ends with the API prefix (usually /v1) and that `model` exists on the server",
        400 | 413 | 422 => "the server rejected the passages; lower `batch_size`, or check that the model accepts 256-token inputs",
        _ => "check the server's log",
    }
}

/// The request body. `encoding_format` asks for plain numbers: some servers
/// answer base64 by default.
#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    /// Position of the input; OpenAI's API may answer out of order.
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

/// Reads an `/embeddings` answer for `expected` inputs: the vectors in input
/// order, each of `dimensions` numbers (any length when `None`, but all the
/// same), finite and not all zero, scaled to unit length. The error is the
/// reason the answer is unusable.
pub fn parse_embeddings(body: &[u8], expected: usize, dimensions: Option<usize>) -> Result<Vec<Vec<f32>>, String> {
    let response: EmbeddingsResponse = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(120)])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        format!("not an embeddings JSON object ({e}): {start:?}")
    })?;
    if response.data.len() != expected {
        return Err(format!("{} vector(s) for {expected} passage(s)", response.data.len()));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    let dimensions = dimensions.or_else(|| response.data.first().map(|d| d.embedding.len()));
    for (position, item) in response.data.into_iter().enumerate() {
        let i = item.index.unwrap_or(position);
        let slot = slots
            .get_mut(i)
            .ok_or_else(|| format!("index {i} is out of range for {expected} passage(s)"))?;
        if slot.is_some() {
            return Err(format!("index {i} appears twice"));
        }
        let mut v = item.embedding;
        if Some(v.len()) != dimensions || v.is_empty() {
            return Err(format!(
                "a vector of {} numbers where the model gives {}",
                v.len(),
                dimensions.unwrap_or(0)
            ));
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(format!("vector {i} has a number that is not finite"));
        }
        if v.iter().all(|&x| x == 0.0) {
            return Err(format!("vector {i} is all zeros"));
        }
        normalize(&mut v);
        *slot = Some(v);
    }
    Ok(slots
        .into_iter()
        .map(|v| v.expect("every index filled: counts match and none repeats"))
        .collect())
}

/// Embeds through an OpenAI-compatible `/embeddings` endpoint.
pub struct RemoteEmbedder {
    config: EmbedConfig,
    model_id: String,
    url: Url,
    http: reqwest::Client,
    /// `Bearer <key>`, marked sensitive so reqwest never prints it.
    auth: Option<HeaderValue>,
    /// The key itself, only to cut it out of error bodies.
    key: Option<String>,
    dimensions: usize,
    /// Requests in flight at once.
    concurrency: usize,
    /// Runs the requests. Created on first use, on the embedding thread:
    /// a runtime may not be created or dropped inside another one's tasks.
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for RemoteEmbedder {
    // Hand-written so the key can never leak through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteEmbedder")
            .field("model_id", &self.model_id)
            .field("url", &self.url.as_str())
            .field("api_key", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("dimensions", &self.dimensions)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl RemoteEmbedder {
    /// Checks `config`, reads the key from [`API_KEY_ENV`], and learns the
    /// vector length: from `dimensions` when set, else by embedding one
    /// word (so the server must be up). Blocking: call it off the async
    /// threads.
    pub fn connect(config: &EmbedConfig) -> Result<Self, RemoteError> {
        let key = std::env::var(API_KEY_ENV)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        Self::connect_with_key(config, key)
    }

    /// [`connect`](Self::connect) with the key given rather than read.
    pub fn connect_with_key(config: &EmbedConfig, key: Option<String>) -> Result<Self, RemoteError> {
        let url = config.endpoint()?;
        let model_id = config.model_id()?;
        let invalid = |detail: String| RemoteError::InvalidConfig { detail };
        let auth = match &key {
            None => None,
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}"))
                    .map_err(|_| invalid(format!("{API_KEY_ENV} contains characters not allowed in an HTTP header")))?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let http = http_client(config)?;
        let mut embedder = RemoteEmbedder {
            config: config.clone(),
            model_id,
            url,
            http,
            auth,
            key,
            dimensions: config.dimensions,
            concurrency: config.concurrency,
            runtime: None,
        };
        if embedder.dimensions == 0 {
            let probe = embedder.run(|this| this.request(&["dimensions"], None))?;
            embedder.dimensions = probe.first().map_or(0, Vec::len);
        }
        Ok(embedder)
    }

    /// Another engine on the same endpoint with `concurrency` requests in
    /// flight (one for queries); it shares the learnt vector length.
    pub fn with_concurrency(&self, concurrency: usize) -> Result<Self, RemoteError> {
        Ok(RemoteEmbedder {
            config: self.config.clone(),
            model_id: self.model_id.clone(),
            url: self.url.clone(),
            // A client of its own, not a clone: a clone shares the pool of
            // kept-alive connections, whose I/O runs on the runtime that
            // opened them, and each engine's runtime only runs while its own
            // thread embeds. A connection borrowed across engines would
            // hang until the other one next embeds.
            http: http_client(&self.config)?,
            auth: self.auth.clone(),
            key: self.key.clone(),
            dimensions: self.dimensions,
            concurrency: concurrency.max(1),
            runtime: None,
        })
    }

    /// Runs `f`'s future to completion on this engine's runtime.
    fn run<'a, T, F>(&'a mut self, f: impl FnOnce(&'a Self) -> F) -> Result<T, RemoteError>
    where
        F: std::future::Future<Output = Result<T, RemoteError>> + 'a,
    {
        if self.runtime.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| RemoteError::InvalidConfig {
                    detail: format!("cannot start the HTTP runtime: {e}"),
                })?;
            self.runtime = Some(runtime);
        }
        let this: &'a Self = self;
        this.runtime.as_ref().expect("created above").block_on(f(this))
    }

    /// Embeds `texts` in requests of `batch_size`, `concurrency` at a time,
    /// keeping their order.
    async fn embed_all(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, RemoteError> {
        let dims = Some(self.dimensions).filter(|&d| d > 0);
        let parts: Vec<Vec<Vec<f32>>> = futures::stream::iter(texts.chunks(self.config.batch_size.max(1)))
            .map(|chunk| self.request(chunk, dims))
            .buffered(self.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// One request, retried on connection errors, timeouts, 5xx and 429
    /// with exponential backoff (a `Retry-After` wins, capped).
    async fn request(&self, texts: &[&str], dimensions: Option<usize>) -> Result<Vec<Vec<f32>>, RemoteError> {
        let url = self.url.to_string();
        let body = EmbeddingsRequest {
            model: self.config.model.trim(),
            input: texts,
            encoding_format: "float",
        };
        let attempts = self.config.max_retries.saturating_add(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .post(self.url.clone())
                .timeout(Duration::from_secs(self.config.timeout_s))
                .json(&body);
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            // A failure that another attempt may cure, with the server's
            // own wait if it sent one.
            let (detail, retry_after) = match req.send().await {
                Err(e) => (redact(&error_chain(&e), self.key.as_deref()), None),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    // Read with a cap: a `base_url` pointing at the wrong
                    // thing must not fill memory. An answer cut at the cap
                    // fails to parse, with that reason.
                    let limit = texts.len().max(1) * dimensions.unwrap_or(0).max(4096) * 24 + 65_536;
                    match read_capped(resp, limit).await {
                        Err(e) => (redact(&error_chain(&e), self.key.as_deref()), None),
                        Ok(bytes) if status.is_success() => {
                            return parse_embeddings(&bytes, texts.len(), dimensions).map_err(|reason| RemoteError::BadAnswer {
                                url: url.clone(),
                                reason: redact(&reason, self.key.as_deref()),
                            });
                        }
                        Ok(bytes) => {
                            let excerpt = redact(&body_excerpt(&bytes), self.key.as_deref());
                            if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                                return Err(RemoteError::Refused {
                                    url,
                                    code: status.as_u16(),
                                    excerpt,
                                });
                            }
                            (format!("HTTP {}: {excerpt}", status.as_u16()), retry_after)
                        }
                    }
                }
            };
            if attempt >= attempts {
                return Err(RemoteError::Unreachable { url, attempts, detail });
            }
            let delay = retry_delay(Duration::from_millis(self.config.retry_backoff_ms), attempt, retry_after);
            tracing::debug!(%url, attempt, %detail, delay_ms = delay.as_millis() as u64, "embedding request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

impl Embedder for RemoteEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.run(|this| this.embed_all(texts))?)
    }
}

/// An HTTP client with the configured connection timeout.
fn http_client(config: &EmbedConfig) -> Result<reqwest::Client, RemoteError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(config.connect_timeout_s))
        .user_agent(concat!("mindory-embed-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RemoteError::InvalidConfig {
            detail: format!("cannot build the HTTP client: {e}"),
        })
}

/// The ingest engine (`concurrency` requests in flight) and the query engine
/// (one) for the library's remote model `model_id`, which `config` must reach.
pub(super) fn load_pair(model_id: &str, config: Option<&EmbedConfig>) -> Result<(RemoteEmbedder, RemoteEmbedder), RemoteError> {
    let configured = match config.filter(|c| c.backend == EmbedBackend::Openai) {
        Some(c) => c,
        None => {
            return Err(RemoteError::NotConfigured {
                model_id: model_id.to_string(),
                configured: "the local backend".into(),
            })
        }
    };
    let id = configured.model_id()?;
    if id != model_id {
        return Err(RemoteError::NotConfigured {
            model_id: model_id.to_string(),
            configured: id,
        });
    }
    let ingest = RemoteEmbedder::connect(configured)?;
    let query = ingest.with_concurrency(1)?;
    Ok((ingest, query))
}

/// The body of `resp`, cut at `limit` bytes. A connection lost mid-body is
/// an error (worth a retry), unlike a body cut at the cap, which then fails
/// to parse with that reason.
async fn read_capped(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
