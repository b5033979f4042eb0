//! `dmaprof doctor`: what this machine lets dmaprof measure, found by trying
//! (loading programs, attaching them, asking the dma-buf ioctl), never by
//! reading config files. Users read it before trusting any number.
mod render;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use render::render_text;

use crate::{
    btf::Btf,
    capabilities::Facts,
    dma_buf::{self, RwFileSupport},
    fsinfo::{self, FsInfo},
    kernel::{self, Privileges},
    probes::attach::{self, Method, Rung},
    tracefs,
    workload::mode::{ALL_MODES, Direction, Mode},
};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dmaprof_version: &'static str,
    pub kernel_release: String,
    pub privileges: Privileges,
    pub btf: Check,
    pub bpf: Check,
    pub tracefs: Check,
    pub probe_targets: Vec<ProbeTarget>,
    pub dma_buf: DmaBuf,
    pub filesystem: Option<FsCheck>,
    /// io_uring with a registered buffer, tried (the uring modes need it).
    pub io_uring: Check,
    /// copy_file_range(2) into a heap dma-buf and into a udmabuf (v4's
    /// interface), each tried with one page (the cfr modes need them).
    pub copy_file_range_heap: Check,
    pub copy_file_range_udmabuf: Check,
    /// Each mode and direction, checked as `dmaprof run` checks it.
    pub modes: Vec<ModeSupport>,
    /// Features lost on this machine, in plain words.
    pub limitations: Vec<String>,
}

/// A yes/no fact with how it was established.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

