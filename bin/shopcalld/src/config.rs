//! Config: the daemon's settings, from flags, `SHOPCALL_*` environment variables and an
//! optional TOML file.
//!
//! Precedence, per setting: flag > environment > config file > default. Every setting has a
//! default, so `shopcalld` starts with no arguments. [`Config::load`] validates everything
//! before anything binds a socket, and names the source of a bad value in its message.
//!
//! The config file uses the long flag names with `_` instead of `-`:
//!
//! ```toml
//! grpc_listen = "127.0.0.1:50051"
//! metrics_listen = "127.0.0.1:9464"
//! udp_bind = "0.0.0.0:40000"
//! announce_ips = ["203.0.113.7"]
//! max_calls = 10000
//! udp_socket_buffer = 8388608       # bytes of kernel buffer on the media socket; 0 = default
//! video_codecs = ["vp8", "vp9", "h264"]
//! connect_timeout_secs = 30
//! shutdown_timeout_secs = 10
//! log_format = "human"
//! log_level = "info,rtc=warn,webrtc=warn"
//!
//! # Calls: limits, liveness, policy
//! ring_timeout_secs = 45
//! max_duration_secs = 7200
//! inactivity_timeout_secs = 60
//! disconnect_timeout_secs = 8
//! reconnect_grace_secs = 20
//! default_profile = "showroom"      # else "rear-camera-off"
//! recording_dir = "/var/lib/shopcall/recordings"  # else recording is off (docs/recording.md)
//!
//! # The gRPC API: authentication, timeouts, rate limits (docs/operations.md)
//! auth_token_file = "/etc/shopcall/token"   # or auth_token = "..."; env SHOPCALL_AUTH_TOKEN
//! tls_cert = "/etc/shopcall/tls/server.pem"
//! tls_key = "/etc/shopcall/tls/server.key"
//! tls_client_ca = "/etc/shopcall/tls/clients-ca.pem"   # mutual TLS: clients need a cert
//! insecure_allow_public_grpc = false
//! request_timeout_secs = 30
//! create_call_rate = 50             # per second and client address; 0 = no limit
//! create_call_burst = 100
//! join_rate = 100
//! join_burst = 200
//!
//! [profiles.showroom]               # a policy::ProfileDef (docs/policy.md)
//! base = "merchant-video"
//! customer.accepted_sources = ["microphone", "camera_rear"]
//!
//! [eligibility]                     # policy::EligibilityRules
//! min_rating = 4.5
//! min_reply_rate = 0.9
//! require_opt_in = true
//! on_ineligible = "audio_only"      # or "refuse"
//! ```
//!
//! The `[profiles.*]` and `[eligibility]` tables exist only in the file; every other setting
//! also has a flag and a variable. Profiles and rules are validated by the policy crate, and
//! its message (naming the profile and the key) is the error. The gRPC security settings
//! (token, TLS, the refusal to serve a public address without them, rate limits) are
//! resolved in `config/security.rs`.

mod security;

pub use security::{AuthToken, GrpcSecurity, RateLimit, RateLimits};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::Deserialize;
use sfu::policy::{EligibilityRules, ProfileDef, ProfileSet};
use sfu::{CallLimits, SfuConfig, VideoCodec};
use tracing_subscriber::EnvFilter;

/// Default gRPC listen address.
pub const DEFAULT_GRPC_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50051);
/// Default Prometheus listen address.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);
/// Default log filter: our own logs at info, the WebRTC stack only when it warns.
pub const DEFAULT_LOG_LEVEL: &str = "info,rtc=warn,webrtc=warn";
/// Default time calls may go on after SIGTERM (the drain deadline).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest call limit or liveness timeout accepted, in seconds (a day).
pub const MAX_LIMIT_SECS: u64 = 24 * 60 * 60;

