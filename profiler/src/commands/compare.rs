//! `dmaprof compare`: a candidate against a baseline, or one run's modes
//! against its pread baselines; exit 1 when the regression gate trips.
use crate::{
    cli::CompareArgs,
    compare::{self, input},
    exit::Exit,
};

pub fn compare(a: CompareArgs) -> Result<Exit, Exit> {
    if let Some(t) = a.threshold
        && !(t.is_finite() && t >= 0.0)
    {
        return Err(Exit::input(format!(
            "--threshold must be a non-negative percentage, not {t}"
        )));
    }
    let base = input::load(&a.baseline).map_err(Exit::Input)?;
    let Some(candidate) = &a.candidate else {
        return within_one_run(&a, &base);
    };
    let cand = input::load(candidate).map_err(Exit::Input)?;
    let report = compare::compare(&base, &cand, a.threshold).map_err(Exit::Input)?;
    print!("{}", compare::report::render(&report, a.format));
    if report.regressions().next().is_some() {
        return Ok(Exit::failed(format!(
            "significant regression beyond {}%",
            a.threshold.unwrap_or(0.0)
        )));
    }
    Ok(Exit::Success)
}

/// One file: each mode against pread and pread-direct of the same run.
fn within_one_run(a: &CompareArgs, run: &input::Samples) -> Result<Exit, Exit> {
    let speedups = compare::speedups(run);
    if speedups.is_empty() {
        return Err(Exit::input(format!(
            "{}: no pread or pread-direct pass to compare against",
            a.baseline.display()
        )));
    }
    let report = compare::Report {
        rows: Vec::new(),
        speedups,
        threshold_pct: None,
        only_in_baseline: Vec::new(),
        only_in_candidate: Vec::new(),
    };
    print!("{}", compare::report::render(&report, a.format));
    Ok(Exit::Success)
}
