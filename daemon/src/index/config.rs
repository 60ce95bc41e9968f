//! Index settings: `[index]` in `config.toml` (the file `[llm]` lives in),
//! then `MINDORY_INDEX_BACKEND`, `MINDORY_PG_URL` and
//! `MINDORY_INDEX_LIBRARY` override single keys. A missing file or table
//! means the usearch index in the data directory.
//!
//! ```toml
//! [index]
//! backend = "pgvector"                       # or "usearch" (the default)
//! url = "postgresql://mindory@db.lan/books"  # or "host=/run/postgresql dbname=books"
//! library = "household"                      # default: derived from the data dir
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::IndexError;
use crate::llm::config::{parse_error, read_section, ConfigError};

/// Which engine holds the vector index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexBackend {
    /// usearch's HNSW in a file of the data directory.
    #[default]
    Usearch,
    /// A table of a PostgreSQL database with the pgvector extension.
    Pgvector,
}

impl std::str::FromStr for IndexBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "usearch" => Ok(IndexBackend::Usearch),
            "pgvector" => Ok(IndexBackend::Pgvector),
            other => Err(format!("unknown index backend {other:?}; use usearch or pgvector")),
        }
    }
}

/// The `[index]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Which engine holds the vectors.
    pub backend: IndexBackend,
    /// The PostgreSQL connection (pgvector only): a URL
    /// (`postgresql://user:password@host:port/db`, a Unix socket directory
    /// as `postgresql://user@%2Frun%2Fpostgresql/db`) or key=value pairs
    /// (`host=/run/postgresql user=mindory dbname=books`).
    pub url: String,
    /// The name that keeps this daemon's vectors apart from other daemons'
    /// in one database: its tables live in the schema `mindory_<library>`.
    /// Empty means one derived from the data directory (see
    /// [`IndexConfig::library_name`]).
    pub library: String,
}

/// Longest library name: the schema name (`mindory_` + it) must fit
/// PostgreSQL's 63-byte identifiers.
const MAX_LIBRARY_LEN: usize = 48;

impl IndexConfig {
    /// The library name this daemon uses: the configured one, or `d` and the
    /// first 15 hex digits of the SHA-256 of the data directory's canonical
    /// path, so two daemons with different data directories never share
    /// vectors by accident and one daemon keeps its name across restarts.
    pub fn library_name(&self, data_dir: &Path) -> Result<String, IndexError> {
        if !self.library.is_empty() {
            let valid = self.library.len() <= MAX_LIBRARY_LEN
                && self
                    .library
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(IndexError::Engine(format!(
                    "the index library name {:?} is invalid: use up to {MAX_LIBRARY_LEN} lower-case letters, digits and underscores",
                    self.library
                )));
            }
            return Ok(self.library.clone());
        }
        let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
        Ok(format!("d{}", &hex::encode(digest)[..15]))
    }

    /// Applies overrides; `env` looks a variable up (the process environment
    /// in the daemon, a map in tests).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("MINDORY_INDEX_BACKEND") {
            self.backend = v.parse().map_err(|detail| ConfigError::Env {
                name: "MINDORY_INDEX_BACKEND",
                value: v.clone(),
                detail,
            })?;
        }
        if let Some(v) = env("MINDORY_PG_URL") {
            self.url = v;
        }
        if let Some(v) = env("MINDORY_INDEX_LIBRARY") {
            self.library = v;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    index: IndexConfig,
}

fn parse(path: &Path, text: &str) -> Result<IndexConfig, ConfigError> {
    toml::from_str::<FileConfig>(text)
        .map(|f| f.index)
        .map_err(|e| parse_error(path, e))
}

/// Reads `[index]` from `path` (defaults when the file does not exist), then
/// applies the environment overrides.
pub fn load(path: &Path) -> Result<IndexConfig, ConfigError> {
    let mut config = read_section(path, parse)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let text = "[llm]\nmodel = \"x\"\n[index]\nbackend = \"pgvector\"\nurl = \"host=/tmp/pg dbname=books\"\n";
        let mut c = parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(c.backend, IndexBackend::Pgvector);
        assert_eq!(c.url, "host=/tmp/pg dbname=books");
        c.apply_env(|n| match n {
            "MINDORY_PG_URL" => Some("postgresql://u@%2Ftmp/db".into()),
            "MINDORY_INDEX_BACKEND" => Some("usearch".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((c.backend, c.url.as_str()), (IndexBackend::Usearch, "postgresql://u@%2Ftmp/db"));
        assert_eq!(parse(Path::new("c.toml"), "").unwrap(), IndexConfig::default());
        let e = parse(Path::new("/x/c.toml"), "[index]\nbackend = \"faiss\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/c.toml") && e.contains("faiss"), "{e}");
    }

    #[test]
    fn library_names_are_derived_or_checked() {
        let dir = tempfile::tempdir().unwrap();
        let c = IndexConfig::default();
        let a = c.library_name(dir.path()).unwrap();
        assert_eq!(a, c.library_name(dir.path()).unwrap(), "stable");
        assert_eq!(a.len(), 16);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(a, c.library_name(other.path()).unwrap());
        let named = IndexConfig {
            library: "household_2".into(),
            ..IndexConfig::default()
        };
        assert_eq!(named.library_name(dir.path()).unwrap(), "household_2");
        let bad = IndexConfig {
            library: "Robert'); DROP".into(),
            ..IndexConfig::default()
        };
        assert!(bad.library_name(dir.path()).is_err());
    }
}
