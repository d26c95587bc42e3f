//! A period of days, checked, and what its days' counters come to: the dashboard's figures.
//!
//! Every figure is a sum over the period's days, so its denominator is stated with it: the recovery
//! rate divides the recoveries counted in the period by the invoices whose outcome became final in
//! it. Days to recover are read off the period's summed histogram of whole days, by nearest rank:
//! the median is the smallest whole day by which at least half of the period's recoveries had been
//! paid, the 90th percentile the same for nine in ten. A percentile that falls in the last bucket
//! is "more than [`LONGEST_DAY`] days".

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::Serialize;
use utoipa::ToSchema;

use super::day::{DayCounts, Field, LONGEST_DAY, Money, Of, Payer};

/// The period shown when none is asked for: the last 30 days, today included.
pub const DEFAULT_DAYS: u32 = 30;

/// A checked period: `from` to `to`, both included, within the days the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
}

/// Why a requested period cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{which}={value:?} is not a date: write it as YYYY-MM-DD, such as 2026-12-01")]
    NotADate { which: &'static str, value: String },
    #[error("the period starts ({from}) after it ends ({to})")]
    Reversed { from: Date, to: Date },
    #[error(
        "the period starts on {from}, but only the last {kept} days are kept (since {oldest}): \
         older days' counters are forgotten"
    )]
    Forgotten { from: Date, oldest: Date, kept: u32 },
    #[error("the period is longer than the {kept} days that are kept")]
    TooLong { kept: u32 },
}

impl Period {
    /// The period asked for by `from` and `to` (`YYYY-MM-DD`; absent or blank for the default)
    /// on `today`, when the store keeps the last `kept` days (today included). The default ends
    /// today, or on `to`, and spans [`DEFAULT_DAYS`] — fewer when fewer are kept.
    pub fn choose(
        from: Option<&str>,
        to: Option<&str>,
        today: Date,
        kept: u32,
    ) -> Result<Self, PeriodError> {
        let kept = kept.max(1);
        let date = |which: &'static str, value: Option<&str>| {
            let value = value.map(str::trim).filter(|v| !v.is_empty());
            value
                .map(|v| {
                    v.parse::<Date>().map_err(|_| PeriodError::NotADate {
                        which,
                        value: v.to_owned(),
                    })
                })
                .transpose()
        };
        let back = |from: Date, days: u32| {
            from.checked_sub(jiff::Span::new().days(i64::from(days)))
                .unwrap_or(Date::MIN)
        };
        let oldest = back(today, kept - 1);
        let to = date("to", to)?.unwrap_or(today);
        let from = match date("from", from)? {
            Some(from) => from,
            None => back(to, DEFAULT_DAYS.min(kept) - 1).max(oldest.min(to)),
        };
        if from > to {
            return Err(PeriodError::Reversed { from, to });
        }
        if from < oldest {
            return Err(PeriodError::Forgotten { from, oldest, kept });
        }
        let period = Self { from, to };
        if period.days().nth(kept as usize).is_some() {
            return Err(PeriodError::TooLong { kept });
        }
        Ok(period)
    }

    /// Every day of the period, in order.
    pub fn days(&self) -> impl Iterator<Item = Date> + use<> {
        let to = self.to;
        std::iter::successors(Some(self.from), |d| d.tomorrow().ok()).take_while(move |d| *d <= to)
    }
}

