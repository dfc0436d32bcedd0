//! Samples (exemplars): per window and key, the k slowest events with their raw fields and
//! where they were read, so an analyst can see real executions behind a p99.
//!
//! The order is total and independent of arrival: slowest first, ties by source (partition,
//! offset) ascending. So the kept set is the same whatever the order of recording and merging,
//! and a replay keeps the same samples.

use crate::PartitionId;

/// Largest `window.samples_per_series`; also the bound of a merged list before it is cut to
/// the configured k.
pub const MAX_SAMPLES: usize = 64;

/// Where an event was read: identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    pub partition: PartitionId,
    pub offset: i64,
}

/// One query execution kept as a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySample {
    pub duration_us: i64,
    pub rows_affected: i64,
    pub instance: String,
    pub tenant_id: Option<String>,
    pub event_time_us: i64,
    /// The producer's trace id (schema version 2), `None` when it sent none or an empty one.
    pub trace_id: Option<String>,
    pub source: Source,
}

/// One request kept as a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSample {
    pub duration_us: i64,
    pub status_code: i32,
    pub request_bytes: Option<i64>,
    pub response_bytes: Option<i64>,
    pub instance: String,
    pub event_time_us: i64,
    /// The producer's trace id (schema version 2), `None` when it sent none or an empty one.
    pub trace_id: Option<String>,
    pub source: Source,
}

/// The trace id a sample keeps: none for an empty one (a producer with tracing off may send
/// `""`).
pub fn trace_id(t: &Option<String>) -> Option<String> {
    t.as_deref().filter(|t| !t.is_empty()).map(str::to_owned)
}

/// Heap bytes of an optional text.
fn opt_capacity(t: &Option<String>) -> usize {
    t.as_ref().map_or(0, String::capacity)
}

/// A sample's place in the order: slowest first, then by source.
pub trait Ranked {
    fn duration_us(&self) -> i64;
    fn source(&self) -> Source;
    fn heap_bytes(&self) -> usize;
}

impl Ranked for QuerySample {
    fn duration_us(&self) -> i64 {
        self.duration_us
    }
    fn source(&self) -> Source {
        self.source
    }
    fn heap_bytes(&self) -> usize {
        self.instance.capacity() + opt_capacity(&self.tenant_id) + opt_capacity(&self.trace_id)
    }
}

impl Ranked for RequestSample {
    fn duration_us(&self) -> i64 {
        self.duration_us
    }
    fn source(&self) -> Source {
        self.source
    }
    fn heap_bytes(&self) -> usize {
        self.instance.capacity() + opt_capacity(&self.trace_id)
    }
}

/// True when (a_duration, a_source) ranks before `b`.
fn before(duration: i64, source: Source, b: &impl Ranked) -> bool {
    (std::cmp::Reverse(duration), source) < (std::cmp::Reverse(b.duration_us()), b.source())
}

/// Offers an event of `duration` read at `source` to `list` (the k slowest, sorted); builds
/// the sample only when it is kept.
#[inline]
pub fn offer<S: Ranked>(
    list: &mut Vec<S>,
    k: usize,
    duration: i64,
    source: Source,
    make: impl FnOnce() -> S,
) {
    if k == 0 || (list.len() >= k && !list.last().is_some_and(|l| before(duration, source, l))) {
        return;
    }
    let at = list.partition_point(|s| !before(duration, source, s));
    if list.get(at).is_some_and(|s| s.source() == source)
        || at > 0 && list[at - 1].source() == source
    {
        return; // the same event again
    }
    if list.len() == list.capacity() && list.len() < k {
        // Grow one at a time: most series of a window see a handful of events, and a sample
        // is about 90 bytes.
        list.reserve_exact(1);
    }
    list.insert(at, make());
    list.truncate(k);
}

