//! Config: the knobs of the engine and its UDP driver, with defaults that run out of the box.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use policy::{EligibilityRules, ProfileSet};

use crate::bwe::{AllocatorConfig, EstimatorConfig};
use crate::call::lifecycle::CallLimits;

/// A video codec the SFU can forward. Audio is always Opus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoCodec {
    /// VP8 (RFC 7741). Mandatory: every browser offers it.
    Vp8,
    /// VP9, profile 0.
    Vp9,
    /// H.264 with packetization-mode=1.
    H264,
}

impl VideoCodec {
    /// Every codec.
    pub const ALL: [VideoCodec; 3] = [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264];

    /// The MIME type as written in SDP `a=rtpmap` (case-insensitive there).
    pub fn mime_type(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "video/VP8",
            VideoCodec::Vp9 => "video/VP9",
            VideoCodec::H264 => "video/H264",
        }
    }

    /// The encoding name as in `a=rtpmap:<pt> <name>/90000`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::H264 => "H264",
        }
    }

    /// Parses an encoding name (case-insensitive), e.g. `vp8`, `H264`.
    pub fn from_name(name: &str) -> Option<VideoCodec> {
        VideoCodec::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// An SRTP protection profile the DTLS handshake may agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SrtpProfile {
    /// SRTP_AEAD_AES_128_GCM (RFC 7714): about a third of the per-packet cost of AES-CM.
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM.
    AeadAes256Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80: what every client supports.
    Aes128CmHmacSha1_80,
}

/// Configuration of an [`Engine`](crate::Engine) and of the UDP driver around it.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Address the one media UDP socket binds to. Default `0.0.0.0:40000`.
    pub udp_bind: SocketAddr,
    /// Addresses announced in host candidates (with the socket's port). Empty means the
    /// machine's own addresses: every non-loopback interface address, or `127.0.0.1` when
    /// there is none. Behind 1:1 NAT, set the public address here.
    pub announce_ips: Vec<IpAddr>,
    /// Maximum concurrent calls; `CreateCall` beyond it fails with `AtCapacity`.
    pub max_calls: usize,
    /// Video codecs in order of preference. The first joiner's offer picks the call's codec:
    /// the first codec in this list that the offer contains. Must contain [`VideoCodec::Vp8`].
    pub video_codecs: Vec<VideoCodec>,
    /// SRTP profiles in order of preference (the server's order wins).
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Minimum time between two keyframe requests (PLI) the SFU sends for one published track.
    pub keyframe_request_interval: Duration,
    /// A participant that has not connected (ICE + DTLS) this long after Join is removed.
    pub connect_timeout: Duration,
    /// A connected participant from which nothing (STUN consent, RTP, RTCP) arrived for this
    /// long is marked disconnected. Browsers send consent checks every 4-6 s (RFC 7675) and
    /// RTCP about every second, so 8 s of silence means the path is gone.
    pub disconnect_timeout: Duration,
    /// A disconnected participant that does not come back (same path, or an ICE restart)
    /// within this is lost: the call ends with `peer_lost`.
    pub reconnect_grace: Duration,
    /// Most datagrams the driver reads per loop turn before it services timers and commands.
    pub max_datagrams_per_turn: usize,
    /// Kernel receive and send buffer asked for on the media socket, in bytes (`SO_RCVBUF` /
    /// `SO_SNDBUF`; `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` first, which lift the system's
    /// `net.core.rmem_max` cap when the daemon may, i.e. with `CAP_NET_ADMIN`). Every call
    /// shares this one socket, so its buffer is what absorbs the driver's pauses: the
    /// kernel's default (about 208 KiB, ~2.5 ms at 60,000 packets/s) overflowed under load.
    /// Default 8 MiB (~100 ms at that rate). `0` keeps the kernel's default.
    pub udp_socket_buffer: usize,
    /// Seed for ids and ICE credentials; `None` draws from the OS. Tests set it.
    pub seed: Option<u64>,
    /// The call profiles (built-ins plus configured ones) and the default.
    pub profiles: ProfileSet,
    /// When a merchant's standing allows video.
    pub eligibility: EligibilityRules,
    /// Default time limits of a call.
    pub call_limits: CallLimits,
    /// Downlink estimation and video allocation.
    pub bandwidth: BandwidthConfig,
    /// Where [`SfuHandle`](crate::SfuHandle) writes call recordings, one file per recording
    /// named `{call_id}-{unix_time}.webm` (`.mkv` for H.264). `None` (the default): this
    /// server does not record, and StartRecording fails. The directory must exist and be
    /// writable when the SFU starts (see `docs/recording.md`).
    pub recording_dir: Option<std::path::PathBuf>,
}

