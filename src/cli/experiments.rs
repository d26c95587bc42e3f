//! `recoup experiments`: what each arm of the policy's experiment recovered against its holdout,
//! from the counters in the same Redis as `serve` (`docs/user-guide/experiments.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Failure, environment, user};
use crate::cli::output::{out, outln};
use crate::config::{self, Settings};
use crate::policy::experiment::report;
use crate::store::{self, RedisStore};

pub(super) async fn run(json: bool, config: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let policy = config::policy::for_service(&settings.policy).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    let reports = store::experiment_reports(&store, &policy)
        .await
        .map_err(user)?;
    if json {
        let printed = serde_json::to_string_pretty(&serde_json::json!({ "experiments": reports }))
            .map_err(|e| Failure::Internal(e.into()))?;
        outln!("{printed}");
        return Ok(ExitCode::SUCCESS);
    }
    if reports.is_empty() {
        outln!(
            "the policy ({}) runs no experiment: add an [[experiment]] table \
             (docs/user-guide/experiments.md)",
            settings.policy.path.display()
        );
    }
    for report in &reports {
        out!("{}", report::render(report));
    }
    Ok(ExitCode::SUCCESS)
}
