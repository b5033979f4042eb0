//! The kernel probes of a workload run: attached unless told not to, or
//! skipped with a reason (no privileges, nothing attaches) unless a method
//! was forced with --attach, which makes any shortfall an error.
use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

use crate::{
    cli::ProbeArgs,
    exit::Exit,
    kernel::Privileges,
    live::{self, state::LiveState},
    probes::{
        profile::Collector,
        report,
        session::{Families, Options, Session},
    },
    profile::{self, Profile},
    workload::{KernelCounters, Outcome},
};

/// The probes of a run, counting the workload thread.
pub struct RunProbes {
    pub session: Session,
    tid: u32,
    /// `--profile`: the frequency and the collector draining the samples.
    profile: Option<(u64, Collector)>,
}

impl RunProbes {
    /// The run's stack profile (`--profile`); a failure is reported and
    /// leaves none.
    pub fn profile(&mut self, rt: &Runtime, outcome: &Outcome) -> Option<Profile> {
        let (hz, collector) = self.profile.take()?;
        profile::finish(
            rt,
            hz,
            collector,
            self.session.profile_lost(),
            &profile::run_timeline(outcome, self.tid),
            &mut profile::symbols::Symbols::new(),
        )
    }
}

impl RunProbes {
    /// `--profile` under the dashboard: the workload thread's samples go
    /// to its profile panel as they come.
    pub fn show_profile(&self, state: &Arc<Mutex<LiveState>>) {
        let Some((hz, collector)) = &self.profile else {
            return;
        };
        let tid = self.tid;
        live::show_profile(state, collector, *hz, move |s| s.tid == tid);
    }
}

impl KernelCounters for RunProbes {
    fn read(&self) -> Option<profiler_common::call::ThreadCounters> {
        self.session.thread_counters(self.tid).ok()
    }

    fn probe_ns(&self) -> Option<u64> {
        self.session.probe_ns()
    }
}

/// Attaches for the calling thread, which must be the one that runs the
/// workload; with `--profile`, starts draining the samples on `rt`.
pub fn start(rt: &Runtime, a: &ProbeArgs) -> Result<Option<RunProbes>, Exit> {
    if a.no_probes {
        eprintln!("dmaprof: kernel probes off (--no-probes)");
        return Ok(None);
    }
    let profile_hz = a.profile.hz();
    if let Err(why) = Privileges::current().require_tracing("kernel tracing") {
        if a.attach.is_some() {
            return Err(Exit::Input(format!("--attach: {why}")));
        }
        if profile_hz.is_some() {
            return Err(Exit::Input(format!("--profile: {why}")));
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
        profile_hz,
    };
    let mut session = match (Session::attach(&opts), a.attach) {
        (Ok(s), _) => s,
        (Err(e), Some(forced)) => return Err(Exit::input(format!("--attach {forced}: {e:#}"))),
        (Err(e), None) if profile_hz.is_some() => {
            return Err(Exit::input(format!("--profile: {e:#}")));
        }
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
    let profile = match profile_hz {
        Some(hz) => {
            let collector = session
                .collect_profile(rt)
                .map_err(|e| Exit::failed(format!("--profile: {e:#}")))?;
            Some((hz, collector))
        }
        None => None,
    };
    report::print_attached(&session.attached, true);
    Ok(Some(RunProbes {
        session,
        tid,
        profile,
    }))
}
