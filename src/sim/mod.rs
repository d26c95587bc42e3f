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
//! [`run`] streams the population through every policy compared: policies that do not learn
//! side by side, a reader feeding chunks of customers to one simulating thread per core, each
//! keeping its own tallies, summed at the end (sums add up in any order, so every run of the same
//! population gives the same report); each learning policy on a virtual timeline of its own.

pub mod chart;
pub mod command;
pub mod oracle;
pub mod population;
pub mod report;
pub mod synthetic;
pub mod tally;
pub mod tune;
pub mod world;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use jiff::Timestamp;

use self::population::{FailedInvoice, PopulationError};
use self::tally::{Population, Tally};
use self::world::World;
use crate::policy::{Evidence, Policy};

pub use crate::policy::file::{BASELINE, BASELINE_PATH};

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
    /// What each learning contender had learned by the end, by its place among the contenders.
    pub learned: Vec<(usize, Evidence)>,
}

impl Outcome {
    fn empty(contenders: usize) -> Self {
        Self {
            population: Population::default(),
            tallies: vec![Tally::default(); contenders],
            learned: Vec::new(),
        }
    }

    fn add(&mut self, contenders: &[&Contender], invoices: &Arc<[FailedInvoice]>) {
        self.population.add(invoices);
        for (contender, tally) in contenders.iter().zip(&mut self.tallies) {
            let result = world::simulate(&contender.policy, Arc::clone(invoices));
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

/// Runs every contender over the customers `population()` yields (in the order of their first
/// failure), and returns their tallies in the contenders' order.
///
/// A policy that does not learn sees each customer alone, so customers are handed out in chunks
/// to `threads` simulating threads (the calling thread reads), each keeping its own tallies,
/// summed at the end. A learning policy's choices depend on what earlier attempts of *other*
/// customers came to, so each one plays every customer on one virtual timeline of its own, on a
/// thread of its own ([`in_time_order`]): the same population gives the same report on any number
/// of threads. A bad line stops the run with its error; `each` sees every customer as the
/// first pass reads it (to write the population out, say) and may stop the run too.
pub fn run<I, P, F>(
    contenders: &[Contender],
    population: P,
    threads: usize,
    each: F,
) -> Result<Outcome, PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
    P: Fn() -> I + Sync,
    F: FnMut(&[FailedInvoice]) -> Result<(), PopulationError>,
{
    let (learning, alone): (Vec<_>, Vec<_>) = contenders
        .iter()
        .enumerate()
        .partition(|(_, c)| c.policy.learns());
    let alone_contenders: Vec<&Contender> = alone.iter().map(|(_, c)| *c).collect();
    std::thread::scope(|scope| {
        let learners: Vec<_> = learning
            .iter()
            .map(|&(n, contender)| {
                let population = &population;
                (
                    n,
                    scope.spawn(move || in_time_order(contender, population())),
                )
            })
            .collect();
        let together = side_by_side(&alone_contenders, population(), threads, each);
        let mut tallies = vec![Tally::default(); contenders.len()];
        let mut learned = Vec::new();
        let mut found = together.map(|outcome| {
            for ((n, _), tally) in alone.iter().zip(outcome.tallies) {
                tallies[*n] = tally;
            }
            outcome.population
        });
        for (n, learner) in learners {
            match learner.join() {
                Ok(Ok((tally, evidence))) => {
                    tallies[n] = tally;
                    learned.push((n, evidence));
                }
                Ok(Err(e)) => found = found.and(Err(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        found.map(|population| Outcome {
            population,
            tallies,
            learned,
        })
    })
}

/// The contenders that do not learn, customer by customer on `threads` threads.
fn side_by_side<I, F>(
    contenders: &[&Contender],
    customers: I,
    threads: usize,
    mut each: F,
) -> Result<Outcome, PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
    F: FnMut(&[FailedInvoice]) -> Result<(), PopulationError>,
{
    let (send, receive) = mpsc::sync_channel::<Vec<Arc<[FailedInvoice]>>>(threads.max(1) * 2);
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
                chunk.push(Arc::from(customer));
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

/// Plays every customer under a learning policy on one virtual timeline: the next moment of
/// whichever customer comes first, a new customer when their first failure comes, and what each
/// attempt came to folded into the policy's evidence at once — so evidence from earlier outcomes
/// shapes later choices, and never the other way round. Returns the tally and what was learned. `customers` must come in the order of
/// their first failure ([`population::Customers`] reads them so). One thread, so the result is
/// the same on every machine; the memory is that of the customers still being played.
pub fn in_time_order<I>(
    contender: &Contender,
    customers: I,
) -> Result<(Tally, Evidence), PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
{
    let mut policy = contender.policy.clone();
    let mut tally = Tally::default();
    let mut worlds: Vec<Option<World>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut due: BinaryHeap<Reverse<(Timestamp, usize)>> = BinaryHeap::new();
    let mut customers = customers.peekable();
    let done = |world: World, tally: &mut Tally| {
        let invoices = Arc::clone(world.invoices());
        tally.add(&contender.policy, &invoices, &world.finish());
    };
    loop {
        let arrival = match customers.peek() {
            Some(Ok(invoices)) => invoices.iter().map(|i| i.failed_at).min(),
            _ => None,
        };
        while let Some(&Reverse((at, slot))) = due.peek() {
            if arrival.is_some_and(|arrival| at > arrival) {
                break;
            }
            due.pop();
            let Some(world) = worlds[slot].as_mut() else {
                continue;
            };
            let next = world.step(&policy);
            let evidence = Arc::make_mut(&mut policy.evidence);
            for observation in world.observed() {
                evidence.add(&observation);
            }
            match next {
                Some(at) => due.push(Reverse((at, slot))),
                None => {
                    if let Some(world) = worlds[slot].take() {
                        done(world, &mut tally);
                    }
                    free.push(slot);
                }
            }
        }
        let Some(customer) = customers.next() else {
            return Ok((tally, Arc::unwrap_or_clone(policy.evidence)));
        };
        let world = World::new(Arc::from(customer?));
        let Some(at) = world.next_at() else {
            done(world, &mut tally);
            continue;
        };
        let slot = match free.pop() {
            Some(slot) => {
                worlds[slot] = Some(world);
                slot
            }
            None => {
                worlds.push(Some(world));
                worlds.len() - 1
            }
        };
        due.push(Reverse((at, slot)));
    }
}
#[cfg(test)]
mod tests;