/// Downlink estimation and video allocation (see `docs/bandwidth.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandwidthConfig {
    /// The estimator's start and bounds.
    pub estimator: EstimatorConfig,
    /// Layer selection, pause and resume.
    pub allocator: AllocatorConfig,
    /// How often a participant's quality is published as an event.
    pub quality_interval: Duration,
}

impl Default for BandwidthConfig {
    fn default() -> Self {
        BandwidthConfig {
            estimator: EstimatorConfig::default(),
            allocator: AllocatorConfig::default(),
            quality_interval: Duration::from_secs(5),
        }
    }
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 40000),
            announce_ips: Vec::new(),
            max_calls: 10_000,
            video_codecs: vec![VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264],
            srtp_profiles: vec![
                SrtpProfile::AeadAes128Gcm,
                SrtpProfile::AeadAes256Gcm,
                SrtpProfile::Aes128CmHmacSha1_80,
            ],
            keyframe_request_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            disconnect_timeout: Duration::from_secs(8),
            reconnect_grace: Duration::from_secs(20),
            max_datagrams_per_turn: 256,
            udp_socket_buffer: 8 << 20,
            seed: None,
            profiles: ProfileSet::builtin(),
            eligibility: EligibilityRules::default(),
            call_limits: CallLimits::default(),
            bandwidth: BandwidthConfig::default(),
            recording_dir: None,
        }
    }
}

impl SfuConfig {
    /// A config for tests and examples: loopback only, an ephemeral port.
    pub fn loopback() -> Self {
        SfuConfig {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            announce_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ..SfuConfig::default()
        }
    }

    /// Checks the values that cannot work, with a message that says which and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.video_codecs.contains(&VideoCodec::Vp8) {
            return Err(ConfigError::Vp8Required);
        }
        if self.srtp_profiles.is_empty() {
            return Err(ConfigError::NoSrtpProfile);
        }
        if self.max_calls == 0 {
            return Err(ConfigError::ZeroMaxCalls);
        }
        if self.max_datagrams_per_turn == 0 {
            return Err(ConfigError::ZeroDatagramsPerTurn);
        }
        if let Some(ip) = self.announce_ips.iter().find(|ip| ip.is_unspecified()) {
            return Err(ConfigError::UnspecifiedAnnounceIp(*ip));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("disconnect_timeout", self.disconnect_timeout),
            ("reconnect_grace", self.reconnect_grace),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if let Some(name) = self.call_limits.zero_limit() {
            return Err(ConfigError::ZeroLimit(name));
        }
        self.eligibility
            .validate()
            .map_err(ConfigError::Eligibility)?;
        if self
            .recording_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(ConfigError::EmptyRecordingDir);
        }
        Ok(())
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// VP8 is the codec every browser offers; without it two clients may share no codec.
    #[error("video_codecs must contain VP8: it is the one codec every browser offers")]
    Vp8Required,
    /// No SRTP profile means no DTLS-SRTP handshake can succeed.
    #[error("srtp_profiles is empty: at least one SRTP protection profile is needed")]
    NoSrtpProfile,
    /// `max_calls` of zero would refuse every call.
    #[error("max_calls is 0: no call could ever be created")]
    ZeroMaxCalls,
    /// The driver must read at least one datagram per turn.
    #[error("max_datagrams_per_turn is 0: the media socket would never be read")]
    ZeroDatagramsPerTurn,
    /// `0.0.0.0` or `::` cannot be announced: clients need a concrete address.
    #[error("announce ip {0} is unspecified: announce a concrete address clients can reach")]
    UnspecifiedAnnounceIp(IpAddr),
    /// A time limit of zero would end every call or participant at once.
    #[error("{0} is 0: it would end every call or participant at once")]
    ZeroLimit(&'static str),
    /// The eligibility thresholds are out of range.
    #[error("eligibility: {0}")]
    Eligibility(policy::EligibilityError),
    /// `recording_dir` is set to an empty path (leave it unset to disable recording).
    #[error("recording_dir is empty: name a directory, or leave it unset to disable recording")]
    EmptyRecordingDir,
}
