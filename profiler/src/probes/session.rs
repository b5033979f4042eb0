//! All kernel probes of a run in one eBPF object (they share the
//! per-thread counters map): the dma-buf ioctl and the exporter's rw_file,
//! each attached with the best mechanism that really works here, plus the
//! block and scheduler tracepoints. Dropping the session detaches every link.
use anyhow::{Context, Result, bail};
use aya::{
    Btf, Ebpf,
    maps::HashMap,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, Program, TracePoint},
};
use profiler_common::{
    call::{KernelOffsets, SchedOffsets, ThreadCounters, UringOffsets},
    programs,
};
use serde::Serialize;

pub use super::attach::Attached;
pub use super::lost::Lost;
use super::{
    attach::{self, Method},
    block,
};
use crate::tracefs;

/// Which families to attach.
#[derive(Debug, Clone, Copy)]
pub struct Families {
    pub ioctl: bool,
    pub exporter: bool,
    pub block: bool,
    pub sched: bool,
    /// pread64 syscalls, one ring-buffer event each (`dmaprof trace`: a
    /// traced application's baseline reads).
    pub preads: bool,
    /// copy_file_range syscalls, one ring-buffer event each (`dmaprof
    /// trace`); the v4 dma-buf handler goes with `exporter`.
    pub copy_ranges: bool,
    /// io_uring requests, submission to completion, counted per thread;
    /// with `uring_events` also one ring-buffer event each.
    pub uring: bool,
    pub uring_events: bool,
}

impl Families {
    pub const ALL: Families = Families {
        ioctl: true,
        exporter: true,
        block: true,
        sched: true,
        preads: true,
        copy_ranges: true,
        uring: true,
        uring_events: true,
    };
    /// `dmaprof run`: everything but pread and copy_file_range events (the
    /// workload times its own calls; nobody would read those events, they
    /// would only fill the ring).
    pub const WORKLOAD: Families = Families {
        preads: false,
        copy_ranges: false,
        uring_events: false,
        ..Families::ALL
    };
    pub const BLOCK: Families = Families {
        ioctl: false,
        exporter: false,
        block: true,
        sched: false,
        preads: false,
        copy_ranges: false,
        uring: false,
        uring_events: false,
    };
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Trace only this process (None: every process).
    pub filter_tgid: Option<u32>,
    /// Force one mechanism for the ioctl and exporter probes.
    pub force: Option<Method>,
    /// The exporter's rw_file function (default: found in BTF by prototype).
    pub exporter_fn: Option<String>,
    pub families: Families,
    /// Capacity of the block in-flight map (default 16384). Tests shrink it
    /// to exercise the loss path; nothing else should need it.
    pub inflight_capacity: Option<u32>,
    /// Hold BPF run-time statistics on for the session (the probes' own
    /// cost, per program); they cost two clock reads per program run.
    pub stats: bool,
    /// `--profile`: sample stacks at this many Hz per CPU, and off-CPU stacks.
    pub profile_hz: Option<u64>,
}

pub struct Session {
    ebpf: Ebpf,
    /// The one process traced (None: every process).
    filter_tgid: Option<u32>,
    pub attached: Vec<Attached>,
    logger: Option<aya_log::EbpfLogger<super::diagnostics::Collector>>,
    /// BPF run-time statistics, on while this fd is open (the kernel closes
    /// it with the process, even on SIGKILL), or why they are not.
    stats: Result<std::os::fd::OwnedFd, StatsOff>,
}

/// Why a session has no BPF run-time statistics.
#[derive(Debug)]
enum StatsOff {
    Asked,
    Unavailable(String),
}

/// What a session did, kept for the outputs once its programs are detached.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub attached: Vec<Attached>,
    pub lost: Lost,
    pub costs: Option<Vec<ProgramCost>>,
    /// Block device time per device, log2 ns slots (None: unreadable).
    pub block_latency: Option<std::collections::BTreeMap<String, Vec<u64>>>,
}