/// One thing dmaprof wants to trace, and which mechanism works for it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeTarget {
    pub name: String,
    pub what: String,
    /// The best rung that works, in its ladder order (fentry > kprobe >
    /// tracepoint; pread64: tp_btf > tracepoint).
    pub best: Option<Method>,
    pub rungs: Vec<Rung>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DmaBuf {
    pub heaps: Vec<String>,
    pub udmabuf: bool,
    pub rw_file: RwFileSupport,
    /// How RW_FILE support was established.
    pub rw_file_detail: String,
    /// `dma_buf_ops.rw_file` in the kernel's BTF: the patch's core half.
    pub rw_file_in_btf: Option<bool>,
    /// Exporter callbacks found by prototype in BTF.
    pub rw_file_callbacks: Vec<String>,
    /// Where RW_FILE works: is READ into a read-only dma-buf refused? (The
    /// seed's v2 lets it overwrite a buffer mmap() will not map writable.)
    pub read_only_refused: Option<bool>,
    pub read_only_detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FsCheck {
    pub ok: bool,
    pub info: Option<FsInfo>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeSupport {
    pub mode: Mode,
    pub direction: Direction,
    /// None: runs here; else why not.
    pub unavailable: Option<String>,
}

/// What doctor inspects besides the kernel.
pub struct Options {
    /// A file or directory whose filesystem to inspect.
    pub path: Option<PathBuf>,
}

pub fn run(opts: &Options) -> Report {
    let privileges = Privileges::current();
    let (btf, btf_check) = match Btf::from_sys_fs() {
        Ok(b) => (
            Some(b),
            Check {
                ok: true,
                detail: format!("{} parsed", crate::btf::VMLINUX),
            },
        ),
        Err(e) => (
            None,
            Check {
                ok: false,
                detail: format!("{e:#}"),
            },
        ),
    };
    let aya_btf = aya::Btf::from_sys_fs().ok();
    let bpf = bpf_check();
    let tracefs_check = tracefs_check(&privileges);
    let callbacks = btf
        .as_ref()
        .map(|b| b.functions_taking(&["dma_buf", "dma_buf_rw_file"]))
        .unwrap_or_default();
    let rw_file_in_btf = btf.as_ref().and_then(|b| {
        b.struct_members("dma_buf_ops")
            .map(|m| m.iter().any(|m| m.name == "rw_file"))
    });

    let probe_targets = if bpf.ok {
        probe_targets(aya_btf.as_ref(), &callbacks)
    } else {
        Vec::new()
    };

    let dma_buf = dma_buf_check(rw_file_in_btf, callbacks);
    let filesystem = opts.path.as_deref().map(fs_check);
    // One gathering of the facts `run` checks modes against (each is tried).
    let facts = Facts::gather(
        crate::workload::plan::DEFAULT_HEAP,
        opts.path.as_deref().unwrap_or(Path::new(".")),
    );
    let modes = mode_support(&facts);

    let mut report = Report {
        dmaprof_version: env!("CARGO_PKG_VERSION"),
        kernel_release: kernel::release(),
        privileges,
        btf: btf_check,
        bpf,
        tracefs: tracefs_check,
        probe_targets,
        dma_buf,
        filesystem,
        io_uring: tried(
            &facts.io_uring,
            "one page READ_FIXED into a registered buffer succeeded",
        ),
        copy_file_range_heap: tried(
            &facts.cfr_heap,
            "copy_file_range of one memfd page into a heap dma-buf moved it",
        ),
        copy_file_range_udmabuf: tried(
            &facts.cfr_udmabuf,
            "copy_file_range of one memfd page into a udmabuf moved it",
        ),
        modes,
        limitations: Vec::new(),
    };
    report.limitations = limitations(&report);
    report
}

fn bpf_check() -> Check {
    match kernel::bpf_load_trivial() {
        Ok(()) => Check {
            ok: true,
            detail: "loaded a 2-instruction socket filter via bpf(2)".into(),
        },
        Err(e) => Check {
            ok: false,
            detail: format!("BPF_PROG_LOAD of a trivial program: {e}"),
        },
    }
}

/// Root mounts tracefs when it is missing (aya attaches tracepoints through it).
fn tracefs_check(privileges: &Privileges) -> Check {
    if privileges.euid != 0 {
        return match tracefs::find() {
            Some(p) => Check {
                ok: true,
                detail: format!("at {}", p.display()),
            },
            None => Check {
                ok: false,
                detail: "not mounted (root can mount it)".into(),
            },
        };
    }
    match tracefs::ensure_mounted() {
        Ok(t) => Check {
            ok: true,
            detail: if t.mounted_by_dmaprof {
                format!("mounted by dmaprof at {}", t.path.display())
            } else {
                format!("at {}", t.path.display())
            },
        },
        Err(e) => Check {
            ok: false,
            detail: format!("{e:#}"),
        },
    }
}

fn probe_targets(btf: Option<&aya::Btf>, callbacks: &[String]) -> Vec<ProbeTarget> {
    let mut targets = Vec::new();

    targets.push(ladder_of(
        &attach::IOCTL_LADDER,
        "dma_buf_ioctl",
        "the dma-buf ioctl (RW_FILE, SYNC): per-call kernel time and return value",
        vec![
            attach::try_fentry("dma_buf_ioctl", btf),
            attach::try_kprobe("dma_buf_ioctl"),
            attach::try_tp_btf(profiler_common::programs::IOCTL_RAW_ENTER, "sys_enter", btf),
            attach::try_tp_btf(profiler_common::programs::IOCTL_RAW_EXIT, "sys_exit", btf),
            attach::try_tracepoint("syscalls", "sys_enter_ioctl"),
        ],
    ));

    let exporter_rungs = match callbacks.first() {
        Some(cb) => vec![attach::try_fentry(cb, btf), attach::try_kprobe(cb)],
        None => Vec::new(),
    };
    targets.push(ladder(
        "rw_file callback",
        match callbacks.first() {
            Some(cb) => format!("the exporter's rw_file ({cb}): time spent in the exporter"),
            None => "the exporter's rw_file: no function in BTF takes (struct dma_buf *, struct dma_buf_rw_file *)".into(),
        }
        .as_str(),
        exporter_rungs,
    ));

    // The request-start event the session would use on this kernel.
    let start = crate::tracefs::ensure_mounted()
        .ok()
        .and_then(|t| crate::probes::block::start_event(&t.path).ok())
        .unwrap_or("block_io_start");
    targets.push(ladder_of(
        &attach::TRACEPOINT_LADDER,
        "block layer",
        "request start/issue/complete: bytes and device latency per thread",
        [
            (profiler_common::programs::BLOCK_START_BTF, start),
            (profiler_common::programs::BLOCK_ISSUE_BTF, "block_rq_issue"),
            (
                profiler_common::programs::BLOCK_COMPLETE_BTF,
                "block_rq_complete",
            ),
        ]
        .iter()
        .map(|(program, e)| attach::try_tp_btf(program, e, btf))
        .chain(
            [start, "block_rq_issue", "block_rq_complete"]
                .iter()
                .map(|e| attach::try_tracepoint("block", e)),
        )
        .collect(),
    ));
    targets.push(ladder(
        "ioctl syscall",
        "sys_enter/sys_exit_ioctl filtered to dma-buf commands (type 'b'): the fallback for dma_buf_ioctl",
        vec![
            attach::try_tracepoint("syscalls", "sys_enter_ioctl"),
            attach::try_tracepoint("syscalls", "sys_exit_ioctl"),
        ],
    ));
    targets.push(ladder_of(
        &attach::TRACEPOINT_LADDER,
        "pread64 syscall",
        "sys_enter/sys_exit of pread64 (the baseline's calls, and `trace` of another process)",
        vec![
            attach::try_tp_btf(profiler_common::programs::PREAD_RAW_ENTER, "sys_enter", btf),
            attach::try_tp_btf(profiler_common::programs::PREAD_RAW_EXIT, "sys_exit", btf),
            attach::try_tracepoint("syscalls", "sys_enter_pread64"),
            attach::try_tracepoint("syscalls", "sys_exit_pread64"),
        ],
    ));
    targets.push(ladder_of(
        &attach::TRACEPOINT_LADDER,
        "scheduler",
        "sched_switch: on-CPU versus off-CPU time of the calling thread",
        vec![
            attach::try_tp_btf(
                profiler_common::programs::SCHED_SWITCH_BTF,
                "sched_switch",
                btf,
            ),
            attach::try_tracepoint("sched", "sched_switch"),
        ],
    ));
    targets
}

/// The best method is the first that works, in ladder order; a method with
/// several rungs (e.g. enter + exit tracepoints) works only if all of them do.
fn ladder(name: &str, what: &str, rungs: Vec<Rung>) -> ProbeTarget {
    ladder_of(&attach::LADDER, name, what, rungs)
}

/// `ladder` for a target with a ladder of its own (pread64's, the scheduler's).
fn ladder_of(order: &[Method], name: &str, what: &str, rungs: Vec<Rung>) -> ProbeTarget {
    let (best, _) = attach::climb(order, |m| {
        let mine: Vec<&Rung> = rungs.iter().filter(|r| r.method == m).collect();
        if !mine.is_empty() && mine.iter().all(|r| r.works) {
            Ok(())
        } else {
            Err(String::new())
        }
    });
    ProbeTarget {
        name: name.into(),
        what: what.into(),
        best: best.map(|(m, ())| m),
        rungs,
    }
}

fn dma_buf_check(rw_file_in_btf: Option<bool>, callbacks: Vec<String>) -> DmaBuf {
    let heaps = dma_buf::heaps();
    let udmabuf = Path::new(dma_buf::UDMABUF_DEV).exists();
    let heap = heaps.iter().find(|h| *h == "system").or(heaps.first());
    let (rw_file, rw_file_detail) = match heap {
        Some(h) => match dma_buf::probe_rw_file(&dma_buf::heap_path(h)) {
            Ok(answer) => answer,
            Err(e) => (RwFileSupport::Unknown, e),
        },
        None => (
            match rw_file_in_btf {
                Some(false) => RwFileSupport::NotSupported,
                _ => RwFileSupport::Unknown,
            },
            match rw_file_in_btf {
                Some(true) => "BTF: dma_buf_ops has rw_file, but there is no dma-heap to ask".into(),
                Some(false) => "BTF: dma_buf_ops has no rw_file member (kernel not patched); no dma-heap to ask".into(),
                None => "no dma-heap to ask and no dma_buf_ops in BTF".into(),
            },
        ),
    };
    let (read_only_refused, read_only_detail) = match heap {
        Some(h) if rw_file == RwFileSupport::Supported => {
            match dma_buf::probe_read_only_refused(&dma_buf::heap_path(h)) {
                Ok((refused, how)) => (Some(refused), Some(how)),
                Err(e) => (None, Some(e)),
            }
        }
        _ => (None, None),
    };
    DmaBuf {
        heaps,
        udmabuf,
        rw_file,
        rw_file_detail,
        rw_file_in_btf,
        rw_file_callbacks: callbacks,
        read_only_refused,
        read_only_detail,
    }
}

/// A fact found by trying: what worked, or why not.
fn tried(fact: &Result<(), String>, worked: &str) -> Check {
    match fact {
        Ok(()) => Check {
            ok: true,
            detail: worked.into(),
        },
        Err(why) => Check {
            ok: false,
            detail: why.clone(),
        },
    }
}

/// Every mode in each of its directions, with `run`'s own check.
fn mode_support(facts: &Facts) -> Vec<ModeSupport> {
    ALL_MODES
        .iter()
        .flat_map(|&mode| mode.directions().iter().map(move |&d| (mode, d)))
        .map(|(mode, direction)| ModeSupport {
            mode,
            direction,
            unavailable: facts.check(mode, direction).err(),
        })
        .collect()
}

fn fs_check(path: &Path) -> FsCheck {
    match fsinfo::inspect(path) {
        Ok(info) => FsCheck {
            ok: info.o_direct,
            info: Some(info),
            error: None,
        },
        Err(e) => FsCheck {
            ok: false,
            info: None,
            error: Some(format!("{e:#}")),
        },
    }
}

fn limitations(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if !r.privileges.can_trace() {
        out.push(format!(
            "not root: kernel probes need {}; runs measure userspace timing only",
            kernel::TRACING_PRIVILEGES
        ));
    } else if !r.bpf.ok {
        out.push("BPF unusable: no kernel probes; runs measure userspace timing only".into());
    }
    for t in &r.probe_targets {
        match (t.name.as_str(), t.best) {
            (_, Some(Method::Fentry)) => {}
            ("dma_buf_ioctl", Some(_)) => out.push(format!(
                "dma_buf_ioctl via {} only: {}",
                t.best.map(|m| m.to_string()).unwrap_or_default(),
                "syscall-level timing, includes fd lookup and copy-in"
            )),
            ("rw_file callback", None) => {
                out.push("exporter time (rw_file) cannot be separated from the ioctl".into())
            }
            ("block layer", None) => out.push("no block-layer accounting".into()),
            (name, None) => out.push(format!("{name}: no attach method works")),
            _ => {}
        }
    }
    // Modes that cannot run, grouped by the reason `run` would give.
    let mut why_not: Vec<(&str, Vec<String>)> = Vec::new();
    for m in &r.modes {
        let Some(why) = m.unavailable.as_deref() else {
            continue;
        };
        let name = m.mode.name().to_string();
        match why_not.iter_mut().find(|(w, _)| *w == why) {
            Some((_, modes)) if !modes.contains(&name) => modes.push(name),
            Some(_) => {}
            None => why_not.push((why, vec![name])),
        }
    }
    for (why, modes) in why_not {
        out.push(format!("{} unavailable: {why}", modes.join(", ")));
    }
    out
}
