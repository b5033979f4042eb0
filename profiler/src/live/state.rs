//! Live state: per-mode bounded histograms (hdrhistogram, outliers clamped
//! and counted), per-second bandwidth in a bounded ring, block-layer
//! aggregates. Turned into a `dashboards::Snapshot` at every frame.
use std::collections::VecDeque;

use dashboards::model::{self, Buckets, Snapshot};
use profiler_common::block::LATENCY_SLOTS;

use crate::{
    metrics::{self, CallTotals, LatencyHistogram},
    probes::block::BlockSnapshot,
    profile::live::{LiveProfile, LiveSample},
    workload::CallRecord,
};

/// Seconds of bandwidth history kept per mode.
const BANDWIDTH_SECONDS: usize = 600;
/// Rows of the profile panel (more than a detail panel shows).
const PROFILE_FUNCTIONS: usize = 40;

pub struct ModeState {
    pub name: String,
    /// Calls, bytes, time in calls and the latency histogram.
    totals: CallTotals,
    user_ns: u64,
    sys_ns: u64,
    on_cpu_ns: Option<u64>,
    off_cpu_ns: Option<u64>,
    /// (second since run start, bytes moved in that second)
    bandwidth: VecDeque<(u64, u64)>,
    /// A trace's latest request of this kind, decoded.
    last_request: Option<String>,
}

impl ModeState {
    fn new(name: &str) -> ModeState {
        ModeState {
            name: name.to_string(),
            totals: CallTotals::default(),
            user_ns: 0,
            sys_ns: 0,
            on_cpu_ns: None,
            off_cpu_ns: None,
            bandwidth: VecDeque::new(),
            last_request: None,
        }
    }

    fn record(&mut self, c: &CallRecord) {
        let cpu = c.cpu.total_ns();
        self.sample(c.wall_ns, c.bytes, Some(cpu), c.start_ns + c.wall_ns);
        self.user_ns += c.cpu.user_ns;
        self.sys_ns += c.cpu.sys_ns;
        if let Some(k) = &c.kernel {
            *self.on_cpu_ns.get_or_insert(0) += k.on_cpu_ns;
            *self.off_cpu_ns.get_or_insert(0) += k.off_cpu_ns;
        }
    }

    /// One call's duration, bytes and CPU, ending `end_ns` after the start.
    fn sample(&mut self, wall_ns: u64, bytes: u64, cpu_ns: Option<u64>, end_ns: u64) {
        self.totals.add(bytes, wall_ns, cpu_ns);
        // Bytes land in the second the call ended.
        let sec = end_ns / 1_000_000_000;
        match self.bandwidth.back_mut() {
            Some((s, b)) if *s == sec => *b += bytes,
            _ => {
                // Seconds with no call ending show as zero.
                let from = self.bandwidth.back().map(|(s, _)| s + 1).unwrap_or(sec);
                for gap in from..sec {
                    self.bandwidth.push_back((gap, 0));
                }
                self.bandwidth.push_back((sec, bytes));
            }
        }
        while self.bandwidth.len() > BANDWIDTH_SECONDS {
            self.bandwidth.pop_front();
        }
    }

    fn view(&self) -> model::ModeView {
        let t = &self.totals;
        let l = &t.latency;
        model::ModeView {
            name: self.name.clone(),
            calls: t.calls,
            bytes: t.bytes,
            mib_per_s: t.mib_per_s(),
            bandwidth: self.bandwidth.iter().map(|(_, b)| b >> 20).collect(),
            latency: model::Latency {
                hist: log_buckets(l),
                min_ns: l.min_ns(),
                p50_ns: l.quantile_ns(0.5),
                p90_ns: l.quantile_ns(0.9),
                p99_ns: l.quantile_ns(0.99),
                p999_ns: l.quantile_ns(0.999),
                max_ns: l.max_ns(),
                clamped: l.clamped(),
            },
            cpu: model::Cpu {
                user_ns: self.user_ns,
                sys_ns: self.sys_ns,
                on_cpu_ns: self.on_cpu_ns,
                off_cpu_ns: self.off_cpu_ns,
                cpu_ns_per_mib: t.cpu_ns_per_mib(),
                per_call: log_buckets(&t.cpu),
            },
            versus: Vec::new(),
            profile: None,
            last_request: self.last_request.clone(),
        }
    }
}

