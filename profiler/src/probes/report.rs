//! How the probes ended up attached and what the eBPF side reported, told
//! to the user (stderr) and to the dashboard header.
use super::session::{Attached, ProgramCost, Session};

/// One line per probe on stderr: how it attached (and, with `why`, why the
/// better mechanisms were not used).
pub fn print_attached(attached: &[Attached], why: bool) {
    for at in attached {
        let method = at
            .method
            .map(|m| m.to_string())
            .unwrap_or_else(|| "not traced".into());
        eprintln!("dmaprof: probe {}: {method} {}", at.probe, at.target);
        if why {
            for reason in &at.not_used {
                eprintln!("dmaprof:   not used: {reason}");
            }
        }
    }
}

/// The dashboard header's probe list.
pub fn status(attached: &[Attached]) -> Vec<dashboards::model::ProbeStatus> {
    attached
        .iter()
        .map(|a| dashboards::model::ProbeStatus {
            name: a.probe.clone(),
            method: a.method.map(|m| m.to_string()),
            degraded: !a.not_used.is_empty(),
        })
        .collect()
}

/// Each program's runs and run time (BPF run-time statistics), costliest first.
pub fn render_costs(costs: &[ProgramCost]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<28} {:>12} {:>12} {:>10}",
        "probe program (BPF stats)", "runs", "total ms", "ns/run"
    );
    for c in costs.iter().filter(|c| c.runs > 0) {
        let _ = writeln!(
            s,
            "{:<28} {:>12} {:>12.3} {:>10.0}",
            c.program,
            c.runs,
            c.run_ns as f64 / 1e6,
            c.ns_per_run()
        );
    }
    s
}

/// What the eBPF programs reported through aya-log (failure paths only).
pub fn print_diagnostics(session: &mut Session) {
    let (messages, dropped) = session.diagnostics();
    for m in &messages {
        eprintln!("dmaprof: eBPF {m}");
    }
    if dropped > 0 {
        eprintln!("dmaprof: eBPF: {dropped} more messages dropped");
    }
}
