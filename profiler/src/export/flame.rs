//! `--folded` and `--flamegraph`: each bucket of a profile (a mode,
//! "between calls", "other threads") as a folded-stack file and a flame
//! graph SVG (inferno), on-CPU (samples) and off-CPU (microseconds).
use std::{
    io,
    path::{Path, PathBuf},
};

use super::atomic;
use crate::profile::{Profile, Stacks, folded_lines};

/// The file name stem of a bucket (`between calls` -> `between-calls`).
pub fn stem(bucket: &str) -> String {
    bucket.replace(' ', "-")
}

/// (suffix, the count's unit, the bucket's stacks of that kind).
fn kinds(
    s: &Stacks,
) -> [(
    &'static str,
    &'static str,
    &std::collections::BTreeMap<String, u64>,
); 2] {
    [
        ("on-cpu", "samples", &s.on_cpu),
        ("off-cpu", "us", &s.off_cpu_us),
    ]
}

/// DIR/BUCKET.on-cpu.folded and DIR/BUCKET.off-cpu.folded for every bucket
/// with stacks of that kind; the paths written.
pub fn write_folded(dir: &Path, p: &Profile) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (bucket, stacks) in &p.buckets {
        for (kind, _, map) in kinds(stacks) {
            let lines = folded_lines(map);
            if lines.is_empty() {
                continue;
            }
            let path = dir.join(format!("{}.{kind}.folded", stem(bucket)));
            atomic::write(&path, (lines.join("\n") + "\n").as_bytes())?;
            written.push(path);
        }
    }
    Ok(written)
}

/// A flame graph of every bucket and kind with stacks: (bucket, kind, SVG).
pub fn flamegraphs(p: &Profile) -> io::Result<Vec<(String, &'static str, Vec<u8>)>> {
    let mut graphs = Vec::new();
    for (bucket, stacks) in &p.buckets {
        for (kind, unit, map) in kinds(stacks) {
            let lines = folded_lines(map);
            if lines.is_empty() {
                continue;
            }
            let title = format!("dmaprof {bucket}: {kind} ({unit})");
            graphs.push((bucket.clone(), kind, svg(&lines, &title, unit)?));
        }
    }
    Ok(graphs)
}

/// DIR/BUCKET.on-cpu.svg and DIR/BUCKET.off-cpu.svg; the paths written.
pub fn write_flamegraphs(dir: &Path, p: &Profile) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (bucket, kind, svg) in flamegraphs(p)? {
        let path = dir.join(format!("{}.{kind}.svg", stem(&bucket)));
        atomic::write(&path, &svg)?;
        written.push(path);
    }
    Ok(written)
}

/// `--folded DIR` and `--flamegraph DIR` (either may be absent): every
/// file is tried; the first failure, naming the flag and the directory.
pub fn write_dirs(folded: Option<&Path>, flamegraph: Option<&Path>, p: &Profile) -> Option<String> {
    type Writer = fn(&Path, &Profile) -> io::Result<Vec<PathBuf>>;
    let dirs: [(&str, Option<&Path>, Writer); 2] = [
        ("--folded", folded, write_folded),
        ("--flamegraph", flamegraph, write_flamegraphs),
    ];
    let mut first = None;
    for (flag, dir, write) in dirs {
        if let Some(d) = dir
            && let Err(e) = write(d, p)
        {
            first.get_or_insert(format!("{flag} {}: {e}", d.display()));
        }
    }
    first
}

/// One flame graph from folded lines.
pub fn svg(lines: &[String], title: &str, unit: &str) -> io::Result<Vec<u8>> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = unit.to_string();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)?;
    Ok(out)
}

/// A differential flame graph: `after`'s stacks, coloured by how their
/// share changed from `before` (red: grew, blue: shrank); the two are
/// normalized to the same total, so two modes or two runs with different
/// sample counts compare by share.
pub fn differential_svg(before: &[String], after: &[String], title: &str) -> io::Result<Vec<u8>> {
    let mut both = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options {
            normalize: true,
            strip_hex: false,
        },
        (before.join("\n") + "\n").as_bytes(),
        (after.join("\n") + "\n").as_bytes(),
        &mut both,
    )?;
    let text = String::from_utf8_lossy(&both);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    svg(&lines, title, "samples")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flame_graph_is_svg_with_every_frame() {
        let lines = vec![
            "main;read_at;ksys_pread64_[k];filemap_read_[k] 3".to_string(),
            "main;read_at 1".to_string(),
        ];
        let svg = String::from_utf8(svg(&lines, "t", "samples").unwrap()).unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{svg:.200}"
        );
        // inferno shows kernel frames without their `_[k]` mark (it colours them).
        for f in ["main", "read_at", "ksys_pread64", "filemap_read"] {
            assert!(svg.contains(f), "{f} missing");
        }
        assert_eq!(stem("between calls"), "between-calls");
    }

    #[test]
    fn a_differential_flame_graph_holds_both_profiles_frames() {
        let before = vec!["main;read;a_[k] 10".to_string()];
        let after = vec![
            "main;read;a_[k] 5".to_string(),
            "main;read;b_[k] 5".to_string(),
        ];
        let svg = String::from_utf8(differential_svg(&before, &after, "d").unwrap()).unwrap();
        // Each frame's tooltip: name, samples and the change in share.
        assert!(
            svg.contains("<title>a (") && svg.contains("<title>b ("),
            "{svg:.300}"
        );
        assert!(
            svg.contains("+"),
            "b grew: a differential graph says by how much"
        );
    }
}
