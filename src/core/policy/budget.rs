//! Card-network retry budgets: how many tries the networks allow on one card, and when the next one
//! becomes legal.
//!
//! Visa and Mastercard charge fees (and may block a merchant) for retrying past their limits, and
//! they count per card, not per invoice: two invoices on one card share one budget, which is why a
//! card's history is keyed by Stripe's card `fingerprint`. The limits change every year or two, so
//! they are data ([`Rule`]s from the policy file), not code; [`earliest_allowed`] only does the
//! arithmetic over rolling windows, and [`Rule::defaults`] are the figures of `docs/design/declines.md#card-network-retry-rules`.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::time;

/// One network limit: at most `max` counted tries within any `per`-long rolling window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The card brand the rule binds, as Stripe names it (`visa`, `mastercard`), or `*` for all.
    pub brand: String,
    pub counts: Counts,
    pub scope: Scope,
    pub max: u32,
    pub per: SignedDuration,
}

/// Which tries a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counts {
    /// Every try, whatever its outcome.
    Attempts,
    /// Declined tries only; the try being planned may decline, so it counts too.
    Declines,
}

/// Over which tries of the card a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every invoice charged to the card.
    Card,
    /// Only the invoice being retried ("reattempts of one payment").
    Invoice,
}

/// One past try on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Try {
    pub at: Timestamp,
    pub invoice_id: String,
    /// The invoice's attempt number: with the invoice, what makes a try the same try when it is
    /// recorded twice (a redo after a crash, Stripe's webhook after recoup's own result).
    pub attempt: u32,
    /// Counted as declined until known otherwise: a try whose result never arrived may have been a
    /// decline, and counting one too many never breaks a rule.
    pub declined: bool,
    /// The card's network asked, with this decline, that the card not be tried again before then
    /// (Mastercard's merchant advice 24–30): binding for every invoice on the card, not only this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Timestamp>,
    /// The decline said never to try the card again (a hard decline: lost or stolen, closed,
    /// Mastercard advice 03/21, Visa category 1): binding for every invoice on the card.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never: bool,
}

impl Try {
    /// A try of `invoice_id`'s attempt `attempt` at `at`, paid or declined, nothing more known.
    pub fn new(at: Timestamp, invoice_id: &str, attempt: u32, declined: bool) -> Self {
        Self {
            at,
            invoice_id: invoice_id.to_owned(),
            attempt,
            declined,
            wait: None,
            never: false,
        }
    }

    /// The same try, declined as `declined` says, with what the decline asks of the whole card.
    pub fn declined_as(mut self, declined: &super::Declined) -> Self {
        let classified = super::decline::classify(&declined.signals());
        self.declined = true;
        self.never = classified.class == super::DeclineClass::Hard;
        self.wait = classified.not_before.map(|wait| time::later(self.at, wait));
        self
    }
}

/// Every recent try on one card, across all its invoices: what the budgets are counted over.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CardHistory {
    /// Stripe's card `fingerprint`: the same for every copy of one card number, whichever customer
    /// or payment method holds it.
    pub fingerprint: String,
    pub tries: Vec<Try>,
    /// Bumped by the store on every save; a save naming an older version is refused.
    #[serde(skip)]
    pub version: u64,
}

impl CardHistory {
    /// A card with no tries yet.
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_owned(),
            ..Self::default()
        }
    }

    /// How long a card's tries matter: the longest window of any rule.
    pub fn keep(rules: &[Rule]) -> std::time::Duration {
        longest(rules).unsigned_abs()
    }

    /// Adds `try_` unless the same try (invoice and attempt) is already there, in which case a
    /// result that is now known replaces a pessimistic "declined"; forgets tries older than every
    /// rule's window. Returns whether anything changed.
    pub fn record(&mut self, try_: Try, rules: &[Rule], now: Timestamp) -> bool {
        let before = self.tries.len();
        self.tries
            .retain(|t| t.at > time::earlier(now, longest(rules)));
        let forgot = self.tries.len() != before;
        match self
            .tries
            .iter_mut()
            .find(|t| t.invoice_id == try_.invoice_id && t.attempt == try_.attempt)
        {
            Some(known) if known.declined && !try_.declined => {
                known.declined = false;
                true
            }
            Some(known)
                if (known.wait, known.never) != (try_.wait, try_.never) && try_.declined =>
            {
                known.wait = known.wait.max(try_.wait);
                known.never |= try_.never;
                true
            }
            Some(_) => forgot,
            None => {
                self.tries.push(try_);
                true
            }
        }
    }
}

impl Rule {
    /// The networks' limits (`docs/design/declines.md#card-network-retry-rules`): Visa, 20 reattempts of one payment in 30 days (since May 2025);
    /// Mastercard, 10 declines on a card in 24 hours and 35 attempts in 30 days (Mastercard counts
    /// per card, merchant and amount; per card is the cautious reading of that).
    pub fn defaults() -> Vec<Rule> {
        let rule = |brand: &str, counts, scope, max, hours| Rule {
            brand: brand.to_owned(),
            counts,
            scope,
            max,
            per: SignedDuration::from_hours(hours),
        };
        vec![
            rule("visa", Counts::Attempts, Scope::Invoice, 20, 30 * 24),
            rule("mastercard", Counts::Declines, Scope::Card, 10, 24),
            rule("mastercard", Counts::Attempts, Scope::Card, 35, 30 * 24),
        ]
    }

