//! Constraints: what the join answer tells a client to apply to its capture.
//!
//! The server cannot see which lens a client opened or at what resolution it captures; it
//! returns these constraints and the client must apply them (with `getUserMedia` /
//! `applyConstraints`, e.g. `facingMode: {exact: "environment"}`). Forwarding never depends on
//! them: it depends on the negotiated media kind and the grant.

use std::fmt;

use crate::source::Lens;
use crate::source_set::SourceSet;

/// The W3C `facingMode` of a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacingMode {
    /// Facing the user: the front camera.
    User,
    /// Facing away from the user: the rear camera.
    Environment,
}

impl FacingMode {
    /// The W3C constraint value: `"user"` or `"environment"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FacingMode::User => "user",
            FacingMode::Environment => "environment",
        }
    }
}

impl fmt::Display for FacingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Upper bounds on a video capture, sent to the client and checked when a profile is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoCaps {
    /// Maximum width in pixels, `1..=`[`VideoCaps::WIDTH_LIMIT`].
    pub max_width: u32,
    /// Maximum height in pixels, `1..=`[`VideoCaps::HEIGHT_LIMIT`].
    pub max_height: u32,
    /// Maximum frames per second, `1..=`[`VideoCaps::FRAME_RATE_LIMIT`].
    pub max_frame_rate: u32,
}

/// One field of [`VideoCaps`], for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapField {
    /// [`VideoCaps::max_width`].
    MaxWidth,
    /// [`VideoCaps::max_height`].
    MaxHeight,
    /// [`VideoCaps::max_frame_rate`].
    MaxFrameRate,
}

impl CapField {
    /// The config key of the field.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapField::MaxWidth => "max_width",
            CapField::MaxHeight => "max_height",
            CapField::MaxFrameRate => "max_frame_rate",
        }
    }

    /// The inclusive range of valid values.
    pub const fn range(self) -> (u32, u32) {
        match self {
            CapField::MaxWidth => (1, VideoCaps::WIDTH_LIMIT),
            CapField::MaxHeight => (1, VideoCaps::HEIGHT_LIMIT),
            CapField::MaxFrameRate => (1, VideoCaps::FRAME_RATE_LIMIT),
        }
    }
}

impl fmt::Display for CapField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl VideoCaps {
    /// The largest accepted `max_width` (8K).
    pub const WIDTH_LIMIT: u32 = 7680;
    /// The largest accepted `max_height` (8K).
    pub const HEIGHT_LIMIT: u32 = 4320;
    /// The largest accepted `max_frame_rate`.
    pub const FRAME_RATE_LIMIT: u32 = 120;

    /// 1280x720 at 30 fps: the built-in profiles' camera caps.
    pub const HD_30: VideoCaps = VideoCaps {
        max_width: 1280,
        max_height: 720,
        max_frame_rate: 30,
    };
    /// 1920x1080 at 15 fps: the built-in profiles' screen-share caps (sharp text, few frames).
    pub const FULL_HD_15: VideoCaps = VideoCaps {
        max_width: 1920,
        max_height: 1080,
        max_frame_rate: 15,
    };

    /// The value of `field`.
    pub const fn get(&self, field: CapField) -> u32 {
        match field {
            CapField::MaxWidth => self.max_width,
            CapField::MaxHeight => self.max_height,
            CapField::MaxFrameRate => self.max_frame_rate,
        }
    }

    /// The first field outside its [`CapField::range`], with its value.
    pub fn first_out_of_range(&self) -> Option<(CapField, u32)> {
        [
            CapField::MaxWidth,
            CapField::MaxHeight,
            CapField::MaxFrameRate,
        ]
        .into_iter()
        .map(|field| (field, self.get(field)))
        .find(|&(field, value)| {
            let (min, max) = field.range();
            !(min..=max).contains(&value)
        })
    }
}

/// What a participant's client must apply, returned in the join answer for its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClientConstraints {
    /// Whether the client may publish its microphone.
    pub microphone: bool,
    /// The camera rules, or `None` if this role may not use a camera at all.
    pub camera: Option<CameraConstraints>,
    /// Caps for a screen share, or `None` if this role may not share its screen.
    pub screen: Option<VideoCaps>,
}

/// The camera part of [`ClientConstraints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CameraConstraints {
    /// The lenses the client may declare (a non-empty subset of the two cameras).
    pub lenses: SourceSet,
    /// The `facingMode` the client must request as `exact` when only one lens is allowed;
    /// `None` when either lens is allowed (the user chooses).
    pub facing_mode: Option<FacingMode>,
    /// Whether the camera is on at join (video forwarded from the start).
    pub on_at_join: bool,
    /// Whether the participant may turn its camera on later.
    pub may_turn_on: bool,
    /// Resolution and frame-rate caps.
    pub caps: VideoCaps,
}

/// What the client must apply to one accepted track, per its declared source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrackConstraints {
    /// A microphone track: nothing to apply.
    Microphone,
    /// A camera track: open `lens` (as `facingMode: {exact: ..}`) within `caps`.
    Camera {
        /// The declared lens.
        lens: Lens,
        /// `lens.facing_mode()`, spelled out for the client.
        facing_mode: FacingMode,
        /// Resolution and frame-rate caps.
        caps: VideoCaps,
    },
    /// A screen-share track within `caps`.
    Screen {
        /// Resolution and frame-rate caps.
        caps: VideoCaps,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_ranges() {
        let ok = VideoCaps::HD_30;
        assert_eq!(ok.first_out_of_range(), None);
        assert_eq!(VideoCaps::FULL_HD_15.first_out_of_range(), None);
        let table = [
            (
                VideoCaps {
                    max_frame_rate: 0,
                    ..ok
                },
                Some((CapField::MaxFrameRate, 0)),
            ),
            (
                VideoCaps {
                    max_frame_rate: 121,
                    ..ok
                },
                Some((CapField::MaxFrameRate, 121)),
            ),
            (
                VideoCaps {
                    max_frame_rate: 120,
                    ..ok
                },
                None,
            ),
            (
                VideoCaps {
                    max_width: 0,
                    max_height: 0,
                    ..ok
                },
                Some((CapField::MaxWidth, 0)),
            ),
            (
                VideoCaps {
                    max_height: 4321,
                    ..ok
                },
                Some((CapField::MaxHeight, 4321)),
            ),
            (
                VideoCaps {
                    max_width: 7680,
                    max_height: 4320,
                    max_frame_rate: 1,
                },
                None,
            ),
        ];
        for (caps, expected) in table {
            assert_eq!(caps.first_out_of_range(), expected, "{caps:?}");
        }
    }

    #[test]
    fn facing_mode_names_are_w3c() {
        assert_eq!(FacingMode::User.to_string(), "user");
        assert_eq!(FacingMode::Environment.to_string(), "environment");
    }
}
