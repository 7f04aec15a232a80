//! Lifecycle: where a call is in its life, and what ends it.
//!
//! ```text
//! ringing ──answer──▶ answered ──both connected──▶ connected
//!    │                    │                            │
//!    ├─decline──▶ ended(declined)                       │
//!    ├─ring timeout──▶ ended(missed)                    │
//!    ├─hang up before answer──▶ ended(cancelled)        │
//!    └──────── hang up, limits, failures ──────────────┴──▶ ended(reason)
//! ```
//!
//! Pure: every transition takes `now`; [`Lifecycle::deadline`] says when a limit would end
//! the call so the engine can schedule one timer per call.

use std::time::{Duration, Instant};

use policy::Role;

use crate::event::{CallState, EndReason};

/// Time limits of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// A call not answered within this ends as missed.
    pub ring_timeout: Duration,
    /// A call ends this long after it was answered.
    pub max_duration: Duration,
    /// An answered call ends when no RTP arrived from anyone for this long.
    pub inactivity_timeout: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            ring_timeout: Duration::from_secs(45),
            max_duration: Duration::from_secs(2 * 60 * 60),
            inactivity_timeout: Duration::from_secs(60),
        }
    }
}

/// Per-call overrides of [`CallLimits`]; `None` keeps the configured value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLimitsOverride {
    /// See [`CallLimits::ring_timeout`].
    pub ring_timeout: Option<Duration>,
    /// See [`CallLimits::max_duration`].
    pub max_duration: Option<Duration>,
    /// See [`CallLimits::inactivity_timeout`].
    pub inactivity_timeout: Option<Duration>,
}

impl CallLimits {
    /// These limits with `o` applied.
    pub fn with(self, o: &CallLimitsOverride) -> CallLimits {
        CallLimits {
            ring_timeout: o.ring_timeout.unwrap_or(self.ring_timeout),
            max_duration: o.max_duration.unwrap_or(self.max_duration),
            inactivity_timeout: o.inactivity_timeout.unwrap_or(self.inactivity_timeout),
        }
    }

    /// The first limit that is zero, by name.
    pub fn zero_limit(&self) -> Option<&'static str> {
        [
            ("ring_timeout", self.ring_timeout),
            ("max_duration", self.max_duration),
            ("inactivity_timeout", self.inactivity_timeout),
        ]
        .into_iter()
        .find(|(_, d)| d.is_zero())
        .map(|(n, _)| n)
    }
}

/// A transition that the call's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// Only the side that did not initiate answers or declines.
    #[error("only the callee ({callee}) can answer or decline; {by} initiated the call")]
    NotCallee {
        /// Who tried.
        by: Role,
        /// Who may.
        callee: Role,
    },
    /// The call is past ringing.
    #[error("the call is {state}, not ringing")]
    NotRinging {
        /// Its state.
        state: &'static str,
    },
}

/// The lifecycle of one call.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    state: CallState,
    initiator: Role,
    limits: CallLimits,
    created_at: Instant,
    answered_at: Option<Instant>,
    ended_at: Option<Instant>,
}

impl Lifecycle {
    /// A call `initiator` started at `now`: ringing.
    pub fn new(initiator: Role, limits: CallLimits, now: Instant) -> Lifecycle {
        Lifecycle {
            state: CallState::Ringing,
            initiator,
            limits,
            created_at: now,
            answered_at: None,
            ended_at: None,
        }
    }

    /// The state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// Who started the call.
    pub fn initiator(&self) -> Role {
        self.initiator
    }

    /// The limits.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// When the call was created.
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// When it was answered.
    pub fn answered_at(&self) -> Option<Instant> {
        self.answered_at
    }

