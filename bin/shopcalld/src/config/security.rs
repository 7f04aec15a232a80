//! Security: who may use the gRPC API, and how often.
//!
//! * **Bearer token** (`auth_token`): every gRPC request but the health checks must carry
//!   `authorization: Bearer <token>`. The token comes from the file named by
//!   `--auth-token-file` / `SHOPCALL_AUTH_TOKEN_FILE`, from `SHOPCALL_AUTH_TOKEN` itself, or
//!   from the config file (`auth_token_file` or `auth_token`); never from a flag, which any
//!   local user could read in the process list. Surrounding whitespace (a trailing newline)
//!   is dropped; what is left must be 16 to 4096 visible ASCII characters.
//! * **TLS** (`tls_cert`, `tls_key`) and **mutual TLS** (`tls_client_ca`): with a client CA,
//!   the TLS handshake itself refuses a client without a certificate that chains to it.
//!   The PEM files are read and checked (a TLS server configuration is built) at start.
//! * **The public-address rule**: a gRPC address that is not loopback needs a token or mutual
//!   TLS, or `--insecure-allow-public-grpc` (then the daemon warns at start and every five
//!   minutes). Anything else stops the daemon with exit status 2 before it binds a socket.
//! * **Rate limits** (`create_call_rate` / `_burst`, `join_rate` / `_burst`): a token bucket
//!   per client address and operation; 0 turns a limit off.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{Key, Resolver, Source};

/// The request timeout setting.
pub(super) const REQUEST_TIMEOUT: Key = Key {
    file: "request_timeout_secs",
    flag: "--request-timeout-secs",
    env: "SHOPCALL_REQUEST_TIMEOUT_SECS",
};
/// Default time a gRPC request may take.
pub(super) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const AUTH_TOKEN_FILE: Key = Key {
    file: "auth_token_file",
    flag: "--auth-token-file",
    env: "SHOPCALL_AUTH_TOKEN_FILE",
};
/// The variable holding the token itself.
const AUTH_TOKEN_ENV: &str = "SHOPCALL_AUTH_TOKEN";
/// The setting's name in the start-up log (where it says where the token came from, never
/// what it is).
const AUTH_TOKEN: Key = Key {
    file: "auth_token",
    flag: "--auth-token-file",
    env: AUTH_TOKEN_ENV,
};
const TLS_CERT: Key = Key {
    file: "tls_cert",
    flag: "--tls-cert",
    env: "SHOPCALL_TLS_CERT",
};
const TLS_KEY: Key = Key {
    file: "tls_key",
    flag: "--tls-key",
    env: "SHOPCALL_TLS_KEY",
};
const TLS_CLIENT_CA: Key = Key {
    file: "tls_client_ca",
    flag: "--tls-client-ca",
    env: "SHOPCALL_TLS_CLIENT_CA",
};
const INSECURE_ALLOW_PUBLIC: Key = Key {
    file: "insecure_allow_public_grpc",
    flag: "--insecure-allow-public-grpc",
    env: "SHOPCALL_INSECURE_ALLOW_PUBLIC_GRPC",
};
const CREATE_CALL_RATE: Key = Key {
    file: "create_call_rate",
    flag: "--create-call-rate",
    env: "SHOPCALL_CREATE_CALL_RATE",
};
const CREATE_CALL_BURST: Key = Key {
    file: "create_call_burst",
    flag: "--create-call-burst",
    env: "SHOPCALL_CREATE_CALL_BURST",
};
const JOIN_RATE: Key = Key {
    file: "join_rate",
    flag: "--join-rate",
    env: "SHOPCALL_JOIN_RATE",
};
const JOIN_BURST: Key = Key {
    file: "join_burst",
    flag: "--join-burst",
    env: "SHOPCALL_JOIN_BURST",
};

/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Highest rate or burst accepted.
const MAX_RATE: u32 = 1_000_000;

