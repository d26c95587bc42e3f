//! `recoup policy check`: validates a policy file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Failure, user};
use crate::config::{self, DEFAULT_POLICY_PATH};
use crate::policy;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: print what it sets, or the file, line, key and what is allowed.
    Check {
        /// The policy file [default: RECOUP_POLICY, else config/policy.toml].
        path: Option<PathBuf>,
    },
}

pub(super) fn check(path: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let path = path
        .or_else(|| std::env::var_os("RECOUP_POLICY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY_PATH));
    let policy = config::policy::load(&path).map_err(user)?;
    println!(
        "{}: ok — {}",
        path.display(),
        policy::file::describe(&policy)
    );
    Ok(ExitCode::SUCCESS)
}
