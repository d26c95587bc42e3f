//! The scheduler's clock: the wall clock, or — with the test clock on — the wall clock plus an offset
//! kept in the store, so every process of one deployment sees the same "now".
//!
//! Only scheduling reads this clock: when a case wakes, what `decide` is told the time is. Webhook
//! signature timestamps are always checked against the real wall clock.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::store::{StoreError, TestClock, Timers};

/// How long an advance waits for workers to claim what became due before giving up.
pub const CLAIM_WAIT: Duration = Duration::from_secs(30);

/// The most one advance moves the test clock: 400 days, past any dunning run and any card's renewal
/// cycle (docs/operator-guide/running.md#the-test-clock). A bound, so one typo cannot throw the
/// scheduler past the end of time.
pub const MAX_ADVANCE_SECS: i64 = 400 * 86_400;

/// "Now" for the scheduler. Reading it needs only the store's [`TestClock`]; moving it also counts
/// due [`Timers`], to wait until workers have claimed what came due.
#[derive(Debug, Clone)]
pub struct Clock<S> {
    store: S,
    test: bool,
}

/// The test clock after a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Reading {
    /// The scheduler's now.
    #[schema(value_type = String, format = DateTime)]
    pub now: Timestamp,
    /// How far the test clock is ahead of the wall clock.
    pub offset_seconds: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("the test clock is off (set RECOUP_TEST_CLOCK=1 on every recoup process to use it)")]
    Off,
    #[error(
        "the test clock moves forward by 1 second to 400 days ({MAX_ADVANCE_SECS} seconds) at a \
         time; {0} seconds is not such a step"
    )]
    OutOfRange(i64),
    #[error(
        "the clock moved to {} but {due} due timer(s) were not claimed within {} s; is a worker \
         running (recoup serve --role worker|all)?",
        .reading.now, CLAIM_WAIT.as_secs()
    )]
    Unclaimed { reading: Reading, due: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<S: TestClock> Clock<S> {
    /// The wall clock, or the test clock when `test` is true.
    pub fn new(store: S, test: bool) -> Self {
        Self { store, test }
    }

    pub fn is_test(&self) -> bool {
        self.test
    }

    /// The scheduler's now.
    pub async fn now(&self) -> Result<Timestamp, StoreError> {
        Ok(self.read().await?.now)
    }

    /// The scheduler's now with the offset that produced it.
    pub async fn read(&self) -> Result<Reading, StoreError> {
        let offset_seconds = if self.test {
            self.store.clock_offset().await?
        } else {
            0
        };
        // Whole milliseconds: what the store keeps due times in, and all a case's story needs.
        let wall = Timestamp::from_millisecond(Timestamp::now().as_millisecond())
            .expect("the wall clock is within jiff's range");
        // The offset is whatever the store holds, however far it was moved: added without panicking
        // (a clock pinned at the end of time is a scheduler whose every timer is due, not a crash).
        Ok(Reading {
            now: crate::policy::time::later(wall, SignedDuration::from_secs(offset_seconds)),
            offset_seconds,
        })
    }
}

impl<S: TestClock + Timers> Clock<S> {
    /// Moves the test clock forward and returns once every timer that became due has been claimed
    /// by a worker (or [`CLAIM_WAIT`] has passed, which is an error naming what is still due).
    pub async fn advance(&self, seconds: i64) -> Result<Reading, ClockError> {
        if !self.test {
            return Err(ClockError::Off);
        }
        if !(1..=MAX_ADVANCE_SECS).contains(&seconds) {
            return Err(ClockError::OutOfRange(seconds));
        }
        self.store.advance_clock(seconds).await?;
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            let reading = self.read().await?;
            let due = self.store.count_due(reading.now).await?;
            if due == 0 {
                return Ok(reading);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClockError::Unclaimed { reading, due });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::wire::{Parsed, parse};
    use crate::policy::{Input, Policy, decide};
    use crate::store::MemoryStore;

    proptest! {
        /// Whatever offset the store holds — an advance long ago, a hand edit, a value no release
        /// would write — reading the clock, deciding on a failure at that now and telling the case
        /// (what `recoup status` and the status page do) answer instead of panicking.
        #[test]
        fn any_offset_reads_plans_decides_and_tells_without_panicking(
            offset in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), Just(300_000_000_000_i64)],
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let store = MemoryStore::new();
            runtime.block_on(store.advance_clock(offset)).unwrap();
            let clock = Clock::new(store, true);
            let reading = runtime.block_on(clock.read()).unwrap();
            prop_assert_eq!(reading.offset_seconds, offset);
            let body = include_bytes!("../fixtures/events/invoice.payment_failed.json");
            let Ok(Parsed::Acted(event)) = parse(body) else {
                panic!("the fixture is an event recoup acts on");
            };
            let policy = Policy::shipped();
            let case = decide(&policy, None, &Input::Event(event), reading.now).case.unwrap();
            let _ = crate::story::tell(&case, &policy, &[], reading.now);
        }
    }

    #[tokio::test]
    async fn an_advance_is_one_second_to_four_hundred_days() {
        let store = MemoryStore::new();
        let clock = Clock::new(store, true);
        for refused in [0, -1, MAX_ADVANCE_SECS + 1, 300_000_000_000] {
            assert!(
                matches!(clock.advance(refused).await, Err(ClockError::OutOfRange(_))),
                "{refused}"
            );
        }
        assert_eq!(
            clock
                .advance(MAX_ADVANCE_SECS)
                .await
                .unwrap()
                .offset_seconds,
            MAX_ADVANCE_SECS
        );
    }
}