/// The bearer token clients must present. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    /// Checks a token as read: surrounding whitespace dropped, then 16 to 4096 visible ASCII
    /// characters (what an HTTP header value can carry unquoted).
    pub fn parse(raw: &str) -> Result<AuthToken, String> {
        let token = raw.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "it is {} bytes long: use at least {MIN_TOKEN_LEN} random bytes, for example \
                 the output of `openssl rand -hex 32`",
                token.len()
            ));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "it is {} bytes long, more than {MAX_TOKEN_LEN}",
                token.len()
            ));
        }
        if let Some(bad) = token.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(format!(
                "byte {bad} is not visible ASCII: a token must fit in an HTTP header unquoted"
            ));
        }
        Ok(AuthToken(token.to_owned()))
    }

    /// The token's bytes, to compare a presented token against (in constant time).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthToken(<{} bytes, redacted>)", self.0.len())
    }
}

/// The TLS files of the gRPC server, read at start.
#[derive(Clone)]
pub struct TlsFiles {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
    /// The CA file client certificates must chain to (mutual TLS), if any.
    pub client_ca: Option<PathBuf>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// The tonic server TLS configuration: our identity, and with a client CA, client
    /// certificates required and verified against it.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_pem {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        config
    }
}

/// Who may use the gRPC API.
#[derive(Debug, Clone, Default)]
pub struct GrpcSecurity {
    /// The bearer token requests must carry, if any.
    pub auth_token: Option<AuthToken>,
    /// TLS, if configured (mutual when it has a client CA).
    pub tls: Option<TlsFiles>,
    /// The gRPC address is not loopback.
    pub public: bool,
    /// Things to warn about at start (e.g. a token file others can read).
    pub warnings: Vec<String>,
}

impl GrpcSecurity {
    /// Whether clients must present a certificate the client CA signed.
    pub fn mutual_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    /// Whether anything authenticates clients (a token or mutual TLS).
    pub fn authenticates(&self) -> bool {
        self.auth_token.is_some() || self.mutual_tls()
    }

    /// Serving a non-loopback address with no authentication (only with the override).
    pub fn insecure_public(&self) -> bool {
        self.public && !self.authenticates()
    }

    /// One line for the start-up log, e.g. `bearer token + mutual TLS`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.auth_token.is_some() {
            parts.push("bearer token");
        }
        match &self.tls {
            Some(t) if t.client_ca.is_some() => parts.push("mutual TLS"),
            Some(_) => parts.push("TLS (no client certificates)"),
            None => {}
        }
        if parts.is_empty() {
            "none (plaintext, no authentication)".to_owned()
        } else {
            parts.join(" + ")
        }
    }
}

/// One token-bucket limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second refilled; 0 = no limit.
    pub per_second: u32,
    /// Requests that may come at once (the bucket's size).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };

    /// Whether the limit applies.
    pub fn is_on(&self) -> bool {
        self.per_second > 0
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_on() {
            write!(f, "{}/s, burst {}", self.per_second, self.burst)
        } else {
            f.write_str("off")
        }
    }
}

/// Rate limits per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// CreateCall.
    pub create_call: RateLimit,
    /// Join.
    pub join: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            create_call: RateLimit {
                per_second: 50,
                burst: 100,
            },
            join: RateLimit {
                per_second: 100,
                burst: 200,
            },
        }
    }
}

/// The security settings as given: `(flag or environment, config file)` for each.
pub(super) struct SecurityInputs {
    pub token_file: (Option<PathBuf>, Option<PathBuf>),
    pub file_token: Option<String>,
    pub tls_cert: (Option<PathBuf>, Option<PathBuf>),
    pub tls_key: (Option<PathBuf>, Option<PathBuf>),
    pub tls_client_ca: (Option<PathBuf>, Option<PathBuf>),
    pub insecure_allow_public: (Option<bool>, Option<bool>),
}

/// The rate settings as given: `(flag or environment, config file)` for each.
pub(super) struct RateInputs {
    pub create_call_rate: (Option<u32>, Option<u32>),
    pub create_call_burst: (Option<u32>, Option<u32>),
    pub join_rate: (Option<u32>, Option<u32>),
    pub join_burst: (Option<u32>, Option<u32>),
}

