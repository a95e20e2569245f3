//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`), as JSON when
//! `PODGATE_LOG_FORMAT=json`. Standard output is left to the commands' own output.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Safe to call once; later calls are ignored.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
