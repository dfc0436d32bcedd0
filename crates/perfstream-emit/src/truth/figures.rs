//! The exact definitions the truth is computed with: window alignment, percentile rank, parts
//! per million. `tests/python/check_truth.py` implements the same definitions independently.

/// The quantiles reported, in the order of the `p50 .. p999` fields.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

/// How percentiles are defined (written into the file).
pub const PERCENTILE_DEFINITION: &str = "p(q) = v[r-1] where v are the raw values sorted ascending, n = len(v) and r = max(1, ceil(q * n)) computed in IEEE double (q * n as f64); the smallest value such that at least q of the values are <= it, HdrHistogram's value_at_quantile rank";

/// Start of the UTC-aligned window of size `w` holding `t`.
pub fn window_start(t: i64, w: i64) -> i64 {
    t.div_euclid(w) * w
}

/// See [`PERCENTILE_DEFINITION`]. `sorted` must be sorted ascending; 0 when empty.
pub fn exact_quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `num / den` in parts per million, rounded half away from zero, computed exactly.
pub fn ppm_of(num: i64, den: i64) -> i64 {
    let (n, d) = (i128::from(num) * 1_000_000, i128::from(den));
    let q = (2 * n.abs() + d) / (2 * d);
    (q * n.signum()) as i64
}

/// A ratio in parts per million: `round_half_away_from_zero(r * 1e6)` in IEEE double.
pub fn ratio_ppm(r: f64) -> i64 {
    (r * 1e6).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truth::file::Gauge;

    #[test]
    fn quantile_rank_matches_hdr_definition() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(exact_quantile(&v, 0.5), 5);
        assert_eq!(exact_quantile(&v, 0.9), 9);
        assert_eq!(exact_quantile(&v, 0.95), 10);
        assert_eq!(exact_quantile(&v, 0.0), 1);
        assert_eq!(exact_quantile(&[7], 0.999), 7);
        let v: Vec<i64> = (1..=1000).collect();
        assert_eq!(exact_quantile(&v, 0.999), 999);
        assert_eq!(exact_quantile(&v, 0.99), 990);
        assert_eq!(exact_quantile(&[], 0.5), 0);
    }

    #[test]
    fn window_start_is_utc_aligned_for_negative_times_too() {
        assert_eq!(window_start(59_999_999, 60_000_000), 0);
        assert_eq!(window_start(60_000_000, 60_000_000), 60_000_000);
        assert_eq!(window_start(-1, 60_000_000), -60_000_000);
    }

    #[test]
    fn gauge_last_is_latest_then_largest() {
        let g = Gauge::from_samples([(1, 3i64), (2, 1), (3, 2)].into_iter()).unwrap();
        assert_eq!((g.count, g.min, g.max, g.last, g.sum), (3, 1, 3, 2, 6));
        let g = Gauge::from_samples([(5, 3i64), (5, 9), (5, 4), (1, 0)].into_iter()).unwrap();
        assert_eq!(g.last, 9);
        assert!(Gauge::<i64>::from_samples(std::iter::empty()).is_none());
    }

    #[test]
    fn ppm_rounds_half_away_from_zero_exactly() {
        assert_eq!(ppm_of(1, 3), 333_333);
        assert_eq!(ppm_of(2, 3), 666_667);
        assert_eq!(ppm_of(1, 2_000_000), 1); // 0.5 ppm rounds up
        assert_eq!(ppm_of(-1, 2_000_000), -1);
        assert_eq!(ppm_of(20, 20), 1_000_000);
        assert_eq!(ratio_ppm(0.2500005), 250_001);
        assert_eq!(ratio_ppm(0.1), 100_000);
    }
}
