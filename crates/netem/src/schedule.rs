//! Schedule: a script of link changes over time (phases), for both directions of a relay.
//!
//! A phase's text form is `<at> <direction> <changes>`, e.g. `10s down rate=300kbit` or
//! `30s both rate=3mbit loss=0%`: at `at` after the relay started, apply the changes
//! ([`LinkChange`], only the keys given) to the `up` link (client to upstream), the `down`
//! link (upstream to client) or `both`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::params::{LinkChange, ParseError, parse_duration};

/// The directions of a relay, seen from its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to upstream (the client's uplink).
    Up,
    /// Upstream to client (the client's downlink).
    Down,
}

impl Direction {
    /// A short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which directions a change applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Directions {
    /// Only client to upstream.
    Up,
    /// Only upstream to client.
    Down,
    /// Both.
    Both,
}

impl Directions {
    /// Whether `d` is included.
    pub fn includes(self, d: Direction) -> bool {
        matches!(
            (self, d),
            (Directions::Both, _)
                | (Directions::Up, Direction::Up)
                | (Directions::Down, Direction::Down)
        )
    }
}

/// One step of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Time after the relay started.
    pub at: Duration,
    /// Where it applies.
    pub directions: Directions,
    /// What changes.
    pub change: LinkChange,
}

impl Phase {
    /// A phase.
    pub fn new(at: Duration, directions: Directions, change: LinkChange) -> Self {
        Phase {
            at,
            directions,
            change,
        }
    }
}

impl FromStr for Phase {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mut parts = s.splitn(3, char::is_whitespace);
        let at = parse_duration(parts.next().unwrap_or_default())?;
        let dir = parts.next().unwrap_or_default();
        let directions = match dir {
            "up" => Directions::Up,
            "down" => Directions::Down,
            "both" => Directions::Both,
            _ => {
                return Err(ParseError {
                    token: dir.to_owned(),
                    reason: "a phase is `<at> <up|down|both> <key=value...>`",
                });
            }
        };
        let change = parts.next().unwrap_or_default().parse()?;
        Ok(Phase {
            at,
            directions,
            change,
        })
    }
}

/// Phases in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    phases: Vec<Phase>,
}

impl Schedule {
    /// A schedule of these phases (sorted by time; equal times keep their order).
    pub fn new(mut phases: Vec<Phase>) -> Self {
        phases.sort_by_key(|p| p.at);
        Schedule { phases }
    }

    /// The phases, in time order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }
}

impl FromIterator<Phase> for Schedule {
    fn from_iter<I: IntoIterator<Item = Phase>>(iter: I) -> Self {
        Schedule::new(iter.into_iter().collect())
    }
}

impl FromStr for Schedule {
    type Err = ParseError;

    /// Phases separated by `;`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_phases_in_time_order() {
        let s: Schedule = "20s both rate=3mbit; 10s down rate=300kbit loss=1%"
            .parse()
            .unwrap();
        let p = s.phases();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].at, Duration::from_secs(10));
        assert_eq!(p[0].directions, Directions::Down);
        assert_eq!(p[0].change.rate_bps, Some(Some(300_000)));
        assert_eq!(p[1].directions, Directions::Both);
        assert!("10s sideways rate=1mbit".parse::<Phase>().is_err());
        assert!("soon down rate=1mbit".parse::<Phase>().is_err());
        assert!(Directions::Both.includes(Direction::Up));
        assert!(!Directions::Down.includes(Direction::Up));
    }
}
