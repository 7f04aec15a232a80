//! SourceSet: a set of [`Source`]s in one byte, `Copy`, with O(1) membership.
//!
//! Used for the sources a profile accepts and for the sources currently granted, so the
//! per-packet gate is a bit test. In config it is a list of source names.

use std::fmt;

use crate::role::MediaKind;
use crate::source::Source;

/// A set of [`Source`]s, stored as bits: copying and testing it never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SourceSet(u8);

const fn bit(source: Source) -> u8 {
    match source {
        Source::Microphone => 1,
        Source::CameraRear => 1 << 1,
        Source::CameraFront => 1 << 2,
        Source::Screen => 1 << 3,
    }
}

impl SourceSet {
    /// No source.
    pub const EMPTY: SourceSet = SourceSet(0);
    /// Every source.
    pub const ALL: SourceSet = SourceSet::of(&Source::ALL);
    /// Both camera lenses.
    pub const CAMERAS: SourceSet = SourceSet::of(&[Source::CameraRear, Source::CameraFront]);
    /// Every source of kind audio.
    pub const AUDIO: SourceSet = SourceSet::of(&[Source::Microphone]);
    /// Every source of kind video (both cameras and the screen).
    pub const VIDEO: SourceSet =
        SourceSet::of(&[Source::CameraRear, Source::CameraFront, Source::Screen]);

    /// The set holding exactly `sources` (duplicates are harmless here).
    pub const fn of(sources: &[Source]) -> SourceSet {
        let mut bits = 0;
        let mut i = 0;
        while i < sources.len() {
            bits |= bit(sources[i]);
            i += 1;
        }
        SourceSet(bits)
    }

    /// The set of every source of `kind`.
    pub const fn of_kind(kind: MediaKind) -> SourceSet {
        match kind {
            MediaKind::Audio => SourceSet::AUDIO,
            MediaKind::Video => SourceSet::VIDEO,
        }
    }

    /// Whether `source` is in the set.
    pub const fn contains(self, source: Source) -> bool {
        self.0 & bit(source) != 0
    }

    /// Whether the two sets share a source.
    pub const fn intersects(self, other: SourceSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set holds no source.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many sources the set holds.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The set with `source` added.
    #[must_use]
    pub const fn with(self, source: Source) -> SourceSet {
        SourceSet(self.0 | bit(source))
    }

    /// The set with `source` removed.
    #[must_use]
    pub const fn without(self, source: Source) -> SourceSet {
        SourceSet(self.0 & !bit(source))
    }

    /// Sources in either set.
    #[must_use]
    pub const fn union(self, other: SourceSet) -> SourceSet {
        SourceSet(self.0 | other.0)
    }

    /// Sources in both sets.
    #[must_use]
    pub const fn intersection(self, other: SourceSet) -> SourceSet {
        SourceSet(self.0 & other.0)
    }

    /// Sources in `self` but not in `other`.
    #[must_use]
    pub const fn difference(self, other: SourceSet) -> SourceSet {
        SourceSet(self.0 & !other.0)
    }

    /// Whether every source of `self` is in `other`.
    pub const fn is_subset(self, other: SourceSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The camera lenses in the set.
    #[must_use]
    pub const fn cameras(self) -> SourceSet {
        self.intersection(SourceSet::CAMERAS)
    }

    /// The sources, in [`Source::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Source> + Clone {
        Source::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Source> for SourceSet {
    fn from_iter<I: IntoIterator<Item = Source>>(iter: I) -> Self {
        iter.into_iter().fold(SourceSet::EMPTY, SourceSet::with)
    }
}

impl From<Source> for SourceSet {
    fn from(source: Source) -> Self {
        SourceSet::EMPTY.with(source)
    }
}

impl fmt::Debug for SourceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Comma-separated names in [`Source::ALL`] order, or `none` for the empty set.
impl fmt::Display for SourceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, source) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(source.as_str())?;
        }
        Ok(())
    }
}

/// Serialised as a list of source names, in [`Source::ALL`] order.
impl serde::Serialize for SourceSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// Deserialised from a list of source names; a name listed twice is an error, since it is
/// almost always a typo for another source.
impl<'de> serde::Deserialize<'de> for SourceSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SourceSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of sources")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SourceSet, A::Error> {
                let mut set = SourceSet::EMPTY;
                while let Some(source) = seq.next_element::<Source>()? {
                    if set.contains(source) {
                        return Err(serde::de::Error::custom(format_args!(
                            "source {source} is listed twice"
                        )));
                    }
                    set = set.with(source);
                }
                Ok(set)
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_set() -> impl Strategy<Value = SourceSet> {
        proptest::sample::subsequence(Source::ALL.to_vec(), 0..=4)
            .prop_map(|v| v.into_iter().collect())
    }

    #[test]
    fn constants_hold_what_they_say() {
        assert_eq!(SourceSet::ALL.len(), 4);
        assert_eq!(
            SourceSet::AUDIO.union(SourceSet::VIDEO),
            SourceSet::ALL,
            "every source is audio or video"
        );
        assert!(!SourceSet::AUDIO.intersects(SourceSet::VIDEO));
        for source in Source::ALL {
            assert!(
                SourceSet::of_kind(source.kind()).contains(source),
                "{source}"
            );
            assert_eq!(SourceSet::CAMERAS.contains(source), source.is_camera());
        }
    }

    #[test]
    fn display_and_debug() {
        assert_eq!(SourceSet::EMPTY.to_string(), "none");
        assert_eq!(
            SourceSet::of(&[Source::Screen, Source::Microphone]).to_string(),
            "microphone, screen"
        );
        assert_eq!(
            format!("{:?}", SourceSet::CAMERAS),
            "{CameraRear, CameraFront}"
        );
    }

    #[derive(serde::Deserialize, serde::Serialize, Debug)]
    struct Doc {
        s: SourceSet,
    }

    #[test]
    fn toml_round_trip_and_duplicates() {
        let doc: Doc = toml::from_str(r#"s = ["screen", "microphone"]"#).unwrap();
        assert_eq!(doc.s, SourceSet::of(&[Source::Microphone, Source::Screen]));
        assert_eq!(
            toml::to_string(&doc).unwrap().trim(),
            r#"s = ["microphone", "screen"]"#
        );
        let empty: Doc = toml::from_str("s = []").unwrap();
        assert!(empty.s.is_empty());

        let err = toml::from_str::<Doc>(r#"s = ["screen", "screen"]"#).unwrap_err();
        assert!(
            err.to_string().contains("source screen is listed twice"),
            "{err}"
        );
        let err = toml::from_str::<Doc>(r#"s = ["camera_back"]"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `camera_back`"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn set_algebra_matches_membership(a in any_set(), b in any_set()) {
            for s in Source::ALL {
                prop_assert_eq!(a.union(b).contains(s), a.contains(s) || b.contains(s));
                prop_assert_eq!(a.intersection(b).contains(s), a.contains(s) && b.contains(s));
                prop_assert_eq!(a.difference(b).contains(s), a.contains(s) && !b.contains(s));
                prop_assert!(!a.without(s).contains(s));
                prop_assert!(a.with(s).contains(s));
            }
            prop_assert_eq!(a.is_subset(b), a.iter().all(|s| b.contains(s)));
            prop_assert_eq!(a.intersects(b), !a.intersection(b).is_empty());
            prop_assert_eq!(a.iter().count(), a.len());
            prop_assert_eq!(a.iter().collect::<SourceSet>(), a);
        }
    }
}
