//! The OpenAI-compatible backend: a streaming client for
//! `/v1/chat/completions` endpoints, and [`HttpBackend`], which puts it
//! behind the LLM actor's [`Backend`](super::Backend) trait.
//!
//! The client owns the configuration, the request body, the retry and
//! timeout policy, the mapping of every failure to an actionable
//! [`OpenAiError`], and the forwarding of content deltas into a tokio
//! channel. SSE framing and chunk decoding live in [`super::sse`]; the
//! fault-injecting fake server used by tests lives in `super::fake`.
//!
//! # Policy in brief
//! * `base_url` is the prefix up to and including the API version segment,
//!   e.g. `http://127.0.0.1:8080/v1` or `https://openrouter.ai/api/v1`; the
//!   client appends `/chat/completions` and `/models` to it and never adds
//!   `/v1` itself, because some providers nest the version deeper.
//! * Retries (exponential backoff with jitter, `Retry-After` honoured up to
//!   [`MAX_RETRY_AFTER`]) happen only before the first content delta was
//!   forwarded, so a retry can never duplicate text the caller already has.
//! * Dropping the channel's receiver cancels the request immediately,
//!   whatever phase it is in, and closes the HTTP connection.
//! * The API key is only ever placed in a header marked sensitive; it is not
//!   logged and does not appear in any `Debug` output or error message.
//!
//! # Files
//! `config.rs` is [`OpenAiConfig`]; `error.rs` is [`OpenAiError`], the
//! status hints and the excerpts of error bodies; `client.rs` is
//! [`OpenAiClient`] (requests, retries, streaming, the `/models` probe);
//! `backend.rs` is [`HttpBackend`]; `tests.rs` runs the client against the
//! fake endpoint.

mod backend;
mod client;
mod config;
mod error;

pub use backend::HttpBackend;
pub use client::{OpenAiClient, StreamStats, MAX_RETRY_AFTER};
pub use config::OpenAiConfig;
pub use error::OpenAiError;
// The remote embedder (`embed/remote.rs`) speaks to the same kind of server:
// it shares the backoff jitter, the key redaction and the error excerpts.
pub(crate) use client::{retry_after, retry_delay};
pub(crate) use error::{body_excerpt, error_chain, redact};

#[cfg(test)]
mod tests;
