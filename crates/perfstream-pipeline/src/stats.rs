//! Counters of the pipeline, shared with the demo's live summary and the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct PipelineStats {
    pub messages_in: AtomicU64,
    pub events_aggregated: AtomicU64,
    pub events_skipped_replay: AtomicU64,
    pub corrections: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub too_late: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    pub fenced: AtomicU64,
    pub rows_written: AtomicU64,
    pub windows_closed: AtomicU64,
    pub rebalances: AtomicU64,
    pub assigned_partitions: AtomicU64,
    pub watermark_us: AtomicU64,
    /// Messages between the high watermark and this process's position, summed over its
    /// partitions; refreshed every few seconds.
    pub lag: AtomicU64,
    /// Dead-letter or late envelopes whose `original_value` was truncated to fit the topic.
    pub routed_truncated: AtomicU64,
    /// Routed messages whose delivery failed and were sent again.
    pub routing_redeliveries: AtomicU64,
    /// Events routed to the dead-letter topic because Postgres refused their series.
    pub unwritable: AtomicU64,
    /// Series isolated after Postgres refused them (gauge).
    pub isolated_series: AtomicU64,
    /// Series held in open windows and pending corrections, as of the last flush (gauge).
    pub live_series: AtomicU64,
    /// Their estimated bytes (the `window.max_memory_mb` budget), as of the last flush (gauge).
    pub series_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub messages_in: u64,
    pub events_aggregated: u64,
    pub events_skipped_replay: u64,
    pub corrections: u64,
    pub dead_lettered: u64,
    pub too_late: u64,
    pub flushes: u64,
    pub flush_failures: u64,
    pub fenced: u64,
    pub rows_written: u64,
    pub windows_closed: u64,
    pub rebalances: u64,
    pub assigned_partitions: u64,
    pub watermark_us: u64,
    pub lag: u64,
    pub routed_truncated: u64,
    pub routing_redeliveries: u64,
    pub unwritable: u64,
    pub isolated_series: u64,
    pub live_series: u64,
    pub series_bytes: u64,
}

impl PipelineStats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Relaxed);
        StatsSnapshot {
            messages_in: g(&self.messages_in),
            events_aggregated: g(&self.events_aggregated),
            events_skipped_replay: g(&self.events_skipped_replay),
            corrections: g(&self.corrections),
            dead_lettered: g(&self.dead_lettered),
            too_late: g(&self.too_late),
            flushes: g(&self.flushes),
            flush_failures: g(&self.flush_failures),
            fenced: g(&self.fenced),
            rows_written: g(&self.rows_written),
            windows_closed: g(&self.windows_closed),
            rebalances: g(&self.rebalances),
            assigned_partitions: g(&self.assigned_partitions),
            watermark_us: g(&self.watermark_us),
            lag: g(&self.lag),
            routed_truncated: g(&self.routed_truncated),
            routing_redeliveries: g(&self.routing_redeliveries),
            unwritable: g(&self.unwritable),
            isolated_series: g(&self.isolated_series),
            live_series: g(&self.live_series),
            series_bytes: g(&self.series_bytes),
        }
    }
}
