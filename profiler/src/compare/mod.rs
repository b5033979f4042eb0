//! `dmaprof compare`: a candidate against a baseline (two runs), and every
//! mode against the pread baselines within a run, with benchstat's rules:
//! medians with 95% confidence intervals, Mann-Whitney U p-values, and `~`
//! when a difference is not significant.
pub mod input;
pub mod report;

use input::{ModeSamples, Samples};
use profiler_common::stats;
use serde::Serialize;

/// Significance level of the Mann-Whitney test.
pub const ALPHA: f64 = 0.05;

pub struct Metric {
    pub name: &'static str,
    pub higher_is_better: bool,
    pub get: fn(&ModeSamples) -> &Vec<f64>,
}

pub const METRICS: [Metric; 4] = [
    Metric {
        name: "MiB/s",
        higher_is_better: true,
        get: |s| &s.mib_per_s,
    },
    Metric {
        name: "p50 us",
        higher_is_better: false,
        get: |s| &s.lat_p50_us,
    },
    Metric {
        name: "p99 us",
        higher_is_better: false,
        get: |s| &s.lat_p99_us,
    },
    Metric {
        name: "cpu ns/MiB",
        higher_is_better: false,
        get: |s| &s.cpu_ns_per_mib,
    },
];

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub median: f64,
    /// 95% CI of the median, None with fewer than 6 samples.
    pub ci95: Option<(f64, f64)>,
    pub n: usize,
}

impl Side {
    pub fn of(xs: &[f64]) -> Side {
        Side {
            median: stats::median(xs),
            ci95: stats::median_ci95(xs),
            n: xs.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub mode: String,
    pub metric: &'static str,
    pub baseline: Side,
    pub candidate: Side,
    /// (candidate - baseline) / baseline, percent.
    pub delta_pct: f64,
    pub p_value: f64,
    pub significant: bool,
    /// Significant, in the worse direction, and beyond --threshold.
    pub regression: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Speedup {
    pub mode: String,
    pub against: &'static str,
    /// Median throughput of the mode over the median of the baseline mode.
    pub ratio: f64,
    pub p_value: f64,
    pub significant: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Within the candidate run: each mode against pread and pread-direct.
    pub speedups: Vec<Speedup>,
    pub threshold_pct: Option<f64>,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
}

impl Report {
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.regression)
    }
}

pub fn compare(
    base: &Samples,
    cand: &Samples,
    threshold_pct: Option<f64>,
) -> Result<Report, String> {
    let common: Vec<&String> = base.keys().filter(|m| cand.contains_key(*m)).collect();
    if common.is_empty() {
        return Err(format!(
            "the two runs have no mode in common (baseline: {}; candidate: {})",
            base.keys().cloned().collect::<Vec<_>>().join(", "),
            cand.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut rows = Vec::new();
    for mode in common {
        for m in &METRICS {
            let (a, b) = ((m.get)(&base[mode]), (m.get)(&cand[mode]));
            let (sa, sb) = (Side::of(a), Side::of(b));
            let delta_pct = if sa.median != 0.0 {
                (sb.median - sa.median) / sa.median * 100.0
            } else {
                0.0
            };
            let p_value = stats::mann_whitney_p(a, b);
            let significant = p_value < ALPHA;
            let worse = if m.higher_is_better {
                delta_pct < 0.0
            } else {
                delta_pct > 0.0
            };
            let regression =
                significant && worse && threshold_pct.is_some_and(|t| delta_pct.abs() > t);
            rows.push(Row {
                mode: mode.clone(),
                metric: m.name,
                baseline: sa,
                candidate: sb,
                delta_pct,
                p_value,
                significant,
                regression,
            });
        }
    }
    Ok(Report {
        rows,
        speedups: speedups(cand),
        threshold_pct,
        only_in_baseline: base
            .keys()
            .filter(|m| !cand.contains_key(*m))
            .cloned()
            .collect(),
        only_in_candidate: cand
            .keys()
            .filter(|m| !base.contains_key(*m))
            .cloned()
            .collect(),
    })
}

/// Every mode's throughput against pread and pread-direct in the same run.
pub fn speedups(run: &Samples) -> Vec<Speedup> {
    let mut out = Vec::new();
    for against in ["pread", "pread-direct"] {
        let Some(base) = run.get(against) else {
            continue;
        };
        let base_median = stats::median(&base.mib_per_s);
        for (mode, s) in run.iter().filter(|(m, _)| m.as_str() != against) {
            let p_value = stats::mann_whitney_p(&base.mib_per_s, &s.mib_per_s);
            out.push(Speedup {
                mode: mode.clone(),
                against,
                ratio: stats::median(&s.mib_per_s) / base_median,
                p_value,
                significant: p_value < ALPHA,
            });
        }
    }
    out
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::input;
    use profiler_common::stats;

    fn samples() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.001f64..1e9, 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// A run compared with itself is never significant.
        #[test]
        fn self_comparison_is_never_significant(xs in samples()) {
            prop_assert!(stats::mann_whitney_p(&xs, &xs) >= super::ALPHA);
        }

        /// Scaling every sample scales the median (and the CI) by the same factor.
        #[test]
        fn medians_scale(xs in samples(), k in 0.01f64..100.0) {
            let scaled: Vec<f64> = xs.iter().map(|x| x * k).collect();
            let (m, ms) = (stats::median(&xs), stats::median(&scaled));
            prop_assert!((ms - m * k).abs() <= 1e-9 * ms.abs().max(1.0));
            if let (Some((lo, hi)), Some((slo, shi))) = (stats::median_ci95(&xs), stats::median_ci95(&scaled)) {
                prop_assert!((slo - lo * k).abs() <= 1e-9 * slo.abs().max(1.0));
                prop_assert!((shi - hi * k).abs() <= 1e-9 * shi.abs().max(1.0));
            }
        }

        /// p-values are probabilities and the test is symmetric.
        #[test]
        fn p_values_are_symmetric_probabilities(a in samples(), b in samples()) {
            let (p, q) = (stats::mann_whitney_p(&a, &b), stats::mann_whitney_p(&b, &a));
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!((p - q).abs() < 1e-9);
        }

        /// The result-file reader never panics, whatever it is given.
        #[test]
        fn reader_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in");
            std::fs::write(&path, &bytes).unwrap();
            let _ = input::load(&path);
        }

        /// ... nor CSV-shaped garbage with the right header.
        #[test]
        fn reader_survives_csv_shaped_input(rows in prop::collection::vec(
            (prop::sample::select(vec!["pread", "rw-file", "", "x,y"]), any::<i64>(), ".*", any::<f64>()), 0..20))
        {
            let mut text = String::from("mode,iteration,bytes,wall_ns,cpu_user_ns,cpu_sys_ns\n");
            for (m, it, b, w) in rows {
                text.push_str(&format!("{m},{it},{b},{w},1,1\n"));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.csv");
            std::fs::write(&path, text).unwrap();
            if let Ok(s) = input::load(&path) {
                for m in s.values() {
                    prop_assert!(m.mib_per_s.iter().all(|x| x.is_finite() && *x >= 0.0));
                }
            }
        }

        /// ... nor JSON-shaped garbage.
        #[test]
        fn reader_survives_json_shaped_input(text in "\\{\"schema\": \"dmaprof.results/1\".{0,200}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.json");
            std::fs::write(&path, text).unwrap();
            let _ = input::load(&path);
        }
    }
}
