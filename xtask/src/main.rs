//! `cargo xtask`: everything dmaprof needs besides `cargo build`.
//! Installs go to the system (apt, rustup, cargo install) or to the cache
//! directory (`$DMAPROF_CACHE`, default ~/.cache/dmaprof), never into the repo.
mod bench;
mod cmd;
mod lab;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "dmaprof's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (apt packages, nightly rust-src,
    /// bpf-linker 0.13.0 on llvm-22). Idempotent; quick when nothing is missing.
    Setup,
    /// The whole test suite: setup, fmt, clippy, host tests (as root: real
    /// eBPF), then the lab suite in QEMU. What CI runs.
    Test {
        /// Skip the lab suite (kernel build + VM).
        #[arg(long)]
        no_lab: bool,
    },
    /// Benchmarks that print figures (tracing overhead ...).
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
    /// The lab: a kernel with DMA_BUF_IOCTL_RW_FILE, booted under QEMU.
    Lab {
        #[command(subcommand)]
        command: lab::Command,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Test { no_lab } => test::run(!no_lab),
        Command::Lab { command } => lab::run(command),
        Command::Bench { bench } => bench::run(bench),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
