//! `recoup clock show` and `recoup clock advance`: the test clock, read from the same Redis as
//! `serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{Failure, environment, user};
use crate::cli::output::outln;
use crate::clock::Clock;
use crate::config::Settings;
use crate::policy::duration::parse_duration;
use crate::store::RedisStore;

#[derive(Subcommand)]
pub enum ClockCommand {
    /// Print the scheduler's now and the test clock's offset.
    Show {
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Move the test clock forward (3d, 12h, 90m, 45s, 1d12h) and wait until every timer that became
    /// due has been claimed by a worker.
    Advance {
        /// How far: a number with d, h, m or s, e.g. 3d.
        #[arg(value_parser = parse_duration, allow_hyphen_values = true)]
        duration: i64,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// Prints the clock, after moving it `advance` seconds forward when asked to.
pub(super) async fn run(
    config: Option<PathBuf>,
    advance: Option<i64>,
) -> Result<ExitCode, Failure> {
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    let clock = Clock::new(store, settings.clock.test);
    let reading = match advance {
        Some(seconds) => clock.advance(seconds).await.map_err(user)?,
        None => clock.read().await.map_err(user)?,
    };
    let kind = if clock.is_test() {
        "test clock"
    } else {
        "wall clock; the test clock is off"
    };
    outln!(
        "now {} (offset {} s, {kind})",
        reading.now,
        reading.offset_seconds
    );
    Ok(ExitCode::SUCCESS)
}
