//! The experiments report: per arm what its final invoices came to, and each arm's difference to
//! the holdout with 95% confidence intervals ([`super::stats`]). `recoup experiments`, the API's
//! `GET /api/v1/experiments` and `recoup simulate` all build it here, from the same counters.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use utoipa::ToSchema;

use super::Experiment;
use super::outcome::ArmCounts;
use super::stats::{self, ENOUGH_DATA_RULE, Interval};

/// The report of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Report {
    pub experiment: String,
    /// The holdout arm's name; `None` when the experiment has none (then nothing is compared).
    pub holdout: Option<String>,
    pub arms: Vec<ArmReport>,
    /// How the intervals are computed, in words.
    pub methods: Methods,
}

/// The methods behind the report's figures, stated.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Methods {
    pub counted: String,
    pub rate: String,
    pub revenue: String,
    pub enough_data: String,
    pub invoices_needed: String,
}

fn methods() -> Methods {
    Methods {
        counted: "an invoice counts once its case's outcome is final (recovered, paused, canceled \
                  or closed); invoices still in dunning are not counted"
            .to_owned(),
        rate: "difference of recovery rates, 95% Newcombe hybrid score interval (from each arm's \
               Wilson interval)"
            .to_owned(),
        revenue: "difference of revenue recovered per final invoice, per currency, 95% normal \
                  approximation (Welch's standard error from each arm's sum and sum of squares)"
            .to_owned(),
        enough_data: ENOUGH_DATA_RULE.to_owned(),
        invoices_needed: "final invoices per arm to detect the observed difference of rates at \
                          80% power, two-sided 5% level: (1.959964·√(2p̄q̄) + 0.841621·√(p₁q₁ + \
                          p₂q₂))² / (p₁ − p₂)²"
            .to_owned(),
    }
}

/// One arm's figures.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ArmReport {
    pub arm: String,
    pub share: f64,
    pub holdout: bool,
    /// Final invoices.
    pub invoices: u64,
    pub recovered: u64,
    /// `recovered / invoices`; `None` before any invoice is final.
    pub recovery_rate: Option<f64>,
    /// Revenue recovered by currency (in its smallest unit), and per final invoice.
    pub revenue: Vec<CurrencyRevenue>,
    pub attempts_per_invoice: Option<f64>,
    pub nudges_per_invoice: Option<f64>,
    /// Final invoices whose dunning ended with the subscription canceled.
    pub lost_customers: u64,
    /// The difference to the holdout; `None` for the holdout itself, or with no holdout.
    pub versus_holdout: Option<Comparison>,
}

/// Revenue recovered in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CurrencyRevenue {
    pub currency: String,
    pub invoices: u64,
    pub recovered: i64,
    pub per_invoice: f64,
}

/// An arm against the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Comparison {
    /// Whether both arms have enough final invoices for the intervals ([`ENOUGH_DATA_RULE`]);
    /// while not, the intervals are left out and the report says "not enough data yet".
    pub enough_data: bool,
    /// The arm's recovery rate minus the holdout's.
    pub rate_difference: Option<Interval>,
    /// Revenue per final invoice minus the holdout's, by currency both arms have.
    pub revenue_per_invoice: BTreeMap<String, Interval>,
    /// Final invoices per arm needed to show the observed difference of rates (80% power).
    pub invoices_needed: Option<u64>,
}

/// The report of `experiment` from its arms' counters (an arm not in `counts` has counted nothing).
pub fn report(experiment: &Experiment, counts: &BTreeMap<String, ArmCounts>) -> Report {
    let empty = ArmCounts::default();
    let counted = |name: &str| counts.get(name).unwrap_or(&empty);
    let holdout = experiment.holdout();
    let arms = experiment
        .arms
        .iter()
        .map(|arm| {
            let mine = counted(&arm.name);
            let per = |n: u64| (mine.invoices > 0).then(|| n as f64 / mine.invoices as f64);
            ArmReport {
                arm: arm.name.clone(),
                share: arm.share,
                holdout: arm.holdout,
                invoices: mine.invoices,
                recovered: mine.recovered,
                recovery_rate: per(mine.recovered),
                revenue: mine
                    .revenue
                    .iter()
                    .map(|(currency, r)| CurrencyRevenue {
                        currency: currency.clone(),
                        invoices: r.invoices,
                        recovered: r.sum,
                        per_invoice: r.sum as f64 / r.invoices.max(1) as f64,
                    })
                    .collect(),
                attempts_per_invoice: per(mine.attempts),
                nudges_per_invoice: per(mine.nudges),
                lost_customers: mine.lost,
                versus_holdout: holdout
                    .filter(|h| !arm.holdout && h.name != arm.name)
                    .map(|h| compare(mine, counted(&h.name))),
            }
        })
        .collect();
    Report {
        experiment: experiment.name.clone(),
        holdout: holdout.map(|h| h.name.clone()),
        arms,
        methods: methods(),
    }
}

