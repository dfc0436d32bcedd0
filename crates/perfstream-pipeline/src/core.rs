//! [`Core`]: the per-partition protocol of the pipeline, with no I/O and no clock.
//!
//! The adapter drives it:
//! 1. on assignment, claims each partition in the store and calls [`Core::assign`] with the
//!    [`Claim`]; it seeks the consumer to the returned offset;
//! 2. for each message, decodes it and calls [`Core::on_event`] or [`Core::on_undecodable`],
//!    then does what the returned [`Action`] says (route to the dead-letter or late topic);
//! 3. every flush interval, calls [`Core::prepare_flush`] with the time, waits until everything
//!    routed so far is acknowledged, writes the [`FlushPlan`] in one transaction, and reports
//!    the outcome: [`Core::committed`] (also when the store says the plan was already applied),
//!    [`Core::fenced`], or nothing (a retriable failure: the same plan is written again later);
//! 4. on revoke or shutdown, tries one last flush, then calls [`Core::revoke`].

use std::collections::BTreeMap;

use perfstream_events::Event;
use perfstream_window::{
    Counters, Engine, Merge, PartitionId, RecordOutcome, ResumeState, Rollup, Rollups, SeriesKey,
};

use crate::quarantine::Quarantine;

/// What the store returned when a partition was claimed: a new generation and the progress the
/// previous owner committed (all `None` for a partition never flushed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claim {
    pub generation: i64,
    pub resume_offset: Option<i64>,
    pub applied_through_offset: Option<i64>,
    pub applied_watermark_us: Option<i64>,
}

/// Why an event goes to the late topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateKind {
    /// Its window closed more than the correction horizon ago.
    TooLate,
    /// Its event time is too far ahead of its arrival.
    Future,
}

impl LateKind {
    /// The `error_kind` of its dead-letter envelope.
    pub fn kind(self) -> &'static str {
        match self {
            LateKind::TooLate => "too_late",
            LateKind::Future => "too_far_in_future",
        }
    }

    /// The `reason` of its dead-letter envelope.
    pub fn reason(self) -> &'static str {
        match self {
            LateKind::TooLate => "event time is before the correction horizon of its window",
            LateKind::Future => {
                "event time is further ahead of its arrival than window.max_future_skew"
            }
        }
    }
}

/// What the adapter must do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Aggregated into an open window.
    Aggregated,
    /// Aggregated into a correction of a closed window.
    Correction,
    /// Replayed, and its window is already stored.
    Skipped,
    /// Route the raw message to the dead-letter topic.
    DeadLetter,
    /// Route the raw message to the late topic.
    Late(LateKind),
    /// Replayed, and a previous owner routed it before its last committed flush.
    AlreadyRouted,
    /// Its partition is not assigned here (a message fetched before a revoke).
    NotAssigned,
    /// Its series is isolated (Postgres refused to store it, see [`Core::isolate`]): route the
    /// raw message to the dead-letter topic with [`Core::isolated_reason`].
    Unwritable,
}

/// A partition's progress to store with a flush, compare-and-set on
/// (`generation`, `flush_seq - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub partition: PartitionId,
    pub generation: i64,
    /// 1 for the first flush after the claim, then 2, ...; a plan written again after a lost
    /// reply carries the same number, so the store can tell it was already applied.
    pub flush_seq: i64,
    /// Where the next owner starts reading.
    pub resume_offset: i64,
    /// Events below it whose window ends at or before `applied_watermark_us` are stored.
    pub applied_through_offset: i64,
    pub applied_watermark_us: i64,
}

/// One flush: everything written in one transaction. Kept until it is committed, and written
/// again unchanged after a retriable failure.
#[derive(Debug, Clone, PartialEq)]
pub struct FlushPlan {
    /// Closed windows and corrections, one rollup per (window, key).
    pub rollups: Rollups,
    /// One entry per assigned partition, ordered by partition.
    pub progress: Vec<Progress>,
    pub windows_closed: u64,
    /// The operator watermark of the flush.
    pub watermark_us: Option<i64>,
    /// Engine counters since the previous plan.
    pub counters: Counters,
    pub live_series: usize,
    /// Estimated bytes of the series held after the flush (see `perfstream_window::budget`).
    pub series_bytes: usize,
    /// A partition replaying below its claimed applied mark held back windows the operator
    /// watermark had closed (they close once its position passes the mark).
    pub replay_held: bool,
}

#[derive(Debug)]
struct Part {
    generation: i64,
    /// The last committed flush of this claim.
    flush_seq: i64,
    /// What the store holds for this partition: the claim, then each committed flush's
    /// progress. [`Core::isolate`] rewinds to it.
    stored: Stored,
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    resume_offset: i64,
    resume: ResumeState,
}

