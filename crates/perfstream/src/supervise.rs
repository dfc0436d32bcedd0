//! Supervision of `perfstream run`'s side tasks: the alert evaluator, the HTTP server and the
//! maintenance job, each spawned next to the pipeline.
//!
//! Policy: fail the process, never restart in process. A side task that returns an error,
//! panics, or returns before shutdown was asked is logged (`task`, `error`), marked failed in
//! [`TaskHealth`] (so `/readyz` answers 503 naming it and `perfstream_task_up{task}` drops to
//! 0), and fires the same shutdown signal as SIGTERM: the pipeline flushes its closed windows
//! and commits, the other tasks stop, and `perfstream run` exits non-zero with an error naming
//! the task. The orchestrator (systemd, Kubernetes, compose `restart:`) restarts it with fresh
//! state; the exactly-once protocol makes that restart safe. A process running without its
//! evaluator or its metrics would look healthy while it is not, which is why there is no
//! degraded mode.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Result;
use perfstream_http::{TaskHealth, TaskState};
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
use tracing::{error, info};

/// The side tasks of one `perfstream run`, and the shutdown signal their failure fires.
pub struct Supervisor {
    /// What `/readyz` and `/metrics` show; written here only.
    health: TaskHealth,
    /// The process-wide shutdown signal (the one SIGTERM fires): a failure sends it, and a task
    /// finishing once it was sent has stopped, not failed.
    stop: Arc<watch::Sender<bool>>,
    tasks: JoinSet<Result<()>>,
    /// Task names by tokio id: a panic's `JoinError` carries only the id.
    names: HashMap<Id, &'static str>,
    /// Every failure so far, in the order they were seen: the process's exit error.
    failures: Vec<(&'static str, String)>,
}

impl Supervisor {
    pub fn new(health: TaskHealth, stop: Arc<watch::Sender<bool>>) -> Self {
        Supervisor {
            health,
            stop,
            tasks: JoinSet::new(),
            names: HashMap::new(),
            failures: Vec::new(),
        }
    }

    /// Spawns `task` under `name`. It must return only once the shutdown signal fired (it is
    /// given that signal by the caller); returning earlier, even `Ok`, is a failure.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<()>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
        self.health.running(name);
    }

    /// Runs `main` (the pipeline) to completion while watching the side tasks: the first
    /// failure fires the shutdown signal, then `main` keeps running until it has shut down in
    /// order. Returns what `main` returned.
    pub async fn watch<T>(&mut self, main: impl Future<Output = T>) -> T {
        tokio::pin!(main);
        loop {
            tokio::select! {
                out = &mut main => return out,
                Some(joined) = self.tasks.join_next_with_id() => self.record(joined),
            }
        }
    }

    /// Fires the shutdown signal (if nothing did yet), waits for every side task, and returns
    /// an error naming each task that failed.
    pub async fn finish(mut self) -> Result<()> {
        self.stop.send_replace(true);
        while let Some(joined) = self.tasks.join_next_with_id().await {
            self.record(joined);
        }
        match self.failures.as_slice() {
            [] => Ok(()),
            failures => {
                let list: Vec<String> = failures
                    .iter()
                    .map(|(task, reason)| format!("side task `{task}` failed: {reason}"))
                    .collect();
                Err(anyhow::anyhow!(list.join("; ")))
            }
        }
    }

    fn record(&mut self, joined: Result<(Id, Result<()>), JoinError>) {
        let (id, result) = match joined {
            Ok((id, r)) => (id, Ok(r)),
            Err(e) => (e.id(), Err(e)),
        };
        let name = self.names.remove(&id).unwrap_or("unknown");
        // Read first: the `borrow` guard must be gone before `send_replace` below.
        let stop_requested = *self.stop.borrow();
        match verdict(result, stop_requested) {
            TaskState::Failed { reason } => {
                let first = self.failures.is_empty();
                error!(task = name, error = %reason, "Side task failed; shutting the process down (it is not restarted in process).");
                self.health.failed(name, reason.clone());
                self.failures.push((name, reason));
                if first {
                    self.stop.send_replace(true);
                }
            }
            state => {
                info!(task = name, "Side task stopped.");
                debug_assert_eq!(state, TaskState::Stopped);
                self.health.stopped(name);
            }
        }
    }
}

