//! The attach ladder: fentry, then kprobe, then tracepoint. Each rung is
//! tested by really loading and attaching a no-op program, because config
//! files lie (a kernel can have CONFIG_FUNCTION_TRACER and still refuse
//! fentry under lockdown).
use std::fmt;

use aya::{
    Btf,
    programs::{BtfTracePoint, FEntry, KProbe, ProgramError, TracePoint},
};
use profiler_common::programs;
use serde::Serialize;

use super::object;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Fentry,
    Kprobe,
    Tracepoint,
    /// A BTF-typed raw tracepoint (the pread64 probes' first rung: see
    /// `TRACEPOINT_LADDER`); not a value of `--attach`.
    #[value(skip)]
    #[serde(rename = "tp_btf")]
    TpBtf,
    /// A perf event's overflow program (`--profile`'s CPU-clock sampling);
    /// not a value of `--attach`.
    #[value(skip)]
    #[serde(rename = "perf_event")]
    PerfEvent,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Fentry => "fentry",
            Method::Kprobe => "kprobe",
            Method::Tracepoint => "tracepoint",
            Method::TpBtf => "tp_btf",
            Method::PerfEvent => "perf_event",
        })
    }
}

/// How one probe target ended up attached, and why better rungs were not used.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Attached {
    pub probe: String,
    /// None: not traced (the reasons say why).
    pub method: Option<Method>,
    /// Function or tracepoints attached to.
    pub target: String,
    pub not_used: Vec<String>,
}

impl Attached {
    /// What a `climb` of `probe`'s ladder gave: the rung that worked, or
    /// an error naming why each failed.
    pub fn from_ladder(
        probe: &str,
        found: Option<(Method, String)>,
        not_used: Vec<String>,
    ) -> anyhow::Result<Attached> {
        match found {
            Some((m, target)) => Ok(Attached {
                probe: probe.into(),
                method: Some(m),
                target,
                not_used,
            }),
            None => anyhow::bail!("{probe}: no attach method works: {}", not_used.join("; ")),
        }
    }
}

/// The ladder, best first: fentry (BTF trampolines, cheapest, typed
/// arguments), kprobe (any function, an int3), tracepoint (stable, but only
/// at the syscall boundary for the dma-buf ioctl).
pub const LADDER: [Method; 3] = [Method::Fentry, Method::Kprobe, Method::Tracepoint];

/// The dma-buf ioctl's ladder: the function (fentry, kprobe), then the
/// syscall, on the raw BTF-typed tracepoints, then the `syscalls:` ones.
pub const IOCTL_LADDER: [Method; 4] = [
    Method::Fentry,
    Method::Kprobe,
    Method::TpBtf,
    Method::Tracepoint,
];

/// pread64's and the scheduler's ladder: the raw `sys_enter`/`sys_exit` tracepoints typed by
/// BTF (no perf-event record per call: about a third less per call here),
/// then the `syscalls:` tracepoints. No function probe: the syscall is the
/// stable place for a baseline every kernel has.
pub const TRACEPOINT_LADDER: [Method; 2] = [Method::TpBtf, Method::Tracepoint];

/// A tracepoint-only target's rungs: its ladder, or only the classic
/// tracepoints when `--attach tracepoint` forces them (other methods do
/// not apply to it).
pub fn tracepoint_rungs(force: Option<Method>) -> Vec<Method> {
    match force {
        Some(Method::Tracepoint) => vec![Method::Tracepoint],
        _ => TRACEPOINT_LADDER.to_vec(),
    }
}

/// The rungs to try: the whole ladder, or only the method forced with --attach.
pub fn rungs(force: Option<Method>) -> Vec<Method> {
    match force {
        Some(m) => vec![m],
        None => LADDER.to_vec(),
    }
}

/// Climbs `rungs` in order until `attempt` succeeds: the method that worked
/// (with what the attempt gave), and why each rung before it did not.
pub fn climb<T>(
    rungs: &[Method],
    mut attempt: impl FnMut(Method) -> Result<T, String>,
) -> (Option<(Method, T)>, Vec<String>) {
    let mut not_used = Vec::new();
    for &m in rungs {
        match attempt(m) {
            Ok(t) => return (Some((m, t)), not_used),
            Err(why) => not_used.push(format!("{m}: {why}")),
        }
    }
    (None, not_used)
}

/// The outcome of trying one mechanism on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Rung {
    pub method: Method,
    /// Function name, or "category:name" for a tracepoint.
    pub target: String,
    pub works: bool,
    /// Why it does not work (or what was attached).
    pub detail: String,
}

