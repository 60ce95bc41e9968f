//! The chat vocabulary every backend speaks: who wrote a message, the
//! message, and the sampling parameters. It lives above both backends so
//! that neither imports the other: the HTTP client serializes these types
//! into its request body, the local engine renders them with the model's
//! chat template.

use serde::Serialize;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message, as both backends receive it (the HTTP client sends it
/// as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// Sampling parameters. `max_tokens == 0` means "server default" and is
/// omitted from the request, since servers disagree on what 0 means.
#[derive(Debug, Clone, PartialEq)]
pub struct GenParams {
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub stop: Vec<String>,
}
