//! Forwarder: the gate on a DownTrack. Decides, per packet, whether it goes out.
//!
//! Fail closed: a packet goes only if the policy grants its kind, it belongs to the selected
//! source, and (for video) forwarding started on a keyframe. Any pause (grant revoked,
//! source gone) makes the next start wait for a keyframe again and resynchronise the munger.

use crate::stats::DropReason;

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Forward,
    /// Drop it for this reason.
    Drop(DropReason),
    /// Drop it, and ask the source for a keyframe (forwarding waits for one).
    DropAndRequestKeyframe,
}

/// Per-DownTrack forwarding state.
#[derive(Debug, Clone)]
pub struct Forwarder {
    needs_keyframe: bool,
    source: Option<u32>,
    /// The layer the allocator wants; switched to on its next keyframe.
    target: Option<u32>,
    /// Paused for the downlink: nothing goes.
    paused: bool,
    was_granted: bool,
    /// Set when forwarding (re)starts: the munger must start a new mapping.
    restart: bool,
}

impl Forwarder {
    /// A forwarder; `video` forwarders start only on keyframes.
    pub fn new(video: bool) -> Self {
        Forwarder {
            needs_keyframe: video,
            source: None,
            target: None,
            paused: false,
            was_granted: false,
            restart: true,
        }
    }

    /// The SSRC being forwarded, if one is selected.
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// The layer the allocator wants (switched to on its next keyframe).
    pub fn target(&self) -> Option<u32> {
        self.target
    }

    /// Asks for another layer. Forwarding stays on the current one until a keyframe of the
    /// target arrives, then switches (the munger keeps the output continuous).
    pub fn set_target(&mut self, ssrc: u32) {
        self.target = Some(ssrc);
    }

    /// Asks for a lower layer because the downlink is congested: the current layer stops at
    /// once (every packet of it makes the queue worse, and the audio behind it suffers) and
    /// forwarding restarts on the target's first keyframe.
    pub fn switch_down_now(&mut self, ssrc: u32, video: bool) {
        self.target = Some(ssrc);
        if self.source != Some(ssrc) {
            self.source = None;
            self.pause(video);
        }
    }

    /// Pauses or resumes forwarding for the downlink. Resuming starts on a keyframe.
    pub fn set_paused(&mut self, paused: bool, video: bool) {
        if self.paused != paused {
            self.paused = paused;
            if !paused {
                self.pause(video);
            }
        }
    }

    /// Whether forwarding is paused for the downlink.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Decides for a packet of `ssrc`. `granted` is the policy's answer for this media now;
    /// `video` says keyframes matter; `is_keyframe` whether this packet starts one.
    pub fn decide(&mut self, ssrc: u32, granted: bool, video: bool, is_keyframe: bool) -> Verdict {
        if !granted {
            if self.was_granted {
                self.was_granted = false;
                self.pause(video);
            }
            return Verdict::Drop(DropReason::PolicyDenied);
        }
        self.was_granted = true;
        if self.paused {
            return Verdict::Drop(DropReason::BandwidthPaused);
        }
        match (self.source, self.target) {
            (None, Some(t)) if t != ssrc => return Verdict::Drop(DropReason::LayerNotSelected),
            (None, _) => {
                self.source = Some(ssrc);
                self.restart = true;
            }
            (Some(s), _) if s == ssrc => {}
            (Some(_), Some(t)) if t == ssrc => {
                // The target layer: switch on its keyframe, keep the current one until then.
                if !video {
                    self.source = Some(ssrc);
                    self.restart = true;
                } else if is_keyframe {
                    self.source = Some(ssrc);
                    self.restart = true;
                    self.needs_keyframe = false;
                } else {
                    return Verdict::DropAndRequestKeyframe;
                }
            }
            (Some(_), _) => return Verdict::Drop(DropReason::LayerNotSelected),
        }
        if video && self.needs_keyframe {
            if !is_keyframe {
                return Verdict::DropAndRequestKeyframe;
            }
            self.needs_keyframe = false;
        }
        Verdict::Forward
    }