fn compare(arm: &ArmCounts, holdout: &ArmCounts) -> Comparison {
    let rate = |c: &ArmCounts| c.recovered as f64 / c.invoices.max(1) as f64;
    let enough = stats::enough_data(arm.invoices, arm.recovered)
        && stats::enough_data(holdout.invoices, holdout.recovered);
    let invoices_needed = (arm.invoices > 0 && holdout.invoices > 0)
        .then(|| stats::invoices_needed(rate(arm), rate(holdout)))
        .flatten();
    if !enough {
        return Comparison {
            enough_data: false,
            rate_difference: None,
            revenue_per_invoice: BTreeMap::new(),
            invoices_needed,
        };
    }
    Comparison {
        enough_data: true,
        rate_difference: stats::rate_difference(
            arm.recovered,
            arm.invoices,
            holdout.recovered,
            holdout.invoices,
        ),
        revenue_per_invoice: arm
            .revenue
            .iter()
            .filter_map(|(currency, mine)| {
                let theirs = holdout.revenue.get(currency)?;
                let side = |r: &super::outcome::Revenue| (r.invoices, r.sum as f64, r.sum_squares);
                Some((
                    currency.clone(),
                    stats::mean_difference(side(mine), side(theirs))?,
                ))
            })
            .collect(),
        invoices_needed,
    }
}

