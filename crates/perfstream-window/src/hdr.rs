//! HdrHistogram bucket arithmetic for the fixed range of [`crate::rollup::new_histogram`].
//!
//! The compact per-series counts in [`crate::counts`] store HDR *bucket indices* instead of
//! values. This module reproduces hdrhistogram 7.x's indexing exactly (`index_for` /
//! `value_for`), so recording `value_of(index_of(v))` into a real histogram lands in the same
//! bucket as recording `v`. The tests check that equivalence against the crate itself.

use crate::rollup::{HIST_HIGH_US, HIST_LOW_US};

/// Largest supported precision: its bucket indices still fit in a `u16`.
pub const MAX_SIGFIG: u8 = 3;

/// Bucket layout of a histogram over `HIST_LOW_US..=HIST_HIGH_US` at one precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HdrLayout {
    sub_bucket_half_count_magnitude: u32,
    sub_bucket_half_count: u32,
    sub_bucket_mask: u64,
    leading_zero_count_base: u32,
    /// Number of count slots of the dense histogram (indices are `0..counts_len`).
    counts_len: usize,
}

impl HdrLayout {
    /// Layout for `sigfig` significant digits (`1..=MAX_SIGFIG`, checked by the config).
    pub fn new(sigfig: u8) -> Self {
        debug_assert!((1..=MAX_SIGFIG).contains(&sigfig));
        // The lowest value is 1, so hdrhistogram's unit magnitude is 0 throughout.
        let largest = 2 * 10_u32.pow(u32::from(sigfig));
        let sub_bucket_count_magnitude = f64::from(largest).log2().ceil() as u32;
        let sub_bucket_half_count_magnitude = sub_bucket_count_magnitude - 1;
        let sub_bucket_count = 1_u32 << sub_bucket_count_magnitude;
        let mut layout = HdrLayout {
            sub_bucket_half_count_magnitude,
            sub_bucket_half_count: sub_bucket_count / 2,
            sub_bucket_mask: u64::from(sub_bucket_count) - 1,
            leading_zero_count_base: 64 - sub_bucket_count_magnitude,
            counts_len: 0,
        };
        layout.counts_len = layout.index_of(HIST_HIGH_US) as usize + 1;
        debug_assert_eq!(HIST_LOW_US, 1);
        layout
    }

    pub fn counts_len(&self) -> usize {
        self.counts_len
    }

    /// Bucket index of `v`, which must already be clamped into the histogram range.
    #[inline]
    pub fn index_of(&self, v: u64) -> u16 {
        let bucket = self.leading_zero_count_base - (v | self.sub_bucket_mask).leading_zeros();
        let sub_bucket = (v >> bucket) as u32;
        let base = (bucket + 1) << self.sub_bucket_half_count_magnitude;
        (base + sub_bucket - self.sub_bucket_half_count) as u16
    }

    /// Lowest value of bucket `index`: recording it counts in the same bucket as any value
    /// with this index.
    #[inline]
    pub fn value_of(&self, index: u16) -> u64 {
        let index = u32::from(index);
        let mut bucket = (index >> self.sub_bucket_half_count_magnitude) as i32 - 1;
        let mut sub_bucket =
            (index & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count;
        if bucket < 0 {
            sub_bucket -= self.sub_bucket_half_count;
            bucket = 0;
        }
        u64::from(sub_bucket) << bucket
    }

    /// Highest value of bucket `index` (hdrhistogram's `highest_equivalent` of its values).
    #[inline]
    pub fn highest_equivalent(&self, index: u16) -> u64 {
        let bucket = (u32::from(index) >> self.sub_bucket_half_count_magnitude).saturating_sub(1);
        self.value_of(index) + (1_u64 << bucket) - 1
    }
}

/// Clamps a raw measurement into the histogram range; the flag says whether it had to.
#[inline]
pub fn clamp_us(v_us: i64) -> (u64, bool) {
    let c = (v_us.max(0) as u64).clamp(HIST_LOW_US, HIST_HIGH_US);
    (c, c as i64 != v_us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::new_histogram;
    use proptest::prelude::*;

    #[test]
    fn every_bucket_boundary_matches_hdrhistogram() {
        for sigfig in 1..=MAX_SIGFIG {
            let layout = HdrLayout::new(sigfig);
            let hist = new_histogram(sigfig);
            // A fixed-range histogram of this layout has exactly `counts_len` slots in use
            // (hdrhistogram allocates one extra half-bucket we never index).
            assert!(layout.counts_len() <= hist.distinct_values());
            let mut prev = 0;
            for i in 0..layout.counts_len() as u16 {
                let lo = layout.value_of(i);
                assert!(
                    lo > prev || i == 0,
                    "sigfig {sigfig}: bucket {i} not increasing"
                );
                prev = lo;
                if lo < HIST_LOW_US {
                    continue; // index 0 holds value 0, below our range
                }
                assert_eq!(layout.index_of(lo), i, "sigfig {sigfig} value {lo}");
                assert_eq!(hist.lowest_equivalent(lo), lo, "sigfig {sigfig} value {lo}");
                let hi = hist.highest_equivalent(lo).min(HIST_HIGH_US);
                assert_eq!(layout.index_of(hi), i, "sigfig {sigfig} value {hi}");
                assert_eq!(
                    layout.highest_equivalent(i),
                    hist.highest_equivalent(lo),
                    "sigfig {sigfig} bucket {i}"
                );
                if lo > HIST_LOW_US {
                    assert_eq!(layout.index_of(lo - 1), i - 1);
                }
            }
            assert_eq!(
                layout.index_of(HIST_HIGH_US) as usize,
                layout.counts_len() - 1
            );
        }
    }

    proptest! {
        #[test]
        fn index_agrees_with_lowest_equivalent(v in HIST_LOW_US..=HIST_HIGH_US, sigfig in 1..=MAX_SIGFIG) {
            let layout = HdrLayout::new(sigfig);
            let hist = new_histogram(sigfig);
            prop_assert_eq!(layout.value_of(layout.index_of(v)), hist.lowest_equivalent(v));
        }
    }

    #[test]
    fn clamping() {
        assert_eq!(clamp_us(0), (1, true));
        assert_eq!(clamp_us(-5), (1, true));
        assert_eq!(clamp_us(1), (1, false));
        assert_eq!(clamp_us(3_600_000_000), (3_600_000_000, false));
        assert_eq!(clamp_us(3_600_000_001), (3_600_000_000, true));
        assert_eq!(clamp_us(i64::MAX), (3_600_000_000, true));
    }
}
