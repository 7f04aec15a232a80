//! Ids: small `Copy` handles for the objects the engine owns.
//!
//! Callers hold ids; the [`Engine`](crate::Engine) owns every call and participant. Ids are
//! random 64-bit values shown as 16 lower-case hex digits, so they carry no ordering or count
//! that an outsider could read, and they never appear on the media wire (ICE ufrags are drawn
//! separately).

use std::fmt;
use std::str::FromStr;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw value. Useful in tests; the engine draws real ids at random.
            pub const fn from_raw(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw value.
            pub const fn raw(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:016x})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ParseIdError { what: $what, len: s.len() });
                }
                u64::from_str_radix(s, 16)
                    .map($name)
                    .map_err(|_| ParseIdError { what: $what, len: s.len() })
            }
        }
    };
}

hex_id!(
    /// Identifies a call (two participants and a lifecycle).
    CallId,
    "call id"
);
hex_id!(
    /// Identifies a participant (one role, one peer connection) across the whole engine.
    ParticipantId,
    "participant id"
);

/// The error of parsing an id: ids are exactly 16 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: expected 16 hexadecimal digits, got {len} characters")]
pub struct ParseIdError {
    what: &'static str,
    len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_text() {
        let id = CallId::from_raw(0x00ab_cdef_0123_4567);
        let text = id.to_string();
        assert_eq!(text, "00abcdef01234567");
        assert_eq!(text.parse::<CallId>().unwrap(), id);
    }

    #[test]
    fn bad_ids_are_refused_with_a_reason() {
        let err = "xyz".parse::<ParticipantId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid participant id: expected 16 hexadecimal digits, got 3 characters"
        );
        assert!("+0000000000000001".parse::<CallId>().is_err());
        assert!("000000000000000g".parse::<CallId>().is_err());
    }
}
