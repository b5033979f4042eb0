//! The device's limit on this file: what io_uring O_DIRECT reads at queue
//! depth 32 move, measured in the same run, on the same file with the same
//! chunk, so each path's throughput can be stated as a share of it (the
//! seed's "94% of the device limit", made checkable).
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::{Config, NoObserver, mode::Mode, summary};

/// The queue depth the limit is measured at.
pub const LIMIT_QUEUE_DEPTH: u32 = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceLimit {
    /// Median over the passes, MiB/s.
    pub mib_per_s: f64,
    pub queue_depth: u32,
    pub passes: usize,
    /// `uring-direct` at the shallower depths measured beside it (`bench
    /// --table all`: 8), so queue depth's part in the gap shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shallower: Vec<AtDepth>,
}

/// `uring-direct`'s throughput at one queue depth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtDepth {
    pub queue_depth: u32,
    pub mib_per_s: f64,
}

/// `cfg`'s file moved by `uring-direct` at depth 32 (and first at each of
/// `shallower`), cold cache, as many passes as the run had; `why_not` when
/// the mode cannot run here.
pub fn measure(
    cfg: &Config,
    why_not: Option<&str>,
    stop: &AtomicBool,
    shallower: &[u32],
) -> Result<DeviceLimit, String> {
    if let Some(why) = why_not {
        return Err(format!("uring-direct cannot run here: {why}"));
    }
    let mut measured = Vec::new();
    for &depth in shallower.iter().chain([&LIMIT_QUEUE_DEPTH]) {
        let (mib_per_s, passes) = uring_direct_at(cfg, depth, stop)?;
        measured.push((
            AtDepth {
                queue_depth: depth,
                mib_per_s,
            },
            passes,
        ));
    }
    let (limit, passes) = measured.pop().expect("the limit's depth is measured");
    Ok(DeviceLimit {
        mib_per_s: limit.mib_per_s,
        queue_depth: LIMIT_QUEUE_DEPTH,
        passes,
        shallower: measured.into_iter().map(|(d, _)| d).collect(),
    })
}

/// `uring-direct` at `depth`: median MiB/s and passes.
fn uring_direct_at(cfg: &Config, depth: u32, stop: &AtomicBool) -> Result<(f64, usize), String> {
    let mut limit = cfg.clone();
    limit.modes = vec![Mode::UringDirect];
    limit.queue_depth = depth;
    limit.cache = super::CacheMode::Cold;
    let out = super::run(&limit, stop, &mut NoObserver, None);
    if let Some(e) = out.error {
        return Err(e.to_string());
    }
    if out.interrupted {
        return Err("interrupted".into());
    }
    let row = summary::summarize(&out.passes)
        .into_iter()
        .next()
        .ok_or("no pass")?;
    Ok((row.mib_per_s, row.passes))
}
