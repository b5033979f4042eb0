//! CPU the rest of the system spends while a pass transfers: kworkers,
//! interrupts, softirqs, the block layer's completion path, on the run's
//! behalf or not. Measured as busy CPU time of the whole machine (from
//! /proc/stat) minus this process's own CPU time (from /proc/self/stat),
//! at clock-tick resolution (usually 10 ms): meaningful for passes of
//! hundreds of ms, and on an otherwise quiet machine.

/// Ticks of busy CPU (all CPUs) and of this process, at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    system_busy: u64,
    process: u64,
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

pub fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    let total: u64 = cpu.iter().take(8).sum();
    let busy = total.saturating_sub(*cpu.get(3)? + cpu.get(4).copied().unwrap_or(0));
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    let rest: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    let process = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some(Sample {
        system_busy: busy,
        process,
    })
}

/// CPU nanoseconds spent outside this process between two samples.
pub fn others_ns(start: Sample, end: Sample) -> u64 {
    let busy = end.system_busy.saturating_sub(start.system_busy);
    let own = end.process.saturating_sub(start.process);
    busy.saturating_sub(own) * 1_000_000_000 / ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_move_forward() {
        let a = sample().expect("/proc/stat and /proc/self/stat");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = sample().unwrap();
        assert!(b.process >= a.process && b.system_busy >= a.system_busy);
        // Our own busy loop is not counted as "others".
        assert!(
            others_ns(a, b) <= (b.system_busy - a.system_busy) * 1_000_000_000 / ticks_per_second()
        );
    }
}