/// Log2 buckets (upper bound 2^(i+1)), as the dashboard draws them.
fn log_buckets(h: &LatencyHistogram) -> Buckets {
    Buckets {
        buckets: h
            .log2_counts(40)
            .into_iter()
            .enumerate()
            .map(|(i, n)| (1u64 << (i + 1), n))
            .collect(),
    }
}

fn slots(h: &[u64; LATENCY_SLOTS as usize]) -> Buckets {
    Buckets {
        buckets: h
            .iter()
            .enumerate()
            .map(|(i, n)| (1u64 << (i + 1), *n))
            .collect(),
    }
}

pub struct LiveState {
    pub started: std::time::Instant,
    pub ended: Option<std::time::Instant>,
    pub header: model::Header,
    pub modes: Vec<ModeState>,
    pub block: Option<BlockSnapshot>,
    pub tgid: u32,
    /// Call time of the windows reset away (the probe cost spans the session).
    reset_call_ns: u64,
    /// `--profile`: the samples at this frequency, placed on the calls.
    profile: Option<(u64, LiveProfile)>,
    /// CLOCK_MONOTONIC at the run's epoch (the zero of its calls' start_ns).
    pub epoch_mono_ns: Option<u64>,
}

impl LiveState {
    pub fn new(header: model::Header, modes: &[String]) -> LiveState {
        LiveState {
            started: std::time::Instant::now(),
            ended: None,
            header,
            modes: modes.iter().map(|m| ModeState::new(m)).collect(),
            block: None,
            tgid: std::process::id(),
            reset_call_ns: 0,
            profile: None,
            epoch_mono_ns: None,
        }
    }

    /// Shows the stack profile sampled at `hz` as it comes.
    pub fn enable_profile(&mut self, hz: u64) {
        self.profile = Some((hz, LiveProfile::default()));
    }

    pub fn record(&mut self, c: &CallRecord) {
        if let Some(m) = self.modes.iter_mut().find(|m| m.name == c.mode.name()) {
            m.record(c);
        }
        if let Some(epoch) = self.epoch_mono_ns {
            let start = epoch + c.start_ns;
            self.profile_call(c.tid, start, start + c.wall_ns, c.mode.name());
        }
    }

    /// A call on the kernel's clock, for placing the profile's samples.
    pub fn profile_call(&mut self, tid: u32, start_ns: u64, end_ns: u64, bucket: &str) {
        if let Some((_, p)) = &mut self.profile {
            p.call(tid, start_ns, end_ns, bucket);
        }
    }

    pub fn profile_samples(&mut self, samples: impl IntoIterator<Item = LiveSample>) {
        if let Some((_, p)) = &mut self.profile {
            p.samples(samples);
        }
    }

    /// A traced call of another process (`dmaprof trace`): rows appear as
    /// new kinds of calls are seen.
    pub fn record_event(&mut self, name: &str, duration_ns: u64, bytes: u64, end_ns: u64) {
        let m = match self.modes.iter().position(|m| m.name == name) {
            Some(i) => &mut self.modes[i],
            None => {
                self.modes.push(ModeState::new(name));
                self.modes.last_mut().expect("just pushed")
            }
        };
        m.sample(duration_ns, bytes, None, end_ns);
    }

    /// A trace's request of kind `name` (recorded with `record_event` just
    /// before), decoded: the row shows the latest.
    pub fn record_request(&mut self, name: &str, text: &str) {
        if let Some(m) = self.modes.iter_mut().find(|m| m.name == name) {
            match &mut m.last_request {
                Some(s) => {
                    s.clear();
                    s.push_str(text);
                }
                None => m.last_request = Some(text.to_string()),
            }
        }
    }