/// What one of the session's programs has cost since the statistics went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProgramCost {
    pub program: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProgramCost {
    pub fn ns_per_run(&self) -> f64 {
        crate::metrics::per(self.run_ns, self.runs)
    }
}

/// The kernel-side figures read together, a few times a second, for the
/// dashboard and the metrics endpoint (None: that map could not be read).
#[derive(Debug, Default)]
pub struct KernelSample {
    pub block: Option<block::BlockSnapshot>,
    pub lost: Option<Lost>,
    pub costs: Option<Vec<ProgramCost>>,
}

fn sched_offsets(tracefs: &std::path::Path, btf: Option<&crate::btf::Btf>) -> Result<SchedOffsets> {
    let f = tracefs::event_fields(tracefs, "sched", "sched_switch")?;
    let task_pid = btf
        .and_then(|b| b.member_offset("task_struct", "pid"))
        .unwrap_or(0);
    Ok(SchedOffsets {
        prev_pid: tracefs::field_offset(&f, "prev_pid", 4)?,
        next_pid: tracefs::field_offset(&f, "next_pid", 4)?,
        task_pid,
        _pad: 0,
    })
}

/// Where the probes read a dma-buf's identity, a file's, and the file
/// behind an fd, from this kernel's BTF (None: a field is not there; the
/// probes then read nothing and the rows stay without them).
fn kernel_offsets(btf: &crate::btf::Btf) -> Option<KernelOffsets> {
    let at = |st: &str, member: &str| btf.member_offset(st, member);
    Some(KernelOffsets {
        valid: 1,
        dmabuf_size: at("dma_buf", "size")?,
        dmabuf_exp_name: at("dma_buf", "exp_name")?,
        dmabuf_file: at("dma_buf", "file")?,
        dmabuf_name: at("dma_buf", "name")?,
        file_inode: at("file", "f_inode")?,
        file_dentry: at("file", "f_path")? + at("path", "dentry")?,
        file_private: at("file", "private_data")?,
        file_pos: at("file", "f_pos")?,
        file_flags: at("file", "f_flags")?,
        inode_ino: at("inode", "i_ino")?,
        inode_sb: at("inode", "i_sb")?,
        sb_dev: at("super_block", "s_dev")?,
        sb_magic: at("super_block", "s_magic")?,
        dentry_name: at("dentry", "d_name")? + at("qstr", "name")?,
        dentry_parent: at("dentry", "d_parent")?,
        task_files: at("task_struct", "files")?,
        files_fdt: at("files_struct", "fdt")?,
        fdt_fd: at("fdtable", "fd")?,
        fdt_max_fds: at("fdtable", "max_fds")?,
        o_direct: libc::O_DIRECT as u32,
    })
}

/// The ioctl programs read fd, cmd, arg and ret at fixed offsets: check this
/// kernel agrees.
fn check_syscall_layout(tracefs: &std::path::Path) -> Result<()> {
    let enter = tracefs::event_fields(tracefs, "syscalls", "sys_enter_ioctl")?;
    let exit = tracefs::event_fields(tracefs, "syscalls", "sys_exit_ioctl")?;
    if tracefs::field_offset(&enter, "fd", 8)? != 16
        || tracefs::field_offset(&enter, "cmd", 8)? != 24
        || tracefs::field_offset(&enter, "arg", 8)? != 32
        || tracefs::field_offset(&exit, "ret", 8)? != 16
    {
        bail!("sys_enter_ioctl/sys_exit_ioctl layout differs from the one the programs read");
    }
    Ok(())
}

/// The pread programs read fd, count and ret at fixed offsets.
fn check_pread_layout(tracefs: &std::path::Path) -> Result<()> {
    let enter = tracefs::event_fields(tracefs, "syscalls", "sys_enter_pread64")?;
    let exit = tracefs::event_fields(tracefs, "syscalls", "sys_exit_pread64")?;
    if tracefs::field_offset(&enter, "fd", 8)? != 16
        || tracefs::field_offset(&enter, "count", 8)? != 32
        || tracefs::field_offset(&exit, "ret", 8)? != 16
    {
        bail!("sys_enter_pread64/sys_exit_pread64 layout differs from the one the programs read");
    }
    Ok(())
}