/// Command-line flags. Each has an environment variable; none has a clap default, so that
/// the config file can sit between the environment and the built-in default.
#[derive(Debug, Parser)]
#[command(
    name = "shopcalld",
    version,
    about = "shopcall's media server (SFU) for 1:1 merchant/customer video calls, driven over gRPC",
    long_about = "shopcall's media server (SFU) for 1:1 merchant/customer video calls, driven over \
gRPC.\n\nEvery setting comes from, in order of precedence: its flag, its SHOPCALL_* environment \
variable, the TOML file given with --config, or its default. With no arguments, gRPC listens on \
127.0.0.1:50051, Prometheus metrics on 127.0.0.1:9464/metrics and media on UDP 0.0.0.0:40000."
)]
pub struct Cli {
    /// TOML config file (keys are the long flag names with `_` for `-`).
    #[arg(long, env = "SHOPCALL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "SHOPCALL_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<SocketAddr>,
    /// Prometheus listen address, serving /metrics and /healthz [default: 127.0.0.1:9464].
    #[arg(long, env = "SHOPCALL_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Address of the one media UDP socket all calls share [default: 0.0.0.0:40000].
    #[arg(long, env = "SHOPCALL_UDP_BIND", value_name = "ADDR")]
    pub udp_bind: Option<SocketAddr>,
    /// Address announced in ICE host candidates; repeat for several (the environment variable
    /// takes a comma-separated list) [default: this machine's addresses].
    #[arg(
        long = "announce-ip",
        env = "SHOPCALL_ANNOUNCE_IP",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub announce_ips: Vec<IpAddr>,
    /// Maximum concurrent calls; CreateCall beyond it fails with RESOURCE_EXHAUSTED
    /// [default: 10000].
    #[arg(long, env = "SHOPCALL_MAX_CALLS", value_name = "N")]
    pub max_calls: Option<usize>,
    /// Kernel receive and send buffer of the media socket in bytes, which absorbs the
    /// driver's pauses for every call at once; 0 keeps the kernel's default. Above
    /// net.core.rmem_max it needs CAP_NET_ADMIN (root), else the kernel caps it and a warning
    /// is logged [default: 8388608].
    #[arg(long, env = "SHOPCALL_UDP_SOCKET_BUFFER", value_name = "BYTES")]
    pub udp_socket_buffer: Option<usize>,
    /// Video codecs in order of preference, comma-separated; must contain vp8
    /// [default: vp8,vp9,h264].
    #[arg(
        long,
        env = "SHOPCALL_VIDEO_CODECS",
        value_name = "CODECS",
        value_delimiter = ',',
        value_parser = parse_video_codec
    )]
    pub video_codecs: Vec<VideoCodec>,
    /// Seconds a participant may take to connect (ICE + DTLS) after Join before it is removed
    /// [default: 30].
    #[arg(long, env = "SHOPCALL_CONNECT_TIMEOUT_SECS", value_name = "SECONDS")]
    pub connect_timeout_secs: Option<u64>,
    /// Seconds the calls may go on after SIGTERM: the daemon drains (no new calls, health
    /// NOT_SERVING), ends the calls still running at this deadline with server_shutdown,
    /// then exits [default: 10].
    #[arg(long, env = "SHOPCALL_SHUTDOWN_TIMEOUT_SECS", value_name = "SECONDS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Log format [default: human].
    #[arg(long, env = "SHOPCALL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, RUST_LOG style, e.g. `debug` or `info,sfu=debug`
    /// [default: info,rtc=warn,webrtc=warn].
    #[arg(long, env = "SHOPCALL_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Seconds a call may ring before it ends as missed; CreateCall may set its own
    /// [default: 45].
    #[arg(long, env = "SHOPCALL_RING_TIMEOUT_SECS", value_name = "SECONDS")]
    pub ring_timeout_secs: Option<u64>,
    /// Seconds after the answer at which a call ends (max_duration) [default: 7200].
    #[arg(long, env = "SHOPCALL_MAX_DURATION_SECS", value_name = "SECONDS")]
    pub max_duration_secs: Option<u64>,
    /// Seconds without media from anyone after which an answered call ends [default: 60].
    #[arg(long, env = "SHOPCALL_INACTIVITY_TIMEOUT_SECS", value_name = "SECONDS")]
    pub inactivity_timeout_secs: Option<u64>,
    /// Seconds of silence (no STUN, RTP or RTCP) after which a connected participant is
    /// marked disconnected [default: 8].
    #[arg(long, env = "SHOPCALL_DISCONNECT_TIMEOUT_SECS", value_name = "SECONDS")]
    pub disconnect_timeout_secs: Option<u64>,
    /// Seconds a disconnected participant has to come back (or restart ICE) before the call
    /// ends as peer_lost [default: 20].
    #[arg(long, env = "SHOPCALL_RECONNECT_GRACE_SECS", value_name = "SECONDS")]
    pub reconnect_grace_secs: Option<u64>,
    /// Profile of calls that name none; a built-in one or a `[profiles.NAME]` table of the
    /// config file [default: rear-camera-off].
    #[arg(long, env = "SHOPCALL_DEFAULT_PROFILE", value_name = "NAME")]
    pub default_profile: Option<String>,
    /// Directory call recordings are written to, one `{call_id}-{unix_time}.webm` file per
    /// recording; it must exist and be writable at start [default: none, recording is off].
    #[arg(long, env = "SHOPCALL_RECORDING_DIR", value_name = "DIR")]
    pub recording_dir: Option<PathBuf>,
    /// File holding the bearer token every gRPC request must carry (`authorization: Bearer
    /// <token>`; health checks excepted). The token itself may instead come from the
    /// SHOPCALL_AUTH_TOKEN variable or `auth_token` in the config file; never from a flag
    /// [default: none].
    #[arg(long, env = "SHOPCALL_AUTH_TOKEN_FILE", value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// PEM certificate chain of the gRPC server: serve gRPC over TLS (needs --tls-key)
    /// [default: none, plaintext].
    #[arg(long, env = "SHOPCALL_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [default: none].
    #[arg(long, env = "SHOPCALL_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to: mutual TLS, every
    /// connection needs a client certificate (needs --tls-cert and --tls-key)
    /// [default: none].
    #[arg(long, env = "SHOPCALL_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve gRPC on a non-loopback address without a token or mutual TLS. Refused by
    /// default; with it, the daemon warns at start and every 5 minutes [default: false].
    #[arg(
        long,
        env = "SHOPCALL_INSECURE_ALLOW_PUBLIC_GRPC",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub insecure_allow_public_grpc: Option<bool>,
    /// Seconds a gRPC request may take before it fails; a shorter grpc-timeout from the
    /// client wins. Streams (WatchEvents, Drain) are not cut [default: 30].
    #[arg(long, env = "SHOPCALL_REQUEST_TIMEOUT_SECS", value_name = "SECONDS")]
    pub request_timeout_secs: Option<u64>,
    /// CreateCall requests per second allowed from one client address (token bucket; 0 = no
    /// limit); beyond it RESOURCE_EXHAUSTED [default: 50].
    #[arg(long, env = "SHOPCALL_CREATE_CALL_RATE", value_name = "PER_SECOND")]
    pub create_call_rate: Option<u32>,
    /// CreateCall requests one client address may send at once, above the rate
    /// [default: 100].
    #[arg(long, env = "SHOPCALL_CREATE_CALL_BURST", value_name = "N")]
    pub create_call_burst: Option<u32>,
    /// Join requests per second allowed from one client address (0 = no limit)
    /// [default: 100].
    #[arg(long, env = "SHOPCALL_JOIN_RATE", value_name = "PER_SECOND")]
    pub join_rate: Option<u32>,
    /// Join requests one client address may send at once, above the rate [default: 200].
    #[arg(long, env = "SHOPCALL_JOIN_BURST", value_name = "N")]
    pub join_burst: Option<u32>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        })
    }
}

