//! Block-layer probe (user side): attaches the block tracepoints and reads
//! the per-thread totals the kernel side aggregates.
use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use aya::{
    Btf, Ebpf,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, Program, TracePoint},
};
use profiler_common::{
    block::{
        BlockBtfOffsets, BlockFieldOffsets, BlockKey, BlockTotals, Inflight, InflightKey,
        LATENCY_SLOTS, LatencySlotKey, counter,
    },
    programs,
};

use super::attach::{self, Attached, Method};
use crate::tracefs;

/// What the block probe has counted so far.
#[derive(Debug, Clone, Default)]
pub struct BlockSnapshot {
    pub per_thread: BTreeMap<BlockKey, BlockTotals>,
    /// Device-latency log2 histogram per process (bucket i: [2^i, 2^(i+1)) ns).
    pub latency: BTreeMap<u32, [u64; LATENCY_SLOTS as usize]>,
    /// Request-size log2 histogram per process (bucket i: [2^i, 2^(i+1)) bytes).
    pub sizes: BTreeMap<u32, [u64; LATENCY_SLOTS as usize]>,
    /// Device-latency log2 histogram per device (dev_t), every process's.
    pub latency_by_dev: BTreeMap<u32, [u64; LATENCY_SLOTS as usize]>,
    pub lost: LostEvents,
    /// Requests still in the in-flight map (every process's), sorted by key:
    /// what a shortfall in the totals left behind.
    pub in_flight: Vec<(InflightKey, Inflight)>,
}

/// Events the probes could not account for. Shown to the user, never hidden.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LostEvents {
    pub inflight_map_full: u64,
    pub unmatched_completions: u64,
    pub unmatched_at_start: u64,
    pub totals_map_full: u64,
}

impl BlockSnapshot {
    /// Totals of one thread, over all devices.
    pub fn thread(&self, tid: u32) -> BlockTotals {
        self.sum(|k| k.tid == tid)
    }

    /// Totals of one process, over all its threads and devices.
    pub fn process(&self, tgid: u32) -> BlockTotals {
        self.sum(|k| k.tgid == tgid)
    }

    fn sum(&self, keep: impl Fn(&BlockKey) -> bool) -> BlockTotals {
        let mut total = BlockTotals::default();
        for (_, t) in self.per_thread.iter().filter(|(k, _)| keep(k)) {
            total.add(t);
        }
        total
    }
}

/// A device's name (vda, loop0) from sysfs, else MAJOR:MINOR.
pub fn device_name(dev: u32) -> String {
    let (major, minor) = dev_major_minor(dev);
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// Splits a kernel-internal dev_t (major << 20 | minor).
pub fn dev_major_minor(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xf_ffff)
}

/// The event that names the submitting thread: `block_io_start` (6.5+) runs
/// in submit context; older kernels fall back to `block_rq_insert`.
pub fn start_event(tracefs: &std::path::Path) -> Result<&'static str> {
    for name in ["block_io_start", "block_rq_insert"] {
        if tracefs::has_event(tracefs, "block", name) {
            return Ok(name);
        }
    }
    bail!("neither block:block_io_start nor block:block_rq_insert exists on this kernel")
}

/// Reads the tracepoint layouts this kernel uses.
fn field_offsets(tracefs: &std::path::Path, start: &str) -> Result<BlockFieldOffsets> {
    let complete = tracefs::event_fields(tracefs, "block", "block_rq_complete")?;
    let started = tracefs::event_fields(tracefs, "block", start)?;
    let offsets = BlockFieldOffsets {
        dev: tracefs::field_offset(&complete, "dev", 4)?,
        sector: tracefs::field_offset(&complete, "sector", 8)?,
        nr_sector: tracefs::field_offset(&complete, "nr_sector", 4)?,
        complete_rwbs: tracefs::field_offset(&complete, "rwbs", 10)
            .or_else(|_| tracefs::field_offset(&complete, "rwbs", 8))?,
        complete_error: tracefs::field_offset(&complete, "error", 4)?,
        start_bytes: tracefs::field_offset(&started, "bytes", 4)?,
    };
    // The programs share dev/sector/nr_sector offsets across events: check it.
    for event in [
        start,
        "block_rq_issue",
        "block_bio_frontmerge",
        "block_bio_backmerge",
    ] {
        let fields = tracefs::event_fields(tracefs, "block", event)?;
        if tracefs::field_offset(&fields, "dev", 4)? != offsets.dev
            || tracefs::field_offset(&fields, "sector", 8)? != offsets.sector
            || tracefs::field_offset(&fields, "nr_sector", 4)? != offsets.nr_sector
        {
            bail!("block:{event} lays out dev/sector/nr_sector differently from block_rq_complete");
        }
    }
    Ok(offsets)
}

