//! Tracing setup, done once per process by the binary.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber. `RUST_LOG` wins when set; otherwise
/// `verbosity` picks the level (0 = info, 1 = debug, 2+ = trace). Colour
/// only when stderr is a terminal and `NO_COLOR` is unset: a log redirected
/// to a file or the journal stays plain text.
pub fn install_tracing(verbosity: u8) {
    let default = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{default},ort=warn,h2=warn,hyper=warn,tower=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .try_init();
}
