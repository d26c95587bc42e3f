//! The `recoup` command line: its commands with their flags and help, what each one does, and how
//! a command's failure becomes the exit code.
//!
//! Exit codes (docs/reference/cli.md#exit-codes): 0 success; 1 a user error — bad arguments, bad configuration,
//! unreachable Redis — with a one-line reason on stderr; 2 an internal error.
//!
//! `src/main.rs` only parses the arguments ([`Cli`]), starts the runtime and calls [`run`]; each
//! command's body is in a module of its own here: `serve`, `clock`, `deadletters`, `policy`
//! (policy check), `simulate`, `tune`, `status`, `experiments`, `webhook` (webhook send), `backfill`, `reconcile` and
//! `learn`;
//! `demo` is [`crate::demo`].

mod backfill;
mod clock;
mod deadletters;
mod experiments;
mod learn;
pub(crate) mod output;
mod policy;
mod reconcile;
mod serve;
mod simulate;
mod status;
mod tune;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use self::clock::ClockCommand;
pub use self::deadletters::DeadLettersCommand;
pub use self::learn::LearnCommand;
pub use self::policy::PolicyCommand;
pub use self::simulate::SimulateArgs;
pub use self::tune::TuneArgs;
pub use self::webhook::WebhookCommand;
use crate::config::Settings;
use crate::server::Role;

