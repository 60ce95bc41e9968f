//! LLM settings: which backend answers, how to reach it, and how it samples.
//!
//! They come from `[llm]` in `config.toml` under the XDG config directory
//! (or the file `MINDORY_CONFIG` / `--config` names), then `MINDORY_LLM_*`
//! environment variables override single keys. A missing file means
//! defaults. The API key itself is never stored here: the config names the
//! environment variable that holds it, and the key is read when a request
//! is made, so it never reaches a log line, a status reply or a debug dump.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "MINDORY_CONFIG";

/// Which backend answers. The config file's `backend` is read by serde;
/// `MINDORY_LLM_BACKEND` goes through [`FromStr`](std::str::FromStr), which
/// lets clap's [`ValueEnum`](clap::ValueEnum) match the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The local model when its weights are installed, else the endpoint
    /// when `base_url` is set, else none.
    Auto,
    /// Gemma 3 270M in process.
    Local,
    /// An OpenAI-compatible HTTP endpoint.
    Openai,
    /// No LLM: `Ask` explains how to configure one.
    None,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim();
        <Self as clap::ValueEnum>::from_str(name, true)
            .map_err(|_| format!("unknown backend {:?}; use auto, local, openai or none", name.to_ascii_lowercase()))
    }
}

/// The `[llm]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Which backend answers.
    pub backend: BackendChoice,
    /// OpenAI-compatible endpoint up to and including `/v1`; empty when none.
    pub base_url: String,
    /// Model name sent to the endpoint.
    pub model: String,
    /// Name of the environment variable holding the API key (may be unset
    /// for local servers that need none).
    pub api_key_env: String,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// The model's context window in tokens (prompt + answer). For the local
    /// model it is also the cap that bounds memory.
    pub context_tokens: u32,
    /// Seconds to establish a connection.
    pub connect_timeout_s: u64,
    /// Seconds from sending a request to the first token.
    pub first_token_timeout_s: u64,
    /// Seconds for a whole answer.
    pub total_timeout_s: u64,
    /// Retries before the first token (connect errors, 429, 5xx).
    pub max_retries: u32,
    /// Base delay of the exponential backoff between retries, in ms.
    pub retry_backoff_ms: u64,
    /// Passages retrieved per question.
    pub retrieve_k: u32,
    /// At most this many tokens of passages go into one prompt: on a CPU
    /// every prompt token costs prefill time before the first answer token
    /// (about 5 ms each for the local model here), so the window is not
    /// filled just because it could be.
    pub passage_tokens: u32,
    /// Passages scoring below this (cosine similarity) are not relevant.
    pub min_score: f32,
    /// Before retrieving for a question, an instruction-following model
    /// writes a short answer of its own, and the search runs on the
    /// question with and without it (the question's own lists bound what a
    /// wrong guess can do). It costs a few seconds of generation per Ask
    /// and found more answers on the retrieval eval; base models, which
    /// ramble, never do it.
    pub expand_questions: bool,
    /// GGUF weights for the local backend; empty means the fetched model.
    pub local_model: String,
    /// Sampling seed, so answers are reproducible.
    pub seed: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            backend: BackendChoice::Auto,
            base_url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            temperature: 0.2,
            top_p: 0.95,
            max_tokens: 384,
            context_tokens: 8192,
            connect_timeout_s: 5,
            first_token_timeout_s: 120,
            total_timeout_s: 600,
            max_retries: 3,
            retry_backoff_ms: 500,
            retrieve_k: 8,
            passage_tokens: 1536,
            min_score: 0.25,
            expand_questions: true,
            local_model: String::new(),
            seed: 42,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("the config file {path} is invalid: {detail}; fix it or move it away to use defaults")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        detail: String,
    },
    /// An environment override has a bad value.
    #[error("environment variable {name}={value:?} is invalid: {detail}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        detail: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    llm: LlmConfig,
}

/// The config file read when none is named: `$XDG_CONFIG_HOME/mindory/config.toml`.
pub fn default_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("mindory")
        .join("config.toml")
}

/// Reads `path` (defaults when it does not exist), then applies `MINDORY_LLM_*`
/// overrides from the process environment.
pub fn load(path: &Path) -> Result<LlmConfig, ConfigError> {
    let mut config = read_section(path, parse)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    Ok(config)
}

fn parse(path: &Path, text: &str) -> Result<LlmConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map(|f| f.llm).map_err(|e| parse_error(path, e))
}