/// The TOML config file. Unknown keys are refused, so a typo does not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    grpc_listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    udp_bind: Option<SocketAddr>,
    announce_ips: Option<Vec<IpAddr>>,
    max_calls: Option<usize>,
    udp_socket_buffer: Option<usize>,
    video_codecs: Option<Vec<String>>,
    connect_timeout_secs: Option<u64>,
    shutdown_timeout_secs: Option<u64>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    ring_timeout_secs: Option<u64>,
    max_duration_secs: Option<u64>,
    inactivity_timeout_secs: Option<u64>,
    disconnect_timeout_secs: Option<u64>,
    reconnect_grace_secs: Option<u64>,
    default_profile: Option<String>,
    profiles: Option<BTreeMap<String, ProfileDef>>,
    eligibility: Option<EligibilityRules>,
    recording_dir: Option<PathBuf>,
    auth_token_file: Option<PathBuf>,
    auth_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    insecure_allow_public_grpc: Option<bool>,
    request_timeout_secs: Option<u64>,
    create_call_rate: Option<u32>,
    create_call_burst: Option<u32>,
    join_rate: Option<u32>,
    join_burst: Option<u32>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `SHOPCALL_*` environment variable.
    Env,
    /// The config file.
    File,
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        })
    }
}

/// One setting's names: its config-file key (also the clap argument id), flag and variable.
#[derive(Debug, Clone, Copy)]
struct Key {
    file: &'static str,
    flag: &'static str,
    env: &'static str,
}

macro_rules! key {
    ($file:literal, $flag:literal, $env:literal) => {
        Key {
            file: $file,
            flag: $flag,
            env: $env,
        }
    };
}

const GRPC_LISTEN: Key = key!("grpc_listen", "--grpc-listen", "SHOPCALL_GRPC_LISTEN");
const METRICS_LISTEN: Key = key!(
    "metrics_listen",
    "--metrics-listen",
    "SHOPCALL_METRICS_LISTEN"
);
const UDP_BIND: Key = key!("udp_bind", "--udp-bind", "SHOPCALL_UDP_BIND");
const ANNOUNCE_IPS: Key = key!("announce_ips", "--announce-ip", "SHOPCALL_ANNOUNCE_IP");
const MAX_CALLS: Key = key!("max_calls", "--max-calls", "SHOPCALL_MAX_CALLS");
/// The largest media socket buffer accepted (the kernel takes an `int`).
const MAX_SOCKET_BUFFER: usize = 1 << 30;
const UDP_SOCKET_BUFFER: Key = key!(
    "udp_socket_buffer",
    "--udp-socket-buffer",
    "SHOPCALL_UDP_SOCKET_BUFFER"
);
const VIDEO_CODECS: Key = key!("video_codecs", "--video-codecs", "SHOPCALL_VIDEO_CODECS");
const CONNECT_TIMEOUT: Key = key!(
    "connect_timeout_secs",
    "--connect-timeout-secs",
    "SHOPCALL_CONNECT_TIMEOUT_SECS"
);
const SHUTDOWN_TIMEOUT: Key = key!(
    "shutdown_timeout_secs",
    "--shutdown-timeout-secs",
    "SHOPCALL_SHUTDOWN_TIMEOUT_SECS"
);
const LOG_FORMAT: Key = key!("log_format", "--log-format", "SHOPCALL_LOG_FORMAT");
const LOG_LEVEL: Key = key!("log_level", "--log-level", "SHOPCALL_LOG_LEVEL");
const RING_TIMEOUT: Key = key!(
    "ring_timeout_secs",
    "--ring-timeout-secs",
    "SHOPCALL_RING_TIMEOUT_SECS"
);
const MAX_DURATION: Key = key!(
    "max_duration_secs",
    "--max-duration-secs",
    "SHOPCALL_MAX_DURATION_SECS"
);
const INACTIVITY_TIMEOUT: Key = key!(
    "inactivity_timeout_secs",
    "--inactivity-timeout-secs",
    "SHOPCALL_INACTIVITY_TIMEOUT_SECS"
);
const DISCONNECT_TIMEOUT: Key = key!(
    "disconnect_timeout_secs",
    "--disconnect-timeout-secs",
    "SHOPCALL_DISCONNECT_TIMEOUT_SECS"
);
const RECONNECT_GRACE: Key = key!(
    "reconnect_grace_secs",
    "--reconnect-grace-secs",
    "SHOPCALL_RECONNECT_GRACE_SECS"
);
const DEFAULT_PROFILE: Key = key!(
    "default_profile",
    "--default-profile",
    "SHOPCALL_DEFAULT_PROFILE"
);
const RECORDING_DIR: Key = key!("recording_dir", "--recording-dir", "SHOPCALL_RECORDING_DIR");
/// File-only tables: no flag, no variable.
const PROFILES: Key = key!("profiles", "", "");
const ELIGIBILITY: Key = key!("eligibility", "", "");