impl Session {
    pub fn attach(opts: &Options) -> Result<Session> {
        let tracefs = tracefs::ensure_mounted()?.path;
        let tgid = opts.filter_tgid.unwrap_or(0);

        let btf = Btf::from_sys_fs().ok();
        let uring = if opts.families.uring {
            Some(uring_offsets(&tracefs, opts.families.uring_events))
        } else {
            None
        };
        let kernel_btf = crate::btf::Btf::from_sys_fs().ok();
        let block_cfg = if opts.families.block {
            Some(block::prepare(&tracefs, kernel_btf.as_ref())?)
        } else {
            None
        };
        let block_btf = block_cfg.as_ref().and_then(|c| c.btf).unwrap_or_default();
        let sched = if opts.families.sched {
            sched_offsets(&tracefs, kernel_btf.as_ref())?
        } else {
            SchedOffsets::DEFAULT
        };
        let offsets = kernel_btf
            .as_ref()
            .and_then(kernel_offsets)
            .unwrap_or_default();
        let mut ebpf = super::object::load_with(|loader| {
            loader.override_global("FILTER_TGID", &tgid, true);
            loader.override_global("SCHED_OFFSETS", &sched, true);
            loader.override_global("KERNEL_OFFSETS", &offsets, true);
            if let Some(Ok(u)) = &uring {
                loader.override_global("URING_OFFSETS", u, true);
            }
            if let Some(cfg) = &block_cfg {
                loader.override_global("BLOCK_OFFSETS", &cfg.offsets, true);
                loader.override_global("BLOCK_BTF", &block_btf, true);
            }
            if let Some(n) = opts.inflight_capacity {
                loader.map_max_entries("BLOCK_INFLIGHT", n);
            }
        })?;
        let mut attached = Vec::new();

        if opts.families.ioctl {
            attached.push(ioctl_ladder(&mut ebpf, btf.as_ref(), opts.force, &tracefs)?);
        }
        if opts.families.exporter {
            attached.push(exporter_ladder(
                &mut ebpf,
                btf.as_ref(),
                kernel_btf.as_ref(),
                opts,
            )?);
            attached.push(cfr_handler_ladder(
                &mut ebpf,
                btf.as_ref(),
                kernel_btf.as_ref(),
                opts.force,
            ));
        }
        if let Some(u) = &uring {
            attached.push(attach_uring(&mut ebpf, u));
        }
        if opts.families.copy_ranges {
            attached.push(attach_copy_ranges(&mut ebpf, &tracefs)?);
        }
        if let Some(cfg) = &block_cfg {
            attached.push(block::attach(&mut ebpf, cfg, btf.as_ref(), opts.force)?);
            block::arm(&mut ebpf)?;
        }
        if opts.families.preads {
            attached.push(attach_preads(
                &mut ebpf,
                btf.as_ref(),
                opts.force,
                &tracefs,
            )?);
        }
        if opts.families.sched {
            attached.push(attach_sched(&mut ebpf, btf.as_ref(), opts.force, sched)?);
        }
        if let Some(hz) = opts.profile_hz {
            let btf = btf
                .as_ref()
                .context("--profile needs the kernel's BTF (/sys/kernel/btf/vmlinux)")?;
            attached.push(super::profile::attach(&mut ebpf, btf, hz)?);
        }
        // After attaching: aya-log reads the log ring of the loaded programs.
        let logger =
            aya_log::EbpfLogger::init_with_logger(&mut ebpf, super::diagnostics::Collector).ok();
        let stats = match opts.stats {
            false => Err(StatsOff::Asked),
            true => aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| {
                StatsOff::Unavailable(format!(
                    "BPF_ENABLE_STATS: {e} (probe costs unknown; needs CAP_SYS_ADMIN, kernel >= 5.8)"
                ))
            }),
        };
        Ok(Session {
            ebpf,
            filter_tgid: opts.filter_tgid,
            attached,
            logger,
            stats,
        })
    }

    /// Starts counting a thread's kernel activity (read back per call).
    pub fn register_thread(&mut self, tid: u32) -> Result<()> {
        let mut map: HashMap<_, u32, ThreadCounters> = HashMap::try_from(
            self.ebpf
                .map_mut("THREAD_COUNTERS")
                .context("THREAD_COUNTERS")?,
        )?;
        map.insert(tid, ThreadCounters::default(), 0)?;
        Ok(())
    }

    pub fn thread_counters(&self, tid: u32) -> Result<ThreadCounters> {
        let map: HashMap<_, u32, ThreadCounters> = HashMap::try_from(
            self.ebpf
                .map("THREAD_COUNTERS")
                .context("THREAD_COUNTERS")?,
        )?;
        Ok(map.get(&tid, 0)?)
    }

    pub fn block(&self) -> Result<block::BlockSnapshot> {
        block::snapshot(&self.ebpf)
    }

    /// What the probes lost so far (block requests in flight are work in
    /// progress, not counted).
    pub fn lost(&self) -> Result<Lost> {
        super::lost::read(&self.ebpf, self.filter_tgid, false)
    }

    /// What the probes lost over the whole session, once its work is done:
    /// the traced processes' requests still in flight count too.
    pub fn lost_at_end(&self) -> Result<Lost> {
        super::lost::read(&self.ebpf, self.filter_tgid, true)
    }

    /// Runs and run time of every loaded program of the session, from the
    /// kernel's BPF run-time statistics (None when they could not be enabled).
    pub fn program_costs(&self) -> Option<Vec<ProgramCost>> {
        self.stats.as_ref().ok()?;
        let mut costs: Vec<ProgramCost> = self
            .ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(ProgramCost {
                    program: name.to_string(),
                    runs: info.run_count(),
                    run_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect();
        costs.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then(a.program.cmp(&b.program)));
        Some(costs)
    }

    /// Total run time of the session's programs so far, ns.
    /// Block totals, lost events and the programs' cost, as of now.
    pub fn sample(&self) -> KernelSample {
        KernelSample {
            block: self.block().ok(),
            lost: self.lost().ok(),
            costs: self.program_costs(),
        }
    }

    pub fn probe_ns(&self) -> Option<u64> {
        Some(self.program_costs()?.iter().map(|c| c.run_ns).sum())
    }

    /// How it attached, what it lost and what its programs cost, so far.
    pub fn report(&self) -> ProbeReport {
        ProbeReport {
            attached: self.attached.clone(),
            lost: self.lost_at_end().unwrap_or_default(),
            costs: self.program_costs(),
            block_latency: self.block().ok().map(|b| {
                b.latency_by_dev
                    .iter()
                    .map(|(dev, slots)| (block::device_name(*dev), slots.to_vec()))
                    .collect()
            }),
        }
    }

    /// Why per-program costs are unknown, when they were wanted.
    pub fn stats_unavailable(&self) -> Option<&str> {
        match &self.stats {
            Err(StatsOff::Unavailable(why)) => Some(why),
            _ => None,
        }
    }

    /// What the eBPF programs reported through aya-log so far (and how many
    /// messages were dropped).
    pub fn diagnostics(&mut self) -> (Vec<String>, u64) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        super::diagnostics::take()
    }

    /// `--profile`: starts draining the stack samples on `rt` (the ring
    /// and the stack map leave the session for the collector).
    pub fn collect_profile(
        &mut self,
        rt: &tokio::runtime::Runtime,
    ) -> Result<super::profile::Collector> {
        super::profile::collect(rt, &mut self.ebpf)
    }

    /// Samples the profile programs could not record.
    pub fn profile_lost(&self) -> Result<super::profile::ProfileLost> {
        super::profile::lost(&self.ebpf)
    }

    /// The ring buffer of finished ioctl/exporter/pread calls (for `dmaprof
    /// trace`), taken out of the session so it can be drained while the
    /// session's other maps are read.
    pub fn take_events(&mut self) -> Result<aya::maps::RingBuf<aya::maps::MapData>> {
        Ok(aya::maps::RingBuf::try_from(
            self.ebpf.take_map("CALL_EVENTS").context("CALL_EVENTS")?,
        )?)
    }
}

