//! Decode and aggregation beside the consumer. The poll thread copies each polled message into
//! the current [`Batch`] (one buffer for all keys and payloads); full batches go through a
//! bounded channel to one worker thread, which decodes and aggregates them under the state lock,
//! once per batch. One worker, batches in order: a partition's events keep their order.
//!
//! Invariant: nothing touches the pipeline state (flush, claim, revoke, isolate) while a polled
//! message waits in a batch. [`Pipe::drain`] hands the current batch over and waits until the
//! worker has applied every batch sent; the flush and both rebalance callbacks call it first.
//! Without it a batch polled before a revoke could be applied after the partition was claimed
//! again at an earlier offset, counting its events twice.

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tracing::error;

/// Batches in the channel beyond the one being filled and the one being applied.
const QUEUED_BATCHES: usize = 2;

/// Polled messages, copied out of librdkafka's buffers.
#[derive(Default)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    pub(super) messages: Vec<Polled>,
}

/// One message of a batch; key and payload are ranges of the batch's buffer.
pub(crate) struct Polled {
    pub topic: u32,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

impl Batch {
    pub(crate) fn push(
        &mut self,
        topic: u32,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) {
        let key = key.map(|k| self.append(k));
        let payload = self.append(payload.unwrap_or(&[]));
        self.messages.push(Polled {
            topic,
            partition,
            offset,
            timestamp_ms,
            key,
            payload,
        });
    }

    fn append(&mut self, b: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start..self.bytes.len()
    }

    pub(crate) fn key(&self, m: &Polled) -> Option<&[u8]> {
        m.key.clone().map(|r| &self.bytes[r])
    }

    pub(crate) fn payload(&self, m: &Polled) -> &[u8] {
        &self.bytes[m.payload.clone()]
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
    }
}

/// How many batches the worker has applied, and whether it is gone.
#[derive(Default)]
struct Applied {
    count: Mutex<(u64, bool)>,
    changed: Condvar,
}

/// The worker's thread ended without being closed (it panicked).
#[derive(Debug)]
pub(crate) struct WorkerGone;

/// The poll thread's end of the worker. Lives in the context, behind a mutex that only the poll
/// thread takes (the rebalance callbacks run on it too).
pub(crate) struct Pipe {
    current: Batch,
    batch_max: usize,
    tx: Option<SyncSender<Batch>>,
    free: Receiver<Batch>,
    sent: u64,
    applied: Arc<Applied>,
    thread: Option<JoinHandle<()>>,
}

impl Pipe {
    /// A pipe whose worker is not started yet ([`Pipe::start`]): the context owns the pipe and
    /// the worker needs the context.
    pub(crate) fn new(batch_max: usize) -> Self {
        let (_, free) = std::sync::mpsc::channel();
        Pipe {
            current: Batch::default(),
            batch_max: batch_max.max(1),
            tx: None,
            free,
            sent: 0,
            applied: Arc::default(),
            thread: None,
        }
    }

    /// Starts the worker thread, which calls `apply` on each batch in order.
    pub(crate) fn start(
        &mut self,
        mut apply: impl FnMut(&Batch) + Send + 'static,
    ) -> std::io::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
        let (free_tx, free) = std::sync::mpsc::channel();
        let applied = self.applied.clone();
        let thread = std::thread::Builder::new()
            .name("perfstream-aggregate".into())
            .spawn(move || {
                let guard = GoneOnExit(applied.clone());
                for mut batch in rx {
                    apply(&batch);
                    batch.clear();
                    let _ = free_tx.send(batch);
                    let mut c = applied.count.lock().unwrap_or_else(|p| p.into_inner());
                    c.0 += 1;
                    applied.changed.notify_all();
                }
                drop(guard);
            })?;
        self.tx = Some(tx);
        self.free = free;
        self.thread = Some(thread);
        Ok(())
    }

    /// Adds one polled message; hands the batch to the worker when it is full.
    pub(crate) fn push(
        &mut self,
        topic: u32,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) {
        self.current
            .push(topic, partition, offset, key, payload, timestamp_ms);
        if self.current.len() >= self.batch_max {
            self.send();
        }
    }

    /// Hands the current batch (if any) to the worker; blocks while the worker is
    /// `QUEUED_BATCHES` behind, which is the back-pressure on the consumer.
    pub(crate) fn send(&mut self) {
        if self.current.len() == 0 {
            return;
        }
        let Some(tx) = &self.tx else {
            return;
        };
        let next = self.free.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.current, next);
        if tx.send(batch).is_ok() {
            self.sent += 1;
        }
    }

    /// Hands the current batch over and waits until the worker has applied every batch sent.
    pub(crate) fn drain(&mut self) -> Result<(), WorkerGone> {
        self.send();
        if self.tx.is_none() {
            return Ok(());
        }
        let mut c = self.applied.count.lock().unwrap_or_else(|p| p.into_inner());
        while c.0 < self.sent {
            if c.1 {
                return Err(WorkerGone);
            }
            c = self
                .applied
                .changed
                .wait(c)
                .unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }

    /// Stops the worker after it has applied what was sent.
    pub(crate) fn close(&mut self) {
        let _ = self.drain();
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            error!("The aggregation thread panicked.");
        }
    }
}

/// Marks the worker gone when its thread ends, also by a panic, so `drain` never waits forever.
struct GoneOnExit(Arc<Applied>);

impl Drop for GoneOnExit {
    fn drop(&mut self) {
        let mut c = self.0.count.lock().unwrap_or_else(|p| p.into_inner());
        c.1 = true;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(batch_max: usize, mut apply: impl FnMut(&Batch) + Send + 'static) -> Pipe {
        let mut pipe = Pipe::new(batch_max);
        pipe.start(move |b| apply(b)).unwrap();
        pipe
    }

    #[test]
    fn drain_returns_after_every_message_pushed_is_applied_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut pipe = started(7, move |b| {
            let mut s = s.lock().unwrap();
            for m in &b.messages {
                s.push((
                    m.offset,
                    b.key(m).map(<[u8]>::to_vec),
                    b.payload(m).to_vec(),
                ));
            }
        });
        for round in 0..5i64 {
            // 23 is not a multiple of the batch size: the last batch is partial until drained.
            for i in 0..23i64 {
                let o = round * 100 + i;
                let key = (i % 2 == 0).then(|| o.to_le_bytes());
                let payload = vec![i as u8; i as usize];
                pipe.push(0, 1, o, key.as_ref().map(|k| &k[..]), Some(&payload), None);
            }
            pipe.drain().unwrap();
            let s = seen.lock().unwrap();
            assert_eq!(
                s.len() as i64,
                (round + 1) * 23,
                "all applied when drain returns"
            );
            for (j, (o, k, p)) in s.iter().enumerate() {
                let i = j as i64 % 23;
                assert_eq!(*o, (j as i64 / 23) * 100 + i, "in order");
                assert_eq!(k.is_some(), i % 2 == 0);
                assert_eq!(p.len(), i as usize);
            }
        }
        pipe.close();
    }

    #[test]
    fn a_dead_worker_fails_drain_instead_of_hanging() {
        let mut pipe = started(1, |b| {
            if b.messages[0].offset == 3 {
                panic!("boom");
            }
        });
        for o in 0..5 {
            pipe.push(0, 0, o, None, Some(b"x"), None);
        }
        assert!(pipe.drain().is_err());
        pipe.close();
    }

    #[test]
    fn nothing_to_drain_without_a_worker() {
        let mut pipe = Pipe::new(4);
        pipe.push(0, 0, 0, None, None, None);
        assert!(pipe.drain().is_ok());
    }
}
