//! Model-based test of the pipeline protocol: several simulated workers, each a [`Core`], driven
//! through random interleavings of produce, poll, flush (committed, failed, or committed with the
//! reply lost), clock ticks, clean rebalances, crashes (state lost, store kept) and stalls (a
//! member that lost its partitions without knowing, later fenced), against an in-memory store
//! with the same compare-and-set semantics as `perfstream-store` (owner, generation, flush
//! sequence). Flushes also run asynchronously as the adapter runs them: a plan is prepared and
//! its write started (at once, or later), the worker keeps polling, and the outcome reaches the
//! core afterwards; a rebalance settles a member's flush in flight first. Checked after every
//! step: no stored figure ever exceeds the truth; at the end,
//! after one worker drains everything: every stored figure equals the truth exactly, and every
//! undecodable message was routed at least once. The store refuses every row of one "poison"
//! statement (a data error): its events must each be routed at least once (isolated) and never
//! counted, and everything else exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use perfstream_events::{Event, QueryEvent, QueryType};
use perfstream_pipeline::{Action, Claim, Core, FlushPlan};
use perfstream_window::{Engine, PartitionId, SeriesKey, WindowConfig};
use proptest::prelude::*;

const PARTITIONS: i32 = 3;
const WORKERS: usize = 3;
const SEC: i64 = 1_000_000;
/// A plausible epoch, so that no time is near zero.
const T0: i64 = 1_790_000_000 * SEC;
const WINDOW: i64 = 10 * SEC;
const LATENESS: i64 = 2 * SEC;
const IDLE: i64 = 5 * SEC;
/// The statement whose rows the store refuses.
const POISON: u8 = 3;

fn config() -> WindowConfig {
    WindowConfig {
        window: Duration::from_micros(WINDOW as u64),
        allowed_lateness: Duration::from_micros(LATENESS as u64),
        idle_timeout: Duration::from_micros(IDLE as u64),
        correction_horizon: Duration::from_secs(24 * 3600),
        ..WindowConfig::default()
    }
}

fn pid(p: i32) -> PartitionId {
    PartitionId {
        topic: 0,
        partition: p,
    }
}

#[derive(Debug, Clone)]
enum Msg {
    Query { t_us: i64, hash: u8, rows: i64 },
    Garbage,
}

