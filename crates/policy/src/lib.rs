//! shopcall's call policy: who may send what, when.
//!
//! Pure rules: no I/O, no async runtime, no clock reads (time is an argument). The SFU engine
//! and the daemon call it; it never calls them.
//!
//! # The rules
//!
//! Two roles share a call: the **merchant** (the shop's agent) and the **customer** (the
//! buyer). Under the default profile, `rear-camera-off`:
//!
//! | | microphone | camera at join | camera later | lens | screen share |
//! |---|---|---|---|---|---|
//! | customer | on | OFF | only by the customer's own action | rear only | no |
//! | merchant | on | on | yes | any | allowed |
//!
//! - **Enforced by kind, failing closed.** A participant's video is forwarded only while a
//!   video source of that participant is granted ([`Grants::may_forward`]); until then the
//!   SFU drops it at ingress. Revoking takes effect at the next packet.
//! - **Only the customer opens the customer's camera.** [`Grants::set_camera`] refuses any
//!   actor other than the camera's owner ([`Reason::NotOwnCamera`]). A merchant may ask
//!   ([`Grants::request_camera`]), which only yields an event to show.
//! - **Profiles are configuration.** [`BuiltinProfile`] ships `rear-camera-off`,
//!   `merchant-video` and `audio-only`; [`ProfileSet`] adds `[profiles.NAME]` tables from
//!   the daemon's config; a call may override single fields ([`ProfileOverride`]). Every
//!   profile is validated ([`Profile::validate`]): for example no profile can open the
//!   customer's camera at join, and no profile can let anyone but the owner turn a camera on
//!   ([`CameraControl`] has no such value).
//! - **Merchant eligibility.** [`EligibilityRules::check`] turns the merchant's standing
//!   into video, audio only or refused, with a reason such as `rating 4.1 below 4.5`.
//!
//! # The trust boundary
//!
//! - **Roles come from the signaling tier.** It authenticates users and assigns each
//!   participant its [`Role`] at Join; shopcall trusts that assignment, and every `actor`
//!   argument here is such a role.
//! - **The lens is the client's.** The server cannot see which camera produced a frame. A
//!   track *declares* its [`Source`] (`microphone`, `camera_rear`, `camera_front`, `screen`);
//!   [`review_join`] accepts or refuses each declaration and returns the constraints the
//!   client must apply (`facingMode: environment` for the rear lens, resolution and
//!   frame-rate caps). What the server does enforce is the media **kind** negotiated for the
//!   m-line and the **grant**: a client that lies about its source, or sends video on an
//!   undeclared SSRC, still gets no video forwarded while its camera is not granted.
//!
//! # Using it
//!
//! At CreateCall, resolve the profile (and apply eligibility); at Join, review the declared
//! tracks; per packet, ask the gate; on SetCamera / RequestCamera, apply the operation and act
//! on the [`Decision`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use policy::{
//!     review_join, CameraSetting, Decision, DeclaredTrack, EligibilityRules, Grants, Lens,
//!     MediaKind, MerchantStanding, ProfileOverride, ProfileSet, Reason, Role, Source,
//! };
//!
//! // CreateCall: the profile, then eligibility.
//! let profiles = ProfileSet::builtin();
//! let mut profile = profiles.resolve(None, &ProfileOverride::default())?;
//! let standing = MerchantStanding { rating: 4.8, reply_rate: 0.97, video_opt_in: true };
//! if !EligibilityRules::default().check(&standing).allows_video() {
//!     profile = profile.without_video();
//! }
//! let t0 = Instant::now(); // the driver's clock; the policy never reads one
//! let mut grants = Grants::new(&profile, t0);
//!
//! // Join: the customer declares a microphone and a rear-camera track.
//! let review = review_join(&profile, Role::Customer, [
//!     DeclaredTrack { key: "0", source: Source::Microphone, kind: MediaKind::Audio },
//!     DeclaredTrack { key: "1", source: Source::CameraRear, kind: MediaKind::Video },
//! ]);
//! assert_eq!(review.accepted().count(), 2);
//!
//! // Per packet: customer video is dropped until the customer turns the camera on.
//! assert!(!grants.may_forward(Role::Customer, MediaKind::Video));
//!
//! // The merchant cannot turn it on...
//! let d = grants.set_camera(Role::Merchant, Role::Customer, CameraSetting::On(Lens::Rear), t0);
//! assert_eq!(d, Decision::Refuse(Reason::NotOwnCamera {
//!     actor: Role::Merchant,
//!     target: Role::Customer,
//! }));
//! // ...only ask.
//! let asked = grants.request_camera(Role::Merchant, Role::Customer);
//! assert!(asked.effects().is_some_and(|e| e.camera_requested));
//!
//! // The customer can; the SFU then requests a keyframe from the customer.
//! let t1 = t0 + Duration::from_secs(5);
//! let d = grants.set_camera(Role::Customer, Role::Customer, CameraSetting::On(Lens::Rear), t1);
//! assert!(d.effects().is_some_and(|e| e.keyframe_needed()));
//! assert!(grants.may_forward_source(Role::Customer, Source::CameraRear));
//!
//! // The call record: camera seconds.
//! let t2 = t1 + Duration::from_secs(30);
//! let _ = grants.set_camera(Role::Customer, Role::Customer, CameraSetting::Off, t2);
//! assert_eq!(grants.camera_time(Role::Customer, t2), Duration::from_secs(30));
//! # Ok::<(), policy::ProfileError>(())
//! ```
//!
//! # Modules at a glance
//!
//! | concept | types |
//! |---|---|
//! | who | [`Role`], [`MediaKind`] |
//! | what a track carries | [`Source`], [`Lens`], [`SourceSet`] |
//! | the rules of a call | [`Profile`], [`RoleProfile`], [`BuiltinProfile`], [`ProfileOverride`], [`ProfileSet`], [`ProfileDef`] |
//! | what the client must apply | [`ClientConstraints`], [`TrackConstraints`], [`VideoCaps`], [`FacingMode`] |
//! | Join | [`review_join`], [`DeclaredTrack`], [`TrackVerdict`], [`TrackRefusal`] |
//! | the grant state | [`Grants`], [`CameraSetting`], [`Decision`], [`Effects`], [`Reason`], [`CameraUsage`] |
//! | eligibility | [`EligibilityRules`], [`MerchantStanding`], [`Eligibility`], [`Ineligible`] |
//! | bad config | [`ProfileError`], [`ProfileProblem`], [`EligibilityError`] |

#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod builtin;
mod camera;
mod constraints;
mod decision;
mod eligibility;
mod error;
mod grant;
mod profile;
mod profile_override;
mod profile_set;
mod role;
mod source;
mod source_set;
mod track;

pub use builtin::BuiltinProfile;
pub use camera::CameraUsage;
pub use constraints::{
    CameraConstraints, CapField, ClientConstraints, FacingMode, TrackConstraints, VideoCaps,
};
pub use decision::{Decision, Effects, Reason};
pub use eligibility::{Eligibility, EligibilityRules, Ineligible, MerchantStanding, OnIneligible};
pub use error::{CapsKind, EligibilityError, ProfileError, ProfileProblem};
pub use grant::{CameraSetting, Grants};
pub use profile::{CameraAtJoin, CameraControl, Profile, RoleProfile};
pub use profile_override::{CapsOverride, ProfileOverride, RoleOverride};
pub use profile_set::{NAME_MAX_LEN, ProfileDef, ProfileSet};
pub use role::{MediaKind, ParseRoleError, Role};
pub use source::{Lens, ParseSourceError, Source};
pub use source_set::SourceSet;
pub use track::{DeclaredTrack, JoinReview, TrackOutcome, TrackRefusal, TrackVerdict, review_join};
