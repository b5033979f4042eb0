//! `cargo xtask setup`: idempotent installation of everything the build, the
//! tests and the lab need. Each step checks first and says what it did.
use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Debian packages: bpf-linker's LLVM, the lab kernel's source and build
/// tools, QEMU, the guest's userland, and the tools and servers the tests drive.
pub const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "linux-source-6.12",
    "bc",
    "bison",
    "flex",
    "dwarves",
    "libelf-dev",
    "libssl-dev",
    "make",
    "gcc",
    "xz-utils",
    "qemu-system-x86",
    "busybox-static",
    "e2fsprogs",
    "util-linux",
    "tmux",
    // The metrics test scrapes dmaprof with a real Prometheus; the report
    // test renders the HTML report in headless Chromium.
    "prometheus",
    "chromium",
    // The stress phase loads the CPUs with another BPF user.
    "bpftrace",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> Result<std::process::ExitCode> {
    apt()?;
    rust_src()?;
    bpf_linker()?;
    eprintln!("setup: everything is in place");
    Ok(std::process::ExitCode::SUCCESS)
}

fn installed(pkg: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_ok_and(|s| s == "install ok installed")
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: apt packages present ({})", APT_PACKAGES.len());
        return Ok(());
    }
    eprintln!("setup: installing apt packages: {}", missing.join(" "));
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("installing {} needs root", missing.join(" "));
    }
    cmd::run(Command::new("apt-get").arg("update").arg("-q"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install")?;
    Ok(())
}

fn rust_src() -> Result<()> {
    let list = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("the nightly toolchain is needed for the eBPF build")?;
    if list.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: nightly rust-src present");
        return Ok(());
    }
    eprintln!("setup: adding rust-src to nightly");
    cmd::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker() -> Result<()> {
    let have = cmd::output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if have.contains(BPF_LINKER_VERSION) {
        eprintln!("setup: {have} present");
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against llvm-22 (found: {})",
        if have.is_empty() { "none" } else { &have }
    );
    let llvm = Path::new("/usr/lib/llvm-22/bin");
    if !llvm.join("llvm-config").exists() {
        bail!(
            "{} missing: llvm-22-dev did not install",
            llvm.join("llvm-config").display()
        );
    }
    let path = format!(
        "{}:{}",
        llvm.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", path),
    )
}
