//! The retry plan: how many retries each kind of decline gets, how far apart, and at what local time.
//!
//! A retry is due a set gap after the attempt before it (the gaps are per decline class: time helps
//! a `soft` decline, a few tries settle an `ambiguous` one, and no retry fixes a `hard` or
//! `card_data` one or a payment the customer must confirm), plus a jitter fixed per invoice and
//! attempt, then moved forward into the customer's local daytime window — to the next payday for
//! `insufficient_funds`. Gaps are counted from Stripe's own time of the last attempt, never from
//! when recoup heard of it, so the plan is the same whatever order the events arrived in.

use jiff::{SignedDuration, Timestamp};

use super::decline;
use super::timing::{self, Window};
use super::{Case, DeclineClass};

/// How many retries, how far apart, in what local hours.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Gaps before each retry of a `soft` decline, the first counted from the failed payment.
    pub soft: Vec<SignedDuration>,
    /// Gaps for an `ambiguous` decline (and for a failure whose decline is not known yet).
    pub ambiguous: Vec<SignedDuration>,
    /// At most this many attempts on one invoice, Stripe's first one included.
    pub max_attempts: u32,
    /// No retry later than this long after the first failure.
    pub within: SignedDuration,
    /// The customer's local hours retries happen in.
    pub window: Window,
    /// Paydays (days of the month) an `insufficient_funds` retry waits for.
    pub paydays: Vec<u8>,
    /// Retries spread over this much time after their planned moment.
    pub jitter: SignedDuration,
}

impl Default for Plan {
    /// DOMAIN.md's timing: retries 3, 7, 14 and 21 days after the failure (the seeds' schedule,
    /// inside Stripe's recommended "8 tries within 2 weeks" to "2 months" range), two for an
    /// ambiguous decline before it is the customer's to act on, local 09:00–20:00, the 1st and the
    /// 15th as paydays, half an hour of jitter.
    fn default() -> Self {
        let days = |d: &[i64]| {
            d.iter()
                .map(|&d| SignedDuration::from_hours(24 * d))
                .collect()
        };
        Self {
            soft: days(&[3, 4, 7, 7]),
            ambiguous: days(&[3, 4]),
            max_attempts: 8,
            within: SignedDuration::from_hours(28 * 24),
            window: Window {
                start_hour: 9,
                end_hour: 20,
            },
            paydays: vec![1, 15],
            jitter: SignedDuration::from_mins(30),
        }
    }
}

/// When the next retry of a case is due, and why then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextRetry {
    pub at: Timestamp,
    pub attempt: u32,
    /// The plan's reasoning, for the timeline: which gap, which window, which payday.
    pub why: String,
}

impl Plan {
    fn gaps(&self, class: DeclineClass) -> &[SignedDuration] {
        match class {
            DeclineClass::Soft => &self.soft,
            DeclineClass::Ambiguous => &self.ambiguous,
            DeclineClass::CardData | DeclineClass::ActionRequired | DeclineClass::Hard => &[],
        }
    }

    /// The next retry of `case`, or `None` when the plan has none left (or never had one) for it.
    pub fn next_retry(&self, case: &Case) -> Option<NextRetry> {
        let last = case.attempts.last()?;
        let first_failure = case.failed_at?;
        let class = case
            .decline
            .as_ref()
            .map_or(DeclineClass::Ambiguous, |d| d.class);
        let gaps = self.gaps(class);
        let retries_so_far = case.attempts.len() - 1;
        let gap = *gaps.get(retries_so_far)?;
        let attempt = last.number + 1;
        if attempt > self.max_attempts {
            return None;
        }
        let zone = timing::zone(&case.customer_timezone);
        // Mastercard's advice 24–30 names the shortest wait it tolerates; a shorter gap gives way.
        let network_wait = case
            .decline
            .as_ref()
            .and_then(|d| d.network_advice_code.as_deref())
            .and_then(decline::mastercard_wait)
            .unwrap_or(SignedDuration::ZERO);
        let planned = last.at
            + gap.max(network_wait)
            + timing::jitter(&case.invoice_id, attempt, self.jitter);
        let payday = case
            .decline
            .as_ref()
            .and_then(|d| d.code.as_deref())
            .is_some_and(|code| code == "insufficient_funds");
        let at = if payday {
            timing::on_payday(planned, &zone, &self.paydays, self.window)
        } else {
            timing::into_window(planned, &zone, self.window)
        };
        if at > first_failure + self.within {
            return None;
        }
        let when = if payday {
            "on the next payday"
        } else {
            "in the customer's daytime"
        };
        Some(NextRetry {
            at,
            attempt,
            why: format!(
                "retry {} of {} for {} decline: {} after attempt {}, {when} \
                 ({:02}:00–{:02}:00 {})",
                retries_so_far + 1,
                gaps.len(),
                article(class.as_str()),
                human(gap.max(network_wait)),
                last.number,
                self.window.start_hour,
                self.window.end_hour,
                case.customer_timezone
            ),
        })
    }
}

fn article(word: &str) -> String {
    let an = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if an { "an" } else { "a" })
}

/// "3 days" where a gap is whole days, as policies are written; jiff's "36h" otherwise.
pub(crate) fn human(gap: SignedDuration) -> String {
    const DAY: i64 = 86_400;
    match gap.as_secs() {
        0 if gap.subsec_nanos() == 0 => "0s".to_owned(),
        secs if secs == DAY && gap.subsec_nanos() == 0 => "1 day".to_owned(),
        secs if secs % DAY == 0 && gap.subsec_nanos() == 0 => format!("{} days", secs / DAY),
        _ => format!("{gap:#}"),
    }
}
