//! Reading the two sides of a comparison: a results document (`--json`)
//! or a per-call CSV (`--csv`). Either becomes per-pass samples per mode.
use std::{collections::BTreeMap, path::Path};

use crate::export::results;

/// Per-pass samples of one mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModeSamples {
    pub mib_per_s: Vec<f64>,
    pub lat_p50_us: Vec<f64>,
    pub lat_p99_us: Vec<f64>,
    pub cpu_ns_per_mib: Vec<f64>,
}

pub type Samples = BTreeMap<String, ModeSamples>;

/// Loads a results file; the error says what is wrong with it.
pub fn load(path: &Path) -> Result<Samples, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let samples = if text.trim_start().starts_with('{') {
        from_results(&text)
    } else {
        from_calls_csv(&text)
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    if samples.is_empty() {
        return Err(format!("{}: no completed passes", path.display()));
    }
    for (mode, s) in &samples {
        let all = s
            .mib_per_s
            .iter()
            .chain(&s.lat_p50_us)
            .chain(&s.lat_p99_us)
            .chain(&s.cpu_ns_per_mib);
        if let Some(bad) = all.into_iter().find(|x| !x.is_finite() || **x < 0.0) {
            return Err(format!(
                "{}: mode {mode} has an invalid value {bad}",
                path.display()
            ));
        }
    }
    Ok(samples)
}

fn from_results(text: &str) -> Result<Samples, String> {
    let doc = results::parse(text)?;
    let mut out = Samples::new();
    for m in doc.modes {
        let s: &mut ModeSamples = out.entry(m.summary.mode.name().to_string()).or_default();
        for p in m.passes.iter().filter(|p| p.calls > 0) {
            s.mib_per_s.push(p.mib_per_s);
            s.lat_p50_us.push(p.lat_p50_us);
            s.lat_p99_us.push(p.lat_p99_us);
            s.cpu_ns_per_mib.push(p.cpu_ns_per_mib);
        }
    }
    out.retain(|_, s| !s.mib_per_s.is_empty());
    Ok(out)
}

/// Groups call rows by (mode, iteration) into passes.
fn from_calls_csv(text: &str) -> Result<Samples, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("missing column `{name}`"))
    };
    let (mode_c, iter_c, bytes_c, wall_c) = (
        col("mode")?,
        col("iteration")?,
        col("bytes")?,
        col("wall_ns")?,
    );
    let (user_c, sys_c) = (col("cpu_user_ns")?, col("cpu_sys_ns")?);
    #[derive(Default)]
    struct Pass {
        bytes: f64,
        wall: f64,
        cpu: f64,
        lat: Vec<f64>,
    }
    let mut passes: BTreeMap<(String, u64), Pass> = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let num = |c: usize| -> Result<f64, String> {
            let v = f
                .get(c)
                .ok_or_else(|| format!("line {}: too few columns", n + 2))?;
            let x: f64 = v
                .parse()
                .map_err(|_| format!("line {}: `{v}` is not a number", n + 2))?;
            if x.is_finite() {
                Ok(x)
            } else {
                Err(format!("line {}: `{v}` is not a finite number", n + 2))
            }
        };
        let mode = f
            .get(mode_c)
            .ok_or_else(|| format!("line {}: too few columns", n + 2))?
            .to_string();
        let p = passes.entry((mode, num(iter_c)? as u64)).or_default();
        p.bytes += num(bytes_c)?;
        p.wall += num(wall_c)?;
        p.cpu += num(user_c)? + num(sys_c)?;
        p.lat.push(num(wall_c)? / 1e3);
    }
    let mut out = Samples::new();
    for ((mode, _), mut p) in passes {
        if p.wall <= 0.0 {
            continue;
        }
        p.lat.sort_by(f64::total_cmp);
        let q =
            |q: f64| p.lat[((p.lat.len() as f64 * q).ceil() as usize).clamp(1, p.lat.len()) - 1];
        let mib = p.bytes / (1u64 << 20) as f64;
        let s = out.entry(mode).or_default();
        s.mib_per_s.push(mib / (p.wall / 1e9));
        s.lat_p50_us.push(q(0.5));
        s.lat_p99_us.push(q(0.99));
        s.cpu_ns_per_mib
            .push(if mib > 0.0 { p.cpu / mib } else { 0.0 });
    }
    Ok(out)
}
