//! [`PartitionState`]: everything the engine holds for one source partition, so that a revoke
//! drops exactly that partition's part and its next owner can rebuild it by replaying.

use std::collections::BTreeMap;

use crate::watermark::PartitionMark;
use crate::window::WindowState;

/// Where a partition left off, as stored with the last flush (see
/// [`crate::PartitionProgress`]); all `None` for a partition never flushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResumeState {
    pub applied_watermark_us: Option<i64>,
    pub applied_through_offset: Option<i64>,
}

#[derive(Debug, Default)]
pub struct PartitionState {
    /// Open windows by start time.
    pub open: BTreeMap<i64, WindowState>,
    /// Late events waiting for the next flush, by window start.
    pub corrections: BTreeMap<i64, WindowState>,
    pub resume: ResumeState,
    pub max_event_us: Option<i64>,
    pub last_arrival_us: Option<i64>,
    /// Start of the idle clock of a partition that has not received anything yet: the first
    /// `advance` after `assign`.
    pub assigned_at_us: Option<i64>,
    /// One past the last offset recorded.
    pub next_offset: Option<i64>,
}

impl PartitionState {
    pub fn new(resume: ResumeState) -> Self {
        PartitionState {
            resume,
            ..Default::default()
        }
    }

    /// Windows ending at or before this are stored for this partition (by an earlier owner).
    pub fn stored_through_us(&self) -> Option<i64> {
        self.resume.applied_watermark_us
    }

    /// An offset below this was recorded before the restart.
    pub fn is_replay(&self, offset: i64) -> bool {
        self.resume
            .applied_through_offset
            .is_some_and(|t| offset < t)
    }

    /// Still reading below the claimed `applied_through_offset`.
    pub fn replaying(&self) -> bool {
        self.resume
            .applied_through_offset
            .is_some_and(|t| self.next_offset.is_none_or(|n| n < t))
    }

    /// Windows ending at or before this are closed for this partition. While it replays, that
    /// is the stored watermark only, whatever the operator watermark: closing a later window
    /// before the position reaches `applied_through_offset` would store a progress that no
    /// longer says which replayed events are in the tables (a second failover would count
    /// them again). See ARCHITECTURE.md, "Replay never weakens the stored marks".
    pub fn closed_through_us(&self, operator_us: Option<i64>) -> Option<i64> {
        if self.replaying() {
            self.stored_through_us()
        } else {
            operator_us.max(self.stored_through_us())
        }
    }

    /// The progress to store: never below the claimed marks while replaying.
    pub fn applied_through_offset(&self) -> Option<i64> {
        self.next_offset.max(self.resume.applied_through_offset)
    }

    /// The partition's mark at `now_us`; the first call after `assign` starts its idle clock.
    pub fn mark(&mut self, now_us: i64, lateness_us: i64, idle_timeout_us: i64) -> PartitionMark {
        self.assigned_at_us.get_or_insert(now_us);
        self.peek_mark(now_us, lateness_us, idle_timeout_us)
    }

    /// [`Self::mark`] without starting the idle clock.
    pub fn peek_mark(&self, now_us: i64, lateness_us: i64, idle_timeout_us: i64) -> PartitionMark {
        let active_at = self
            .last_arrival_us
            .or(self.assigned_at_us)
            .unwrap_or(now_us);
        let from_events = self.max_event_us.map(|t| t.saturating_sub(lateness_us));
        PartitionMark {
            watermark_us: from_events.max(self.resume.applied_watermark_us),
            idle: now_us >= active_at.saturating_add(idle_timeout_us),
        }
    }

    pub fn series_count(&self) -> usize {
        self.open
            .values()
            .chain(self.corrections.values())
            .map(WindowState::series_count)
            .sum()
    }

    /// Smallest offset still needed to rebuild this partition's open state.
    pub fn resume_offset(&self) -> Option<i64> {
        self.open
            .values()
            .chain(self.corrections.values())
            .map(|w| w.min_offset)
            .min()
            .or(self.next_offset)
    }
}
