//! The top kernel functions of a bucket's on-CPU samples: self (the sample
//! was in the function itself) and total (the function was on the stack)
//! as shares of the bucket's samples, perf report's two columns.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{KERNEL_MARK, Stacks};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopFunction {
    pub function: String,
    /// % of the bucket's samples taken in this function.
    pub self_pct: f64,
    /// % of the bucket's samples with this function on the stack.
    pub total_pct: f64,
}

/// The `n` kernel functions with the most self samples (ties: most total).
pub fn kernel_functions(stacks: &Stacks, n: usize) -> Vec<TopFunction> {
    let all = stacks.samples();
    if all == 0 {
        return Vec::new();
    }
    let mut own: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for (stack, count) in &stacks.on_cpu {
        let kernel: Vec<&str> = stack
            .split(';')
            .filter_map(|f| f.strip_suffix(KERNEL_MARK))
            .collect();
        if let (Some(leaf), true) = (kernel.last(), stack.ends_with(KERNEL_MARK)) {
            *own.entry(leaf).or_default() += count;
        }
        for f in kernel.into_iter().collect::<BTreeSet<_>>() {
            *total.entry(f).or_default() += count;
        }
    }
    let pct = |n: u64| 100.0 * n as f64 / all as f64;
    let mut rows: Vec<TopFunction> = total
        .iter()
        .map(|(f, t)| TopFunction {
            function: f.to_string(),
            self_pct: pct(own.get(f).copied().unwrap_or(0)),
            total_pct: pct(*t),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.self_pct
            .total_cmp(&a.self_pct)
            .then(b.total_pct.total_cmp(&a.total_pct))
            .then(a.function.cmp(&b.function))
    });
    rows.truncate(n);
    rows
}

/// % of the bucket's samples taken in the kernel (the leaf is a kernel frame).
pub fn kernel_share(stacks: &Stacks) -> f64 {
    let all = stacks.samples();
    if all == 0 {
        return 0.0;
    }
    let kernel: u64 = stacks
        .on_cpu
        .iter()
        .filter(|(s, _)| s.ends_with(KERNEL_MARK))
        .map(|(_, n)| n)
        .sum();
    100.0 * kernel as f64 / all as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_the_leaf_total_is_anywhere_once_per_stack() {
        let mut s = Stacks::default();
        s.on_cpu.insert("main;read;a_[k];b_[k]".into(), 6);
        s.on_cpu.insert("main;read;a_[k];b_[k];a_[k]".into(), 2);
        s.on_cpu.insert("main;read;a_[k]".into(), 1);
        s.on_cpu.insert("main;copy".into(), 1);
        let top = kernel_functions(&s, 10);
        assert_eq!(top[0].function, "b");
        assert_eq!((top[0].self_pct, top[0].total_pct), (60.0, 80.0));
        assert_eq!(top[1].function, "a");
        assert_eq!((top[1].self_pct, top[1].total_pct), (30.0, 90.0));
        assert_eq!(top.len(), 2);
        assert_eq!(kernel_share(&s), 90.0);
        assert!(kernel_functions(&Stacks::default(), 5).is_empty());
    }
}
