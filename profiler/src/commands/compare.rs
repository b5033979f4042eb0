//! `dmaprof compare`: a candidate against a baseline, or one run's modes
//! against its pread baselines; exit 1 when the regression gate trips.
use crate::{
    cli::CompareArgs,
    compare::{self, input},
    exit::Exit,
    export::{atomic, flame, results},
    profile::{BETWEEN_CALLS, OTHER_THREADS, Profile, folded_lines},
};

pub fn compare(a: CompareArgs) -> Result<Exit, Exit> {
    if let Some(t) = a.threshold
        && !(t.is_finite() && t >= 0.0)
    {
        return Err(Exit::input(format!(
            "--threshold must be a non-negative percentage, not {t}"
        )));
    }
    if let Some(out) = &a.flamegraph {
        differential_flamegraph(&a, out)?;
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

/// `--flamegraph OUT.svg`: the two sides' on-CPU stacks of the chosen
/// modes as one differential flame graph.
fn differential_flamegraph(a: &CompareArgs, out: &std::path::Path) -> Result<(), Exit> {
    let load = |path: &std::path::Path| -> Result<Profile, Exit> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Exit::input(format!("{}: {e}", path.display())))?;
        results::parse(&text)
            .map_err(|e| Exit::input(format!("{}: {e}", path.display())))?
            .profile
            .ok_or_else(|| {
                Exit::input(format!(
                    "{}: no profile in it (run with --profile --json)",
                    path.display()
                ))
            })
    };
    let base = load(&a.baseline)?;
    let cand = match &a.candidate {
        Some(c) => load(c)?,
        None => base.clone(),
    };
    let (b, c) = pick_modes(a, &base, &cand)?;
    let lines = |p: &Profile, bucket: &str| folded_lines(&p.buckets[bucket].on_cpu);
    let title = format!("dmaprof: {c} against {b}, on-CPU (red: larger share)");
    let svg = flame::differential_svg(&lines(&base, &b), &lines(&cand, &c), &title)
        .map_err(|e| Exit::failed(format!("--flamegraph: {e}")))?;
    atomic::write(out, &svg)
        .map_err(|e| Exit::failed(format!("--flamegraph {}: {e}", out.display())))?;
    eprintln!(
        "dmaprof: differential flame graph of {c} against {b}: {}",
        out.display()
    );
    Ok(())
}

/// The bucket of each side: given, or the one mode both profiles have.
fn pick_modes(a: &CompareArgs, base: &Profile, cand: &Profile) -> Result<(String, String), Exit> {
    let is_mode = |b: &&String| b.as_str() != BETWEEN_CALLS && b.as_str() != OTHER_THREADS;
    let (b, c) = match a.flamegraph_modes.as_deref().map(|m| m.split_once(',')) {
        Some(Some((b, c))) => (b.to_string(), c.to_string()),
        Some(None) => {
            let m = a.flamegraph_modes.clone().unwrap_or_default();
            (m.clone(), m)
        }
        None => {
            let common: Vec<&String> = base
                .buckets
                .keys()
                .filter(is_mode)
                .filter(|m| cand.buckets.contains_key(*m))
                .collect();
            match common.as_slice() {
                [m] if a.candidate.is_some() => (m.to_string(), m.to_string()),
                _ => {
                    let all: Vec<&String> = base.buckets.keys().filter(is_mode).collect();
                    return Err(Exit::input(format!(
                        "--flamegraph-modes is needed: name the mode(s) to compare (profiled: {})",
                        all.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
    };
    for (side, p, m) in [("baseline", base, &b), ("candidate", cand, &c)] {
        if p.buckets.get(m).is_none_or(|s| s.samples() == 0) {
            return Err(Exit::input(format!(
                "--flamegraph-modes: the {side} has no on-CPU samples of `{m}`"
            )));
        }
    }
    Ok((b, c))
}