/// The pipeline's protocol state. Deterministic: its output depends only on the calls made.
#[derive(Debug)]
pub struct Core {
    engine: Engine,
    parts: BTreeMap<PartitionId, Part>,
    pending: Option<FlushPlan>,
    quarantine: Quarantine,
}

impl Core {
    pub fn new(engine: Engine) -> Self {
        Core {
            engine,
            parts: BTreeMap::new(),
            pending: None,
            quarantine: Quarantine::default(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The partitions assigned here.
    pub fn assigned(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.parts.keys().copied()
    }

    /// Each assigned partition with its next offset to read.
    pub fn positions(&self) -> Vec<(PartitionId, i64)> {
        self.parts
            .keys()
            .filter_map(|&id| Some((id, self.engine.position(id)?)))
            .collect()
    }

    /// Whether a flush plan waits to be committed.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether a flush at `now_us` would close a window that no pending plan holds: the cue to
    /// flush now instead of on the next tick (a pending plan is retried on its own schedule).
    pub fn close_due(&self, now_us: i64) -> bool {
        self.pending.is_none() && self.engine.close_due(now_us)
    }

    /// Starts a partition from its claim; `start_offset` is where the consumer is positioned
    /// (the claim's resume offset, or the log start when the adapter had to move it there).
    /// Replaces any state the partition had.
    pub fn assign(&mut self, id: PartitionId, claim: &Claim, start_offset: i64) {
        let stored = Stored {
            resume_offset: start_offset,
            resume: ResumeState {
                applied_watermark_us: claim.applied_watermark_us,
                applied_through_offset: claim.applied_through_offset,
            },
        };
        self.start(id, stored);
        self.parts.insert(
            id,
            Part {
                generation: claim.generation,
                flush_seq: 0,
                stored,
            },
        );
    }

    fn start(&mut self, id: PartitionId, stored: Stored) {
        self.engine.assign(id, stored.resume);
        self.engine
            .note_position(id, stored.resume_offset)
            .expect("assigned above");
    }

    /// One decoded event at `offset`, arrived at `arrival_us` (caller's clock).
    pub fn on_event(
        &mut self,
        id: PartitionId,
        offset: i64,
        event: &Event,
        arrival_us: i64,
    ) -> Action {
        if !self.parts.contains_key(&id) {
            return Action::NotAssigned;
        }
        if let Some(_reason) = self
            .quarantine
            .reason(event, self.engine.config().tenant_dimension)
        {
            // Never aggregated; routed unless an earlier owner stored its window (then it is
            // counted already). Not subject to `AlreadyRouted`: owners before the isolation
            // aggregated these events rather than routing them.
            let stored = self.engine.is_stored(id, offset, event.time_us());
            let _ = self.engine.note_position(id, offset + 1);
            return if stored {
                Action::Skipped
            } else {
                Action::Unwritable
            };
        }
        let Ok(outcome) = self.engine.record(id, offset, event, arrival_us) else {
            return Action::NotAssigned;
        };
        let late = match outcome {
            RecordOutcome::Aggregated => return Action::Aggregated,
            RecordOutcome::Correction => return Action::Correction,
            RecordOutcome::Skipped => return Action::Skipped,
            RecordOutcome::TooLate => LateKind::TooLate,
            RecordOutcome::Future => LateKind::Future,
        };
        self.route(id, offset, Action::Late(late))
    }

    /// One message at `offset` that is not an event (undecodable, or invalid).
    pub fn on_undecodable(&mut self, id: PartitionId, offset: i64) -> Action {
        if self.engine.note_position(id, offset + 1).is_err() {
            return Action::NotAssigned;
        }
        self.route(id, offset, Action::DeadLetter)
    }

    /// A message below the claimed `applied_through_offset` was routed by the owner that
    /// committed that mark (its flush waited for the acknowledgement): not again.
    fn route(&self, id: PartitionId, offset: i64, action: Action) -> Action {
        if self.engine.is_replay(id, offset) {
            Action::AlreadyRouted
        } else {
            action
        }
    }

    /// The plan of the next flush: the pending one if the last write did not commit, else a new
    /// one computed at `now_us`. `None` when nothing is assigned and nothing is pending.
    pub fn prepare_flush(&mut self, now_us: i64) -> Option<&FlushPlan> {
        if self.pending.is_none() {
            if self.parts.is_empty() {
                return None;
            }
            self.engine.advance(now_us);
            let out = self.engine.flush();
            let progress = out
                .progress
                .iter()
                .filter_map(|e| {
                    let part = self.parts.get(&e.partition)?;
                    Some(Progress {
                        partition: e.partition,
                        generation: part.generation,
                        flush_seq: part.flush_seq + 1,
                        resume_offset: e.resume_offset,
                        applied_through_offset: e.applied_through_offset,
                        applied_watermark_us: e.applied_watermark_us.unwrap_or(0),
                    })
                })
                .collect();
            self.pending = Some(FlushPlan {
                windows_closed: out.closed.len() as u64,
                rollups: combine(out.closed, out.corrections),
                progress,
                watermark_us: out.watermark_us,
                counters: out.counters,
                live_series: out.live_series,
                series_bytes: self.engine.series_bytes(),
                replay_held: self.engine.holding_replay(),
            });
        }
        self.pending.as_ref()
    }

    /// The pending plan is in the store (committed now, or found already applied).
    pub fn committed(&mut self) -> Option<FlushPlan> {
        let plan = self.pending.take()?;
        for p in &plan.progress {
            if let Some(part) = self.parts.get_mut(&p.partition)
                && part.generation == p.generation
                && p.flush_seq > part.flush_seq
            {
                part.flush_seq = p.flush_seq;
                part.stored = Stored {
                    resume_offset: p.resume_offset,
                    resume: ResumeState {
                        applied_watermark_us: Some(p.applied_watermark_us),
                        applied_through_offset: Some(p.applied_through_offset),
                    },
                };
            }
        }
        Some(plan)
    }

    /// The store refused the pending plan's rows of these series (a data error, see
    /// [`crate::quarantine`]): isolates them, drops the pending plan and all open state, and
    /// rewinds every assigned partition to what the store holds for it, as a new owner would
    /// start. Returns where the adapter must seek each partition. The replay aggregates
    /// everything again except the isolated series, whose events come back as
    /// [`Action::Unwritable`]. Generations and flush numbers are kept: nothing was committed.
    pub fn isolate(
        &mut self,
        refused: impl IntoIterator<Item = (SeriesKey, String)>,
    ) -> Vec<(PartitionId, i64)> {
        for (key, reason) in refused {
            self.quarantine.add(key, reason);
        }
        self.pending = None;
        let rewind: Vec<(PartitionId, Stored)> =
            self.parts.iter().map(|(id, p)| (*id, p.stored)).collect();
        rewind
            .into_iter()
            .map(|(id, stored)| {
                self.start(id, stored);
                (id, stored.resume_offset)
            })
            .collect()
    }

    /// The database's reason for an event of an isolated series.
    pub fn isolated_reason(&self, event: &Event) -> Option<&str> {
        self.quarantine
            .reason(event, self.engine.config().tenant_dimension)
    }

    /// How many series (or whole overflow services) are isolated.
    pub fn isolated_series(&self) -> usize {
        self.quarantine.len()
    }

    /// A newer claim owns a partition of the pending plan: the write rolled back. Everything
    /// not committed is dropped; the rightful owners replay it.
    pub fn fenced(&mut self) {
        self.drop_all();
    }

    /// The partitions are given up (after the adapter's last flush attempt, committed or not):
    /// open state and any pending plan are dropped; the next owners replay them.
    pub fn revoke(&mut self) {
        self.drop_all();
    }

    fn drop_all(&mut self) {
        for id in std::mem::take(&mut self.parts).into_keys() {
            self.engine.revoke(id);
        }
        self.pending = None;
    }
}

/// Closed windows and corrections as one set of rollups, one per (window, key): the store
/// inserts new keys and merges existing ones either way.
fn combine(closed: Rollups, corrections: Rollups) -> Rollups {
    fn kind<K: Ord + Clone, F: Merge>(
        mut a: Vec<Rollup<K, F>>,
        b: Vec<Rollup<K, F>>,
    ) -> Vec<Rollup<K, F>> {
        if b.is_empty() {
            return a;
        }
        a.extend(b);
        a.sort_by(|x, y| (x.window_start_us, &x.key).cmp(&(y.window_start_us, &y.key)));
        let mut out: Vec<Rollup<K, F>> = Vec::with_capacity(a.len());
        for r in a {
            match out.last_mut() {
                Some(l) if l.window_start_us == r.window_start_us && l.key == r.key => {
                    l.figures.merge(&r.figures)
                }
                _ => out.push(r),
            }
        }
        out
    }
    Rollups {
        query: kind(closed.query, corrections.query),
        request: kind(closed.request, corrections.request),
        resource: kind(closed.resource, corrections.resource),
    }
}
