//! [`Engine`]: records events into per-partition window state, advances the watermark, and
//! flushes closed windows and corrections as rollups.

use std::collections::BTreeMap;

use perfstream_events::Event;

use crate::budget::{Budget, Limits};
use crate::config::{ConfigError, Micros, WindowConfig};
use crate::flush::{Counters, Flush, PartitionId, PartitionProgress};
use crate::hdr::HdrLayout;
use crate::key::{PackedKey, encode_query, encode_request, encode_resource};
use crate::partition::{PartitionState, ResumeState};
use crate::rollup::{Rollup, Rollups};
use crate::samples;
use crate::series::Series;
use crate::watermark;
use crate::window::{SeriesMap, WindowState, upsert};

/// What happened to a recorded event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Aggregated into an open window.
    Aggregated,
    /// Its window had closed; aggregated into a correction emitted with the next flush.
    Correction,
    /// A replayed event whose window is already stored; nothing to do.
    Skipped,
    /// Its window closed more than the correction horizon ago: the caller routes the original
    /// message to the late topic.
    TooLate,
    /// Its event time is further ahead of its arrival than `max_future_skew`: refused so it
    /// cannot move the watermark; the caller routes it like a too-late event.
    Future,
}

/// Misuse of the engine by its caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("partition {partition:?} is not assigned to the window engine")]
    NotAssigned { partition: PartitionId },
}

/// The window engine of one pipeline. Deterministic: its output depends only on the calls made.
#[derive(Debug)]
pub struct Engine {
    config: WindowConfig,
    us: Micros,
    layout: HdrLayout,
    partitions: BTreeMap<PartitionId, PartitionState>,
    /// Operator watermark; only ever moves forward.
    watermark_us: Option<i64>,
    live_series: usize,
    budget: Budget,
    limits: Limits,
    counters: Counters,
    /// Packed key of the event being recorded, reused so lookups allocate nothing.
    scratch: Vec<u8>,
}

/// Start and (exclusive) end of the window holding `t`.
/// Bytes of an optional text.
fn opt_len(t: &Option<String>) -> usize {
    t.as_ref().map_or(0, String::len)
}

pub fn window_of(t_us: i64, window_us: i64) -> (i64, i64) {
    let start = t_us.saturating_sub(t_us.rem_euclid(window_us));
    (start, start.saturating_add(window_us))
}

impl Engine {
    pub fn new(config: WindowConfig) -> Result<Self, ConfigError> {
        let us = config.validate()?;
        let limits = Limits {
            max_series: config.max_series,
            max_series_per_service: config.max_series_per_service,
            max_bytes: config.max_memory_mb.saturating_mul(1 << 20),
        };
        Ok(Engine {
            layout: HdrLayout::new(config.significant_digits),
            config,
            us,
            partitions: BTreeMap::new(),
            watermark_us: None,
            live_series: 0,
            budget: Budget::default(),
            limits,
            counters: Counters::default(),
            scratch: Vec::with_capacity(128),
        })
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// The operator watermark: windows ending at or before it are closed.
    pub fn watermark_us(&self) -> Option<i64> {
        self.watermark_us
    }

    /// Series held right now (open windows and pending corrections of every partition).
    pub fn live_series(&self) -> usize {
        self.live_series
    }

    /// Estimated bytes of the series held (see [`crate::budget`]).
    pub fn series_bytes(&self) -> usize {
        self.budget.bytes()
    }

    fn recount(&mut self) {
        self.budget.recount(
            self.partitions
                .values()
                .flat_map(|p| p.open.values().chain(p.corrections.values())),
        );
    }

    /// Starts (or restarts) tracking a partition. After a restart the caller seeks to the stored
    /// resume offset and replays: events below `applied_through_offset` whose window ends at or
    /// before `applied_watermark_us` are skipped as already stored, and the partition's
    /// watermark starts at `applied_watermark_us`. Replaces any state the partition had.
    pub fn assign(&mut self, partition: PartitionId, resume: ResumeState) {
        self.revoke(partition);
        self.partitions
            .insert(partition, PartitionState::new(resume));
    }

    /// Drops a partition's open windows and pending corrections: its next owner replays them
    /// from the resume offset stored with the last flush. Returns whether it was assigned.
    pub fn revoke(&mut self, partition: PartitionId) -> bool {
        match self.partitions.remove(&partition) {
            Some(p) => {
                let n = p.series_count();
                self.live_series -= n;
                if n > 0 {
                    self.recount();
                }
                true
            }
            None => false,
        }
    }

    /// Whether `offset` of `partition` is below the `applied_through_offset` it was assigned
    /// with: a previous owner read it before its last committed flush.
    pub fn is_replay(&self, partition: PartitionId, offset: i64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.is_replay(offset))
    }

