//! Where a run's results go: the per-call CSV (streamed while the run goes),
//! the per-mode summary CSV and the JSON results document that `dmaprof
//! compare` reads back (written at the end), and the live fan-out of each
//! call to the CSV, the progress bar and the dashboard.
pub mod atomic;
pub mod calls_csv;
pub mod fanout;
pub mod flame;
pub mod metrics_server;
pub mod openmetrics;
pub mod results;
pub mod stream;
pub mod trace_sink;

use std::path::PathBuf;

use atomic::AtomicFile;

use crate::{
    cli::{OutputArgs, ProfileArgs},
    probes::session::ProbeReport,
    profile::Profile,
    workload::{Config, Outcome, mode::Mode, summary::ModeSummary},
};

/// The per-call CSV while the run streams into it. A write error stops the
/// rows (the run goes on) and is reported at the end.
pub struct CallsCsv {
    file: AtomicFile,
    error: Option<std::io::Error>,
}

impl CallsCsv {
    pub fn row(&mut self, c: &crate::workload::CallRecord) {
        if self.error.is_none()
            && let Err(e) = calls_csv::row(self.file.writer(), c)
        {
            self.error = Some(e);
        }
    }
}

/// The output files of a run, each checked before any work is done.
pub struct Outputs {
    pub calls: Option<CallsCsv>,
    summary_csv: Option<PathBuf>,
    json: Option<PathBuf>,
    /// `--folded` and `--flamegraph` directories (made if missing).
    folded: Option<PathBuf>,
    flamegraph: Option<PathBuf>,
}

/// Everything the end-of-run files are made of; the summary is computed once.
pub struct RunReport<'a> {
    pub config: &'a Config,
    pub skipped: &'a [(Mode, String)],
    pub outcome: &'a Outcome,
    pub summary: &'a [ModeSummary],
    pub started_unix_s: u64,
    /// How the probes attached, what they lost and cost (None: probes off).
    pub probes: Option<ProbeReport>,
    /// The stack profile (`--profile`).
    pub profile: Option<&'a Profile>,
    /// `bench`: the device's limit on the file, measured after the paths.
    pub device_limit: Option<&'a crate::workload::limit::DeviceLimit>,
}

/// Makes `dir` if it is missing and checks a file can be written in it.
pub fn check_dir(flag: &str, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{flag} {}: {e}", dir.display()))?;
    check_writable(flag, &dir.join(".dmaprof-check"))
}

/// Checks a path can be written (creates and removes its temporary file).
pub fn check_writable(flag: &str, path: &std::path::Path) -> Result<(), String> {
    AtomicFile::create(path)
        .map(drop)
        .map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl Outputs {
    /// Fails, naming the flag and the path, before any file is made.
    pub fn open(a: &OutputArgs, profile: &ProfileArgs) -> Result<Outputs, String> {
        if let Some(d) = &profile.folded {
            check_dir("--folded", d)?;
        }
        if let Some(d) = &profile.flamegraph {
            check_dir("--flamegraph", d)?;
        }
        if let Some(p) = &a.summary_csv {
            check_writable("--summary-csv", p)?;
        }
        if let Some(p) = &a.json {
            check_writable("--json", p)?;
        }
        let calls = a
            .csv
            .as_deref()
            .map(|p| {
                let mut file =
                    AtomicFile::create(p).map_err(|e| format!("--csv {}: {e}", p.display()))?;
                calls_csv::header(file.writer())
                    .map_err(|e| format!("--csv {}: {e}", p.display()))?;
                Ok::<_, String>(CallsCsv { file, error: None })
            })
            .transpose()?;
        Ok(Outputs {
            calls,
            summary_csv: a.summary_csv.clone(),
            json: a.json.clone(),
            folded: profile.folded.clone(),
            flamegraph: profile.flamegraph.clone(),
        })
    }

    /// Commits the per-call CSV and writes the summary CSV and JSON. Every
    /// file is tried; the first failure is returned.
    pub fn write(self, run: &RunReport) -> Option<String> {
        let mut errors = Vec::new();
        if let Some(CallsCsv { file, error }) = self.calls {
            let dest = file.dest().display().to_string();
            if let Some(e) = error.map(Err).unwrap_or_else(|| file.commit()).err() {
                errors.push(format!("--csv {dest}: {e}"));
            }
        }
        if let Some(p) = &self.summary_csv {
            let mut bytes = Vec::new();
            let r = results::write_summary_csv(&mut bytes, run.summary)
                .and_then(|()| atomic::write(p, &bytes));
            if let Err(e) = r {
                errors.push(format!("--summary-csv {}: {e}", p.display()));
            }
        }
        if let Some(p) = &self.json {
            let text =
                serde_json::to_string_pretty(&results::build(run)).expect("results serialize");
            if let Err(e) = atomic::write(p, text.as_bytes()) {
                errors.push(format!("--json {}: {e}", p.display()));
            }
        }
        if let Some(p) = run.profile {
            errors.extend(flame::write_dirs(
                self.folded.as_deref(),
                self.flamegraph.as_deref(),
                p,
            ));
        }
        errors.into_iter().next()
    }
}