/// How a finished task ended, from its `JoinHandle`'s result: an error (with its causes), a
/// panic (with its message), or a return before `stop_requested`, are failures.
pub fn verdict(joined: Result<Result<()>, JoinError>, stop_requested: bool) -> TaskState {
    let reason = match joined {
        Ok(Ok(())) if stop_requested => return TaskState::Stopped,
        Ok(Ok(())) => "returned before shutdown was requested".to_owned(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            format!("panicked: {message}")
        }
        Err(_) => "cancelled".to_owned(),
    };
    TaskState::Failed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopper() -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Arc::new(tx), rx)
    }

    async fn stopped(mut rx: watch::Receiver<bool>) {
        let _ = rx.wait_for(|s| *s).await;
    }

    /// A stand-in for the pipeline: runs until the shutdown signal, then "flushes".
    async fn pipeline(rx: watch::Receiver<bool>) -> &'static str {
        stopped(rx).await;
        "flushed"
    }

    #[tokio::test]
    async fn verdicts_of_every_way_a_task_ends() {
        let failed = |r: &str| TaskState::Failed { reason: r.into() };
        assert_eq!(verdict(Ok(Ok(())), true), TaskState::Stopped);
        assert_eq!(
            verdict(Ok(Ok(())), false),
            failed("returned before shutdown was requested")
        );
        let err = anyhow::anyhow!("invalid rule").context("alert evaluator");
        assert_eq!(
            verdict(Ok(Err(err)), true),
            failed("alert evaluator: invalid rule"),
            "an error is a failure even during shutdown, with its causes"
        );
        let panicked = tokio::spawn(async { panic!("boom {}", 7) }).await;
        assert_eq!(
            verdict(panicked.map(|()| Ok(())), true),
            failed("panicked: boom 7")
        );
        let panicked = tokio::spawn(async { std::panic::panic_any(5u8) }).await;
        assert_eq!(
            verdict(panicked.map(|()| Ok(())), false),
            failed("panicked: (no message)")
        );
    }

    #[tokio::test]
    async fn a_panicking_task_shuts_the_pipeline_down_in_order_and_fails_the_run() {
        let health = TaskHealth::default();
        let (stop, rx) = stopper();
        let mut sup = Supervisor::new(health.clone(), stop.clone());
        sup.spawn("maintenance", {
            let rx = rx.clone();
            async move {
                stopped(rx).await;
                Ok(())
            }
        });
        let (go, went) = tokio::sync::oneshot::channel::<()>();
        sup.spawn("evaluator", async move {
            let _ = went.await;
            panic!("stored state is garbage")
        });
        assert!(
            health
                .snapshot()
                .iter()
                .all(|t| t.state == TaskState::Running)
        );
        let _ = go.send(());
        // Only the failure can end the stand-in pipeline.
        assert_eq!(sup.watch(pipeline(rx)).await, "flushed");
        assert!(*stop.borrow(), "the failure fired the shutdown signal");
        assert_eq!(
            health.failures(),
            [("evaluator", "panicked: stored state is garbage".to_owned())]
        );
        let err = sup.finish().await.expect_err("the run fails");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("side task `evaluator` failed: panicked: stored state is garbage"),
            "{msg}"
        );
        let snap = health.snapshot();
        assert_eq!(snap[0].task, "evaluator");
        assert_eq!(snap[0].failures, 1);
        assert_eq!(snap[1].task, "maintenance");
        assert_eq!(snap[1].state, TaskState::Stopped, "stopped, not failed");
    }

    #[tokio::test]
    async fn an_error_or_an_early_return_fails_and_every_failure_is_named() {
        let health = TaskHealth::default();
        let (stop, rx) = stopper();
        let mut sup = Supervisor::new(health.clone(), stop.clone());
        sup.spawn("http", async { Ok(()) });
        sup.spawn("maintenance", {
            let rx = rx.clone();
            async move {
                stopped(rx).await;
                Err(anyhow::anyhow!("disk on fire"))
            }
        });
        assert_eq!(sup.watch(pipeline(rx)).await, "flushed");
        let err = sup.finish().await.expect_err("the run fails");
        assert_eq!(
            format!("{err:#}"),
            "side task `http` failed: returned before shutdown was requested; \
             side task `maintenance` failed: disk on fire"
        );
        assert_eq!(health.failures().len(), 2);
    }

    #[tokio::test]
    async fn a_requested_shutdown_stops_everything_cleanly() {
        let health = TaskHealth::default();
        let (stop, rx) = stopper();
        let mut sup = Supervisor::new(health.clone(), stop.clone());
        for name in ["evaluator", "maintenance"] {
            let rx = rx.clone();
            sup.spawn(name, async move {
                stopped(rx).await;
                Ok(())
            });
        }
        // SIGTERM's path: the signal fires from outside.
        stop.send_replace(true);
        assert_eq!(sup.watch(pipeline(rx)).await, "flushed");
        sup.finish().await.expect("clean");
        assert!(
            health
                .snapshot()
                .iter()
                .all(|t| t.state == TaskState::Stopped)
        );
    }
}
