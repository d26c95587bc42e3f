//! `recoup tune`: searches the knobs of a policy file for the policy that recovers the most on a
//! population, and writes it as a commented policy file.
//!
//! The pieces:
//!
//! - [`knobs`] is the space searched: which values of the base file are turned, in what range, and
//!   how a point of the search becomes the base file's text with those values replaced;
//! - [`search`] is the optimiser, a compass search over integer knobs with shrinking steps;
//! - this module loads the population once, splits it by customer into a training part and a
//!   held-out part, scores candidates on the training customers with the simulator
//!   ([`crate::sim::run`], the moves of one knob side by side), and at the end sets the base and
//!   the best candidate side by side on the held-out customers — customers the search never saw,
//!   so the figure says whether the tuned policy generalises or only memorised its training half.
//!
//! **What is maximised** is [`objective`]; **what must hold** is [`Constraints`]: no card-network
//! breach ever, and the limits the engineer gave on attempts and on customers lost to nagging. A
//! candidate that breaks one is never chosen over one that keeps them all; among candidates that
//! break some, the one breaking them least is preferred, so a search that starts from a base
//! breaking a limit walks towards keeping it. A search ends when it converges (no knob moves at its
//! finest step), when its time budget is spent, when it has scored the most candidates asked for,
//! or on Ctrl-C (the `stop` flag): in every case the best policy so far is what is written. The
//! same options and population give the same file, unless the time budget or Ctrl-C cut the
//! search at a moment that depends on the machine.
//!
//! **Learning.** Each candidate is simulated as its file says: with the base's `[learning]` on, a
//! candidate plays every customer on one virtual timeline of its own ([`crate::sim::in_time_order`]),
//! so its learned retry times are part of its score — the gaps of a learning policy still set how
//! many retries there are and roughly when. The price is speed: a learning candidate's timeline
//! shares the cores only an hour's customers at a time (the moves of a knob run side by side, the
//! threads shared among them), several times slower than a static one. Tune with `[learning]
//! enabled = false` in the base file to tune the plan alone.

pub mod knobs;
pub mod search;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use self::knobs::{Change, Space};
use super::command::Source;
use super::population::{FailedInvoice, PopulationError};
use super::report::{PolicyReport, Report};
use super::{Contender, chart};
use crate::notify::templates::format_amount;
use crate::policy::file;

/// The least gain, in share of the oracle's revenue, that moves the search: 0.1 percentage point.
/// Smaller gains on a small training half are one or two customers more or less — moving for
/// them would memorise the training customers rather than find a better policy.
pub const MIN_GAIN: f64 = 0.001;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The base policy file: where the search starts, and the text the tuned file is edited from.
    pub policy: PathBuf,
    pub source: Source,
    pub constraints: Constraints,
    /// The share of customers held out of the search, 0 < share < 1.
    pub holdout: f64,
    /// Wall time for the search (the final held-out run comes after it).
    pub budget: Duration,
    /// Candidates to score at most, the base included: with it, a search cut short ends at the
    /// same point on every machine.
    pub max_candidates: Option<usize>,
    /// Simulating threads; one per core when `None`.
    pub threads: Option<usize>,
    pub out: PathBuf,
    pub chart: Option<PathBuf>,
}

/// The limits a tuned policy must keep besides zero breaches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Constraints {
    /// recoup's own attempts per invoice, at most.
    pub max_attempts_per_invoice: Option<f64>,
    /// Customers lost to nagging over all customers, at most.
    pub max_lost_to_nagging: Option<f64>,
}

/// A point of the search on the progress bar or in the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Candidates scored so far, the base included.
    pub candidates: usize,
    /// The last candidate's share of the oracle's revenue, and the best that keeps the constraints
    /// (none yet when no candidate keeps them).
    pub share: f64,
    pub best: Option<f64>,
    /// Since the run started.
    pub elapsed: Duration,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Converged,
    Budget,
    Candidates,
    Interrupted,
}

/// What `run` did: the table to print, and how the search ended.
#[derive(Debug, Clone)]
pub struct Tuned {
    pub printed: String,
    pub ended: Ended,
}

/// What the search maximises: the share of the oracle's revenue a policy recovers net of the card
/// networks' estimated fees, each currency weighted by its share of the oracle's invoices
/// ([`PolicyReport::oracle_share_net_of_fees`]) — revenue in different currencies does not add up,
/// and a retry likely to be declined costs a fee (`docs/design/networks.md#fees`). The fees on
/// US-dollar invoices are netted; others are reported but netted nowhere, for want of a rate.
pub fn objective(report: &PolicyReport) -> f64 {
    report.oracle_share_net_of_fees
}