/// The dashboard's figures for a period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    #[schema(value_type = String, format = Date)]
    pub to: Date,
    /// Invoices whose outcome became final in the period (recovered, paused, canceled, closed).
    pub invoices: u64,
    /// Invoices recovered in the period.
    pub recovered: u64,
    /// `recovered / invoices`; `None` while no invoice is final in the period.
    pub recovery_rate: Option<f64>,
    /// The period's recoveries by who paid.
    pub recovered_by: RecoveredBy,
    /// By currency: final invoices, what they owed, and what was recovered (smallest unit).
    pub revenue: Vec<CurrencyFigures>,
    pub days_to_recover: DaysToRecover,
    /// Final invoices by the state they ended in.
    pub final_states: Vec<Count>,
    pub by_decline_class: Vec<Group>,
    /// By policy segment; `""` is the policy's own plan.
    pub by_segment: Vec<Group>,
    pub by_nudge: Vec<NudgeGroup>,
    /// End decisions carried out (or found done in Stripe), by action.
    pub end_decisions: Vec<Count>,
    /// Retries the card networks' rules held back (moved later or dropped), by card brand.
    pub network_refusals: Vec<Count>,
    /// By the customer's latest answer to "What's in the way?" (`card_changed`, `cant_pay_now`,
    /// `want_to_cancel`, `something_else`): only invoices whose customer answered.
    pub by_answer: Vec<Group>,
    /// Each day of the period, oldest first.
    pub daily: Vec<Daily>,
}

/// The period's recoveries by who paid ([`Payer`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct RecoveredBy {
    /// A charge recoup made paid the invoice.
    pub retry: u64,
    /// The customer paid another way after opening one of recoup's update links.
    pub customer_link: u64,
    /// Paid another way without an update link opened: the customer on their own, Stripe's own
    /// retry, or the business in Stripe.
    pub customer_other: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CurrencyFigures {
    /// Lowercase ISO code.
    pub currency: String,
    /// Final invoices in the currency.
    pub invoices: u64,
    /// What those invoices owed when dunning began.
    pub due: i64,
    /// What was recovered in the period.
    pub recovered: i64,
}

/// Whole days from an invoice's first failure to its payment, over the period's recoveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct DaysToRecover {
    /// The recoveries measured.
    pub recoveries: u64,
    /// `None` without recoveries.
    pub median: Option<Days>,
    pub p90: Option<Days>,
}

/// A number of whole days, or more than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Days {
    pub days: u32,
    /// More than `days`: the percentile fell in the histogram's last bucket.
    pub more: bool,
}

/// A group of invoices: how many were final in the period, and how many were recovered.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Group {
    pub name: String,
    pub invoices: u64,
    pub recovered: u64,
    pub recovery_rate: Option<f64>,
}

/// Invoices that got one nudge (channel, kind, tier), and of them recovered.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NudgeGroup {
    pub channel: String,
    pub kind: String,
    pub tier: u32,
    /// Final invoices that got this nudge.
    pub invoices: u64,
    /// Of them, recovered (after the nudge: nudges stop once an invoice is paid).
    pub recovered: u64,
    pub recovery_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// One day's final invoices and recoveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Daily {
    #[schema(value_type = String, format = Date)]
    pub date: Date,
    pub invoices: u64,
    pub recovered: u64,
}

fn whole(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

fn rate(part: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| part as f64 / of as f64)
}