    fn binds(&self, brand: &str) -> bool {
        self.brand == "*" || self.brand.eq_ignore_ascii_case(brand)
    }

    fn counts(&self, t: &Try, invoice_id: &str) -> bool {
        (self.scope == Scope::Card || t.invoice_id == invoice_id)
            && (self.counts == Counts::Attempts || t.declined)
    }
}

/// What each rule binding `brand` still allows once a try of `invoice_id` is made at `at`: the rule
/// in words and how many more tries it leaves in its window.
pub fn left_after(
    rules: &[Rule],
    brand: &str,
    history: &[Try],
    invoice_id: &str,
    at: Timestamp,
) -> Vec<(String, u32)> {
    rules
        .iter()
        .filter(|r| r.binds(brand))
        .map(|rule| {
            let used = history
                .iter()
                .filter(|t| {
                    rule.counts(t, invoice_id) && t.at > time::earlier(at, rule.per) && t.at <= at
                })
                .count();
            let used = u32::try_from(used).unwrap_or(u32::MAX).saturating_add(1);
            (describe(rule), rule.max.saturating_sub(used))
        })
        .collect()
}

fn longest(rules: &[Rule]) -> SignedDuration {
    rules.iter().map(|r| r.per).max().unwrap_or_default()
}

/// Why a try cannot happen when wanted, and when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub until: Timestamp,
    /// The rule that moved it last, in words: `mastercard: at most 10 declines per card in 1 day`.
    pub because: String,
}

/// The earliest instant at or after `wanted` at which one more try of `invoice_id` on a card of
/// `brand` with `history` breaks none of `rules`: `Ok(wanted)` when it already breaks none, else
/// the later instant and the rule that set it. `Err` names a rule that can never allow it (a
/// `max` of zero).
pub fn earliest_allowed(
    rules: &[Rule],
    brand: &str,
    history: &[Try],
    invoice_id: &str,
    wanted: Timestamp,
) -> Result<Result<Timestamp, Deferral>, String> {
    // What a decline of the card asked, whichever invoice it was for: a hard decline stops the
    // card, an advice to wait holds it until then.
    if let Some(stop) = history.iter().find(|t| t.never && t.at <= wanted) {
        return Err(format!(
            "{brand}: a decline of this card ({}, attempt {}) said never to try it again",
            stop.invoice_id, stop.attempt
        ));
    }
    let mut at = wanted;
    let mut because = None;
    if let Some(wait) = history
        .iter()
        .filter(|t| t.at <= wanted)
        .filter_map(|t| t.wait.map(|until| (until, t)))
        .filter(|(until, _)| *until > wanted)
        .max_by_key(|(until, _)| *until)
    {
        at = wait.0;
        because = Some(format!(
            "{brand}: a decline of this card ({}, attempt {}) asked to wait until {}",
            wait.1.invoice_id, wait.1.attempt, wait.0
        ));
    }
    // Each pass moves `at` past at least one counted try, so this ends within history.len() + 1
    // passes per rule; the bound only guards against a mistake here looping forever.
    for _ in 0..=(history.len() + 1) * rules.len().max(1) {
        let mut moved = false;
        for rule in rules.iter().filter(|r| r.binds(brand)) {
            if rule.max == 0 {
                return Err(describe(rule));
            }
            let mut window: Vec<Timestamp> = history
                .iter()
                .filter(|t| {
                    rule.counts(t, invoice_id) && t.at > time::earlier(at, rule.per) && t.at <= at
                })
                .map(|t| t.at)
                .collect();
            let allowed = rule.max as usize - 1;
            if window.len() > allowed {
                window.sort();
                // Once the oldest tries beyond the allowance have left the window, one more fits.
                at = time::later(window[window.len() - allowed - 1], rule.per);
                because = Some(describe(rule));
                moved = true;
            }
        }
        if !moved {
            return Ok(match because {
                None => Ok(at),
                Some(because) => Err(Deferral { until: at, because }),
            });
        }
    }
    unreachable!("every pass moves past at least one try")
}

