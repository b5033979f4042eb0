//! The `dmaprof` command line.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use profiler::doctor;

#[derive(Parser)]
#[command(
    name = "dmaprof",
    version,
    about = "Profile moving file data into and out of Linux dma-bufs (DMA_BUF_IOCTL_RW_FILE, pread, udmabuf) with eBPF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this machine lets dmaprof measure: BPF, each probe's attach
    /// method (tried for real), dma-heaps, udmabuf, RW_FILE support, O_DIRECT.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A file or directory whose block device, filesystem and O_DIRECT
        /// support to check (default: the current directory).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dmaprof: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor { json, path } => {
            let path = match path {
                Some(p) => {
                    if !p.exists() {
                        anyhow::bail!("--path {}: no such file or directory", p.display());
                    }
                    p
                }
                None => std::env::current_dir()?,
            };
            let report = doctor::run(&doctor::Options { path: Some(path) });
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", doctor::render_text(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