/// The union of `a` and `b` (each sorted), sorted, without repeats, cut to `k`.
pub fn merge<S: Ranked + Clone>(a: &mut Vec<S>, b: &[S], k: usize) {
    if b.is_empty() {
        return;
    }
    a.extend(b.iter().cloned());
    a.sort_by_key(|s| (std::cmp::Reverse(s.duration_us()), s.source()));
    a.dedup_by_key(|s| s.source());
    a.truncate(k);
}

/// Heap bytes of a new series' first sample, whose texts take `text_bytes`, with `k` samples
/// kept (0 keeps none): what [`heap_bytes`] gives for its list of one, charged to the memory
/// budget when the series is created rather than at the next flush's recount, so a producer
/// inventing keys pays for its samples' texts (instance, tenant, trace id) at once.
pub fn first_sample_bytes<S>(k: usize, text_bytes: usize) -> usize {
    if k == 0 {
        0
    } else {
        size_of::<S>() + text_bytes
    }
}

/// Heap bytes of a sample list.
pub fn heap_bytes<S: Ranked>(list: &[S], capacity: usize) -> usize {
    capacity * size_of::<S>() + list.iter().map(Ranked::heap_bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(d: i64, offset: i64) -> RequestSample {
        RequestSample {
            duration_us: d,
            status_code: 200,
            request_bytes: None,
            response_bytes: None,
            instance: "i".into(),
            event_time_us: 0,
            trace_id: None,
            source: Source {
                partition: PartitionId {
                    topic: 0,
                    partition: 0,
                },
                offset,
            },
        }
    }

    proptest! {
        /// Whatever the order of offers and merges, the kept samples are the k slowest of all
        /// events (ties by source), sorted.
        #[test]
        fn the_k_slowest_whatever_the_order(
            durations in prop::collection::vec(0..50i64, 0..60),
            k in 1..8usize,
            split in 0..60usize,
        ) {
            let events: Vec<(i64, i64)> = durations.iter().copied().zip(0..).collect();
            let mut want = events.clone();
            want.sort_by_key(|&(d, o)| (std::cmp::Reverse(d), o));
            want.truncate(k);
            // One list in order, and two halves in reverse order merged.
            let mut one = Vec::new();
            for &(d, o) in &events {
                offer(&mut one, k, d, sample(d, o).source, || sample(d, o));
            }
            let split = split.min(events.len());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for &(d, o) in events[..split].iter().rev() {
                offer(&mut a, k, d, sample(d, o).source, || sample(d, o));
            }
            for &(d, o) in events[split..].iter().rev() {
                offer(&mut b, k, d, sample(d, o).source, || sample(d, o));
                // Offering the same event twice changes nothing.
                offer(&mut b, k, d, sample(d, o).source, || sample(d, o));
            }
            merge(&mut a, &b, k);
            let got = |l: &[RequestSample]| l.iter().map(|s| (s.duration_us, s.source.offset)).collect::<Vec<_>>();
            prop_assert_eq!(got(&one), want.clone());
            prop_assert_eq!(got(&a), want);
        }
    }

    /// Issue 14: a sample's trace id counts in the memory budget, and an empty one is none.
    #[test]
    fn trace_ids_count_in_heap_bytes() {
        let plain = sample(5, 1);
        let traced = RequestSample {
            trace_id: trace_id(&Some("4bf92f3577b34da6a3ce929d0e0e4736".into())),
            ..plain.clone()
        };
        assert_eq!(traced.heap_bytes(), plain.heap_bytes() + 32);
        assert_eq!(
            heap_bytes(std::slice::from_ref(&traced), 1),
            heap_bytes(std::slice::from_ref(&plain), 1) + 32
        );
        let q = QuerySample {
            duration_us: 1,
            rows_affected: 0,
            instance: "i".into(),
            tenant_id: Some("t".into()),
            event_time_us: 0,
            trace_id: Some("abc".into()),
            source: plain.source,
        };
        assert_eq!(q.heap_bytes(), 1 + 1 + 3);
        assert_eq!(trace_id(&Some(String::new())), None);
        assert_eq!(trace_id(&None), None);
    }
}
