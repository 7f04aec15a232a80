//! Timeline: a track's RTP timestamps mapped onto the recording's clock (milliseconds since
//! the recording started).
//!
//! The first packet of a track (and the first after its sender's SSRC changed, when a
//! participant rejoins) is anchored at its arrival time. Later packets follow their RTP
//! timestamps at the codec's clock rate, so a camera turned off for ten seconds leaves a
//! ten-second gap: no frame is invented, the gap is just a gap. If the RTP clock and the
//! arrival clock disagree by more than [`MAX_SKEW_MS`] (more than [`RESUME_SKEW_MS`] after a
//! silence of [`SILENCE_MS`]), the sender's timestamps jumped: the track is anchored again.

/// Largest disagreement between RTP time and arrival time while media flows.
pub const MAX_SKEW_MS: i64 = 1000;
/// Largest disagreement when media resumes after a silence.
pub const RESUME_SKEW_MS: i64 = 250;
/// A gap in arrivals this long counts as a silence.
pub const SILENCE_MS: i64 = 500;

/// One track's mapping from RTP time to recording time.
#[derive(Debug, Clone)]
pub struct Timeline {
    clock_rate: i64,
    ssrc: Option<u32>,
    /// RTP timestamp (unwrapped) and recording time of the anchor.
    anchor: (i64, i64),
    last_rtp: u32,
    last_ext: i64,
    last_arrival_ms: i64,
}

impl Timeline {
    /// A timeline for a codec clocked at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Timeline {
        Timeline {
            clock_rate: i64::from(clock_rate.max(1)),
            ssrc: None,
            anchor: (0, 0),
            last_rtp: 0,
            last_ext: 0,
            last_arrival_ms: 0,
        }
    }

    /// The recording time, in ms, of RTP timestamp `rtp` on `ssrc` that arrived at
    /// `arrival_ms`. Returns whether the track was (re)anchored, too.
    pub fn map(&mut self, ssrc: u32, rtp: u32, arrival_ms: i64) -> (i64, bool) {
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            return (self.anchor_at(rtp, i64::from(rtp), arrival_ms), true);
        }
        let ext = self.last_ext + i64::from(rtp.wrapping_sub(self.last_rtp) as i32);
        let ms = self.anchor.1 + (ext - self.anchor.0) * 1000 / self.clock_rate;
        let silent = arrival_ms - self.last_arrival_ms >= SILENCE_MS;
        let limit = if silent { RESUME_SKEW_MS } else { MAX_SKEW_MS };
        if (ms - arrival_ms).abs() > limit {
            return (self.anchor_at(rtp, ext, arrival_ms), true);
        }
        if ext > self.last_ext {
            self.last_ext = ext;
            self.last_rtp = rtp;
        }
        self.last_arrival_ms = self.last_arrival_ms.max(arrival_ms);
        (ms, false)
    }

    fn anchor_at(&mut self, rtp: u32, ext: i64, arrival_ms: i64) -> i64 {
        self.anchor = (ext, arrival_ms);
        self.last_rtp = rtp;
        self.last_ext = ext;
        self.last_arrival_ms = arrival_ms;
        arrival_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rtp_time_and_keeps_gaps() {
        let mut t = Timeline::new(90_000);
        assert_eq!(t.map(1, 1000, 200), (200, true));
        // 30 fps, arriving with jitter: RTP time wins.
        assert_eq!(t.map(1, 4000, 260).0, 233);
        assert_eq!(t.map(1, 7000, 250).0, 266);
        // Camera off for 10 s: the sender's clock kept running, so does the file's.
        assert_eq!(t.map(1, 7000 + 900_000, 10_266).0, 10_266);
    }

    #[test]
    fn wraps_around() {
        let mut t = Timeline::new(48_000);
        t.map(7, u32::MAX - 959, 0);
        assert_eq!(t.map(7, 0, 20).0, 20);
        assert_eq!(t.map(7, 960, 40).0, 40);
    }

    #[test]
    fn reanchors_on_a_jump_or_a_new_ssrc() {
        let mut t = Timeline::new(90_000);
        t.map(1, 0, 0);
        t.map(1, 3000, 33);
        // Timestamps stood still during a 5 s pause: re-anchored on arrival.
        assert_eq!(t.map(1, 6000, 5000), (5000, true));
        assert_eq!(t.map(1, 9000, 5033).0, 5033);
        // Rejoined with a new SSRC and a random timestamp.
        assert_eq!(t.map(2, 123_456, 9000), (9000, true));
    }
}