/// One effective setting, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The setting's name (its config-file key).
    pub name: &'static str,
    /// Its value, as text.
    pub value: String,
    /// Where the value came from.
    pub source: Source,
}

/// The daemon's effective, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// Prometheus (`/metrics`, `/healthz`) listen address.
    pub metrics_listen: SocketAddr,
    /// How long calls may go on after SIGTERM (the drain deadline); in-flight gRPC requests
    /// then get at most `shutdown::GRPC_STOP_TIMEOUT` more.
    pub shutdown_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (validated: [`EnvFilter`] accepts it).
    pub log_level: String,
    /// The SFU's configuration (validated).
    pub sfu: SfuConfig,
    /// Who may use the gRPC API: token, TLS, the public-address override.
    pub grpc_security: GrpcSecurity,
    /// The longest a gRPC request may take (a shorter client deadline wins).
    pub request_timeout: Duration,
    /// Per-client-address rate limits on CreateCall and Join.
    pub rate_limits: RateLimits,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    settings: Vec<Setting>,
}

impl Config {
    /// Parses the process's arguments and environment, reads the config file, and validates.
    /// `--help`, `--version` and malformed flags exit the process (clap's behaviour).
    pub fn load() -> anyhow::Result<Config> {
        let matches = Cli::command().get_matches();
        Config::from_matches(&matches)
    }

    /// Like [`Config::load`], from the given arguments (the first is the program name).
    /// The environment is still read.
    #[cfg(test)]
    pub fn try_from_args<I, T>(args: I) -> anyhow::Result<Config>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        Config::from_matches(&matches)
    }

    fn from_matches(matches: &ArgMatches) -> anyhow::Result<Config> {
        let cli = Cli::from_arg_matches(matches)?;
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let file_path = cli.config.clone();
        Resolver {
            matches,
            file_path: file_path.as_deref(),
            settings: Vec::new(),
        }
        .resolve(cli, file)
    }

    /// Every effective setting with its source, in a stable order.
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }
}

/// Reads and parses the config file.
fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses one video codec name (`vp8`, `vp9`, `h264`, any case).
fn parse_video_codec(name: &str) -> Result<VideoCodec, String> {
    VideoCodec::from_name(name.trim())
        .ok_or_else(|| format!("unknown video codec {name:?} (known: vp8, vp9, h264)"))
}

/// Merges flag/env, file and default, and records each value's source.
struct Resolver<'a> {
    matches: &'a ArgMatches,
    file_path: Option<&'a Path>,
    settings: Vec<Setting>,
}

