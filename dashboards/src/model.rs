//! What the dashboard shows, as plain data. The agent builds a Snapshot
//! from its live state at each frame; the views only read it.

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub header: Header,
    /// Every mode of the run, in run order.
    pub modes: Vec<ModeView>,
    /// Index into `modes` of the mode shown in detail.
    pub selected: usize,
    pub panel: Panel,
    pub block: BlockView,
    pub show_help: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub kernel: String,
    pub direction: String,
    pub file: String,
    pub cache: String,
    /// "distinct" or "reuse": the memory the calls move data into.
    pub buffers: String,
    pub probes: Vec<ProbeStatus>,
    pub lost_events: u64,
    /// The probes' own run time as a share of the time inside the calls, %
    /// (None: unknown, or no probes).
    pub probe_cost_pct: Option<f64>,
    pub elapsed_s: f64,
    pub passes_done: u32,
    pub passes_planned: u32,
    /// The mode running now (None once the run ended).
    pub running: Option<String>,
    pub paused: bool,
    pub finished: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStatus {
    pub name: String,
    /// "fentry", "kprobe", "tracepoint", or None when not traced.
    pub method: Option<String>,
    /// A better mechanism exists on some kernels but did not work here.
    pub degraded: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Panel {
    #[default]
    Latency,
    Cpu,
    Block,
    Profile,
}

impl Panel {
    pub fn next(self) -> Panel {
        match self {
            Panel::Latency => Panel::Cpu,
            Panel::Cpu => Panel::Block,
            Panel::Block => Panel::Profile,
            Panel::Profile => Panel::Latency,
        }
    }
}

/// A histogram as (upper bound, count) buckets, log-scaled by the producer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub buckets: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModeView {
    pub name: String,
    pub calls: u64,
    pub bytes: u64,
    /// Throughput over the transfers so far, MiB/s.
    pub mib_per_s: f64,
    /// MiB/s per second of the run, oldest first (bounded by the producer).
    pub bandwidth: Vec<u64>,
    pub latency: Latency,
    pub cpu: Cpu,
    /// Against pread / pread-direct in the same run: (baseline, throughput ratio, p50 ratio).
    pub versus: Vec<(String, f64, f64)>,
    /// The stack profile of the mode's calls so far (None without --profile).
    pub profile: Option<ProfileView>,
    /// A trace's latest request of this kind, decoded (RW_FILE and
    /// copy_file_range: flags, file, offsets, length, dma-buf, errno).
    pub last_request: Option<String>,
}

/// A mode's on-CPU samples so far and its top kernel functions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileView {
    pub hz: u64,
    pub samples: u64,
    /// % of the samples taken in the kernel.
    pub kernel_pct: f64,
    /// (function, self %, total %), the most self first.
    pub functions: Vec<(String, f64, f64)>,
    /// Samples of the run no call could be placed for (bounded memory).
    pub unattributed: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub hist: Buckets,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// Samples beyond the histogram's range, clamped into its last bucket.
    pub clamped: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cpu {
    pub user_ns: u64,
    pub sys_ns: u64,
    /// From the scheduler probe (None without probes).
    pub on_cpu_ns: Option<u64>,
    pub off_cpu_ns: Option<u64>,
    pub cpu_ns_per_mib: f64,
    /// Per-call CPU (user + sys) histogram.
    pub per_call: Buckets,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockView {
    /// False without block probes.
    pub available: bool,
    pub requests: u64,
    pub bytes: u64,
    /// Request size distribution.
    pub sizes: Buckets,
    /// Device latency (issue -> complete) distribution.
    pub device_latency: Buckets,
    /// Average requests in flight over the run (Little's law: busy time / elapsed).
    pub avg_in_flight: f64,
    pub per_device: Vec<(String, u64)>,
}
