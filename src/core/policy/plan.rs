//! The retry plan: how many retries each kind of decline gets, how far apart, and at what local time.
//!
//! A retry is due a set gap after the attempt before it (the gaps are per decline class: time helps
//! a `soft` decline, a few tries settle an `ambiguous` one, and no retry fixes a `hard` or
//! `card_data` one or a payment the customer must confirm), plus a jitter fixed per invoice and
//! attempt, then moved forward into the customer's local daytime window — to the next payday for
//! `insufficient_funds`. Gaps are counted from Stripe's own time of the last attempt, never from
//! when recoup heard of it, so the plan is the same whatever order the events arrived in.

use jiff::{SignedDuration, Timestamp};

use super::duration::human;
use super::time;
use super::timing::{self, Window};
use super::{AFTER_CARD_PAID, Case, DeclineClass, Outcome};

/// How long after an attempt that reached no result (Stripe unreachable, or refusing for a reason
/// that is not the card's) it is made again, with the same idempotency key.
const AFTER_ERROR: SignedDuration = SignedDuration::from_mins(10);

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
    /// How soon after the customer adds a payment method (or changes their default) it is tried.
    pub after_new_card: SignedDuration,
    /// Schedule nothing while Stripe says it will retry the invoice itself, so no customer is
    /// charged by two schedules.
    pub defer_to_stripe: bool,
}