    /// Whether a partition replaying below its claimed `applied_through_offset` holds windows
    /// that the operator watermark has already closed for the others (see
    /// [`PartitionState::closed_through_us`]).
    pub fn holding_replay(&self) -> bool {
        self.partitions
            .values()
            .any(|p| p.replaying() && self.watermark_us > p.stored_through_us())
    }

    /// The next offset to read of `partition` (after the last message noted), if known.
    pub fn position(&self, partition: PartitionId) -> Option<i64> {
        self.partitions.get(&partition).and_then(|p| p.next_offset)
    }

    /// Notes that `partition`'s next offset to read is at least `next_offset`: its start position
    /// on assignment, or one past a message that carried no event (undecodable). Progress is
    /// reported for every partition with a position, whether or not it produced rows.
    pub fn note_position(
        &mut self,
        partition: PartitionId,
        next_offset: i64,
    ) -> Result<(), WindowError> {
        let p = self
            .partitions
            .get_mut(&partition)
            .ok_or(WindowError::NotAssigned { partition })?;
        p.next_offset = p.next_offset.max(Some(next_offset));
        Ok(())
    }

    /// Whether an event at `offset` with event time `t_us`, read from `partition`, is a replay
    /// of one whose window an earlier owner stored (what [`Engine::record`] would skip).
    pub fn is_stored(&self, partition: PartitionId, offset: i64, t_us: i64) -> bool {
        self.partitions.get(&partition).is_some_and(|p| {
            let (_, end) = window_of(t_us, self.us.window);
            p.is_replay(offset) && p.stored_through_us().is_some_and(|s| end <= s)
        })
    }

