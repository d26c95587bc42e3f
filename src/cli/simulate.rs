//! `recoup simulate`: the real policy over a population of failed invoices on a virtual clock
//! ([`crate::sim`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, user};
use crate::cli::output::out;
use crate::sim;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The policy file to try.
    #[arg(long, value_name = "PATH")]
    policy: PathBuf,
    /// A policy file to compare it with, side by side (the table's difference column is the
    /// first minus this one).
    #[arg(long, value_name = "PATH")]
    vs: Option<PathBuf>,
    #[command(flatten)]
    population: PopulationArgs,
    /// Also write the population simulated to FILE (JSON Lines), so others can run the same.
    #[arg(long, value_name = "FILE")]
    write_population: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Draw each policy's cumulative recovered revenue by day into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Learning on or off in every policy simulated [default: as each policy's [learning] says].
    /// The policy under test, when it learns, is also run with learning off, as "(static)".
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    learn: Option<bool>,
    /// Start learning policies from evidence exported with `recoup learn export`.
    #[arg(long, value_name = "FILE")]
    warm: Option<PathBuf>,
    /// After the table, tell the first N breaches of each policy (by invoice id): the rule, the
    /// attempt and the tries on the card that made it break the rule.
    #[arg(long, value_name = "N")]
    explain_breaches: Option<usize>,
    /// Write what the learning policy learned over the run to FILE (`recoup learn import` reads
    /// it), so a deployment can start from a simulation.
    #[arg(long, value_name = "FILE")]
    export_evidence: Option<PathBuf>,
    /// Simulating threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
}

#[derive(clap::Args)]
pub struct PopulationArgs {
    /// A population file: JSON Lines, one failed invoice per line in any order
    /// (docs/reference/population.md).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    population: Option<PathBuf>,
    /// Simulate a synthetic population of N invoices instead (docs/user-guide/synthetic-population.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    synthetic: Option<u64>,
    /// The synthetic population's seed: the same seed gives the same population, and the same
    /// report.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Which synthetic population: standard (paid on the 1st and 15th, the month's end, Fridays,
    /// early morning) or later (the same customers paid 24 days and 4 hours later).
    #[arg(long, value_enum, default_value_t = sim::synthetic::Profile::Standard, requires = "synthetic")]
    profile: sim::synthetic::Profile,
}

impl PopulationArgs {
    pub(super) fn source(self) -> sim::command::Source {
        match (self.population, self.synthetic) {
            (Some(path), _) => sim::command::Source::File(path),
            (None, Some(invoices)) => sim::command::Source::Synthetic {
                invoices,
                seed: self.seed,
                profile: self.profile,
            },
            (None, None) => unreachable!("clap requires one of --population and --synthetic"),
        }
    }
}

pub(super) fn run(args: SimulateArgs) -> Result<ExitCode, Failure> {
    let options = sim::command::Options {
        policy: args.policy,
        vs: args.vs,
        source: args.population.source(),
        write_population: args.write_population,
        json: args.json,
        chart: args.chart,
        threads: args.threads.and_then(|n| usize::try_from(n).ok()),
        learn: args.learn,
        explain_breaches: args.explain_breaches,
        export_evidence: args.export_evidence,
        warm: args.warm,
    };
    let printed = sim::command::run(&options).map_err(user)?;
    out!("{printed}");
    Ok(ExitCode::SUCCESS)
}

fn on_off(word: &str) -> Result<bool, String> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{word:?}: expected on or off")),
    }
}
