//! The `recoup` command line: parses the arguments, starts the runtime and runs the command;
//! the commands, and what their failures exit with, are [`recoup::cli`].

use std::process::ExitCode;

use clap::Parser;
use recoup::cli::{self, Cli};

// A case is decoded, decided and re-encoded in a handful of short-lived buffers a kilobyte or two
// long; glibc's allocator spends a quarter of a worker's time on those (it consolidates its free
// lists on every such request), mimalloc a fraction of that (`scripts/bench-timers`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::refused(e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("recoup: internal error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    cli::exit_code(runtime.block_on(cli::run(cli)))
}
