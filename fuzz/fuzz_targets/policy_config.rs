//! `policy_config`: the policy part of the daemon's TOML config (profiles, default profile,
//! eligibility rules) plus per-call profile overrides and merchant standings, as text.
//!
//! Checks the policy's documented promises on whatever parses: every profile in a built
//! set validates, an audio-only version of a valid profile is valid, no profile forwards the
//! customer's camera at join, a resolved per-call override is valid, and a malformed
//! standing never yields video.
#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use policy::{
    CameraSetting, EligibilityRules, Grants, Lens, MediaKind, MerchantStanding, Profile,
    ProfileDef, ProfileOverride, ProfileSet, Role, Source,
};

/// The policy's share of the daemon's config file, as in crates/policy/tests/profiles-toml.rs,
/// plus what CreateCall brings per call.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileDef>,
    #[serde(default)]
    eligibility: EligibilityRules,
    #[serde(default)]
    calls: Vec<CallRequest>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    profile: Option<String>,
    #[serde(default, rename = "override")]
    profile_override: ProfileOverride,
    standing: Option<MerchantStanding>,
}

fn check_profile(name: &str, p: &Profile) {
    assert_eq!(
        p.validate(),
        Ok(()),
        "profile {name} in a built set is valid"
    );
    assert_eq!(
        p.without_video().validate(),
        Ok(()),
        "the audio-only version of {name} is valid"
    );
    for role in Role::ALL {
        let _ = p.constraints(role);
    }
    let t0 = Instant::now();
    let mut grants = Grants::new(p, t0);
    assert!(
        !grants.may_forward(Role::Customer, MediaKind::Video),
        "profile {name} forwards the customer's camera at join"
    );
    // Nobody turns on someone else's camera, under any profile.
    for lens in [Lens::Rear, Lens::Front] {
        let _ = grants.set_camera(Role::Merchant, Role::Customer, CameraSetting::On(lens), t0);
        assert!(!grants.may_forward_source(Role::Customer, Source::CameraRear));
        assert!(!grants.may_forward_source(Role::Customer, Source::CameraFront));
    }
    let t1 = t0 + Duration::from_secs(1);
    let _ = grants.set_camera(
        Role::Customer,
        Role::Customer,
        CameraSetting::On(Lens::Rear),
        t1,
    );
    let _ = grants.set_camera(Role::Customer, Role::Customer, CameraSetting::Off, t1);
    assert!(!grants.may_forward(Role::Customer, MediaKind::Video));
    let _ = grants.camera_time(Role::Customer, t1);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    let rules = config.eligibility;
    let _ = rules.validate();
    let Ok(set) = ProfileSet::from_config(&config.profiles, config.default_profile.as_deref())
    else {
        return;
    };
    let _ = set.default_profile();
    for (name, p) in set.iter() {
        check_profile(name, p);
    }
    for call in &config.calls {
        if let Ok(p) = set.resolve(call.profile.as_deref(), &call.profile_override) {
            check_profile("(resolved)", &p);
        }
        if let Some(standing) = &call.standing {
            let e = rules.check(standing);
            let _ = e.to_string();
            // Fails closed: a NaN threshold makes every merchant ineligible.
            if rules.min_rating.is_nan() || rules.min_reply_rate.is_nan() {
                assert!(!e.allows_video(), "a NaN threshold gave video: {rules:?}");
            }
            if standing.validate().is_err() {
                assert!(
                    !e.allows_video(),
                    "a malformed standing gave video: {standing:?}"
                );
            }
        }
    }
});