/// pread64 enter and exit: one ring event per call of the traced process.
/// `--attach tracepoint` forces the syscall tracepoints here too.
fn attach_preads(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    force: Option<Method>,
    tracefs: &std::path::Path,
) -> Result<Attached> {
    let rungs = attach::tracepoint_rungs(force);
    let (found, not_used) = attach::climb(&rungs, |m| {
        let r = match m {
            Method::TpBtf => try_tp_btf_pair(
                ebpf,
                btf,
                (programs::PREAD_RAW_ENTER, "sys_enter"),
                (programs::PREAD_RAW_EXIT, "sys_exit"),
            )
            .map(|()| "sys_enter+sys_exit (raw, pread64 only)".to_string()),
            _ => check_pread_layout(tracefs).and_then(|()| {
                tracepoint(
                    ebpf,
                    programs::PREAD_SYS_ENTER,
                    "syscalls",
                    "sys_enter_pread64",
                )?;
                tracepoint(
                    ebpf,
                    programs::PREAD_SYS_EXIT,
                    "syscalls",
                    "sys_exit_pread64",
                )?;
                Ok("syscalls:sys_enter_pread64+sys_exit_pread64".to_string())
            }),
        };
        r.map_err(|e| attach::describe(&e, m))
    });
    Attached::from_ladder("pread64 syscall", found, not_used)
}

