//! Number formatting shared by the views.

/// "812 ns", "14.2 us", "3.10 ms", "1.20 s".
pub fn duration_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// "512 B", "4.0 KiB", "32.0 MiB", "1.00 GiB".
pub fn bytes(b: f64) -> String {
    const K: f64 = 1024.0;
    if b < K {
        format!("{b:.0} B")
    } else if b < K * K {
        format!("{:.1} KiB", b / K)
    } else if b < K * K * K {
        format!("{:.1} MiB", b / K / K)
    } else {
        format!("{:.2} GiB", b / K / K / K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(duration_ns(812.0), "812 ns");
        assert_eq!(duration_ns(14_200.0), "14.2 us");
        assert_eq!(duration_ns(3_100_000.0), "3.10 ms");
        assert_eq!(bytes(32.0 * 1024.0 * 1024.0), "32.0 MiB");
        assert_eq!(bytes(100.0), "100 B");
    }
}
