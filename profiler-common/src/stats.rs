//! The statistics a reviewer accepts for benchmark comparisons, after
//! benchstat: medians with a distribution-free 95% confidence interval, and
//! the Mann-Whitney U test (exact for small samples, normal approximation
//! with tie correction otherwise). One place for them: `dmaprof compare`
//! and the xtask benchmarks both report with these.
use std::{vec, vec::Vec};

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn binomial_cdf_half(n: usize, k: usize) -> f64 {
    // P(X <= k), X ~ Binomial(n, 1/2)
    let mut c = 1.0f64;
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            c = c * (n - i + 1) as f64 / i as f64;
        }
        sum += c;
    }
    sum / 2f64.powi(n as i32)
}

/// 95% confidence interval of the median from order statistics: the widest
/// symmetric pair of ranks whose coverage is still >= 95%. None when the
/// sample is too small for any interval to reach 95% (fewer than 6).
pub fn median_ci95(xs: &[f64]) -> Option<(f64, f64)> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n < 6 {
        return None;
    }
    // Coverage of [x_(k+1), x_(n-k)] (1-based) is 1 - 2 P(X <= k).
    let mut best = None;
    for k in 0..n / 2 {
        if 1.0 - 2.0 * binomial_cdf_half(n, k) >= 0.95 {
            best = Some(k);
        } else {
            break;
        }
    }
    best.map(|k| (v[k], v[n - 1 - k]))
}

/// Two-sided Mann-Whitney U test p-value for samples `a` and `b`.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    // Ranks of the pooled sample, ties sharing their mean rank.
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in ranks.iter_mut().take(j + 1).skip(i) {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| x.1 == 0)
        .map(|(_, r)| r)
        .sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u = u1.min((n1 * n2) as f64 - u1);

    if tie_term == 0.0 && n1 * n2 <= 400 {
        return exact_p(n1, n2, u);
    }
    let mean = (n1 * n2) as f64 / 2.0;
    let nf = n as f64;
    let var = (n1 * n2) as f64 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return 1.0; // every value identical
    }
    // Continuity correction.
    let z = ((u - mean).abs() - 0.5).max(0.0) / var.sqrt();
    (2.0 * normal_sf(z)).min(1.0)
}

/// Exact two-sided p-value: count the rank arrangements with U <= u.
fn exact_p(n1: usize, n2: usize, u: f64) -> f64 {
    // counts[i][j][s]: arrangements of i + j items (i from sample 1) with U = s.
    let max_u = n1 * n2;
    let mut prev: Vec<Vec<f64>> = vec![vec![0.0; max_u + 1]; n2 + 1];
    for row in prev.iter_mut() {
        row[0] = 1.0;
    }
    for _i in 1..=n1 {
        let mut cur: Vec<Vec<f64>> = vec![vec![0.0; max_u + 1]; n2 + 1];
        cur[0][0] = 1.0;
        for j in 1..=n2 {
            for s in 0..=max_u {
                // The largest item is from sample 1 (beats all j of sample 2) or from sample 2.
                let from1 = if s >= j { prev[j][s - j] } else { 0.0 };
                cur[j][s] = from1 + cur[j - 1][s];
            }
        }
        prev = cur;
    }
    let counts = &prev[n2];
    let total: f64 = counts.iter().sum();
    let le: f64 = counts
        .iter()
        .enumerate()
        .filter(|(s, _)| (*s as f64) <= u + 1e-9)
        .map(|(_, c)| c)
        .sum();
    (2.0 * le / total).min(1.0)
}

/// Upper tail of the standard normal (Abramowitz-Stegun 7.1.26 via erfc).
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { y } else { 2.0 - y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ci_needs_six_samples_and_brackets_the_median() {
        assert_eq!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        let (lo, hi) = median_ci95(&xs).unwrap();
        // n = 10: ranks 2 and 9 (coverage 97.9%), as in the tables.
        assert_eq!((lo, hi), (2.0, 9.0));
    }

    #[test]
    fn mann_whitney_known_values() {
        // Completely separated samples of 5 and 5: p = 2/252.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        assert!((mann_whitney_p(&a, &b) - 2.0 / 252.0).abs() < 1e-12);
        // Identical samples: nothing to see.
        assert!(mann_whitney_p(&a, &a) > 0.99);
        // Interleaved: not significant.
        let c = [1.0, 3.0, 5.0, 7.0, 9.0];
        let d = [2.0, 4.0, 6.0, 8.0, 10.0];
        assert!(mann_whitney_p(&c, &d) > 0.5);
        // All ties: p = 1.
        assert_eq!(mann_whitney_p(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
    }

    #[test]
    fn normal_approximation_agrees_with_exact_near_the_boundary() {
        // 21 x 21 samples go to the normal approximation; shifted samples are significant.
        let a: Vec<f64> = (0..21).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..21).map(|i| i as f64 + 10.5).collect();
        let p = mann_whitney_p(&a, &b);
        assert!(p < 0.01, "{p}");
        assert!(erfc(0.0) > 0.999 && erfc(0.0) < 1.001);
        assert!((normal_sf(1.959964) - 0.025).abs() < 1e-4);
    }
}
