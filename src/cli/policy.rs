//! `recoup policy check`: validates a policy file and the card networks' rules it runs under.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Failure, user};
use crate::cli::output::outln;
use crate::config::{self, DEFAULT_POLICY_PATH};
use crate::policy;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file and the card networks' rules: print what the policy sets and the
    /// network rules in force today, with those that start or end in the next 90 days — or the
    /// file, line, key and what is allowed.
    Check {
        /// The policy file [default: RECOUP_POLICY, else config/policy.toml].
        path: Option<PathBuf>,
        /// Show the network rules as they stand on this UTC day (YYYY-MM-DD) instead of today.
        #[arg(long, value_name = "DAY")]
        on: Option<jiff::civil::Date>,
    },
}

pub(super) fn check(
    path: Option<PathBuf>,
    on: Option<jiff::civil::Date>,
) -> Result<ExitCode, Failure> {
    let path = path
        .or_else(|| std::env::var_os("RECOUP_POLICY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY_PATH));
    let networks = std::env::var_os("RECOUP_NETWORKS").map(PathBuf::from);
    let policy = config::policy::load(&path, networks.as_deref()).map_err(user)?;
    outln!(
        "{}: ok — {}",
        path.display(),
        policy::file::describe(&policy)
    );
    let now = match on {
        Some(day) => day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| user(anyhow::anyhow!("--on {day}: {e}")))?
            .timestamp(),
        None => jiff::Timestamp::now(),
    };
    outln!(
        "\nnetwork rules in force on {} (from {}):",
        now.to_zoned(jiff::tz::TimeZone::UTC).date(),
        config::policy::networks_path(networks.as_deref())
            .map_or_else(|| "built in".to_owned(), |p| p.display().to_string())
    );
    for rule in policy.networks.in_force(now) {
        outln!("  {rule}");
    }
    let changes = policy.networks.changes(now, 90);
    if changes.is_empty() {
        outln!("no network rule starts or ends in the next 90 days");
    } else {
        outln!("starting or ending in the next 90 days:");
        for (day, change) in changes {
            outln!("  {day} {change}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
