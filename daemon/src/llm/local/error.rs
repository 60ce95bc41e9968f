//! The local backend's error type, a leaf every other `local` module uses:
//! loading a GGUF file, rendering a prompt and running the model can each
//! fail, and each message says what to do about it.

use std::path::{Path, PathBuf};

/// Everything that can go wrong; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The model file cannot be read.
    #[error("cannot read model file {path}: {source}; check that the file exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a GGUF model this engine runs.
    #[error(
        "model file {path} is not a usable GGUF model: {detail}; run `mindory models fetch` to install it again, or point Mindory at a gemma3 or qwen2 GGUF file"
    )]
    Gguf { path: PathBuf, detail: String },
    /// The prompt does not fit in the model's context.
    #[error("prompt needs {tokens} tokens plus the requested answer, but only {limit} prompt tokens fit in the context; shorten the prompt or ask for fewer answer tokens")]
    PromptTooLong { tokens: usize, limit: usize },
    /// The caller asked for impossible sampling settings.
    #[error("invalid generation parameters: {0}")]
    InvalidParams(String),
    /// The GGUF file's chat template fails on this conversation.
    #[error("the chat template of {path} cannot render this conversation: {detail}")]
    Template { path: PathBuf, detail: String },
    /// candle failed while running the model.
    #[error("model computation failed: {0}; this is a bug or an out-of-memory condition, retry with a shorter prompt")]
    Candle(String),
}

impl LocalError {
    /// What kind of failure this is (see [`crate::error_kind`]): a missing
    /// or unusable model file and a prompt too long for the context are
    /// fixed by the user; a template or kernel failure is a bug.
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            LocalError::Io { .. } | LocalError::Gguf { .. } | LocalError::PromptTooLong { .. } => ErrorKind::Precondition,
            LocalError::InvalidParams(_) => ErrorKind::Invalid,
            LocalError::Template { .. } | LocalError::Candle(_) => ErrorKind::Internal,
        }
    }
}

impl From<candle_core::Error> for LocalError {
    fn from(e: candle_core::Error) -> Self {
        LocalError::Candle(e.to_string())
    }
}

/// A GGUF file that cannot be used, and why.
pub(super) fn gguf_error(path: &Path, detail: String) -> LocalError {
    LocalError::Gguf {
        path: path.to_path_buf(),
        detail,
    }
}