    /// The kernel's block totals, lost events and probe cost as of now.
    pub fn apply_kernel(&mut self, k: &crate::probes::session::KernelSample) {
        if let Some(b) = &k.block {
            self.block = Some(b.clone());
        }
        if let Some(l) = &k.lost {
            self.header.lost_events = l.total();
        }
        self.set_probe_cost(k.costs.as_ref().map(|c| c.iter().map(|c| c.run_ns).sum()));
    }

    /// The probes' run time as a share of the time inside the calls seen so
    /// far (over the whole session: a reset does not restart it).
    pub fn set_probe_cost(&mut self, probe_ns: Option<u64>) {
        let call_ns: u64 =
            self.modes.iter().map(|m| m.totals.wall_ns).sum::<u64>() + self.reset_call_ns;
        self.header.probe_cost_pct = probe_ns
            .filter(|_| call_ns > 0)
            .map(|ns| metrics::per(ns, call_ns) * 100.0);
    }

    /// 'r': a fresh window for histograms and bandwidth; totals restart too.
    pub fn reset(&mut self) {
        self.reset_call_ns += self.modes.iter().map(|m| m.totals.wall_ns).sum::<u64>();
        for m in &mut self.modes {
            *m = ModeState::new(&m.name);
        }
        if let Some((_, p)) = &mut self.profile {
            p.reset();
        }
    }

