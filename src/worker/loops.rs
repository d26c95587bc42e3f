//! Which of a process's long-running loops are still running, for `/readyz`.
//!
//! A loop is a task that should run until shutdown: the inbox consumer, the timer scheduler, the
//! daily scan, the metrics upkeep. One that panics (or ends by itself) leaves a process that still
//! answers `/healthz` and `/metrics` but no longer does its work; so each runs [watched](Loops::watch),
//! and a loop that ended before shutdown is recorded, which turns `/readyz` red naming it. It is
//! not restarted: whatever made it panic would most likely make it panic again, and an orchestrator
//! that sees the process unready (and an operator who reads why) is the better judge.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use tokio::task::JoinHandle;

/// The loops of one process that ended before they were told to stop.
#[derive(Clone, Default)]
pub struct Loops {
    dead: Arc<Mutex<Vec<DeadLoop>>>,
}

/// A loop that ended before shutdown, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLoop {
    pub name: &'static str,
    pub why: String,
}

impl Loops {
    /// Runs `task` as the loop `name`; if it panics, or returns while `stopping` says nobody asked
    /// it to, the loop is recorded as dead. Awaiting the handle awaits the loop.
    pub fn watch(
        &self,
        name: &'static str,
        stopping: impl Fn() -> bool + Send + 'static,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let loops = self.clone();
        tokio::spawn(async move {
            let ended = std::panic::AssertUnwindSafe(task).catch_unwind().await;
            let why = match ended {
                Err(panic) => format!("panicked: {}", super::panic_message(panic.as_ref())),
                Ok(()) if !stopping() => "ended by itself".to_owned(),
                Ok(()) => return,
            };
            tracing::error!(r#loop = name, %why, "a loop of this process died; /readyz now answers 503");
            loops
                .dead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(DeadLoop { name, why });
        })
    }

    /// The loops that died, in the order they did.
    pub fn dead(&self) -> Vec<DeadLoop> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_that_panics_or_ends_early_is_dead_and_one_stopped_is_not() {
        let loops = Loops::default();
        let panicked = loops.watch("timers", || false, async { panic!("end of time") });
        let ended = loops.watch("inbox", || false, async {});
        let stopped = loops.watch("scan", || true, async {});
        for handle in [panicked, ended, stopped] {
            handle.await.unwrap();
        }
        let dead = loops.dead();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0].name, "timers");
        assert!(dead[0].why.contains("end of time"), "{dead:?}");
        assert_eq!(dead[1].name, "inbox");
    }
}
