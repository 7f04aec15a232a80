//! LinkParams: what one direction of an emulated link does to datagrams (rate, queue, loss,
//! delay, jitter), and LinkChange, a partial update of it, with their text forms.
//!
//! The text form is a list of `key=value` tokens separated by spaces or commas, as the
//! `shopcall-netem` binary and [`Schedule`](crate::Schedule) phases take it:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `rate` | `3mbit`, `300kbit`, `64000` (bit/s), `off` | bottleneck rate; `off` = unlimited |
//! | `queue` | `64kb`, `1500b`, `500ms` | drop-tail queue limit, in bytes or in time at the rate |
//! | `loss` | `10%`, `0.1` | random loss probability |
//! | `delay` | `75ms`, `1s` | one-way propagation delay |
//! | `jitter` | `10ms` | each packet's delay is `delay ± jitter` (uniform) |
//! | `reorder` | `on`, `off` (a bare `reorder` = on) | whether jitter may reorder packets |
//! | `overhead` | `28` | bytes per packet counted against the rate (IPv4 + UDP = 28) |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Per-packet bytes below UDP that a real link also carries: IPv4 (20) + UDP (8).
pub const IPV4_UDP_OVERHEAD: usize = 28;

/// Smallest queue a time-based limit resolves to: one full-size Ethernet frame.
pub const MIN_QUEUE_BYTES: usize = 1500;

/// How much the bottleneck queue holds before it drops arrivals (drop-tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// At most this many datagram bytes queued (the one being serialized included).
    Bytes(usize),
    /// As many bytes as the rate drains in this time (at least [`MIN_QUEUE_BYTES`]); follows
    /// rate changes.
    Delay(Duration),
}

impl QueueLimit {
    /// The limit in bytes at `rate_bps` (`None` = unlimited rate: the queue never fills).
    pub fn bytes_at(self, rate_bps: Option<u64>) -> usize {
        match (self, rate_bps) {
            (QueueLimit::Bytes(b), _) => b,
            (QueueLimit::Delay(_), None) => usize::MAX,
            (QueueLimit::Delay(d), Some(rate)) => {
                let bytes = u128::from(rate) * d.as_micros() / 8 / 1_000_000;
                usize::try_from(bytes)
                    .unwrap_or(usize::MAX)
                    .max(MIN_QUEUE_BYTES)
            }
        }
    }
}

impl Default for QueueLimit {
    fn default() -> Self {
        QueueLimit::Delay(Duration::from_millis(500))
    }
}

/// What one direction of a link does to the datagrams crossing it.
///
/// Order of effects: random loss first (a lost datagram takes no capacity), then the
/// bottleneck (a FIFO drained at `rate_bps`, drop-tail at `queue`), then propagation
/// `delay ± jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// Bottleneck rate, bits per second, `None` = unlimited (no queue builds up).
    pub rate_bps: Option<u64>,
    /// Queue limit of the bottleneck.
    pub queue: QueueLimit,
    /// Bytes added to every datagram when counting it against the rate (not the queue).
    pub overhead_bytes: usize,
    /// Probability that a datagram is lost, 0.0..=1.0.
    pub loss: f64,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Uniform jitter: each datagram's propagation delay is drawn from `delay ± jitter`
    /// (never below zero).
    pub jitter: Duration,
    /// Let jitter reorder datagrams. Off (the default): a datagram never overtakes the one
    /// before it, so jitter shows up as bunching, as on most real paths.
    pub reorder: bool,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams::clean()
    }
}

impl LinkParams {
    /// A perfect link: unlimited rate, no loss, no delay.
    pub const fn clean() -> Self {
        LinkParams {
            rate_bps: None,
            queue: QueueLimit::Delay(Duration::from_millis(500)),
            overhead_bytes: IPV4_UDP_OVERHEAD,
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: false,
        }
    }

    /// With a bottleneck of `bps` bits per second.
    pub fn rate(mut self, bps: u64) -> Self {
        self.rate_bps = Some(bps);
        self
    }

    /// Without a bottleneck.
    pub fn unlimited(mut self) -> Self {
        self.rate_bps = None;
        self
    }

    /// With this queue limit.
    pub fn queue(mut self, queue: QueueLimit) -> Self {
        self.queue = queue;
        self
    }

    /// With random loss `fraction` (0.0..=1.0; clamped).
    pub fn loss(mut self, fraction: f64) -> Self {
        self.loss = clamp_fraction(fraction);
        self
    }

    /// With this one-way delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// With this jitter (see [`LinkParams::jitter`](LinkParams#structfield.jitter)).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether jitter may reorder.
    pub fn reorder(mut self, reorder: bool) -> Self {
        self.reorder = reorder;
        self
    }

    /// With this per-packet overhead.
    pub fn overhead(mut self, bytes: usize) -> Self {
        self.overhead_bytes = bytes;
        self
    }

    /// The queue limit in bytes at the current rate.
    pub fn queue_bytes(&self) -> usize {
        self.queue.bytes_at(self.rate_bps)
    }
}

