//! The profile in the text summary: per bucket its samples, the share taken
//! in the kernel, the off-CPU time, and its top kernel functions; then what
//! the profile could not see.
use std::fmt::Write as _;

use super::{BETWEEN_CALLS, OTHER_THREADS, Profile, top};

/// Kernel functions shown per bucket.
pub const TOP: usize = 8;

pub fn render(p: &Profile) -> String {
    let mut out = String::new();
    let l = &p.limits;
    let _ = writeln!(
        out,
        "\nstack profile ({} Hz per CPU): {} on-CPU samples, {} off-CPU intervals",
        p.hz, l.samples, l.off_cpu_intervals
    );
    // Modes first, then the time outside calls and the other threads.
    let mut names: Vec<&String> = p.buckets.keys().collect();
    names.sort_by_key(|b| (*b == BETWEEN_CALLS || *b == OTHER_THREADS, b.as_str()));
    for name in names {
        let s = &p.buckets[name];
        let _ = writeln!(
            out,
            "{name}: {} samples ({:.0}% in the kernel), off-CPU {:.1} ms",
            s.samples(),
            top::kernel_share(s),
            s.off_cpu_us() as f64 / 1e3
        );
        let rows = top::kernel_functions(s, TOP);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {:>6} {:>7}  kernel function", "self%", "total%");
        for r in rows {
            let _ = writeln!(
                out,
                "  {:>6.1} {:>7.1}  {}",
                r.self_pct, r.total_pct, r.function
            );
        }
    }
    let lost = [
        ("ring buffer full", l.lost.ringbuf_full),
        ("off-CPU start not stored", l.lost.off_cpu_storage),
        ("kernel stacks not kept", l.kernel_stacks_lost),
        ("user stacks not kept", l.user_stacks_lost),
        ("frames without a symbol", l.unknown_frames),
    ];
    let shown: Vec<String> = lost
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(why, n)| format!("{n} {why}"))
        .collect();
    let _ = writeln!(
        out,
        "profile limits: {}",
        if shown.is_empty() {
            "none".to_string()
        } else {
            shown.join(", ")
        }
    );
    out
}
