//! [`Flush`]: what one call to [`crate::Engine::flush`] hands the pipeline.

use perfstream_events::EventKind;

use crate::rollup::Rollups;

/// Identifies a source partition. The pipeline picks `topic` (an index it maps to a topic name);
/// the engine only compares ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    pub topic: u32,
    pub partition: i32,
}

/// What to store for a partition with the rollups of a flush, in the same transaction, and to
/// pass back to [`crate::Engine::assign`] after a restart or rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: PartitionId,
    /// Where a new owner must start reading: the smallest offset still contributing to an open
    /// window, or `applied_through_offset` when none does. Commit this to Kafka.
    pub resume_offset: i64,
    /// One past the last offset recorded: everything before it is reflected in stored rows
    /// unless its window ends after `applied_watermark_us`.
    pub applied_through_offset: i64,
    /// Windows ending at or before this are stored, with this partition's part in them.
    pub applied_watermark_us: Option<i64>,
}

/// Counts of one event kind since the previous flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounters {
    /// Events aggregated into an open window.
    pub aggregated: u64,
    /// Late events aggregated into a correction.
    pub corrections: u64,
    /// Late events beyond the correction horizon, handed back to the caller.
    pub too_late: u64,
    /// Replayed events whose window was already stored.
    pub skipped: u64,
    /// Events with an event time too far ahead of their arrival, handed back.
    pub future: u64,
    /// Latency values clamped into the histogram range (exact figures keep the true value).
    pub clamped: u64,
    /// Events aggregated into an overflow series because the series cap was reached.
    pub overflow: u64,
}

/// [`KindCounters`] per event kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub query: KindCounters,
    pub request: KindCounters,
    pub resource: KindCounters,
}

impl Counters {
    pub fn kind(&self, kind: EventKind) -> &KindCounters {
        match kind {
            EventKind::Query => &self.query,
            EventKind::Request => &self.request,
            EventKind::Resource => &self.resource,
        }
    }

    pub fn kind_mut(&mut self, kind: EventKind) -> &mut KindCounters {
        match kind {
            EventKind::Query => &mut self.query,
            EventKind::Request => &mut self.request,
            EventKind::Resource => &mut self.resource,
        }
    }
}

/// Output of one flush. `closed` and `corrections` are sorted by window, then key, and hold at
/// most one rollup per (window, key) each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flush {
    /// The operator watermark the flush used (`None` before any).
    pub watermark_us: Option<i64>,
    /// Windows that closed (end <= watermark), all partitions merged; each is emitted once.
    pub closed: Rollups,
    /// Late events within the correction horizon, per window and key, to merge into stored rows.
    pub corrections: Rollups,
    /// Per partition that recorded anything since it was assigned, ordered by id.
    pub progress: Vec<PartitionProgress>,
    /// Counts since the previous flush.
    pub counters: Counters,
    /// Live series after the flush, for gauges.
    pub live_series: usize,
}
