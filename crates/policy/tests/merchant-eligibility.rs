//! Merchant eligibility: thresholds, the reason texts, validation, and failing closed.

use policy::{
    Eligibility, EligibilityError, EligibilityRules, Ineligible, MerchantStanding, OnIneligible,
};
use proptest::prelude::*;

fn standing(rating: f32, reply_rate: f32, video_opt_in: bool) -> MerchantStanding {
    MerchantStanding {
        rating,
        reply_rate,
        video_opt_in,
    }
}

const STRICT: EligibilityRules = EligibilityRules {
    min_rating: 4.5,
    min_reply_rate: 0.9,
    require_opt_in: true,
    on_ineligible: OnIneligible::AudioOnly,
};

#[test]
fn thresholds_and_reasons() {
    let refuse = EligibilityRules {
        on_ineligible: OnIneligible::Refuse,
        ..STRICT
    };
    let lax = EligibilityRules {
        require_opt_in: false,
        ..STRICT
    };
    #[rustfmt::skip]
    let table = [
        (STRICT, standing(4.8, 0.95, true),  "video"),
        (STRICT, standing(4.5, 0.9, true),   "video"),
        (STRICT, standing(4.1, 0.95, true),  "audio only: rating 4.1 below 4.5"),
        (STRICT, standing(4.8, 0.8, true),   "audio only: reply rate 0.8 below 0.9"),
        (STRICT, standing(4.8, 0.95, false), "audio only: merchant has not opted in to video calls"),
        // Opt-in is checked first, then rating, then reply rate.
        (STRICT, standing(1.0, 0.1, false),  "audio only: merchant has not opted in to video calls"),
        (STRICT, standing(1.0, 0.1, true),   "audio only: rating 1 below 4.5"),
        (refuse, standing(4.1, 0.95, true),  "refused: rating 4.1 below 4.5"),
        (lax,    standing(4.8, 0.95, false), "video"),
        (EligibilityRules::default(), standing(0.0, 0.0, true),  "video"),
        (EligibilityRules::default(), standing(5.0, 1.0, false), "audio only: merchant has not opted in to video calls"),
        // A malformed standing fails closed, whatever the thresholds.
        (EligibilityRules::default(), standing(f32::NAN, 1.0, true), "audio only: merchant rating must be a number from 0 to 5, got NaN"),
        (lax,    standing(5.0, 1.5, true),   "audio only: merchant reply rate must be a number from 0 to 1, got 1.5"),
        (refuse, standing(-1.0, 0.5, true),  "refused: merchant rating must be a number from 0 to 5, got -1"),
    ];
    for (rules, standing, text) in table {
        let got = rules.check(&standing);
        assert_eq!(got.to_string(), text, "{rules:?} {standing:?}");
        assert_eq!(got.allows_video(), text == "video");
        assert_eq!(got.reason().is_none(), got.allows_video());
    }
}

#[test]
fn the_reason_alone_reads_like_the_issue_says() {
    let got = STRICT.check(&standing(4.1, 0.95, true));
    assert_eq!(
        got,
        Eligibility::AudioOnly {
            reason: Ineligible::RatingBelow {
                rating: 4.1,
                min: 4.5
            }
        }
    );
    assert_eq!(got.reason().unwrap().to_string(), "rating 4.1 below 4.5");
}

#[test]
fn rule_and_standing_validation() {
    #[rustfmt::skip]
    let rules = [
        (4.5, 0.9, Ok(())),
        (0.0, 0.0, Ok(())),
        (5.0, 1.0, Ok(())),
        (f32::NAN, 0.5, Err("eligibility.min_rating must be a number from 0 to 5, got NaN")),
        (5.5, 0.5,      Err("eligibility.min_rating must be a number from 0 to 5, got 5.5")),
        (-0.1, 0.5,     Err("eligibility.min_rating must be a number from 0 to 5, got -0.1")),
        (4.0, f32::INFINITY, Err("eligibility.min_reply_rate must be a number from 0 to 1, got inf")),
        (4.0, 90.0,     Err("eligibility.min_reply_rate must be a number from 0 to 1, got 90")),
    ];
    for (min_rating, min_reply_rate, want) in rules {
        let r = EligibilityRules {
            min_rating,
            min_reply_rate,
            ..EligibilityRules::default()
        };
        assert_eq!(
            r.validate().map_err(|e| e.to_string()),
            want.map_err(str::to_owned),
            "{r:?}"
        );
    }
    assert!(matches!(
        standing(4.0, f32::NAN, true).validate(),
        Err(EligibilityError::ReplyRate(r)) if r.is_nan()
    ));
    assert_eq!(standing(0.0, 1.0, false).validate(), Ok(()));
}

fn rating() -> impl Strategy<Value = f32> {
    prop_oneof![
        0.0f32..=5.0,
        Just(f32::NAN),
        -10.0f32..0.0,
        5.0001f32..100.0
    ]
}

fn rate() -> impl Strategy<Value = f32> {
    prop_oneof![0.0f32..=1.0, Just(f32::NAN), -1.0f32..0.0, 1.0001f32..10.0]
}

proptest! {
    /// Video only if every check passes; never for a malformed standing or an unvalidated NaN
    /// threshold.
    #[test]
    fn video_only_when_every_threshold_holds(
        r in rating(), rr in rate(), opt_in in any::<bool>(),
        min_r in prop_oneof![0.0f32..=5.0, Just(f32::NAN)],
        min_rr in prop_oneof![0.0f32..=1.0, Just(f32::NAN)],
        require_opt_in in any::<bool>(),
        refuse in any::<bool>(),
    ) {
        let rules = EligibilityRules {
            min_rating: min_r,
            min_reply_rate: min_rr,
            require_opt_in,
            on_ineligible: if refuse { OnIneligible::Refuse } else { OnIneligible::AudioOnly },
        };
        let s = standing(r, rr, opt_in);
        let expect_video = s.validate().is_ok()
            && (opt_in || !require_opt_in)
            && r >= min_r
            && rr >= min_rr;
        let got = rules.check(&s);
        prop_assert_eq!(got.allows_video(), expect_video, "{}", got);
        if !expect_video {
            prop_assert_eq!(matches!(got, Eligibility::Refused { .. }), refuse);
        }
    }

    /// A better standing never makes the answer worse.
    #[test]
    fn monotone_in_rating_and_reply_rate(
        r in 0.0f32..=5.0, rr in 0.0f32..=1.0, dr in 0.0f32..=5.0, drr in 0.0f32..=1.0,
        min_r in 0.0f32..=5.0, min_rr in 0.0f32..=1.0,
    ) {
        let rules = EligibilityRules { min_rating: min_r, min_reply_rate: min_rr, ..STRICT };
        let worse = standing(r, rr, true);
        let better = standing((r + dr).min(5.0), (rr + drr).min(1.0), true);
        if rules.check(&worse).allows_video() {
            prop_assert!(rules.check(&better).allows_video());
        }
    }
}