/// Loads `probe_fentry` against `function` and attaches it, then detaches.
pub fn try_fentry(function: &str, btf: Option<&Btf>) -> Rung {
    let result = (|| -> Result<(), String> {
        let btf = btf.ok_or("no kernel BTF (/sys/kernel/btf/vmlinux): fentry needs it")?;
        let mut ebpf = object::load_with(|_| {}).map_err(|e| format!("{e:#}"))?;
        let prog: &mut FEntry = ebpf
            .program_mut(programs::PROBE_FENTRY)
            .ok_or("program missing from object")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        prog.load(function, btf).map_err(|e| explain(e, "fentry"))?;
        prog.attach().map_err(|e| explain(e, "fentry"))?;
        Ok(())
    })();
    rung(Method::Fentry, function.to_string(), result)
}

/// Loads `probe_kprobe` and attaches it to `function`, then detaches.
pub fn try_kprobe(function: &str) -> Rung {
    let result = (|| -> Result<(), String> {
        let mut ebpf = object::load_with(|_| {}).map_err(|e| format!("{e:#}"))?;
        let prog: &mut KProbe = ebpf
            .program_mut(programs::PROBE_KPROBE)
            .ok_or("program missing from object")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        prog.load().map_err(|e| explain(e, "kprobe"))?;
        prog.attach(function, 0).map_err(|e| explain(e, "kprobe"))?;
        Ok(())
    })();
    rung(Method::Kprobe, function.to_string(), result)
}

/// Loads `program` (a tp_btf program of the object) on the raw tracepoint
/// `name`, typed by the kernel's BTF, and attaches it, then detaches.
pub fn try_tp_btf(program: &str, name: &str, btf: Option<&Btf>) -> Rung {
    let result = (|| -> Result<(), String> {
        let btf = btf.ok_or("no kernel BTF (/sys/kernel/btf/vmlinux): tp_btf needs it")?;
        let mut ebpf = object::load_with(|_| {}).map_err(|e| format!("{e:#}"))?;
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(program)
            .ok_or("not built for this architecture")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        prog.load(name, btf).map_err(|e| explain(e, "tp_btf"))?;
        prog.attach().map_err(|e| explain(e, "tp_btf"))?;
        Ok(())
    })();
    rung(Method::TpBtf, format!("raw {name}"), result)
}

/// Loads `probe_tracepoint` and attaches it to `category:name`, then detaches.
pub fn try_tracepoint(category: &str, name: &str) -> Rung {
    let result = (|| -> Result<(), String> {
        crate::tracefs::ensure_mounted().map_err(|e| format!("{e:#}"))?;
        let mut ebpf = object::load_with(|_| {}).map_err(|e| format!("{e:#}"))?;
        let prog: &mut TracePoint = ebpf
            .program_mut(programs::PROBE_TRACEPOINT)
            .ok_or("program missing from object")?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        prog.load().map_err(|e| explain(e, "tracepoint"))?;
        prog.attach(category, name)
            .map_err(|e| explain(e, "tracepoint"))?;
        Ok(())
    })();
    rung(Method::Tracepoint, format!("{category}:{name}"), result)
}

fn rung(method: Method, target: String, result: Result<(), String>) -> Rung {
    match result {
        Ok(()) => Rung {
            method,
            target,
            works: true,
            detail: "loaded and attached".into(),
        },
        Err(detail) => Rung {
            method,
            target,
            works: false,
            detail,
        },
    }
}

/// The reason behind an attach failure, in a kernel engineer's words.
pub fn describe(e: &anyhow::Error, method: Method) -> String {
    match e.chain().find_map(|c| c.downcast_ref::<ProgramError>()) {
        Some(pe) => explain_ref(pe, &method.to_string()),
        None => format!("{e:#}"),
    }
}

/// Turns aya's errors into the reason a kernel engineer needs to read.
fn explain(err: ProgramError, method: &str) -> String {
    explain_ref(&err, method)
}

fn explain_ref(err: &ProgramError, method: &str) -> String {
    let errno = match err {
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        _ => std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|e| e.raw_os_error()),
    };
    let kprobe_pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe");
    match (method, errno, err) {
        ("fentry", Some(libc::EPERM), _) => "BPF_PROG_LOAD refused with EPERM and an empty verifier log: \
             this kernel does not allow BPF trampolines (lockdown, or no DYNAMIC_FTRACE_WITH_DIRECT_CALLS)"
            .into(),
        ("kprobe", _, _) if !kprobe_pmu.exists() => format!(
            "no kprobe PMU at {}: kernel built without CONFIG_KPROBES",
            kprobe_pmu.display()
        ),
        (_, _, ProgramError::LoadError { io_error, verifier_log }) => {
            let log = verifier_log.to_string();
            let log = log.trim();
            if log.is_empty() {
                format!("BPF_PROG_LOAD failed: {io_error}")
            } else {
                format!("BPF_PROG_LOAD failed: {io_error}; verifier: {log}")
            }
        }
        (_, Some(libc::ENOENT), _) => format!("{err} (no such function or event on this kernel)"),
        _ => err.to_string(),
    }
}
