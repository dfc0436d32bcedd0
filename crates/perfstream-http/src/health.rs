//! What `/readyz` and `/metrics` know of the process's side tasks.
//!
//! The binary's supervisor writes here (a task started, stopped, failed); the server only
//! reads. A failed task is never restarted in process: the supervisor shuts the process down
//! and the orchestrator restarts it, so until the process exits a failure stays visible.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The last known state of one side task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Spawned and not finished.
    Running,
    /// Finished after the process asked it to stop.
    Stopped,
    /// Returned an error, panicked, or finished before the process asked it to stop.
    Failed {
        /// The error (with its causes), the panic message, or why finishing was a failure.
        reason: String,
    },
}

/// One task as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// The supervisor's name of the task (`evaluator`, `http`, `maintenance`).
    pub task: &'static str,
    pub state: TaskState,
    /// Times the task failed in this process (0 or 1 today: failed tasks are not restarted,
    /// but a counter stays right if that ever changes).
    pub failures: u64,
}

/// Side-task health shared by the supervisor (writer) and the HTTP server (reader), like
/// `PipelineStats`. Cheap to clone: one `Arc`. Tasks appear in name order.
#[derive(Debug, Clone, Default)]
pub struct TaskHealth {
    tasks: Arc<Mutex<BTreeMap<&'static str, TaskStatus>>>,
}

impl TaskHealth {
    /// Records that `task` started (again).
    pub fn running(&self, task: &'static str) {
        self.set(task, TaskState::Running);
    }

    /// Records that `task` finished after it was asked to stop.
    pub fn stopped(&self, task: &'static str) {
        self.set(task, TaskState::Stopped);
    }

    /// Records that `task` failed, and why.
    pub fn failed(&self, task: &'static str, reason: impl Into<String>) {
        self.set(
            task,
            TaskState::Failed {
                reason: reason.into(),
            },
        );
    }

    fn set(&self, task: &'static str, state: TaskState) {
        let mut tasks = self.lock();
        let entry = tasks.entry(task).or_insert(TaskStatus {
            task,
            state: TaskState::Running,
            failures: 0,
        });
        if matches!(state, TaskState::Failed { .. }) {
            entry.failures += 1;
        }
        entry.state = state;
    }

    /// Every task known, in name order.
    pub fn snapshot(&self) -> Vec<TaskStatus> {
        self.lock().values().cloned().collect()
    }

    /// The failed tasks and their reasons, in name order.
    pub fn failures(&self) -> Vec<(&'static str, String)> {
        self.lock()
            .values()
            .filter_map(|s| match &s.state {
                TaskState::Failed { reason } => Some((s.task, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// `/readyz`'s answer when a task failed: one line per failed task; `None` when none did.
    pub fn not_ready(&self) -> Option<String> {
        let failures = self.failures();
        if failures.is_empty() {
            return None;
        }
        let mut body = String::from("not ready\n");
        for (task, reason) in failures {
            body.push_str(&format!("task {task} failed: {reason}\n"));
        }
        Some(body)
    }

    /// A poisoned lock still holds consistent states (every write is one assignment).
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, TaskStatus>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_counted_kept_and_named_by_not_ready() {
        let h = TaskHealth::default();
        h.running("maintenance");
        h.running("evaluator");
        assert_eq!(h.not_ready(), None);
        h.failed(
            "evaluator",
            "stored alert state x/y is invalid: unknown rule",
        );
        h.stopped("maintenance");
        let snap = h.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(snap[0].task, "evaluator", "name order");
        assert_eq!(snap[0].failures, 1);
        assert_eq!(snap[1].state, TaskState::Stopped);
        assert_eq!(snap[1].failures, 0);
        assert_eq!(
            h.not_ready().as_deref(),
            Some(
                "not ready\ntask evaluator failed: stored alert state x/y is invalid: unknown rule\n"
            )
        );
        // A clone shares the state.
        let reader = h.clone();
        h.failed("maintenance", "panicked: boom");
        assert_eq!(reader.failures().len(), 2);
    }
}
