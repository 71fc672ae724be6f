//! `tern`: run, validate and serve conversational flows.
//!
//! Exit codes: 0 success, 1 the flow (or command) failed, 2 usage or configuration error
//! (including an invalid flow).

/// mimalloc: Tern allocates many small, short-lived values per run across worker threads,
/// where it is markedly faster than the system allocator (see benches/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod demo;
mod humanize;
mod server;

use std::process::ExitCode;

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = match cli::config_file::parse_args(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    cli.init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    match runtime.block_on(cli::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole cause chain, with every known secret masked.
            // What an API answered may be in it: shown without its control characters.
            eprintln!("error: {}", cli::terminal::safe(&format!("{e:#}")));
            ExitCode::from(cli::exit_code_for(&e))
        }
    }
}

/// `tern runs list | head`: once the reader is gone, printing fails with a broken pipe and
/// `println!` panics. Exit as a process ended by SIGPIPE would (status 141, nothing printed)
/// instead of showing a panic.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.contains("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}
