//! `recoup serve`: the service, until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Failure, environment, user};
use crate::config::Settings;
use crate::server::{Application, Role};
use crate::telemetry;

pub(super) async fn run(config: Option<PathBuf>, role: Role) -> Result<ExitCode, Failure> {
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    telemetry::init_logging(settings.log.format);
    tracing::info!(
        ?role,
        listen = %settings.server.listen,
        redis = %settings.redis.redacted_url(),
        secrets = settings.secrets.webhook_secrets.len(),
        test_clock = settings.clock.test,
        "recoup starting"
    );
    let app = Application::build(&settings, role).await.map_err(user)?;
    app.run_until(shutdown_signal())
        .await
        .context("the HTTP server failed")
        .map_err(Failure::Internal)?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what container runtimes send).
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}
