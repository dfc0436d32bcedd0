//! [`Counts`]: the histogram counts of one series, in the smallest of three representations.
//!
//! Most series see a handful of events per window, and a dense histogram over 1 µs..1 h is
//! 26 KiB at two significant digits. So a series starts with its HDR bucket indices inline
//! (no allocation), moves to a sorted sparse list of (index, count) when that fills, and to a
//! dense array only when the sparse list would be large. All three hold exactly the same
//! information (the count per HDR bucket), so the histogram built from them, and every
//! percentile read from it, is identical whichever was used.

#[cfg(test)]
use hdrhistogram::Histogram;

use crate::hdr::HdrLayout;
#[cfg(test)]
use crate::rollup::new_histogram;

/// Bucket indices held inline before the first allocation.
pub const INLINE_LEN: usize = 14;
/// Distinct buckets held in the sparse list before going dense (4 bytes each).
pub const SPARSE_MAX: usize = 256;

/// Counts per HDR bucket index. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counts {
    /// One bucket index per recorded value, unsorted.
    Inline { len: u8, idx: [u16; INLINE_LEN] },
    /// `index << 16 | count`, sorted (so by index), count in `1..=u16::MAX`.
    Sparse(Vec<u32>),
    /// Count per bucket index, `HdrLayout::counts_len` long.
    Dense(Box<[u64]>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Inline {
            len: 0,
            idx: [0; INLINE_LEN],
        }
    }
}

const COUNT_MASK: u32 = 0xFFFF;

impl Counts {
    /// Heap bytes held (none while inline).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Counts::Inline { .. } => 0,
            Counts::Sparse(s) => s.capacity() * size_of::<u32>(),
            Counts::Dense(d) => d.len() * size_of::<u64>(),
        }
    }

    /// Adds one value with bucket index `i`.
    #[inline]
    pub fn record(&mut self, layout: &HdrLayout, i: u16) {
        match self {
            Counts::Inline { len, idx } if (*len as usize) < INLINE_LEN => {
                idx[*len as usize] = i;
                *len += 1;
            }
            Counts::Dense(d) => d[i as usize] += 1,
            Counts::Sparse(s) => {
                if !sparse_add(s, i, 1) {
                    self.record_n(layout, i, 1)
                }
            }
            Counts::Inline { .. } => self.record_n(layout, i, 1),
        }
    }

    /// Adds `n` values with bucket index `i`.
    pub fn record_n(&mut self, layout: &HdrLayout, i: u16, n: u64) {
        if n == 0 {
            return;
        }
        match self {
            Counts::Inline { len, idx } => {
                if (*len as usize) + (n as usize).min(INLINE_LEN + 1) <= INLINE_LEN {
                    for _ in 0..n {
                        idx[*len as usize] = i;
                        *len += 1;
                    }
                } else {
                    let mut sparse = Vec::with_capacity(INLINE_LEN);
                    for &j in &idx[..*len as usize] {
                        sparse_add(&mut sparse, j, 1);
                    }
                    *self = Counts::Sparse(sparse);
                    self.record_n(layout, i, n);
                }
            }
            Counts::Sparse(s) => {
                if !sparse_add(s, i, n) {
                    let mut dense = vec![0_u64; layout.counts_len()].into_boxed_slice();
                    for &e in s.iter() {
                        dense[(e >> 16) as usize] += u64::from(e & COUNT_MASK);
                    }
                    dense[i as usize] += n;
                    *self = Counts::Dense(dense);
                }
            }
            Counts::Dense(d) => d[i as usize] = d[i as usize].saturating_add(n),
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, layout: &HdrLayout, other: &Counts) {
        other.for_each(|i, n| self.record_n(layout, i, n));
    }

    /// Calls `f(index, count)` for every non-empty bucket (inline indices may repeat).
    pub fn for_each(&self, mut f: impl FnMut(u16, u64)) {
        match self {
            Counts::Inline { len, idx } => idx[..*len as usize].iter().for_each(|&i| f(i, 1)),
            Counts::Sparse(s) => s
                .iter()
                .for_each(|&e| f((e >> 16) as u16, u64::from(e & COUNT_MASK))),
            Counts::Dense(d) => d
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .for_each(|(i, &n)| f(i as u16, n)),
        }
    }

    /// Number of entries `for_each` visits (at least the distinct buckets).
    pub fn distinct(&self) -> usize {
        match self {
            Counts::Inline { len, .. } => *len as usize,
            Counts::Sparse(s) => s.len(),
            Counts::Dense(d) => d.iter().filter(|n| **n > 0).count(),
        }
    }

    /// The standard histogram with these counts.
    #[cfg(test)]
    pub fn to_histogram(&self, layout: &HdrLayout, sigfig: u8) -> Histogram<u64> {
        let mut h = new_histogram(sigfig);
        self.for_each(|i, n| {
            h.record_n(layout.value_of(i), n)
                .expect("bucket values lie inside the histogram range")
        });
        h
    }
}

