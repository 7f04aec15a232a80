//! Eligibility: whether a merchant may open a video call, from its standing and the rules.
//!
//! The signaling tier passes the merchant's standing with CreateCall; the daemon's config
//! holds the [`EligibilityRules`]. The answer is a value with a reason that reads well
//! (`rating 4.1 below 4.5`), never an error.

use std::cmp::Ordering;
use std::fmt;

use crate::error::EligibilityError;

/// The merchant's standing, as the signaling tier reports it at CreateCall.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MerchantStanding {
    /// Star rating, 0 to 5.
    pub rating: f32,
    /// Share of customer messages answered, 0 to 1.
    pub reply_rate: f32,
    /// Whether the merchant has opted in to video calls.
    pub video_opt_in: bool,
}

impl MerchantStanding {
    /// Checks that both numbers are in range (a NaN is out of range).
    pub fn validate(&self) -> Result<(), EligibilityError> {
        if !(0.0..=5.0).contains(&self.rating) {
            return Err(EligibilityError::Rating(self.rating));
        }
        if !(0.0..=1.0).contains(&self.reply_rate) {
            return Err(EligibilityError::ReplyRate(self.reply_rate));
        }
        Ok(())
    }
}

/// What happens to a call whose merchant is not eligible for video.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OnIneligible {
    /// The call is created without video (see [`crate::Profile::without_video`]).
    #[default]
    AudioOnly,
    /// The call is not created.
    Refuse,
}

/// Thresholds for video calls; the daemon's `[eligibility]` config table.
///
/// Defaults: no rating or reply-rate threshold, opt-in required, ineligible calls become
/// audio-only.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EligibilityRules {
    /// Lowest rating allowed video, 0 to 5 (default 0).
    pub min_rating: f32,
    /// Lowest reply rate allowed video, 0 to 1 (default 0).
    pub min_reply_rate: f32,
    /// Whether the merchant must have opted in (default true: the feature is optional).
    pub require_opt_in: bool,
    /// What an ineligible merchant gets (default audio-only).
    pub on_ineligible: OnIneligible,
}

impl Default for EligibilityRules {
    fn default() -> Self {
        EligibilityRules {
            min_rating: 0.0,
            min_reply_rate: 0.0,
            require_opt_in: true,
            on_ineligible: OnIneligible::AudioOnly,
        }
    }
}

/// Why a merchant is not eligible for video.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Ineligible {
    /// The merchant has not opted in and the rules require it.
    #[error("merchant has not opted in to video calls")]
    NotOptedIn,
    /// The rating is below the threshold.
    #[error("rating {rating} below {min}")]
    RatingBelow {
        /// The merchant's rating.
        rating: f32,
        /// The threshold.
        min: f32,
    },
    /// The reply rate is below the threshold.
    #[error("reply rate {reply_rate} below {min}")]
    ReplyRateBelow {
        /// The merchant's reply rate.
        reply_rate: f32,
        /// The threshold.
        min: f32,
    },
    /// The standing itself is malformed (a NaN or out-of-range number): fail closed.
    #[error("{0}")]
    InvalidStanding(EligibilityError),
}

/// The answer: video, audio only, or no call, with the reason.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Eligibility {
    /// The merchant may open a video call.
    Video,
    /// The call is created without video ([`OnIneligible::AudioOnly`]).
    AudioOnly {
        /// Why not video.
        reason: Ineligible,
    },
    /// The call is not created ([`OnIneligible::Refuse`]).
    Refused {
        /// Why not.
        reason: Ineligible,
    },
}

impl Eligibility {
    /// Whether video is allowed.
    pub fn allows_video(&self) -> bool {
        matches!(self, Eligibility::Video)
    }

    /// The reason, unless video is allowed.
    pub fn reason(&self) -> Option<Ineligible> {
        match self {
            Eligibility::Video => None,
            Eligibility::AudioOnly { reason } | Eligibility::Refused { reason } => Some(*reason),
        }
    }
}

impl fmt::Display for Eligibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Eligibility::Video => f.write_str("video"),
            Eligibility::AudioOnly { reason } => write!(f, "audio only: {reason}"),
            Eligibility::Refused { reason } => write!(f, "refused: {reason}"),
        }
    }
}

/// True unless `value >= min` holds (so a NaN on either side counts as below).
fn below(value: f32, min: f32) -> bool {
    !matches!(
        value.partial_cmp(&min),
        Some(Ordering::Greater | Ordering::Equal)
    )
}

impl EligibilityRules {
    /// Checks the thresholds are in range (a NaN is out of range). Call it at start-up.
    pub fn validate(&self) -> Result<(), EligibilityError> {
        if !(0.0..=5.0).contains(&self.min_rating) {
            return Err(EligibilityError::MinRating(self.min_rating));
        }
        if !(0.0..=1.0).contains(&self.min_reply_rate) {
            return Err(EligibilityError::MinReplyRate(self.min_reply_rate));
        }
        Ok(())
    }

    /// Decides whether `standing` allows video. Checks, in order: a malformed standing,
    /// opt-in, rating, reply rate; the first failure is the reason. Fails closed: a NaN
    /// threshold (rules not validated) makes every merchant ineligible.
    ///
    /// ```
    /// use policy::{EligibilityRules, MerchantStanding};
    ///
    /// let rules = EligibilityRules { min_rating: 4.5, ..EligibilityRules::default() };
    /// let standing = MerchantStanding { rating: 4.1, reply_rate: 0.9, video_opt_in: true };
    /// assert_eq!(rules.check(&standing).to_string(), "audio only: rating 4.1 below 4.5");
    /// ```
    pub fn check(&self, standing: &MerchantStanding) -> Eligibility {
        let reason = if let Err(e) = standing.validate() {
            Some(Ineligible::InvalidStanding(e))
        } else if self.require_opt_in && !standing.video_opt_in {
            Some(Ineligible::NotOptedIn)
        } else if below(standing.rating, self.min_rating) {
            Some(Ineligible::RatingBelow {
                rating: standing.rating,
                min: self.min_rating,
            })
        } else if below(standing.reply_rate, self.min_reply_rate) {
            Some(Ineligible::ReplyRateBelow {
                reply_rate: standing.reply_rate,
                min: self.min_reply_rate,
            })
        } else {
            None
        };
        match (reason, self.on_ineligible) {
            (None, _) => Eligibility::Video,
            (Some(reason), OnIneligible::AudioOnly) => Eligibility::AudioOnly { reason },
            (Some(reason), OnIneligible::Refuse) => Eligibility::Refused { reason },
        }
    }
}