/// What attaching needs, read from tracefs and BTF before the object is loaded.
pub struct BlockConfig {
    pub offsets: BlockFieldOffsets,
    /// For the BTF-typed programs (None: a member is not in this kernel's BTF).
    pub btf: Option<BlockBtfOffsets>,
    start: &'static str,
}

pub fn prepare(tracefs: &std::path::Path, btf: Option<&crate::btf::Btf>) -> Result<BlockConfig> {
    let start = start_event(tracefs)?;
    Ok(BlockConfig {
        offsets: field_offsets(tracefs, start)?,
        btf: btf.and_then(btf_offsets),
        start,
    })
}

/// Where the BTF-typed programs read `struct request` and `struct bio`.
fn btf_offsets(btf: &crate::btf::Btf) -> Option<BlockBtfOffsets> {
    let at = |st: &str, member: &str| btf.member_offset(st, member);
    let bi_iter = at("bio", "bi_iter")?;
    Some(BlockBtfOffsets {
        valid: 1,
        rq_sector: at("request", "__sector")?,
        rq_data_len: at("request", "__data_len")?,
        rq_cmd_flags: at("request", "cmd_flags")?,
        rq_q: at("request", "q")?,
        q_disk: at("request_queue", "disk")?,
        disk_major: at("gendisk", "major")?,
        disk_first_minor: at("gendisk", "first_minor")?,
        bio_sector: bi_iter + at("bvec_iter", "bi_sector")?,
        bio_size: bi_iter + at("bvec_iter", "bi_size")?,
        bio_bdev: at("bio", "bi_bdev")?,
        bdev_disk: at("block_device", "bd_disk")?,
    })
}

/// The five events: the one that starts a request, then issue, the two
/// merges and completion.
fn events(cfg: &BlockConfig) -> [&'static str; 5] {
    [
        cfg.start,
        "block_rq_issue",
        "block_bio_frontmerge",
        "block_bio_backmerge",
        "block_rq_complete",
    ]
}

/// Attaches the block programs, BTF-typed where the kernel takes them, else
/// on the classic tracepoints (`force`: only those), and says which.
pub fn attach(
    ebpf: &mut Ebpf,
    cfg: &BlockConfig,
    btf: Option<&Btf>,
    force: Option<Method>,
) -> Result<Attached> {
    let rungs = attach::tracepoint_rungs(force);
    let (found, not_used) = attach::climb(&rungs, |m| {
        let r = match m {
            Method::TpBtf => attach_btf(ebpf, cfg, btf),
            _ => attach_classic(ebpf, cfg),
        };
        r.map_err(|e| attach::describe(&e, m))
    });
    Attached::from_ladder("block layer", found, not_used)
}

const BTF_PROGRAMS: [&str; 5] = [
    programs::BLOCK_START_BTF,
    programs::BLOCK_ISSUE_BTF,
    programs::BLOCK_FRONTMERGE_BTF,
    programs::BLOCK_BACKMERGE_BTF,
    programs::BLOCK_COMPLETE_BTF,
];

/// All five BTF-typed programs, or none (a failure unloads those loaded).
fn attach_btf(ebpf: &mut Ebpf, cfg: &BlockConfig, btf: Option<&Btf>) -> Result<String> {
    cfg.btf
        .context("a block struct member is not in the kernel's BTF")?;
    let btf = btf.context("no kernel BTF")?;
    let result =
        BTF_PROGRAMS
            .iter()
            .zip(events(cfg))
            .try_for_each(|(program, event)| -> Result<()> {
                let p: &mut BtfTracePoint = ebpf
                    .program_mut(program)
                    .with_context(|| format!("program {program} missing from the eBPF object"))?
                    .try_into()?;
                p.load(event, btf)?;
                p.attach()?;
                Ok(())
            });
    if let Err(e) = result {
        for program in BTF_PROGRAMS {
            if let Some(Program::BtfTracePoint(p)) = ebpf.program_mut(program) {
                let _ = p.unload();
            }
        }
        return Err(e);
    }
    Ok(format!("{} (BTF-typed)", events(cfg).join(" ")))
}

