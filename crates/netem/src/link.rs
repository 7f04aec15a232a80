//! Link: one direction of an emulated path, as a sans-IO state machine.
//!
//! Datagrams go in with [`Link::push`] at their arrival time; [`Link::poll`] hands each one
//! back at the time it would arrive at the far end, and [`Link::poll_timeout`] says when to
//! look next. The link never reads a clock: every call takes `now`, so a test can drive it
//! with a synthetic `Instant` and the relay with the real one.
//!
//! ```text
//!  push ─▶ random loss ─▶ bottleneck FIFO ─────────▶ delay line ─▶ poll
//!            │            (drained at rate_bps,       (delay ± jitter,
//!            ▼             drop-tail at queue)         order kept unless reorder)
//!      dropped: loss           │
//!                              ▼ dropped: queue full
//! ```
//!
//! Times are computed, not observed: a datagram's serialization ends at
//! `max(arrival, previous end) + (len + overhead) * 8 / rate`, whatever time the caller
//! happens to poll at. A driver that wakes late delivers late, but never drifts: over any
//! interval the bottleneck carries exactly `rate_bps`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::params::{LinkChange, LinkParams};

/// Why a link dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Random loss (`LinkParams::loss`).
    RandomLoss,
    /// The bottleneck queue was full (drop-tail).
    QueueFull,
}

impl DropReason {
    /// Every reason, for iteration.
    pub const ALL: [DropReason; 2] = [DropReason::RandomLoss, DropReason::QueueFull];

    /// A short name for logs and CSV headers.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::RandomLoss => "random_loss",
            DropReason::QueueFull => "queue_full",
        }
    }
}

/// What happened to a pushed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; it will come out of [`Link::poll`].
    Accepted,
    /// Dropped, and why.
    Dropped(DropReason),
}

/// Counters of one link direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams pushed.
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Datagrams handed out by `poll`.
    pub delivered: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// Dropped by random loss.
    pub dropped_random_loss: u64,
    /// Dropped because the bottleneck queue was full.
    pub dropped_queue_full: u64,
    /// Datagrams in the bottleneck queue now.
    pub queued: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Datagrams past the bottleneck, in propagation.
    pub in_flight: u64,
    /// Time spent in the bottleneck (waiting + serialization) by datagrams that left it.
    pub queue_delay: DelaySummary,
}

impl LinkStats {
    /// Dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::RandomLoss => self.dropped_random_loss,
            DropReason::QueueFull => self.dropped_queue_full,
        }
    }

    /// Dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_random_loss + self.dropped_queue_full
    }
}

/// Count, sum and maximum of a delay, plus the latest sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelaySummary {
    /// Samples.
    pub count: u64,
    /// Sum of samples.
    pub sum: Duration,
    /// Largest sample.
    pub max: Duration,
    /// The most recent sample.
    pub last: Duration,
}

impl DelaySummary {
    fn record(&mut self, d: Duration) {
        self.count += 1;
        self.sum = self.sum.saturating_add(d);
        self.max = self.max.max(d);
        self.last = d;
    }

    /// Mean, if there are samples.
    pub fn mean(&self) -> Option<Duration> {
        u32::try_from(self.count)
            .ok()
            .filter(|&c| c > 0)
            .map(|c| self.sum / c)
    }
}

/// A datagram waiting for (or in) serialization.
struct Queued<T> {
    item: T,
    len: usize,
    arrived: Instant,
    /// When its serialization ends; set once it reaches the head of the queue.
    done_at: Option<Instant>,
}

/// A datagram in propagation.
struct InFlight<T> {
    deliver_at: Instant,
    seq: u64,
    len: usize,
    item: T,
}

impl<T> PartialEq for InFlight<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deliver_at, self.seq) == (other.deliver_at, other.seq)
    }
}
impl<T> Eq for InFlight<T> {}
impl<T> PartialOrd for InFlight<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for InFlight<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deliver_at, self.seq).cmp(&(other.deliver_at, other.seq))
    }
}

