//! Tracing setup, done once per process by the binary.

use tracing_subscriber::EnvFilter;

/// Installs a stderr subscriber. `RUST_LOG` wins when set; otherwise
/// `verbosity` picks the level (0 = info, 1 = debug, 2+ = trace).
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
        .with_target(false)
        .try_init();
}
