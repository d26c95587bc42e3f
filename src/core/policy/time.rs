//! Time arithmetic that cannot panic.
//!
//! jiff's `Timestamp + SignedDuration` panics when the result falls outside its range (the years
//! -9999 to 9999). Every instant the policy computes with comes from outside — Stripe's `created`
//! times, the scheduler's clock (which the test clock can move by any offset the store holds),
//! durations from the policy file — so the core adds and subtracts through these helpers, which
//! stop at the ends of the range instead. An instant pinned at the end of time is a plan that never
//! comes due, which is the honest answer for one computed from a clock that far off.

use jiff::{SignedDuration, Timestamp};

/// `at + by`, or the end of jiff's range that it would run past.
pub fn later(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_add(by).unwrap_or(if by.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `at - by`, or the end of jiff's range that it would run past.
pub fn earlier(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_sub(by).unwrap_or(if by.is_negative() {
        Timestamp::MAX
    } else {
        Timestamp::MIN
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_ends_of_time() {
        let day = SignedDuration::from_hours(24);
        assert_eq!(later(Timestamp::MAX, day), Timestamp::MAX);
        assert_eq!(later(Timestamp::MIN, -day), Timestamp::MIN);
        assert_eq!(earlier(Timestamp::MIN, day), Timestamp::MIN);
        assert_eq!(earlier(Timestamp::MAX, -day), Timestamp::MAX);
        assert_eq!(
            later(Timestamp::UNIX_EPOCH, SignedDuration::MAX),
            Timestamp::MAX
        );
        assert_eq!(
            earlier(Timestamp::UNIX_EPOCH, SignedDuration::MAX),
            Timestamp::MIN
        );
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(later(at, day), at + day);
        assert_eq!(earlier(at, day), at - day);
    }
}
