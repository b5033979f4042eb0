//! `--metrics-addr`: what the OpenMetrics endpoint exports. Calls are
//! counted into prometheus-client histograms and counters as they happen;
//! the kernel's own figures (block I/O per device, lost events, each probe
//! program's run time) are the last snapshot the agent took
//! (`Metrics::set_kernel`), encoded at each scrape by a collector, as
//! ebpf_exporter does with BPF maps. Every label's values are bounded: past
//! `--max-label-values` distinct values a label reads `other`.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use profiler_common::block::LATENCY_SLOTS;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::probes::session::KernelSample;

/// What a label past its bound reads.
pub const OTHER: &str = "other";

/// The call-duration histogram's bucket upper bounds, seconds: 1 us to 10 s,
/// four per decade (each x1.78), rounded to 3 significant digits; +Inf
/// beyond. A quantile read from them is off by at most a bucket's width.
pub fn duration_buckets() -> Vec<f64> {
    (0..=28)
        .map(|i| {
            let v = 1e-6 * 10f64.powf(f64::from(i) / 4.0);
            format!("{v:.2e}").parse().expect("a float")
        })
        .collect()
}

/// A call's labels: `mode` is the run's mode (rw-file-direct ...) or, in
/// `trace`, the kind of call (ioctl RW_FILE, pread, io_uring READ_FIXED);
/// `mechanism` the kernel interface (rw_file-ioctl, copy_file_range ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub mode: String,
    pub mechanism: String,
    pub direction: String,
    pub exporter: String,
    pub process: String,
}

/// The first `max` values of each label are kept, later ones become OTHER.
#[derive(Debug)]
struct LabelBounds {
    max: usize,
    seen: HashMap<&'static str, HashSet<String>>,
}

impl LabelBounds {
    fn bound(&mut self, label: &'static str, value: String) -> String {
        let seen = self.seen.entry(label).or_default();
        if seen.contains(&value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.clone());
            return value;
        }
        OTHER.into()
    }

    fn labels(&mut self, l: CallLabels) -> CallLabels {
        CallLabels {
            mode: self.bound("mode", l.mode),
            mechanism: self.bound("mechanism", l.mechanism),
            direction: self.bound("direction", l.direction),
            exporter: self.bound("exporter", l.exporter),
            process: self.bound("process", l.process),
        }
    }
}

/// One label set's histogram and counter.
#[derive(Clone)]
pub struct CallHandles {
    duration: Histogram,
    bytes: Counter,
}

impl CallHandles {
    /// One call: its duration and the bytes it moved.
    pub fn record(&self, duration_ns: u64, bytes: u64) {
        self.duration.observe(duration_ns as f64 / 1e9);
        self.bytes.inc_by(bytes);
    }
}

/// The endpoint's metrics: the registry the server encodes, the call
/// families the agent feeds, and the kernel figures' snapshot.
pub struct Metrics {
    registry: Registry,
    durations: Family<CallLabels, Histogram, fn() -> Histogram>,
    bytes: Family<CallLabels, Counter>,
    bounds: Mutex<LabelBounds>,
    kernel: Arc<KernelCollector>,
}

