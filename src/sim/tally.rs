//! Tallies: what a simulation keeps of each finished customer, as sums only.
//!
//! A million invoices must not cost a million records: each customer's results are added to a
//! [`Tally`] per policy and then dropped. Everything in a tally is a count, a sum or a histogram
//! bucket, so tallies of parts of a population add up to the tally of the whole in any order — the
//! threads of a run each keep their own and the sum is the same on every run.

use std::collections::BTreeMap;

use super::oracle;
use super::population::FailedInvoice;
use super::world::{CustomerResult, HORIZON};
use crate::policy::experiment::outcome::{ArmCounts, Contribution};
use crate::policy::{Policy, RecoveredBy};

/// Whole hours from the failure to the payment, up to the horizon: the days-to-recover histogram.
pub const HOURS: usize = (HORIZON.as_secs() / 3600) as usize + 1;
/// Days of the horizon: the recovered-revenue-by-day bins.
pub const DAYS: usize = (HORIZON.as_secs() / 86_400) as usize;

/// Breaches told in full: enough to see why, not a log of every one.
pub const BREACHES_KEPT: usize = 100;

/// Invoices of one kind, and how many of them were recovered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub invoices: u64,
    pub recovered: u64,
}

/// One policy's results over the customers seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub recovered: u64,
    pub recovered_revenue: BTreeMap<String, i64>,
    pub by_retry: u64,
    pub by_customer: u64,
    pub lost_to_nagging: u64,
    pub breaches: u64,
    /// Breaches by the rule they broke.
    pub breaches_by_rule: BTreeMap<String, u64>,
    /// The first breaches by invoice id (at most [`BREACHES_KEPT`]), told in full.
    pub breach_stories: Vec<(String, String)>,
    pub attempts: u64,
    /// The same attempts by the currency of the invoice attempted.
    pub attempts_by_currency: BTreeMap<String, u64>,
    pub nudges: u64,
    /// The networks' estimated fees for recoup's attempts, in millionths of a US dollar, by rule.
    pub fees_by_rule: BTreeMap<String, i64>,
    /// The same fees by the currency of the invoice attempted (still in US dollars).
    pub fees_by_currency: BTreeMap<String, i64>,
    /// By the class the policy gave the first decline.
    pub by_class: BTreeMap<&'static str, Rate>,
    /// By segment name; "" for invoices in no segment.
    pub by_segment: BTreeMap<String, Rate>,
    /// Recovered invoices by whole hours from failure to payment.
    pub hours_to_recover: Vec<u64>,
    /// Revenue recovered on each day after the failure (day 0 = the first 24 hours), by currency.
    pub daily_revenue: BTreeMap<String, Vec<i64>>,
    /// By the arm of the policy's experiment, counted as `serve` counts them; every simulated
    /// invoice is final at the horizon.
    pub by_arm: BTreeMap<String, ArmCounts>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            recovered: 0,
            recovered_revenue: BTreeMap::new(),
            by_retry: 0,
            by_customer: 0,
            lost_to_nagging: 0,
            breaches: 0,
            breaches_by_rule: BTreeMap::new(),
            breach_stories: Vec::new(),
            attempts: 0,
            attempts_by_currency: BTreeMap::new(),
            nudges: 0,
            fees_by_rule: BTreeMap::new(),
            fees_by_currency: BTreeMap::new(),
            by_class: BTreeMap::new(),
            by_segment: BTreeMap::new(),
            hours_to_recover: vec![0; HOURS],
            daily_revenue: BTreeMap::new(),
            by_arm: BTreeMap::new(),
        }
    }
}

/// The population itself and what the oracle could recover of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Population {
    pub customers: u64,
    pub invoices: u64,
    pub revenue: BTreeMap<String, i64>,
    pub oracle_invoices: u64,
    pub oracle_revenue: BTreeMap<String, i64>,
    pub oracle_invoices_by_currency: BTreeMap<String, u64>,
}

impl Population {
    pub fn add(&mut self, invoices: &[FailedInvoice]) {
        self.customers += 1;
        for invoice in invoices {
            self.invoices += 1;
            add_to(&mut self.revenue, &invoice.currency, invoice.amount_due);
            if oracle::recoverable(invoice) {
                self.oracle_invoices += 1;
                add_to(
                    &mut self.oracle_revenue,
                    &invoice.currency,
                    invoice.amount_due,
                );
                add_to(&mut self.oracle_invoices_by_currency, &invoice.currency, 1);
            }
        }
    }

    pub fn merge(&mut self, other: &Population) {
        self.customers += other.customers;
        self.invoices += other.invoices;
        self.oracle_invoices += other.oracle_invoices;
        merge_sums(&mut self.revenue, &other.revenue);
        merge_sums(&mut self.oracle_revenue, &other.oracle_revenue);
        merge_sums(
            &mut self.oracle_invoices_by_currency,
            &other.oracle_invoices_by_currency,
        );
    }
}

