//! BuiltinProfile: the three profiles shopcall ships, usable with no config at all.

use std::fmt;

use crate::constraints::VideoCaps;
use crate::profile::{CameraAtJoin, CameraControl, Profile, RoleProfile};
use crate::source::Source;
use crate::source_set::SourceSet;

/// A profile shipped with shopcall. Config may override any of them by name.
///
/// | profile | customer camera | customer lens | merchant camera | merchant screen |
/// |---|---|---|---|---|
/// | `rear-camera-off` (default) | off at join, customer may turn on | rear only | on at join | allowed |
/// | `merchant-video` | off at join, customer may turn on | rear or front | on at join | allowed |
/// | `audio-only` | none | none | none | no |
///
/// Both roles may use the microphone in every built-in profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinProfile {
    /// `rear-camera-off`, the default: the customer joins with the camera off and may turn
    /// on the rear camera only (to show the product, not a face); the merchant joins with the
    /// camera on and may share its screen.
    RearCameraOff,
    /// `merchant-video`: the merchant joins with the camera on, the customer with it off; the
    /// customer may turn on either lens.
    MerchantVideo,
    /// `audio-only`: microphones only; every camera and screen share is refused.
    AudioOnly,
}

const MERCHANT_ANY_CAMERA: RoleProfile = RoleProfile {
    accepted_sources: SourceSet::ALL,
    camera_at_join: CameraAtJoin::On,
    camera_control: CameraControl::SelfOnly,
    camera_caps: VideoCaps::HD_30,
    screen_caps: VideoCaps::FULL_HD_15,
};

const CUSTOMER_REAR_OFF: RoleProfile = RoleProfile {
    accepted_sources: SourceSet::of(&[Source::Microphone, Source::CameraRear]),
    camera_at_join: CameraAtJoin::Off,
    camera_control: CameraControl::SelfOnly,
    camera_caps: VideoCaps::HD_30,
    screen_caps: VideoCaps::FULL_HD_15,
};

const CUSTOMER_ANY_OFF: RoleProfile = RoleProfile {
    accepted_sources: SourceSet::of(&[Source::Microphone, Source::CameraRear, Source::CameraFront]),
    ..CUSTOMER_REAR_OFF
};

const MICROPHONE_ONLY: RoleProfile = RoleProfile {
    accepted_sources: SourceSet::AUDIO,
    camera_at_join: CameraAtJoin::Off,
    camera_control: CameraControl::Nobody,
    camera_caps: VideoCaps::HD_30,
    screen_caps: VideoCaps::FULL_HD_15,
};

impl BuiltinProfile {
    /// Every built-in profile, the default first.
    pub const ALL: [BuiltinProfile; 3] = [
        BuiltinProfile::RearCameraOff,
        BuiltinProfile::MerchantVideo,
        BuiltinProfile::AudioOnly,
    ];

    /// The profile used when neither config nor the call names one.
    pub const DEFAULT: BuiltinProfile = BuiltinProfile::RearCameraOff;

    /// The profile's name, as used in config and in CreateCall.
    pub const fn name(self) -> &'static str {
        match self {
            BuiltinProfile::RearCameraOff => "rear-camera-off",
            BuiltinProfile::MerchantVideo => "merchant-video",
            BuiltinProfile::AudioOnly => "audio-only",
        }
    }

    /// The built-in profile called `name`, if any.
    pub fn from_name(name: &str) -> Option<BuiltinProfile> {
        BuiltinProfile::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The profile's rules, as shipped.
    pub const fn profile(self) -> Profile {
        match self {
            BuiltinProfile::RearCameraOff => Profile {
                merchant: MERCHANT_ANY_CAMERA,
                customer: CUSTOMER_REAR_OFF,
                recording_allowed: false,
                record_screen: false,
            },
            BuiltinProfile::MerchantVideo => Profile {
                merchant: MERCHANT_ANY_CAMERA,
                customer: CUSTOMER_ANY_OFF,
                recording_allowed: false,
                record_screen: false,
            },
            BuiltinProfile::AudioOnly => Profile {
                merchant: MICROPHONE_ONLY,
                customer: MICROPHONE_ONLY,
                recording_allowed: false,
                record_screen: false,
            },
        }
    }
}

impl fmt::Display for BuiltinProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;

    #[test]
    fn names_round_trip() {
        for b in BuiltinProfile::ALL {
            assert_eq!(BuiltinProfile::from_name(b.name()), Some(b));
        }
        assert_eq!(BuiltinProfile::from_name("Rear-Camera-Off"), None);
        assert_eq!(BuiltinProfile::DEFAULT.name(), "rear-camera-off");
    }

    /// The table in the type's docs, checked.
    #[test]
    fn builtins_match_the_documented_table() {
        // (profile, customer lenses, merchant camera on at join, merchant screen)
        let table = [
            (
                BuiltinProfile::RearCameraOff,
                SourceSet::of(&[Source::CameraRear]),
                true,
                true,
            ),
            (
                BuiltinProfile::MerchantVideo,
                SourceSet::CAMERAS,
                true,
                true,
            ),
            (BuiltinProfile::AudioOnly, SourceSet::EMPTY, false, false),
        ];
        for (builtin, customer_lenses, merchant_camera_on, merchant_screen) in table {
            let p = builtin.profile();
            assert_eq!(p.customer.lenses(), customer_lenses, "{builtin}");
            assert_eq!(p.customer.camera_at_join, CameraAtJoin::Off, "{builtin}");
            assert_eq!(
                p.customer.camera_may_turn_on(),
                !customer_lenses.is_empty(),
                "{builtin}"
            );
            assert!(!p.customer.allows_screen_share(), "{builtin}");
            assert_eq!(
                p.merchant.camera_at_join == CameraAtJoin::On,
                merchant_camera_on,
                "{builtin}"
            );
            assert_eq!(
                p.merchant.allows_screen_share(),
                merchant_screen,
                "{builtin}"
            );
            for role in Role::ALL {
                assert!(p.role(role).allows_microphone(), "{builtin} {role}");
            }
            assert!(!p.recording_allowed, "{builtin}");
            assert!(!p.record_screen, "{builtin}");
        }
    }
}