/// Adds `n` to index `i` of a sparse list; `false` when it must go dense instead (too many
/// distinct buckets, or a count past `u16::MAX`), in which case `s` is unchanged.
#[inline]
fn sparse_add(s: &mut Vec<u32>, i: u16, n: u64) -> bool {
    let key = u32::from(i) << 16;
    let pos = s.partition_point(|&e| e < key);
    match s.get_mut(pos) {
        Some(e) if *e & !COUNT_MASK == key => {
            let c = u64::from(*e & COUNT_MASK) + n;
            if c > u64::from(COUNT_MASK) {
                return false;
            }
            *e = key | c as u32;
        }
        _ => {
            if s.len() >= SPARSE_MAX || n > u64::from(COUNT_MASK) {
                return false;
            }
            s.insert(pos, key | n as u32);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hdr::clamp_us;
    use proptest::prelude::*;

    #[test]
    fn stays_small() {
        assert!(
            std::mem::size_of::<Counts>() <= 32,
            "{}",
            std::mem::size_of::<Counts>()
        );
    }

    fn plain(values: &[u64], sigfig: u8) -> Histogram<u64> {
        let mut h = new_histogram(sigfig);
        values.iter().for_each(|&v| h.record(v).unwrap());
        h
    }

    #[test]
    fn promotes_inline_sparse_dense() {
        let layout = HdrLayout::new(2);
        let mut c = Counts::default();
        for v in 1..=INLINE_LEN as u16 {
            c.record(&layout, v);
        }
        assert!(matches!(c, Counts::Inline { .. }));
        c.record(&layout, 1);
        assert!(matches!(c, Counts::Sparse(_)));
        for v in 1..=SPARSE_MAX as u16 {
            c.record(&layout, v);
        }
        assert!(matches!(c, Counts::Sparse(_)));
        c.record(&layout, SPARSE_MAX as u16 + 1);
        assert!(matches!(c, Counts::Dense(_)));
        let mut total = 0;
        c.for_each(|_, n| total += n);
        assert_eq!(total as usize, INLINE_LEN + 1 + SPARSE_MAX + 1);
    }

    #[test]
    fn count_past_u16_goes_dense() {
        let layout = HdrLayout::new(2);
        let mut c = Counts::default();
        for _ in 0..70_000 {
            c.record(&layout, 7);
        }
        assert!(matches!(c, Counts::Dense(_)));
        assert_eq!(c.to_histogram(&layout, 2).count_at(7), 70_000);
    }

    fn value() -> impl Strategy<Value = i64> {
        prop_oneof![
            1..200_i64,
            1..5_000_000_i64,
            Just(3_600_000_000),
            -5..1_i64,
            3_600_000_000..i64::MAX,
        ]
    }

    proptest! {
        #[test]
        fn same_histogram_as_plain_path(
            sigfig in 1..=3_u8,
            a in prop::collection::vec(value(), 0..600),
            b in prop::collection::vec(value(), 0..40),
        ) {
            let layout = HdrLayout::new(sigfig);
            let clamp = |v: &i64| clamp_us(*v).0;
            let (mut ca, mut cb) = (Counts::default(), Counts::default());
            a.iter().for_each(|v| ca.record(&layout, layout.index_of(clamp(v))));
            b.iter().for_each(|v| cb.record(&layout, layout.index_of(clamp(v))));
            let pa: Vec<u64> = a.iter().map(clamp).collect();
            let pab: Vec<u64> = a.iter().chain(&b).map(clamp).collect();
            prop_assert_eq!(ca.to_histogram(&layout, sigfig), plain(&pa, sigfig));
            ca.merge(&layout, &cb);
            let merged = ca.to_histogram(&layout, sigfig);
            let expected = plain(&pab, sigfig);
            for q in crate::rollup::PERCENTILES {
                prop_assert_eq!(merged.value_at_quantile(q), expected.value_at_quantile(q));
            }
            prop_assert_eq!(merged, expected);
        }
    }
}
