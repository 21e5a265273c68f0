//! Rate limits per message kind (token buckets) and the ban list.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::PeerId;
use super::config::KindLimit;
use super::wire::{KIND_PING, PING_BURST, PING_PER_SECOND};

/// Bucket arithmetic is in billionths of a frame, so that refill by elapsed
/// nanoseconds times frames per second is exact in integers.
const ONE_FRAME: u128 = 1_000_000_000;
/// Most credit a receive stall can grant above the bucket size, in seconds of
/// the sustained rate: a stall longer than this is not forgiven beyond it.
const MAX_STALL_CREDIT_SECS: u128 = 10;
/// Entries per ban table (peers, IPs). When full, expired entries go first,
/// then the one closest to expiry: a flood of bans cannot grow memory.
const MAX_BANS: usize = 16_384;

/// A token bucket: `burst` frames at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: u128,
    capacity: u128,
    per_second: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let capacity = u128::from(burst.max(1)) * ONE_FRAME;
        Self { tokens: capacity, capacity, per_second: u128::from(per_second.max(1)), last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = now;
        // Credit from a stall may sit above capacity; refill never takes it away.
        if self.tokens < self.capacity {
            self.tokens = (self.tokens + elapsed.saturating_mul(self.per_second)).min(self.capacity);
        }
    }

    /// Takes one frame's token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= ONE_FRAME {
            self.tokens -= ONE_FRAME;
            true
        } else {
            false
        }
    }

    /// Takes a token and returns `None`, or returns how long until one is due.
    pub(crate) fn take_or_wait(&mut self, now: Instant) -> Option<Duration> {
        if self.try_take(now) {
            return None;
        }
        let missing = ONE_FRAME - self.tokens;
        let nanos = missing.div_ceil(self.per_second);
        Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// Refills for a stall from `from` to `to` without the bucket's cap:
    /// frames a peer sent while we were not reading arrive at once later, and
    /// must not count as a burst. Up to `from` the refill is the usual one.
    pub(crate) fn credit(&mut self, from: Instant, to: Instant) {
        self.refill(from);
        let ceiling = self.capacity + MAX_STALL_CREDIT_SECS * self.per_second * ONE_FRAME;
        let stall = to.saturating_duration_since(from).as_nanos();
        self.tokens = (self.tokens + stall.saturating_mul(self.per_second)).min(ceiling.max(self.tokens));
        self.last = self.last.max(to);
    }
}

/// One token bucket per kind of a connection direction.
#[derive(Debug)]
pub(crate) struct RateLimits {
    /// `slot[kind]` indexes `buckets`; `u8::MAX` means unlimited here.
    slot: [u8; 256],
    buckets: Vec<TokenBucket>,
}

impl RateLimits {
    /// What a receiver enforces: the configured limits, and pings.
    pub(crate) fn inbound(kinds: &[KindLimit], now: Instant) -> Self {
        let ping = KindLimit::new(KIND_PING, "ping", 0, PING_PER_SECOND, PING_BURST);
        Self::build(kinds.iter().copied().chain([ping]), 1, now)
    }

    /// What a sender paces itself to: the same rates with half the burst, so
    /// that jitter on the way (up to half a burst of frames bunching up) does
    /// not push an honest sender over the receiver's limit.
    pub(crate) fn outbound(kinds: &[KindLimit], now: Instant) -> Self {
        Self::build(kinds.iter().copied(), 2, now)
    }

    fn build(kinds: impl Iterator<Item = KindLimit>, burst_divisor: u32, now: Instant) -> Self {
        let mut slot = [u8::MAX; 256];
        let mut buckets = Vec::new();
        for k in kinds {
            // At most 241 kinds (the engine's 240 and ping), so the index fits below u8::MAX.
            slot[usize::from(k.kind)] = buckets.len() as u8;
            buckets.push(TokenBucket::new(k.per_second, (k.burst / burst_divisor).max(1), now));
        }
        Self { slot, buckets }
    }

    fn bucket(&mut self, kind: u8) -> Option<&mut TokenBucket> {
        self.buckets.get_mut(usize::from(self.slot[usize::from(kind)]))
    }

    /// Whether a frame of `kind` arriving now is within its limit.
    pub(crate) fn admit(&mut self, kind: u8, now: Instant) -> bool {
        self.bucket(kind).is_none_or(|b| b.try_take(now))
    }

    /// `None` if a frame of `kind` may go now (its token is taken), else how
    /// long to wait.
    pub(crate) fn pace(&mut self, kind: u8, now: Instant) -> Option<Duration> {
        self.bucket(kind).and_then(|b| b.take_or_wait(now))
    }

    /// Forgives a stall of the reader (see [`TokenBucket::credit`]).
    pub(crate) fn credit(&mut self, from: Instant, to: Instant) {
        for b in &mut self.buckets {
            b.credit(from, to);
        }
    }
}

/// Why and until when something is banned.
#[derive(Debug, Clone)]
pub(crate) struct Ban {
    pub(crate) until: Instant,
    pub(crate) reason: String,
}

impl Ban {
    /// The reason a refused peer is told.
    pub(crate) fn describe(&self, now: Instant) -> String {
        let left = self.until.saturating_duration_since(now).as_secs().max(1);
        format!("banned for another {left} s: {}", self.reason)
    }
}

