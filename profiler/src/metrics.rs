//! The measures every output shares, defined once: the latency histogram
//! (its bounds, how outliers are clamped and counted, its encoding in the
//! results JSON), the percentile definition (hdrhistogram's value at
//! quantile, 3 significant digits), and the rate formulas. The summary, the
//! results JSON, `compare` (from a CSV or a JSON) and the dashboard all use
//! these, so the same calls give the same figures wherever they are read.
use std::io;

use base64::Engine as _;
use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
};

pub const MIB: f64 = (1u64 << 20) as f64;

/// MiB per second for `bytes` moved in `ns` (0 when no time passed).
pub fn mib_per_s(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        bytes as f64 / MIB / (ns as f64 / 1e9)
    }
}

/// `total` (e.g. CPU ns) per MiB of `bytes` (0 when nothing moved).
pub fn per_mib(total: u64, bytes: u64) -> f64 {
    if bytes == 0 {
        0.0
    } else {
        total as f64 / (bytes as f64 / MIB)
    }
}

/// `total` per `n` (0 when n is 0), e.g. ns per request.
pub fn per(total: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { total as f64 / n as f64 }
}

/// Call durations in ns, 1 ns to 1 hour at 3 significant digits. A value
/// beyond the range is recorded at the bound and counted in `clamped`.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    clamped: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub const MAX_NS: u64 = 3_600_000_000_000;

    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            hist: Histogram::new_with_bounds(1, Self::MAX_NS, 3).expect("valid bounds"),
            clamped: 0,
        }
    }

    pub fn record(&mut self, ns: u64) {
        if ns > Self::MAX_NS {
            self.clamped += 1;
        }
        self.hist
            .record(ns.clamp(1, Self::MAX_NS))
            .expect("clamped into range");
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Values recorded at the bound because they were beyond it.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// The percentile definition: the value at quantile `q` (0 when empty).
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }

    pub fn quantile_us(&self, q: f64) -> f64 {
        self.quantile_ns(q) as f64 / 1e3
    }

    pub fn min_ns(&self) -> u64 {
        if self.is_empty() { 0 } else { self.hist.min() }
    }

    pub fn max_ns(&self) -> u64 {
        if self.is_empty() { 0 } else { self.hist.max() }
    }

    /// The cumulative distribution: (ns, share of calls at or below it),
    /// one point per distinct recorded value.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let n = self.len().max(1) as f64;
        let mut seen = 0u64;
        self.hist
            .iter_recorded()
            .map(|v| {
                seen += v.count_at_value();
                (v.value_iterated_to().max(1), seen as f64 / n)
            })
            .collect()
    }

    /// Counts in log2 buckets: slot i holds values in [2^i, 2^(i+1)).
    pub fn log2_counts(&self, slots: usize) -> Vec<u64> {
        let mut counts = vec![0u64; slots];
        for v in self.hist.iter_recorded() {
            let value = v.value_iterated_to().max(1);
            let slot = (63 - value.leading_zeros()) as usize;
            counts[slot.min(slots - 1)] += v.count_at_value();
        }
        counts
    }

    /// hdrhistogram V2 + deflate, base64: the results JSON's encoding.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serializing to memory");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<LatencyHistogram, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("latency_histogram is not base64: {e}"))?;
        let hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut io::Cursor::new(bytes))
            .map_err(|e| format!("latency_histogram is not an hdrhistogram: {e:?}"))?;
        Ok(LatencyHistogram { hist, clamped: 0 })
    }
}

/// What a group of calls (a pass, a mode, a trace row) adds up to.
#[derive(Debug, Clone, Default)]
pub struct CallTotals {
    pub calls: u64,
    pub bytes: u64,
    /// Sum of the calls' wall time: the time spent inside calls.
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub latency: LatencyHistogram,
    /// Per-call CPU time (the calling thread's clock), of the calls whose
    /// CPU is known: a run's, not a trace's.
    pub cpu: LatencyHistogram,
}

impl CallTotals {
    /// One call; `cpu_ns` None when its CPU is not known (a traced call).
    pub fn add(&mut self, bytes: u64, wall_ns: u64, cpu_ns: Option<u64>) {
        self.calls += 1;
        self.bytes += bytes;
        self.wall_ns += wall_ns;
        self.latency.record(wall_ns);
        if let Some(cpu_ns) = cpu_ns {
            self.cpu_ns += cpu_ns;
            self.cpu.record(cpu_ns);
        }
    }

    pub fn mib_per_s(&self) -> f64 {
        mib_per_s(self.bytes, self.wall_ns)
    }

    pub fn cpu_ns_per_mib(&self) -> f64 {
        per_mib(self.cpu_ns, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_counts_and_round_trips() {
        let mut h = LatencyHistogram::new();
        for ns in [0, 1_000, 2_000, 3_000] {
            h.record(ns);
        }
        h.record(2 * LatencyHistogram::MAX_NS);
        assert_eq!((h.len(), h.clamped()), (5, 1));
        assert_eq!(h.min_ns(), 1);
        assert!(h.max_ns() >= LatencyHistogram::MAX_NS - LatencyHistogram::MAX_NS / 1000);
        let back = LatencyHistogram::decode(&h.encode()).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.quantile_ns(0.5), h.quantile_ns(0.5));
        assert_eq!(LatencyHistogram::new().quantile_ns(0.5), 0);
        assert_eq!(h.log2_counts(40).iter().sum::<u64>(), 5);
    }

    #[test]
    fn rates() {
        assert_eq!(mib_per_s(1 << 20, 1_000_000_000), 1.0);
        assert_eq!(mib_per_s(5, 0), 0.0);
        assert_eq!(per_mib(10, 2 << 20), 5.0);
        assert_eq!(per(10, 0), 0.0);
    }
}
