//! Telemetry: the process-wide log subscriber.
//!
//! Logs go to stdout, one line per event, human-readable (coloured only on a terminal) or
//! JSON. The WebRTC stack (webrtc-rs) logs through the `log` crate; those records are
//! bridged into `tracing` (the `tracing-log` bridge is installed with the subscriber), so one
//! filter governs both. The default filter keeps the stack's chatter down:
//! `info,rtc=warn,webrtc=warn` (a target directive matches by prefix, so `rtc` also covers
//! `rtc_ice`, `rtc_dtls`, ...).

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber (and the `log` bridge). Call once, early.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .parse(filter)
        .with_context(|| format!("invalid log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let installed = match format {
        LogFormat::Human => builder
            .with_target(true)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot install the log subscriber")
}
