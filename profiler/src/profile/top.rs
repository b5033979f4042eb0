//! The top kernel functions of a bucket's on-CPU samples: self (the sample
//! was in the function itself) and total (the function was on the stack)
//! as shares of the bucket's samples, perf report's two columns.
use std::collections::{BTreeSet, HashMap};

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

/// Self and total sample counts per kernel function, stack by stack: the
/// one ranking behind the end-of-run table and the dashboard's live panel.
#[derive(Debug, Default, Clone)]
pub struct FunctionCounts {
    samples: u64,
    own: HashMap<String, u64>,
    total: HashMap<String, u64>,
}

impl FunctionCounts {
    /// `count` samples of one stack whose kernel frames are `kernel`,
    /// outermost first; `in_kernel`: the sample was taken in the last one.
    pub fn add<S: AsRef<str>>(&mut self, kernel: &[S], in_kernel: bool, count: u64) {
        self.samples += count;
        if let (Some(leaf), true) = (kernel.last(), in_kernel) {
            *self.own.entry(leaf.as_ref().to_string()).or_default() += count;
        }
        let once: BTreeSet<&str> = kernel.iter().map(AsRef::as_ref).collect();
        for f in once {
            match self.total.get_mut(f) {
                Some(n) => *n += count,
                None => {
                    self.total.insert(f.to_string(), count);
                }
            }
        }
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// % of the samples taken in the kernel.
    pub fn kernel_share(&self) -> f64 {
        pct(self.own.values().sum(), self.samples)
    }

    /// The `n` functions with the most self samples (ties: most total).
    pub fn top(&self, n: usize) -> Vec<TopFunction> {
        let mut rows: Vec<TopFunction> = self
            .total
            .iter()
            .map(|(f, t)| TopFunction {
                function: f.clone(),
                self_pct: pct(self.own.get(f).copied().unwrap_or(0), self.samples),
                total_pct: pct(*t, self.samples),
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
}

fn pct(n: u64, all: u64) -> f64 {
    if all == 0 {
        return 0.0;
    }
    100.0 * n as f64 / all as f64
}

/// The counts of a bucket's on-CPU folded stacks.
pub fn counts(stacks: &Stacks) -> FunctionCounts {
    let mut c = FunctionCounts::default();
    for (stack, count) in &stacks.on_cpu {
        let kernel: Vec<&str> = stack
            .split(';')
            .filter_map(|f| f.strip_suffix(KERNEL_MARK))
            .collect();
        c.add(&kernel, stack.ends_with(KERNEL_MARK), *count);
    }
    c
}

/// The `n` kernel functions with the most self samples (ties: most total).
pub fn kernel_functions(stacks: &Stacks, n: usize) -> Vec<TopFunction> {
    counts(stacks).top(n)
}

/// % of the bucket's samples taken in the kernel (the leaf is a kernel frame).
pub fn kernel_share(stacks: &Stacks) -> f64 {
    counts(stacks).kernel_share()
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
