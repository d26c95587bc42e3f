//! How often update links may be opened: per link, and for the whole process.
//!
//! Opening a link costs up to two Stripe calls (read the invoice, create a portal session), on the
//! same account and under the same Stripe rate limit as the worker's charges. Two token buckets keep
//! that bounded: one per link (a customer reloading, a mail scanner fetching every link, someone
//! hammering a forwarded link), and one for all the portal sessions this process creates (a burst of
//! customers opening their nudges at 9 o'clock must not crowd out the retries). Only links whose
//! signature checked out reach the limiter, so a stream of forged tokens — answered without any
//! Stripe call — cannot fill it.
//!
//! Per link rather than per client address: behind a load balancer or a mail provider's link
//! scanner every request seems to come from a handful of addresses, and limiting those would turn
//! away customers who did nothing wrong, while a link is exactly the unit whose openings cost.
//!
//! In memory, per process, and small: a map from a link's MAC to its bucket, pruned of buckets that
//! have filled up again (idle links) when it grows, and bounded in size. Written here rather than
//! taken from a crate such as `governor` (well kept, but it brings a concurrent map and its own
//! clock abstraction for what is sixty lines over a mutex); the time is an argument underneath, so
//! the tests drive it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

/// A token bucket: `burst` at most, one more every `every`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

impl Rate {
    /// A link may be opened 10 times at once, then once every 6 seconds (10 a minute).
    pub const PER_LINK: Rate = Rate {
        burst: 10,
        every: Duration::from_secs(6),
    };
    /// The process creates at most 40 portal sessions at once, then 10 a second: well inside
    /// Stripe's live-mode limit of 100 requests a second, shared with the worker.
    pub const PORTAL_SESSIONS: Rate = Rate {
        burst: 40,
        every: Duration::from_millis(100),
    };

    /// How long an untouched bucket takes to fill up again, after which forgetting it changes
    /// nothing.
    fn refill(self) -> Duration {
        self.every.saturating_mul(self.burst)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left, in units of one token.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Takes one token if there is one; otherwise how long until there is.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let every = rate.every.as_secs_f64().max(f64::MIN_POSITIVE);
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / every;
        self.tokens = (self.tokens + earned).min(f64::from(rate.burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(rate.every.mul_f64(1.0 - self.tokens))
        }
    }
}

/// Why an opening must wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// This link was opened too often.
    Link { retry_after: Duration },
    /// The process is creating portal sessions as fast as it allows.
    Busy { retry_after: Duration },
}

/// The limits on opening update links in this process.
pub struct Limits {
    per_link: Rate,
    portal: Rate,
    /// At most this many links are tracked; past it (after pruning idle ones) a new link waits.
    max_links: usize,
    state: Mutex<State>,
}

struct State {
    links: HashMap<[u8; 16], Bucket>,
    portal: Bucket,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(Rate::PER_LINK, Rate::PORTAL_SESSIONS, 100_000)
    }
}

impl Limits {
    pub fn new(per_link: Rate, portal: Rate, max_links: usize) -> Self {
        Self {
            per_link,
            portal,
            max_links,
            state: Mutex::new(State {
                links: HashMap::new(),
                portal: Bucket::full(portal, Instant::now()),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change under the lock is a few arithmetic steps: a poisoned lock guards sane data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more opening of the link with this MAC.
    pub fn open(&self, link: [u8; 16]) -> Result<(), Limited> {
        self.open_at(link, Instant::now())
    }

    fn open_at(&self, link: [u8; 16], now: Instant) -> Result<(), Limited> {
        let mut state = self.state();
        if !state.links.contains_key(&link) && state.links.len() >= self.max_links {
            let idle = self.per_link.refill();
            state
                .links
                .retain(|_, bucket| now.saturating_duration_since(bucket.at) < idle);
            if state.links.len() >= self.max_links {
                return Err(Limited::Busy {
                    retry_after: self.per_link.every,
                });
            }
        }
        let rate = self.per_link;
        state
            .links
            .entry(link)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
            .map_err(|retry_after| Limited::Link { retry_after })
    }

    /// One more portal session from this process.
    pub fn portal_session(&self) -> Result<(), Limited> {
        self.portal_session_at(Instant::now())
    }

    fn portal_session_at(&self, now: Instant) -> Result<(), Limited> {
        let rate = self.portal;
        self.state()
            .portal
            .take(rate, now)
            .map_err(|retry_after| Limited::Busy { retry_after })
    }

    /// How many links are tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.state().links.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW: Rate = Rate {
        burst: 3,
        every: Duration::from_secs(10),
    };

    #[test]
    fn a_link_opens_its_burst_then_at_its_rate() {
        let start = Instant::now();
        let limits = Limits::new(SLOW, Rate::PORTAL_SESSIONS, 100);
        for _ in 0..3 {
            assert_eq!(limits.open_at([1; 16], start), Ok(()));
        }
        let Err(Limited::Link { retry_after }) = limits.open_at([1; 16], start) else {
            panic!("the fourth opening at once is refused");
        };
        assert_eq!(retry_after, Duration::from_secs(10));
        assert_eq!(
            limits.open_at([2; 16], start),
            Ok(()),
            "another link has its own bucket"
        );

        let later = start + Duration::from_secs(10);
        assert_eq!(limits.open_at([1; 16], later), Ok(()));
        assert!(limits.open_at([1; 16], later).is_err());
    }

    #[test]
    fn idle_links_are_forgotten_and_the_map_stays_bounded() {
        let start = Instant::now();
        let limits = Limits::new(SLOW, Rate::PORTAL_SESSIONS, 2);
        assert!(limits.open_at([1; 16], start).is_ok());
        assert!(limits.open_at([2; 16], start).is_ok());
        assert!(
            matches!(limits.open_at([3; 16], start), Err(Limited::Busy { .. })),
            "a full map of busy links takes no new one"
        );
        // Once the first two have filled up again they are forgotten and make room.
        assert!(limits.open_at([3; 16], start + SLOW.refill()).is_ok());
        assert_eq!(limits.tracked(), 1);
    }

    #[test]
    fn portal_sessions_are_bounded_for_the_whole_process() {
        let start = Instant::now();
        let limits = Limits::new(SLOW, SLOW, 100);
        for _ in 0..3 {
            assert!(limits.portal_session_at(start).is_ok());
        }
        assert!(matches!(
            limits.portal_session_at(start),
            Err(Limited::Busy { .. })
        ));
        assert!(
            limits
                .portal_session_at(start + Duration::from_secs(10))
                .is_ok()
        );
    }
}
