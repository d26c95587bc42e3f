//! One day's counters, and what one final case adds to them.
//!
//! Every counter is a [`Field`] with a whole-number value: a count of invoices, or an amount in a
//! currency's smallest unit. The store keeps a day as a hash from [`Field::name`] to value and
//! hands it back through [`Field::parse`], so both stores and the figures agree on one naming,
//! kept here. A name this release cannot read (a later release's) is skipped, not an error.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{Case, HELD_BACK_BY_NETWORK, NudgeKind, RecoveredBy, State};

/// The longest recovery, in whole days, that has a histogram bucket of its own; anything longer
/// shares one (`days|more`). Dunning plans end well within it (the default gives up after about
/// three weeks), so the median and the 90th percentile almost always fall on an exact day.
pub const LONGEST_DAY: u32 = 60;

/// Who brought a recovered invoice's money in, as the case shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Payer {
    /// A charge recoup made (a planned retry, or one support asked for) paid the invoice.
    Retry,
    /// The invoice was paid some other way, and the customer had opened one of recoup's update
    /// links for it: the customer, prompted by a nudge.
    Link,
    /// The invoice was paid some other way, without an update link opened: the customer on their
    /// own (Stripe's hosted invoice page, the portal), Stripe's own retry, or the business in
    /// Stripe. Stripe's `invoice.paid` does not say which.
    Other,
}

impl Payer {
    pub fn as_str(self) -> &'static str {
        match self {
            Payer::Retry => "retry",
            Payer::Link => "link",
            Payer::Other => "other",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Payer::Retry, Payer::Link, Payer::Other]
            .into_iter()
            .find(|p| p.as_str() == name)
    }

    /// Who paid `case`, a recovered one.
    pub fn of(case: &Case) -> Self {
        if case.recovered_by == Some(RecoveredBy::Retry) {
            Payer::Retry
        } else if case.link_opened_at.is_some() {
            Payer::Link
        } else {
            Payer::Other
        }
    }
}

/// Of a group of invoices (a decline class, a segment, a nudge): how many, and how many of them
/// were recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Of {
    Invoices,
    Recovered,
}

/// A currency's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Money {
    /// Final invoices in the currency.
    Invoices,
    /// What those invoices still owed when dunning began, summed: the revenue at stake.
    Due,
    /// What was recovered.
    Recovered,
}

/// A nudge as the dashboard groups them: by channel, kind and tier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NudgeKey {
    pub channel: String,
    pub kind: String,
    pub tier: u32,
}

/// One counter of a day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `invoices`: invoices whose outcome became final.
    Invoices,
    /// `recovered`: invoices recovered.
    Recovered,
    /// `by|<payer>`: recoveries by who paid.
    By(Payer),
    /// `state|<state>`: final invoices by the state they ended in first.
    State(String),
    /// `currency|<currency>|invoices`, `…|due`, `…|recovered`.
    Currency(String, Money),
    /// `days|<n>` (0 to [`LONGEST_DAY`]) and `days|more`: recoveries by whole days from the first
    /// failure to the payment; `more` is `LONGEST_DAY + 1`.
    Days(u32),
    /// `class|<decline class>|invoices`, `…|recovered`; `unknown` when no decline was ever read.
    Class(String, Of),
    /// `segment|<segment>|invoices`, `…|recovered`; the empty name is the policy's own plan.
    Segment(String, Of),
    /// `nudge|<channel>|<kind>|<tier>|invoices`, `…|recovered`: invoices that got the nudge, and
    /// of them recovered.
    Nudge(NudgeKey, Of),
    /// `end|<action>`: end decisions carried out (or found done in Stripe).
    End(String),
    /// `refused|<card brand>`: retries the card networks' rules held back (moved or dropped).
    Refused(String),
    /// `answer|<answer>|invoices`, `…|recovered`: invoices whose customer answered "What's in the
    /// way?" (their latest answer), and of them recovered.
    Answer(String, Of),
}