/// sched_switch: the BTF-typed tracepoint, else the classic one.
fn attach_sched(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    force: Option<Method>,
    offsets: SchedOffsets,
) -> Result<Attached> {
    let rungs = attach::tracepoint_rungs(force);
    let (found, not_used) = attach::climb(&rungs, |m| {
        let r = match m {
            Method::TpBtf => (|| {
                anyhow::ensure!(
                    offsets.task_pid != 0,
                    "task_struct.pid not in the kernel's BTF"
                );
                let btf = btf.context("no kernel BTF")?;
                let p: &mut BtfTracePoint = ebpf
                    .program_mut(programs::SCHED_SWITCH_BTF)
                    .context("not built for this architecture")?
                    .try_into()?;
                p.load("sched_switch", btf)?;
                p.attach()?;
                Ok("sched_switch (BTF-typed)".to_string())
            })(),
            _ => tracepoint(ebpf, programs::SCHED_SWITCH, "sched", "sched_switch")
                .map(|()| "sched:sched_switch".to_string()),
        };
        r.map_err(|e| attach::describe(&e, m))
    });
    Attached::from_ladder("scheduler", found, not_used)
}

/// Loads and attaches two tp_btf programs; on failure neither stays loaded.
fn try_tp_btf_pair(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    (entry, entry_tp): (&str, &str),
    (exit, exit_tp): (&str, &str),
) -> Result<()> {
    let btf = btf.context("no kernel BTF")?;
    both_or_neither(ebpf, [entry, exit], |ebpf, name| {
        let tp = if name == entry { entry_tp } else { exit_tp };
        let p: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .context("not built for this architecture")?
            .try_into()?;
        p.load(tp, btf)?;
        Ok(p.attach().map(drop)?)
    })
}

