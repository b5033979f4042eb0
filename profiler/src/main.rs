//! The `dmaprof` command line: parse, dispatch, exit code. Each command
//! lives in `profiler::commands`; `profiler::exit` owns the codes.
use std::process::ExitCode;

use clap::Parser;
use profiler::{
    cli::{self, Cli},
    commands,
};

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(cli) => commands::dispatch(cli).into(),
        Err(e) => cli::usage_error(e).into(),
    }
}