/// A candidate's standing: how far it breaks the constraints (0 when it keeps them all), and its
/// objective.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub violation: f64,
    pub objective: f64,
}

impl search::Score for Score {
    fn beats(&self, other: &Self) -> bool {
        if self.violation != other.violation {
            return self.violation < other.violation;
        }
        self.objective > other.objective + MIN_GAIN
    }
}

impl Constraints {
    /// How far `report` (over `customers` customers) breaks the constraints: every breach counts
    /// one, and a limit passed counts by how far, relative to the limit. 0 keeps them all.
    pub fn violation(&self, report: &PolicyReport, customers: u64) -> f64 {
        let over = |value: f64, limit: Option<f64>| match limit {
            Some(limit) if value > limit => (value - limit) / limit.max(f64::EPSILON),
            _ => 0.0,
        };
        report.breaches as f64
            + over(report.attempts_per_invoice, self.max_attempts_per_invoice)
            + over(lost_share(report, customers), self.max_lost_to_nagging)
    }

    /// The constraints `report` breaks, in words.
    fn broken(&self, report: &PolicyReport, customers: u64) -> Vec<String> {
        let mut broken = Vec::new();
        if report.breaches > 0 {
            broken.push(format!("{} network-rule breaches", report.breaches));
        }
        if let Some(limit) = self.max_attempts_per_invoice
            && report.attempts_per_invoice > limit
        {
            broken.push(format!(
                "{:.2} attempts per invoice (at most {limit})",
                report.attempts_per_invoice
            ));
        }
        let lost = lost_share(report, customers);
        if let Some(limit) = self.max_lost_to_nagging
            && lost > limit
        {
            broken.push(format!(
                "{:.2}% of customers lost to nagging (at most {:.2}%)",
                lost * 100.0,
                limit * 100.0
            ));
        }
        broken
    }
}

fn lost_share(report: &PolicyReport, customers: u64) -> f64 {
    report.lost_to_nagging as f64 / customers.max(1) as f64
}

/// Whether a customer is held out of the search: FNV-1a of their id against `share`, so the split
/// is the same on every run and machine, whatever the seed, the order of the file or the threads.
pub fn held_out(customer_id: &str, share: f64) -> bool {
    let hash = customer_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    ((hash % 1_000_000) as f64) < share * 1_000_000.0
}

/// Customers simulated many times (the training or the held-out ones): loaded once, each
/// candidate a pass over them.
struct Sample<'a> {
    all: Vec<&'a Vec<FailedInvoice>>,
    threads: usize,
}

