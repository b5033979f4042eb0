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
        phases.run("cargo clippy -D warnings (eBPF crate)", || {
            cmd::run(&mut ebpf_clippy(&root))
        })?;
        phases.run("host tests (cargo test)", || {
            cmd::run(
                Command::new("cargo")
                    .args(["test", "--release"])
                    .current_dir(&root),
            )
        })?;
        // The counts hold under other BPF users, or the loss is said: a
        // short form of `cargo xtask bench stress`.
        phases.run("stress (20 traces under other BPF users)", || {
            crate::bench::stress::run(20).map(|_| ())
        })?;
        if with_lab {
            lab::test_suite(&mut phases, lab::Variant::Debug)?;
        }
        Ok(())
    })();
    eprint!("{}", phases.summary());
    result.map(|()| ExitCode::SUCCESS)
}

/// Clippy for the eBPF crate, which the workspace's clippy never sees (it
/// builds only for the bpf target): the same target, flags and toolchain
/// aya-build uses, checked, not linked.
fn ebpf_clippy(root: &std::path::Path) -> Command {
    let mut c = Command::new("cargo");
    c.args([
        "+nightly",
        "clippy",
        "--package",
        "profiler-ebpf",
        "--bins",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
        "target/ebpf-clippy",
        "--",
        "-D",
        "warnings",
    ])
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!(
            "--cfg=bpf_target_arch=\"{}\"\x1f-Cdebuginfo=2",
            std::env::consts::ARCH
        ),
    )
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .current_dir(root);
    c
}
