//! The commands' output on stdout, ended quietly when its reader has gone.
//!
//! Rust ignores SIGPIPE, so once the reader of a pipe has stopped reading —
//! `recoup simulate … | head`, `recoup policy check | grep -q visa` — every `println!` meets a
//! broken pipe and panics, with a backtrace hint and exit status 101. A command line tool should
//! stop there as Unix tools do: [`out!`] and [`outln!`] end the process with status 0 instead,
//! as ripgrep does. Any other failure to write (a full disk behind a redirect) is an error of its
//! own: one line on stderr, exit 1.

/// Writes `text` to stdout ([the module](self)).
pub fn write(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(text) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("recoup: cannot write the output: {e}");
            std::process::exit(1)
        }
    }
}

/// `print!` for a command's output.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!($($arg)*))
    };
}

/// `println!` for a command's output.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
