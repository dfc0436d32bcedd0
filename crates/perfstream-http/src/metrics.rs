//! `/metrics`: the pipeline's counters in the Prometheus/OpenMetrics text format.
//!
//! The pipeline counts in plain atomics (`PipelineStats`); nothing here runs per event. A
//! custom [`Collector`] reads `PipelineStats::snapshot()` when Prometheus scrapes and turns each
//! field into a constant sample, so the hot path pays nothing for being observable. A second
//! collector reads [`TaskHealth`] the same way: one `perfstream_task_up` gauge and one
//! `perfstream_task_failures_total` counter per side task, labelled `task`.

use std::sync::Arc;

use perfstream_pipeline::{PipelineStats, StatsSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::cache::QueryCache;
use crate::health::{TaskHealth, TaskState};

/// Content type of the exposition `encode` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counters: the name without `_total` (the encoder appends it), help, value.
type CounterSpec = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

const COUNTERS: &[CounterSpec] = &[
    (
        "perfstream_messages_in",
        "Kafka messages polled from the input topics.",
        |s| s.messages_in,
    ),
    (
        "perfstream_events_aggregated",
        "Decoded events recorded into an open window or a correction.",
        |s| s.events_aggregated,
    ),
    (
        "perfstream_events_skipped_replay",
        "Events skipped on replay because a committed flush already covers them.",
        |s| s.events_skipped_replay,
    ),
    (
        "perfstream_dead_lettered",
        "Undecodable or invalid messages routed to the dead-letter topic.",
        |s| s.dead_lettered,
    ),
    (
        "perfstream_too_late",
        "Events beyond the correction horizon routed to the late topic.",
        |s| s.too_late,
    ),
    (
        "perfstream_corrections",
        "Late events merged into windows that had already been written.",
        |s| s.corrections,
    ),
    (
        "perfstream_flushes",
        "Flush transactions committed to Postgres.",
        |s| s.flushes,
    ),
    (
        "perfstream_flush_failures",
        "Flush attempts that failed and will be retried (Postgres down or slow).",
        |s| s.flush_failures,
    ),
    (
        "perfstream_fenced",
        "Flushes refused because another consumer owns the partition now.",
        |s| s.fenced,
    ),
    (
        "perfstream_rows_written",
        "Rollup rows inserted or merged by committed flushes.",
        |s| s.rows_written,
    ),
    (
        "perfstream_windows_closed",
        "Windows closed by the watermark and written.",
        |s| s.windows_closed,
    ),
    (
        "perfstream_rebalances",
        "Consumer group rebalances (assignments) this process went through.",
        |s| s.rebalances,
    ),
    (
        "perfstream_routed_truncated",
        "Dead-letter or late envelopes whose original_value was truncated to fit the topic's message size.",
        |s| s.routed_truncated,
    ),
    (
        "perfstream_routing_redeliveries",
        "Routed messages whose delivery failed (topic unavailable) and were sent again.",
        |s| s.routing_redeliveries,
    ),
    (
        "perfstream_unwritable",
        "Events routed to the dead-letter topic because Postgres refused their series (isolated).",
        |s| s.unwritable,
    ),
];

/// Gauges: name, help, value.
type GaugeSpec = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

const GAUGES: &[GaugeSpec] = &[
    (
        "perfstream_isolated_series",
        "Series isolated after Postgres refused to store them; their events go to the dead-letter topic.",
        |s| s.isolated_series,
    ),
    (
        "perfstream_live_series",
        "Series held in open windows and pending corrections, as of the last flush.",
        |s| s.live_series,
    ),
    (
        "perfstream_series_bytes",
        "Estimated bytes of the series held, as of the last flush (budget: window.max_memory_mb).",
        |s| s.series_bytes,
    ),
];

/// Reads the pipeline's atomics at scrape time.
#[derive(Debug)]
struct PipelineCollector {
    stats: Arc<PipelineStats>,
}

impl Collector for PipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.stats.snapshot();
        for (name, help, value) in COUNTERS {
            let counter = ConstCounter::new(value(&snap));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        for (name, help, value) in GAUGES {
            let gauge = ConstGauge::new(value(&snap) as i64);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let partitions = ConstGauge::new(snap.assigned_partitions as i64);
        let metric = encoder.encode_descriptor(
            "perfstream_assigned_partitions",
            "Input partitions this process owns now.",
            None,
            partitions.metric_type(),
        )?;
        partitions.encode(metric)?;
        // The watermark is event time in microseconds; 0 until the first flush.
        let watermark = ConstGauge::new(snap.watermark_us as f64 / 1e6);
        let metric = encoder.encode_descriptor(
            "perfstream_watermark_seconds",
            "Event-time watermark of the last committed flush, Unix seconds (0 before the first).",
            None,
            watermark.metric_type(),
        )?;
        watermark.encode(metric)?;
        let lag = ConstGauge::new(snap.lag as i64);
        let metric = encoder.encode_descriptor(
            "perfstream_consumer_lag_messages",
            "Messages between the input partitions' high watermarks and this process's position.",
            None,
            lag.metric_type(),
        )?;
        lag.encode(metric)?;
        Ok(())
    }
}

/// Reads the side tasks' states at scrape time.
#[derive(Debug)]
struct TaskCollector {
    tasks: TaskHealth,
}

impl Collector for TaskCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tasks = self.tasks.snapshot();
        if tasks.is_empty() {
            return Ok(());
        }
        let mut up = encoder.encode_descriptor(
            "perfstream_task_up",
            "1 while the side task (evaluator, http, maintenance) runs; 0 once it stopped or failed.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for t in &tasks {
            let running = i64::from(t.state == TaskState::Running);
            ConstGauge::new(running).encode(up.encode_family(&[("task", t.task)])?)?;
        }
        let mut failures = encoder.encode_descriptor(
            "perfstream_task_failures",
            "Side task failures (error, panic, or exit before shutdown); each one ends the process.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for t in &tasks {
            ConstCounter::new(t.failures).encode(failures.encode_family(&[("task", t.task)])?)?;
        }
        Ok(())
    }
}