impl Metrics {
    pub fn new(max_label_values: usize) -> Metrics {
        let durations: Family<CallLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(duration_buckets()));
        let bytes = Family::<CallLabels, Counter>::default();
        let kernel = Arc::new(KernelCollector {
            figures: Mutex::new(KernelFigures::default()),
            ended: AtomicBool::new(false),
            max_label_values,
        });
        let mut registry = Registry::default();
        registry.register(
            "dmaprof_call_duration_seconds",
            "Duration of each call dmaprof drove or traced, seconds (buckets 1 us to 10 s, four per decade)",
            durations.clone(),
        );
        registry.register("dmaprof_call_bytes", "Bytes the calls moved", bytes.clone());
        registry.register_collector(Box::new(kernel.clone()));
        Metrics {
            registry,
            durations,
            bytes,
            bounds: Mutex::new(LabelBounds {
                max: max_label_values.max(1),
                seen: HashMap::new(),
            }),
            kernel,
        }
    }

    /// One call: its duration and the bytes it moved.
    /// The histogram and counter of calls with these labels (bounded), to
    /// keep: recording through them skips the label lookups, which cost
    /// more than the recording at a million calls a second.
    pub fn handles(&self, labels: CallLabels) -> CallHandles {
        let labels = self
            .bounds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .labels(labels);
        CallHandles {
            duration: self.durations.get_or_create_owned(&labels),
            bytes: self.bytes.get_or_create_owned(&labels),
        }
    }

    /// The kernel's figures as of now (what a scrape reports until the next).
    pub fn set_kernel(&self, s: &KernelSample) {
        let mut f = self
            .kernel
            .figures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(b) = &s.block {
            f.devices = devices(b);
            // Each device's name is read from sysfs once, not every sample.
            let KernelFigures { devices, names, .. } = &mut *f;
            for d in devices.iter() {
                names
                    .entry(d.dev)
                    .or_insert_with(|| crate::probes::block::device_name(d.dev));
            }
        }
        if let Some(l) = &s.lost {
            f.lost = l.by_reason().iter().map(|(r, _, n)| (*r, *n)).collect();
        }
        if let Some(c) = &s.costs {
            f.programs = c
                .iter()
                .map(|c| (c.program.clone(), c.runs, c.run_ns))
                .collect();
        }
    }

    /// The run or trace is over: the figures are final.
    pub fn set_ended(&self) {
        self.kernel.ended.store(true, Ordering::SeqCst);
    }

    pub fn ended(&self) -> bool {
        self.kernel.ended.load(Ordering::SeqCst)
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Block I/O of one device, summed over the processes the probes saw.
#[derive(Debug, Clone)]
struct DeviceFigures {
    /// Kernel-internal dev_t.
    dev: u32,
    /// Log2 ns slots of issue -> complete time.
    latency: [u64; LATENCY_SLOTS as usize],
    device_ns: u64,
    read_bytes: u64,
    write_bytes: u64,
}

#[derive(Debug, Default)]
struct KernelFigures {
    devices: Vec<DeviceFigures>,
    /// Device names by dev_t.
    names: HashMap<u32, String>,
    lost: Vec<(&'static str, u64)>,
    /// Program, runs, run time ns.
    programs: Vec<(String, u64, u64)>,
}

fn devices(b: &crate::probes::block::BlockSnapshot) -> Vec<DeviceFigures> {
    let mut by_dev = std::collections::BTreeMap::new();
    for (k, t) in &b.per_thread {
        let d = device(&mut by_dev, k.dev);
        d.device_ns += t.device_ns;
        d.read_bytes += t.read_bytes;
        d.write_bytes += t.write_bytes;
    }
    for (dev, slots) in &b.latency_by_dev {
        let d = device(&mut by_dev, *dev);
        for (into, n) in d.latency.iter_mut().zip(slots) {
            *into += n;
        }
    }
    by_dev.into_values().collect()
}

fn device(
    by_dev: &mut std::collections::BTreeMap<u32, DeviceFigures>,
    dev: u32,
) -> &mut DeviceFigures {
    by_dev.entry(dev).or_insert_with(|| DeviceFigures {
        dev,
        latency: [0; LATENCY_SLOTS as usize],
        device_ns: 0,
        read_bytes: 0,
        write_bytes: 0,
    })
}

#[derive(Debug)]
struct KernelCollector {
    figures: Mutex<KernelFigures>,
    ended: AtomicBool,
    max_label_values: usize,
}

/// Log2 ns slot i holds [2^i, 2^(i+1)) ns: its upper bound in seconds
/// becomes `le`. Slots under 1 us fold into the first bucket and those over
/// 10 s into +Inf, so the buckets span 1 us to 10 s as the calls' do.
fn block_buckets(slots: &[u64; LATENCY_SLOTS as usize]) -> Vec<(f64, u64)> {
    const FIRST: usize = 9; // le 1.024 us
    const LAST: usize = 33; // le 17.2 s
    let mut out = Vec::with_capacity(LAST - FIRST + 2);
    out.push((
        2f64.powi(FIRST as i32 + 1) / 1e9,
        slots[..=FIRST].iter().sum(),
    ));
    for (i, n) in slots.iter().enumerate().take(LAST + 1).skip(FIRST + 1) {
        out.push((2f64.powi(i as i32 + 1) / 1e9, *n));
    }
    out.push((f64::INFINITY, slots[LAST + 1..].iter().sum()));
    out
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = self.figures.lock().unwrap_or_else(|e| e.into_inner());
        let devices: Vec<(&str, &DeviceFigures)> = f
            .devices
            .iter()
            .take(self.max_label_values)
            .map(|d| (f.names.get(&d.dev).map_or("", String::as_str), d))
            .collect();
        let mut m = encoder.encode_descriptor(
            "dmaprof_block_request_duration_seconds",
            "Block requests' device time (issue to completion), seconds, per device",
            None,
            MetricType::Histogram,
        )?;
        for (name, d) in &devices {
            let buckets = block_buckets(&d.latency);
            let count = buckets.iter().map(|(_, n)| n).sum();
            m.encode_family(&[("device", *name)])?
                .encode_histogram::<NoLabelSet>(d.device_ns as f64 / 1e9, count, &buckets, None)?;
        }
        let mut m = encoder.encode_descriptor(
            "dmaprof_block_bytes",
            "Bytes block requests completed, per device and operation",
            None,
            MetricType::Counter,
        )?;
        for (name, d) in &devices {
            for (op, v) in [("read", d.read_bytes), ("write", d.write_bytes)] {
                ConstCounter::new(v).encode(m.encode_family(&[("device", *name), ("op", op)])?)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "dmaprof_lost_events",
            "Events the probes could not record, per reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in &f.lost {
            ConstCounter::new(*v).encode(m.encode_family(&[("reason", *reason)])?)?;
        }
        let programs = &f.programs[..f.programs.len().min(self.max_label_values)];
        let mut m = encoder.encode_descriptor(
            "dmaprof_probe_runs",
            "Runs of each BPF program (BPF run-time statistics)",
            None,
            MetricType::Counter,
        )?;
        for (program, runs, _) in programs {
            ConstCounter::new(*runs).encode(m.encode_family(&[("program", program.as_str())])?)?;
        }
        let mut m = encoder.encode_descriptor(
            "dmaprof_probe_run_seconds",
            "Time each BPF program ran, seconds (BPF run-time statistics)",
            None,
            MetricType::Counter,
        )?;
        for (program, _, ns) in programs {
            ConstCounter::new(*ns as f64 / 1e9)
                .encode(m.encode_family(&[("program", program.as_str())])?)?;
        }
        drop(f);
        let (user, sys) = crate::probes::events::own_cpu_s();
        ConstCounter::new(user + sys).encode(encoder.encode_descriptor(
            "dmaprof_agent_cpu_seconds",
            "CPU time of the dmaprof process, user and system, seconds (in `run`, the workload's calls too)",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(i64::from(self.ended.load(Ordering::SeqCst))).encode(
            encoder.encode_descriptor(
                "dmaprof_session_ended",
                "Whether the run or trace has ended (then the figures are final)",
                None,
                MetricType::Gauge,
            )?,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_span_a_microsecond_to_ten_seconds_four_per_decade() {
        let b = duration_buckets();
        assert_eq!(b.first(), Some(&1e-6));
        assert_eq!(b.last(), Some(&10.0));
        assert_eq!(b[4], 1e-5);
        assert!(b.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn labels_past_the_bound_read_other() {
        let m = Metrics::new(2);
        for mode in ["a", "b", "c", "a"] {
            m.handles(CallLabels {
                mode: mode.into(),
                mechanism: "pread".into(),
                direction: "read".into(),
                exporter: "system".into(),
                process: "p".into(),
            })
            .record(1_000, 10);
        }
        let text = m.encode();
        assert!(text.contains(r#"dmaprof_call_bytes_total{mode="a",mechanism="pread",direction="read",exporter="system",process="p"} 20"#), "{text}");
        assert!(text.contains(r#"mode="other""#), "{text}");
        assert!(!text.contains(r#"mode="c""#), "{text}");
        assert!(text.contains("dmaprof_session_ended 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn block_slots_become_cumulative_buckets_from_a_microsecond() {
        let mut slots = [0u64; LATENCY_SLOTS as usize];
        slots[3] = 1; // 8 ns: into the first bucket
        slots[20] = 2; // ~1 ms
        slots[39] = 4; // past 17 s: +Inf
        let b = block_buckets(&slots);
        assert_eq!(b.first().unwrap().1, 1);
        assert!((b.first().unwrap().0 - 1.024e-6).abs() < 1e-12);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 7);
        assert_eq!(b.last().unwrap(), &(f64::INFINITY, 4));
    }
}
