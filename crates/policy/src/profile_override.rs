//! ProfileOverride: single fields a call (or a config entry) changes on top of a named profile.
//!
//! Every field is optional; `None` keeps the base profile's value. The result is validated
//! as a whole ([`crate::ProfileSet::resolve`]), so an override cannot produce a profile that
//! config could not.

use crate::constraints::VideoCaps;
use crate::profile::{CameraAtJoin, CameraControl, Profile, RoleProfile};
use crate::role::Role;
use crate::source_set::SourceSet;

/// Optional replacements for the fields of a [`VideoCaps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapsOverride {
    /// Replaces [`VideoCaps::max_width`].
    pub max_width: Option<u32>,
    /// Replaces [`VideoCaps::max_height`].
    pub max_height: Option<u32>,
    /// Replaces [`VideoCaps::max_frame_rate`].
    pub max_frame_rate: Option<u32>,
}

impl CapsOverride {
    /// Whether no field is replaced.
    pub fn is_empty(&self) -> bool {
        *self == CapsOverride::default()
    }

    /// `base` with the replaced fields.
    pub fn apply(&self, base: VideoCaps) -> VideoCaps {
        VideoCaps {
            max_width: self.max_width.unwrap_or(base.max_width),
            max_height: self.max_height.unwrap_or(base.max_height),
            max_frame_rate: self.max_frame_rate.unwrap_or(base.max_frame_rate),
        }
    }
}

/// Optional replacements for the fields of a [`RoleProfile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleOverride {
    /// Replaces [`RoleProfile::accepted_sources`] (the whole list).
    pub accepted_sources: Option<SourceSet>,
    /// Replaces [`RoleProfile::camera_at_join`].
    pub camera_at_join: Option<CameraAtJoin>,
    /// Replaces [`RoleProfile::camera_control`].
    pub camera_control: Option<CameraControl>,
    /// Replaces fields of [`RoleProfile::camera_caps`].
    pub camera_caps: CapsOverride,
    /// Replaces fields of [`RoleProfile::screen_caps`].
    pub screen_caps: CapsOverride,
}

impl RoleOverride {
    /// Whether no field is replaced.
    pub fn is_empty(&self) -> bool {
        *self == RoleOverride::default()
    }

    /// `base` with the replaced fields.
    pub fn apply(&self, base: RoleProfile) -> RoleProfile {
        RoleProfile {
            accepted_sources: self.accepted_sources.unwrap_or(base.accepted_sources),
            camera_at_join: self.camera_at_join.unwrap_or(base.camera_at_join),
            camera_control: self.camera_control.unwrap_or(base.camera_control),
            camera_caps: self.camera_caps.apply(base.camera_caps),
            screen_caps: self.screen_caps.apply(base.screen_caps),
        }
    }
}

/// Optional replacements for the fields of a [`Profile`]: what CreateCall may send with a
/// profile name.
///
/// ```
/// use policy::{BuiltinProfile, ProfileOverride, Role};
///
/// let mut o = ProfileOverride::default();
/// o.role_mut(Role::Customer).camera_caps.max_frame_rate = Some(15);
/// let p = o.apply(&BuiltinProfile::RearCameraOff.profile());
/// assert_eq!(p.customer.camera_caps.max_frame_rate, 15);
/// assert_eq!(p.customer.camera_caps.max_width, 1280);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOverride {
    /// Replacements for the merchant's rules.
    pub merchant: RoleOverride,
    /// Replacements for the customer's rules.
    pub customer: RoleOverride,
    /// Replaces [`Profile::recording_allowed`].
    pub recording_allowed: Option<bool>,
    /// Replaces [`Profile::record_screen`].
    pub record_screen: Option<bool>,
}

impl ProfileOverride {
    /// Whether no field is replaced.
    pub fn is_empty(&self) -> bool {
        *self == ProfileOverride::default()
    }

    /// The replacements for `role`, mutably (to build an override field by field).
    pub fn role_mut(&mut self, role: Role) -> &mut RoleOverride {
        match role {
            Role::Merchant => &mut self.merchant,
            Role::Customer => &mut self.customer,
        }
    }

    /// `base` with the replaced fields. The result is not validated here: use
    /// [`crate::ProfileSet::resolve`], or [`Profile::validate`].
    pub fn apply(&self, base: &Profile) -> Profile {
        Profile {
            merchant: self.merchant.apply(base.merchant),
            customer: self.customer.apply(base.customer),
            recording_allowed: self.recording_allowed.unwrap_or(base.recording_allowed),
            record_screen: self.record_screen.unwrap_or(base.record_screen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::BuiltinProfile;

    #[test]
    fn empty_override_changes_nothing() {
        let o = ProfileOverride::default();
        assert!(o.is_empty());
        for b in BuiltinProfile::ALL {
            assert_eq!(o.apply(&b.profile()), b.profile());
        }
    }

    #[test]
    fn each_field_replaces_only_itself() {
        let base = BuiltinProfile::RearCameraOff.profile();
        let mut o = ProfileOverride {
            recording_allowed: Some(true),
            record_screen: Some(true),
            ..ProfileOverride::default()
        };
        o.merchant.camera_at_join = Some(CameraAtJoin::Off);
        o.customer.screen_caps.max_width = Some(640);
        assert!(!o.is_empty());
        let p = o.apply(&base);
        assert!(p.recording_allowed);
        assert!(p.record_screen);
        assert_eq!(p.merchant.camera_at_join, CameraAtJoin::Off);
        assert_eq!(p.merchant.accepted_sources, base.merchant.accepted_sources);
        assert_eq!(p.customer.screen_caps.max_width, 640);
        assert_eq!(
            p.customer.screen_caps.max_height,
            base.customer.screen_caps.max_height
        );
        assert_eq!(p.customer.camera_caps, base.customer.camera_caps);
    }
}
