//! The evidence a worker times retries by (`docs/design/learning.md`): every worker adds each of
//! its attempts' outcomes to the store as it learns them ([`super::engine`]), and reads the whole
//! evidence back when it starts and every `worker.evidence_secs` after (a minute by default), so
//! what any worker learned reaches every worker's next plan within that, and survives restarts.
//!
//! Reading also fades it: a group whose attempts reached [`FADE_AT`] has every count halved and
//! written back, so recent outcomes weigh at least as much as everything before them. Two workers
//! fading at once halve twice, and an attempt counted between a read and the write-back is lost:
//! both only make old evidence fade a little faster, which is harmless for advice.

use std::sync::Arc;

use tokio::sync::watch;

use super::Worker;
use crate::policy::learning::FADE_AT;
use crate::store::Store;
use crate::telemetry::metric;

pub(super) async fn refresh<S: Store>(worker: Arc<Worker<S>>, mut stopped: watch::Receiver<bool>) {
    loop {
        match worker.store.load_evidence().await {
            Ok(mut evidence) => {
                let faded = evidence.fade(FADE_AT);
                if faded && let Err(e) = worker.store.replace_evidence(&evidence).await {
                    tracing::warn!("faded evidence not written back: {e}");
                }
                let attempts: u32 = evidence
                    .groups
                    .iter()
                    .filter(|(group, _)| group.country.is_none())
                    .map(|(_, counts)| counts.tries[0])
                    .sum();
                metrics::gauge!(metric::EVIDENCE_ATTEMPTS).set(f64::from(attempts));
                let current = worker.policy();
                if *current.evidence != evidence {
                    let mut next = (*current).clone();
                    next.evidence = Arc::new(evidence);
                    *worker.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                }
            }
            Err(e) => {
                tracing::warn!("evidence not read; retries keep the evidence read before: {e}")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(worker.settings.evidence_interval()) => {},
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}