impl Default for Plan {
    /// The timing of `docs/design/timing.md#spacing-retries`: twelve retries of a soft decline,
    /// every 3 to 5 days (days 3, 6, 9, 13, 17, 21, 26, 31, 36, 41, 46 and 51 after the failure:
    /// money that lands is often gone within a day or two, so frequent tries find more of it than
    /// long waits for the likely day), eight of an ambiguous decline (days 3, 7, 12, 17, 23, 30, 37
    /// and 44) before it is the customer's to act on, at most 14 attempts in all, none later than 60
    /// days after the failure (Stripe's own longest setting, 2 months) or once the card has expired,
    /// local 09:00–20:00, the 1st and the 15th as paydays, half an hour of jitter, a new card tried
    /// within five minutes, and nothing of recoup's own while Stripe's retries are on.
    fn default() -> Self {
        let days = |d: &[i64]| {
            d.iter()
                .map(|&d| SignedDuration::from_hours(24 * d))
                .collect()
        };
        Self {
            soft: days(&[3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5, 5]),
            ambiguous: days(&[3, 4, 5, 5, 6, 7, 7, 7]),
            max_attempts: 14,
            within: SignedDuration::from_hours(60 * 24),
            window: Window {
                start_hour: 9,
                end_hour: 20,
            },
            paydays: vec![1, 15],
            jitter: SignedDuration::from_mins(30),
            after_new_card: SignedDuration::from_mins(5),
            defer_to_stripe: true,
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
    /// Whether someone prompted it (the customer's new card, support's request) rather than the
    /// schedule: the only retries a paused case gets.
    pub prompted: bool,
}

impl Plan {
    fn gaps(&self, class: DeclineClass) -> &[SignedDuration] {
        match class {
            DeclineClass::Soft => &self.soft,
            DeclineClass::Ambiguous => &self.ambiguous,
            DeclineClass::CardData | DeclineClass::ActionRequired | DeclineClass::Hard => &[],
        }
    }

    /// When the retries of `case`, which first failed at `first_failure`, end.
    pub(super) fn end(&self, case: &Case, first_failure: Timestamp) -> End {
        let within = time::later(first_failure, self.within);
        // A retry at the expiry's very moment is declined: the second before it is the last.
        match case
            .card
            .as_ref()
            .and_then(|c| c.expires_at)
            .map(|at| time::later(at, SignedDuration::from_secs(-1)))
        {
            Some(expires) if expires < within => End {
                at: expires,
                expiry: true,
            },
            _ => End {
                at: within,
                expiry: false,
            },
        }
    }

    /// The next retry of `case`, or why there is none.
    pub fn next_retry(&self, case: &Case) -> Result<NextRetry, String> {
        let last = case.attempts.last().ok_or("no failed attempt yet")?;
        let first_failure = case.failed_at.ok_or("no failure yet")?;
        if let Some(stripe) = case.stripe_retries_at.filter(|_| self.defer_to_stripe) {
            return Err(format!(
                "Stripe will retry this invoice itself (next at {stripe}): recoup schedules no \
                 retry of its own while Stripe's retries are on"
            ));
        }
        let zone = timing::zone(&case.customer_timezone);
        if last.outcome == Outcome::Error {
            // 10 minutes, doubling with each error in a row.
            let wait = AFTER_ERROR * 2_i32.pow(last.errors.saturating_sub(1).min(16));
            let at = timing::into_window(time::later(last.at, wait), &zone, self.window);
            let end = self.end(case, first_failure);
            if at > end.at {
                return Err(format!(
                    "attempt {} reached no result and its next try would fall after {}",
                    last.number,
                    end.words(self)
                ));
            }
            return Ok(NextRetry {
                at,
                attempt: last.number,
                prompted: false,
                why: format!(
                    "attempt {} reached no result ({} in a row): made again {} later with the same \
                     idempotency key, in the customer's daytime",
                    last.number,
                    last.errors,
                    human(wait)
                ),
            });
        }
        let under_way = case.retry_under_way.filter(|r| r.attempt > last.number);
        let attempt = under_way.map_or(last.number, |r| r.attempt) + 1;
        if attempt > self.max_attempts {
            return Err(format!(
                "no retry left: {} attempts is the most the policy allows",
                self.max_attempts
            ));
        }
        let (tried, tried_at) = under_way.map_or((last.number, last.at), |r| (r.attempt, r.at));
        if let Some(asked) = case.retry_requested.as_ref().filter(|r| r.at > tried_at) {
            return Ok(NextRetry {
                at: asked.at,
                attempt,
                prompted: true,
                why: format!("support ({}) asked for it: {}", asked.by, asked.reason),
            });
        }
        if let Some(card) = case.new_payment_method.as_ref().filter(|c| c.at > tried_at) {
            return Ok(NextRetry {
                at: time::later(card.at, self.after_new_card),
                attempt,
                prompted: true,
                why: format!(
                    "the customer's new payment method {} arrived after attempt {tried}: tried {} \
                     later",
                    card.id,
                    human(self.after_new_card)
                ),
            });
        }
        if super::ending::card_stopped(case) {
            return Err(
                "the customer won a dispute on this card: it is not charged again; a new card is"
                    .to_owned(),
            );
        }
        if let Some(retry) = under_way {
            return Err(format!(
                "retry {} is under way since {}; the next is planned from its result",
                retry.attempt, retry.at
            ));
        }
        if case.ends_on_request().is_some() {
            return Err(
                "the customer asked to cancel on the feedback link: no retry on the schedule"
                    .to_owned(),
            );
        }
        let class = case
            .decline
            .as_ref()
            .map_or(DeclineClass::Ambiguous, |d| d.class);
        let gaps = self.gaps(class);
        let retries_so_far = case.attempts.len() - 1;
        let Some(&gap) = gaps.get(retries_so_far) else {
            return Err(case.words(|| match gaps.len() {
                0 => format!(
                    "{} decline is not retried on a schedule; a new payment method is",
                    capitalised(&article(class.as_str()))
                ),
                n => format!(
                    "no retry left: the plan has {n} for {} decline",
                    article(class.as_str())
                ),
            }));
        };
        // Mastercard's advice 24–30 names the shortest wait it tolerates; a shorter gap gives way.
        let network_wait = network_wait(case);
        // The customer said they cannot pay right now: the retry waits for their next payday
        // after saying so, in place of the gap (the networks' shortest wait still holds).
        let answered = case.retry_waits_for_payday();
        let payday = answered.is_some()
            || case
                .decline
                .as_ref()
                .and_then(|d| d.code.as_deref())
                .is_some_and(|code| code == "insufficient_funds");
        // The customer's own paydays, when their earlier invoices tell them, before the policy's.
        let paydays = if case.paydays.is_empty() {
            &self.paydays
        } else {
            &case.paydays
        };
        let end = self.end(case, first_failure);
        // A retry of another invoice just went through on the card: this one follows it at once.
        if let Some(paid) = case.card_paid_since_last_attempt() {
            let at = timing::into_window(
                time::later(paid.at, AFTER_CARD_PAID).max(time::later(last.at, network_wait)),
                &zone,
                self.window,
            );
            if at <= end.at {
                return Ok(NextRetry {
                    at,
                    attempt,
                    prompted: true,
                    why: case.words(|| {
                        format!(
                            "retry {} of {} for {} decline: a retry of {} went through on the \
                             same card at {}, so the money is there now — tried {} later, in the \
                             customer's daytime",
                            retries_so_far + 1,
                            gaps.len(),
                            article(class.as_str()),
                            paid.invoice_id,
                            paid.at,
                            human(AFTER_CARD_PAID)
                        )
                    }),
                });
            }
        }
        let from = match answered {
            Some(at) => at.max(time::later(last.at, network_wait)),
            None => time::later(last.at, gap.max(network_wait)),
        };
        // No payday left before the end: the retry keeps its place after the gap rather than
        // being given up — an attempt that may find the money beats none.
        let no_payday_left = payday
            && timing::on_payday(from, &zone, paydays, self.window) > end.at
            && timing::into_window(from, &zone, self.window) <= end.at;
        let place = |t| {
            if payday && !no_payday_left {
                timing::on_payday(t, &zone, paydays, self.window)
            } else {
                timing::into_window(t, &zone, self.window)
            }
        };
        // Jitter after placing: cases moved to a window's opening would otherwise all land on its
        // first second. Near the window's close the jitter is dropped rather than spill out of it.
        let placed = place(from);
        let jittered = time::later(
            placed,
            timing::jitter(&case.invoice_id, attempt, self.jitter),
        );
        let at = if place(jittered) == jittered {
            jittered
        } else {
            placed
        };
        if at > end.at {
            return Err(case.words(|| {
                format!(
                    "no retry left: the next would fall after {}",
                    end.words(self)
                )
            }));
        }
        let when = if no_payday_left {
            "in the customer's daytime: no payday of theirs is left before the policy's end"
        } else if payday && !case.paydays.is_empty() {
            "on the customer's next payday (the days their earlier invoices were paid on)"
        } else if payday {
            "on the next payday"
        } else {
            "in the customer's daytime"
        };
        if answered.is_some() {
            let paydays = if case.paydays.is_empty() {
                "the policy's paydays"
            } else {
                "the days their earlier invoices were paid on"
            };
            return Ok(NextRetry {
                at,
                attempt,
                prompted: false,
                why: case.words(|| {
                    format!(
                        "the customer answered they cannot pay right now: moved to their next \
                         payday ({paydays}), {:02}:00–{:02}:00 {}",
                        self.window.start_hour, self.window.end_hour, case.customer_timezone
                    )
                }),
            });
        }
        Ok(NextRetry {
            at,
            attempt,
            prompted: false,
            why: case.words(|| {
                format!(
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
                )
            }),
        })
    }
}

/// The last moment a retry of a case can be: the policy's `within` after the first failure, or
/// earlier, the moment before the card expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct End {
    pub at: Timestamp,
    /// The card's expiry comes first.
    expiry: bool,
}

impl End {
    /// What it is, in words, for a plan that has no retry left before it.
    fn words(self, plan: &Plan) -> String {
        if self.expiry {
            format!(
                "the card's expiry ({} UTC): only a new card can pay now",
                time::later(self.at, SignedDuration::from_secs(1)).strftime("%Y-%m-%d %H:%M")
            )
        } else {
            format!("the policy's {} from the first failure", human(plan.within))
        }
    }
}

/// The shortest wait after the case's decline that its card's network tolerates (Mastercard's
/// advice 24–30); none for any other decline.
pub(super) fn network_wait(case: &Case) -> SignedDuration {
    case.decline
        .as_ref()
        .and_then(|d| d.network_wait)
        .unwrap_or(SignedDuration::ZERO)
}

pub(super) fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn article(word: &str) -> String {
    let an = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if an { "an" } else { "a" })
}
