//! Role: which side of a service call a participant is on.

use std::fmt;
use std::str::FromStr;

/// Which side of a one-to-one service call a participant is on.
///
/// The signaling tier authenticates users and assigns the role at Join; shopcall trusts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The shop's agent.
    Merchant,
    /// The buyer.
    Customer,
}

impl Role {
    /// Both roles, merchant first.
    pub const ALL: [Role; 2] = [Role::Merchant, Role::Customer];

    /// The other side of the call.
    pub fn other(self) -> Role {
        match self {
            Role::Merchant => Role::Customer,
            Role::Customer => Role::Merchant,
        }
    }

    /// A dense index (merchant 0, customer 1) for per-role arrays on hot paths.
    pub const fn index(self) -> usize {
        match self {
            Role::Merchant => 0,
            Role::Customer => 1,
        }
    }

    /// Lower-case name, as used in config, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Merchant => "merchant",
            Role::Customer => "customer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Role`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected \"merchant\" or \"customer\"")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "merchant" => Ok(Role::Merchant),
            "customer" => Ok(Role::Customer),
            other => Err(ParseRoleError(other.to_owned())),
        }
    }
}

/// The kind of media an m-line carries, as negotiated in SDP.
///
/// Enforcement is by kind, never by a client's declared source: a client can lie about
/// which lens it uses, but not about whether an m-line is video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8, VP9, H.264).
    Video,
}

impl MediaKind {
    /// Both kinds, audio first.
    pub const ALL: [MediaKind; 2] = [MediaKind::Audio, MediaKind::Video];

    /// Lower-case name, as used in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