impl Tally {
    /// Adds one customer's results under `policy` (whose segments the results name by index).
    pub fn add(&mut self, policy: &Policy, invoices: &[FailedInvoice], result: &CustomerResult) {
        self.lost_to_nagging += u64::from(result.gave_up);
        for (invoice, outcome) in invoices.iter().zip(&result.invoices) {
            self.attempts += u64::from(outcome.attempts);
            add_to(
                &mut self.attempts_by_currency,
                &invoice.currency,
                u64::from(outcome.attempts),
            );
            self.nudges += u64::from(outcome.nudges);
            for breach in &outcome.breaches {
                self.breaches += 1;
                *self
                    .breaches_by_rule
                    .entry(breach.rule.clone())
                    .or_default() += 1;
                self.breach_stories
                    .push((invoice.invoice_id.clone(), breach.story.clone()));
            }
            self.keep_first_stories();
            for fee in outcome.fees.iter().filter(|f| !f.fee.is_zero()) {
                add_to(&mut self.fees_by_rule, &fee.rule, fee.fee.0);
                add_to(&mut self.fees_by_currency, &invoice.currency, fee.fee.0);
            }
            let recovered = outcome.recovered.is_some();
            let count = |rate: &mut Rate| {
                rate.invoices += 1;
                rate.recovered += u64::from(recovered);
            };
            count(self.by_class.entry(outcome.class.as_str()).or_default());
            if let (Some(arm), Some(experiment)) = (outcome.arm, &policy.experiment) {
                self.by_arm
                    .entry(experiment.arms[arm].name.clone())
                    .or_default()
                    .add(&Contribution {
                        currency: invoice.currency.clone(),
                        recovered: outcome.recovered.map(|_| invoice.amount_due),
                        attempts: outcome.attempts,
                        nudges: outcome.nudges,
                        lost: outcome.canceled || result.gave_up,
                    });
            }
            let segment = outcome
                .segment
                .map_or("", |s| policy.segments[s].name.as_str());
            match self.by_segment.get_mut(segment) {
                Some(rate) => count(rate),
                None => count(self.by_segment.entry(segment.to_owned()).or_default()),
            }
            let Some((by, after)) = outcome.recovered else {
                continue;
            };
            self.recovered += 1;
            match by {
                RecoveredBy::Retry => self.by_retry += 1,
                RecoveredBy::Customer | RecoveredBy::Unknown => self.by_customer += 1,
            }
            add_to(
                &mut self.recovered_revenue,
                &invoice.currency,
                invoice.amount_due,
            );
            let seconds = usize::try_from(after.as_secs().max(0)).unwrap_or(usize::MAX);
            self.hours_to_recover[(seconds / 3600).min(HOURS - 1)] += 1;
            let day = (seconds / 86_400).min(DAYS - 1);
            let daily = match self.daily_revenue.get_mut(invoice.currency.as_str()) {
                Some(daily) => daily,
                None => self
                    .daily_revenue
                    .entry(invoice.currency.clone())
                    .or_insert_with(|| vec![0; DAYS]),
            };
            daily[day] += invoice.amount_due;
        }
    }

    /// The first [`BREACHES_KEPT`] stories by invoice id: the same ones whatever the threads.
    fn keep_first_stories(&mut self) {
        if self.breach_stories.len() > BREACHES_KEPT {
            self.breach_stories.sort();
            self.breach_stories.truncate(BREACHES_KEPT);
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.recovered += other.recovered;
        self.by_retry += other.by_retry;
        self.by_customer += other.by_customer;
        self.lost_to_nagging += other.lost_to_nagging;
        self.breaches += other.breaches;
        merge_sums(&mut self.breaches_by_rule, &other.breaches_by_rule);
        self.breach_stories
            .extend(other.breach_stories.iter().cloned());
        self.keep_first_stories();
        self.attempts += other.attempts;
        merge_sums(&mut self.attempts_by_currency, &other.attempts_by_currency);
        self.nudges += other.nudges;
        merge_sums(&mut self.fees_by_rule, &other.fees_by_rule);
        merge_sums(&mut self.fees_by_currency, &other.fees_by_currency);
        merge_sums(&mut self.recovered_revenue, &other.recovered_revenue);
        for (class, rate) in &other.by_class {
            let mine = self.by_class.entry(class).or_default();
            mine.invoices += rate.invoices;
            mine.recovered += rate.recovered;
        }
        for (arm, counts) in &other.by_arm {
            self.by_arm.entry(arm.clone()).or_default().merge(counts);
        }
        for (segment, rate) in &other.by_segment {
            let mine = self.by_segment.entry(segment.clone()).or_default();
            mine.invoices += rate.invoices;
            mine.recovered += rate.recovered;
        }
        for (mine, theirs) in self
            .hours_to_recover
            .iter_mut()
            .zip(&other.hours_to_recover)
        {
            *mine += theirs;
        }
        for (currency, days) in &other.daily_revenue {
            let mine = self
                .daily_revenue
                .entry(currency.clone())
                .or_insert_with(|| vec![0; DAYS]);
            for (mine, theirs) in mine.iter_mut().zip(days) {
                *mine += theirs;
            }
        }
    }

    /// The `p`-quantile (0 < p ≤ 1) of days to recover by nearest rank, to the hour (a payment
    /// in its 5th hour counts as 5 hours); 0 when nothing was recovered.
    pub fn days_to_recover(&self, p: f64) -> f64 {
        let total: u64 = self.hours_to_recover.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (hour, count) in self.hours_to_recover.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return (hour + 1) as f64 / 24.0;
            }
        }
        unreachable!("the rank is at most the total")
    }
}

fn add_to<N: Copy + std::ops::AddAssign>(
    sums: &mut BTreeMap<String, N>,
    currency: &str,
    amount: N,
) {
    match sums.get_mut(currency) {
        Some(sum) => *sum += amount,
        None => {
            sums.insert(currency.to_owned(), amount);
        }
    }
}

fn merge_sums<N: Copy + std::ops::AddAssign>(
    sums: &mut BTreeMap<String, N>,
    other: &BTreeMap<String, N>,
) {
    for (currency, amount) in other {
        add_to(sums, currency, *amount);
    }
}