// No doc comments on the clap types below or on their fields' types: clap turns doc comments into
// help text, and the help is part of the contract.
#[derive(Parser)]
#[command(
    name = "recoup",
    version,
    about = "Wins back failed Stripe subscription payments."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service: receive Stripe webhooks, keep cases in Redis, fire their timers.
    Serve {
        /// Settings file [default: config/recoup.toml when it exists, else built-in defaults].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// receiver = webhook + status API, worker = scheduler + executors, all = both.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
    },
    /// See recoup work, with nothing to set up: the real receiver, policy and worker in one
    /// process, an in-memory store, a built-in stand-in for Stripe and the test clock; the bundled
    /// fixtures are sent as signed webhooks and each invoice's story is printed.
    Demo,
    /// See what a policy would recover before it touches a real customer: the real policy engine
    /// over a population of failed invoices on a virtual clock, beside a fixed 3/5/7-day baseline.
    Simulate(SimulateArgs),
    /// Find a better policy for your customers: the simulator searches a policy file's knobs.
    ///
    /// The knobs are retry gaps and counts, timing, nudge steps and the end's grace; the policy
    /// that recovers the most with zero network-rule breaches and within the limits given is
    /// written as a commented policy file, measured on customers held out of the search.
    Tune(TuneArgs),
    /// Work with webhook events.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The test clock (RECOUP_TEST_CLOCK=1): show it or move it forward.
    #[command(subcommand)]
    Clock(ClockCommand),
    /// The retry policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inbox entries given up on and case wake-ups parked: list, show, and replay them.
    #[command(subcommand)]
    Deadletters(DeadLettersCommand),
    /// What the learning policy has learned from recoup's own attempts: show it, or move it between
    /// a simulation, staging and production.
    #[command(subcommand)]
    Learn(LearnCommand),
    /// What happened to an invoice and what happens next: its case, or every case of a customer
    /// (cus_…) or subscription (sub_…), read from the same Redis as `serve`.
    Status {
        /// An invoice (in_…), customer (cus_…) or subscription (sub_…) id.
        id: String,
        /// Print the API's case JSON instead.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// What each arm of the policy's experiment recovered against its holdout, with 95% confidence
    /// intervals, from the counters in the same Redis as `serve`; invoices count once final.
    Experiments {
        /// Print the API's report JSON instead.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Fetch the events recoup may have missed (webhooks that never arrived) from Stripe's events
    /// API and store each exactly as a delivered webhook: an event recoup has changes nothing.
    Backfill {
        /// How far back: a duration such as 72h, 7d or 1d12h, at most 30d (Stripe keeps events
        /// for 30 days).
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "72h",
            value_parser = backfill::parse_since,
            allow_hyphen_values = true
        )]
        since: jiff::SignedDuration,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Compare Stripe's open invoices with recoup's open cases and settle the differences: open a
    /// case for a failed invoice that has none, settle a case whose invoice Stripe shows paid,
    /// void or uncollectible.
    Reconcile {
        /// Print the differences and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

/// How a command failed, which decides the exit code.
pub enum Failure {
    /// Exit code 1: bad arguments, bad configuration, unreachable Redis.
    User(anyhow::Error),
    /// Exit code 2.
    Internal(anyhow::Error),
}

fn user(e: impl Into<anyhow::Error>) -> Failure {
    Failure::User(e.into())
}

/// The exit code for a command line clap refused, after printing why on one line; or, for
/// `--help` and `--version` (which clap answers by "refusing"), after printing the answer.
pub fn refused(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let usage = rendered
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
        .map_or_else(String::new, |usage| format!("usage: {usage}; "));
    let reason = if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a command is required".to_owned()
    } else {
        // clap's own message, less its usage and help hints, which the line ends with anyway.
        let lines = rendered
            .lines()
            .take_while(|line| !line.trim_start().starts_with("Usage:"))
            .map(|line| line.trim().trim_start_matches("error: "))
            .filter(|line| !line.is_empty() && !line.starts_with("For more information"));
        one_line(lines)
    };
    eprintln!("recoup: {reason} ({usage}see --help)");
    ExitCode::from(1)
}

/// The exit code for what [`run`] returned, a failure's reason printed on stderr first, on one
/// line: each cause once (a message that already quotes its cause does not get it again), a
/// multi-line message joined.
pub fn exit_code(outcome: Result<ExitCode, Failure>) -> ExitCode {
    let (prefix, e, code) = match outcome {
        Ok(code) => return code,
        Err(Failure::User(e)) => ("", e, 1),
        Err(Failure::Internal(e)) => ("internal error: ", e, 2),
    };
    let mut causes: Vec<String> = Vec::new();
    for cause in e.chain().map(ToString::to_string) {
        if !causes.iter().any(|said| said.contains(&cause)) {
            causes.push(cause);
        }
    }
    eprintln!(
        "recoup: {prefix}{}",
        one_line(causes.iter().flat_map(|cause| cause.lines()))
    );
    ExitCode::from(code)
}

/// Lines joined into one, with ": " between them (only the space after a line that ends in a
/// colon).
fn one_line<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let mut line = String::new();
    for part in lines.map(str::trim).filter(|part| !part.is_empty()) {
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { ": " });
        }
        line.push_str(part);
    }
    line
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Serve { config, role } => serve::run(config, role).await,
        Command::Clock(ClockCommand::Show { config }) => clock::run(config, None).await,
        Command::Clock(ClockCommand::Advance { duration, config }) => {
            clock::run(config, Some(duration)).await
        }
        Command::Webhook(WebhookCommand::Send {
            file,
            url,
            secret,
            new_id,
        }) => webhook::send(file, url, secret, new_id).await,
        Command::Policy(PolicyCommand::Check { path, on }) => policy::check(path, on),
        Command::Deadletters(command) => deadletters::run(command).await,
        Command::Learn(command) => learn::run(command).await,
        Command::Simulate(args) => simulate::run(args),
        Command::Tune(args) => tune::run(args).await,
        Command::Status { id, json, config } => status::run(&id, json, config).await,
        Command::Experiments { json, config } => experiments::run(json, config).await,
        Command::Backfill { since, config } => backfill::run(since, config).await,
        Command::Reconcile { dry_run, config } => reconcile::run(dry_run, config).await,
        Command::Demo => {
            crate::demo::run().await.map_err(Failure::Internal)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Stripe (the key is required) and the Redis `serve` uses, for the commands that read one and
/// write the other.
async fn stripe_and_store(
    config: Option<PathBuf>,
) -> Result<(crate::processor::stripe::Stripe, crate::store::RedisStore), Failure> {
    let settings = Settings::load(config.as_deref(), environment()).map_err(user)?;
    let key = settings.secrets.stripe_api_key.as_ref().ok_or_else(|| {
        user(anyhow::anyhow!(
            "STRIPE_API_KEY is not set: this reads the account's events and invoices from Stripe \
             and needs its secret key (sk_…, or a restricted rk_… key that may read events and \
             invoices)"
        ))
    })?;
    let stripe = crate::processor::stripe::Stripe::new(key, &settings.stripe).map_err(user)?;
    let store = crate::store::RedisStore::connect(&settings.redis)
        .await
        .map_err(user)?;
    Ok((stripe, store))
}

/// The process environment, skipping variables that are not valid Unicode.
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