impl Resolver<'_> {
    /// Where a flag-or-environment value came from.
    fn cli_source(&self, key: Key) -> Source {
        match self.matches.value_source(key.file) {
            Some(ValueSource::EnvVariable) => Source::Env,
            _ => Source::Flag,
        }
    }

    /// Picks flag/env over file over default.
    fn pick<T>(&self, key: Key, cli: Option<T>, file: Option<T>, default: T) -> (T, Source) {
        match (cli, file) {
            (Some(v), _) => (v, self.cli_source(key)),
            (None, Some(v)) => (v, Source::File),
            (None, None) => (default, Source::Default),
        }
    }

    /// Records the effective value of a setting.
    fn record(&mut self, key: Key, value: impl fmt::Display, source: Source) {
        self.settings.push(Setting {
            name: key.file,
            value: value.to_string(),
            source,
        });
    }

    /// A whole number of seconds, 1 to [`MAX_LIMIT_SECS`]: picked, checked and recorded.
    fn seconds(
        &mut self,
        key: Key,
        cli: Option<u64>,
        file: Option<u64>,
        default: Duration,
    ) -> anyhow::Result<Duration> {
        let (secs, src) = self.pick(key, cli, file, default.as_secs());
        if !(1..=MAX_LIMIT_SECS).contains(&secs) {
            bail!(
                "{} is {secs} (from {}): it must be between 1 and {MAX_LIMIT_SECS} seconds",
                key.file,
                self.origin(key, src)
            );
        }
        self.record(key, secs, src);
        Ok(Duration::from_secs(secs))
    }

    /// Says where a value came from, for error messages.
    fn origin(&self, key: Key, source: Source) -> String {
        match source {
            Source::Flag => key.flag.to_owned(),
            Source::Env => key.env.to_owned(),
            Source::File => format!(
                "`{}` in {}",
                key.file,
                self.file_path
                    .map_or("the config file".into(), |p| p.display().to_string())
            ),
            Source::Default => format!("the default {}", key.file),
        }
    }

    fn resolve(mut self, cli: Cli, file: FileConfig) -> anyhow::Result<Config> {
        let sfu_defaults = SfuConfig::default();

        let (grpc_listen, grpc_src) = self.pick(
            GRPC_LISTEN,
            cli.grpc_listen,
            file.grpc_listen,
            DEFAULT_GRPC_LISTEN,
        );
        let (metrics_listen, metrics_src) = self.pick(
            METRICS_LISTEN,
            cli.metrics_listen,
            file.metrics_listen,
            DEFAULT_METRICS_LISTEN,
        );
        if grpc_listen == metrics_listen && grpc_listen.port() != 0 {
            bail!(
                "grpc_listen ({}) and metrics_listen ({}) are both {grpc_listen}: they need \
                 different ports",
                self.origin(GRPC_LISTEN, grpc_src),
                self.origin(METRICS_LISTEN, metrics_src),
            );
        }
        self.record(GRPC_LISTEN, grpc_listen, grpc_src);
        self.record(METRICS_LISTEN, metrics_listen, metrics_src);

        let (udp_bind, udp_src) =
            self.pick(UDP_BIND, cli.udp_bind, file.udp_bind, sfu_defaults.udp_bind);
        self.record(UDP_BIND, udp_bind, udp_src);

        let cli_ips = (!cli.announce_ips.is_empty()).then_some(cli.announce_ips);
        let (announce_ips, ips_src) =
            self.pick(ANNOUNCE_IPS, cli_ips, file.announce_ips, Vec::new());
        for ip in &announce_ips {
            if ip.is_unspecified() {
                bail!(
                    "announce ip {ip} (from {}) is unspecified: announce a concrete address \
                     that clients can reach",
                    self.origin(ANNOUNCE_IPS, ips_src)
                );
            }
            if udp_bind.is_ipv4() && ip.is_ipv6() {
                bail!(
                    "announce ip {ip} (from {}) is IPv6 but the media socket binds IPv4 \
                     address {udp_bind} (from {}): announce an IPv4 address or bind [::]",
                    self.origin(ANNOUNCE_IPS, ips_src),
                    self.origin(UDP_BIND, udp_src)
                );
            }
        }
        let ips_text = if announce_ips.is_empty() {
            "this machine's addresses".to_owned()
        } else {
            join(&announce_ips)
        };
        self.record(ANNOUNCE_IPS, ips_text, ips_src);

        let (max_calls, max_src) = self.pick(
            MAX_CALLS,
            cli.max_calls,
            file.max_calls,
            sfu_defaults.max_calls,
        );
        if max_calls == 0 {
            bail!(
                "max_calls is 0 (from {}): no call could ever be created",
                self.origin(MAX_CALLS, max_src)
            );
        }
        self.record(MAX_CALLS, max_calls, max_src);

        let (udp_socket_buffer, buffer_src) = self.pick(
            UDP_SOCKET_BUFFER,
            cli.udp_socket_buffer,
            file.udp_socket_buffer,
            sfu_defaults.udp_socket_buffer,
        );
        if udp_socket_buffer > MAX_SOCKET_BUFFER {
            bail!(
                "udp_socket_buffer is {udp_socket_buffer} bytes (from {}): at most \
                 {MAX_SOCKET_BUFFER} (1 GiB)",
                self.origin(UDP_SOCKET_BUFFER, buffer_src)
            );
        }
        self.record(UDP_SOCKET_BUFFER, udp_socket_buffer, buffer_src);

        let file_codecs = match file.video_codecs {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| parse_video_codec(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "{} is invalid: {e}",
                            self.origin(VIDEO_CODECS, Source::File)
                        )
                    })?,
            ),
            None => None,
        };
        let cli_codecs = (!cli.video_codecs.is_empty()).then_some(cli.video_codecs);
        let (video_codecs, codecs_src) = self.pick(
            VIDEO_CODECS,
            cli_codecs,
            file_codecs,
            sfu_defaults.video_codecs.clone(),
        );
        for (i, codec) in video_codecs.iter().enumerate() {
            if video_codecs[..i].contains(codec) {
                bail!(
                    "video codec {codec} is listed twice (from {})",
                    self.origin(VIDEO_CODECS, codecs_src)
                );
            }
        }
        if !video_codecs.contains(&VideoCodec::Vp8) {
            bail!(
                "video_codecs {} (from {}) must contain vp8: it is the one codec every browser \
                 offers",
                join(&video_codecs),
                self.origin(VIDEO_CODECS, codecs_src)
            );
        }
        self.record(VIDEO_CODECS, join(&video_codecs), codecs_src);

        let (connect_secs, connect_src) = self.pick(
            CONNECT_TIMEOUT,
            cli.connect_timeout_secs,
            file.connect_timeout_secs,
            sfu_defaults.connect_timeout.as_secs(),
        );
        if connect_secs == 0 {
            bail!(
                "connect_timeout_secs is 0 (from {}): no participant could ever connect",
                self.origin(CONNECT_TIMEOUT, connect_src)
            );
        }
        self.record(CONNECT_TIMEOUT, connect_secs, connect_src);

        let (shutdown_secs, shutdown_src) = self.pick(
            SHUTDOWN_TIMEOUT,
            cli.shutdown_timeout_secs,
            file.shutdown_timeout_secs,
            DEFAULT_SHUTDOWN_TIMEOUT.as_secs(),
        );
        if shutdown_secs == 0 {
            bail!(
                "shutdown_timeout_secs is 0 (from {}): calls and in-flight requests need time to finish",
                self.origin(SHUTDOWN_TIMEOUT, shutdown_src)
            );
        }
        self.record(SHUTDOWN_TIMEOUT, shutdown_secs, shutdown_src);

        let (log_format, format_src) = self.pick(
            LOG_FORMAT,
            cli.log_format,
            file.log_format,
            LogFormat::Human,
        );
        self.record(LOG_FORMAT, log_format, format_src);

        let (log_level, level_src) = self.pick(
            LOG_LEVEL,
            cli.log_level,
            file.log_level,
            DEFAULT_LOG_LEVEL.to_owned(),
        );
        if let Err(e) = EnvFilter::builder().parse(&log_level) {
            bail!(
                "log_level {log_level:?} (from {}) is not a valid filter: {e}",
                self.origin(LOG_LEVEL, level_src)
            );
        }
        self.record(LOG_LEVEL, &log_level, level_src);

        let default_limits = sfu_defaults.call_limits;
        let ring_timeout = self.seconds(
            RING_TIMEOUT,
            cli.ring_timeout_secs,
            file.ring_timeout_secs,
            default_limits.ring_timeout,
        )?;
        let max_duration = self.seconds(
            MAX_DURATION,
            cli.max_duration_secs,
            file.max_duration_secs,
            default_limits.max_duration,
        )?;
        let inactivity_timeout = self.seconds(
            INACTIVITY_TIMEOUT,
            cli.inactivity_timeout_secs,
            file.inactivity_timeout_secs,
            default_limits.inactivity_timeout,
        )?;
        let disconnect_timeout = self.seconds(
            DISCONNECT_TIMEOUT,
            cli.disconnect_timeout_secs,
            file.disconnect_timeout_secs,
            sfu_defaults.disconnect_timeout,
        )?;
        let reconnect_grace = self.seconds(
            RECONNECT_GRACE,
            cli.reconnect_grace_secs,
            file.reconnect_grace_secs,
            sfu_defaults.reconnect_grace,
        )?;

        let defs = file.profiles.unwrap_or_default();
        let (default_profile, default_src) = match (cli.default_profile, file.default_profile) {
            (Some(name), _) => (Some(name), self.cli_source(DEFAULT_PROFILE)),
            (None, Some(name)) => (Some(name), Source::File),
            (None, None) => (None, Source::Default),
        };
        let profiles = ProfileSet::from_config(&defs, default_profile.as_deref()).map_err(|e| {
            let origin = match e {
                sfu::policy::ProfileError::UnknownDefault { .. } => {
                    self.origin(DEFAULT_PROFILE, default_src)
                }
                _ => self.origin(PROFILES, Source::File),
            };
            anyhow::anyhow!("invalid call profile (from {origin}): {e}")
        })?;
        self.record(DEFAULT_PROFILE, profiles.default_name(), default_src);
        let (configured, profiles_src) = if defs.is_empty() {
            ("none".to_owned(), Source::Default)
        } else {
            (
                defs.keys().cloned().collect::<Vec<_>>().join(","),
                Source::File,
            )
        };
        self.record(PROFILES, configured, profiles_src);

        let (eligibility, eligibility_src) = match file.eligibility {
            Some(rules) => (rules, Source::File),
            None => (EligibilityRules::default(), Source::Default),
        };
        if let Err(e) = eligibility.validate() {
            bail!(
                "invalid merchant eligibility rules (from {}): {e}",
                self.origin(ELIGIBILITY, eligibility_src)
            );
        }
        self.record(
            ELIGIBILITY,
            format!(
                "min_rating={} min_reply_rate={} require_opt_in={} on_ineligible={}",
                eligibility.min_rating,
                eligibility.min_reply_rate,
                eligibility.require_opt_in,
                match eligibility.on_ineligible {
                    sfu::policy::OnIneligible::AudioOnly => "audio_only",
                    sfu::policy::OnIneligible::Refuse => "refuse",
                }
            ),
            eligibility_src,
        );

        let (recording_dir, recording_src) = self.pick(
            RECORDING_DIR,
            cli.recording_dir.map(Some),
            file.recording_dir.map(Some),
            None,
        );
        self.record(
            RECORDING_DIR,
            recording_dir
                .as_ref()
                .map_or("none (recording off)".to_owned(), |d| {
                    d.display().to_string()
                }),
            recording_src,
        );

        let sfu = SfuConfig {
            recording_dir,
            udp_bind,
            announce_ips,
            max_calls,
            udp_socket_buffer,
            video_codecs,
            connect_timeout: Duration::from_secs(connect_secs),
            disconnect_timeout,
            reconnect_grace,
            profiles,
            eligibility,
            call_limits: CallLimits {
                ring_timeout,
                max_duration,
                inactivity_timeout,
            },
            ..sfu_defaults
        };
        sfu.validate().context("invalid media configuration")?;

        let grpc_security = self.grpc_security(
            security::SecurityInputs {
                token_file: (cli.auth_token_file, file.auth_token_file),
                file_token: file.auth_token,
                tls_cert: (cli.tls_cert, file.tls_cert),
                tls_key: (cli.tls_key, file.tls_key),
                tls_client_ca: (cli.tls_client_ca, file.tls_client_ca),
                insecure_allow_public: (
                    cli.insecure_allow_public_grpc,
                    file.insecure_allow_public_grpc,
                ),
            },
            grpc_listen,
            grpc_src,
        )?;
        let request_timeout = self.seconds(
            security::REQUEST_TIMEOUT,
            cli.request_timeout_secs,
            file.request_timeout_secs,
            security::DEFAULT_REQUEST_TIMEOUT,
        )?;
        let rate_limits = self.rate_limits(security::RateInputs {
            create_call_rate: (cli.create_call_rate, file.create_call_rate),
            create_call_burst: (cli.create_call_burst, file.create_call_burst),
            join_rate: (cli.join_rate, file.join_rate),
            join_burst: (cli.join_burst, file.join_burst),
        })?;

        Ok(Config {
            grpc_listen,
            metrics_listen,
            shutdown_timeout: Duration::from_secs(shutdown_secs),
            log_format,
            log_level,
            sfu,
            grpc_security,
            request_timeout,
            rate_limits,
            config_file: cli.config,
            settings: self.settings,
        })
    }
}

