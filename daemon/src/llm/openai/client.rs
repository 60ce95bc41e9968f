//! [`OpenAiClient`]: the streaming `/v1/chat/completions` client. It owns
//! the request body, the retry and timeout policy (retries only before the
//! first token, backoff with jitter, `Retry-After` honoured), cancellation
//! by a dropped receiver, the forwarding of content deltas, the fallback
//! for servers that ignore `stream`, and the `/models` readiness probe.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::timeout_at;
use tracing::{debug, debug_span, warn, Instrument};

use super::error::{body_excerpt, error_chain, redact, EXCERPT_CHARS};
use super::{OpenAiConfig, OpenAiError};
use crate::llm::sse::{self, excerpt, parse_chunk, ChunkError, SseEvent, SseParser};
use crate::llm::{ChatMessage, GenParams};

/// Upper bound for a server-requested `Retry-After` delay and for the
/// exponential backoff, so a misbehaving server cannot park the actor for
/// minutes.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How much of a non-2xx body is read to build the excerpt; the rest is
/// dropped so a huge HTML error page cannot be buffered.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Upper bound for a non-streamed JSON answer (server ignored `stream`).
const JSON_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What one successful `stream_chat` call produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamStats {
    pub prompt_tokens: Option<u64>,
    /// From the server's `usage` if it sent one, else the number of deltas.
    pub completion_tokens: u64,
    /// From the start of the call (retries included) to the first delta.
    pub first_token_ms: u64,
    pub total_ms: u64,
    /// Number of HTTP requests made, 1 if the first one succeeded.
    pub attempts: u32,
    pub finish_reason: Option<String>,
}

