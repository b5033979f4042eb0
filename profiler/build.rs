//! Builds the eBPF object (profiler-ebpf, nightly + bpf-linker) into OUT_DIR,
//! where src/probes/object.rs embeds it with `include_bytes_aligned!`.
//!
//! aya-build forwards every line of the nested cargo build as a
//! `cargo:warning=`, so a first build printed about a hundred "warning:
//! Compiling ..." lines that read as problems. Its output is captured here
//! (this process's stdout redirected to a file around the call): cargo
//! directives pass through, the nested build's lines are shown only when it
//! fails. Warnings in the eBPF code itself are clippy's job (`cargo xtask test`).
use std::{fs::File, io::Write, os::fd::AsRawFd, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("../profiler-ebpf").canonicalize()?;
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {root:?}"))?
        .to_string();
    let log_path = PathBuf::from(std::env::var("OUT_DIR")?).join("ebpf-build.log");
    let result = with_stdout_to(&log_path, || {
        let ebpf = aya_build::Package {
            name: "profiler-ebpf",
            root_dir: &root,
            ..Default::default()
        };
        aya_build::build_ebpf([ebpf], aya_build::Toolchain::default())
    })?;
    let log = std::fs::read_to_string(&log_path)?;
    for line in log.lines() {
        match line.strip_prefix("cargo:warning=") {
            // Build script stderr is what cargo shows when the build fails.
            Some(nested) if result.is_err() => eprintln!("{nested}"),
            Some(_) => {}
            None => println!("{line}"),
        }
    }
    result
}

/// Runs `f` with file descriptor 1 pointing at `path`.
fn with_stdout_to<T>(path: &std::path::Path, f: impl FnOnce() -> T) -> std::io::Result<T> {
    let file = File::create(path)?;
    std::io::stdout().flush()?;
    // SAFETY: plain fd duplication; fd 1 is restored before returning.
    let saved = unsafe { libc::dup(1) };
    if saved < 0 || unsafe { libc::dup2(file.as_raw_fd(), 1) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let value = f();
    let flushed = std::io::stdout().flush();
    // SAFETY: `saved` is the original stdout duplicated above.
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    flushed.map(|()| value)
}
