//! `recoup simulate` as a command: which policies, which population, and where the results go.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

use super::population::{Customers, FailedInvoice, PopulationError};
use super::report::Report;
use super::{BASELINE, BASELINE_PATH, Contender, chart, synthetic};
use crate::policy::{Evidence, file};

/// Where the population comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Synthetic {
        invoices: u64,
        seed: u64,
        profile: synthetic::Profile,
    },
}

impl Source {
    /// The population's name in reports: its path, or what made it.
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Synthetic {
                invoices,
                seed,
                profile: synthetic::Profile::Standard,
            } => format!("synthetic, {invoices} invoices, seed {seed}"),
            Source::Synthetic {
                invoices,
                seed,
                profile: synthetic::Profile::Later,
            } => format!("synthetic (later pay), {invoices} invoices, seed {seed}"),
        }
    }

    /// Every customer in memory, in the order of their first failure (the order a learning policy
    /// plays them in): for a run that simulates the same customers many times.
    pub fn load(&self) -> anyhow::Result<Vec<Vec<FailedInvoice>>> {
        match self {
            Source::File(path) => {
                let file = File::open(path)
                    .with_context(|| format!("cannot read the population {}", path.display()))?;
                let customers = Customers::read(file)?;
                Ok(customers.iter().collect::<Result<_, _>>()?)
            }
            Source::Synthetic {
                invoices,
                seed,
                profile,
            } => Ok(synthetic::Arrivals::new(*invoices, *seed)
                .customers()
                .map(|c| profile.apply(c))
                .collect()),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: PathBuf,
    pub vs: Option<PathBuf>,
    pub source: Source,
    pub write_population: Option<PathBuf>,
    pub json: bool,
    pub chart: Option<PathBuf>,
    /// Simulating threads; one per core when `None`.
    pub threads: Option<usize>,
    /// Learning on or off in every policy simulated; as each policy says when `None`.
    pub learn: Option<bool>,
    /// Evidence to start learning policies from (`recoup learn export`).
    pub warm: Option<PathBuf>,
    /// Tell this many breaches of each policy in full.
    pub explain_breaches: Option<usize>,
    /// Write what the (first) learning policy learned to this file, for `recoup learn import`.
    pub export_evidence: Option<PathBuf>,
}

/// Runs the simulation and returns what to print. Every error is the user's to fix (a file that
/// cannot be read or written, a bad policy or population line); nothing is left half-written.
pub fn run(options: &Options) -> anyhow::Result<String> {
    let contenders = contenders(options)?;
    let threads = options.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut written = options
        .write_population
        .as_deref()
        .map(|path| {
            File::create(path)
                .map(BufWriter::new)
                .with_context(|| format!("cannot write the population to {}", path.display()))
        })
        .transpose()?;
    let started = Instant::now();
    let mut write = |invoices: &[FailedInvoice]| {
        let Some(out) = written.as_mut() else {
            return Ok(());
        };
        for invoice in invoices {
            serde_json::to_writer(&mut *out, invoice).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
        Ok::<(), PopulationError>(())
    };
    let outcome = match &options.source {
        Source::File(path) => {
            let file = File::open(path)
                .with_context(|| format!("cannot read the population {}", path.display()))?;
            Customers::read(file).and_then(|customers| {
                super::run(&contenders, || customers.iter(), threads, &mut write)
            })
        }
        Source::Synthetic {
            invoices,
            seed,
            profile,
        } => {
            if contenders.iter().any(|c| c.policy.learns()) {
                // A learning policy plays customers in the order of their first failure; the
                // generator makes them in no such order.
                let arrivals = synthetic::Arrivals::new(*invoices, *seed);
                let customers = || arrivals.customers().map(|c| Ok(profile.apply(c)));
                super::run(&contenders, customers, threads, &mut write)
            } else {
                let made = || synthetic::population(*invoices, *seed).map(|c| profile.apply(c));
                super::run(&contenders, || made().map(Ok), threads, &mut write)
            }
        }
    };
    let source = options.source.name();
    let finished = outcome.and_then(|outcome| {
        if let Some(out) = written.as_mut() {
            out.flush()?;
        }
        Ok(outcome)
    });
    let outcome = match finished {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(path) = &options.write_population {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    if outcome.population.invoices == 0 {
        bail!("the population has no invoices");
    }
    let elapsed = started.elapsed();
    if let Some(path) = &options.export_evidence {
        let Some((_, evidence)) = outcome.learned.first() else {
            bail!(
                "--export-evidence: no policy simulated learns ([learning] enabled = false, or --learn off)"
            );
        };
        std::fs::write(path, evidence.export())
            .with_context(|| format!("cannot write the evidence to {}", path.display()))?;
    }
    let report = Report::new(source, &contenders, &outcome.population, &outcome.tallies);
    if let Some(path) = &options.chart {
        let title = format!(
            "Recovered revenue by day after the failure — {}",
            report.population.source
        );
        chart::draw(path, &title, &report.curves())?;
    }
    let mut printed = if options.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.to_string()
    };
    if !options.json {
        let policies = match contenders.len() {
            1 => "1 policy".to_owned(),
            n => format!("{n} policies"),
        };
        printed += &format!(
            "\n{} invoices × {policies} simulated in {:.1} s on {threads} threads.\n",
            outcome.population.invoices,
            elapsed.as_secs_f64()
        );
        if let Some(path) = &options.chart {
            printed += &format!("Chart: {}\n", path.display());
        }
        if let Some(n) = options.explain_breaches {
            printed += &report.explain_breaches(n);
        }
    }
    Ok(printed)
}

/// The policy under test, the one it is compared with, its static twin when it learns (the same
/// policy with learning off: second when nothing else is compared, so the difference column is
/// what learning adds), and the baseline, in that order; the baseline is left out when
/// one of the others is the very same policy. `--learn` turns learning on or off in every policy
/// given; `--warm` starts each learning one from exported evidence.
fn contenders(options: &Options) -> anyhow::Result<Vec<Contender>> {
    let warm = options
        .warm
        .as_deref()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the evidence {}", path.display()))?;
            Evidence::parse(&text)
                .map(Arc::new)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        })
        .transpose()?;
    let mut paths = vec![options.policy.as_path()];
    paths.extend(options.vs.as_deref());
    let mut contenders = Vec::new();
    let mut statics = Vec::new();
    for (n, path) in paths.into_iter().enumerate() {
        let mut policy = crate::config::policy::load(path, None)?;
        if let Some(learn) = options.learn {
            policy.learning.enabled = learn;
        }
        if let Some(evidence) = &warm {
            policy.evidence = Arc::clone(evidence);
        }
        let twin = (n == 0 && policy.learning.enabled).then(|| {
            let mut twin = policy.clone();
            twin.learning.enabled = false;
            twin
        });
        contenders.push(Contender {
            name: name(path, name_clashes(&contenders, path)),
            path: path.to_owned(),
            policy,
        });
        if let Some(twin) = twin {
            let twin = Contender {
                name: format!("{} (static)", contenders[0].name),
                path: path.to_owned(),
                policy: twin,
            };
            statics.push(twin);
        }
    }
    contenders.extend(statics);
    let baseline = file::parse(BASELINE, BASELINE_PATH)?;
    if contenders.iter().all(|c| c.policy != baseline) {
        contenders.push(Contender {
            name: "baseline 3/5/7".to_owned(),
            path: PathBuf::from(format!("{BASELINE_PATH} (built in)")),
            policy: baseline,
        });
    }
    Ok(contenders)
}

/// Whether another contender's file has the same file name (so names must be paths).
fn name_clashes(contenders: &[Contender], path: &Path) -> bool {
    contenders
        .iter()
        .any(|c| c.path.file_name() == path.file_name())
}

/// A policy's column heading: its file name, or its path when two share a name.
fn name(path: &Path, clash: bool) -> String {
    match path.file_name() {
        Some(name) if !clash => name.to_string_lossy().into_owned(),
        _ => path.display().to_string(),
    }
}