impl Field {
    /// The counter's name in the store.
    pub fn name(&self) -> String {
        let of = |of: &Of| match of {
            Of::Invoices => "invoices",
            Of::Recovered => "recovered",
        };
        match self {
            Field::Invoices => "invoices".to_owned(),
            Field::Recovered => "recovered".to_owned(),
            Field::By(payer) => format!("by|{}", payer.as_str()),
            Field::State(state) => format!("state|{state}"),
            Field::Currency(currency, money) => {
                let what = match money {
                    Money::Invoices => "invoices",
                    Money::Due => "due",
                    Money::Recovered => "recovered",
                };
                format!("currency|{currency}|{what}")
            }
            Field::Days(days) if *days > LONGEST_DAY => "days|more".to_owned(),
            Field::Days(days) => format!("days|{days}"),
            Field::Class(class, o) => format!("class|{class}|{}", of(o)),
            Field::Segment(segment, o) => format!("segment|{segment}|{}", of(o)),
            Field::Nudge(n, o) => format!("nudge|{}|{}|{}|{}", n.channel, n.kind, n.tier, of(o)),
            Field::End(action) => format!("end|{action}"),
            Field::Refused(brand) => format!("refused|{brand}"),
            Field::Answer(answer, o) => format!("answer|{answer}|{}", of(o)),
        }
    }

    /// The counter a stored name stands for; `None` for a name this release does not know.
    pub fn parse(name: &str) -> Option<Self> {
        let of = |what: &str| match what {
            "invoices" => Some(Of::Invoices),
            "recovered" => Some(Of::Recovered),
            _ => None,
        };
        // The last part says what is counted; a segment's name may itself hold a `|`.
        let keyed = |rest: &str| {
            rest.rsplit_once('|')
                .and_then(|(key, what)| Some((key.to_owned(), of(what)?)))
        };
        let (head, rest) = name.split_once('|').unwrap_or((name, ""));
        Some(match (head, rest) {
            ("invoices", "") => Field::Invoices,
            ("recovered", "") => Field::Recovered,
            ("by", payer) => Field::By(Payer::parse(payer)?),
            ("state", state) if !state.is_empty() => Field::State(state.to_owned()),
            ("currency", rest) => {
                let (currency, what) = rest.rsplit_once('|')?;
                let money = match what {
                    "invoices" => Money::Invoices,
                    "due" => Money::Due,
                    "recovered" => Money::Recovered,
                    _ => return None,
                };
                Field::Currency(currency.to_owned(), money)
            }
            ("days", "more") => Field::Days(LONGEST_DAY + 1),
            ("days", days) => Field::Days(days.parse().ok().filter(|d| *d <= LONGEST_DAY)?),
            ("class", rest) => {
                let (class, of) = keyed(rest)?;
                Field::Class(class, of)
            }
            ("segment", rest) => {
                let (segment, of) = keyed(rest)?;
                Field::Segment(segment, of)
            }
            ("nudge", rest) => {
                let (key, of) = keyed(rest)?;
                let mut parts = key.splitn(3, '|');
                let (channel, kind, tier) = (parts.next()?, parts.next()?, parts.next()?);
                let key = NudgeKey {
                    channel: channel.to_owned(),
                    kind: kind.to_owned(),
                    tier: tier.parse().ok()?,
                };
                Field::Nudge(key, of)
            }
            ("end", action) if !action.is_empty() => Field::End(action.to_owned()),
            ("refused", brand) if !brand.is_empty() => Field::Refused(brand.to_owned()),
            ("answer", rest) => {
                let (answer, of) = keyed(rest)?;
                Field::Answer(answer, of)
            }
            _ => return None,
        })
    }
}

/// The counters of one day (or, summed, of several).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayCounts(BTreeMap<Field, i64>);

impl DayCounts {
    /// The counters a store kept under these names; names this release does not know, and values
    /// that are not whole numbers, are skipped.
    pub fn read<N: AsRef<str>, V: AsRef<str>>(stored: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut counts = Self::default();
        for (name, value) in stored {
            if let (Some(field), Ok(n)) = (Field::parse(name.as_ref()), value.as_ref().parse()) {
                counts.add(field, n);
            }
        }
        counts
    }

    pub fn add(&mut self, field: Field, n: i64) {
        let counter = self.0.entry(field).or_default();
        *counter = counter.saturating_add(n);
    }

    /// Adds another day's counters.
    pub fn merge(&mut self, other: &DayCounts) {
        for (field, n) in &other.0 {
            self.add(field.clone(), *n);
        }
    }