/// Reads a whole file for a setting, naming the setting and its source on failure.
fn read(path: &Path, what: &str, origin: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .with_context(|| format!("cannot read {what} {} (from {origin})", path.display()))
}

impl Resolver<'_> {
    /// Resolves the token, TLS and the public-address rule (see the module docs).
    pub(super) fn grpc_security(
        &mut self,
        inputs: SecurityInputs,
        grpc_listen: SocketAddr,
        grpc_src: Source,
    ) -> anyhow::Result<GrpcSecurity> {
        let mut warnings = Vec::new();
        let auth_token = self.auth_token(inputs.token_file, inputs.file_token, &mut warnings)?;

        let (cert, cert_src) = self.pick(
            TLS_CERT,
            inputs.tls_cert.0.map(Some),
            inputs.tls_cert.1.map(Some),
            None,
        );
        let (key, key_src) = self.pick(
            TLS_KEY,
            inputs.tls_key.0.map(Some),
            inputs.tls_key.1.map(Some),
            None,
        );
        let (client_ca, ca_src) = self.pick(
            TLS_CLIENT_CA,
            inputs.tls_client_ca.0.map(Some),
            inputs.tls_client_ca.1.map(Some),
            None,
        );
        let tls = match (cert, key) {
            (None, None) => {
                if let Some(ca) = &client_ca {
                    bail!(
                        "tls_client_ca {} (from {}) needs the server's own certificate and key: \
                         set --tls-cert and --tls-key too",
                        ca.display(),
                        self.origin(TLS_CLIENT_CA, ca_src)
                    );
                }
                None
            }
            (Some(cert), None) => bail!(
                "tls_cert {} (from {}) needs its private key: set --tls-key",
                cert.display(),
                self.origin(TLS_CERT, cert_src)
            ),
            (None, Some(key)) => bail!(
                "tls_key {} (from {}) needs its certificate: set --tls-cert",
                key.display(),
                self.origin(TLS_KEY, key_src)
            ),
            (Some(cert), Some(key)) => {
                let cert_pem = read(&cert, "TLS certificate", &self.origin(TLS_CERT, cert_src))?;
                let key_pem = read(&key, "TLS key", &self.origin(TLS_KEY, key_src))?;
                let client_ca_pem = match &client_ca {
                    Some(ca) => Some(read(
                        ca,
                        "TLS client CA",
                        &self.origin(TLS_CLIENT_CA, ca_src),
                    )?),
                    None => None,
                };
                let files = TlsFiles {
                    cert,
                    key,
                    client_ca: client_ca.clone(),
                    cert_pem,
                    key_pem,
                    client_ca_pem,
                };
                // Build the server's TLS configuration once now, so that a bad file stops
                // the daemon here with its name rather than when gRPC starts.
                if let Err(e) =
                    tonic::transport::Server::builder().tls_config(files.server_config())
                {
                    bail!(
                        "invalid TLS configuration (certificate {}, key {}{}): {e}",
                        files.cert.display(),
                        files.key.display(),
                        files
                            .client_ca
                            .as_ref()
                            .map_or(String::new(), |c| format!(", client CA {}", c.display()))
                    );
                }
                Some(files)
            }
        };
        let path_text = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("none".to_owned(), |p| p.display().to_string())
        };
        let tls_cert_text = path_text(&tls.as_ref().map(|t| t.cert.clone()));
        let tls_key_text = path_text(&tls.as_ref().map(|t| t.key.clone()));
        self.record(TLS_CERT, tls_cert_text, cert_src);
        self.record(TLS_KEY, tls_key_text, key_src);
        self.record(TLS_CLIENT_CA, path_text(&client_ca), ca_src);

        let (insecure_allow_public, insecure_src) = self.pick(
            INSECURE_ALLOW_PUBLIC,
            inputs.insecure_allow_public.0,
            inputs.insecure_allow_public.1,
            false,
        );
        self.record(INSECURE_ALLOW_PUBLIC, insecure_allow_public, insecure_src);

        let security = GrpcSecurity {
            auth_token,
            tls,
            public: !grpc_listen.ip().is_loopback(),
            warnings,
        };
        if security.insecure_public() && !insecure_allow_public {
            bail!(
                "grpc_listen {grpc_listen} (from {}) is not a loopback address, and the gRPC API \
                 has no authentication: anyone who can reach it could create, join and end \
                 calls. Set a bearer token (--auth-token-file, SHOPCALL_AUTH_TOKEN or \
                 auth_token_file) and/or mutual TLS (--tls-cert, --tls-key and \
                 --tls-client-ca), or pass --insecure-allow-public-grpc if something else (a \
                 NetworkPolicy, a firewall) already restricts who can connect",
                self.origin(super::GRPC_LISTEN, grpc_src)
            );
        }
        Ok(security)
    }

    /// The bearer token: `--auth-token-file` / `SHOPCALL_AUTH_TOKEN_FILE`, else
    /// `SHOPCALL_AUTH_TOKEN`, else the file's `auth_token_file` or `auth_token`.
    fn auth_token(
        &mut self,
        token_file: (Option<PathBuf>, Option<PathBuf>),
        file_token: Option<String>,
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Option<AuthToken>> {
        let env_token = std::env::var(AUTH_TOKEN_ENV).ok().filter(|t| !t.is_empty());
        let (cli_path, file_path) = token_file;
        let from_file = |path: &Path, origin: String, warnings: &mut Vec<String>| {
            let bytes = read(path, "auth token file", &origin)?;
            warn_if_readable_by_others(path, warnings);
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!(
                    "the auth token in {} (from {origin}) is not UTF-8 text",
                    path.display()
                )
            })?;
            AuthToken::parse(&text).map_err(|why| {
                anyhow::anyhow!(
                    "the auth token in {} (from {origin}) cannot be used: {why}",
                    path.display()
                )
            })
        };
        let (token, source, text) = if let Some(path) = cli_path {
            let src = self.cli_source(AUTH_TOKEN_FILE);
            if src == Source::Env && env_token.is_some() {
                bail!(
                    "both {} and {AUTH_TOKEN_ENV} are set: set one of them",
                    AUTH_TOKEN_FILE.env
                );
            }
            let origin = self.origin(AUTH_TOKEN_FILE, src);
            let token = from_file(&path, origin, warnings)?;
            (Some(token), src, format!("set, from {}", path.display()))
        } else if let Some(raw) = env_token {
            let token = AuthToken::parse(&raw).map_err(|why| {
                anyhow::anyhow!("the auth token in {AUTH_TOKEN_ENV} cannot be used: {why}")
            })?;
            (
                Some(token),
                Source::Env,
                format!("set, from {AUTH_TOKEN_ENV}"),
            )
        } else {
            match (file_path, file_token) {
                (Some(_), Some(_)) => bail!(
                    "both auth_token_file and auth_token are set in {}: set one of them",
                    self.file_path
                        .map_or("the config file".into(), |p| p.display().to_string())
                ),
                (Some(path), None) => {
                    let origin = self.origin(AUTH_TOKEN_FILE, Source::File);
                    let token = from_file(&path, origin, warnings)?;
                    (
                        Some(token),
                        Source::File,
                        format!("set, from {}", path.display()),
                    )
                }
                (None, Some(raw)) => {
                    let token = AuthToken::parse(&raw).map_err(|why| {
                        anyhow::anyhow!(
                            "the auth token ({}) cannot be used: {why}",
                            self.origin(AUTH_TOKEN, Source::File)
                        )
                    })?;
                    (
                        Some(token),
                        Source::File,
                        "set, from the config file".to_owned(),
                    )
                }
                (None, None) => (None, Source::Default, "none".to_owned()),
            }
        };
        self.record(AUTH_TOKEN, text, source);
        Ok(token)
    }

    /// The CreateCall and Join limits.
    pub(super) fn rate_limits(&mut self, inputs: RateInputs) -> anyhow::Result<RateLimits> {
        let defaults = RateLimits::default();
        let create_call = self.rate_limit(
            (CREATE_CALL_RATE, inputs.create_call_rate),
            (CREATE_CALL_BURST, inputs.create_call_burst),
            defaults.create_call,
        )?;
        let join = self.rate_limit(
            (JOIN_RATE, inputs.join_rate),
            (JOIN_BURST, inputs.join_burst),
            defaults.join,
        )?;
        Ok(RateLimits { create_call, join })
    }

    fn rate_limit(
        &mut self,
        (rate_key, rate): (Key, (Option<u32>, Option<u32>)),
        (burst_key, burst): (Key, (Option<u32>, Option<u32>)),
        default: RateLimit,
    ) -> anyhow::Result<RateLimit> {
        let (per_second, rate_src) = self.pick(rate_key, rate.0, rate.1, default.per_second);
        let (burst, burst_src) = self.pick(burst_key, burst.0, burst.1, default.burst);
        for (key, value, src) in [
            (rate_key, per_second, rate_src),
            (burst_key, burst, burst_src),
        ] {
            if value > MAX_RATE {
                bail!(
                    "{} is {value} (from {}): at most {MAX_RATE}; 0 turns the limit off",
                    key.file,
                    self.origin(key, src)
                );
            }
        }
        if per_second > 0 && burst == 0 {
            bail!(
                "{} is 0 (from {}) while {} is {per_second}: no request could ever pass; \
                 set a burst of at least 1, or a rate of 0 to turn the limit off",
                burst_key.file,
                self.origin(burst_key, burst_src),
                rate_key.file
            );
        }
        self.record(rate_key, per_second, rate_src);
        self.record(burst_key, burst, burst_src);
        Ok(RateLimit { per_second, burst })
    }
}

