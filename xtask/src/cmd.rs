//! Running commands and timing phases, with errors that name what failed.
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Runs a command with inherited stdio; fails naming it.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout, trimmed.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = output_bytes(cmd)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// Runs a command and returns its stdout as it is (binary output).
pub fn output_bytes(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("spawning {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Whether a command exists and exits 0.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds the release `dmaprof` and returns its path (the lab guest and the
/// benchmarks all run this one binary).
pub fn build_dmaprof() -> Result<PathBuf> {
    let root = workspace_root();
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "profiler",
            "--bin",
            "dmaprof",
        ])
        .current_dir(&root))?;
    Ok(root.join("target/release/dmaprof"))
}

/// Where caches live: outside the repo, kept across clones on the same machine.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DMAPROF_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    home.join(".cache/dmaprof")
}

/// Phase timings, printed as they end and summarised at the end.
#[derive(Default)]
pub struct Phases {
    done: Vec<(String, Duration, bool)>,
}

impl Phases {
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("==> {name}");
        let start = Instant::now();
        let result = f();
        let took = start.elapsed();
        eprintln!(
            "<== {name}: {} in {:.1}s",
            if result.is_ok() { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        self.done.push((name.to_string(), took, result.is_ok()));
        result
    }

    pub fn summary(&self) -> String {
        let mut s = String::from("phase times:\n");
        for (name, took, ok) in &self.done {
            s.push_str(&format!(
                "  {:<28} {:>8.1}s {}\n",
                name,
                took.as_secs_f64(),
                if *ok { "ok" } else { "FAILED" }
            ));
        }
        s
    }
}
