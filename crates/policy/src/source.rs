//! Source: what a published track says it carries (microphone, a camera lens, the screen).
//!
//! A source is *declared* by the client in its Join request. The server cannot check it
//! (it cannot see which lens produced a frame), so the policy uses it only to accept or refuse
//! tracks and to choose the constraints returned to the client; forwarding is decided on the
//! negotiated [`MediaKind`] and the current grant.

use std::fmt;
use std::str::FromStr;

use crate::constraints::FacingMode;
use crate::role::MediaKind;

/// What a published track declares it carries.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The microphone (audio).
    Microphone,
    /// The rear camera, facing away from the user ("environment"): shows the product.
    CameraRear,
    /// The front camera, facing the user ("user"): shows the face.
    CameraFront,
    /// A screen or window capture (video).
    Screen,
}

impl Source {
    /// Every source, in a fixed order (the order used by [`crate::SourceSet`]).
    pub const ALL: [Source; 4] = [
        Source::Microphone,
        Source::CameraRear,
        Source::CameraFront,
        Source::Screen,
    ];

    /// The media kind an m-line carrying this source must have.
    pub const fn kind(self) -> MediaKind {
        match self {
            Source::Microphone => MediaKind::Audio,
            Source::CameraRear | Source::CameraFront | Source::Screen => MediaKind::Video,
        }
    }

    /// The camera lens this source names, if it is a camera.
    pub const fn lens(self) -> Option<Lens> {
        match self {
            Source::CameraRear => Some(Lens::Rear),
            Source::CameraFront => Some(Lens::Front),
            Source::Microphone | Source::Screen => None,
        }
    }

    /// Whether this source is a camera (either lens).
    pub const fn is_camera(self) -> bool {
        self.lens().is_some()
    }

    /// The snake_case name used in config, the Join request, logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Microphone => "microphone",
            Source::CameraRear => "camera_rear",
            Source::CameraFront => "camera_front",
            Source::Screen => "screen",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Source`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown source {0:?}: expected \"microphone\", \"camera_rear\", \"camera_front\" or \"screen\""
)]
pub struct ParseSourceError(pub String);

impl FromStr for Source {
    type Err = ParseSourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|source| source.as_str() == s)
            .ok_or_else(|| ParseSourceError(s.to_owned()))
    }
}

/// A camera lens: the two camera [`Source`]s as their own type, so a camera command cannot
/// name a microphone or a screen.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Lens {
    /// The rear camera ([`Source::CameraRear`]).
    Rear,
    /// The front camera ([`Source::CameraFront`]).
    Front,
}

impl Lens {
    /// Both lenses, rear first.
    pub const ALL: [Lens; 2] = [Lens::Rear, Lens::Front];

    /// The source a track from this lens declares.
    pub const fn source(self) -> Source {
        match self {
            Lens::Rear => Source::CameraRear,
            Lens::Front => Source::CameraFront,
        }
    }

    /// The W3C `facingMode` a client must request to open this lens.
    pub const fn facing_mode(self) -> FacingMode {
        match self {
            Lens::Rear => FacingMode::Environment,
            Lens::Front => FacingMode::User,
        }
    }
}

impl fmt::Display for Lens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_kinds_are_fixed() {
        let table = [
            (Source::Microphone, "microphone", MediaKind::Audio, None),
            (
                Source::CameraRear,
                "camera_rear",
                MediaKind::Video,
                Some(Lens::Rear),
            ),
            (
                Source::CameraFront,
                "camera_front",
                MediaKind::Video,
                Some(Lens::Front),
            ),
            (Source::Screen, "screen", MediaKind::Video, None),
        ];
        for (source, name, kind, lens) in table {
            assert_eq!(source.to_string(), name);
            assert_eq!(name.parse::<Source>(), Ok(source));
            assert_eq!(source.kind(), kind, "{source}");
            assert_eq!(source.lens(), lens, "{source}");
            assert_eq!(source.is_camera(), lens.is_some(), "{source}");
            if let Some(lens) = lens {
                assert_eq!(lens.source(), source);
                assert_eq!(lens.to_string(), name);
            }
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_choices() {
        for bad in ["", "camera", "Camera_Rear", "camera-rear", "mic"] {
            let err = bad.parse::<Source>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "unknown source {bad:?}: expected \"microphone\", \"camera_rear\", \
                     \"camera_front\" or \"screen\""
                )
            );
        }
    }

    #[test]
    fn lenses_face_the_right_way() {
        assert_eq!(Lens::Rear.facing_mode(), FacingMode::Environment);
        assert_eq!(Lens::Front.facing_mode(), FacingMode::User);
    }
}