/// The smallest whole day by which at least `share` of the recoveries in `histogram` (bucket →
/// recoveries) were paid: nearest rank, `⌈share · n⌉`.
pub fn percentile(histogram: &BTreeMap<u32, u64>, share: f64) -> Option<Days> {
    let n: u64 = histogram.values().sum();
    if n == 0 {
        return None;
    }
    let rank = ((share * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    histogram.iter().find_map(|(&bucket, &count)| {
        seen += count;
        (seen >= rank).then_some(Days {
            days: bucket.min(LONGEST_DAY),
            more: bucket > LONGEST_DAY,
        })
    })
}

impl Summary {
    /// The figures of `period` from its days' counters (a day without any counted nothing).
    pub fn of(period: &Period, days: &BTreeMap<Date, DayCounts>) -> Self {
        let mut total = DayCounts::default();
        let daily = period
            .days()
            .map(|date| {
                let day = days.get(&date).cloned().unwrap_or_default();
                total.merge(&day);
                Daily {
                    date,
                    invoices: whole(day.get(&Field::Invoices)),
                    recovered: whole(day.get(&Field::Recovered)),
                }
            })
            .collect();
        let mut currencies: BTreeMap<String, CurrencyFigures> = BTreeMap::new();
        let mut histogram = BTreeMap::new();
        let mut classes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut segments: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut answers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut nudges = BTreeMap::new();
        let (mut states, mut ends, mut refusals) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let mut by = RecoveredBy::default();
        let tally = |pair: &mut (u64, u64), of: &Of, n: u64| match of {
            Of::Invoices => pair.0 += n,
            Of::Recovered => pair.1 += n,
        };
        for (field, n) in total.iter() {
            match field {
                Field::Invoices | Field::Recovered => {}
                Field::By(Payer::Retry) => by.retry += whole(n),
                Field::By(Payer::Link) => by.customer_link += whole(n),
                Field::By(Payer::Other) => by.customer_other += whole(n),
                Field::State(state) => *states.entry(state.clone()).or_default() += whole(n),
                Field::Currency(currency, money) => {
                    let figures =
                        currencies
                            .entry(currency.clone())
                            .or_insert_with(|| CurrencyFigures {
                                currency: currency.clone(),
                                invoices: 0,
                                due: 0,
                                recovered: 0,
                            });
                    match money {
                        Money::Invoices => figures.invoices += whole(n),
                        Money::Due => figures.due = figures.due.saturating_add(n),
                        Money::Recovered => figures.recovered = figures.recovered.saturating_add(n),
                    }
                }
                Field::Days(days) => *histogram.entry(*days).or_default() += whole(n),
                Field::Class(class, of) => {
                    tally(classes.entry(class.clone()).or_default(), of, whole(n));
                }
                Field::Segment(segment, of) => {
                    tally(segments.entry(segment.clone()).or_default(), of, whole(n));
                }
                Field::Nudge(key, of) => {
                    tally(nudges.entry(key.clone()).or_default(), of, whole(n));
                }
                Field::End(action) => *ends.entry(action.clone()).or_default() += whole(n),
                Field::Refused(brand) => *refusals.entry(brand.clone()).or_default() += whole(n),
                Field::Answer(answer, of) => {
                    tally(answers.entry(answer.clone()).or_default(), of, whole(n));
                }
            }
        }
        let invoices = whole(total.get(&Field::Invoices));
        let recovered = whole(total.get(&Field::Recovered));
        Summary {
            from: period.from,
            to: period.to,
            invoices,
            recovered,
            recovery_rate: rate(recovered, invoices),
            recovered_by: by,
            revenue: currencies.into_values().collect(),
            days_to_recover: DaysToRecover {
                recoveries: histogram.values().sum(),
                median: percentile(&histogram, 0.5),
                p90: percentile(&histogram, 0.9),
            },
            final_states: counts(states),
            by_decline_class: groups(classes),
            by_segment: groups(segments),
            by_answer: groups(answers),
            by_nudge: nudges
                .into_iter()
                .map(|(key, (invoices, recovered))| NudgeGroup {
                    channel: key.channel,
                    kind: key.kind,
                    tier: key.tier,
                    invoices,
                    recovered,
                    recovery_rate: rate(recovered, invoices),
                })
                .collect(),
            end_decisions: counts(ends),
            network_refusals: counts(refusals),
            daily,
        }
    }
}

/// Groups, the most invoices first.
fn groups(groups: BTreeMap<String, (u64, u64)>) -> Vec<Group> {
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(name, (invoices, recovered))| Group {
            name,
            invoices,
            recovered,
            recovery_rate: rate(recovered, invoices),
        })
        .collect();
    groups.sort_by(|a, b| {
        b.invoices
            .cmp(&a.invoices)
            .then_with(|| a.name.cmp(&b.name))
    });
    groups
}

/// Counts, the largest first.
fn counts(counts: BTreeMap<String, u64>) -> Vec<Count> {
    let mut counts: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    counts
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;
    use crate::dashboard::day::NudgeKey;

    fn histogram(buckets: &[(u32, u64)]) -> BTreeMap<u32, u64> {
        buckets.iter().copied().collect()
    }

    #[test]
    fn the_median_and_p90_are_read_off_the_histogram_by_nearest_rank() {
        // Five recoveries: on days 0, 1, 2, 3 and 10.
        let five = histogram(&[(0, 1), (1, 1), (2, 1), (3, 1), (10, 1)]);
        assert_eq!(
            percentile(&five, 0.5),
            Some(Days {
                days: 2,
                more: false
            })
        );
        assert_eq!(
            percentile(&five, 0.9),
            Some(Days {
                days: 10,
                more: false
            })
        );
        // Ten: nine by day 4, one after the last bucket; the median is day 1 (rank 5 of 3+3).
        let ten = histogram(&[(0, 3), (1, 3), (4, 3), (LONGEST_DAY + 1, 1)]);
        assert_eq!(
            percentile(&ten, 0.5),
            Some(Days {
                days: 1,
                more: false
            })
        );
        assert_eq!(
            percentile(&ten, 0.9),
            Some(Days {
                days: 4,
                more: false
            })
        );
        assert_eq!(
            percentile(&ten, 0.95),
            Some(Days {
                days: LONGEST_DAY,
                more: true
            })
        );
        assert_eq!(percentile(&histogram(&[(7, 1)]), 0.5).unwrap().days, 7);
        assert_eq!(percentile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn a_period_is_checked_against_the_days_kept() {
        let today = date(2026, 12, 6);
        let choose = |from: Option<&str>, to: Option<&str>| Period::choose(from, to, today, 400);
        assert_eq!(
            choose(None, None),
            Ok(Period {
                from: date(2026, 11, 7),
                to: today
            }),
            "the last 30 days, today included"
        );
        assert_eq!(
            choose(Some(""), Some("2026-12-01")).unwrap().from,
            date(2026, 11, 2)
        );
        assert_eq!(
            choose(Some("2026-12-01"), Some("2026-12-01"))
                .unwrap()
                .days()
                .count(),
            1
        );
        assert!(matches!(
            choose(Some("2026-13-01"), None),
            Err(PeriodError::NotADate { which: "from", .. })
        ));
        assert!(matches!(
            choose(None, Some("yesterday")),
            Err(PeriodError::NotADate { which: "to", .. })
        ));
        assert!(matches!(
            choose(Some("2026-12-02"), Some("2026-12-01")),
            Err(PeriodError::Reversed { .. })
        ));
        // 400 days kept: 2025-11-02 is the oldest.
        assert!(choose(Some("2025-11-02"), None).is_ok());
        let forgotten = choose(Some("2025-11-01"), None).unwrap_err();
        assert_eq!(
            forgotten.to_string(),
            "the period starts on 2025-11-01, but only the last 400 days are kept (since \
             2025-11-02): older days' counters are forgotten"
        );
        assert_eq!(
            choose(Some("2025-11-02"), Some("2026-12-07")),
            Err(PeriodError::TooLong { kept: 400 })
        );
        // Fewer days kept than the default shows: the default shrinks to them.
        let short = Period::choose(None, None, today, 7).unwrap();
        assert_eq!(short.from, date(2026, 11, 30));
    }

    #[test]
    fn the_summary_adds_up_the_days_of_the_period_only() {
        let period = Period {
            from: date(2026, 12, 1),
            to: date(2026, 12, 3),
        };
        let email = NudgeKey {
            channel: "email".to_owned(),
            kind: "payment_failed".to_owned(),
            tier: 1,
        };
        let day = |fields: &[(Field, i64)]| {
            let mut counts = DayCounts::default();
            for (field, n) in fields {
                counts.add(field.clone(), *n);
            }
            counts
        };
        let soft = |of| Field::Class("soft".to_owned(), of);
        let usd = |money| Field::Currency("usd".to_owned(), money);
        let days = BTreeMap::from([
            // Outside the period: not counted.
            (date(2026, 11, 30), day(&[(Field::Invoices, 100)])),
            (
                date(2026, 12, 1),
                day(&[
                    (Field::Invoices, 3),
                    (Field::Recovered, 2),
                    (Field::By(Payer::Retry), 1),
                    (Field::By(Payer::Link), 1),
                    (usd(Money::Invoices), 3),
                    (usd(Money::Due), 3000),
                    (usd(Money::Recovered), 2000),
                    (Field::Days(0), 1),
                    (Field::Days(5), 1),
                    (soft(Of::Invoices), 2),
                    (soft(Of::Recovered), 2),
                    (Field::Class("hard".to_owned(), Of::Invoices), 1),
                    (Field::Nudge(email.clone(), Of::Invoices), 2),
                    (Field::Nudge(email.clone(), Of::Recovered), 1),
                    (Field::State("recovered".to_owned()), 2),
                    (Field::State("canceled".to_owned()), 1),
                    (Field::End("cancel".to_owned()), 1),
                ]),
            ),
            (
                date(2026, 12, 3),
                day(&[
                    (Field::Invoices, 1),
                    (Field::Recovered, 1),
                    (Field::By(Payer::Other), 1),
                    (usd(Money::Invoices), 1),
                    (usd(Money::Due), 500),
                    (usd(Money::Recovered), 500),
                    (Field::Days(9), 1),
                    (soft(Of::Invoices), 1),
                    (soft(Of::Recovered), 1),
                    (Field::Segment(String::new(), Of::Invoices), 1),
                    (Field::Refused("visa".to_owned()), 2),
                ]),
            ),
        ]);
        let summary = Summary::of(&period, &days);
        assert_eq!((summary.invoices, summary.recovered), (4, 3));
        assert_eq!(summary.recovery_rate, Some(0.75));
        assert_eq!(
            summary.recovered_by,
            RecoveredBy {
                retry: 1,
                customer_link: 1,
                customer_other: 1
            }
        );
        assert_eq!(
            summary.revenue,
            [CurrencyFigures {
                currency: "usd".to_owned(),
                invoices: 4,
                due: 3500,
                recovered: 2500
            }]
        );
        assert_eq!(summary.days_to_recover.recoveries, 3);
        assert_eq!(summary.days_to_recover.median.unwrap().days, 5);
        assert_eq!(summary.days_to_recover.p90.unwrap().days, 9);
        assert_eq!(summary.by_decline_class[0].name, "soft");
        assert_eq!(
            (
                summary.by_decline_class[0].invoices,
                summary.by_decline_class[0].recovered
            ),
            (3, 3)
        );
        assert_eq!(summary.by_decline_class[1].recovery_rate, Some(0.0));
        assert_eq!(summary.by_segment[0].name, "");
        assert_eq!(summary.by_segment[0].recovery_rate, Some(0.0));
        assert_eq!(summary.by_nudge[0].recovery_rate, Some(0.5));
        assert_eq!(summary.final_states[0].name, "recovered");
        assert_eq!(summary.end_decisions[0].count, 1);
        assert_eq!(summary.network_refusals[0].count, 2);
        let daily: Vec<(u64, u64)> = summary
            .daily
            .iter()
            .map(|d| (d.invoices, d.recovered))
            .collect();
        assert_eq!(
            daily,
            [(3, 2), (0, 0), (1, 1)],
            "every day, the empty one too"
        );

        let empty = Summary::of(&period, &BTreeMap::new());
        assert_eq!(empty.recovery_rate, None);
        assert_eq!(empty.days_to_recover.median, None);
        assert_eq!(empty.daily.len(), 3);
    }
}