    /// Whether the munger must start a new mapping before this packet; clears the flag.
    pub fn take_restart(&mut self) -> bool {
        std::mem::take(&mut self.restart)
    }

    /// The selected source went away: pick again, restart on a keyframe.
    pub fn source_removed(&mut self, ssrc: u32, video: bool) {
        if self.target == Some(ssrc) {
            self.target = None;
        }
        if self.source == Some(ssrc) {
            self.source = None;
            self.pause(video);
        }
    }

    fn pause(&mut self, video: bool) {
        self.needs_keyframe = video;
        self.restart = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_starts_on_a_keyframe_and_restarts_on_one_after_a_revoke() {
        let mut f = Forwarder::new(true);
        assert_eq!(
            f.decide(1, false, true, true),
            Verdict::Drop(DropReason::PolicyDenied)
        );
        assert_eq!(
            f.decide(1, true, true, false),
            Verdict::DropAndRequestKeyframe
        );
        assert_eq!(f.decide(1, true, true, true), Verdict::Forward);
        assert!(f.take_restart());
        assert_eq!(f.decide(1, true, true, false), Verdict::Forward);
        assert!(!f.take_restart());
        // Revoked: the very next packet is dropped.
        assert_eq!(
            f.decide(1, false, true, true),
            Verdict::Drop(DropReason::PolicyDenied)
        );
        // Granted again: waits for a keyframe, then restarts the munger.
        assert_eq!(
            f.decide(1, true, true, false),
            Verdict::DropAndRequestKeyframe
        );
        assert_eq!(f.decide(1, true, true, true), Verdict::Forward);
        assert!(f.take_restart());
    }

    #[test]
    fn a_layer_switch_waits_for_the_target_keyframe() {
        let mut f = Forwarder::new(true);
        assert_eq!(f.decide(1, true, true, true), Verdict::Forward);
        f.take_restart();
        f.set_target(2);
        // The target's delta frames are dropped (and a keyframe asked for); layer 1 goes on.
        assert_eq!(
            f.decide(2, true, true, false),
            Verdict::DropAndRequestKeyframe
        );
        assert_eq!(f.decide(1, true, true, false), Verdict::Forward);
        assert!(!f.take_restart());
        assert_eq!(f.decide(2, true, true, true), Verdict::Forward);
        assert!(f.take_restart());
        assert_eq!(
            f.decide(1, true, true, false),
            Verdict::Drop(DropReason::LayerNotSelected)
        );
        // Paused for bandwidth: nothing; resumed: on a keyframe again.
        f.set_paused(true, true);
        assert_eq!(
            f.decide(2, true, true, true),
            Verdict::Drop(DropReason::BandwidthPaused)
        );
        f.set_paused(false, true);
        assert_eq!(
            f.decide(2, true, true, false),
            Verdict::DropAndRequestKeyframe
        );
        assert_eq!(f.decide(2, true, true, true), Verdict::Forward);
    }

    #[test]
    fn a_congested_downgrade_stops_the_current_layer_at_once() {
        let mut f = Forwarder::new(true);
        assert_eq!(f.decide(3, true, true, true), Verdict::Forward);
        f.switch_down_now(1, true);
        assert_eq!(
            f.decide(3, true, true, false),
            Verdict::Drop(DropReason::LayerNotSelected)
        );
        assert_eq!(
            f.decide(1, true, true, false),
            Verdict::DropAndRequestKeyframe
        );
        assert_eq!(f.decide(1, true, true, true), Verdict::Forward);
        assert!(f.take_restart());
    }

    #[test]
    fn other_layers_are_not_forwarded_and_audio_needs_no_keyframe() {
        let mut f = Forwarder::new(false);
        assert_eq!(f.decide(5, true, false, false), Verdict::Forward);
        assert_eq!(
            f.decide(6, true, false, false),
            Verdict::Drop(DropReason::LayerNotSelected)
        );
        f.source_removed(5, false);
        assert_eq!(f.decide(6, true, false, false), Verdict::Forward);
        assert_eq!(f.source(), Some(6));
    }
}