/// Time to put `bytes` on a wire of `rate_bps`.
fn serialization_time(bytes: usize, rate_bps: Option<u64>) -> Duration {
    match rate_bps {
        None | Some(0) => Duration::ZERO,
        Some(rate) => {
            let nanos = (bytes as u128) * 8 * 1_000_000_000 / u128::from(rate);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
    }
}

/// One direction of an emulated link. `T` is whatever the caller needs back with each
/// datagram (the bytes, and where they go).
pub struct Link<T> {
    params: LinkParams,
    rng: SmallRng,
    queue: VecDeque<Queued<T>>,
    queued_bytes: usize,
    /// When the serializer finished its last datagram.
    line_free_at: Option<Instant>,
    delay_line: BinaryHeap<Reverse<InFlight<T>>>,
    /// Latest delivery time handed out (keeps order when `reorder` is off).
    last_deliver_at: Option<Instant>,
    next_seq: u64,
    /// Latest `now` seen; earlier ones are treated as this (inputs from several readers).
    now: Option<Instant>,
    stats: LinkStats,
}

impl<T> Link<T> {
    /// A link with these parameters; `seed` makes loss and jitter repeatable.
    pub fn new(params: LinkParams, seed: u64) -> Self {
        Link {
            params,
            rng: SmallRng::seed_from_u64(seed),
            queue: VecDeque::new(),
            queued_bytes: 0,
            line_free_at: None,
            delay_line: BinaryHeap::new(),
            last_deliver_at: None,
            next_seq: 0,
            now: None,
            stats: LinkStats::default(),
        }
    }

    /// The current parameters.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// A copy of the counters.
    pub fn stats(&self) -> LinkStats {
        let mut s = self.stats;
        s.queued = self.queue.len() as u64;
        s.queued_bytes = self.queued_bytes as u64;
        s.in_flight = self.delay_line.len() as u64;
        s
    }

    fn clock(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |prev| prev.max(now));
        self.now = Some(now);
        now
    }

    /// Offers a datagram of `len` bytes that arrived at `now`.
    pub fn push(&mut self, now: Instant, item: T, len: usize) -> Verdict {
        let now = self.clock(now);
        self.advance(now);
        self.stats.received += 1;
        self.stats.received_bytes += len as u64;
        if self.params.loss > 0.0 && self.rng.random::<f64>() < self.params.loss {
            self.stats.dropped_random_loss += 1;
            return Verdict::Dropped(DropReason::RandomLoss);
        }
        if self.params.rate_bps.is_none() && self.queue.is_empty() {
            self.send_into_delay_line(now, item, len);
            return Verdict::Accepted;
        }
        // Drop-tail; an empty queue always takes one datagram, however small the limit.
        if !self.queue.is_empty()
            && self.queued_bytes.saturating_add(len) > self.params.queue_bytes()
        {
            self.stats.dropped_queue_full += 1;
            return Verdict::Dropped(DropReason::QueueFull);
        }
        self.queued_bytes += len;
        self.queue.push_back(Queued {
            item,
            len,
            arrived: now,
            done_at: None,
        });
        self.start_head();
        Verdict::Accepted
    }

    /// Replaces the parameters from `now` on. A datagram in serialization finishes its
    /// remaining bits at the new rate; queued ones stay queued (nothing is dropped by a
    /// smaller limit, only later arrivals are).
    pub fn set_params(&mut self, now: Instant, params: LinkParams) {
        let now = self.clock(now);
        self.advance(now);
        let old_rate = self.params.rate_bps;
        self.params = params;
        if old_rate != params.rate_bps
            && let Some(head) = self.queue.front_mut()
            && let Some(done) = head.done_at
        {
            let remaining = done.saturating_duration_since(now);
            let rescaled = match (old_rate, params.rate_bps) {
                (Some(old), Some(new)) if new > 0 => {
                    let nanos = remaining.as_nanos() * u128::from(old) / u128::from(new);
                    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
                }
                _ => Duration::ZERO,
            };
            head.done_at = Some(now + rescaled);
        }
        self.advance(now);
    }

    /// Applies a partial change from `now` on.
    pub fn change(&mut self, now: Instant, change: &LinkChange) {
        let mut p = self.params;
        change.apply_to(&mut p);
        self.set_params(now, p);
    }

    /// The next datagram due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        let now = self.clock(now);
        self.advance(now);
        let due = self
            .delay_line
            .peek()
            .is_some_and(|Reverse(f)| f.deliver_at <= now);
        if !due {
            return None;
        }
        let Reverse(f) = self.delay_line.pop()?;
        self.stats.delivered += 1;
        self.stats.delivered_bytes += f.len as u64;
        Some(f.item)
    }

    /// When something next happens (a serialization ends or a datagram is due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let head = self.queue.front().and_then(|q| q.done_at);
        let due = self.delay_line.peek().map(|Reverse(f)| f.deliver_at);
        match (head, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Gives the head of the queue its serialization end time, if it has none yet.
    fn start_head(&mut self) {
        let rate = self.params.rate_bps;
        let overhead = self.params.overhead_bytes;
        let line_free_at = self.line_free_at;
        if let Some(head) = self.queue.front_mut()
            && head.done_at.is_none()
        {
            let start = line_free_at.map_or(head.arrived, |free| free.max(head.arrived));
            head.done_at = Some(start + serialization_time(head.len + overhead, rate));
        }
    }

    /// Moves every datagram whose serialization ended by `now` into the delay line.
    fn advance(&mut self, now: Instant) {
        loop {
            self.start_head();
            let done = match self.queue.front() {
                Some(Queued {
                    done_at: Some(done),
                    ..
                }) if *done <= now => *done,
                _ => return,
            };
            let Some(q) = self.queue.pop_front() else {
                return;
            };
            self.queued_bytes -= q.len;
            self.line_free_at = Some(done);
            self.stats
                .queue_delay
                .record(done.saturating_duration_since(q.arrived));
            self.send_into_delay_line(done, q.item, q.len);
        }
    }

    fn send_into_delay_line(&mut self, departed: Instant, item: T, len: usize) {
        let delay = self.propagation_delay();
        let mut deliver_at = departed + delay;
        if !self.params.reorder
            && let Some(last) = self.last_deliver_at
        {
            deliver_at = deliver_at.max(last);
        }
        self.last_deliver_at = Some(
            self.last_deliver_at
                .map_or(deliver_at, |l| l.max(deliver_at)),
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        self.delay_line.push(Reverse(InFlight {
            deliver_at,
            seq,
            len,
            item,
        }));
    }

    fn propagation_delay(&mut self) -> Duration {
        let p = &self.params;
        if p.jitter.is_zero() {
            return p.delay;
        }
        let j = p.jitter.as_nanos() as f64;
        let offset = (self.rng.random::<f64>() * 2.0 - 1.0) * j;
        let d = p.delay.as_nanos() as f64 + offset;
        Duration::from_nanos(d.max(0.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::QueueLimit;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Pushes `n` datagrams of `len` bytes every `gap` and collects (index, delivery time).
    fn run(link: &mut Link<u32>, n: u32, len: usize, gap: Duration) -> Vec<(u32, Duration)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut t = t0;
        for i in 0..n {
            let at = t0 + gap * i;
            // Deliver everything due before this arrival.
            while let Some(next) = link.poll_timeout().filter(|&d| d <= at) {
                t = t.max(next);
                while let Some(x) = link.poll(t) {
                    out.push((x, t - t0));
                }
            }
            link.push(at, i, len);
        }
        while let Some(next) = link.poll_timeout() {
            t = t.max(next);
            while let Some(x) = link.poll(t) {
                out.push((x, t - t0));
            }
        }
        out
    }

    #[test]
    fn clean_link_delivers_at_once() {
        let mut link = Link::new(LinkParams::clean(), 1);
        let out = run(&mut link, 10, 1000, ms(1));
        assert_eq!(out.len(), 10);
        for (i, (x, at)) in out.iter().enumerate() {
            assert_eq!(*x as usize, i);
            assert_eq!(*at, ms(i as u64));
        }
    }

    #[test]
    fn delay_is_added() {
        let mut link = Link::new(LinkParams::clean().delay(ms(75)), 1);
        let out = run(&mut link, 3, 100, ms(10));
        assert_eq!(out, vec![(0, ms(75)), (1, ms(85)), (2, ms(95))]);
    }

    #[test]
    fn rate_limit_serializes_back_to_back() {
        // 1000 bytes + 0 overhead at 800 kbit/s = 10 ms each.
        let p = LinkParams::clean()
            .rate(800_000)
            .overhead(0)
            .queue(QueueLimit::Bytes(1_000_000));
        let mut link = Link::new(p, 1);
        let out = run(&mut link, 100, 1000, Duration::ZERO);
        assert_eq!(out.len(), 100);
        for (i, (_, at)) in out.iter().enumerate() {
            assert_eq!(*at, ms(10 * (i as u64 + 1)));
        }
        let s = link.stats();
        assert_eq!(s.queue_delay.max, ms(1000));
        assert_eq!(s.queue_delay.count, 100);
    }

    #[test]
    fn overhead_counts_against_the_rate() {
        let p = LinkParams::clean()
            .rate(800_000)
            .overhead(250)
            .queue(QueueLimit::Bytes(1_000_000));
        let mut link = Link::new(p, 1);
        let out = run(&mut link, 2, 750, Duration::ZERO);
        assert_eq!(out, vec![(0, ms(10)), (1, ms(20))]);
    }

    #[test]
    fn drop_tail_when_the_queue_is_full() {
        let p = LinkParams::clean()
            .rate(800_000)
            .overhead(0)
            .queue(QueueLimit::Bytes(5_000));
        let mut link = Link::new(p, 1);
        let out = run(&mut link, 20, 1000, Duration::ZERO);
        assert_eq!(out.len(), 5);
        assert_eq!(
            out.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        let s = link.stats();
        assert_eq!(s.dropped(DropReason::QueueFull), 15);
        assert_eq!(s.received, 20);
        assert_eq!(s.delivered, 5);
    }

    #[test]
    fn sustained_overload_carries_exactly_the_rate() {
        // Offer 2 Mbit/s into 300 kbit/s for 10 s (1200-byte datagrams every 4.8 ms).
        let p = LinkParams::clean()
            .rate(300_000)
            .overhead(28)
            .queue(QueueLimit::Delay(ms(200)));
        let mut link = Link::new(p, 1);
        let n = 2084;
        let out = run(&mut link, n, 1200, Duration::from_micros(4800));
        let last = out.last().unwrap().1;
        let bits = out.len() as f64 * (1200.0 + 28.0) * 8.0;
        let rate = bits / last.as_secs_f64();
        assert!((rate - 300_000.0).abs() < 300.0, "rate {rate}");
        let s = link.stats();
        assert!(s.dropped(DropReason::QueueFull) > 1500, "{s:?}");
        // A time-limited queue bounds the queueing delay (plus one datagram's serialization).
        assert!(s.queue_delay.max <= ms(200) + ms(33), "{s:?}");
    }

    #[test]
    fn loss_is_random_seeded_and_about_right() {
        let p = LinkParams::clean().loss(0.1);
        let mut a = Link::new(p, 7);
        let mut b = Link::new(p, 7);
        let t = Instant::now();
        let va: Vec<_> = (0..10_000).map(|i| a.push(t, i, 100)).collect();
        let vb: Vec<_> = (0..10_000).map(|i| b.push(t, i, 100)).collect();
        assert_eq!(va, vb, "same seed, same losses");
        let lost = a.stats().dropped(DropReason::RandomLoss);
        assert!((900..=1100).contains(&lost), "lost {lost} of 10000");
    }

    #[test]
    fn jitter_without_reorder_keeps_order() {
        let p = LinkParams::clean().delay(ms(50)).jitter(ms(20));
        let mut link = Link::new(p, 3);
        let out = run(&mut link, 500, 100, ms(2));
        let order: Vec<u32> = out.iter().map(|(x, _)| *x).collect();
        assert_eq!(order, (0..500).collect::<Vec<_>>());
        for (i, (_, at)) in out.iter().enumerate() {
            let sent = ms(2 * i as u64);
            let d = *at - sent;
            assert!(d >= ms(30) && d <= ms(70) + ms(40), "datagram {i}: {d:?}");
        }
    }

    #[test]
    fn jitter_with_reorder_reorders_within_bounds() {
        let p = LinkParams::clean()
            .delay(ms(50))
            .jitter(ms(20))
            .reorder(true);
        let mut link = Link::new(p, 3);
        let out = run(&mut link, 500, 100, ms(2));
        assert_eq!(out.len(), 500);
        let inversions = out.windows(2).filter(|w| w[0].0 > w[1].0).count();
        assert!(inversions > 10, "expected reordering, got {inversions}");
        for (x, at) in &out {
            let d = *at - ms(2 * u64::from(*x));
            assert!(d >= ms(30) && d <= ms(70), "datagram {x}: {d:?}");
        }
    }

    #[test]
    fn rate_change_rescales_the_datagram_in_serialization() {
        // 1000 bytes at 80 kbit/s = 100 ms; after 50 ms the rate doubles: done at 75 ms.
        let p = LinkParams::clean()
            .rate(80_000)
            .overhead(0)
            .queue(QueueLimit::Bytes(100_000));
        let mut link = Link::new(p, 1);
        let t0 = Instant::now();
        link.push(t0, 1u32, 1000);
        link.push(t0, 2u32, 1000);
        link.set_params(t0 + ms(50), p.rate(160_000));
        assert_eq!(link.poll_timeout(), Some(t0 + ms(75)));
        assert_eq!(link.poll(t0 + ms(75)), Some(1));
        // The second one runs entirely at the new rate: 50 ms.
        assert_eq!(link.poll_timeout(), Some(t0 + ms(125)));
        assert_eq!(link.poll(t0 + ms(124)), None);
        assert_eq!(link.poll(t0 + ms(125)), Some(2));
        assert_eq!(link.poll_timeout(), None);
    }

    #[test]
    fn late_polling_does_not_drift() {
        let p = LinkParams::clean()
            .rate(800_000)
            .overhead(0)
            .queue(QueueLimit::Bytes(1_000_000));
        let mut link = Link::new(p, 1);
        let t0 = Instant::now();
        for i in 0..10u32 {
            link.push(t0, i, 1000);
        }
        // One poll long after everything finished: all ten come out, and queue delays are
        // the computed ones (10, 20, ... 100 ms), not the poll time.
        let mut got = Vec::new();
        while let Some(x) = link.poll(t0 + ms(500)) {
            got.push(x);
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(link.stats().queue_delay.max, ms(100));
    }

    #[test]
    fn earlier_now_is_treated_as_the_latest() {
        let mut link = Link::new(LinkParams::clean().delay(ms(10)), 1);
        let t0 = Instant::now();
        link.push(t0 + ms(5), 1u32, 10);
        link.push(t0, 2u32, 10); // a reader's timestamp from just before
        assert_eq!(link.poll(t0 + ms(15)), Some(1));
        assert_eq!(link.poll(t0 + ms(15)), Some(2));
    }
}
