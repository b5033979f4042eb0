//! Reading the two sides of a comparison: a results document (`--json`)
//! or a per-call CSV (`--csv`). Either becomes per-pass samples per mode.
use std::{collections::BTreeMap, path::Path};

use crate::{export::results, metrics::CallTotals};

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
    let text = read_input(path).map_err(|e| format!("{}: {e}", path.display()))?;
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

impl ModeSamples {
    fn push(&mut self, t: &CallTotals) {
        self.mib_per_s.push(t.mib_per_s());
        self.lat_p50_us.push(t.latency.quantile_us(0.5));
        self.lat_p99_us.push(t.latency.quantile_us(0.99));
        self.cpu_ns_per_mib.push(t.cpu_ns_per_mib());
    }
}

/// Results files are read whole: only regular files (a FIFO would block,
/// `/dev/zero` would never end), and at most `MAX_INPUT_BYTES`.
const MAX_INPUT_BYTES: u64 = 4 << 30;

fn read_input(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file (give a results JSON or a per-call CSV)".into());
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(format!(
            "{} bytes is larger than any results file dmaprof writes (at most {} GiB read)",
            meta.len(),
            MAX_INPUT_BYTES >> 30
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// A results document and its per-pass samples, read once (`dmaprof
/// report` draws the one and compares the other); the error names the file.
pub fn load_results(path: &Path) -> Result<(results::Results, Samples), String> {
    let named = |e: String| format!("{}: {e}", path.display());
    let doc = results::parse(&read_input(path).map_err(named)?).map_err(named)?;
    let samples = samples_of(&doc);
    Ok((doc, samples))
}

fn from_results(text: &str) -> Result<Samples, String> {
    Ok(samples_of(&results::parse(text)?))
}

fn samples_of(doc: &results::Results) -> Samples {
    let mut out = Samples::new();
    for m in &doc.modes {
        let s: &mut ModeSamples = out.entry(m.summary.mode.name().to_string()).or_default();
        for p in m.passes.iter().filter(|p| p.calls > 0) {
            s.mib_per_s.push(p.mib_per_s);
            s.lat_p50_us.push(p.lat_p50_us);
            s.lat_p99_us.push(p.lat_p99_us);
            s.cpu_ns_per_mib.push(p.cpu_ns_per_mib);
        }
    }
    out.retain(|_, s| !s.mib_per_s.is_empty());
    out
}

/// Groups call rows by (mode, iteration) into passes, each summed with the
/// same definitions the results JSON uses (`results::pass_totals`). The
/// columns are found by name; the csv crate does the splitting and quoting.
fn from_calls_csv(text: &str) -> Result<Samples, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(one_line)?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err("empty file".into());
    }
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("missing column `{name}`"))
    };
    let [mode_c, iter_c, bytes_c, wall_c, user_c, sys_c] = [
        "mode",
        "iteration",
        "bytes",
        "wall_ns",
        "cpu_user_ns",
        "cpu_sys_ns",
    ]
    .map(col);
    let (mode_c, iter_c, bytes_c, wall_c, user_c, sys_c) =
        (mode_c?, iter_c?, bytes_c?, wall_c?, user_c?, sys_c?);
    let mut passes: BTreeMap<(String, u64), CallTotals> = BTreeMap::new();
    for record in reader.records() {
        let r = record.map_err(one_line)?;
        let line = r.position().map_or(0, |p| p.line());
        let field = |c: usize| {
            r.get(c)
                .ok_or_else(|| format!("line {line}: too few columns"))
        };
        let num = |c: usize| -> Result<u64, String> {
            let v = field(c)?;
            v.parse::<u64>().map_err(|_| match v.parse::<f64>() {
                Ok(x) if !x.is_finite() => format!("line {line}: `{v}` is not a finite number"),
                _ => format!("line {line}: `{v}` is not a number"),
            })
        };
        passes
            .entry((field(mode_c)?.to_string(), num(iter_c)?))
            .or_default()
            .add(
                num(bytes_c)?,
                num(wall_c)?,
                Some(num(user_c)? + num(sys_c)?),
            );
    }
    let mut out = Samples::new();
    for ((mode, _), t) in passes.into_iter().filter(|(_, t)| t.wall_ns > 0) {
        out.entry(mode).or_default().push(&t);
    }
    Ok(out)
}

/// The csv crate's error on one line.
fn one_line(e: csv::Error) -> String {
    e.to_string().replace('\n', " ")
}
