//! `recoup deadletters list|show|replay`: the inbox entries that were given up on, and the case
//! wake-ups that were parked, read from the same Redis as `serve` — and put back to work.
//!
//! Stripe's "Resend" is no way back for a dead-lettered event: it keeps the event id, so recoup
//! answers it as a duplicate. Replaying puts the event recoup stored back into the inbox instead
//! (a new entry, the same event), and a parked wake-up back on the schedule, due now.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use jiff::Timestamp;

use super::{Failure, environment, user};
use crate::cli::output::outln;
use crate::config::Settings;
use crate::store::{DeadLetter, Inbox, Parked, RedisStore, Timers};

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List the dead letters (newest first) and the parked wake-ups.
    List {
        /// At most this many dead letters.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Show one dead letter (by its id or its event's id) with the stored event, or a parked wake-up
    /// (by invoice id).
    Show {
        id: String,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Put dead letters back into the inbox and parked wake-ups back on the schedule.
    Replay {
        /// Dead letters (by their id or their event's id) and parked wake-ups (by invoice id).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter and every parked wake-up.
        #[arg(long)]
        all: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

pub(super) async fn run(command: DeadLettersCommand) -> Result<ExitCode, Failure> {
    let config = match &command {
        DeadLettersCommand::List { config, .. }
        | DeadLettersCommand::Show { config, .. }
        | DeadLettersCommand::Replay { config, .. } => config.clone(),
    };
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let store = RedisStore::connect(&settings.redis).await.map_err(user)?;
    match command {
        DeadLettersCommand::List { limit, json, .. } => list(&store, limit, json).await,
        DeadLettersCommand::Show { id, json, .. } => show(&store, &id, json).await,
        DeadLettersCommand::Replay { ids, all, .. } => replay(&store, ids, all).await,
    }
}

async fn list(store: &RedisStore, limit: usize, json: bool) -> Result<ExitCode, Failure> {
    let letters = store.dead_letters(limit).await.map_err(user)?;
    let parked = store.parked().await.map_err(user)?;
    if json {
        let all = serde_json::json!({ "dead_letters": letters, "parked": parked });
        outln!("{all:#}");
        return Ok(ExitCode::SUCCESS);
    }
    if letters.is_empty() && parked.is_empty() {
        outln!("no dead letters and no parked wake-ups");
        return Ok(ExitCode::SUCCESS);
    }
    if !letters.is_empty() {
        outln!("dead letters (newest first; replay with recoup deadletters replay ID):");
        for d in &letters {
            outln!(
                "  {}  {}  {}  at {}  {} failure(s), {} deliveries: {}",
                d.id,
                d.event_id,
                d.event_type,
                d.at,
                d.failures,
                d.deliveries,
                d.error
            );
        }
    }
    if !parked.is_empty() {
        outln!("parked wake-ups (put back with recoup deadletters replay INVOICE):");
        for p in &parked {
            outln!(
                "  {}  parked at {}  {} failure(s): {}",
                p.invoice_id,
                p.at,
                p.failures,
                p.error
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A dead letter or a parked wake-up, by the id `recoup deadletters` names it by.
enum Found {
    Letter(DeadLetter),
    Parked(Parked),
}

async fn find(store: &RedisStore, id: &str) -> Result<Option<Found>, Failure> {
    if id.starts_with("in_") {
        let parked = store.parked().await.map_err(user)?;
        return Ok(parked
            .into_iter()
            .find(|p| p.invoice_id == id)
            .map(Found::Parked));
    }
    Ok(store
        .dead_letter(id)
        .await
        .map_err(user)?
        .map(Found::Letter))
}

fn unknown(id: &str) -> Failure {
    user(anyhow::anyhow!(
        "no dead letter and no parked wake-up named {id:?} (see recoup deadletters list)"
    ))
}

async fn show(store: &RedisStore, id: &str, json: bool) -> Result<ExitCode, Failure> {
    let found = find(store, id).await?.ok_or_else(|| unknown(id))?;
    match (found, json) {
        (Found::Letter(d), true) => outln!("{:#}", serde_json::json!(d)),
        (Found::Parked(p), true) => outln!("{:#}", serde_json::json!(p)),
        (Found::Letter(d), false) => {
            let event = serde_json::from_str::<serde_json::Value>(&d.event)
                .map(|e| format!("{e:#}"))
                .unwrap_or(d.event.clone());
            outln!("dead letter {}", d.id);
            outln!("  event       {} ({})", d.event_id, d.event_type);
            outln!("  inbox entry {}", d.entry_id);
            outln!("  at          {}", d.at);
            outln!("  failures    {} ({} deliveries)", d.failures, d.deliveries);
            outln!("  last error  {}", d.error);
            outln!("  the event as stored:\n{event}");
        }
        (Found::Parked(p), false) => {
            outln!("parked wake-up of {}", p.invoice_id);
            outln!("  at          {}", p.at);
            outln!("  failures    {}", p.failures);
            outln!("  last error  {}", p.error);
            outln!("  recoup status {} tells its case", p.invoice_id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(store: &RedisStore, ids: Vec<String>, all: bool) -> Result<ExitCode, Failure> {
    let ids = if all {
        let mut every: Vec<String> = store
            .dead_letters(usize::MAX >> 1)
            .await
            .map_err(user)?
            .into_iter()
            .map(|d| d.id)
            .collect();
        // Oldest first, the order they arrived in.
        every.reverse();
        every.extend(
            store
                .parked()
                .await
                .map_err(user)?
                .into_iter()
                .map(|p| p.invoice_id),
        );
        every
    } else {
        ids
    };
    let mut missing = Vec::new();
    let mut replayed = 0;
    for id in &ids {
        match find(store, id).await? {
            Some(Found::Letter(d)) => match store.replay(&d.id).await.map_err(user)? {
                Some(entry) => {
                    replayed += 1;
                    outln!(
                        "replayed {} ({} {}) as inbox entry {entry}",
                        d.id,
                        d.event_type,
                        d.event_id
                    );
                }
                None => missing.push(id.clone()),
            },
            Some(Found::Parked(p)) => {
                if store
                    .unpark(&p.invoice_id, Timestamp::now())
                    .await
                    .map_err(user)?
                {
                    replayed += 1;
                    outln!("wake-up of {} back on the schedule, due now", p.invoice_id);
                } else {
                    missing.push(id.clone());
                }
            }
            None => missing.push(id.clone()),
        }
    }
    if all && ids.is_empty() {
        outln!("no dead letters and no parked wake-ups");
    }
    match missing.first() {
        Some(first) if missing.len() == 1 => Err(unknown(first)),
        Some(_) => Err(user(anyhow::anyhow!(
            "replayed {replayed}; no dead letter or parked wake-up named {} (see recoup \
             deadletters list)",
            missing.join(", ")
        ))),
        None => Ok(ExitCode::SUCCESS),
    }
}