/// Runs `attach` for each program of an enter/exit pair; when one fails,
/// unloads both, so the next rung of the ladder starts from nothing.
fn both_or_neither(
    ebpf: &mut Ebpf,
    pair: [&str; 2],
    mut attach: impl FnMut(&mut Ebpf, &str) -> Result<()>,
) -> Result<()> {
    let result = pair.iter().try_for_each(|name| attach(ebpf, name));
    if result.is_err() {
        for name in pair {
            let _ = match ebpf.program_mut(name) {
                Some(Program::BtfTracePoint(p)) => p.unload(),
                Some(Program::FEntry(p)) => p.unload(),
                Some(Program::FExit(p)) => p.unload(),
                Some(Program::KProbe(p)) => p.unload(),
                _ => Ok(()),
            };
        }
    }
    result
}

fn tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> Result<()> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("{program} missing"))?
        .try_into()?;
    prog.load().with_context(|| format!("loading {program}"))?;
    prog.attach(category, name)
        .with_context(|| format!("attaching {category}:{name}"))?;
    Ok(())
}

fn try_fentry_pair(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    entry: &str,
    exit: &str,
    function: &str,
) -> Result<()> {
    let btf = btf.context("no kernel BTF")?;
    both_or_neither(ebpf, [entry, exit], |ebpf, name| {
        let p = ebpf.program_mut(name).context("missing")?;
        if name == entry {
            let p: &mut FEntry = p.try_into()?;
            p.load(function, btf)?;
            p.attach()?;
        } else {
            let p: &mut FExit = p.try_into()?;
            p.load(function, btf)?;
            p.attach()?;
        }
        Ok(())
    })
}

fn try_kprobe_pair(ebpf: &mut Ebpf, entry: &str, exit: &str, function: &str) -> Result<()> {
    both_or_neither(ebpf, [entry, exit], |ebpf, name| {
        let p: &mut KProbe = ebpf.program_mut(name).context("missing")?.try_into()?;
        p.load()?;
        Ok(p.attach(function, 0).map(drop)?)
    })
}

fn ioctl_ladder(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    force: Option<Method>,
    tracefs: &std::path::Path,
) -> Result<Attached> {
    let rungs = match force {
        Some(m) => vec![m],
        None => attach::IOCTL_LADDER.to_vec(),
    };
    let (found, not_used) = attach::climb(&rungs, |m| {
        let r = match m {
            Method::Fentry => try_fentry_pair(
                ebpf,
                btf,
                programs::IOCTL_FENTRY,
                programs::IOCTL_FEXIT,
                "dma_buf_ioctl",
            )
            .map(|()| "dma_buf_ioctl".to_string()),
            Method::TpBtf => try_tp_btf_pair(
                ebpf,
                btf,
                (programs::IOCTL_RAW_ENTER, "sys_enter"),
                (programs::IOCTL_RAW_EXIT, "sys_exit"),
            )
            .map(|()| "sys_enter+sys_exit (raw, ioctl with cmd type 'b')".to_string()),
            Method::Kprobe => try_kprobe_pair(
                ebpf,
                programs::IOCTL_KPROBE,
                programs::IOCTL_KRETPROBE,
                "dma_buf_ioctl",
            )
            .map(|()| "dma_buf_ioctl".to_string()),
            Method::Tracepoint => check_syscall_layout(tracefs).and_then(|()| {
                tracepoint(
                    ebpf,
                    programs::IOCTL_SYS_ENTER,
                    "syscalls",
                    "sys_enter_ioctl",
                )?;
                tracepoint(ebpf, programs::IOCTL_SYS_EXIT, "syscalls", "sys_exit_ioctl")?;
                Ok("syscalls:sys_enter_ioctl+sys_exit_ioctl (cmd type 'b')".to_string())
            }),
            Method::PerfEvent => Err(anyhow::anyhow!(
                "{m} is not a rung of the dma_buf_ioctl probe"
            )),
        };
        r.map_err(|e| attach::describe(&e, m))
    });
    Attached::from_ladder("dma_buf_ioctl", found, not_used)
}

