//! The client-side bound on each wait of the evaluator on Postgres.
//!
//! Postgres's own bounds (`statement_timeout`, keepalives, `tcp_user_timeout`, given to every
//! connection by `perfstream_store::ConnectSettings`) end the *server's* side of a stuck
//! session. They cannot help the client when the server, or the path to it, vanished
//! mid-statement: the reply never comes, and without a bound the leader would wait until TCP
//! gives up (about 15 minutes) while still believing it leads. Every statement, transaction,
//! read and connect of the evaluator therefore runs under a [`Deadline`]; missing it is an
//! [`EvalError::Deadline`], which `run.rs` treats like a lost connection.
//!
//! The bound is per operation, not per round: a catch-up round may judge hundreds of windows
//! and legitimately take longer than any single wait should, and a round bound would make it
//! fail for ever.

use std::future::Future;
use std::time::Duration;

use crate::error::EvalError;

/// `perfstream_store::ConnectSettings::operation_timeout` (35 s by default, above the server's
/// 30 s `statement_timeout`, so a slow statement is ended by the server with a clear error
/// first). Zero disables the bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(pub(crate) Duration);

impl Deadline {
    /// Runs `op` within the deadline; past it, `op` is dropped (whatever connection it was
    /// using must be abandoned: a reply may still be on its way).
    pub(crate) async fn run<T>(
        self,
        operation: &'static str,
        op: impl Future<Output = Result<T, EvalError>>,
    ) -> Result<T, EvalError> {
        if self.0.is_zero() {
            return op.await;
        }
        tokio::time::timeout(self.0, op)
            .await
            .unwrap_or(Err(EvalError::Deadline {
                operation,
                deadline: self.0,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_is_an_error_naming_the_operation() {
        let d = Deadline(Duration::from_secs(35));
        let err = d
            .run(
                "reading the watermarks",
                std::future::pending::<Result<(), _>>(),
            )
            .await
            .expect_err("never answers");
        assert!(err.is_retriable());
        assert_eq!(
            err.to_string(),
            "postgres, reading the watermarks: no reply within 35s"
        );
        assert_eq!(d.run("quick", async { Ok(7) }).await.unwrap(), 7);
        // Zero: no bound (the caller asked for none).
        let none = Deadline(Duration::ZERO);
        let quick = none.run("quick", async { Ok::<_, EvalError>(1) });
        assert_eq!(quick.await.unwrap(), 1);
    }
}