fn clamp_fraction(f: f64) -> f64 {
    if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) }
}

/// A partial update of [`LinkParams`]: only the fields that are `Some` change.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkChange {
    /// New rate (`Some(None)` = unlimited).
    pub rate_bps: Option<Option<u64>>,
    /// New queue limit.
    pub queue: Option<QueueLimit>,
    /// New overhead.
    pub overhead_bytes: Option<usize>,
    /// New loss fraction.
    pub loss: Option<f64>,
    /// New delay.
    pub delay: Option<Duration>,
    /// New jitter.
    pub jitter: Option<Duration>,
    /// New reorder setting.
    pub reorder: Option<bool>,
}

impl LinkChange {
    /// Applies the change.
    pub fn apply_to(&self, p: &mut LinkParams) {
        if let Some(rate) = self.rate_bps {
            p.rate_bps = rate;
        }
        if let Some(q) = self.queue {
            p.queue = q;
        }
        if let Some(o) = self.overhead_bytes {
            p.overhead_bytes = o;
        }
        if let Some(l) = self.loss {
            p.loss = clamp_fraction(l);
        }
        if let Some(d) = self.delay {
            p.delay = d;
        }
        if let Some(j) = self.jitter {
            p.jitter = j;
        }
        if let Some(r) = self.reorder {
            p.reorder = r;
        }
    }

    /// The change that sets every field to `p`.
    pub fn to(p: LinkParams) -> Self {
        LinkChange {
            rate_bps: Some(p.rate_bps),
            queue: Some(p.queue),
            overhead_bytes: Some(p.overhead_bytes),
            loss: Some(p.loss),
            delay: Some(p.delay),
            jitter: Some(p.jitter),
            reorder: Some(p.reorder),
        }
    }
}

/// A text form that did not parse; says which token and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{token:?}: {reason}")]
pub struct ParseError {
    /// The offending token.
    pub token: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn err(token: &str, reason: &'static str) -> ParseError {
    ParseError {
        token: token.to_owned(),
        reason,
    }
}

/// Parses `75ms`, `1.5s`, `250us`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    let s = s.trim();
    let (num, scale_ns) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix("ns") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e9)
    } else if s == "0" {
        ("0", 1.0)
    } else {
        return Err(err(s, "a duration needs a unit: ns, us, ms or s"));
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| err(s, "not a number before the unit"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(err(s, "a duration must be finite and not negative"));
    }
    Ok(Duration::from_nanos((v * scale_ns).round() as u64))
}

/// Parses `3mbit`, `300kbit`, `1.5mbps` (bits!), `64000`, `2gbit`.
pub fn parse_rate(s: &str) -> Result<u64, ParseError> {
    let lower = s.trim().to_ascii_lowercase();
    let body = lower
        .strip_suffix("bit")
        .or_else(|| lower.strip_suffix("bps"))
        .or_else(|| lower.strip_suffix("b/s"))
        .unwrap_or(&lower);
    let (num, scale) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1e3),
        Some('m') => (&body[..body.len() - 1], 1e6),
        Some('g') => (&body[..body.len() - 1], 1e9),
        _ => (body, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| err(s, "a rate is a number with an optional k/m/g and bit"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(err(
            s,
            "a rate must be positive (use rate=off for unlimited)",
        ));
    }
    Ok((v * scale).round() as u64)
}

/// Parses `64kb`, `1500b`, `1mb` (bytes), or a duration for a time-based limit.
pub fn parse_queue(s: &str) -> Result<QueueLimit, ParseError> {
    let lower = s.trim().to_ascii_lowercase();
    if let Ok(d) = parse_duration(&lower) {
        return Ok(QueueLimit::Delay(d));
    }
    let (num, scale) = if let Some(n) = lower.strip_suffix("kb") {
        (n, 1e3)
    } else if let Some(n) = lower.strip_suffix("mb") {
        (n, 1e6)
    } else if let Some(n) = lower.strip_suffix('b') {
        (n, 1.0)
    } else {
        (lower.as_str(), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| err(s, "a queue limit is bytes (64kb, 1500b) or a time (500ms)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(err(s, "a queue limit must not be negative"));
    }
    Ok(QueueLimit::Bytes((v * scale).round() as usize))
}

/// Parses `10%` or `0.1`.
pub fn parse_fraction(s: &str) -> Result<f64, ParseError> {
    let t = s.trim();
    let v = if let Some(p) = t.strip_suffix('%') {
        p.trim()
            .parse::<f64>()
            .map_err(|_| err(s, "not a percentage"))?
            / 100.0
    } else {
        t.parse::<f64>()
            .map_err(|_| err(s, "a loss is a percentage (10%) or a fraction (0.1)"))?
    };
    if !(0.0..=1.0).contains(&v) {
        return Err(err(s, "a loss must be between 0% and 100%"));
    }
    Ok(v)
}

fn parse_bool(s: &str) -> Result<bool, ParseError> {
    match s.trim() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(err(s, "expected on or off")),
    }
}

impl FromStr for LinkChange {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut change = LinkChange::default();
        for token in s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
        {
            let (key, value) = match token.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (token, None),
            };
            let need = || value.ok_or_else(|| err(token, "expected key=value"));
            match key {
                "rate" => {
                    let v = need()?;
                    change.rate_bps = Some(match v {
                        "off" | "none" | "unlimited" => None,
                        v => Some(parse_rate(v)?),
                    });
                }
                "queue" => change.queue = Some(parse_queue(need()?)?),
                "loss" => change.loss = Some(parse_fraction(need()?)?),
                "delay" => change.delay = Some(parse_duration(need()?)?),
                "jitter" => change.jitter = Some(parse_duration(need()?)?),
                "reorder" => change.reorder = Some(value.map_or(Ok(true), parse_bool)?),
                "overhead" => {
                    change.overhead_bytes = Some(
                        need()?
                            .parse()
                            .map_err(|_| err(token, "overhead is a byte count"))?,
                    );
                }
                _ => {
                    return Err(err(
                        token,
                        "unknown key (rate, queue, loss, delay, jitter, reorder, overhead)",
                    ));
                }
            }
        }
        Ok(change)
    }
}