/// Reads the dashboard cache's hit and miss counters at scrape time.
#[derive(Debug)]
struct CacheCollector {
    cache: Arc<QueryCache>,
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (hits, misses) = self.cache.counts();
        for (name, help, value) in [
            (
                "perfstream_http_cache_hits",
                "Dashboard chart answers served from the cache.",
                hits,
            ),
            (
                "perfstream_http_cache_misses",
                "Dashboard chart answers computed by Postgres (not cached, stale after a flush, or expired).",
                misses,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let lookups = hits + misses;
        let ratio = ConstGauge::new(if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        });
        ratio.encode(encoder.encode_descriptor(
            "perfstream_http_cache_hit_ratio",
            "Share of dashboard chart answers served from the cache since start (0 before the first).",
            None,
            ratio.metric_type(),
        )?)?;
        Ok(())
    }
}

/// A registry of three sources: the pipeline's counters, the side tasks' health and the
/// dashboard cache.
pub fn registry(stats: Arc<PipelineStats>, tasks: TaskHealth, cache: Arc<QueryCache>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(PipelineCollector { stats }));
    registry.register_collector(Box::new(TaskCollector { tasks }));
    registry.register_collector(Box::new(CacheCollector { cache }));
    registry
}

/// The text exposition of `registry`, ending with `# EOF`.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn every_counter_and_gauge_reads_the_snapshot_at_encode_time() {
        let stats = Arc::new(PipelineStats::default());
        let registry = registry(stats.clone(), TaskHealth::default(), Default::default());
        stats.flush_failures.store(3, Relaxed);
        stats.watermark_us.store(1_767_225_600_500_000, Relaxed);
        stats.assigned_partitions.store(4, Relaxed);
        let text = encode(&registry).expect("encode");
        assert!(
            text.contains("\nperfstream_flush_failures_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nperfstream_messages_in_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nperfstream_assigned_partitions 4\n"),
            "{text}"
        );
        assert!(
            text.contains("\nperfstream_watermark_seconds 1767225600.5\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        stats.flush_failures.store(4, Relaxed);
        let text = encode(&registry).expect("encode");
        assert!(
            text.contains("\nperfstream_flush_failures_total 4\n"),
            "{text}"
        );
    }

    #[test]
    fn task_health_is_a_labelled_gauge_and_counter_read_at_encode_time() {
        let tasks = TaskHealth::default();
        let registry = registry(
            Arc::new(PipelineStats::default()),
            tasks.clone(),
            Default::default(),
        );
        let text = encode(&registry).expect("encode");
        assert!(
            !text.contains("perfstream_task_up"),
            "no tasks, no family: {text}"
        );
        tasks.running("evaluator");
        tasks.running("http");
        let text = encode(&registry).expect("encode");
        assert!(
            text.contains("\nperfstream_task_up{task=\"evaluator\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nperfstream_task_failures_total{task=\"http\"} 0\n"),
            "{text}"
        );
        tasks.failed("evaluator", "boom");
        let text = encode(&registry).expect("encode");
        for line in [
            "# TYPE perfstream_task_up gauge",
            "# TYPE perfstream_task_failures counter",
            "perfstream_task_up{task=\"evaluator\"} 0",
            "perfstream_task_up{task=\"http\"} 1",
            "perfstream_task_failures_total{task=\"evaluator\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