/// The report as the text `recoup experiments` and `recoup simulate` print: a table of the arms,
/// then each arm against the holdout.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = match &report.holdout {
        Some(holdout) => writeln!(
            out,
            "experiment {:?}, holdout arm {holdout:?} (the baseline plan)",
            report.experiment
        ),
        None => writeln!(out, "experiment {:?}", report.experiment),
    };
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>9} {:>9} {:>8} {:>9} {:>8} {:>6}  revenue recovered (per invoice)",
        "arm", "share", "invoices", "recovered", "rate", "attempts", "nudges", "lost"
    );
    let or_dash = |n: Option<f64>, scale: f64, unit: &str| {
        n.map_or("—".to_owned(), |n| format!("{:.1}{unit}", n * scale))
    };
    for arm in &report.arms {
        let revenue: Vec<String> = arm
            .revenue
            .iter()
            .map(|r| format!("{} {} ({:.0})", r.recovered, r.currency, r.per_invoice))
            .collect();
        let _ = writeln!(
            out,
            "{:<16} {:>5.0}% {:>9} {:>9} {:>8} {:>9} {:>8} {:>6}  {}",
            arm.arm,
            arm.share * 100.0,
            arm.invoices,
            arm.recovered,
            or_dash(arm.recovery_rate, 100.0, "%"),
            arm.attempts_per_invoice
                .map_or("—".to_owned(), |n| format!("{n:.2}")),
            arm.nudges_per_invoice
                .map_or("—".to_owned(), |n| format!("{n:.2}")),
            arm.lost_customers,
            if revenue.is_empty() {
                "—".to_owned()
            } else {
                revenue.join(", ")
            }
        );
    }
    let Some(holdout) = &report.holdout else {
        let _ = writeln!(out, "no holdout arm: nothing to compare with");
        return out;
    };
    for arm in &report.arms {
        let Some(versus) = &arm.versus_holdout else {
            continue;
        };
        let needed = versus.invoices_needed.map_or(String::new(), |n| {
            format!("; {n} final invoices per arm would show this difference at 80% power")
        });
        if !versus.enough_data {
            let _ = writeln!(
                out,
                "{} vs {holdout}: not enough data yet (needs {ENOUGH_DATA_RULE}){needed}",
                arm.arm
            );
            continue;
        }
        let points = |i: &Interval| {
            format!(
                "{:+.1} points (95% CI {:+.1} to {:+.1}{})",
                i.estimate * 100.0,
                i.low * 100.0,
                i.high * 100.0,
                if i.excludes_zero() {
                    ""
                } else {
                    ", could be chance"
                }
            )
        };
        let rate = versus
            .rate_difference
            .as_ref()
            .map_or("—".to_owned(), points);
        let _ = writeln!(
            out,
            "{} vs {holdout}: recovery rate {rate}{needed}",
            arm.arm
        );
        for (currency, i) in &versus.revenue_per_invoice {
            let _ = writeln!(
                out,
                "  revenue per invoice {:+.0} {currency} (95% CI {:+.0} to {:+.0})",
                i.estimate, i.low, i.high
            );
        }
    }
    let _ = writeln!(
        out,
        "rates: Newcombe hybrid score interval; revenue: normal approximation; invoices count \
         once final"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::outcome::Contribution;
    use super::super::{Arm, Treatment};
    use super::*;
    use crate::policy::{EndPlan, NudgePlan, Plan};

    fn experiment() -> Experiment {
        let treatment = Treatment {
            plan: Plan::default(),
            nudges: NudgePlan::default(),
            ending: EndPlan::default(),
            learning: None,
        };
        let arm = |name: &str, holdout: bool| Arm {
            name: name.to_owned(),
            share: 0.5,
            holdout,
            own: treatment.clone(),
            segments: Vec::new(),
        };
        Experiment {
            name: "gentle".to_owned(),
            key: "gentle".to_owned(),
            arms: vec![arm("holdout", true), arm("recoup", false)],
        }
    }

    fn counts(recovered: u64, of: u64) -> ArmCounts {
        let mut counts = ArmCounts::default();
        for n in 0..of {
            counts.add(&Contribution {
                currency: "usd".to_owned(),
                recovered: (n < recovered).then_some(1000),
                attempts: 2,
                nudges: 1,
                lost: n >= recovered,
            });
        }
        counts
    }

    #[test]
    fn an_arm_against_the_holdout_with_its_interval() {
        let counted = BTreeMap::from([
            ("holdout".to_owned(), counts(40, 100)),
            ("recoup".to_owned(), counts(60, 100)),
        ]);
        let report = report(&experiment(), &counted);
        let [holdout, arm] = &report.arms[..] else {
            panic!("two arms");
        };
        assert!(holdout.versus_holdout.is_none());
        assert_eq!(arm.recovery_rate, Some(0.6));
        assert_eq!(arm.attempts_per_invoice, Some(2.0));
        assert_eq!(arm.lost_customers, 40);
        let versus = arm.versus_holdout.as_ref().unwrap();
        assert!(versus.enough_data);
        // The interval of stats::tests::newcombe_interval_of_a_difference_of_rates.
        let rate = versus.rate_difference.unwrap();
        assert!((rate.low - 0.061_411).abs() < 1e-5, "{rate:?}");
        assert_eq!(versus.invoices_needed, Some(97));
        // 600 against 400 cents per invoice.
        assert!((versus.revenue_per_invoice["usd"].estimate - 200.0).abs() < 1e-9);
        let text = render(&report);
        assert!(
            text.contains("recoup vs holdout: recovery rate +20.0 points (95% CI +6.1 to +32.8)"),
            "{text}"
        );
    }

    #[test]
    fn not_enough_data_yet_until_each_arm_has_enough_final_invoices() {
        let counted = BTreeMap::from([
            ("holdout".to_owned(), counts(4, 29)),
            ("recoup".to_owned(), counts(20, 40)),
        ]);
        let report = report(&experiment(), &counted);
        let versus = report.arms[1].versus_holdout.as_ref().unwrap();
        assert!(!versus.enough_data);
        assert_eq!(versus.rate_difference, None);
        assert!(render(&report).contains("recoup vs holdout: not enough data yet"));
        // An arm nothing was counted for yet reads as empty, not as an error.
        let nothing = super::report(&experiment(), &BTreeMap::new());
        assert_eq!(nothing.arms[1].recovery_rate, None);
    }
}