    /// Records one event read from `partition` at `offset`. `arrival_us` is when it arrived by
    /// the caller's clock (or its Kafka timestamp): it keeps the partition from being idle and
    /// bounds how far ahead the event time may be.
    pub fn record(
        &mut self,
        partition: PartitionId,
        offset: i64,
        event: &Event,
        arrival_us: i64,
    ) -> Result<RecordOutcome, WindowError> {
        let Engine {
            us,
            layout,
            partitions,
            watermark_us,
            live_series,
            budget,
            limits,
            counters,
            scratch,
            config,
        } = self;
        let p = partitions
            .get_mut(&partition)
            .ok_or(WindowError::NotAssigned { partition })?;
        p.next_offset = p.next_offset.max(Some(offset.saturating_add(1)));
        let c = counters.kind_mut(event.kind());
        let t = event.time_us();
        if t > arrival_us.saturating_add(us.max_future_skew) {
            // Not activity either: a partition carrying only such events must go idle rather
            // than hold the watermark back for ever.
            c.future += 1;
            return Ok(RecordOutcome::Future);
        }
        p.last_arrival_us = p.last_arrival_us.max(Some(arrival_us));
        p.max_event_us = p.max_event_us.max(Some(t));
        let (start, end) = window_of(t, us.window);
        let stored_through = p.stored_through_us();
        if p.is_replay(offset) && stored_through.is_some_and(|s| end <= s) {
            c.skipped += 1;
            return Ok(RecordOutcome::Skipped);
        }
        let closed_through = p.closed_through_us(*watermark_us);
        // Too late is judged against the partition's own watermark as well: while another
        // partition holds the operator watermark back (e.g. it has no event yet), an event far
        // behind this partition's stream is still beyond the horizon, whatever the timing.
        let own_watermark = p
            .max_event_us
            .map(|m| m.saturating_sub(us.allowed_lateness));
        if closed_through
            .max(own_watermark)
            .is_some_and(|t| end.saturating_add(us.correction_horizon) <= t)
        {
            c.too_late += 1;
            return Ok(RecordOutcome::TooLate);
        }
        let (windows, outcome) = match closed_through {
            Some(through) if end <= through => {
                c.corrections += 1;
                (&mut p.corrections, RecordOutcome::Correction)
            }
            _ => {
                c.aggregated += 1;
                (&mut p.open, RecordOutcome::Aggregated)
            }
        };
        let w = windows
            .entry(start)
            .or_insert_with(|| WindowState::new(offset));
        w.min_offset = w.min_offset.min(offset);
        let max_text = config.max_query_text_bytes;
        let k = config.samples_per_series;
        let source = crate::Source { partition, offset };
        let (clamped, overflow) = match event {
            Event::Query(e) => {
                encode_query(scratch, e, config.tenant_dimension);
                let text = e.query_text.as_ref().map_or(0, |t| t.len().min(max_text));
                let sample = samples::first_sample_bytes::<crate::QuerySample>(
                    k,
                    e.instance.len() + opt_len(&e.tenant_id) + opt_len(&e.trace_id),
                );
                let (s, of) = upsert(
                    &mut w.query,
                    scratch,
                    &e.service,
                    live_series,
                    budget,
                    limits,
                    text + sample,
                );
                (s.record(e, layout, max_text, source, k), of)
            }
            Event::Request(e) => {
                encode_request(scratch, e);
                let sample = samples::first_sample_bytes::<crate::RequestSample>(
                    k,
                    e.instance.len() + opt_len(&e.trace_id),
                );
                let (s, of) = upsert(
                    &mut w.request,
                    scratch,
                    &e.service,
                    live_series,
                    budget,
                    limits,
                    sample,
                );
                (s.record(e, layout, source, k), of)
            }
            Event::Resource(e) => {
                encode_resource(scratch, e);
                let (s, of) = upsert(
                    &mut w.resource,
                    scratch,
                    &e.service,
                    live_series,
                    budget,
                    limits,
                    0,
                );
                s.record(e);
                (false, of)
            }
        };
        c.clamped += u64::from(clamped);
        c.overflow += u64::from(overflow);
        Ok(outcome)
    }

    /// Recomputes the operator watermark at the caller's time `now_us` and returns it. A
    /// partition with no message for `idle_timeout` (or, if it never had one, for that long since
    /// the first `advance` after its `assign`) stops holding it back.
    ///
    /// When every partition is idle, the watermark also follows the caller's clock, to
    /// `now - allowed_lateness - idle_timeout`, but never past the end of the window holding the
    /// latest event seen: the last window of a stream that went quiet closes, and a stream of
    /// old events (a backfill) is not pushed beyond its own data. Later events are corrections.
    pub fn advance(&mut self, now_us: i64) -> Option<i64> {
        let (lateness, idle) = (self.us.allowed_lateness, self.us.idle_timeout);
        let marks: Vec<_> = self
            .partitions
            .values_mut()
            .map(|p| p.mark(now_us, lateness, idle))
            .collect();
        self.watermark_us = self.watermark_from(marks, now_us);
        self.watermark_us
    }

    /// Whether [`Self::advance`] at `now_us` followed by [`Self::flush`] would close a window:
    /// the caller's cue to flush now rather than on its next tick. Changes nothing; costs one
    /// look per partition.
    pub fn close_due(&self, now_us: i64) -> bool {
        let (lateness, idle) = (self.us.allowed_lateness, self.us.idle_timeout);
        let marks: Vec<_> = self
            .partitions
            .values()
            .map(|p| p.peek_mark(now_us, lateness, idle))
            .collect();
        let wm = self.watermark_from(marks, now_us);
        self.partitions
            .values()
            .any(|p| match (p.open.keys().next(), p.closed_through_us(wm)) {
                (Some(&start), Some(through)) => start.saturating_add(self.us.window) <= through,
                _ => false,
            })
    }

