//! `recoup simulate`: what a policy would recover, before it touches a real customer.
//!
//! The policy core is pure, so the very [`crate::policy::decide`] that runs in production can run a
//! population of failed invoices on a virtual clock: no Redis, no HTTP, no sleeping. The pieces:
//!
//! - [`population`] reads the JSON Lines population (`docs/reference/population.md`), customer by customer;
//!   [`synthetic`] makes one from a seed, with documented, sourced parameters;
//! - [`world`] plays Stripe and the customer for one customer's invoices under one policy, and
//!   reveals the truth only the way Stripe would;
//! - [`oracle`] says what a policy that knew the truth could recover: the yardstick;
//! - [`tally`] keeps sums only, so memory does not grow with the invoices simulated;
//! - [`report`] turns tallies into the printed table, the JSON and the [`chart`].
//!
//! [`run`] streams the population once through every policy compared: a reader feeds chunks of
//! customers to one simulating thread per core, each keeping its own tallies, summed at the end
//! (sums add up in any order, so every run of the same population gives the same report).

pub mod chart;
pub mod command;
pub mod oracle;
pub mod population;
pub mod report;
pub mod synthetic;
pub mod tally;
pub mod world;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use self::population::{FailedInvoice, PopulationError};
use self::tally::{Population, Tally};
use crate::policy::Policy;

/// The policy file of the fixed "retry after 3, 5 and 7 days" schedule every report compares with.
pub const BASELINE_PATH: &str = "config/baseline-3-5-7.toml";
/// The same file, built in, for a recoup run outside its source tree.
pub const BASELINE: &str = include_str!("../../config/baseline-3-5-7.toml");

/// Customers handed to a simulating thread at a time: enough to make the hand-over cheap.
const CHUNK: usize = 256;

/// A policy under test: its name in the report, where it came from, and the policy itself.
#[derive(Debug, Clone)]
pub struct Contender {
    pub name: String,
    pub path: PathBuf,
    pub policy: Policy,
}

/// What a run found: the population and one tally per contender, in their order.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub population: Population,
    pub tallies: Vec<Tally>,
}

impl Outcome {
    fn empty(contenders: usize) -> Self {
        Self {
            population: Population::default(),
            tallies: vec![Tally::default(); contenders],
        }
    }

    fn add(&mut self, contenders: &[Contender], invoices: &[FailedInvoice]) {
        self.population.add(invoices);
        for (contender, tally) in contenders.iter().zip(&mut self.tallies) {
            let result = world::simulate(&contender.policy, invoices);
            tally.add(&contender.policy, invoices, &result);
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.population.merge(&other.population);
        for (mine, theirs) in self.tallies.iter_mut().zip(&other.tallies) {
            mine.merge(theirs);
        }
    }
}

/// Runs every contender over `customers` on `threads` simulating threads (the calling thread
/// reads). A bad line stops the run with its error; `each` sees every customer as it is read (to
/// write the population out, say) and may stop the run too.
pub fn run<I, F>(
    contenders: &[Contender],
    customers: I,
    threads: usize,
    mut each: F,
) -> Result<Outcome, PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
    F: FnMut(&[FailedInvoice]) -> Result<(), PopulationError>,
{
    let (send, receive) = mpsc::sync_channel::<Vec<Vec<FailedInvoice>>>(threads.max(1) * 2);
    let receive = Arc::new(Mutex::new(receive));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let receive = receive.clone();
                scope.spawn(move || {
                    let mut outcome = Outcome::empty(contenders.len());
                    loop {
                        let chunk = receive.lock().map(|r| r.recv());
                        let Ok(Ok(chunk)) = chunk else {
                            return outcome;
                        };
                        for invoices in &chunk {
                            outcome.add(contenders, invoices);
                        }
                    }
                })
            })
            .collect();
        let read = (|| {
            let mut chunk = Vec::with_capacity(CHUNK);
            for customer in customers {
                let customer = customer?;
                each(&customer)?;
                chunk.push(customer);
                if chunk.len() == CHUNK {
                    // The workers only stop early by panicking, which the join below reports.
                    let _ = send.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            }
            let _ = send.send(chunk);
            Ok(())
        })();
        drop(send);
        let mut total = Outcome::empty(contenders.len());
        for worker in workers {
            match worker.join() {
                Ok(outcome) => total.merge(&outcome),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        read.map(|()| total)
    })
}
#[cfg(test)]
mod tests;
