//! Profiles (and eligibility rules) as the daemon's TOML config holds them: valid files,
//! invalid ones with their exact messages, and per-call overrides.

use std::collections::BTreeMap;

use policy::{
    BuiltinProfile, CameraAtJoin, CameraControl, EligibilityRules, OnIneligible, Profile,
    ProfileDef, ProfileError, ProfileOverride, ProfileProblem, ProfileSet, Role, Source, SourceSet,
    VideoCaps,
};

/// The parts of the daemon's config file that belong to the policy.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileDef>,
    #[serde(default)]
    eligibility: EligibilityRules,
}

fn load(text: &str) -> Result<ProfileSet, ProfileError> {
    let config: Config = toml::from_str(text).expect("the TOML itself is well-formed");
    ProfileSet::from_config(&config.profiles, config.default_profile.as_deref())
}

fn load_err(text: &str) -> String {
    load(text).expect_err("this config is invalid").to_string()
}

#[test]
fn no_profiles_means_the_builtins() {
    let set = load("").unwrap();
    assert_eq!(set, ProfileSet::builtin());
}

#[test]
fn the_documented_example() {
    let set = load(
        r#"
        default_profile = "showroom"

        [profiles.showroom]
        base = "merchant-video"
        customer.accepted_sources = ["microphone", "camera_rear"]
        customer.camera_caps.max_frame_rate = 15

        [profiles.audio-only]
        recording_allowed = true
        "#,
    )
    .unwrap();
    assert_eq!(set.default_name(), "showroom");
    assert_eq!(
        set.names().collect::<Vec<_>>(),
        [
            "audio-only",
            "merchant-video",
            "rear-camera-off",
            "showroom"
        ]
    );

    let showroom = set.get("showroom").unwrap();
    let mut want = BuiltinProfile::MerchantVideo.profile();
    want.customer.accepted_sources = SourceSet::of(&[Source::Microphone, Source::CameraRear]);
    want.customer.camera_caps.max_frame_rate = 15;
    assert_eq!(*showroom, want);
    assert_eq!(set.default_profile(), showroom);

    let audio = set.get("audio-only").unwrap();
    assert!(
        audio.recording_allowed,
        "overrides the built-in of that name"
    );
    assert_eq!(
        audio.customer,
        BuiltinProfile::AudioOnly.profile().customer,
        "and only that field"
    );
}

#[test]
fn a_new_profile_without_base_starts_from_the_default_builtin() {
    let set = load(
        r#"
        [profiles.quiet]
        merchant.accepted_sources = ["microphone", "camera_front"]
        "#,
    )
    .unwrap();
    let quiet = set.get("quiet").unwrap();
    assert_eq!(
        quiet.customer,
        BuiltinProfile::RearCameraOff.profile().customer
    );
    assert_eq!(
        quiet.merchant.accepted_sources,
        SourceSet::of(&[Source::Microphone, Source::CameraFront])
    );
    assert_eq!(set.default_name(), "rear-camera-off");
}

#[test]
fn every_field_can_be_set_in_toml() {
    let set = load(
        r#"
        [profiles.full]
        base = "audio-only"
        recording_allowed = true
        record_screen = true

        [profiles.full.merchant]
        accepted_sources = ["microphone", "camera_front", "screen"]
        camera_at_join = "on"
        camera_control = "nobody"
        camera_caps = { max_width = 640, max_height = 480, max_frame_rate = 24 }
        screen_caps = { max_width = 2560, max_height = 1440, max_frame_rate = 5 }

        [profiles.full.customer]
        accepted_sources = ["microphone", "camera_rear", "camera_front"]
        camera_at_join = "off"
        camera_control = "self_only"
        "#,
    )
    .unwrap();
    let full = set.get("full").unwrap();
    assert!(full.recording_allowed);
    assert!(full.record_screen);
    assert_eq!(full.merchant.camera_at_join, CameraAtJoin::On);
    assert_eq!(full.merchant.camera_control, CameraControl::Nobody);
    assert_eq!(
        full.merchant.camera_caps,
        VideoCaps {
            max_width: 640,
            max_height: 480,
            max_frame_rate: 24
        }
    );
    assert_eq!(full.merchant.screen_caps.max_frame_rate, 5);
    assert_eq!(full.customer.lenses(), SourceSet::CAMERAS);
    assert_eq!(full.customer.camera_control, CameraControl::SelfOnly);
}

#[test]
fn invalid_profiles_are_refused_with_exact_messages() {
    #[rustfmt::skip]
    let table = [
        (r#"[profiles.peek]
            customer.camera_at_join = "on""#,
         "profile \"peek\": customer.camera_at_join is on, but only the customer can turn on \
          the customer's camera: it must be off"),
        (r#"[profiles.x]
            customer.accepted_sources = ["microphone", "camera_front"]
            customer.camera_control = "nobody""#,
         "profile \"x\": customer.accepted_sources contains camera_front but \
          customer.camera_control is nobody and customer.camera_at_join is off, so the camera \
          could never be on"),
        (r#"[profiles.x]
            merchant.accepted_sources = ["microphone"]"#,
         "profile \"x\": merchant.camera_at_join is on but merchant.accepted_sources has no \
          camera_rear or camera_front"),
        (r#"[profiles.x]
            customer.camera_caps.max_frame_rate = 0"#,
         "profile \"x\": customer.camera_caps.max_frame_rate must be between 1 and 120, got 0"),
        (r#"[profiles.x]
            merchant.screen_caps.max_width = 10000"#,
         "profile \"x\": merchant.screen_caps.max_width must be between 1 and 7680, got 10000"),
        (r#"[profiles.x]
            base = "hd-video""#,
         "profile \"x\": base \"hd-video\" is not a built-in profile (rear-camera-off, \
          merchant-video, audio-only)"),
        (r#"[profiles."Big Shop"]"#,
         "profile name \"Big Shop\" is invalid: use 1 to 64 characters from a-z, 0-9, '-' and '_'"),
        (r#"default_profile = "missing""#,
         "default profile \"missing\" is not defined (known: audio-only, merchant-video, \
          rear-camera-off)"),
        (r#"[profiles.audio-only]
            merchant.camera_at_join = "on""#,
         "profile \"audio-only\": merchant.camera_at_join is on but merchant.accepted_sources \
          has no camera_rear or camera_front"),
        (r#"[profiles.x]
            record_screen = true"#,
         "profile \"x\": record_screen is true but recording_allowed is false: set \
          recording_allowed = true, or record_screen = false"),
    ];
    for (text, message) in table {
        assert_eq!(load_err(text), message, "{text}");
    }
}