impl FromStr for LinkParams {
    type Err = ParseError;

    /// A clean link with the given keys changed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = LinkParams::clean();
        s.parse::<LinkChange>()?.apply_to(&mut p);
        Ok(p)
    }
}

/// Formats a rate like `3mbit`, `300kbit`, `64123bit`.
pub fn format_rate(bps: u64) -> String {
    if bps >= 1_000_000 && bps % 1_000 == 0 {
        let m = bps as f64 / 1e6;
        format!("{m}mbit")
    } else if bps >= 1_000 && bps % 1_000 == 0 {
        format!("{}kbit", bps / 1000)
    } else {
        format!("{bps}bit")
    }
}

impl fmt::Display for LinkParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rate_bps {
            Some(r) => write!(f, "rate={}", format_rate(r))?,
            None => f.write_str("rate=off")?,
        }
        match self.queue {
            QueueLimit::Bytes(b) => write!(f, " queue={b}b")?,
            QueueLimit::Delay(d) => write!(f, " queue={}ms", d.as_millis())?,
        }
        write!(
            f,
            " loss={}% delay={}ms jitter={}ms reorder={} overhead={}",
            self.loss * 100.0,
            self.delay.as_millis(),
            self.jitter.as_millis(),
            if self.reorder { "on" } else { "off" },
            self.overhead_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_rate("3mbit"), Ok(3_000_000));
        assert_eq!(parse_rate("300kbit"), Ok(300_000));
        assert_eq!(parse_rate("1.5Mbps"), Ok(1_500_000));
        assert_eq!(parse_rate("64000"), Ok(64_000));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_duration("75ms"), Ok(Duration::from_millis(75)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("75").is_err());
        assert_eq!(parse_fraction("10%"), Ok(0.1));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("150%").is_err());
        assert_eq!(parse_queue("64kb"), Ok(QueueLimit::Bytes(64_000)));
        assert_eq!(
            parse_queue("500ms"),
            Ok(QueueLimit::Delay(Duration::from_millis(500)))
        );
    }

    #[test]
    fn parses_and_prints_params() {
        let p: LinkParams = "rate=300kbit, queue=250ms loss=10% delay=75ms jitter=5ms reorder"
            .parse()
            .unwrap();
        assert_eq!(p.rate_bps, Some(300_000));
        assert_eq!(p.queue, QueueLimit::Delay(Duration::from_millis(250)));
        assert!((p.loss - 0.1).abs() < 1e-12);
        assert_eq!(p.delay, Duration::from_millis(75));
        assert_eq!(p.jitter, Duration::from_millis(5));
        assert!(p.reorder);
        let again: LinkParams = p.to_string().parse().unwrap();
        assert_eq!(again, p);
        assert!("speed=1".parse::<LinkParams>().is_err());
        assert!("rate".parse::<LinkParams>().is_err());
    }

    #[test]
    fn change_overlays_only_its_keys() {
        let mut p = LinkParams::clean()
            .rate(3_000_000)
            .delay(Duration::from_millis(20));
        "rate=60kbit"
            .parse::<LinkChange>()
            .unwrap()
            .apply_to(&mut p);
        assert_eq!(p.rate_bps, Some(60_000));
        assert_eq!(p.delay, Duration::from_millis(20));
        "rate=off".parse::<LinkChange>().unwrap().apply_to(&mut p);
        assert_eq!(p.rate_bps, None);
    }

    #[test]
    fn time_based_queue_follows_the_rate() {
        let q = QueueLimit::Delay(Duration::from_millis(500));
        assert_eq!(q.bytes_at(Some(3_000_000)), 187_500);
        assert_eq!(q.bytes_at(Some(8_000)), MIN_QUEUE_BYTES);
        assert_eq!(q.bytes_at(None), usize::MAX);
        assert_eq!(QueueLimit::Bytes(10).bytes_at(None), 10);
    }
}
