//! `recoup learn show|export|import`: what the learning policy has learned from recoup's own
//! attempts (`docs/design/learning.md`), read from the same Redis as `serve`, and moved between
//! a simulation, staging and production as a text file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::{Failure, environment, user};
use crate::cli::output::{out, outln};
use crate::config::Settings;
use crate::policy::Evidence;
use crate::policy::learning::{Counts, Funding, Group, Moment};
use crate::store::{Outcomes, RedisStore};

#[derive(Subcommand)]
pub enum LearnCommand {
    /// Print what has been learned, group by group: attempts, payments and the moments that
    /// paid best.
    Show {
        /// Only this country (ISO 3166-1 alpha-2, e.g. BR).
        #[arg(long)]
        country: Option<String>,
        /// Only cards of this funding.
        #[arg(long, value_parser = ["credit", "debit", "prepaid"])]
        funding: Option<String>,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Write everything learned to FILE (text, one line per group and feature value).
    Export {
        file: PathBuf,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Add the evidence in FILE (from `recoup learn export` or `recoup simulate --export-evidence`)
    /// to what has been learned; a bad line stops it with its number and nothing changes.
    Import {
        file: PathBuf,
        /// Replace what has been learned instead of adding to it.
        #[arg(long)]
        replace: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

pub(super) async fn run(command: LearnCommand) -> Result<ExitCode, Failure> {
    let config = match &command {
        LearnCommand::Show { config, .. }
        | LearnCommand::Export { config, .. }
        | LearnCommand::Import { config, .. } => config.clone(),
    };
    // The file is read before Redis is reached: a bad file is the user's to fix either way.
    let imported = match &command {
        LearnCommand::Import { file, .. } => Some(read(file)?),
        _ => None,
    };
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    let mut evidence = store.load_evidence().await.map_err(user)?;
    match command {
        LearnCommand::Show {
            country, funding, ..
        } => {
            let funding = funding.as_deref().and_then(Funding::parse);
            out!("{}", show(&evidence, country.as_deref(), funding));
        }
        LearnCommand::Export { file, .. } => {
            std::fs::write(&file, evidence.export())
                .map_err(|e| user(anyhow::anyhow!("cannot write {}: {e}", file.display())))?;
            outln!(
                "exported {} groups of evidence to {}",
                evidence.groups.len(),
                file.display()
            );
        }
        LearnCommand::Import { replace, file, .. } => {
            let imported = imported.unwrap_or_default();
            if replace {
                evidence = imported;
            } else {
                evidence.merge(&imported);
            }
            store.replace_evidence(&evidence).await.map_err(user)?;
            outln!(
                "imported {}: {} groups of evidence now",
                file.display(),
                evidence.groups.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(file: &Path) -> Result<Evidence, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| user(anyhow::anyhow!("cannot read {}: {e}", file.display())))?;
    Evidence::parse(&text).map_err(|e| user(anyhow::anyhow!("{}: {e}", file.display())))
}

/// The evidence as a table people can read: each group's attempts and payments, and its moments
/// that paid best and worst against the group's own rate; only `country`'s and `funding`'s, when
/// given.
pub fn show(evidence: &Evidence, country: Option<&str>, funding: Option<Funding>) -> String {
    let wanted = country.map(str::to_ascii_uppercase);
    let mut text = String::new();
    let groups: Vec<(&Group, &Counts)> = evidence
        .groups
        .iter()
        .filter(|(g, _)| wanted.is_none() || g.country == wanted)
        .filter(|(g, _)| funding.is_none() || g.funding == funding)
        .collect();
    if groups.is_empty() {
        return "nothing learned yet\n".to_owned();
    }
    text += "reason               country   funding   attempts   paid   rate   paid best                            paid worst\n";
    for (group, counts) in groups {
        let rate =
            |slot: usize| f64::from(counts.paid[slot]) / f64::from(counts.tries[slot].max(1));
        let base = rate(0);
        // Moments with enough attempts to say something, by how they paid against the group.
        let mut moments: Vec<(f64, usize)> = (1..counts.tries.len())
            .filter(|&s| counts.tries[s] >= 20)
            .map(|s| (rate(s), s))
            .collect();
        moments.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let tell = |m: &[(f64, usize)]| {
            m.iter()
                .map(|(r, s)| format!("{} {:.0}%", Moment::words(*s), r * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let best = tell(&moments[..moments.len().min(2)]);
        let worst = tell(&moments[moments.len().saturating_sub(2)..]);
        text += &format!(
            "{:<20} {:<9} {:<9} {:>8} {:>6} {:>5.1}%   {:<36} {}\n",
            group.reason.as_str(),
            group.country.as_deref().unwrap_or("all"),
            group.funding.map_or("all", Funding::as_str),
            counts.tries[0],
            counts.paid[0],
            base * 100.0,
            best,
            worst
        );
    }
    text
}