impl Sample<'_> {
    /// Simulates `contenders` side by side; `None` when `cut()` said stop before the end.
    fn simulate(
        &self,
        contenders: &[Contender],
        cut: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Report>, PopulationError> {
        let customers = || {
            self.all.iter().map(|&customer| {
                if cut() {
                    Err(PopulationError::Read(
                        std::io::ErrorKind::Interrupted.into(),
                    ))
                } else {
                    Ok(customer.clone())
                }
            })
        };
        match super::run(contenders, customers, self.threads, |_| Ok(())) {
            Ok(outcome) => Ok(Some(Report::new(
                String::new(),
                contenders,
                &outcome.population,
                &outcome.tallies,
            ))),
            Err(_) if cut() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Runs the search and writes the tuned policy. `stop` (Ctrl-C) ends the search early with the
/// best policy so far; `progress` hears of every candidate scored. Every error is the user's to
/// fix, and nothing is written when one happens.
pub fn run(
    options: &Options,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> anyhow::Result<Tuned> {
    let started = Instant::now();
    let path = options.policy.display().to_string();
    let text = std::fs::read_to_string(&options.policy)
        .with_context(|| format!("cannot read the policy file {path}"))?;
    let base = file::parse(&text, &path)?;
    let space = Space::new(&text, &base, &path).map_err(|e| anyhow!("{path}: {e}"))?;
    let population = options.source.load()?;
    let (held, searched): (Vec<_>, Vec<_>) = population.iter().partition(|customer| {
        customer
            .first()
            .is_some_and(|i| held_out(&i.customer_id, options.holdout))
    });
    if searched.is_empty() || held.is_empty() {
        bail!(
            "{}: {} customers are too few to hold {:.0}% of them out; give a larger population",
            options.source.name(),
            population.len(),
            options.holdout * 100.0
        );
    }
    let threads = options.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let training = Sample {
        all: searched,
        threads,
    };
    let held = Sample { all: held, threads };
    let interrupted = || stop.load(Ordering::Relaxed);
    let deadline = started + options.budget;
    let spent = || interrupted() || Instant::now() >= deadline;
    let contender = |name: &str, policy| Contender {
        name: name.to_owned(),
        path: options.policy.clone(),
        policy,
    };

    // The base first, whatever the budget: every candidate is measured against it.
    let Some(report) = training.simulate(&[contender("base", base.clone())], &interrupted)? else {
        bail!("stopped by Ctrl-C before the base policy was scored; nothing written");
    };
    let customers = report.population.customers;
    let score = |policy: &PolicyReport| Score {
        violation: options.constraints.violation(policy, customers),
        objective: objective(policy),
    };
    let base_train = report.policies[0].clone();
    let start_score = score(&base_train);
    let mut scored: HashMap<Vec<i64>, PolicyReport> = HashMap::new();
    scored.insert(space.base(), base_train.clone());
    let mut best_share = (start_score.violation == 0.0).then_some(start_score.objective);
    let mut failure: Option<anyhow::Error> = None;
    progress(&Progress {
        candidates: 1,
        share: start_score.objective,
        best: best_share,
        elapsed: started.elapsed(),
    });
    let found = search::maximise(
        &space.ranges(),
        space.base(),
        start_score,
        |point, knob| space.matters(point, knob),
        |points| {
            let over = options
                .max_candidates
                .is_some_and(|most| scored.len() + points.len() > most);
            if over || spent() {
                return None;
            }
            let contenders: Result<Vec<Contender>, _> = points
                .iter()
                .map(|point| Ok(contender("candidate", space.policy(point)?.1)))
                .collect();
            let ran = contenders
                .map_err(|e: file::PolicyError| anyhow!("a candidate policy was refused: {e}"))
                .and_then(|contenders| Ok(training.simulate(&contenders, &spent)?));
            let report = match ran {
                Ok(Some(ran)) => ran,
                Ok(None) => return None,
                Err(e) => {
                    failure = Some(e);
                    return None;
                }
            };
            let mut scores = Vec::new();
            for (point, policy) in points.iter().zip(report.policies) {
                let s = score(&policy);
                if s.violation == 0.0 && best_share.is_none_or(|best| s.objective > best) {
                    best_share = Some(s.objective);
                }
                progress(&Progress {
                    candidates: scored.len() + 1,
                    share: s.objective,
                    best: best_share,
                    elapsed: started.elapsed(),
                });
                scored.insert(point.clone(), policy);
                scores.push(s);
            }
            Some(scores)
        },
    );
    if let Some(e) = failure {
        return Err(e);
    }
    let ended = if found.converged {
        Ended::Converged
    } else if interrupted() {
        Ended::Interrupted
    } else if Instant::now() >= deadline {
        Ended::Budget
    } else {
        Ended::Candidates
    };
    let best_train = &scored[&found.point];
    if found.score.violation > 0.0 {
        bail!(
            "no policy tried keeps the constraints ({} tried; the base has {}; the closest {}); \
             nothing written",
            found.evaluated,
            options
                .constraints
                .broken(&base_train, customers)
                .join(", "),
            options.constraints.broken(best_train, customers).join(", ")
        );
    }

    // The held-out customers, never seen by the search: the base and the tuned policy side by side.
    let (_, tuned) = space.policy(&found.point)?;
    let base_name = format!("base ({})", file_name(&options.policy));
    let never = || false;
    let Some(held_report) = held.simulate(
        &[
            contender(&base_name, base),
            contender("tuned", tuned.clone()),
        ],
        &never,
    )?
    else {
        unreachable!("a run that is never cut finishes");
    };
    let measured = Measured {
        train: Figures::pair(&base_train, best_train, customers),
        held_out: Figures::pair(
            &held_report.policies[0],
            &held_report.policies[1],
            held_report.population.customers,
        ),
        searched: training.all.len(),
        held: held.all.len(),
        candidates: found.evaluated,
        ended,
    };
    // The held-out customers decide whether the search's best is kept: one that does worse there
    // than the base fitted the training customers, not the population, and the base is written —
    // unless the base itself breaks the limits asked for, when it is no fallback at all.
    let base_broke = options.constraints.broken(&base_train, customers);
    let generalised =
        !base_broke.is_empty() || measured.held_out.1.share >= measured.held_out.0.share;
    let (kept, kept_policy) = if generalised {
        (found.point.clone(), tuned)
    } else {
        let base_point = space.base();
        let (_, base_policy) = space.policy(&base_point)?;
        (base_point, base_policy)
    };
    let (document, changes) = space.edit(&kept, Some(&measured.effect()));
    let mut header = header(options, &changes, &measured);
    if !generalised {
        header = header.replace(
            NOTHING_CHANGED,
            &format!("{}\n", not_generalised(&measured)),
        );
    }
    let written = format!("{header}\n{document}");
    // What is written must read back as the policy that was measured.
    if file::parse(&written, &options.out.display().to_string())? != kept_policy {
        bail!("internal: the tuned file does not read back as the policy measured");
    }
    if let Some(path) = &options.chart {
        let title = format!(
            "Held-out customers: recovered revenue by day — {}",
            options.source.name()
        );
        chart::draw(path, &title, &held_report.curves())?;
    }
    write_atomically(&options.out, &written)
        .with_context(|| format!("cannot write {}", options.out.display()))?;
    let mut printed = table(&measured);
    let _ = writeln!(
        printed,
        "\n{} candidates in {:.1} s on {threads} threads; {}.",
        measured.candidates,
        started.elapsed().as_secs_f64(),
        ended.says()
    );
    if !generalised {
        printed += &not_generalised(&measured).replace("# ", "");
        printed += "\n";
    } else if !base_broke.is_empty() {
        let _ = writeln!(
            printed,
            "The base policy breaks the limits asked for ({}), so the best of the search that keeps \
             them is written, whatever it gives up against the base.",
            base_broke.join(", ")
        );
    } else if changes.is_empty() {
        printed += "No change beat the base policy: the file written is the base policy.\n";
    }
    for change in &changes {
        let _ = writeln!(printed, "  {}: {} → {}", change.key, change.was, change.now);
    }
    let _ = writeln!(printed, "Written: {}", options.out.display());
    if let Some(path) = &options.chart {
        let _ = writeln!(printed, "Chart: {}", path.display());
    }
    Ok(Tuned { printed, ended })
}

/// What a search found and measured: the base and the tuned policy on each part of the customers.
struct Measured {
    train: (Figures, Figures),
    held_out: (Figures, Figures),
    /// Customers searched and held out.
    searched: usize,
    held: usize,
    /// Candidates scored, the base included.
    candidates: usize,
    ended: Ended,
}

impl Measured {
    /// The effect of the changes on the held-out customers, in a few words.
    fn effect(&self) -> String {
        let (base, tuned) = &self.held_out;
        format!(
            "held-out customers: share of the oracle's revenue net of fees {} → {}, attempts per invoice \
             {:.2} → {:.2}",
            percent(base.share),
            percent(tuned.share),
            base.attempts,
            tuned.attempts
        )
    }
}

impl Ended {
    fn says(self) -> &'static str {
        match self {
            Ended::Converged => "converged (no knob moves at its finest step)",
            Ended::Budget => "stopped by the time budget",
            Ended::Candidates => "stopped at the most candidates asked for",
            Ended::Interrupted => "stopped by Ctrl-C: the best policy so far is written",
        }
    }
}

/// One policy's figures in the before/after table.
#[derive(Debug, Clone)]
struct Figures {
    share: f64,
    revenue: BTreeMap<String, i64>,
    attempts: f64,
    nudges: f64,
    lost: u64,
    lost_share: f64,
    breaches: u64,
}

impl Figures {
    fn of(report: &PolicyReport, customers: u64) -> Self {
        Self {
            share: objective(report),
            revenue: report.recovered_revenue.clone(),
            attempts: report.attempts_per_invoice,
            nudges: report.nudges_per_invoice,
            lost: report.lost_to_nagging,
            lost_share: lost_share(report, customers),
            breaches: report.breaches,
        }
    }

    fn pair(base: &PolicyReport, tuned: &PolicyReport, customers: u64) -> (Self, Self) {
        (Self::of(base, customers), Self::of(tuned, customers))
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn money(revenue: &BTreeMap<String, i64>) -> String {
    let parts: Vec<String> = revenue
        .iter()
        .map(|(currency, amount)| format_amount(*amount, currency, "en"))
        .collect();
    parts.join(" + ")
}

/// The before/after table: base and tuned, on the training and the held-out customers.
fn table(measured: &Measured) -> String {
    let (train, test) = (&measured.train, &measured.held_out);
    let columns = [&train.0, &train.1, &test.0, &test.1];
    let row = |label: &str, cell: &dyn Fn(&Figures) -> String| {
        let mut cells = vec![label.to_owned()];
        cells.extend(columns.iter().map(|f| cell(f)));
        cells
    };
    let mut rows = vec![
        vec![
            String::new(),
            "training: base".to_owned(),
            "tuned".to_owned(),
            "held-out: base".to_owned(),
            "tuned".to_owned(),
        ],
        row("share of the oracle's revenue, net of fees", &|f| {
            percent(f.share)
        }),
    ];
    let currencies: Vec<&String> = {
        let mut all: Vec<&String> = columns.iter().flat_map(|f| f.revenue.keys()).collect();
        all.sort();
        all.dedup();
        all
    };
    for currency in currencies {
        rows.push(row(&format!("recovered revenue, {currency}"), &|f| {
            format_amount(
                f.revenue.get(currency).copied().unwrap_or(0),
                currency,
                "en",
            )
        }));
    }
    rows.push(row("attempts per invoice", &|f| {
        format!("{:.2}", f.attempts)
    }));
    rows.push(row("nudges per invoice", &|f| format!("{:.2}", f.nudges)));
    rows.push(row("customers lost to nagging", &|f| {
        format!("{} ({:.1}%)", f.lost, f.lost_share * 100.0)
    }));
    rows.push(row("network-rule breaches", &|f| f.breaches.to_string()));
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = format!(
        "{} customers searched, {} held out.\n\n",
        measured.searched, measured.held
    );
    for cells in &rows {
        let mut line = format!("{:w$}", cells[0], w = widths[0]);
        for (cell, width) in cells.iter().zip(&widths).skip(1) {
            let _ = write!(line, "  {cell:>width$}");
        }
        text += line.trim_end();
        text += "\n";
    }
    text
}

/// The comment block the tuned file starts with: where it came from and what it measured.
fn header(options: &Options, changes: &[Change], measured: &Measured) -> String {
    let line = |label: &str, (base, tuned): &(Figures, Figures)| {
        format!(
            "# {label}: share of the oracle's revenue net of fees {} → {}; recovered {} → {};\n\
             #   attempts per invoice {:.2} → {:.2}; nudges per invoice {:.2} → {:.2};\n\
             #   lost to nagging {:.1}% → {:.1}%; network-rule breaches {} → {}.\n",
            percent(base.share),
            percent(tuned.share),
            money(&base.revenue),
            money(&tuned.revenue),
            base.attempts,
            tuned.attempts,
            base.nudges,
            tuned.nudges,
            base.lost_share * 100.0,
            tuned.lost_share * 100.0,
            base.breaches,
            tuned.breaches,
        )
    };
    let mut text = format!(
        "# Tuned by `recoup tune` from {} on {}: {} candidates, {}.\n\
         # {} customers searched, {} held out (never seen by the search).\n",
        options.policy.display(),
        options.source.name(),
        measured.candidates,
        measured.ended.says(),
        measured.searched,
        measured.held
    );
    text += &line("Held-out customers", &measured.held_out);
    text += &line("Training customers", &measured.train);
    text += &match changes.len() {
        0 => NOTHING_CHANGED.to_owned(),
        1 => "# 1 value changed: a \"tuned:\" comment above it says what it was.\n".to_owned(),
        n => format!("# {n} values changed: a \"tuned:\" comment above each says what it was.\n"),
    };
    text
}

/// The file's word when the base is written unchanged because no candidate beat it.
const NOTHING_CHANGED: &str = "# Nothing changed: no candidate beat the base policy.\n";

/// Why the base was written although the search found a better policy for its customers.
fn not_generalised(measured: &Measured) -> String {
    let (base, tuned) = &measured.held_out;
    format!(
        "# The base policy is kept: the best of the search did worse on the held-out customers \
         ({} → {} of the oracle's revenue net of fees), so it fitted the searched customers, not \
         the population. A larger population (or a different --holdout) may find a change that \
         holds.",
        percent(base.share),
        percent(tuned.share)
    )
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader sees the
/// old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_file_name(format!(".{}.{}.tmp", file_name(path), std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

#[cfg(test)]
mod tests;
