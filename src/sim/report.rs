//! The report of a simulation: the numbers per policy, as a table for people and JSON for scripts.
//!
//! The JSON holds at least what `docs/reference/population.md#the-json-report` names (amounts in the currency's smallest unit, one
//! map per currency) and the table prints the same numbers, the first policy next to the second
//! with their difference, so the effect of one change to a policy file can be read in one column.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use super::Contender;
use super::chart::Curve;
use super::tally::{DAYS, Population, Rate, Tally};
use crate::notify::templates::format_amount;
use crate::policy::experiment::report as experiment;

/// Everything `recoup simulate` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub population: PopulationReport,
    pub oracle: OracleReport,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PopulationReport {
    /// Where it came from: a file, or `synthetic N, seed S`.
    pub source: String,
    pub customers: u64,
    pub invoices: u64,
    pub revenue: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OracleReport {
    pub invoices: u64,
    pub revenue: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub path: String,
    pub recovered_invoices: u64,
    pub recovered_revenue: BTreeMap<String, i64>,
    /// Recovered invoices over all invoices.
    pub recovery_rate: f64,
    /// Recovered revenue over what the oracle recovers: per currency, and over all currencies with
    /// each currency weighted by its share of the oracle's invoices.
    pub oracle_share: f64,
    pub oracle_share_by_currency: BTreeMap<String, f64>,
    pub recovered_by: RecoveredBy,
    /// Customers who cancelled after one nudge too many.
    pub lost_to_nagging: u64,
    /// Attempts that broke a card-network rule (the networks' own figures).
    pub breaches: u64,
    /// Breaches by the rule they broke.
    pub breaches_by_rule: BTreeMap<String, u64>,
    /// The first breaches (by invoice id), each with the tries that made it; printed with
    /// `--explain-breaches`.
    #[serde(skip)]
    pub breach_stories: Vec<String>,
    /// recoup's own charge attempts per invoice (Stripe's failed first attempt not counted).
    pub attempts_per_invoice: f64,
    /// Recovered revenue per recoup attempt on invoices of that currency (smallest unit): what an
    /// attempt earns, the customers' own payments included.
    pub recovered_per_attempt: BTreeMap<String, i64>,
    /// The networks' estimated fees for recoup's attempts, in US dollars
    /// (`docs/design/networks.md#fees`), and by rule.
    pub network_fees_usd: f64,
    pub network_fees_by_rule_usd: BTreeMap<String, f64>,
    /// Recovered US-dollar revenue less the fees on US-dollar invoices (smallest unit); fees on
    /// invoices in other currencies are in `network_fees_usd` but netted nowhere, for want of an
    /// exchange rate the simulator could trust.
    pub recovered_usd_net_of_fees: Option<i64>,
    /// `oracle_share` with the US-dollar share net of fees: what `recoup tune` maximises.
    pub oracle_share_net_of_fees: f64,
    /// Nudges delivered per invoice (thank-yous not counted).
    pub nudges_per_invoice: f64,
    pub days_to_recover: Quantiles,
    pub by_decline_class: BTreeMap<String, RateReport>,
    /// By segment name; `(none)` for invoices in no segment.
    pub by_segment: BTreeMap<String, RateReport>,
    /// Revenue recovered by the end of each day after the failures (day 0 = nothing yet).
    pub cumulative_revenue_by_day: BTreeMap<String, Vec<i64>>,
    /// The policy's experiment, arm by arm, with the same report `recoup experiments` prints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<experiment::Report>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RecoveredBy {
    pub retry: u64,
    pub customer: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateReport {
    pub invoices: u64,
    pub recovered: u64,
    pub rate: f64,
}

impl Report {
    /// The names any policy's `keys` holds (rules broken, segments), sorted, each once: a row
    /// each, whichever policies have it.
    fn named_by_any<'a, K>(&'a self, keys: impl Fn(&'a PolicyReport) -> K) -> Vec<&'a String>
    where
        K: Iterator<Item = &'a String>,
    {
        let mut names: Vec<&String> = self.policies.iter().flat_map(keys).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The first `n` breaches of each policy, told with the tries that made them.
    pub fn explain_breaches(&self, n: usize) -> String {
        let mut text = String::new();
        for policy in &self.policies {
            text += &format!("\nBreaches of {}: {}\n", policy.name, policy.breaches);
            for story in policy.breach_stories.iter().take(n) {
                text += &format!("  {story}\n");
            }
        }
        text
    }

    pub fn new(
        source: String,
        contenders: &[Contender],
        population: &Population,
        tallies: &[Tally],
    ) -> Self {
        let policies = contenders
            .iter()
            .zip(tallies)
            .map(|(contender, tally)| PolicyReport::new(contender, population, tally))
            .collect();
        Self {
            population: PopulationReport {
                source,
                customers: population.customers,
                invoices: population.invoices,
                revenue: population.revenue.clone(),
            },
            oracle: OracleReport {
                invoices: population.oracle_invoices,
                revenue: population.oracle_revenue.clone(),
            },
            policies,
        }
    }

    /// Each policy's cumulative recovered revenue, per currency, for the chart.
    pub fn curves(&self) -> Vec<Curve> {
        self.policies
            .iter()
            .flat_map(|policy| {
                policy
                    .cumulative_revenue_by_day
                    .iter()
                    .map(|(currency, cumulative)| Curve {
                        policy: policy.name.clone(),
                        currency: currency.clone(),
                        cumulative: cumulative.clone(),
                    })
            })
            .collect()
    }
}

impl PolicyReport {
    fn new(contender: &Contender, population: &Population, tally: &Tally) -> Self {
        let per_invoice = |n: u64| ratio(n, population.invoices);
        let oracle_share_by_currency: BTreeMap<String, f64> = population
            .oracle_revenue
            .iter()
            .map(|(currency, &oracle)| {
                let recovered = tally.recovered_revenue.get(currency).copied().unwrap_or(0);
                (currency.clone(), ratio_i(recovered, oracle))
            })
            .collect();
        // Revenue in different currencies does not add up; each currency's share counts as much
        // as the oracle's invoices in it.
        let weighted = |shares: &BTreeMap<String, f64>| -> f64 {
            shares
                .iter()
                .map(|(currency, share)| {
                    let invoices = population.oracle_invoices_by_currency.get(currency);
                    share * ratio(invoices.copied().unwrap_or(0), population.oracle_invoices)
                })
                .sum()
        };
        let oracle_share = weighted(&oracle_share_by_currency);
        let usd_fees = tally.fees_by_currency.get("usd").copied().unwrap_or(0);
        let recovered_usd_net_of_fees = tally
            .recovered_revenue
            .get("usd")
            .map(|&cents| cents - (usd_fees + 5_000) / 10_000);
        let mut net_shares = oracle_share_by_currency.clone();
        if let (Some(net), Some(&oracle)) = (
            recovered_usd_net_of_fees,
            population.oracle_revenue.get("usd"),
        ) {
            net_shares.insert("usd".to_owned(), ratio_i(net, oracle));
        }
        let usd = |micros: i64| micros as f64 / 1_000_000.0;
        Self {
            experiment: contender
                .policy
                .experiment
                .as_ref()
                .map(|e| experiment::report(e, &tally.by_arm)),
            name: contender.name.clone(),
            path: contender.path.display().to_string(),
            recovered_invoices: tally.recovered,
            recovered_revenue: tally.recovered_revenue.clone(),
            recovery_rate: per_invoice(tally.recovered),
            oracle_share,
            oracle_share_by_currency,
            recovered_by: RecoveredBy {
                retry: tally.by_retry,
                customer: tally.by_customer,
            },
            lost_to_nagging: tally.lost_to_nagging,
            breaches: tally.breaches,
            breaches_by_rule: tally.breaches_by_rule.clone(),
            breach_stories: {
                let mut stories: Vec<String> = tally
                    .breach_stories
                    .iter()
                    .map(|(_, s)| s.clone())
                    .collect();
                stories.sort();
                stories
            },
            attempts_per_invoice: per_invoice(tally.attempts),
            recovered_per_attempt: tally
                .recovered_revenue
                .iter()
                .map(|(currency, &revenue)| {
                    let attempts = tally.attempts_by_currency.get(currency).copied();
                    let attempts = i64::try_from(attempts.unwrap_or(0).max(1)).unwrap_or(i64::MAX);
                    (currency.clone(), revenue / attempts)
                })
                .collect(),
            network_fees_usd: usd(tally.fees_by_rule.values().sum()),
            network_fees_by_rule_usd: tally
                .fees_by_rule
                .iter()
                .map(|(rule, &micros)| (rule.clone(), usd(micros)))
                .collect(),
            recovered_usd_net_of_fees,
            oracle_share_net_of_fees: weighted(&net_shares),
            nudges_per_invoice: per_invoice(tally.nudges),
            days_to_recover: Quantiles {
                p50: tally.days_to_recover(0.5),
                p90: tally.days_to_recover(0.9),
            },
            by_decline_class: tally
                .by_class
                .iter()
                .map(|(class, rate)| ((*class).to_owned(), RateReport::new(rate)))
                .collect(),
            by_segment: tally
                .by_segment
                .iter()
                .map(|(segment, rate)| {
                    let name = if segment.is_empty() {
                        "(none)"
                    } else {
                        segment
                    };
                    (name.to_owned(), RateReport::new(rate))
                })
                .collect(),
            cumulative_revenue_by_day: population
                .revenue
                .keys()
                .map(|currency| {
                    let daily = tally.daily_revenue.get(currency);
                    let mut sum = 0;
                    let mut cumulative = vec![0];
                    for day in 0..DAYS {
                        sum += daily.map_or(0, |d| d[day]);
                        cumulative.push(sum);
                    }
                    (currency.clone(), cumulative)
                })
                .collect(),
        }
    }
}

impl RateReport {
    fn new(rate: &Rate) -> Self {
        Self {
            invoices: rate.invoices,
            recovered: rate.recovered,
            rate: ratio(rate.recovered, rate.invoices),
        }
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn ratio_i(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The table: one column per policy, and the difference between the first two.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let population = &self.population;
        writeln!(
            f,
            "Population: {} ({} invoices of {} customers, {}); the oracle recovers {} invoices ({}).",
            population.source,
            population.invoices,
            population.customers,
            money(&population.revenue),
            self.oracle.invoices,
            money(&self.oracle.revenue),
        )?;
        writeln!(f)?;
        let mut rows: Vec<Row> = Vec::new();
        let each = |value: &dyn Fn(&PolicyReport) -> Cell| -> Vec<Cell> {
            self.policies.iter().map(value).collect()
        };
        rows.push(Row::new(
            "recovered invoices",
            each(&|p| Cell::count(p.recovered_invoices)),
        ));
        rows.push(Row::new(
            "recovery rate",
            each(&|p| Cell::percent(p.recovery_rate)),
        ));
        // One row per currency of the population, an amount in it from each policy.
        let per_currency =
            |rows: &mut Vec<Row>,
             label: &str,
             amounts: &dyn Fn(&PolicyReport) -> &BTreeMap<String, i64>| {
                for currency in population.revenue.keys() {
                    rows.push(Row::new(
                        &format!("{label}, {currency}"),
                        each(&|p| {
                            Cell::money(amounts(p).get(currency).copied().unwrap_or(0), currency)
                        }),
                    ));
                }
            };
        per_currency(&mut rows, "recovered revenue", &|p| &p.recovered_revenue);
        rows.push(Row::new(
            "share of the oracle's revenue",
            each(&|p| Cell::percent(p.oracle_share)),
        ));
        rows.push(Row::new(
            "recovered by a retry",
            each(&|p| Cell::count(p.recovered_by.retry)),
        ));
        rows.push(Row::new(
            "recovered by the customer",
            each(&|p| Cell::count(p.recovered_by.customer)),
        ));
        rows.push(Row::new(
            "days to recover, median",
            each(&|p| Cell::days(p.days_to_recover.p50)),
        ));
        rows.push(Row::new(
            "days to recover, p90",
            each(&|p| Cell::days(p.days_to_recover.p90)),
        ));
        rows.push(Row::new(
            "attempts per invoice",
            each(&|p| Cell::fraction(p.attempts_per_invoice)),
        ));
        per_currency(&mut rows, "recovered per attempt", &|p| {
            &p.recovered_per_attempt
        });
        rows.push(Row::new(
            "network fees, estimated",
            each(&|p| Cell::dollars(p.network_fees_usd)),
        ));
        for rule in self.named_by_any(|p| p.network_fees_by_rule_usd.keys()) {
            rows.push(Row::new(
                &format!("  fees of {rule}"),
                each(&|p| {
                    Cell::dollars(p.network_fees_by_rule_usd.get(rule).copied().unwrap_or(0.0))
                }),
            ));
        }
        if population.revenue.contains_key("usd") {
            rows.push(Row::new(
                "recovered revenue net of fees, usd",
                each(&|p| Cell::money(p.recovered_usd_net_of_fees.unwrap_or(0), "usd")),
            ));
        }
        rows.push(Row::new(
            "share of the oracle's, net of fees",
            each(&|p| Cell::percent(p.oracle_share_net_of_fees)),
        ));
        rows.push(Row::new(
            "nudges per invoice",
            each(&|p| Cell::fraction(p.nudges_per_invoice)),
        ));
        rows.push(Row::new(
            "customers lost to nagging",
            each(&|p| Cell::count(p.lost_to_nagging)),
        ));
        rows.push(Row::new(
            "network-rule breaches",
            each(&|p| Cell::count(p.breaches)),
        ));
        for rule in self.named_by_any(|p| p.breaches_by_rule.keys()) {
            rows.push(Row::new(
                &format!("  breaches of {rule}"),
                each(&|p| Cell::count(p.breaches_by_rule.get(rule).copied().unwrap_or(0))),
            ));
        }
        let classes: Vec<&String> = self
            .policies
            .first()
            .map(|p| p.by_decline_class.keys().collect())
            .unwrap_or_default();
        for class in classes {
            rows.push(Row::new(
                &format!("recovery rate, {class} declines"),
                each(&|p| Cell::percent(p.by_decline_class.get(class).map_or(0.0, |r| r.rate))),
            ));
        }
        let segments = self.named_by_any(|p| p.by_segment.keys());
        if segments.len() > 1 {
            for segment in segments {
                rows.push(Row::new(
                    &format!("recovery rate, segment {segment}"),
                    each(&|p| match p.by_segment.get(segment) {
                        Some(rate) => Cell::percent(rate.rate),
                        None => Cell::none(),
                    }),
                ));
            }
        }
        render(f, &self.policies, &rows)?;
        for policy in &self.policies {
            if let Some(report) = &policy.experiment {
                writeln!(f, "\nThe experiment of {}:", policy.name)?;
                write!(f, "{}", experiment::render(report))?;
            }
        }
        Ok(())
    }
}

/// One number of the table, with how to print it and how to print a difference of two.
#[derive(Debug, Clone)]
struct Cell {
    value: f64,
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Count,
    Percent,
    Days,
    Fraction,
    Dollars,
    Money(String),
    None,
}

impl Cell {
    fn count(n: u64) -> Self {
        Self {
            value: n as f64,
            text: n.to_string(),
            kind: Kind::Count,
        }
    }

    fn percent(share: f64) -> Self {
        Self {
            value: share,
            text: format!("{:.1}%", share * 100.0),
            kind: Kind::Percent,
        }
    }

    /// An amount in US dollars, to the cent: the networks' fees.
    fn dollars(usd: f64) -> Self {
        Self {
            value: usd,
            text: format!("${usd:.2}"),
            kind: Kind::Dollars,
        }
    }

    fn days(days: f64) -> Self {
        Self {
            value: days,
            text: format!("{days:.1}"),
            kind: Kind::Days,
        }
    }

    fn fraction(value: f64) -> Self {
        Self {
            value,
            text: format!("{value:.2}"),
            kind: Kind::Fraction,
        }
    }

    fn money(amount: i64, currency: &str) -> Self {
        Self {
            value: amount as f64,
            text: format_amount(amount, currency, "en"),
            kind: Kind::Money(currency.to_owned()),
        }
    }

    fn none() -> Self {
        Self {
            value: 0.0,
            text: "–".to_owned(),
            kind: Kind::None,
        }
    }

    /// `self − other`, signed, in the cell's own unit (percentage points for a percentage).
    fn minus(&self, other: &Cell) -> String {
        if self.kind == Kind::None || other.kind == Kind::None {
            return String::new();
        }
        let d = self.value - other.value;
        let sign = if d > 0.0 { "+" } else { "" };
        match &self.kind {
            Kind::Count => format!("{sign}{}", d as i64),
            Kind::Percent => format!("{sign}{:.1} pt", d * 100.0),
            Kind::Days => format!("{sign}{d:.1}"),
            Kind::Fraction => format!("{sign}{d:.2}"),
            Kind::Dollars if d < 0.0 => format!("-${:.2}", -d),
            Kind::Dollars => format!("{sign}${d:.2}"),
            Kind::Money(currency) => {
                let amount = d as i64;
                let text = format_amount(amount, currency, "en");
                if amount > 0 { format!("+{text}") } else { text }
            }
            Kind::None => String::new(),
        }
    }
}

struct Row {
    label: String,
    cells: Vec<Cell>,
}

impl Row {
    fn new(label: &str, cells: Vec<Cell>) -> Self {
        Self {
            label: label.to_owned(),
            cells,
        }
    }
}

/// Prints the rows under a heading of policy names, the difference of the first two policies
/// after the second column.
fn render(f: &mut fmt::Formatter<'_>, policies: &[PolicyReport], rows: &[Row]) -> fmt::Result {
    let compare = policies.len() >= 2;
    let mut headings: Vec<String> = policies.iter().map(|p| p.name.clone()).collect();
    if compare {
        headings.insert(2, "difference".to_owned());
    }
    let lines: Vec<(String, Vec<String>)> = rows
        .iter()
        .map(|row| {
            let mut cells: Vec<String> = row.cells.iter().map(|c| c.text.clone()).collect();
            if compare {
                cells.insert(2, row.cells[0].minus(&row.cells[1]));
            }
            (row.label.clone(), cells)
        })
        .collect();
    let label_width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..headings.len())
        .map(|c| {
            lines
                .iter()
                .map(|(_, cells)| cells[c].chars().count())
                .chain([headings[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = format!("{:label_width$}", "");
    for (heading, width) in headings.iter().zip(&widths) {
        let _ = write!(line, "  {heading:>width$}");
    }
    writeln!(f, "{}", line.trim_end())?;
    for (label, cells) in &lines {
        let mut line = format!("{label:label_width$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(line, "  {cell:>width$}");
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    writeln!(f)?;
    for policy in policies {
        writeln!(f, "{}: {}", policy.name, policy.path)?;
    }
    Ok(())
}

fn money(sums: &BTreeMap<String, i64>) -> String {
    let parts: Vec<String> = sums
        .iter()
        .map(|(currency, amount)| format_amount(*amount, currency, "en"))
        .collect();
    parts.join(" + ")
}