/// `a, b, c`.
fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args` (after the program name). Only works for settings whose environment
    /// variables are unset, which is the case in the test environment.
    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        Config::try_from_args(std::iter::once("shopcalld").chain(args.iter().copied()))
    }

    fn source_of(config: &Config, name: &str) -> Source {
        config
            .settings()
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.source)
            .expect("every setting is recorded")
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("shopcalld-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp dir is writable");
        path
    }

    #[test]
    fn no_arguments_gives_the_documented_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.grpc_listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.sfu.udp_bind.to_string(), "0.0.0.0:40000");
        assert!(c.sfu.announce_ips.is_empty());
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.log_level, DEFAULT_LOG_LEVEL);
        assert!(c.settings().iter().all(|s| s.source == Source::Default));
        assert_eq!(c.sfu.udp_socket_buffer, 8 << 20);
        assert_eq!(c.settings().len(), 30);
        let limits = c.sfu.call_limits;
        assert_eq!(limits.ring_timeout, Duration::from_secs(45));
        assert_eq!(limits.max_duration, Duration::from_secs(7200));
        assert_eq!(limits.inactivity_timeout, Duration::from_secs(60));
        assert_eq!(c.sfu.disconnect_timeout, Duration::from_secs(8));
        assert_eq!(c.sfu.reconnect_grace, Duration::from_secs(20));
        assert_eq!(c.sfu.profiles, ProfileSet::builtin());
        assert_eq!(c.sfu.eligibility, EligibilityRules::default());
    }

    #[test]
    fn profiles_eligibility_and_limits_load_from_the_file() {
        let path = temp_file(
            "policy.toml",
            "default_profile = \"showroom\"\nring_timeout_secs = 20\nreconnect_grace_secs = 5\n\
             [profiles.showroom]\nbase = \"merchant-video\"\n\
             customer.accepted_sources = [\"microphone\", \"camera_rear\"]\n\
             customer.camera_caps.max_frame_rate = 15\n\
             [profiles.audio-only]\nrecording_allowed = true\n\
             [eligibility]\nmin_rating = 4.5\non_ineligible = \"refuse\"\n",
        );
        let c = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--max-duration-secs",
            "600",
        ])
        .unwrap();
        assert_eq!(c.sfu.profiles.default_name(), "showroom");
        let showroom = c.sfu.profiles.get("showroom").unwrap();
        assert_eq!(showroom.customer.camera_caps.max_frame_rate, 15);
        assert!(c.sfu.profiles.get("audio-only").unwrap().recording_allowed);
        assert_eq!(c.sfu.eligibility.min_rating, 4.5);
        assert_eq!(
            c.sfu.eligibility.on_ineligible,
            sfu::policy::OnIneligible::Refuse
        );
        assert_eq!(c.sfu.call_limits.ring_timeout, Duration::from_secs(20));
        assert_eq!(c.sfu.call_limits.max_duration, Duration::from_secs(600));
        assert_eq!(c.sfu.reconnect_grace, Duration::from_secs(5));
        assert_eq!(source_of(&c, "max_duration_secs"), Source::Flag);
        assert_eq!(source_of(&c, "ring_timeout_secs"), Source::File);
        assert_eq!(source_of(&c, "default_profile"), Source::File);
        assert_eq!(source_of(&c, "inactivity_timeout_secs"), Source::Default);
        let profiles = c.settings().iter().find(|s| s.name == "profiles").unwrap();
        assert_eq!(profiles.value, "audio-only,showroom");

        // The flag beats the file for the default profile, and must name a known one.
        let c = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--default-profile",
            "merchant-video",
        ])
        .unwrap();
        assert_eq!(c.sfu.profiles.default_name(), "merchant-video");
        let err = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--default-profile",
            "nope",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "invalid call profile (from --default-profile): default profile \"nope\" is not \
                 defined (known: audio-only, merchant-video, rear-camera-off, showroom)"
            ),
            "{err}"
        );
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn bad_profiles_and_rules_are_refused_with_the_policy_message() {
        let cases = [
            (
                "peek.toml",
                "[profiles.peek]\ncustomer.camera_at_join = \"on\"\n",
                "profile \"peek\": customer.camera_at_join is on, but only the customer can turn \
                 on the customer's camera: it must be off",
            ),
            (
                "fps.toml",
                "[profiles.slow]\nbase = \"rear-camera-off\"\n\
                 customer.camera_caps.max_frame_rate = 0\n",
                "profile \"slow\": customer.camera_caps.max_frame_rate must be between 1 and 120, \
                 got 0",
            ),
            (
                "base.toml",
                "[profiles.hd]\nbase = \"hd-video\"\n",
                "profile \"hd\": base \"hd-video\" is not a built-in profile",
            ),
            (
                "rating.toml",
                "[eligibility]\nmin_rating = 7.0\n",
                "eligibility.min_rating must be a number from 0 to 5, got 7",
            ),
        ];
        for (name, text, want) in cases {
            let path = temp_file(name, text);
            let err = format!(
                "{:#}",
                parse(&["--config", path.to_str().unwrap()]).unwrap_err()
            );
            assert!(err.contains(want), "{name}: {err}");
            assert!(err.contains(path.to_str().unwrap()), "{name}: {err}");
            std::fs::remove_file(path).ok();
        }

        // Serde's refusals name the key: a typo, an unknown value, a source listed twice.
        for (name, text, want) in [
            (
                "typo.toml",
                "[profiles.x]\ncustomer.camera_at_jion = \"off\"\n",
                "camera_at_jion",
            ),
            (
                "value.toml",
                "[profiles.x]\ncustomer.camera_control = \"merchant\"\n",
                "merchant",
            ),
            (
                "twice.toml",
                "[profiles.x]\ncustomer.accepted_sources = [\"microphone\", \"microphone\"]\n",
                "source microphone is listed twice",
            ),
        ] {
            let path = temp_file(name, text);
            let err = format!(
                "{:#}",
                parse(&["--config", path.to_str().unwrap()]).unwrap_err()
            );
            assert!(err.contains("invalid config file"), "{name}: {err}");
            assert!(err.contains(want), "{name}: {err}");
            std::fs::remove_file(path).ok();
        }
    }

    #[test]
    fn limits_must_be_between_one_second_and_a_day() {
        let err = parse(&["--ring-timeout-secs", "0"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "ring_timeout_secs is 0 (from --ring-timeout-secs): it must be between 1 and 86400 \
             seconds"
        );
        let err = parse(&["--reconnect-grace-secs", "86401"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("reconnect_grace_secs is 86401"), "{err}");
        let err = parse(&["--max-duration-secs", "18446744073709551615"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("between 1 and 86400"), "{err}");
        let c = parse(&["--inactivity-timeout-secs", "86400"]).unwrap();
        assert_eq!(
            c.sfu.call_limits.inactivity_timeout,
            Duration::from_secs(86400)
        );
    }

    #[test]
    fn recording_dir_comes_from_the_flag_or_the_file_and_is_off_by_default() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.sfu.recording_dir, None);
        assert_eq!(source_of(&c, "recording_dir"), Source::Default);
        let path = temp_file("recording.toml", "recording_dir = \"/srv/rec\"\n");
        let c = parse(&["--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.sfu.recording_dir.as_deref(), Some(Path::new("/srv/rec")));
        assert_eq!(source_of(&c, "recording_dir"), Source::File);
        let c = parse(&["--config", path.to_str().unwrap(), "--recording-dir", "/x"]).unwrap();
        assert_eq!(c.sfu.recording_dir.as_deref(), Some(Path::new("/x")));
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let path = temp_file(
            "precedence.toml",
            "max_calls = 5\nudp_bind = \"127.0.0.1:0\"\nvideo_codecs = [\"h264\", \"vp8\"]\n",
        );
        let c = parse(&["--config", path.to_str().unwrap(), "--max-calls", "7"]).unwrap();
        assert_eq!(c.sfu.max_calls, 7);
        assert_eq!(source_of(&c, "max_calls"), Source::Flag);
        assert_eq!(c.sfu.udp_bind.to_string(), "127.0.0.1:0");
        assert_eq!(source_of(&c, "udp_bind"), Source::File);
        assert_eq!(c.sfu.video_codecs, vec![VideoCodec::H264, VideoCodec::Vp8]);
        assert_eq!(source_of(&c, "grpc_listen"), Source::Default);
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn repeated_announce_ips_and_codec_lists_parse() {
        let c = parse(&[
            "--announce-ip",
            "127.0.0.1",
            "--announce-ip",
            "127.0.0.2",
            "--video-codecs",
            "VP8,vp9",
        ])
        .unwrap();
        assert_eq!(c.sfu.announce_ips.len(), 2);
        assert_eq!(c.sfu.video_codecs, vec![VideoCodec::Vp8, VideoCodec::Vp9]);
    }

    #[test]
    fn bad_values_are_refused_with_their_source() {
        let err = parse(&["--max-calls", "0"]).unwrap_err().to_string();
        assert!(err.contains("max_calls is 0 (from --max-calls)"), "{err}");

        let err = parse(&["--udp-socket-buffer", "2147483648"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("udp_socket_buffer is 2147483648 bytes (from --udp-socket-buffer)"),
            "{err}"
        );
        let c = parse(&["--udp-socket-buffer", "0"]).unwrap();
        assert_eq!(c.sfu.udp_socket_buffer, 0);
        assert_eq!(source_of(&c, "udp_socket_buffer"), Source::Flag);

        let err = parse(&["--video-codecs", "h264"]).unwrap_err().to_string();
        assert!(err.contains("must contain vp8"), "{err}");

        let err = parse(&["--video-codecs", "vp8,vp8"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");

        let err = parse(&["--announce-ip", "0.0.0.0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unspecified"), "{err}");

        let err = parse(&["--announce-ip", "::1"]).unwrap_err().to_string();
        assert!(
            err.contains("is IPv6 but the media socket binds IPv4"),
            "{err}"
        );

        let err = parse(&["--grpc-listen", "127.0.0.1:9464"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("different ports"), "{err}");

        let err = parse(&["--log-level", "info,=["]).unwrap_err().to_string();
        assert!(err.contains("not a valid filter"), "{err}");

        let err = parse(&["--video-codecs", "av1"]).unwrap_err().to_string();
        assert!(err.contains("unknown video codec"), "{err}");
    }

    #[test]
    fn config_file_errors_name_the_file_and_the_key() {
        let path = temp_file("typo-key.toml", "max_cals = 5\n");
        let err = format!(
            "{:#}",
            parse(&["--config", path.to_str().unwrap()]).unwrap_err()
        );
        assert!(err.contains("invalid config file"), "{err}");
        assert!(err.contains("max_cals"), "{err}");
        std::fs::remove_file(path).ok();

        let path = temp_file("codec.toml", "video_codecs = [\"av1\"]\n");
        let err = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`video_codecs` in"), "{err}");
        std::fs::remove_file(path).ok();

        let err = format!(
            "{:#}",
            parse(&["--config", "/nonexistent/shopcalld.toml"]).unwrap_err()
        );
        assert!(err.contains("cannot read config file"), "{err}");
    }
}
