//! The kernel probes of a workload run: attached unless told not to, or
//! skipped with a reason (no privileges, nothing attaches) unless a method
//! was forced with --attach, which makes any shortfall an error.
use crate::{
    cli::ProbeArgs,
    exit::Exit,
    kernel::Privileges,
    probes::{
        report,
        session::{Families, Options, Session},
    },
    workload::KernelCounters,
};

/// The probes of a run, counting the workload thread.
pub struct RunProbes {
    pub session: Session,
    tid: u32,
}

impl KernelCounters for RunProbes {
    fn read(&self) -> Option<profiler_common::call::ThreadCounters> {
        self.session.thread_counters(self.tid).ok()
    }

    fn probe_ns(&self) -> Option<u64> {
        self.session.probe_ns()
    }
}

/// Attaches for the calling thread, which must be the one that runs the workload.
pub fn start(a: &ProbeArgs) -> Result<Option<RunProbes>, Exit> {
    if a.no_probes {
        eprintln!("dmaprof: kernel probes off (--no-probes)");
        return Ok(None);
    }
    if let Err(why) = Privileges::current().require_tracing("kernel tracing") {
        if a.attach.is_some() {
            return Err(Exit::Input(format!("--attach: {why}")));
        }
        eprintln!("dmaprof: kernel probes off: {why} (userspace timing only)");
        return Ok(None);
    }
    let opts = Options {
        filter_tgid: Some(std::process::id()),
        force: a.attach,
        exporter_fn: a.exporter_fn.clone(),
        families: Families::WORKLOAD,
        inflight_capacity: None,
        stats: !a.stats.no_probe_stats,
    };
    let mut session = match (Session::attach(&opts), a.attach) {
        (Ok(s), _) => s,
        (Err(e), Some(forced)) => return Err(Exit::input(format!("--attach {forced}: {e:#}"))),
        (Err(e), None) => {
            eprintln!("dmaprof: WARNING: kernel probes off: {e:#}");
            return Ok(None);
        }
    };
    if let (Some(forced), Some(ioctl)) = (a.attach, session.attached.first())
        && ioctl.method != Some(forced)
    {
        return Err(Exit::input(format!(
            "--attach {forced}: {}",
            ioctl.not_used.join("; ")
        )));
    }
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    session
        .register_thread(tid)
        .map_err(|e| Exit::input(format!("registering the workload thread: {e:#}")))?;
    report::print_attached(&session.attached, true);
    Ok(Some(RunProbes { session, tid }))
}
