//! Rendering a comparison: text (benchstat-like), CSV, JSON, markdown.
use std::fmt::Write;

use super::{Report, Row, Side};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Csv,
    Json,
    Markdown,
}

fn side(s: &Side) -> String {
    let spread = match s.ci95 {
        Some((lo, hi)) if s.median != 0.0 => {
            format!(
                "± {:.0}%",
                ((hi - s.median).abs().max((s.median - lo).abs()) / s.median * 100.0).round()
            )
        }
        Some(_) => "± 0%".into(),
        None => "± ∞".into(),
    };
    format!("{} {spread}", num(s.median))
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// "+5.3%", or "~" when not significant (benchstat's convention).
fn delta(r: &Row) -> String {
    if r.significant {
        format!("{:+.1}%", r.delta_pct)
    } else {
        "~".into()
    }
}

fn p(r: &Row) -> String {
    format!("p={:.3} n={}+{}", r.p_value, r.baseline.n, r.candidate.n)
}

fn flag(r: &Row) -> &'static str {
    if r.regression { " REGRESSION" } else { "" }
}

pub fn render(r: &Report, format: Format) -> String {
    match format {
        Format::Text => text(r),
        Format::Csv => csv(r),
        Format::Json => serde_json::to_string_pretty(r).expect("report serializes") + "\n",
        Format::Markdown => markdown(r),
    }
}

fn text(r: &Report) -> String {
    let mut s = String::new();
    if !r.rows.is_empty() {
        let _ = writeln!(
            s,
            "{:<24} {:<11} {:>18} {:>18} {:>9}",
            "mode", "metric", "baseline", "candidate", "delta"
        );
    }
    for row in &r.rows {
        let _ = writeln!(
            s,
            "{:<24} {:<11} {:>18} {:>18} {:>9}  ({}){}",
            row.mode,
            row.metric,
            side(&row.baseline),
            side(&row.candidate),
            delta(row),
            p(row),
            flag(row)
        );
    }
    if !r.rows.is_empty() {
        notes(&mut s, r);
        s.push('\n');
    }
    if !r.speedups.is_empty() {
        let _ = writeln!(s, "throughput against the pread baselines (candidate run)");
        for sp in &r.speedups {
            let _ = writeln!(
                s,
                "  {:<24} vs {:<13} x{:.2}{}",
                sp.mode,
                sp.against,
                sp.ratio,
                if sp.significant {
                    format!("  (p={:.3})", sp.p_value)
                } else {
                    format!("  ~ (p={:.3})", sp.p_value)
                }
            );
        }
    }
    s
}

fn notes(s: &mut String, r: &Report) {
    if !r.only_in_baseline.is_empty() {
        let _ = writeln!(s, "only in the baseline: {}", r.only_in_baseline.join(", "));
    }
    if !r.only_in_candidate.is_empty() {
        let _ = writeln!(
            s,
            "only in the candidate: {}",
            r.only_in_candidate.join(", ")
        );
    }
    match r.threshold_pct {
        Some(t) => {
            let n = r.regressions().count();
            let _ = writeln!(s, "{n} significant regression(s) beyond {t}%");
        }
        None => {
            let _ = writeln!(s, "no --threshold: regressions are reported, not enforced");
        }
    }
}

fn csv(r: &Report) -> String {
    let mut s = String::from(
        "mode,metric,baseline_median,baseline_ci_lo,baseline_ci_hi,baseline_n,candidate_median,candidate_ci_lo,candidate_ci_hi,candidate_n,delta_pct,p_value,significant,regression\n",
    );
    let ci = |c: Option<(f64, f64)>| {
        c.map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_default()
    };
    for row in &r.rows {
        let (bl, bh) = ci(row.baseline.ci95);
        let (cl, ch) = ci(row.candidate.ci95);
        let _ = writeln!(
            s,
            "{},{},{},{bl},{bh},{},{},{cl},{ch},{},{:.3},{:.6},{},{}",
            row.mode,
            row.metric,
            row.baseline.median,
            row.baseline.n,
            row.candidate.median,
            row.candidate.n,
            row.delta_pct,
            row.p_value,
            row.significant,
            row.regression
        );
    }
    s
}

fn markdown(r: &Report) -> String {
    let mut s = String::from(
        "| mode | metric | baseline | candidate | delta | p |\n|---|---|---:|---:|---:|---|\n",
    );
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}{} | {} |",
            row.mode,
            row.metric,
            side(&row.baseline),
            side(&row.candidate),
            delta(row),
            if row.regression {
                " **regression**"
            } else {
                ""
            },
            p(row)
        );
    }
    if !r.speedups.is_empty() {
        s.push_str("\n| mode | against | speedup | p |\n|---|---|---:|---|\n");
        for sp in &r.speedups {
            let _ = writeln!(
                s,
                "| {} | {} | x{:.2}{} | {:.3} |",
                sp.mode,
                sp.against,
                sp.ratio,
                if sp.significant { "" } else { " ~" },
                sp.p_value
            );
        }
    }
    if !r.rows.is_empty() {
        s.push('\n');
        notes(&mut s, r);
    }
    s
}
