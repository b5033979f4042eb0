//! `cargo xtask test`: the README's test command and what CI runs.
use std::process::{Command, ExitCode};

use anyhow::Result;

use crate::{cmd, lab, setup};

pub fn run(with_lab: bool) -> Result<ExitCode> {
    let root = cmd::workspace_root();
    let mut phases = cmd::Phases::default();
    let result = (|| -> Result<()> {
        phases.run("setup", || setup::run().map(|_| ()))?;
        phases.run("cargo fmt --check", || {
            cmd::run(
                Command::new("cargo")
                    .args(["fmt", "--all", "--", "--check"])
                    .current_dir(&root),
            )
        })?;
        phases.run("cargo clippy -D warnings", || {
            cmd::run(
                Command::new("cargo")
                    .args([
                        "clippy",
                        "--release",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ])
                    .current_dir(&root),
            )
        })?;
        phases.run("host tests (cargo test)", || {
            cmd::run(
                Command::new("cargo")
                    .args(["test", "--release"])
                    .current_dir(&root),
            )
        })?;
        if with_lab {
            lab::test_suite(&mut phases)?;
        }
        Ok(())
    })();
    eprint!("{}", phases.summary());
    result.map(|()| ExitCode::SUCCESS)
}