    pub fn snapshot(&self, selected: usize, panel: model::Panel, show_help: bool) -> Snapshot {
        let mut header = self.header.clone();
        header.elapsed_s = self
            .ended
            .unwrap_or_else(std::time::Instant::now)
            .duration_since(self.started)
            .as_secs_f64();
        let mut modes: Vec<model::ModeView> = self.modes.iter().map(ModeState::view).collect();
        // Against the pread baselines of the same run, when they ran.
        let baselines: Vec<(String, f64, u64)> = modes
            .iter()
            .filter(|m| (m.name == "pread" || m.name == "pread-direct") && m.calls > 0)
            .map(|m| (m.name.clone(), m.mib_per_s, m.latency.p50_ns))
            .collect();
        for m in modes.iter_mut().filter(|m| m.calls > 0) {
            m.versus = baselines
                .iter()
                .filter(|(b, _, _)| *b != m.name)
                .map(|(b, tput, p50)| {
                    (
                        b.clone(),
                        m.mib_per_s / tput.max(f64::MIN_POSITIVE),
                        m.latency.p50_ns as f64 / (*p50).max(1) as f64,
                    )
                })
                .collect();
        }
        if let Some((hz, p)) = &self.profile {
            for m in modes.iter_mut() {
                let counts = p.bucket(&m.name);
                m.profile = Some(model::ProfileView {
                    hz: *hz,
                    samples: counts.map_or(0, |c| c.samples()),
                    kernel_pct: counts.map_or(0.0, |c| c.kernel_share()),
                    functions: counts
                        .map(|c| c.top(PROFILE_FUNCTIONS))
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| (f.function, f.self_pct, f.total_pct))
                        .collect(),
                    unattributed: p.unattributed,
                });
            }
        }
        let block = match &self.block {
            Some(b) => {
                let t = b.process(self.tgid);
                let elapsed_ns = (header.elapsed_s * 1e9).max(1.0);
                let mut per_device: std::collections::BTreeMap<String, u64> = Default::default();
                for (k, v) in b.per_thread.iter().filter(|(k, _)| k.tgid == self.tgid) {
                    let (maj, min) = crate::probes::block::dev_major_minor(k.dev);
                    *per_device.entry(format!("{maj}:{min}")).or_default() += v.bytes;
                }
                model::BlockView {
                    available: true,
                    requests: t.completions,
                    bytes: t.bytes,
                    sizes: b.sizes.get(&self.tgid).map(slots).unwrap_or_default(),
                    device_latency: b.latency.get(&self.tgid).map(slots).unwrap_or_default(),
                    avg_in_flight: (t.device_ns + t.queue_ns) as f64 / elapsed_ns,
                    per_device: per_device.into_iter().collect(),
                }
            }
            None => model::BlockView::default(),
        };
        Snapshot {
            header,
            modes,
            selected: selected.min(self.modes.len().saturating_sub(1)),
            panel,
            block,
            show_help,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{
        cputime::ThreadCpu,
        mode::{Direction, Mode},
    };

    fn call(mode: Mode, start_ns: u64, wall_ns: u64, bytes: u64) -> CallRecord {
        CallRecord {
            mode,
            direction: Direction::Read,
            iteration: 0,
            index: 0,
            file_offset: 0,
            bytes,
            start_ns,
            wall_ns,
            cpu: ThreadCpu {
                user_ns: 10,
                sys_ns: 90,
                ..Default::default()
            },
            tid: 1,
            kernel: None,
            buffers: Default::default(),
        }
    }

    #[test]
    fn snapshot_reflects_the_calls_and_stays_bounded() {
        let mut s = LiveState::new(
            model::Header::default(),
            &["pread".into(), "rw-file-direct".into()],
        );
        for i in 0..10 {
            s.record(&call(Mode::Pread, i * 1_000_000_000, 500_000_000, 64 << 20));
            s.record(&call(
                Mode::RwFileDirect,
                i * 1_000_000_000 + 500_000_000,
                100_000_000,
                64 << 20,
            ));
        }
        // An outlier beyond the histogram range is clamped and counted.
        s.record(&call(
            Mode::Pread,
            20_000_000_000,
            2 * LatencyHistogram::MAX_NS,
            1,
        ));
        let snap = s.snapshot(1, model::Panel::Latency, false);
        let rw = &snap.modes[1];
        assert_eq!(rw.calls, 10);
        assert!((rw.mib_per_s - 640.0).abs() < 0.01, "{}", rw.mib_per_s);
        assert_eq!(rw.versus[0].0, "pread");
        assert!(rw.versus[0].1 > 5.0);
        assert_eq!(snap.modes[0].latency.clamped, 1);
        assert_eq!(rw.latency.hist.buckets.iter().map(|b| b.1).sum::<u64>(), 10);
        // Bandwidth: one entry per second, zeros for seconds without a call ending.
        assert_eq!(rw.bandwidth.len(), 10);
        // A very long run keeps at most BANDWIDTH_SECONDS seconds.
        for i in 0..2000u64 {
            s.record(&call(Mode::RwFileDirect, (100 + i) * 1_000_000_000, 1, 1));
        }
        assert_eq!(
            s.snapshot(1, model::Panel::Latency, false).modes[1]
                .bandwidth
                .len(),
            BANDWIDTH_SECONDS
        );
        s.reset();
        assert_eq!(
            s.snapshot(1, model::Panel::Latency, false).modes[1].calls,
            0
        );
    }

    #[test]
    fn profile_samples_show_under_the_mode_of_their_call() {
        let mut s = LiveState::new(model::Header::default(), &["pread".into()]);
        assert_eq!(
            s.snapshot(0, model::Panel::Profile, false).modes[0].profile,
            None
        );
        s.enable_profile(999);
        s.epoch_mono_ns = Some(1_000);
        s.profile_samples([LiveSample {
            tid: 1,
            time_ns: 1_000 + 150,
            kernel: ["vfs_read", "filemap_read"]
                .map(std::sync::Arc::from)
                .into(),
        }]);
        // The call (100..200 after the epoch) comes after its sample.
        s.record(&call(Mode::Pread, 100, 100, 4096));
        let p = s.snapshot(0, model::Panel::Profile, false).modes[0]
            .profile
            .clone()
            .unwrap();
        assert_eq!((p.hz, p.samples, p.kernel_pct), (999, 1, 100.0));
        assert_eq!(p.functions[0], ("filemap_read".into(), 100.0, 100.0));
        s.reset();
        let p = s.snapshot(0, model::Panel::Profile, false).modes[0]
            .profile
            .clone()
            .unwrap();
        assert_eq!(p.samples, 0);
    }
}
