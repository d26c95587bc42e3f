//! `recoup tune`: searches a policy file's knobs for the policy that recovers the most on a
//! population ([`crate::sim::tune`]); this module is its flags, its progress display and Ctrl-C.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::simulate::PopulationArgs;
use super::{Failure, user};
use crate::cli::output::out;
use crate::policy::duration::parse_duration;
use crate::sim::tune::{self, Constraints, Ended, Progress};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// The policy file to start from: the search turns its knobs, and the tuned file is this file
    /// with the values that changed replaced.
    #[arg(long, value_name = "PATH", default_value = "config/policy.toml")]
    policy: PathBuf,
    #[command(flatten)]
    population: PopulationArgs,
    /// Keep recoup's own attempts per invoice at or under X.
    #[arg(long, value_name = "X", value_parser = positive)]
    max_attempts_per_invoice: Option<f64>,
    /// Keep the customers lost to nagging at or under this share of all customers (0.01 = 1%).
    #[arg(long, value_name = "SHARE", value_parser = share)]
    max_lost_to_nagging: Option<f64>,
    /// Wall time for the search, such as 60s, 5m or 1h; the held-out run comes after it.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = budget)]
    budget: Duration,
    /// Stop after scoring N candidate policies (the base included): a search cut short this way
    /// ends at the same policy on every machine, where a time budget depends on the machine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    max_candidates: Option<u64>,
    /// The share of customers held out of the search, to measure the tuned policy on customers it
    /// was not tuned on.
    #[arg(long, value_name = "SHARE", default_value_t = 0.5, value_parser = holdout)]
    holdout: f64,
    /// Simulating threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Where to write the tuned policy file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Draw the base and the tuned policy's recovered revenue by day on the held-out customers
    /// into an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
}

pub(super) async fn run(args: TuneArgs) -> Result<ExitCode, Failure> {
    let options = tune::Options {
        policy: args.policy,
        source: args.population.source(),
        constraints: Constraints {
            max_attempts_per_invoice: args.max_attempts_per_invoice,
            max_lost_to_nagging: args.max_lost_to_nagging,
        },
        holdout: args.holdout,
        budget: args.budget,
        max_candidates: args.max_candidates.and_then(|n| usize::try_from(n).ok()),
        threads: args.threads.and_then(|n| usize::try_from(n).ok()),
        out: args.out,
        chart: args.chart,
    };
    // Registered before the search starts, so a Ctrl-C at any moment stops it instead of killing
    // the process: the first one ends the search (the best policy so far is written), a second
    // one quits at once without writing.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::Internal(e.into()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            interrupts.recv().await;
            stop.store(true, Ordering::Relaxed);
            eprintln!(
                "recoup: stopping the search; the best policy so far is written after the \
                 held-out run (Ctrl-C again quits without writing)"
            );
            interrupts.recv().await;
            std::process::exit(130);
        }
    });
    let budget = options.budget;
    let searched = tokio::task::spawn_blocking(move || {
        let mut view = ProgressView::new(budget);
        let tuned = tune::run(&options, &stop, &mut |p| view.show(p));
        view.finish();
        tuned
    })
    .await
    .map_err(|e| Failure::Internal(e.into()))?;
    watcher.abort();
    let tuned = searched.map_err(user)?;
    out!("{}", tuned.printed);
    Ok(match tuned.ended {
        Ended::Interrupted => ExitCode::from(130),
        Ended::Converged | Ended::Budget | Ended::Candidates => ExitCode::SUCCESS,
    })
}

/// Progress on stderr: a bar over the time budget on a terminal, a plain line per candidate
/// otherwise (a log, a CI job).
enum ProgressView {
    Bar(ProgressBar),
    Lines,
}

impl ProgressView {
    fn new(budget: Duration) -> Self {
        if !std::io::stderr().is_terminal() {
            return ProgressView::Lines;
        }
        let bar = ProgressBar::new(budget.as_millis().try_into().unwrap_or(u64::MAX));
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {elapsed:>4} of {prefix} [{wide_bar}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("{}s", budget.as_secs()));
        bar.enable_steady_tick(Duration::from_millis(200));
        ProgressView::Bar(bar)
    }

    fn show(&mut self, progress: &Progress) {
        let best = progress
            .best
            .map_or_else(|| "none keeps the constraints yet".to_owned(), percent);
        let line = format!(
            "candidate {}: share {} (best {best})",
            progress.candidates,
            percent(progress.share)
        );
        match self {
            ProgressView::Bar(bar) => {
                bar.set_position(progress.elapsed.as_millis().try_into().unwrap_or(u64::MAX));
                bar.set_message(line);
            }
            ProgressView::Lines => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let ProgressView::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!("{text:?}: expected a number above 0")),
    }
}

fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!(
            "{text:?}: expected a share from 0 to 1, such as 0.01 for 1%"
        )),
    }
}

fn holdout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1.0 => Ok(x),
        _ => Err(format!(
            "{text:?}: expected a share above 0 and below 1, such as 0.5 for half the customers"
        )),
    }
}

fn budget(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(seconds) if seconds >= 1 => Ok(Duration::from_secs(seconds.unsigned_abs())),
        Ok(_) => Err(format!("{text:?}: at least 1s")),
        Err(e) => Err(e),
    }
}