    /// Whether it ended.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, CallState::Ended(_))
    }

    /// Time from creation to the answer, if answered.
    pub fn answer_latency(&self) -> Option<Duration> {
        self.answered_at
            .map(|a| a.saturating_duration_since(self.created_at))
    }

    /// How long it rang: until answered, or until it ended unanswered.
    pub fn ring_duration(&self, now: Instant) -> Duration {
        let until = self.answered_at.or(self.ended_at).unwrap_or(now);
        until.saturating_duration_since(self.created_at)
    }

    /// The callee answers. `Ok(true)` when this answered the call, `Ok(false)` when it was
    /// already answered (answering twice is harmless).
    pub fn answer(&mut self, by: Role, now: Instant) -> Result<bool, LifecycleError> {
        match self.state {
            CallState::Ringing if by == self.initiator => Err(LifecycleError::NotCallee {
                by,
                callee: self.initiator.other(),
            }),
            CallState::Ringing => {
                self.state = CallState::Answered;
                self.answered_at = Some(now);
                Ok(true)
            }
            CallState::Answered | CallState::Connected => Ok(false),
            CallState::Ended(_) => Err(LifecycleError::NotRinging {
                state: self.state.as_str(),
            }),
        }
    }

    /// The callee declines: the call ends as declined.
    pub fn decline(&mut self, by: Role, now: Instant) -> Result<EndReason, LifecycleError> {
        match self.state {
            CallState::Ringing if by == self.initiator => Err(LifecycleError::NotCallee {
                by,
                callee: self.initiator.other(),
            }),
            CallState::Ringing => {
                self.end(EndReason::Declined, now);
                Ok(EndReason::Declined)
            }
            other => Err(LifecycleError::NotRinging {
                state: other.as_str(),
            }),
        }
    }

    /// Both participants are connected. Returns whether the state changed.
    pub fn connected(&mut self) -> bool {
        if self.state == CallState::Answered {
            self.state = CallState::Connected;
            return true;
        }
        false
    }

    /// Why a hang-up (EndCall, or a participant leaving) ends the call now: before the
    /// answer, the call is cancelled.
    pub fn hang_up_reason(&self, requested: EndReason) -> EndReason {
        match self.state {
            CallState::Ringing => EndReason::Cancelled,
            _ => requested,
        }
    }

    /// Ends the call (once; later calls keep the first reason).
    pub fn end(&mut self, reason: EndReason, now: Instant) -> bool {
        if self.is_ended() {
            return false;
        }
        self.state = CallState::Ended(reason);
        self.ended_at = Some(now);
        true
    }

    /// When a limit would end the call, and why, given the last media activity.
    pub fn deadline(&self, last_media: Option<Instant>) -> Option<(Instant, EndReason)> {
        match self.state {
            // A limit too large to add to an instant never fires: `None` for it.
            CallState::Ringing => self
                .created_at
                .checked_add(self.limits.ring_timeout)
                .map(|t| (t, EndReason::Missed)),
            CallState::Answered | CallState::Connected => {
                let answered = self.answered_at.unwrap_or(self.created_at);
                let max = answered
                    .checked_add(self.limits.max_duration)
                    .map(|t| (t, EndReason::MaxDuration));
                let active_since = last_media.map_or(answered, |t| t.max(answered));
                let idle = active_since
                    .checked_add(self.limits.inactivity_timeout)
                    .map(|t| (t, EndReason::Inactivity));
                match (idle, max) {
                    (Some(i), Some(m)) => Some(if i.0 < m.0 { i } else { m }),
                    (i, m) => i.or(m),
                }
            }
            CallState::Ended(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CallLimits {
        CallLimits {
            ring_timeout: Duration::from_secs(30),
            max_duration: Duration::from_secs(600),
            inactivity_timeout: Duration::from_secs(20),
        }
    }

    #[test]
    fn answer_then_connect_then_hang_up() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(Role::Merchant, limits(), t0);
        assert_eq!(
            l.answer(Role::Merchant, t0),
            Err(LifecycleError::NotCallee {
                by: Role::Merchant,
                callee: Role::Customer
            })
        );
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(l.answer(Role::Customer, t1), Ok(true));
        assert_eq!(l.answer(Role::Customer, t1), Ok(false));
        assert_eq!(l.answer_latency(), Some(Duration::from_secs(4)));
        assert!(l.connected());
        assert_eq!(l.state(), CallState::Connected);
        assert_eq!(
            l.hang_up_reason(EndReason::ParticipantLeft),
            EndReason::ParticipantLeft
        );
        assert!(l.end(EndReason::ParticipantLeft, t1 + Duration::from_secs(60)));
        assert!(!l.end(EndReason::Requested, t1 + Duration::from_secs(61)));
        assert_eq!(l.state(), CallState::Ended(EndReason::ParticipantLeft));
        assert_eq!(
            l.ring_duration(t1 + Duration::from_secs(99)),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn ringing_ends_missed_declined_or_cancelled() {
        let t0 = Instant::now();
        let l = Lifecycle::new(Role::Customer, limits(), t0);
        assert_eq!(
            l.deadline(None),
            Some((t0 + Duration::from_secs(30), EndReason::Missed))
        );
        assert_eq!(l.hang_up_reason(EndReason::Requested), EndReason::Cancelled);

        let mut d = l.clone();
        assert_eq!(d.decline(Role::Merchant, t0), Ok(EndReason::Declined));
        assert!(d.decline(Role::Merchant, t0).is_err());
        assert_eq!(d.deadline(None), None);
        assert_eq!(d.ring_duration(t0 + Duration::from_secs(9)), Duration::ZERO);
    }

    #[test]
    fn enormous_limits_never_fire_and_never_panic() {
        let t0 = Instant::now();
        let huge = CallLimits {
            ring_timeout: Duration::MAX,
            max_duration: Duration::MAX,
            inactivity_timeout: Duration::MAX,
        };
        let mut l = Lifecycle::new(Role::Merchant, huge, t0);
        assert_eq!(l.deadline(None), None);
        l.answer(Role::Customer, t0).unwrap();
        assert_eq!(l.deadline(Some(t0)), None);
    }

    #[test]
    fn limits_after_the_answer() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(Role::Merchant, limits(), t0);
        l.answer(Role::Customer, t0).unwrap();
        // No media at all: inactivity counts from the answer.
        assert_eq!(
            l.deadline(None),
            Some((t0 + Duration::from_secs(20), EndReason::Inactivity))
        );
        // Media keeps it alive, up to the maximum duration.
        let late = t0 + Duration::from_secs(590);
        assert_eq!(
            l.deadline(Some(late)),
            Some((t0 + Duration::from_secs(600), EndReason::MaxDuration))
        );
    }
}