#[test]
fn the_first_invalid_profile_in_name_order_is_reported() {
    let err = load(
        r#"
        [profiles.b]
        customer.camera_at_join = "on"
        [profiles.a]
        customer.camera_caps.max_height = 0
        "#,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ProfileError::Invalid { ref profile, per_call_override: false, problem: ProfileProblem::CapOutOfRange { role: Role::Customer, value: 0, .. } }
                if profile == "a"
        ),
        "{err:?}"
    );
}

#[test]
fn malformed_tables_are_refused_by_the_parser() {
    #[rustfmt::skip]
    let table = [
        (r#"[profiles.x]
            customer.camera = "on""#, "unknown field `camera`"),
        (r#"[profiles.x]
            customer.accepted_sources = ["camera_back"]"#, "unknown variant `camera_back`"),
        (r#"[profiles.x]
            customer.accepted_sources = ["microphone", "microphone"]"#,
         "source microphone is listed twice"),
        (r#"[profiles.x]
            customer.camera_control = "merchant""#, "unknown variant `merchant`"),
        (r#"[profiles.x]
            customer.camera_caps.max_fps = 30"#, "unknown field `max_fps`"),
        (r#"[profiles.x]
            customer.camera_caps.max_frame_rate = -1"#, "invalid value"),
        (r#"[profiles.x]
            recording = true"#, "unknown field `recording`"),
    ];
    for (text, fragment) in table {
        let err = toml::from_str::<Config>(text).expect_err(text).to_string();
        assert!(err.contains(fragment), "{text}\n=> {err}");
    }
}

#[test]
fn resolving_a_profile_for_a_call() {
    let set = ProfileSet::builtin();
    let none = ProfileOverride::default();
    assert_eq!(
        set.resolve(None, &none).unwrap(),
        BuiltinProfile::RearCameraOff.profile()
    );
    assert_eq!(
        set.resolve(Some("audio-only"), &none).unwrap(),
        BuiltinProfile::AudioOnly.profile()
    );
    assert_eq!(
        set.resolve(Some("nope"), &none).unwrap_err().to_string(),
        "unknown profile \"nope\" (known: audio-only, merchant-video, rear-camera-off)"
    );

    let mut frame_rate = ProfileOverride::default();
    frame_rate.customer.camera_caps.max_frame_rate = Some(10);
    let p = set.resolve(Some("merchant-video"), &frame_rate).unwrap();
    assert_eq!(p.customer.camera_caps.max_frame_rate, 10);
    assert_eq!(p.customer.lenses(), SourceSet::CAMERAS);

    let mut peek = ProfileOverride::default();
    peek.customer.camera_at_join = Some(CameraAtJoin::On);
    assert_eq!(
        set.resolve(None, &peek).unwrap_err().to_string(),
        "profile \"rear-camera-off\" with the call's overrides: customer.camera_at_join is on, \
         but only the customer can turn on the customer's camera: it must be off"
    );
}

#[test]
fn an_override_can_come_from_toml_or_json_alike() {
    let o: ProfileOverride = toml::from_str(
        r#"
        recording_allowed = true
        record_screen = true
        customer.camera_caps.max_width = 640
        "#,
    )
    .unwrap();
    assert_eq!(o.recording_allowed, Some(true));
    assert_eq!(o.record_screen, Some(true));
    assert_eq!(o.customer.camera_caps.max_width, Some(640));
    assert!(o.merchant.is_empty());
}

#[test]
fn a_full_profile_round_trips_through_toml() {
    for builtin in BuiltinProfile::ALL {
        let profile = builtin.profile();
        let text = toml::to_string(&profile).unwrap();
        let back: Profile = toml::from_str(&text).unwrap();
        assert_eq!(back, profile, "{builtin}:\n{text}");
    }
}

#[test]
fn eligibility_rules_in_toml() {
    let config: Config = toml::from_str(
        r#"
        [eligibility]
        min_rating = 4.5
        min_reply_rate = 0.9
        on_ineligible = "refuse"
        "#,
    )
    .unwrap();
    let rules = config.eligibility;
    assert_eq!(rules.validate(), Ok(()));
    assert_eq!(rules.min_rating, 4.5);
    assert_eq!(rules.min_reply_rate, 0.9);
    assert!(rules.require_opt_in, "default");
    assert_eq!(rules.on_ineligible, OnIneligible::Refuse);

    let defaults: Config = toml::from_str("").unwrap();
    assert_eq!(defaults.eligibility, EligibilityRules::default());

    let err = toml::from_str::<Config>("[eligibility]\nmin_rating = \"high\"").unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
    let err = toml::from_str::<Config>("[eligibility]\nmax_rating = 5").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `max_rating`"),
        "{err}"
    );
}
