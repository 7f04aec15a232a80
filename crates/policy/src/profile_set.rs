//! ProfileSet: every profile a daemon knows (built-ins plus config), looked up by name.
//!
//! Config shape (TOML; each `[profiles.NAME]` table is a [`ProfileDef`]):
//!
//! ```toml
//! default_profile = "showroom"          # optional; else "rear-camera-off"
//!
//! [profiles.showroom]                   # a new profile...
//! base = "merchant-video"               # ...starting from a built-in
//! customer.accepted_sources = ["microphone", "camera_rear"]
//! customer.camera_caps.max_frame_rate = 15
//!
//! [profiles.audio-only]                 # no base: changes the built-in of the same name
//! recording_allowed = true
//! ```
//!
//! A table's `base` must name a built-in profile. Without `base`, the base is the built-in
//! of the same name if there is one, else the default built-in (`rear-camera-off`, the most
//! private one). Every resulting profile is validated when the set is built, so a daemon
//! with a bad profile refuses to start, with a message naming the profile and the keys.

use std::collections::BTreeMap;

use crate::builtin::BuiltinProfile;
use crate::error::ProfileError;
use crate::profile::Profile;
use crate::profile_override::{ProfileOverride, RoleOverride};

/// The longest accepted profile name.
pub const NAME_MAX_LEN: usize = 64;

/// One `[profiles.NAME]` table of the daemon's config: a base and the fields it changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileDef {
    /// The built-in profile to start from; see the module docs for the default.
    pub base: Option<String>,
    /// Replacements for the merchant's rules.
    pub merchant: RoleOverride,
    /// Replacements for the customer's rules.
    pub customer: RoleOverride,
    /// Replaces [`Profile::recording_allowed`].
    pub recording_allowed: Option<bool>,
    /// Replaces [`Profile::record_screen`].
    pub record_screen: Option<bool>,
}

impl ProfileDef {
    /// The fields this table changes, as an override.
    pub fn overrides(&self) -> ProfileOverride {
        ProfileOverride {
            merchant: self.merchant,
            customer: self.customer,
            recording_allowed: self.recording_allowed,
            record_screen: self.record_screen,
        }
    }
}

/// The profiles a daemon knows, by name, with a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSet {
    profiles: BTreeMap<String, Profile>,
    default: String,
}

impl Default for ProfileSet {
    /// The built-ins only; `rear-camera-off` is the default.
    fn default() -> Self {
        ProfileSet::builtin()
    }
}

impl ProfileSet {
    /// The built-in profiles only; `rear-camera-off` is the default.
    pub fn builtin() -> ProfileSet {
        ProfileSet {
            profiles: BuiltinProfile::ALL
                .into_iter()
                .map(|b| (b.name().to_owned(), b.profile()))
                .collect(),
            default: BuiltinProfile::DEFAULT.name().to_owned(),
        }
    }

    /// The built-ins plus the configured `[profiles.NAME]` tables, with `default` (or
    /// `rear-camera-off`) as the default. Every profile is validated; the first error (in
    /// name order) is returned.
    pub fn from_config(
        defs: &BTreeMap<String, ProfileDef>,
        default: Option<&str>,
    ) -> Result<ProfileSet, ProfileError> {
        let mut set = ProfileSet::builtin();
        for (name, def) in defs {
            if !valid_name(name) {
                return Err(ProfileError::InvalidName { name: name.clone() });
            }
            let base = match &def.base {
                Some(base) => {
                    BuiltinProfile::from_name(base).ok_or_else(|| ProfileError::UnknownBase {
                        profile: name.clone(),
                        base: base.clone(),
                    })?
                }
                None => BuiltinProfile::from_name(name).unwrap_or(BuiltinProfile::DEFAULT),
            };
            let profile = def.overrides().apply(&base.profile());
            profile
                .validate()
                .map_err(|problem| ProfileError::Invalid {
                    profile: name.clone(),
                    per_call_override: false,
                    problem,
                })?;
            set.profiles.insert(name.clone(), profile);
        }
        if let Some(default) = default {
            if !set.profiles.contains_key(default) {
                return Err(ProfileError::UnknownDefault {
                    name: default.to_owned(),
                    known: set.names().map(str::to_owned).collect(),
                });
            }
            default.clone_into(&mut set.default);
        }
        Ok(set)
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Result<&Profile, ProfileError> {
        self.profiles
            .get(name)
            .ok_or_else(|| ProfileError::UnknownProfile {
                name: name.to_owned(),
                known: self.names().map(str::to_owned).collect(),
            })
    }

    /// The default profile's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The default profile.
    pub fn default_profile(&self) -> &Profile {
        self.profiles
            .get(&self.default)
            .expect("the default name is checked to exist when the set is built")
    }

    /// The profile for a new call: the named one (or the default), with the call's
    /// `overrides` applied, validated.
    pub fn resolve(
        &self,
        name: Option<&str>,
        overrides: &ProfileOverride,
    ) -> Result<Profile, ProfileError> {
        let name = name.unwrap_or(&self.default);
        let base = self.get(name)?;
        if overrides.is_empty() {
            return Ok(*base);
        }
        let profile = overrides.apply(base);
        profile
            .validate()
            .map_err(|problem| ProfileError::Invalid {
                profile: name.to_owned(),
                per_call_override: true,
                problem,
            })?;
        Ok(profile)
    }

    /// Every profile name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// Every profile with its name, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.profiles.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "rear-camera-off", "x_1", &"a".repeat(64)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "with space", "dot.ted", "ü", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn builtin_set() {
        let set = ProfileSet::default();
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            ["audio-only", "merchant-video", "rear-camera-off"]
        );
        assert_eq!(set.default_name(), "rear-camera-off");
        assert_eq!(
            *set.default_profile(),
            BuiltinProfile::RearCameraOff.profile()
        );
        assert_eq!(set.iter().count(), 3);
    }
}
