//! Media: what happens to one RTP packet between two participants.
//!
//! A [`Receiver`] is a track coming in (one SSRC). A [`DownTrack`] is that track going out to
//! the other participant; its [`Forwarder`] decides whether the packet goes (policy grant,
//! layer, keyframe) and its [`Munger`] rewrites the header for the outgoing leg.

pub mod downtrack;
pub mod forwarder;
pub mod freeze;
pub mod keyframe;
pub mod munger;
pub mod rate;
pub mod receiver;

pub use downtrack::DownTrack;
pub use forwarder::{Forwarder, Verdict};
pub use freeze::FreezeDetector;
pub use munger::Munger;
pub use rate::RateMeter;
pub use receiver::Receiver;
