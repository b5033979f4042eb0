//! `--profile` as user space sees it: the perf-event program attached on
//! every online CPU at the asked frequency of the software CPU clock (the
//! clock every kernel has; these VMs have no hardware counters), the
//! off-CPU program on sched_switch (tp_btf), the ring buffer the samples
//! come through, the stack-trace map they point into and the loss counters.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use aya::{
    Btf, Ebpf,
    maps::{MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        BtfTracePoint, PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
    util::online_cpus,
};
use profiler_common::{
    profile::{StackSample, lost},
    programs,
};
use serde::{Deserialize, Serialize};

use super::attach::{Attached, Method};

/// Attaches both programs; `hz` samples per second on each CPU.
pub fn attach(ebpf: &mut Ebpf, btf: &Btf, hz: u64) -> Result<Attached> {
    let cpus = online_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
    let prog: &mut PerfEvent = ebpf
        .program_mut(programs::PROFILE_CPU_SAMPLE)
        .context(programs::PROFILE_CPU_SAMPLE)?
        .try_into()?;
    prog.load()?;
    for cpu in &cpus {
        prog.attach(
            PerfEventConfig::Software(SoftwareEvent::CpuClock),
            PerfEventScope::AllProcessesOneCpu { cpu: *cpu },
            SamplePolicy::Frequency(hz),
            false,
        )
        .with_context(|| format!("perf event (CPU clock) on CPU {cpu}"))?;
    }
    let off: &mut BtfTracePoint = ebpf
        .program_mut(programs::PROFILE_OFF_CPU)
        .context(programs::PROFILE_OFF_CPU)?
        .try_into()?;
    off.load("sched_switch", btf)
        .context("off-CPU program on sched_switch (tp_btf)")?;
    off.attach()?;
    Ok(Attached {
        probe: "stack profile".into(),
        method: Some(Method::PerfEvent),
        target: format!(
            "cpu-clock at {hz} Hz on {} CPUs (on-CPU); sched_switch via tp_btf (off-CPU)",
            cpus.len()
        ),
        not_used: Vec::new(),
    })
}

/// Every sample waiting in the ring.
fn drain(ring: &mut RingBuf<MapData>, out: &mut Vec<StackSample>) {
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<StackSample>() {
            // SAFETY: the kernel side writes exactly one StackSample per record.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const StackSample) });
        }
    }
}

/// Samples the programs could not record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileLost {
    pub ringbuf_full: u64,
    pub off_cpu_storage: u64,
}

pub fn lost(ebpf: &Ebpf) -> Result<ProfileLost> {
    let map: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map("PROFILE_LOST").context("PROFILE_LOST")?)?;
    let sum = |i: u32| -> Result<u64> { Ok(map.get(&i, 0)?.iter().sum()) };
    Ok(ProfileLost {
        ringbuf_full: sum(lost::RINGBUF_FULL)?,
        off_cpu_storage: sum(lost::OFF_CPU_FULL)?,
    })
}

/// What the collector took: the samples, their stack fields rewritten to
/// keys of `frames` (each stack's instruction pointers, innermost first),
/// or left negative (the kernel's error, or -ENOENT when the stack was gone).
pub struct Collected {
    pub samples: Vec<StackSample>,
    pub frames: HashMap<u32, Vec<u64>>,
}

/// The stack-trace map, emptied as samples arrive: each batch's stack ids
/// are read and then removed, so the map holds only the stacks of samples
/// not yet drained and a new stack rarely finds its bucket taken (a full
/// bucket loses the stack: EEXIST). A bucket freed may come back with
/// another stack under the same id, so ids are resolved per batch and
/// every stack gets a key of its own, the same stack the same key.
struct Stacks {
    map: StackTraceMap<MapData>,
    keys: HashMap<Vec<u64>, u32>,
    frames: HashMap<u32, Vec<u64>>,
}

impl Stacks {
    fn resolve(&mut self, batch: &mut [StackSample]) {
        let mut ids: HashMap<u32, Option<u32>> = HashMap::new();
        for s in batch.iter_mut() {
            for field in [&mut s.kernel_stack, &mut s.user_stack] {
                let Ok(id) = u32::try_from(*field) else {
                    continue;
                };
                let key = *ids.entry(id).or_insert_with(|| {
                    let ips: Vec<u64> = self
                        .map
                        .get(&id, 0)
                        .ok()?
                        .frames()
                        .iter()
                        .map(|f| f.ip)
                        .collect();
                    let next = self.keys.len() as u32;
                    let key = *self.keys.entry(ips.clone()).or_insert(next);
                    self.frames.entry(key).or_insert(ips);
                    Some(key)
                });
                *field = key.map_or(-(libc::ENOENT as i64), i64::from);
            }
        }
        for id in ids.keys() {
            let _ = self.map.remove(id);
        }
    }
}

/// How long the collector lets samples gather after a drain.
const BATCH: std::time::Duration = std::time::Duration::from_millis(20);

/// Sees each batch of samples as it is drained (their stack fields already
/// keys of the frames map, as in `Collected`): the dashboard's live profile.
pub type Tap = Box<dyn FnMut(&[StackSample], &HashMap<u32, Vec<u64>>) + Send>;

/// Drains the samples' ring on the runtime while the workload runs on its
/// own thread, resolving their stacks as they come; `finish` takes every
/// sample emitted up to then.
pub struct Collector {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<Collected>>,
    tap: Arc<Mutex<Option<Tap>>>,
}

/// Starts collecting; takes the ring and the stack map out of the object.
pub fn collect(rt: &tokio::runtime::Runtime, ebpf: &mut Ebpf) -> Result<Collector> {
    let ring = RingBuf::try_from(ebpf.take_map("PROFILE_EVENTS").context("PROFILE_EVENTS")?)?;
    let map = StackTraceMap::try_from(ebpf.take_map("STACKS").context("STACKS")?)?;
    let mut stacks = Stacks {
        map,
        keys: HashMap::new(),
        frames: HashMap::new(),
    };
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let tap: Arc<Mutex<Option<Tap>>> = Arc::default();
    let tapped = tap.clone();
    let task = rt.spawn(async move {
        // SAFETY: the ring owns its map fd and keeps it open until the
        // AsyncFd (which owns the ring) is dropped.
        let mut ring =
            unsafe { tokio::io::unix::AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
        let mut samples = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                ready = ring.readable_mut() => {
                    let mut guard = ready?;
                    let from = samples.len();
                    drain(guard.get_inner_mut(), &mut samples);
                    stacks.resolve(&mut samples[from..]);
                    guard.clear_ready();
                    if let Some(tap) = tapped.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                        tap(&samples[from..], &stacks.frames);
                    }
                    // A wake-up per sample would cost the run more than the
                    // samples do; the 1 MiB ring holds far more than this.
                    tokio::time::sleep(BATCH).await;
                }
            }
        }
        let from = samples.len();
        drain(ring.get_mut(), &mut samples);
        stacks.resolve(&mut samples[from..]);
        Ok(Collected {
            samples,
            frames: stacks.frames,
        })
    });
    Ok(Collector { stop, task, tap })
}

impl Collector {
    /// From now on, each batch also goes to `tap`.
    pub fn tap(&self, tap: Tap) {
        *self.tap.lock().unwrap_or_else(|e| e.into_inner()) = Some(tap);
    }

    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Result<Collected> {
        let _ = self.stop.send(());
        Ok(rt.block_on(self.task).context("the profile collector")??)
    }
}