/// Streaming client; cheap to share by reference across tasks.
pub struct OpenAiClient {
    cfg: OpenAiConfig,
    http: reqwest::Client,
    chat_url: Url,
    models_url: Url,
    /// Pre-built `Bearer` header marked sensitive, so hyper and reqwest also
    /// redact it in their own debug output.
    auth: Option<HeaderValue>,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("cfg", &self.cfg)
            .field("chat_url", &self.chat_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The request body. A typed struct rather than `json!` so that `f32`
/// values serialize as written (`0.7`, not `0.699999988079071`).
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<usize>,
    temperature: f32,
    top_p: f32,
    seed: u64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    // `stream_options: {include_usage: true}` is deliberately not sent: not
    // every OpenAI-compatible server (older llama-cpp-python, some proxies)
    // is known to accept it, and the delta count is a usable fallback.
}

/// How one attempt failed, from the retry loop's point of view.
enum Failure {
    /// Nothing reached the caller yet, so another attempt is safe. `err` is
    /// the error to report if no attempts are left.
    Retryable {
        err: OpenAiError,
        retry_after: Option<Duration>,
    },
    Fatal(OpenAiError),
}

/// What a successful attempt produced; the retry loop adds `attempts`.
struct AttemptOk {
    prompt_tokens: Option<u64>,
    completion_tokens: u64,
    first_token_ms: u64,
    finish_reason: Option<String>,
}

impl OpenAiClient {
    /// Validates `cfg` and builds the HTTP client; performs no I/O.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, OpenAiError> {
        let invalid = |detail: String| OpenAiError::InvalidConfig { detail };
        let trimmed = cfg.base_url.trim().trim_end_matches('/');
        let base = Url::parse(trimmed).map_err(|e| invalid(format!("`base_url` {trimmed:?} is not a URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!("`base_url` {trimmed:?} must start with http:// or https://")));
        }
        if !base.username().is_empty() || base.password().is_some() {
            // URLs appear in error messages and logs, so they must not carry
            // credentials; the key has its own field.
            return Err(invalid("`base_url` must not contain credentials; put the key in `api_key`".into()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(format!("`base_url` {trimmed:?} must not have a query or fragment")));
        }
        if cfg.model.trim().is_empty() {
            return Err(invalid("`model` is empty".into()));
        }
        for (name, d) in [
            ("connect_timeout", cfg.connect_timeout),
            ("first_token_timeout", cfg.first_token_timeout),
            ("total_timeout", cfg.total_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("`{name}` must be greater than zero")));
            }
        }
        let auth = match cfg.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(key) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    // Deliberately does not echo the key.
                    invalid("`api_key` contains characters not allowed in an HTTP header".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let chat_url = Url::parse(&format!("{trimmed}/chat/completions"))
            .map_err(|e| invalid(format!("cannot build chat URL from `base_url`: {e}")))?;
        let models_url =
            Url::parse(&format!("{trimmed}/models")).map_err(|e| invalid(format!("cannot build models URL from `base_url`: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            // Latency of streamed tokens matters more than packet count.
            .tcp_nodelay(true)
            .user_agent(concat!("mindory-openai-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("cannot build HTTP client: {e}")))?;
        Ok(OpenAiClient {
            cfg,
            http,
            chat_url,
            models_url,
            auth,
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// Streams content deltas into `tx`.
    ///
    /// If `tx` is closed (the receiver was dropped because the gRPC caller
    /// went away) the HTTP request is dropped at once, also while waiting
    /// for headers or the first token, and `Err(Cancelled)` is returned.
    pub async fn stream_chat(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        tx: &mpsc::Sender<String>,
    ) -> Result<StreamStats, OpenAiError> {
        self.stream_chat_raw(messages, params, tx)
            .await
            .map_err(|e| e.redacted(self.cfg.api_key.as_deref()))
    }

    /// [`Self::stream_chat`] before its error is redacted.
    async fn stream_chat_raw(
        &self,
        messages: &[ChatMessage],
        params: &GenParams,
        tx: &mpsc::Sender<String>,
    ) -> Result<StreamStats, OpenAiError> {
        if !params.temperature.is_finite() || !params.top_p.is_finite() {
            return Err(OpenAiError::InvalidConfig {
                detail: "temperature and top_p must be finite numbers".into(),
            });
        }
        if tx.is_closed() {
            return Err(OpenAiError::Cancelled);
        }
        let body = ChatRequest {
            model: &self.cfg.model,
            messages,
            stream: true,
            max_tokens: (params.max_tokens > 0).then_some(params.max_tokens),
            temperature: params.temperature,
            top_p: params.top_p,
            seed: params.seed,
            stop: &params.stop,
        };
        let body = serde_json::to_vec(&body).map_err(|e| OpenAiError::InvalidConfig {
            detail: format!("cannot encode request: {e}"),
        })?;
        let started = Instant::now();
        let sent_tokens = AtomicU64::new(0);
        let work = self.run_with_retries(&body, tx, started, &sent_tokens);
        // Cancellation and the total deadline wrap everything, so they also
        // cover connecting, waiting for headers and backoff sleeps. Dropping
        // `work` drops the reqwest response, which closes the connection.
        tokio::select! {
            biased;
            _ = tx.closed() => {
                debug!(url = %self.chat_url, "receiver dropped; cancelling request");
                Err(OpenAiError::Cancelled)
            }
            r = tokio::time::timeout(self.cfg.total_timeout, work) => match r {
                Ok(r) => r,
                Err(_) => Err(OpenAiError::TotalTimeout {
                    url: self.chat_url.to_string(),
                    secs: self.cfg.total_timeout.as_secs_f64(),
                    after_tokens: sent_tokens.load(Ordering::Relaxed),
                }),
            },
        }
    }

    async fn run_with_retries(
        &self,
        body: &[u8],
        tx: &mpsc::Sender<String>,
        started: Instant,
        sent_tokens: &AtomicU64,
    ) -> Result<StreamStats, OpenAiError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let span = debug_span!("openai_chat", url = %self.chat_url, model = %self.cfg.model, attempt);
            let res = self.attempt(body, tx, started, sent_tokens, attempt).instrument(span).await;
            match res {
                Ok(ok) => {
                    let stats = StreamStats {
                        prompt_tokens: ok.prompt_tokens,
                        completion_tokens: ok.completion_tokens,
                        first_token_ms: ok.first_token_ms,
                        total_ms: started.elapsed().as_millis() as u64,
                        attempts: attempt,
                        finish_reason: ok.finish_reason,
                    };
                    debug!(url = %self.chat_url, ?stats, "chat stream finished");
                    return Ok(stats);
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retryable { err, retry_after }) => {
                    if attempt > self.cfg.max_retries {
                        return Err(err);
                    }
                    let delay = self.retry_delay(attempt, retry_after);
                    warn!(url = %self.chat_url, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying chat request");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Backoff before attempt `attempt + 1`: a server-sent `Retry-After`
    /// wins (capped); otherwise `backoff * 2^(attempt-1)`, capped, with
    /// "equal jitter" (half fixed, half random) so that several daemons
    /// restarted together do not hammer the server in lockstep.
    fn retry_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        retry_delay(self.cfg.backoff, attempt, retry_after)
    }

    async fn attempt(
        &self,
        body: &[u8],
        tx: &mpsc::Sender<String>,
        started: Instant,
        sent_tokens: &AtomicU64,
        attempt: u32,
    ) -> Result<AttemptOk, Failure> {
        let url = self.chat_url.to_string();
        let mut req = self
            .http
            .post(self.chat_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(body.to_vec());
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let ft_deadline = tokio::time::Instant::now() + self.cfg.first_token_timeout;
        let ft_timeout = || {
            Failure::Fatal(OpenAiError::FirstTokenTimeout {
                url: url.clone(),
                secs: self.cfg.first_token_timeout.as_secs_f64(),
            })
        };
        debug!("sending chat request");

        let resp = match timeout_at(ft_deadline, req.send()).await {
            Err(_) => return Err(ft_timeout()),
            Ok(Err(e)) => {
                let detail = error_chain(&e);
                let err = if e.is_connect() {
                    OpenAiError::Connect {
                        url,
                        attempts: attempt,
                        detail,
                    }
                } else {
                    OpenAiError::Transport {
                        url,
                        attempts: attempt,
                        detail,
                    }
                };
                return Err(Failure::Retryable { err, retry_after: None });
            }
            Ok(Ok(r)) => r,
        };

        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_failure(resp, attempt, ft_deadline).await);
        }

        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
        if is_json {
            return self.non_streamed(resp, tx, started, sent_tokens, ft_deadline).await;
        }

        let mut stream = resp.bytes_stream();
        let mut parser = SseParser::new();
        let mut tokens = 0u64;
        let mut first_token_ms = None;
        let mut finish_reason = None;
        let mut usage: (Option<u64>, Option<u64>) = (None, None);
        let mut saw_done = false;

        'read: loop {
            let next = if first_token_ms.is_none() {
                match timeout_at(ft_deadline, stream.next()).await {
                    Err(_) => return Err(ft_timeout()),
                    Ok(n) => n,
                }
            } else {
                stream.next().await
            };
            let events = match next {
                Some(Ok(bytes)) => parser.feed(&bytes),
                Some(Err(e)) => {
                    let err = OpenAiError::Disconnected {
                        url: url.clone(),
                        after_tokens: tokens,
                        detail: error_chain(&e),
                    };
                    return Err(if tokens == 0 {
                        Failure::Retryable { err, retry_after: None }
                    } else {
                        Failure::Fatal(err)
                    });
                }
                None => {
                    let last = parser.finish();
                    if last.is_none() {
                        break 'read;
                    }
                    last.into_iter().collect()
                }
            };
            for ev in events {
                let data = match ev {
                    SseEvent::Done => {
                        saw_done = true;
                        break 'read;
                    }
                    SseEvent::Data(d) => d,
                };
                let chunk = match parse_chunk(&data) {
                    Ok(c) => c,
                    Err(ChunkError::Malformed(detail)) => return Err(Failure::Fatal(OpenAiError::Malformed { url, detail })),
                    Err(ChunkError::Server { code, message }) => {
                        return Err(Failure::Fatal(OpenAiError::ServerError {
                            url,
                            code,
                            after_tokens: tokens,
                            message,
                        }))
                    }
                };
                if let Some(content) = chunk.content {
                    if first_token_ms.is_none() {
                        let ms = started.elapsed().as_millis() as u64;
                        debug!(first_token_ms = ms, "first token");
                        first_token_ms = Some(ms);
                    }
                    if tx.send(content).await.is_err() {
                        return Err(Failure::Fatal(OpenAiError::Cancelled));
                    }
                    tokens += 1;
                    sent_tokens.store(tokens, Ordering::Relaxed);
                }
                if chunk.finish_reason.is_some() {
                    finish_reason = chunk.finish_reason;
                }
                if chunk.prompt_tokens.is_some() {
                    usage.0 = chunk.prompt_tokens;
                }
                if chunk.completion_tokens.is_some() {
                    usage.1 = chunk.completion_tokens;
                }
            }
        }

        if !saw_done && finish_reason.is_none() {
            let err = OpenAiError::Disconnected {
                url,
                after_tokens: tokens,
                detail: "the stream ended without a finish_reason or [DONE]".into(),
            };
            return Err(if tokens == 0 {
                Failure::Retryable { err, retry_after: None }
            } else {
                Failure::Fatal(err)
            });
        }
        Ok(AttemptOk {
            prompt_tokens: usage.0,
            completion_tokens: usage.1.unwrap_or(tokens),
            first_token_ms: first_token_ms.unwrap_or_else(|| started.elapsed().as_millis() as u64),
            finish_reason,
        })
    }

    /// Turns a non-2xx response into a retryable or fatal failure.
    async fn status_failure(&self, resp: Response, attempt: u32, deadline: tokio::time::Instant) -> Failure {
        let url = self.chat_url.to_string();
        let status = resp.status();
        let retry_after = retry_after(&resp);
        // The body is only for the message, so a slow one is not waited for
        // beyond the first-token deadline.
        let body = timeout_at(deadline, read_limited(resp, ERROR_BODY_LIMIT)).await.unwrap_or_default();
        let excerpt = body_excerpt(redact(&String::from_utf8_lossy(&body), self.cfg.api_key.as_deref()).as_bytes());
        let code = status.as_u16();
        debug!(code, %excerpt, "error status");
        if status == StatusCode::TOO_MANY_REQUESTS {
            Failure::Retryable {
                err: OpenAiError::RateLimited {
                    url,
                    attempts: attempt,
                    excerpt,
                },
                retry_after,
            }
        } else if status.is_server_error() {
            Failure::Retryable {
                err: OpenAiError::Status {
                    url,
                    code,
                    attempts: attempt,
                    excerpt,
                },
                retry_after,
            }
        } else {
            Failure::Fatal(OpenAiError::Status {
                url,
                code,
                attempts: attempt,
                excerpt,
            })
        }
    }

    /// Handles a server that ignored `stream: true` and sent one JSON
    /// completion: its content is forwarded as a single delta, which keeps
    /// such servers usable instead of failing with a confusing SSE error.
    async fn non_streamed(
        &self,
        resp: Response,
        tx: &mpsc::Sender<String>,
        started: Instant,
        sent_tokens: &AtomicU64,
        deadline: tokio::time::Instant,
    ) -> Result<AttemptOk, Failure> {
        let url = self.chat_url.to_string();
        let malformed = |detail: String| Failure::Fatal(OpenAiError::Malformed { url: url.clone(), detail });
        let body = match timeout_at(deadline, read_limited(resp, JSON_BODY_LIMIT)).await {
            Err(_) => {
                return Err(Failure::Fatal(OpenAiError::FirstTokenTimeout {
                    url: url.clone(),
                    secs: self.cfg.first_token_timeout.as_secs_f64(),
                }))
            }
            Ok(b) => b,
        };
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            malformed(format!(
                "JSON answer is not valid JSON ({e}): {:?}",
                excerpt(&String::from_utf8_lossy(&body), 120)
            ))
        })?;
        if let Some(err) = v.get("error") {
            return Err(Failure::Fatal(OpenAiError::ServerError {
                url: url.clone(),
                code: err.get("code").and_then(|c| c.as_u64()).and_then(|c| u16::try_from(c).ok()),
                after_tokens: 0,
                message: excerpt(&sse::error_message(err).unwrap_or_else(|| err.to_string()), EXCERPT_CHARS),
            }));
        }
        let choice = v
            .pointer("/choices/0")
            .ok_or_else(|| malformed(format!("JSON answer has no choices: {:?}", excerpt(&v.to_string(), 120))))?;
        let content = choice
            .pointer("/message/content")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_owned();
        let first_token_ms = started.elapsed().as_millis() as u64;
        let mut tokens = 0;
        if !content.is_empty() {
            if tx.send(content).await.is_err() {
                return Err(Failure::Fatal(OpenAiError::Cancelled));
            }
            tokens = 1;
            sent_tokens.store(1, Ordering::Relaxed);
        }
        Ok(AttemptOk {
            prompt_tokens: v.pointer("/usage/prompt_tokens").and_then(|x| x.as_u64()),
            completion_tokens: v.pointer("/usage/completion_tokens").and_then(|x| x.as_u64()).unwrap_or(tokens),
            first_token_ms,
            finish_reason: choice.get("finish_reason").and_then(|f| f.as_str()).map(str::to_owned),
        })
    }

    /// `GET {base}/models`, a readiness probe returning the model ids.
    ///
    /// It does not retry, because a probe's caller decides its own polling
    /// cadence; the whole call is bounded by `connect_timeout +
    /// first_token_timeout`. Cancel it by dropping the future.
    pub async fn models(&self) -> Result<Vec<String>, OpenAiError> {
        self.models_raw().await.map_err(|e| e.redacted(self.cfg.api_key.as_deref()))
    }

    /// [`Self::models`] before its error is redacted.
    async fn models_raw(&self) -> Result<Vec<String>, OpenAiError> {
        let url = self.models_url.to_string();
        let span = debug_span!("openai_models", url = %url);
        async {
            let mut req = self.http.get(self.models_url.clone());
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            let deadline = tokio::time::Instant::now() + self.cfg.connect_timeout + self.cfg.first_token_timeout;
            let timeout_err = || OpenAiError::FirstTokenTimeout {
                url: url.clone(),
                secs: (self.cfg.connect_timeout + self.cfg.first_token_timeout).as_secs_f64(),
            };
            let resp = match timeout_at(deadline, req.send()).await {
                Err(_) => return Err(timeout_err()),
                Ok(Err(e)) if e.is_connect() => {
                    return Err(OpenAiError::Connect {
                        url,
                        attempts: 1,
                        detail: error_chain(&e),
                    })
                }
                Ok(Err(e)) => {
                    return Err(OpenAiError::Transport {
                        url,
                        attempts: 1,
                        detail: error_chain(&e),
                    })
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            let body = timeout_at(deadline, read_limited(resp, JSON_BODY_LIMIT))
                .await
                .map_err(|_| timeout_err())?;
            if !status.is_success() {
                let excerpt = body_excerpt(redact(&String::from_utf8_lossy(&body), self.cfg.api_key.as_deref()).as_bytes());
                return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                    OpenAiError::RateLimited { url, attempts: 1, excerpt }
                } else {
                    OpenAiError::Status {
                        url,
                        code: status.as_u16(),
                        attempts: 1,
                        excerpt,
                    }
                });
            }
            let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| OpenAiError::Malformed {
                url: url.clone(),
                detail: format!("models list is not JSON ({e}): {:?}", excerpt(&String::from_utf8_lossy(&body), 120)),
            })?;
            let data = v.get("data").and_then(|d| d.as_array()).ok_or_else(|| OpenAiError::Malformed {
                url: url.clone(),
                detail: format!("models list has no `data` array: {:?}", excerpt(&v.to_string(), 120)),
            })?;
            Ok(data
                .iter()
                .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_owned))
                .collect())
        }
        .instrument(span)
        .await
    }
}

/// Reads at most `limit` bytes of a body; a transport error ends the read
/// with what was received, because callers only need the bytes for
/// diagnostics or fail on truncated JSON anyway.
async fn read_limited(resp: Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

/// The wait a server asked for in `Retry-After` (whole seconds), if any.
pub(crate) fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// How long to wait before retry `attempt` (1 for the first): the server's
/// `Retry-After` when it sent one, else `base` doubled per attempt, both
/// capped at [`MAX_RETRY_AFTER`], with "equal jitter" (half fixed, half
/// random) so that clients that failed together do not retry together. The
/// chat client and the remote embedder both wait this way.
pub(crate) fn retry_delay(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(MAX_RETRY_AFTER);
    }
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(MAX_RETRY_AFTER);
    let half = exp / 2;
    half + half.mul_f64(jitter_fraction())
}

/// A uniform number in [0, 1) for jitter. A SplitMix64 step over a global
/// counter seeded from the clock is plenty for spreading retries and avoids
/// a dependency on `rand`.
fn jitter_fraction() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Role;

    #[test]
    fn base_url_is_normalised_and_validated() {
        let c = OpenAiClient::new(OpenAiConfig::new("http://h:1/v1/", "m")).unwrap();
        assert_eq!(c.chat_url.as_str(), "http://h:1/v1/chat/completions");
        assert_eq!(c.models_url.as_str(), "http://h:1/v1/models");
        for bad in ["", "ftp://h/v1", "http://u:p@h/v1", "http://h/v1?x=1", "not a url"] {
            assert!(
                matches!(
                    OpenAiClient::new(OpenAiConfig::new(bad, "m")),
                    Err(OpenAiError::InvalidConfig { .. })
                ),
                "{bad}"
            );
        }
        let mut cfg = OpenAiConfig::new("http://h/v1", "m");
        cfg.api_key = Some("bad\nkey".into());
        let e = OpenAiClient::new(cfg).unwrap_err().to_string();
        assert!(!e.contains("bad\nkey"));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let mut cfg = OpenAiConfig::new("http://h/v1", "m");
        cfg.backoff = Duration::from_millis(100);
        let c = OpenAiClient::new(cfg).unwrap();
        for attempt in 1..=5 {
            let d = c.retry_delay(attempt, None);
            let exp = Duration::from_millis(100 * (1 << (attempt - 1)));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        assert!(c.retry_delay(40, None) <= MAX_RETRY_AFTER);
        assert_eq!(c.retry_delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(c.retry_delay(1, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    }

    #[test]
    fn request_body_shape() {
        let msgs = [ChatMessage {
            role: Role::User,
            content: "hi".into(),
        }];
        let body = ChatRequest {
            model: "m",
            messages: &msgs,
            stream: true,
            max_tokens: Some(5),
            temperature: 0.7,
            top_p: 0.9,
            seed: 42,
            stop: &[],
        };
        let s = serde_json::to_string(&body).unwrap();
        assert_eq!(
            s,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":5,"temperature":0.7,"top_p":0.9,"seed":42}"#
        );
    }
}