    /// The counter's value; 0 when nothing was counted in it.
    pub fn get(&self, field: &Field) -> i64 {
        self.0.get(field).copied().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Field, i64)> {
        self.0.iter().map(|(field, n)| (field, *n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one final case adds to the day's counters: its outcome, counted once when the case is
/// first final, and its recovery, counted once when it is recovered (with the outcome, or later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub outcome: Vec<(Field, i64)>,
    /// Empty while the invoice is not recovered.
    pub recovery: Vec<(Field, i64)>,
}

impl Contribution {
    /// What `case` adds, or `None` while it has nothing to add: still in dunning, or never failed.
    pub fn of(case: &Case) -> Option<Self> {
        if !case.state.is_final() || case.failed_at.is_none() {
            return None;
        }
        let currency = case.currency.to_ascii_lowercase();
        let class = case
            .decline
            .as_ref()
            .map_or("unknown", |d| d.class.as_str())
            .to_owned();
        let segment = case.segment.clone().unwrap_or_default();
        // One per channel, kind and tier, however many tries it took; the thank-you is no nudge.
        let nudges: BTreeSet<NudgeKey> = case
            .nudges
            .iter()
            .filter(|n| n.kind != NudgeKind::Recovered)
            .map(|n| NudgeKey {
                channel: n.channel.as_str().to_owned(),
                kind: n.kind.as_str().to_owned(),
                tier: n.tier,
            })
            .collect();
        let mut outcome = vec![
            (Field::Invoices, 1),
            (Field::State(case.state.as_str().to_owned()), 1),
            (Field::Currency(currency.clone(), Money::Invoices), 1),
            (
                Field::Currency(currency.clone(), Money::Due),
                case.still_due(),
            ),
            (Field::Class(class.clone(), Of::Invoices), 1),
            (Field::Segment(segment.clone(), Of::Invoices), 1),
        ];
        outcome.extend(
            nudges
                .iter()
                .map(|n| (Field::Nudge(n.clone(), Of::Invoices), 1)),
        );
        let answer = case.answer.as_ref().map(|a| a.answer.as_str().to_owned());
        outcome.extend(
            answer
                .iter()
                .map(|a| (Field::Answer(a.clone(), Of::Invoices), 1)),
        );
        if let Some(decision) = case.decision.as_ref().filter(|d| d.outcome.done()) {
            outcome.push((Field::End(decision.action.as_str().to_owned()), 1));
        }
        let refused = case
            .timeline
            .iter()
            .filter(|e| e.what == HELD_BACK_BY_NETWORK)
            .count();
        if refused > 0 {
            let brand = case.card.as_ref().map_or("unknown", |c| c.brand.as_str());
            let refused = i64::try_from(refused).unwrap_or(i64::MAX);
            outcome.push((Field::Refused(brand.to_owned()), refused));
        }
        let mut recovery = Vec::new();
        if case.state == State::Recovered {
            recovery.extend([
                (Field::Recovered, 1),
                (Field::By(Payer::of(case)), 1),
                (
                    Field::Currency(currency, Money::Recovered),
                    case.still_due(),
                ),
                (Field::Class(class, Of::Recovered), 1),
                (Field::Segment(segment, Of::Recovered), 1),
            ]);
            if let (Some(failed), Some(paid)) = (case.failed_at, case.paid_at) {
                let days = paid.duration_since(failed).as_secs().max(0) / 86_400;
                let days = u32::try_from(days).unwrap_or(u32::MAX).min(LONGEST_DAY + 1);
                recovery.push((Field::Days(days), 1));
            }
            recovery.extend(answer.map(|a| (Field::Answer(a, Of::Recovered), 1)));
            // Nudges stop once an invoice is paid, so each one it got came before its recovery.
            recovery.extend(
                nudges
                    .into_iter()
                    .map(|n| (Field::Nudge(n, Of::Recovered), 1)),
            );
        }
        Some(Self { outcome, recovery })
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::policy::{
        CaseDecision, Channel, DecisionOutcome, DeclineClass, EndAction, Entry, Nudge,
    };

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap() + SignedDuration::from_hours(hours)
    }

    /// A case that failed at hour 0 with an `insufficient_funds` decline, still retrying.
    fn failed_case() -> Case {
        let mut case: Case = serde_json::from_value(serde_json::json!({
            "invoice_id": "in_1", "customer_id": "cus_1", "subscription_id": "sub_1",
            "amount_due": 4900, "currency": "USD", "state": "retrying",
            "customer_timezone": "UTC", "decline": null, "attempts": [],
            "next_attempt_at": null, "nudges": [], "decision": null, "timers": [],
            "timeline": [], "failed_at": null, "paid_at": null, "closure": null,
            "opened_at": "2027-01-15T08:00:00Z", "version": 1
        }))
        .unwrap();
        case.failed_at = Some(at(0));
        case.decline = Some(crate::policy::Decline::of_code(
            "insufficient_funds",
            DeclineClass::Soft,
        ));
        case
    }

    fn nudge(channel: Channel, kind: NudgeKind, tier: u32) -> Nudge {
        Nudge {
            at: at(1),
            channel,
            kind,
            tier,
        }
    }

    #[test]
    fn every_field_reads_back_as_itself_and_unknown_names_are_skipped() {
        let key = NudgeKey {
            channel: "email".to_owned(),
            kind: "payment_failed".to_owned(),
            tier: 2,
        };
        let fields = [
            Field::Invoices,
            Field::Recovered,
            Field::By(Payer::Link),
            Field::State("paused".to_owned()),
            Field::Currency("eur".to_owned(), Money::Due),
            Field::Days(0),
            Field::Days(LONGEST_DAY),
            Field::Days(LONGEST_DAY + 1),
            Field::Class("card_data".to_owned(), Of::Recovered),
            Field::Segment("a | b".to_owned(), Of::Invoices),
            Field::Segment(String::new(), Of::Recovered),
            Field::Nudge(key, Of::Recovered),
            Field::End("mark_uncollectible".to_owned()),
            Field::Refused("mastercard".to_owned()),
            Field::Answer("cant_pay_now".to_owned(), Of::Recovered),
        ];
        for field in fields {
            assert_eq!(
                Field::parse(&field.name()),
                Some(field.clone()),
                "{field:?}"
            );
        }
        assert_eq!(Field::Days(LONGEST_DAY + 1).name(), "days|more");
        for unknown in [
            "",
            "invoices|x",
            "days|61",
            "days|-1",
            "by|mail",
            "class|soft|x",
        ] {
            assert_eq!(Field::parse(unknown), None, "{unknown:?}");
        }
        let counts = DayCounts::read([("invoices", "3"), ("feedback|x", "1"), ("recovered", "x")]);
        assert_eq!(counts.iter().collect::<Vec<_>>(), [(&Field::Invoices, 3)]);
    }

    #[test]
    fn a_case_still_in_dunning_or_never_failed_adds_nothing() {
        let case = failed_case();
        assert_eq!(Contribution::of(&case), None);
        let mut never_failed = failed_case();
        never_failed.state = State::Closed;
        never_failed.failed_at = None;
        assert_eq!(Contribution::of(&never_failed), None);
    }

    #[test]
    fn a_recovered_case_adds_its_outcome_and_its_recovery() {
        let mut case = failed_case();
        case.state = State::Recovered;
        case.recovered_by = Some(RecoveredBy::Unknown);
        case.link_opened_at = Some(at(30));
        case.paid_at = Some(at(2 * 24 + 5));
        case.segment = Some("annual".to_owned());
        case.nudges = vec![
            nudge(Channel::Email, NudgeKind::PaymentFailed, 1),
            nudge(Channel::Sms, NudgeKind::PaymentFailed, 1),
            // The same nudge again (a second try on the channel) counts once.
            nudge(Channel::Email, NudgeKind::PaymentFailed, 1),
            nudge(Channel::Email, NudgeKind::Recovered, 1),
        ];
        let mut counts = DayCounts::default();
        let c = Contribution::of(&case).unwrap();
        for (field, n) in c.outcome.into_iter().chain(c.recovery) {
            counts.add(field, n);
        }
        let email = NudgeKey {
            channel: "email".to_owned(),
            kind: "payment_failed".to_owned(),
            tier: 1,
        };
        let expected = [
            (Field::Invoices, 1),
            (Field::Recovered, 1),
            (Field::By(Payer::Link), 1),
            (Field::State("recovered".to_owned()), 1),
            (Field::Currency("usd".to_owned(), Money::Invoices), 1),
            (Field::Currency("usd".to_owned(), Money::Due), 4900),
            (Field::Currency("usd".to_owned(), Money::Recovered), 4900),
            (Field::Days(2), 1),
            (Field::Class("soft".to_owned(), Of::Invoices), 1),
            (Field::Class("soft".to_owned(), Of::Recovered), 1),
            (Field::Segment("annual".to_owned(), Of::Invoices), 1),
            (Field::Segment("annual".to_owned(), Of::Recovered), 1),
            (Field::Nudge(email.clone(), Of::Invoices), 1),
            (Field::Nudge(email, Of::Recovered), 1),
        ];
        for (field, n) in &expected {
            assert_eq!(counts.get(field), *n, "{field:?} in {counts:?}");
        }
        // The SMS nudge's two, and nothing else.
        assert_eq!(counts.iter().count(), expected.len() + 2, "{counts:?}");
    }

    #[test]
    fn a_canceled_case_adds_its_decision_and_the_retries_the_networks_held_back() {
        let mut case = failed_case();
        case.state = State::Canceled;
        case.amount_remaining = Some(1200);
        case.card = Some(crate::policy::Card {
            fingerprint: "fp".to_owned(),
            brand: "mastercard".to_owned(),
            funding: None,
            expires_at: None,
        });
        case.decision = Some(Box::new(CaseDecision {
            action: EndAction::Cancel,
            at: at(500),
            rule: "policy: retries exhausted".to_owned(),
            reason: String::new(),
            how: String::new(),
            resumes_at: None,
            outcome: DecisionOutcome::CarriedOut,
            note: None,
        }));
        for hour in [10, 20] {
            case.record(Entry {
                at: at(hour),
                what: HELD_BACK_BY_NETWORK.to_owned(),
                detail: "attempt 2 moved".to_owned(),
                event: None,
            });
        }
        let c = Contribution::of(&case).unwrap();
        assert!(c.recovery.is_empty());
        assert!(c.outcome.contains(&(Field::End("cancel".to_owned()), 1)));
        assert!(
            c.outcome
                .contains(&(Field::Refused("mastercard".to_owned()), 2))
        );
        assert!(
            c.outcome
                .contains(&(Field::Currency("usd".to_owned(), Money::Due), 1200))
        );
        assert!(
            c.outcome
                .contains(&(Field::State("canceled".to_owned()), 1))
        );
        // A decision Stripe never carried out is no end decision.
        case.decision.as_mut().unwrap().outcome = DecisionOutcome::NotCarriedOut;
        let c = Contribution::of(&case).unwrap();
        assert!(!c.outcome.iter().any(|(f, _)| matches!(f, Field::End(_))));
    }

    #[test]
    fn a_customers_answer_counts_with_the_invoice_and_its_recovery() {
        let mut case = failed_case();
        case.state = State::Canceled;
        case.answer = Some(Box::new(crate::policy::CustomerAnswer {
            answer: crate::policy::Answer::WantToCancel,
            text: None,
            at: at(30),
            reaction: crate::policy::Reaction::StopDunning,
        }));
        let c = Contribution::of(&case).unwrap();
        let answered = Field::Answer("want_to_cancel".to_owned(), Of::Invoices);
        assert!(c.outcome.contains(&(answered, 1)));
        assert!(c.recovery.is_empty());
        case.state = State::Recovered;
        case.answer.as_mut().unwrap().answer = crate::policy::Answer::CantPayNow;
        let c = Contribution::of(&case).unwrap();
        let recovered = Field::Answer("cant_pay_now".to_owned(), Of::Recovered);
        assert!(c.recovery.contains(&(recovered, 1)));
        // No answer, no answer counter.
        case.answer = None;
        let c = Contribution::of(&case).unwrap();
        assert!(
            !c.outcome
                .iter()
                .chain(&c.recovery)
                .any(|(f, _)| matches!(f, Field::Answer(..)))
        );
    }

    #[test]
    fn who_paid_and_how_long_it_took() {
        let mut case = failed_case();
        case.state = State::Recovered;
        case.recovered_by = Some(RecoveredBy::Retry);
        case.link_opened_at = Some(at(3));
        case.paid_at = Some(at(23));
        let recovery = Contribution::of(&case).unwrap().recovery;
        assert!(
            recovery.contains(&(Field::By(Payer::Retry), 1)),
            "the retry, link or not"
        );
        assert!(
            recovery.contains(&(Field::Days(0), 1)),
            "under a day is day 0"
        );
        case.recovered_by = Some(RecoveredBy::Unknown);
        case.link_opened_at = None;
        case.paid_at = Some(at(24 * 90));
        let recovery = Contribution::of(&case).unwrap().recovery;
        assert!(recovery.contains(&(Field::By(Payer::Other), 1)));
        assert!(recovery.contains(&(Field::Days(LONGEST_DAY + 1), 1)));
    }
}
