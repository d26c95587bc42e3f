//! Turns per case within one worker process: inputs for the same invoice run one after another.
//!
//! Correctness does not depend on this — compare-and-set in the store does that, across processes
//! too. It is about throughput: sixty-four tasks racing on one case would mostly redo each other's
//! work. A case's lock exists only while someone holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as TurnMutex, OwnedMutexGuard};

/// The cases this process is working on right now.
#[derive(Default)]
pub(super) struct CaseLocks {
    held: Mutex<HashMap<String, Arc<TurnMutex<()>>>>,
}

/// This task's turn on a case; the next waiting task goes when it drops.
pub(super) struct Turn<'a> {
    locks: &'a CaseLocks,
    invoice_id: String,
    guard: Option<OwnedMutexGuard<()>>,
    waited: bool,
}

impl Turn<'_> {
    /// Whether another task had the case first, so this one had to wait for its turn.
    pub(super) fn waited(&self) -> bool {
        self.waited
    }
}

impl CaseLocks {
    pub(super) async fn turn(&self, invoice_id: &str) -> Turn<'_> {
        let lock = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(invoice_id.to_owned())
            .or_default()
            .clone();
        let (guard, waited) = match lock.clone().try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (lock.lock_owned().await, true),
        };
        Turn {
            locks: self,
            invoice_id: invoice_id.to_owned(),
            guard: Some(guard),
            waited,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map's own reference left: nobody holds or waits for this case any more.
        if held
            .get(&self.invoice_id)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.invoice_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_case_at_a_time_and_nothing_left_behind() {
        let locks = Arc::new(CaseLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|n| {
                let (locks, inside) = (locks.clone(), inside.clone());
                tokio::spawn(async move {
                    let case = if n % 2 == 0 { "in_even" } else { "in_odd" };
                    let _turn = locks.turn(case).await;
                    if case == "in_even" {
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two at once");
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(locks.held.lock().unwrap().is_empty());
    }
}