/// Adds a warning when a token file can be read by its group or by anyone.
fn warn_if_readable_by_others(path: &Path, warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            warnings.push(format!(
                "auth token file {} is readable by its group or by others (mode {:o}): \
                 chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_checked() {
        let t = AuthToken::parse("  0123456789abcdef0123\n").unwrap();
        assert_eq!(t.as_bytes(), b"0123456789abcdef0123");
        assert!(format!("{t:?}").contains("redacted"));
        assert!(!format!("{t:?}").contains("0123"));
        let short = AuthToken::parse("short\n").unwrap_err();
        assert!(short.contains("5 bytes long"), "{short}");
        let space = AuthToken::parse("0123456789 abcdef0123").unwrap_err();
        assert!(space.contains("byte 10 is not visible ASCII"), "{space}");
        let long = AuthToken::parse(&"x".repeat(MAX_TOKEN_LEN + 1)).unwrap_err();
        assert!(long.contains("more than 4096"), "{long}");
    }

    fn parse(args: &[&str]) -> anyhow::Result<super::super::Config> {
        super::super::Config::try_from_args(
            std::iter::once("shopcalld").chain(args.iter().copied()),
        )
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("shopcalld-sec-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp dir is writable");
        path
    }

    #[test]
    fn a_public_address_needs_authentication_or_the_override() {
        let err = format!(
            "{:#}",
            parse(&["--grpc-listen", "0.0.0.0:50051"]).unwrap_err()
        );
        assert!(
            err.starts_with(
                "grpc_listen 0.0.0.0:50051 (from --grpc-listen) is not a loopback address, and \
                 the gRPC API has no authentication"
            ),
            "{err}"
        );
        assert!(err.contains("--insecure-allow-public-grpc"), "{err}");

        let c = parse(&[
            "--grpc-listen",
            "0.0.0.0:50051",
            "--insecure-allow-public-grpc",
        ])
        .unwrap();
        assert!(c.grpc_security.insecure_public());
        assert_eq!(
            c.grpc_security.describe(),
            "none (plaintext, no authentication)"
        );

        let token = temp_file("token", "0123456789abcdef0123456789abcdef\n");
        let c = parse(&[
            "--grpc-listen",
            "[::]:50051",
            "--auth-token-file",
            token.to_str().unwrap(),
        ])
        .unwrap();
        assert!(c.grpc_security.authenticates());
        assert!(!c.grpc_security.insecure_public());
        assert_eq!(c.grpc_security.describe(), "bearer token");
        assert_eq!(
            c.grpc_security.auth_token.as_ref().unwrap().as_bytes(),
            b"0123456789abcdef0123456789abcdef"
        );
        std::fs::remove_file(token).ok();

        // Loopback needs nothing.
        let c = parse(&[]).unwrap();
        assert!(!c.grpc_security.public);
        assert!(c.grpc_security.auth_token.is_none());
    }

    #[test]
    fn the_token_comes_from_one_place_and_must_be_usable() {
        let both = temp_file(
            "both.toml",
            "auth_token = \"0123456789abcdef0123\"\nauth_token_file = \"/x\"\n",
        );
        let err = parse(&["--config", both.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("both auth_token_file and auth_token are set"),
            "{err}"
        );
        std::fs::remove_file(both).ok();

        let inline = temp_file("inline.toml", "auth_token = \"0123456789abcdef0123\"\n");
        let c = parse(&["--config", inline.to_str().unwrap()]).unwrap();
        assert!(c.grpc_security.auth_token.is_some());
        let setting = c
            .settings()
            .iter()
            .find(|s| s.name == "auth_token")
            .unwrap();
        assert_eq!(setting.value, "set, from the config file");
        assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
        std::fs::remove_file(inline).ok();

        let short = temp_file("short", "abc\n");
        let err = parse(&["--auth-token-file", short.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be used: it is 3 bytes long"), "{err}");
        std::fs::remove_file(short).ok();

        let err = format!(
            "{:#}",
            parse(&["--auth-token-file", "/nonexistent/token"]).unwrap_err()
        );
        assert!(
            err.contains("cannot read auth token file /nonexistent/token (from --auth-token-file)"),
            "{err}"
        );
    }

    #[test]
    fn tls_files_come_in_pairs_and_must_parse() {
        let err = parse(&["--tls-cert", "/a.pem"]).unwrap_err().to_string();
        assert!(
            err.contains("needs its private key: set --tls-key"),
            "{err}"
        );
        let err = parse(&["--tls-key", "/a.key"]).unwrap_err().to_string();
        assert!(
            err.contains("needs its certificate: set --tls-cert"),
            "{err}"
        );
        let err = parse(&["--tls-client-ca", "/ca.pem"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("set --tls-cert and --tls-key too"), "{err}");
        let junk = temp_file("junk.pem", "not a certificate");
        let err = parse(&[
            "--tls-cert",
            junk.to_str().unwrap(),
            "--tls-key",
            junk.to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("invalid TLS configuration"), "{err}");
        std::fs::remove_file(junk).ok();
    }

    #[test]
    fn rate_limits_have_defaults_and_checks() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.rate_limits, RateLimits::default());
        let c = parse(&[
            "--join-rate",
            "0",
            "--create-call-rate",
            "5",
            "--create-call-burst",
            "1",
        ])
        .unwrap();
        assert!(!c.rate_limits.join.is_on());
        assert_eq!(
            c.rate_limits.create_call,
            RateLimit {
                per_second: 5,
                burst: 1
            }
        );
        let err = parse(&["--join-burst", "0"]).unwrap_err().to_string();
        assert!(
            err.starts_with("join_burst is 0 (from --join-burst) while join_rate is 100"),
            "{err}"
        );
        let err = parse(&["--create-call-rate", "2000000"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 1000000"), "{err}");
        let err = parse(&["--request-timeout-secs", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("request_timeout_secs is 0"), "{err}");
        assert_eq!(parse(&[]).unwrap().request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn rate_limits_display() {
        assert_eq!(
            RateLimits::default().create_call.to_string(),
            "50/s, burst 100"
        );
        assert_eq!(RateLimit::OFF.to_string(), "off");
    }
}