/// Banned peers and IPs, with expiry. Bounded by [`MAX_BANS`] per table.
#[derive(Debug, Default)]
pub(crate) struct BanList {
    peers: HashMap<PeerId, Ban>,
    ips: HashMap<IpAddr, Ban>,
}

impl BanList {
    pub(crate) fn ban_peer(&mut self, peer: PeerId, ban: Ban, now: Instant) {
        insert_bounded(&mut self.peers, peer, ban, now);
    }

    pub(crate) fn ban_ip(&mut self, ip: IpAddr, ban: Ban, now: Instant) {
        insert_bounded(&mut self.ips, ip.to_canonical(), ban, now);
    }

    pub(crate) fn peer(&mut self, peer: &PeerId, now: Instant) -> Option<Ban> {
        lookup(&mut self.peers, peer, now)
    }

    pub(crate) fn ip(&mut self, ip: IpAddr, now: Instant) -> Option<Ban> {
        lookup(&mut self.ips, &ip.to_canonical(), now)
    }
}

fn lookup<K: Eq + Hash>(table: &mut HashMap<K, Ban>, key: &K, now: Instant) -> Option<Ban> {
    match table.get(key) {
        Some(ban) if ban.until > now => Some(ban.clone()),
        Some(_) => {
            table.remove(key);
            None
        }
        None => None,
    }
}

fn insert_bounded<K: Eq + Hash + Clone>(table: &mut HashMap<K, Ban>, key: K, ban: Ban, now: Instant) {
    if table.len() >= MAX_BANS && !table.contains_key(&key) {
        table.retain(|_, b| b.until > now);
        if table.len() >= MAX_BANS {
            let soonest = table.iter().min_by_key(|(_, b)| b.until).map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                table.remove(&k);
            }
        }
    }
    // A longer ban replaces a shorter one, never the reverse.
    match table.get(&key) {
        Some(old) if old.until >= ban.until => {}
        _ => {
            table.insert(key, ban);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!((0..3).all(|_| b.try_take(t0)), "a full bucket allows the burst");
        assert!(!b.try_take(t0), "and nothing more at once");
        assert!(b.try_take(t0 + Duration::from_millis(100)), "one token per 1/rate");
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        assert_eq!(b.take_or_wait(t0 + Duration::from_millis(150)), Some(Duration::from_millis(50)));
        // A long idle period refills to the burst only.
        let later = t0 + Duration::from_secs(100);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 3);
    }

    #[test]
    fn stall_credit_exceeds_the_burst_without_double_counting() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = TokenBucket::new(10, 2, t0);
        assert!(b.try_take(t0) && b.try_take(t0));
        b.credit(t0, t0 + s(1));
        assert_eq!(
            (0..20).filter(|_| b.try_take(t0 + s(1))).count(),
            10,
            "a one-second stall forgives 10 frames"
        );
        // The stall's time is not refilled a second time afterwards.
        assert!(!b.try_take(t0 + s(1)));
        b.credit(t0 + s(1), t0 + s(1001));
        let after = t0 + s(1001);
        assert_eq!((0..1000).filter(|_| b.try_take(after)).count(), 102, "credit is capped at 10 s + burst");
        // Before the stall, the refill keeps its cap: an idle hour is not credit.
        let mut idle = TokenBucket::new(10, 2, t0);
        idle.credit(t0 + s(3600), t0 + s(3600));
        assert_eq!((0..100).filter(|_| idle.try_take(t0 + s(3600))).count(), 2);
    }

    #[test]
    fn rate_limits_cover_configured_kinds_and_ping() {
        let t0 = Instant::now();
        let mut r = RateLimits::inbound(&[KindLimit::new(1, "a", 10, 1, 2)], t0);
        assert!(r.admit(1, t0) && r.admit(1, t0) && !r.admit(1, t0));
        assert_eq!((0..10).filter(|_| r.admit(KIND_PING, t0)).count(), PING_BURST as usize);
        assert!(r.admit(9, t0), "kinds without a bucket are not limited here");
        let mut out = RateLimits::outbound(&[KindLimit::new(1, "a", 10, 100, 8)], t0);
        assert_eq!((0..8).filter(|_| out.pace(1, t0).is_none()).count(), 4, "senders use half the burst");
    }

    #[test]
    fn bans_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let mut bans = BanList::default();
        let ban = |secs| Ban { until: t0 + Duration::from_secs(secs), reason: "x".into() };
        bans.ban_ip(IpAddr::from([127, 0, 0, 1]), ban(10), t0);
        assert!(bans.ip(IpAddr::from([127, 0, 0, 1]), t0).is_some());
        assert!(
            bans.ip("::ffff:127.0.0.1".parse().expect("valid ip"), t0).is_some(),
            "mapped IPv6 is the same IP"
        );
        assert!(bans.ip(IpAddr::from([127, 0, 0, 1]), t0 + Duration::from_secs(11)).is_none());
        for i in 0..(MAX_BANS as u32 + 10) {
            bans.ban_peer(PeerId::new(&i.to_le_bytes()), ban(100 + u64::from(i)), t0);
        }
        assert_eq!(bans.peers.len(), MAX_BANS);
        assert!(bans.peer(&PeerId::new(&0u32.to_le_bytes()), t0).is_none(), "the soonest expiry was evicted");
    }
}
