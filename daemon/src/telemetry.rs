//! Tracing setup, done once per process by the binary.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber. `RUST_LOG` wins when set; otherwise
/// `verbosity` picks the level (0 = info, 1 = debug, 2+ = trace). Colour
/// only when stderr is a terminal and `NO_COLOR` is unset: a log redirected
/// to a file or the journal stays plain text. Under systemd (which sets
/// `JOURNAL_STREAM` when stderr goes to the journal) lines carry no
/// timestamp, because journald stamps every line itself.
pub fn install_tracing(verbosity: u8) {
    let default = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives(default)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// The filter for a verbosity `level` when `RUST_LOG` is unset: Mindory at
/// that level, and the libraries whose debug output is noise at `warn`
/// (`tokenizers` logs every normalised character at trace: 139 MB for one
/// small book at `-vv`).
fn default_directives(level: &str) -> String {
    format!("{level},ort=warn,h2=warn,hyper=warn,tower=warn,tokenizers=warn,tantivy=warn,html5ever=warn,reqwest=warn")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_libraries_stay_quiet_at_trace() {
        let d = default_directives("trace");
        assert!(d.starts_with("trace,"));
        for lib in ["tokenizers=warn", "ort=warn", "tantivy=warn"] {
            assert!(d.contains(lib), "{d}");
        }
        // It parses as a filter.
        let _ = EnvFilter::new(d);
    }
}