fn attach_classic(ebpf: &mut Ebpf, cfg: &BlockConfig) -> Result<String> {
    let classic = [
        programs::BLOCK_IO_START,
        programs::BLOCK_RQ_ISSUE,
        programs::BLOCK_BIO_FRONTMERGE,
        programs::BLOCK_BIO_BACKMERGE,
        programs::BLOCK_RQ_COMPLETE,
    ];
    let mut attached = Vec::new();
    for (program, event) in classic.into_iter().zip(events(cfg)) {
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} missing from the eBPF object"))?
            .try_into()?;
        prog.load().with_context(|| format!("loading {program}"))?;
        prog.attach("block", event)
            .with_context(|| format!("attaching block:{event}"))?;
        attached.push(format!("block:{event}"));
    }
    Ok(attached.join(" "))
}

pub fn snapshot(ebpf: &Ebpf) -> Result<BlockSnapshot> {
    let mut snap = BlockSnapshot::default();
    let totals: PerCpuHashMap<_, BlockKey, BlockTotals> =
        PerCpuHashMap::try_from(ebpf.map("BLOCK_TOTALS").context("BLOCK_TOTALS")?)?;
    for entry in totals.iter() {
        let (key, per_cpu) = entry?;
        let sum = snap.per_thread.entry(key).or_default();
        for t in per_cpu.iter() {
            sum.add(t);
        }
    }
    let add = |out: &mut BTreeMap<u32, [u64; LATENCY_SLOTS as usize]>, at: u32, slot: u32, n| {
        let hist = out.entry(at).or_insert([0; LATENCY_SLOTS as usize]);
        if let Some(s) = hist.get_mut(slot as usize) {
            *s += n;
        }
    };
    for name in ["BLOCK_LATENCY", "BLOCK_SIZES"] {
        let map: PerCpuHashMap<_, LatencySlotKey, u64> =
            PerCpuHashMap::try_from(ebpf.map(name).context(name)?)?;
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            let n = per_cpu.iter().sum::<u64>();
            if name == "BLOCK_SIZES" {
                add(&mut snap.sizes, key.tgid, key.slot, n);
            } else {
                add(&mut snap.latency, key.tgid, key.slot, n);
                add(&mut snap.latency_by_dev, key.dev, key.slot, n);
            }
        }
    }
    snap.lost = lost_events(ebpf)?;
    snap.in_flight = in_flight(ebpf)?;
    Ok(snap)
}

/// The in-flight map's entries, sorted by (device, sector).
pub fn in_flight(ebpf: &Ebpf) -> Result<Vec<(InflightKey, Inflight)>> {
    let map: HashMap<_, InflightKey, Inflight> =
        HashMap::try_from(ebpf.map("BLOCK_INFLIGHT").context("BLOCK_INFLIGHT")?)?;
    let mut entries = map.iter().collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|(k, _)| (k.dev, k.sector));
    Ok(entries)
}

/// Requests `dev` (kernel dev_t) has in flight on its device, from sysfs
/// (None when unknown: no such file, or I/O statistics off for its queue,
/// which leaves the count at 0).
pub fn device_in_flight(dev: u32) -> Option<u64> {
    let (major, minor) = dev_major_minor(dev);
    let base = format!("/sys/dev/block/{major}:{minor}");
    let iostats = std::fs::read_to_string(format!("{base}/queue/iostats")).ok()?;
    if iostats.trim() != "1" {
        return None;
    }
    let text = std::fs::read_to_string(format!("{base}/inflight")).ok()?;
    let counts: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (counts.len() == 2).then(|| counts.iter().sum())
}

/// The block probes' own counts of what they could not account for.
pub fn lost_events(ebpf: &Ebpf) -> Result<LostEvents> {
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map("BLOCK_COUNTERS").context("BLOCK_COUNTERS")?)?;
    let read = |i: u32| -> Result<u64> { Ok(counters.get(&i, 0)?.iter().sum()) };
    Ok(LostEvents {
        inflight_map_full: read(counter::INFLIGHT_FULL)?,
        unmatched_completions: read(counter::UNMATCHED_COMPLETE)?,
        unmatched_at_start: read(counter::UNMATCHED_AT_START)?,
        totals_map_full: read(counter::TOTALS_FULL)?,
    })
}

/// Marks the probes armed (now, on the BPF clock): a completion without a
/// start in the second after is a request already in flight, later a miss.
pub fn arm(ebpf: &mut Ebpf) -> Result<()> {
    let mut armed: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(ebpf.map_mut("BLOCK_ARMED_NS").context("BLOCK_ARMED_NS")?)?;
    armed.set(0, crate::workload::monotonic_ns(), 0)?;
    Ok(())
}
