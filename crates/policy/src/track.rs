//! Declared tracks: the Join request's list of tracks, each accepted or refused with a reason.
//!
//! A client declares, per track (keyed by an opaque key such as its SDP mid), which
//! [`Source`] it carries; the SFU adds the media kind negotiated for that m-line.
//! [`review_join`] accepts or refuses each one. A refused track's m-line should be answered
//! inactive, with the reason's text in the join answer, so the client does not hang.
//!
//! Accepting a track does not forward it: forwarding is the grant's job ([`crate::Grants`]).

use crate::constraints::{ClientConstraints, TrackConstraints};
use crate::profile::Profile;
use crate::role::{MediaKind, Role};
use crate::source::Source;
use crate::source_set::SourceSet;

/// One track as declared in a Join request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTrack<K> {
    /// The caller's key for the track (e.g. the mid as a `String`), handed back in the verdict.
    pub key: K,
    /// The source the client says the track carries.
    pub source: Source,
    /// The media kind of the track's m-line, as negotiated in SDP.
    pub kind: MediaKind,
}

/// Why a declared track is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TrackRefusal {
    /// An earlier track in the same request has the same key.
    #[error("another track in the request has the same key")]
    DuplicateKey,
    /// The declared source's kind is not the m-line's kind (e.g. `camera_rear` on audio).
    #[error("declared source {declared} is {} but the m-line is {negotiated}", .declared.kind())]
    KindMismatch {
        /// The declared source.
        declared: Source,
        /// The m-line's negotiated kind.
        negotiated: MediaKind,
    },
    /// The profile does not accept this source for this role.
    #[error("{declared} is not accepted for the {role} (accepted: {accepted})")]
    SourceNotAccepted {
        /// The participant's role.
        role: Role,
        /// The declared source.
        declared: Source,
        /// What the profile accepts for the role.
        accepted: SourceSet,
    },
    /// The profile does not allow this role to share its screen.
    #[error("screen sharing is not allowed for the {role}")]
    ScreenShareNotAllowed {
        /// The participant's role.
        role: Role,
    },
    /// An earlier accepted track already declares this source.
    #[error("another track already carries {declared}")]
    DuplicateSource {
        /// The declared source.
        declared: Source,
    },
}

/// The outcome for one declared track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackOutcome {
    /// Accepted: answer the m-line normally; the client must apply these constraints.
    Accept(TrackConstraints),
    /// Refused: answer the m-line inactive and report the reason.
    Refuse(TrackRefusal),
}

/// A declared track with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackVerdict<K> {
    /// The caller's key, as declared.
    pub key: K,
    /// The declared source.
    pub source: Source,
    /// The negotiated kind.
    pub kind: MediaKind,
    /// Accepted (with constraints) or refused (with a reason).
    pub outcome: TrackOutcome,
}

impl<K> TrackVerdict<K> {
    /// Whether the track is accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self.outcome, TrackOutcome::Accept(_))
    }

    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<TrackRefusal> {
        match self.outcome {
            TrackOutcome::Accept(_) => None,
            TrackOutcome::Refuse(reason) => Some(reason),
        }
    }
}

/// The policy's part of a join answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReview<K> {
    /// The joining participant's role.
    pub role: Role,
    /// One verdict per declared track, in request order.
    pub tracks: Vec<TrackVerdict<K>>,
    /// The constraints for the role as a whole (what the client may open later, and how).
    pub constraints: ClientConstraints,
}

impl<K> JoinReview<K> {
    /// The accepted tracks, in request order.
    pub fn accepted(&self) -> impl Iterator<Item = &TrackVerdict<K>> {
        self.tracks.iter().filter(|t| t.is_accepted())
    }

    /// The refused tracks with their reasons, in request order.
    pub fn refused(&self) -> impl Iterator<Item = (&TrackVerdict<K>, TrackRefusal)> {
        self.tracks
            .iter()
            .filter_map(|t| t.refusal().map(|reason| (t, reason)))
    }
}

/// Accepts or refuses each declared track of a participant joining in `role`.
///
/// Checks, in order, for each track: a key repeated from an earlier track; the declared
/// source's kind against the negotiated kind; the source against the role's accepted
/// sources (screen sharing has its own reason); a source already carried by an earlier
/// accepted track.
///
/// ```
/// use policy::{review_join, BuiltinProfile, DeclaredTrack, MediaKind, Role, Source, TrackRefusal};
///
/// let profile = BuiltinProfile::RearCameraOff.profile();
/// let review = review_join(&profile, Role::Customer, [
///     DeclaredTrack { key: "0", source: Source::Microphone, kind: MediaKind::Audio },
///     DeclaredTrack { key: "1", source: Source::CameraFront, kind: MediaKind::Video },
/// ]);
/// assert!(review.tracks[0].is_accepted());
/// assert!(matches!(
///     review.tracks[1].refusal(),
///     Some(TrackRefusal::SourceNotAccepted { declared: Source::CameraFront, .. })
/// ));
/// ```
pub fn review_join<K: PartialEq>(
    profile: &Profile,
    role: Role,
    tracks: impl IntoIterator<Item = DeclaredTrack<K>>,
) -> JoinReview<K> {
    let rules = profile.role(role);
    let mut carried = SourceSet::EMPTY;
    let mut verdicts: Vec<TrackVerdict<K>> = Vec::new();
    for DeclaredTrack { key, source, kind } in tracks {
        let outcome = if verdicts.iter().any(|v| v.key == key) {
            TrackOutcome::Refuse(TrackRefusal::DuplicateKey)
        } else if source.kind() != kind {
            TrackOutcome::Refuse(TrackRefusal::KindMismatch {
                declared: source,
                negotiated: kind,
            })
        } else if !rules.accepted_sources.contains(source) {
            TrackOutcome::Refuse(if source == Source::Screen {
                TrackRefusal::ScreenShareNotAllowed { role }
            } else {
                TrackRefusal::SourceNotAccepted {
                    role,
                    declared: source,
                    accepted: rules.accepted_sources,
                }
            })
        } else if carried.contains(source) {
            TrackOutcome::Refuse(TrackRefusal::DuplicateSource { declared: source })
        } else {
            carried = carried.with(source);
            TrackOutcome::Accept(match (source, source.lens()) {
                (_, Some(lens)) => TrackConstraints::Camera {
                    lens,
                    facing_mode: lens.facing_mode(),
                    caps: rules.camera_caps,
                },
                (Source::Screen, None) => TrackConstraints::Screen {
                    caps: rules.screen_caps,
                },
                _ => TrackConstraints::Microphone,
            })
        };
        verdicts.push(TrackVerdict {
            key,
            source,
            kind,
            outcome,
        });
    }
    JoinReview {
        role,
        tracks: verdicts,
        constraints: rules.constraints(),
    }
}