fn describe(rule: &Rule) -> String {
    let what = match rule.counts {
        Counts::Attempts => "attempts",
        Counts::Declines => "declines",
    };
    let scope = match rule.scope {
        Scope::Card => "per card",
        Scope::Invoice => "per invoice",
    };
    format!(
        "{}: at most {} {what} {scope} in {}",
        rule.brand,
        rule.max,
        super::duration::human(rule.per)
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_800_000_000;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(T0 + seconds).unwrap()
    }

    fn tries(invoice: &str, declined: bool, seconds: impl IntoIterator<Item = i64>) -> Vec<Try> {
        seconds
            .into_iter()
            .map(|s| Try::new(at(s), invoice, 1, declined))
            .collect()
    }

    #[test]
    fn a_card_within_its_budget_is_tried_when_wanted() {
        let history = tries("in_1", true, (0..9).map(|n| n * 60));
        let wanted = at(3_600);
        assert_eq!(
            earliest_allowed(&Rule::defaults(), "mastercard", &history, "in_1", wanted),
            Ok(Ok(wanted))
        );
    }

    #[test]
    fn the_eleventh_mastercard_decline_in_a_day_waits_for_the_first_to_age_out() {
        let history = tries("in_1", true, (0..10).map(|n| n * 60));
        let allowed =
            earliest_allowed(&Rule::defaults(), "mastercard", &history, "in_1", at(3_600));
        let Ok(Err(deferral)) = allowed else {
            panic!("deferred, not {allowed:?}");
        };
        assert_eq!(deferral.until, at(24 * 3_600));
        assert_eq!(
            deferral.because,
            "mastercard: at most 10 declines per card in 1 day"
        );
    }

    #[test]
    fn two_invoices_on_one_card_share_the_card_budget_but_not_the_invoice_one() {
        let mut history = tries("in_1", true, (0..5).map(|n| n * 60));
        history.extend(tries("in_2", true, (5..10).map(|n| n * 60)));
        let card = earliest_allowed(&Rule::defaults(), "mastercard", &history, "in_3", at(900));
        assert!(matches!(card, Ok(Err(_))), "{card:?}");

        // Visa counts reattempts of one payment: 20 on in_1 leave in_2 free.
        let visa = tries("in_1", true, (0..20).map(|n| n * 3_600));
        assert_eq!(
            earliest_allowed(&Rule::defaults(), "visa", &visa, "in_2", at(86_400)),
            Ok(Ok(at(86_400)))
        );
        assert!(matches!(
            earliest_allowed(&Rule::defaults(), "visa", &visa, "in_1", at(86_400)),
            Ok(Err(_))
        ));
    }

    #[test]
    fn rules_bind_only_their_brand_and_a_zero_budget_never_allows() {
        let history = tries("in_1", true, (0..50).map(|n| n * 60));
        assert_eq!(
            earliest_allowed(&Rule::defaults(), "amex", &history, "in_1", at(3_600)),
            Ok(Ok(at(3_600)))
        );
        let never = Rule {
            brand: "*".into(),
            max: 0,
            ..Rule::defaults()[0].clone()
        };
        assert!(earliest_allowed(&[never], "amex", &[], "in_1", at(0)).is_err());
    }

    #[test]
    fn a_try_is_recorded_once_its_result_corrected_and_old_tries_forgotten() {
        let rules = Rule::defaults();
        let mut card = CardHistory {
            fingerprint: "fp_1".into(),
            ..CardHistory::default()
        };
        let try_at = |s, attempt, declined| Try::new(at(s), "in_1", attempt, declined);
        assert!(card.record(try_at(0, 1, true), &rules, at(0)));
        assert!(
            !card.record(try_at(5, 1, true), &rules, at(5)),
            "the same try twice"
        );
        assert!(
            card.record(try_at(5, 1, false), &rules, at(5)),
            "its result came in"
        );
        assert!(
            !card.record(try_at(5, 1, true), &rules, at(5)),
            "a success stays one"
        );
        assert_eq!(card.tries, vec![try_at(0, 1, false)]);

        // 30 days is the longest default window: a try older than that no longer counts anywhere.
        assert!(card.record(try_at(31 * 86_400, 2, true), &rules, at(31 * 86_400)));
        assert_eq!(card.tries, vec![try_at(31 * 86_400, 2, true)]);
    }

    proptest! {
        /// Wherever the planned try lands, adding it to the history breaks no rule in any rolling
        /// window, and it never lands before it was wanted. (History is the past: the window that
        /// ends at the planned try holds the most tries of all windows containing it.)
        #[test]
        fn the_allowed_time_breaks_no_rule_in_any_window(
            past in proptest::collection::vec((0i64..60 * 86_400, any::<bool>(), 0usize..3), 0..80),
            wanted in 60 * 86_400i64..70 * 86_400,
            brand in prop_oneof![Just("visa"), Just("mastercard")],
        ) {
            let invoices = ["in_a", "in_b", "in_c"];
            let history: Vec<Try> = past
                .iter()
                .map(|&(s, declined, i)| Try::new(at(s), invoices[i], 1, declined))
                .collect();
            let rules = Rule::defaults();
            let Ok(result) = earliest_allowed(&rules, brand, &history, "in_a", at(wanted)) else {
                panic!("the defaults allow every brand some tries");
            };
            let when = result.clone().unwrap_or_else(|d| d.until);
            prop_assert!(when >= at(wanted));
            let planned = Try::new(when, "in_a", 2, true);
            for rule in rules.iter().filter(|r| r.binds(brand)) {
                // The planned try must fit in every window that contains it.
                let in_window = history
                    .iter()
                    .chain([&planned])
                    .filter(|t| rule.counts(t, "in_a") && t.at > when - rule.per && t.at <= when)
                    .count();
                prop_assert!(in_window <= rule.max as usize, "{rule:?}: {in_window}");
            }
        }
    }
}