fn exporter_ladder(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    kernel_btf: Option<&crate::btf::Btf>,
    opts: &Options,
) -> Result<Attached> {
    let function = match &opts.exporter_fn {
        Some(f) => Some(f.clone()),
        None => kernel_btf.and_then(|b| {
            b.functions_taking(&["dma_buf", "dma_buf_rw_file"])
                .into_iter()
                .next()
        }),
    };
    let Some(function) = function else {
        return Ok(Attached {
            probe: "rw_file callback".into(),
            method: None,
            target: String::new(),
            not_used: vec![
                "no function in this kernel's BTF takes (struct dma_buf *, struct dma_buf_rw_file *): no exporter implements rw_file".into(),
            ],
        });
    };
    let (found, not_used) = attach::climb(&attach::rungs(opts.force), |m| {
        let r = match m {
            Method::Fentry => try_fentry_pair(
                ebpf,
                btf,
                programs::EXPORTER_FENTRY,
                programs::EXPORTER_FEXIT,
                &function,
            ),
            Method::Kprobe => try_kprobe_pair(
                ebpf,
                programs::EXPORTER_KPROBE,
                programs::EXPORTER_KRETPROBE,
                &function,
            ),
            Method::Tracepoint | Method::TpBtf | Method::PerfEvent => Err(anyhow::anyhow!(
                "exporters have no tracepoint; the ioctl probe covers the call"
            )),
        };
        r.map_err(|e| attach::describe(&e, m))
    });
    Ok(Attached {
        probe: "rw_file callback".into(),
        method: found.map(|(m, ())| m),
        target: function,
        not_used,
    })
}

/// The function v4's copy_file_range reaches in the dma-buf core (it calls
/// the exporter's rw_file_v4): one attach covers every exporter, where an
/// fentry program attaches to one function only.
pub const CFR_HANDLER: &str = "dma_buf_copy_file_range";

/// v4's dma-buf handler of copy_file_range, fentry or kprobe; absent (with
/// the reason) on a kernel without v4.
fn cfr_handler_ladder(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    kernel_btf: Option<&crate::btf::Btf>,
    force: Option<Method>,
) -> Attached {
    let mut attached = Attached {
        probe: "copy_file_range dma-buf handler".into(),
        method: None,
        target: CFR_HANDLER.into(),
        not_used: Vec::new(),
    };
    if !kernel_btf.is_some_and(|b| b.has_function(CFR_HANDLER)) {
        attached.not_used.push(format!(
            "no {CFR_HANDLER} in this kernel's BTF: no copy_file_range with dma-bufs (v4)"
        ));
        return attached;
    }
    let (found, not_used) = attach::climb(&attach::rungs(force), |m| {
        let r = match m {
            Method::Fentry => try_fentry_pair(
                ebpf,
                btf,
                programs::CFR_HANDLER_FENTRY,
                programs::CFR_HANDLER_FEXIT,
                CFR_HANDLER,
            ),
            Method::Kprobe => try_kprobe_pair(
                ebpf,
                programs::CFR_HANDLER_KPROBE,
                programs::CFR_HANDLER_KRETPROBE,
                CFR_HANDLER,
            ),
            Method::Tracepoint | Method::TpBtf | Method::PerfEvent => Err(anyhow::anyhow!(
                "the handler has no tracepoint; the copy_file_range syscall tracepoints cover the call"
            )),
        };
        r.map_err(|e| attach::describe(&e, m))
    });
    attached.method = found.map(|(m, ())| m);
    attached.not_used = not_used;
    attached
}

