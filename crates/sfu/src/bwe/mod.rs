//! Bandwidth: estimating each participant's downlink and deciding what video fits in it.
//!
//! * [`estimator`]: TWCC feedback (REMB as fallback) → bits per second the SFU may send.
//! * [`allocator`]: that estimate → which simulcast layer each video DownTrack forwards, or
//!   whether video pauses so audio keeps flowing. With hysteresis both ways.

pub mod allocator;
pub mod estimator;

pub use allocator::{Allocation, Allocator, AllocatorConfig, LayerInfo};
pub use estimator::{DownlinkEstimator, Estimate, EstimatorConfig};