#[derive(Debug, Clone)]
enum Op {
    /// Append to a partition: an event `back_us` behind the clock (late ones become
    /// corrections), or garbage.
    Produce {
        partition: i32,
        back_us: i64,
        hash: u8,
        garbage: bool,
    },
    /// A worker reads up to `n` messages of each partition it believes it owns.
    Poll {
        worker: usize,
        n: usize,
    },
    Tick {
        us: i64,
    },
    Flush {
        worker: usize,
        outcome: WriteOutcome,
    },
    /// Prepares a plan and starts its write, which reaches the store now (`write_now`) or when
    /// it ends; the worker goes on polling meanwhile. No-op while one is in flight.
    FlushBegin {
        worker: usize,
        write_now: bool,
    },
    /// The flush in flight ends: its outcome reaches the core (`Failed`: the write did not
    /// reach the store; `ReplyLost`: the outcome is lost; the plan stays pending either way).
    FlushEnd {
        worker: usize,
        outcome: WriteOutcome,
    },
    /// Every member revokes (flushing first, which may fail) and the group reassigns.
    Rebalance {
        seed: u64,
        revoke_flush_fails: bool,
    },
    /// The worker dies: its state is lost, it restarts under a new identity, the group
    /// reassigns.
    Crash {
        worker: usize,
        seed: u64,
    },
    /// The worker stalls past its session timeout: the group reassigns its partitions without
    /// it; it keeps its state and carries on later, until a flush is fenced.
    Stall {
        worker: usize,
        seed: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteOutcome {
    Committed,
    /// Nothing reaches the store; the plan stays pending.
    Failed,
    /// The store commits, the reply is lost: the worker retries the same plan later.
    ReplyLost,
}

fn op() -> impl Strategy<Value = Op> {
    let worker = 0..WORKERS;
    prop_oneof![
        8 => (0..PARTITIONS, prop_oneof![4 => 0..LATENESS, 1 => 0..4 * WINDOW], prop_oneof![12 => 0..3u8, 1 => Just(POISON)], prop::bool::weighted(0.05))
            .prop_map(|(partition, back_us, hash, garbage)| Op::Produce { partition, back_us, hash, garbage }),
        4 => (worker.clone(), 1..20usize).prop_map(|(worker, n)| Op::Poll { worker, n }),
        3 => (0..4 * SEC).prop_map(|us| Op::Tick { us }),
        3 => (worker.clone(), prop_oneof![
                6 => Just(WriteOutcome::Committed),
                1 => Just(WriteOutcome::Failed),
                2 => Just(WriteOutcome::ReplyLost)])
            .prop_map(|(worker, outcome)| Op::Flush { worker, outcome }),
        2 => (worker.clone(), any::<bool>())
            .prop_map(|(worker, write_now)| Op::FlushBegin { worker, write_now }),
        2 => (worker.clone(), prop_oneof![
                6 => Just(WriteOutcome::Committed),
                1 => Just(WriteOutcome::Failed),
                2 => Just(WriteOutcome::ReplyLost)])
            .prop_map(|(worker, outcome)| Op::FlushEnd { worker, outcome }),
        1 => (any::<u64>(), prop::bool::weighted(0.3))
            .prop_map(|(seed, revoke_flush_fails)| Op::Rebalance { seed, revoke_flush_fails }),
        1 => (worker.clone(), any::<u64>()).prop_map(|(worker, seed)| Op::Crash { worker, seed }),
        1 => (worker, any::<u64>()).prop_map(|(worker, seed)| Op::Stall { worker, seed }),
    ]
}

/// A stored progress row (`consumer_offsets`).
#[derive(Debug, Clone)]
struct Row {
    owner: String,
    generation: i64,
    flush_seq: i64,
    resume_offset: Option<i64>,
    applied_through_offset: Option<i64>,
    applied_watermark_us: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
enum WriteResult {
    Committed,
    AlreadyApplied,
    Fenced,
    /// A data error on these rows' series; nothing was written.
    Refused(Vec<SeriesKey>),
}

/// Count and rows sum per (window start, query hash): rows are unique per event, so a double
/// count and a loss cannot cancel out.
type Figures = BTreeMap<(i64, String), (u64, i64)>;

#[derive(Debug, Default)]
struct Store {
    rows: Figures,
    progress: BTreeMap<i32, Row>,
}

impl Store {
    fn claim(&mut self, partition: i32, owner: &str) -> Claim {
        let row = self.progress.entry(partition).or_insert(Row {
            owner: owner.into(),
            generation: 0,
            flush_seq: 0,
            resume_offset: None,
            applied_through_offset: None,
            applied_watermark_us: None,
        });
        row.owner = owner.into();
        row.generation += 1;
        row.flush_seq = 0;
        Claim {
            generation: row.generation,
            resume_offset: row.resume_offset,
            applied_through_offset: row.applied_through_offset,
            applied_watermark_us: row.applied_watermark_us,
        }
    }

    /// All or nothing, like the flush transaction.
    fn write(&mut self, owner: &str, plan: &FlushPlan) -> WriteResult {
        assert!(
            !plan.progress.is_empty() || plan.rollups.is_empty(),
            "rows without progress: nothing would fence them"
        );
        // Rows are written before the progress compare-and-set: their error comes first.
        let refused: Vec<SeriesKey> = plan
            .rollups
            .query
            .iter()
            .filter(|r| r.key.query_hash == key(POISON))
            .map(|r| SeriesKey::Query(r.key.clone()))
            .collect();
        if !refused.is_empty() {
            return WriteResult::Refused(refused);
        }
        let mut applied = 0;
        for p in &plan.progress {
            let row = &self.progress[&p.partition.partition];
            if row.owner != owner || row.generation != p.generation {
                return WriteResult::Fenced;
            }
            if row.flush_seq >= p.flush_seq {
                applied += 1;
            } else if row.flush_seq != p.flush_seq - 1 {
                return WriteResult::Fenced;
            }
        }
        if applied > 0 {
            assert_eq!(applied, plan.progress.len(), "a flush applied in part");
            return WriteResult::AlreadyApplied;
        }
        for r in &plan.rollups.query {
            let e = self
                .rows
                .entry((r.window_start_us, r.key.query_hash.clone()))
                .or_default();
            e.0 += r.figures.latency.count;
            e.1 += r.figures.rows_sum;
        }
        for p in &plan.progress {
            let row = self
                .progress
                .get_mut(&p.partition.partition)
                .expect("checked");
            row.flush_seq = p.flush_seq;
            row.resume_offset = Some(p.resume_offset);
            row.applied_through_offset = Some(p.applied_through_offset);
            row.applied_watermark_us = Some(p.applied_watermark_us);
        }
        WriteResult::Committed
    }
}

/// A flush whose outcome has not reached the core.
enum Inflight {
    /// The write reached the store when the flush began.
    Written(WriteResult),
    /// The write reaches the store when the flush ends.
    Deferred(Box<FlushPlan>),
}

struct Worker {
    owner: String,
    incarnation: u32,
    core: Core,
    inflight: Option<Inflight>,
    /// Next offset to read, per partition the worker believes it owns.
    positions: BTreeMap<i32, usize>,
}

impl Worker {
    fn new(index: usize, incarnation: u32) -> Self {
        Worker {
            owner: format!("w{index}.{incarnation}"),
            incarnation,
            core: Core::new(Engine::new(config()).expect("valid config")),
            inflight: None,
            positions: BTreeMap::new(),
        }
    }
}

struct World {
    clock: i64,
    log: Vec<Vec<Msg>>,
    truth: Figures,
    store: Store,
    workers: Vec<Worker>,
    /// Workers in the group (the others are stalled).
    members: BTreeSet<usize>,
    routed: BTreeSet<(i32, i64)>,
    /// Poison events routed as unwritable.
    isolated: BTreeSet<(i32, i64)>,
    next_rows: i64,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            clock: T0,
            log: vec![Vec::new(); PARTITIONS as usize],
            truth: Figures::new(),
            store: Store::default(),
            workers: (0..WORKERS).map(|i| Worker::new(i, 0)).collect(),
            members: (0..WORKERS).collect(),
            routed: BTreeSet::new(),
            isolated: BTreeSet::new(),
            next_rows: 1,
        };
        w.reassign(0);
        w
    }

    fn poll(&mut self, worker: usize, n: usize) {
        let w = &mut self.workers[worker];
        let owned: Vec<i32> = w.positions.keys().copied().collect();
        for p in owned {
            for _ in 0..n {
                let pos = w.positions[&p];
                let Some(msg) = self.log[p as usize].get(pos) else {
                    break;
                };
                let offset = pos as i64;
                let action = match msg {
                    Msg::Garbage => w.core.on_undecodable(pid(p), offset),
                    Msg::Query { t_us, hash, rows } => {
                        w.core
                            .on_event(pid(p), offset, &query(*t_us, *hash, *rows), self.clock)
                    }
                };
                match action {
                    Action::DeadLetter => {
                        assert!(matches!(msg, Msg::Garbage));
                        self.routed.insert((p, offset));
                    }
                    Action::AlreadyRouted => assert!(matches!(msg, Msg::Garbage)),
                    Action::Unwritable => {
                        assert!(matches!(msg, Msg::Query { hash: POISON, .. }), "{msg:?}");
                        self.isolated.insert((p, offset));
                    }
                    Action::Late(k) => panic!("no event is generated late or early: {k:?}"),
                    Action::NotAssigned => panic!("polled a partition the core does not hold"),
                    Action::Aggregated | Action::Correction | Action::Skipped => {}
                }
                w.positions.insert(p, pos + 1);
            }
        }
    }

    /// One flush attempt, waited for; returns whether it ended with the plan out of the way
    /// (committed, already applied, or fenced). A flush in flight is settled first, as the
    /// adapter does before a synchronous flush.
    fn flush(&mut self, worker: usize, outcome: WriteOutcome) -> bool {
        self.flush_end(worker, WriteOutcome::Committed);
        let w = &mut self.workers[worker];
        let Some(plan) = w.core.prepare_flush(self.clock) else {
            return true;
        };
        if outcome == WriteOutcome::Failed {
            return false;
        }
        let result = self.store.write(&w.owner, plan);
        if outcome == WriteOutcome::ReplyLost
            && matches!(result, WriteResult::Committed | WriteResult::AlreadyApplied)
        {
            return false;
        }
        self.deliver(worker, result);
        true
    }

    fn flush_begin(&mut self, worker: usize, write_now: bool) {
        let w = &mut self.workers[worker];
        if w.inflight.is_some() {
            return;
        }
        let Some(plan) = w.core.prepare_flush(self.clock) else {
            return;
        };
        w.inflight = Some(if write_now {
            Inflight::Written(self.store.write(&w.owner, plan))
        } else {
            Inflight::Deferred(Box::new(plan.clone()))
        });
    }

    fn flush_end(&mut self, worker: usize, outcome: WriteOutcome) {
        let w = &mut self.workers[worker];
        let Some(flight) = w.inflight.take() else {
            return;
        };
        let result = match flight {
            Inflight::Written(r) => r,
            Inflight::Deferred(_) if outcome == WriteOutcome::Failed => return,
            Inflight::Deferred(plan) => self.store.write(&w.owner, &plan),
        };
        if outcome != WriteOutcome::Committed
            && matches!(result, WriteResult::Committed | WriteResult::AlreadyApplied)
        {
            return;
        }
        self.deliver(worker, result);
    }

    /// The outcome of a write reaches the worker's core.
    fn deliver(&mut self, worker: usize, result: WriteResult) {
        let w = &mut self.workers[worker];
        match result {
            WriteResult::Refused(keys) => {
                // The adapter isolates the series and seeks every partition back.
                let seeks = w
                    .core
                    .isolate(keys.into_iter().map(|k| (k, "refused".to_string())));
                for (id, offset) in seeks {
                    w.positions.insert(id.partition, offset as usize);
                }
            }
            WriteResult::Committed | WriteResult::AlreadyApplied => {
                w.core.committed();
            }
            WriteResult::Fenced => {
                w.core.fenced();
                w.positions.clear();
                // It rejoins the group at the next rebalance.
                self.members.insert(worker);
            }
        }
    }

    /// Eager rebalance: every member revokes everything (trying one last flush), then the
    /// partitions are spread over the members by `seed` and claimed.
    fn rebalance(&mut self, seed: u64, revoke_flush_fails: bool) {
        let members: Vec<usize> = self.members.iter().copied().collect();
        for &m in &members {
            let outcome = if revoke_flush_fails {
                WriteOutcome::Failed
            } else {
                WriteOutcome::Committed
            };
            self.flush(m, outcome);
            let w = &mut self.workers[m];
            w.core.revoke();
            w.positions.clear();
        }
        self.reassign(seed);
    }

    fn reassign(&mut self, seed: u64) {
        let members: Vec<usize> = self.members.iter().copied().collect();
        for p in 0..PARTITIONS {
            let m = members[((seed >> (p * 4)) as usize + p as usize) % members.len()];
            let w = &mut self.workers[m];
            let claim = self.store.claim(p, &w.owner);
            let start = claim.resume_offset.unwrap_or(0);
            w.core.assign(pid(p), &claim, start);
            w.positions.insert(p, start as usize);
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Produce {
                partition,
                back_us,
                hash,
                garbage,
            } => {
                let msg = if garbage {
                    Msg::Garbage
                } else {
                    let t_us = self.clock - back_us;
                    let rows = self.next_rows;
                    self.next_rows += 1;
                    if hash != POISON {
                        let e = self
                            .truth
                            .entry((t_us - t_us.rem_euclid(WINDOW), key(hash)))
                            .or_default();
                        e.0 += 1;
                        e.1 += rows;
                    }
                    Msg::Query { t_us, hash, rows }
                };
                self.log[partition as usize].push(msg);
            }
            Op::Poll { worker, n } => self.poll(worker, n),
            Op::Tick { us } => self.clock += us,
            Op::Flush { worker, outcome } => {
                self.flush(worker, outcome);
            }
            Op::FlushBegin { worker, write_now } => self.flush_begin(worker, write_now),
            Op::FlushEnd { worker, outcome } => self.flush_end(worker, outcome),
            Op::Rebalance {
                seed,
                revoke_flush_fails,
            } => self.rebalance(seed, revoke_flush_fails),
            Op::Crash { worker, seed } => {
                let incarnation = self.workers[worker].incarnation + 1;
                self.workers[worker] = Worker::new(worker, incarnation);
                self.members.insert(worker);
                self.rebalance(seed, false);
            }
            Op::Stall { worker, seed } => {
                if self.members.len() > 1 && self.members.remove(&worker) {
                    self.rebalance(seed, false);
                }
            }
        }
    }

    /// Every stored figure is at most the truth: nothing is ever counted twice.
    fn check_never_over(&self) {
        for (k, &(count, rows)) in &self.store.rows {
            let (tc, tr) = self.truth.get(k).copied().unwrap_or_default();
            assert!(
                count <= tc && rows <= tr,
                "over-counted {k:?}: stored ({count}, {rows}), truth ({tc}, {tr})"
            );
        }
    }

    /// Stalled workers come back (and are fenced where they lost partitions), then one worker
    /// takes every partition, reads to the end, and flushes until the clock closed everything.
    fn drain(&mut self) {
        for w in 0..WORKERS {
            // Retries a plan whose reply was lost; a stalled worker is fenced here.
            self.flush(w, WriteOutcome::Committed);
            let w = &mut self.workers[w];
            w.core.revoke();
            w.positions.clear();
        }
        self.members = BTreeSet::from([0]);
        self.reassign(0);
        self.poll(0, usize::MAX);
        for _ in 0..4 {
            // Again after an isolation rewound the partitions.
            self.poll(0, usize::MAX);
            self.clock += WINDOW + LATENESS + IDLE + 1;
            assert!(self.flush(0, WriteOutcome::Committed));
            self.check_never_over();
        }
    }
}

fn key(hash: u8) -> String {
    format!("q{hash}")
}

fn query(t_us: i64, hash: u8, rows: i64) -> Event {
    Event::Query(QueryEvent {
        service: "checkout".into(),
        instance: "i-1".into(),
        query_hash: key(hash),
        query_type: QueryType::Select,
        query_text: None,
        execution_time_us: 1000 + rows,
        rows_affected: rows,
        tenant_id: None,
        trace_id: None,
        executed_at_us: t_us,
    })
}

fn run(ops: &[Op]) {
    let mut world = World::new();
    for op in ops {
        world.step(op);
        world.check_never_over();
    }
    world.drain();
    assert_eq!(
        world.store.rows, world.truth,
        "stored figures differ from the truth"
    );
    for (p, msgs) in world.log.iter().enumerate() {
        for (offset, m) in msgs.iter().enumerate() {
            if matches!(m, Msg::Garbage) {
                assert!(
                    world.routed.contains(&(p as i32, offset as i64)),
                    "garbage at {p}/{offset} never routed"
                );
            }
            if matches!(m, Msg::Query { hash: POISON, .. }) {
                assert!(
                    world.isolated.contains(&(p as i32, offset as i64)),
                    "refused event at {p}/{offset} never routed"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_event_counted_once_through_any_interleaving(ops in prop::collection::vec(op(), 1..160)) {
        run(&ops);
    }
}

/// Section 2 of issue 11, by hand: A commits far ahead of its resume offset; B claims, replays
/// and flushes while still below A's applied mark, with the operator watermark ahead (another
/// partition); B dies; C must not count A's events again.
#[test]
fn a_second_failover_during_replay_counts_nothing_twice() {
    use Op::*;
    let mut ops = Vec::new();
    // Worker 0 owns everything (seed 0 with 3 members maps p -> p % 3; use one member).
    ops.push(Stall { worker: 1, seed: 0 });
    ops.push(Stall { worker: 2, seed: 0 });
    for i in 0..30 {
        for p in 0..PARTITIONS {
            ops.push(Produce {
                partition: p,
                back_us: if i % 7 == 3 { 3 * WINDOW } else { 0 },
                hash: (i % 3) as u8,
                garbage: false,
            });
        }
        ops.push(Tick { us: SEC });
        ops.push(Poll { worker: 0, n: 100 });
        ops.push(Flush {
            worker: 0,
            outcome: WriteOutcome::Committed,
        });
    }
    // A dies; B (worker 0's next incarnation) replays, flushes part-way, dies; C finishes.
    ops.push(Crash { worker: 0, seed: 0 });
    ops.push(Poll { worker: 0, n: 5 });
    ops.push(Flush {
        worker: 0,
        outcome: WriteOutcome::Committed,
    });
    ops.push(Crash { worker: 0, seed: 0 });
    run(&ops);
}