    /// The operator watermark given the partitions' marks at `now_us` (see [`Self::advance`]).
    fn watermark_from(&self, marks: Vec<watermark::PartitionMark>, now_us: i64) -> Option<i64> {
        let (lateness, idle) = (self.us.allowed_lateness, self.us.idle_timeout);
        let all_idle = !marks.is_empty() && marks.iter().all(|m| m.idle);
        let mut wm = watermark::combine(self.watermark_us, marks);
        if all_idle
            && let Some(latest) = self
                .partitions
                .values()
                .filter_map(|p| p.max_event_us)
                .max()
        {
            let clock = now_us.saturating_sub(lateness).saturating_sub(idle);
            let cap = window_of(latest, self.us.window).1;
            wm = wm.max(Some(clock.min(cap)));
        }
        wm
    }

    /// Takes every window that closed (all partitions merged, each emitted once), every pending
    /// correction, the progress to store per partition and the counters since the last flush.
    pub fn flush(&mut self) -> Flush {
        let window = self.us.window;
        let mut closed: BTreeMap<i64, WindowState> = BTreeMap::new();
        let mut corrections: BTreeMap<i64, WindowState> = BTreeMap::new();
        let mut progress = Vec::with_capacity(self.partitions.len());
        for (&id, p) in &mut self.partitions {
            let through = p.closed_through_us(self.watermark_us);
            if let Some(through) = through {
                // Window [start, start + window) is closed when start + window <= through.
                let still_open = p
                    .open
                    .split_off(&through.saturating_sub(window).saturating_add(1));
                for (start, w) in std::mem::replace(&mut p.open, still_open) {
                    self.live_series -= w.series_count();
                    merge_into(&mut closed, start, w, &self.layout);
                }
            }
            for (start, w) in std::mem::take(&mut p.corrections) {
                self.live_series -= w.series_count();
                merge_into(&mut corrections, start, w, &self.layout);
            }
            if let (Some(next), Some(resume)) = (p.applied_through_offset(), p.resume_offset()) {
                progress.push(PartitionProgress {
                    partition: id,
                    resume_offset: resume,
                    applied_through_offset: next,
                    applied_watermark_us: through,
                });
            }
        }
        self.recount();
        let sigfig = self.config.significant_digits;
        let k = self.config.samples_per_series;
        Flush {
            watermark_us: self.watermark_us,
            closed: materialize(closed, window, &self.layout, sigfig, k),
            corrections: materialize(corrections, window, &self.layout, sigfig, k),
            progress,
            counters: std::mem::take(&mut self.counters),
            live_series: self.live_series,
        }
    }
}

fn merge_into(
    acc: &mut BTreeMap<i64, WindowState>,
    start: i64,
    w: WindowState,
    layout: &HdrLayout,
) {
    acc.entry(start)
        .or_insert_with(|| WindowState::new(i64::MAX))
        .absorb(w, layout);
}

fn materialize(
    windows: BTreeMap<i64, WindowState>,
    window_us: i64,
    layout: &HdrLayout,
    sigfig: u8,
    k: usize,
) -> Rollups {
    let mut out = Rollups::default();
    for (start, w) in windows {
        let end = start.saturating_add(window_us);
        emit(&mut out.query, start, end, w.query, layout, sigfig, k);
        emit(&mut out.request, start, end, w.request, layout, sigfig, k);
        emit(&mut out.resource, start, end, w.resource, layout, sigfig, k);
    }
    out
}

/// Appends one window's rollups of one kind, sorted by key.
fn emit<S: Series>(
    out: &mut Vec<Rollup<S::Key, S::Figures>>,
    start: i64,
    end: i64,
    series: SeriesMap<S>,
    layout: &HdrLayout,
    sigfig: u8,
    k: usize,
) {
    let first = out.len();
    out.extend(series.into_iter().map(|(key, s)| Rollup {
        window_start_us: start,
        window_end_us: end,
        key: S::Key::decode(key.as_slice()),
        figures: s.into_figures(layout, sigfig, k),
    }));
    out[first..].sort_unstable_by(|a, b| a.key.cmp(&b.key));
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