/// One table of the config file (`[llm]`, `[embed]`, `[index]`): `parse`
/// picks it out of the file's text; a missing file gives the defaults.
/// Every table's `load` reads the file through this one function.
pub(crate) fn read_section<T: Default>(path: &Path, parse: impl FnOnce(&Path, &str) -> Result<T, ConfigError>) -> Result<T, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A TOML error as the config error users see: on one line, with the file.
pub(crate) fn parse_error(path: &Path, e: toml::de::Error) -> ConfigError {
    ConfigError::Parse {
        path: path.to_path_buf(),
        detail: e.to_string().trim().replace('\n', " "),
    }
}

/// An environment override parsed as its field's type.
pub(crate) fn parsed<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| ConfigError::Env {
        name,
        value: value.clone(),
        detail: e.to_string(),
    })
}

/// Sets fields of a config table from environment overrides: each
/// `"NAME" => field` is parsed as the field's type (a clear error names the
/// variable), `"NAME" => field as string` is taken as written. `$env` looks a
/// variable up. Every table's `apply_env` (`[llm]`, `[embed]`) uses it.
macro_rules! env_overrides {
    ($config:ident, $env:ident; $($name:literal => $field:ident $(as $string:ident)?),* $(,)?) => {
        $( env_overrides!(@one $config, $env, $name, $field $(, $string)?); )*
    };
    (@one $config:ident, $env:ident, $name:literal, $field:ident, string) => {
        if let Some(v) = $env($name) {
            $config.$field = v;
        }
    };
    (@one $config:ident, $env:ident, $name:literal, $field:ident) => {
        if let Some(v) = $env($name) {
            $config.$field = $crate::llm::config::parsed($name, v)?;
        }
    };
}
pub(crate) use env_overrides;

impl LlmConfig {
    /// Applies overrides; `env` looks a variable up (the process environment
    /// in the daemon, a map in tests).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let config = self;
        env_overrides!(config, env;
            "MINDORY_LLM_BACKEND" => backend,
            "MINDORY_LLM_BASE_URL" => base_url as string,
            "MINDORY_LLM_MODEL" => model as string,
            "MINDORY_LLM_API_KEY_ENV" => api_key_env as string,
            "MINDORY_LLM_TEMPERATURE" => temperature,
            "MINDORY_LLM_TOP_P" => top_p,
            "MINDORY_LLM_MAX_TOKENS" => max_tokens,
            "MINDORY_LLM_CONTEXT_TOKENS" => context_tokens,
            "MINDORY_LLM_CONNECT_TIMEOUT_S" => connect_timeout_s,
            "MINDORY_LLM_FIRST_TOKEN_TIMEOUT_S" => first_token_timeout_s,
            "MINDORY_LLM_TOTAL_TIMEOUT_S" => total_timeout_s,
            "MINDORY_LLM_MAX_RETRIES" => max_retries,
            "MINDORY_LLM_RETRY_BACKOFF_MS" => retry_backoff_ms,
            "MINDORY_LLM_RETRIEVE_K" => retrieve_k,
            "MINDORY_LLM_PASSAGE_TOKENS" => passage_tokens,
            "MINDORY_LLM_MIN_SCORE" => min_score,
            "MINDORY_LLM_EXPAND_QUESTIONS" => expand_questions,
            "MINDORY_LLM_LOCAL_MODEL" => local_model as string,
            "MINDORY_LLM_SEED" => seed,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let text = "[llm]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nmodel = \"gemma\"\nmax_tokens = 100\n";
        let mut c = parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(c.backend, BackendChoice::Openai);
        assert_eq!(c.max_tokens, 100);
        assert_eq!(c.context_tokens, 8192, "unset keys keep their defaults");
        c.apply_env(|n| match n {
            "MINDORY_LLM_MAX_TOKENS" => Some("50".into()),
            "MINDORY_LLM_BACKEND" => Some("local".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.backend, c.max_tokens), (BackendChoice::Local, 50));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let e = parse(Path::new("/x/c.toml"), "[llm]\nbakend = \"local\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/c.toml") && e.contains("bakend"), "{e}");
        let mut c = LlmConfig::default();
        let e = c
            .apply_env(|n| (n == "MINDORY_LLM_TEMPERATURE").then(|| "warm".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MINDORY_LLM_TEMPERATURE"), "{e}");
        let e = c
            .apply_env(|n| (n == "MINDORY_LLM_BACKEND").then(|| "gpt".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("auto, local, openai or none"), "{e}");
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(&dir.path().join("absent.toml")).unwrap();
        assert_eq!(c.backend, LlmConfig::default().backend);
    }
}