/// The copy_file_range syscall tracepoints read their fields at fixed offsets.
fn check_copy_range_layout(tracefs: &std::path::Path) -> Result<()> {
    let enter = tracefs::event_fields(tracefs, "syscalls", "sys_enter_copy_file_range")?;
    let exit = tracefs::event_fields(tracefs, "syscalls", "sys_exit_copy_file_range")?;
    let fields = [
        ("fd_in", 16),
        ("off_in", 24),
        ("fd_out", 32),
        ("off_out", 40),
        ("len", 48),
    ];
    for (name, at) in fields {
        if tracefs::field_offset(&enter, name, 8)? != at {
            bail!("sys_enter_copy_file_range: {name} is not at {at}");
        }
    }
    if tracefs::field_offset(&exit, "ret", 8)? != 16 {
        bail!("sys_exit_copy_file_range: ret is not at 16");
    }
    Ok(())
}

/// copy_file_range enter and exit: one ring event per call of the traced
/// process, with its file and dma-buf.
fn attach_copy_ranges(ebpf: &mut Ebpf, tracefs: &std::path::Path) -> Result<Attached> {
    check_copy_range_layout(tracefs)?;
    tracepoint(
        ebpf,
        programs::CFR_SYS_ENTER,
        "syscalls",
        "sys_enter_copy_file_range",
    )?;
    tracepoint(
        ebpf,
        programs::CFR_SYS_EXIT,
        "syscalls",
        "sys_exit_copy_file_range",
    )?;
    Ok(Attached {
        probe: "copy_file_range syscall".into(),
        method: Some(Method::Tracepoint),
        target: "syscalls:sys_enter_copy_file_range+sys_exit_copy_file_range".into(),
        not_used: Vec::new(),
    })
}

/// Where the io_uring programs read the request pointer, the opcode and
/// the result on this kernel, or why they cannot.
fn uring_offsets(tracefs: &std::path::Path, emit: bool) -> Result<UringOffsets, String> {
    let read = || -> Result<UringOffsets> {
        let submit = tracefs::event_fields(tracefs, "io_uring", "io_uring_submit_req")?;
        let complete = tracefs::event_fields(tracefs, "io_uring", "io_uring_complete")?;
        Ok(UringOffsets {
            submit_req: tracefs::field_offset(&submit, "req", 8)?,
            submit_opcode: tracefs::field_offset(&submit, "opcode", 1)?,
            complete_req: tracefs::field_offset(&complete, "req", 8)?,
            complete_res: tracefs::field_offset(&complete, "res", 4)?,
            emit: emit as u32,
        })
    };
    read().map_err(|e| format!("{e:#}"))
}

/// The io_uring tracepoints, or why not (a kernel without io_uring or
/// with other tracepoints: the uring modes then have no kernel attribution).
fn attach_uring(ebpf: &mut Ebpf, offsets: &Result<UringOffsets, String>) -> Attached {
    let target = "io_uring:io_uring_submit_req+io_uring_complete".to_string();
    let result = offsets.clone().map_err(anyhow::Error::msg).and_then(|_| {
        tracepoint(
            ebpf,
            programs::URING_SUBMIT,
            "io_uring",
            "io_uring_submit_req",
        )?;
        tracepoint(
            ebpf,
            programs::URING_COMPLETE,
            "io_uring",
            "io_uring_complete",
        )
    });
    match result {
        Ok(()) => Attached {
            probe: "io_uring requests".into(),
            method: Some(Method::Tracepoint),
            target,
            not_used: Vec::new(),
        },
        Err(e) => Attached {
            probe: "io_uring requests".into(),
            method: None,
            target,
            not_used: vec![format!("tracepoint: {e:#}")],
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_offsets_come_from_this_kernels_btf() {
        let Ok(btf) = crate::btf::Btf::from_sys_fs() else {
            assert!(std::env::var("CI").is_err(), "no BTF under CI");
            eprintln!("SKIP: no kernel BTF");
            return;
        };
        let off = super::kernel_offsets(&btf).expect("every field in BTF");
        assert_eq!(off.valid, 1);
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }
        assert!(off.file_dentry >= 8, "{off:?}");
        // struct qstr { union { ...; u64 hash_len; }; const unsigned char *name; }
        assert!(off.dentry_name >= 8, "{off:?}");
        assert_ne!(off.task_files, 0, "{off:?}");
    }
}
