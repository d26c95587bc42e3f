//! Forgetting cases whose dunning is over: Redis expires such a case after
//! `redis.case_retention_secs` (see [`crate::store::Cases::forgotten_at`]), and this loop removes
//! its customer and subscription index entries afterwards, every scan interval, so an index never
//! keeps pointing at cases long gone.

use std::sync::Arc;

use tokio::sync::watch;

use super::Worker;
use crate::store::Store;

pub(super) async fn sweep<S: Store>(worker: Arc<Worker<S>>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(worker.settings.scan_interval()) => {},
            _ = stopped.wait_for(|s| *s) => return,
        }
        match worker.store.sweep_forgotten().await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "cases past their retention forgotten"),
            Err(e) => tracing::warn!("forgotten cases not swept: {e}"),
        }
    }
}
