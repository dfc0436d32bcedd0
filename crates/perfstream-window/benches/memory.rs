//! Bytes per live series, measured with a counting global allocator (not estimated).
//! Run: `cargo bench -p perfstream-window --bench memory`
//!
//! Workload (see `workload/mod.rs`): 10 M query events, Zipf(1.0) over 1 M keys, one window.
//! 1. Mean: live heap bytes of the engine after recording, divided by its live series.
//! 2. Distribution: the same events grouped by key and recorded key after key into a fresh
//!    engine; each series' own heap (packed key, query text, sparse or dense counts) is the
//!    allocator delta over its events, ignoring allocations of 1 MiB or more (hash table growth,
//!    whose bytes are spread evenly instead: the table's share per series is added to each).
//! 3. Flush: peak bytes while a flush materializes its rollups (each carries a compact
//!    `LatencyHist`, sized by its non-empty buckets), per rollup, on a smaller run (200 k events
//!    over 20 k keys). "Held" is the net change: the rollups minus the window state the flush
//!    frees, so it can be negative.

mod workload;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use perfstream_events::Event;
use perfstream_window::{Engine, PartitionId, ResumeState, WindowConfig};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Live bytes in allocations of at least `LARGE`.
static LIVE_LARGE: AtomicUsize = AtomicUsize::new(0);
/// Highest `LIVE` seen since the last reset.
static PEAK: AtomicUsize = AtomicUsize::new(0);
const LARGE: usize = 1 << 20;

fn add(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    if size >= LARGE {
        LIVE_LARGE.fetch_add(size, Relaxed);
    }
}

fn sub(size: usize) {
    LIVE.fetch_sub(size, Relaxed);
    if size >= LARGE {
        LIVE_LARGE.fetch_sub(size, Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N_KEYS: usize = 1_000_000;
const N_EVENTS: usize = 10_000_000;

fn engine() -> (Engine, PartitionId) {
    let p = PartitionId {
        topic: 0,
        partition: 0,
    };
    let mut e = Engine::new(WindowConfig {
        max_series: 2_000_000,
        ..WindowConfig::default()
    })
    .expect("valid config");
    e.assign(p, ResumeState::default());
    (e, p)
}

fn small_live() -> usize {
    LIVE.load(Relaxed) - LIVE_LARGE.load(Relaxed)
}

fn percentile(sorted: &[usize], q: f64) -> usize {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let keys = workload::Keys::new(N_KEYS);
    let mut ev = Event::Query(workload::empty_query());

    // 1. Mean over the engine as a whole, events interleaved as they come.
    let mut draws = workload::Draws::new(N_KEYS, 7);
    let (mut e, p) = engine();
    let Event::Query(q) = &mut ev else {
        unreachable!()
    };
    workload::fill(q, &keys, 0, 1, workload::T0); // grow the reused strings before measuring
    let before = LIVE.load(Relaxed);
    let started = Instant::now();
    for offset in 0..N_EVENTS as i64 {
        let (rank, latency, t) = draws.next();
        let Event::Query(q) = &mut ev else {
            unreachable!()
        };
        workload::fill(q, &keys, rank, latency, t);
        e.record(p, offset, &ev, workload::T0).expect("assigned");
    }
    let elapsed = started.elapsed();
    let total = LIVE.load(Relaxed) - before;
    let live = e.live_series();
    println!("events {N_EVENTS}, key space {N_KEYS} (zipf 1.0), live series {live}");
    println!(
        "recorded in {:.2?} ({:.2} M events/s incl. generation)",
        elapsed,
        N_EVENTS as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "engine live bytes {total}, mean per series {:.0} B",
        total as f64 / live as f64
    );
    drop(e);

    // 2. Per-series distribution: the same events grouped by key.
    let mut draws = workload::Draws::new(N_KEYS, 7);
    let mut grouped: Vec<(u32, u32, i64)> = (0..N_EVENTS)
        .map(|_| {
            let (rank, latency, t) = draws.next();
            (rank as u32, latency.clamp(0, u32::MAX as i64) as u32, t)
        })
        .collect();
    grouped.sort_by_key(|g| g.0);
    let (mut e, p) = engine();
    let base_large = LIVE_LARGE.load(Relaxed);
    let base_all = LIVE.load(Relaxed);
    let mut own = Vec::with_capacity(live);
    let mut offset = 0;
    for run in grouped.chunk_by(|a, b| a.0 == b.0) {
        let start = small_live();
        for &(rank, latency, t) in run {
            let Event::Query(q) = &mut ev else {
                unreachable!()
            };
            workload::fill(q, &keys, rank as usize, i64::from(latency), t);
            e.record(p, offset, &ev, workload::T0).expect("assigned");
            offset += 1;
        }
        own.push(small_live() as isize - start as isize);
    }
    let total2 = LIVE.load(Relaxed) - base_all;
    let table = LIVE_LARGE.load(Relaxed) - base_large;
    let share = table / e.live_series();
    let mut per: Vec<usize> = own.iter().map(|b| (*b).max(0) as usize + share).collect();
    per.sort_unstable();
    println!(
        "grouped: live series {}, total {total2} B, tables {table} B ({share} B per series)",
        e.live_series()
    );
    println!(
        "per series (own heap + table share): mean {:.0} B, p50 {} B, p90 {} B, p99 {} B, p99.9 {} B, max {} B",
        per.iter().sum::<usize>() as f64 / per.len() as f64,
        percentile(&per, 0.5),
        percentile(&per, 0.9),
        percentile(&per, 0.99),
        percentile(&per, 0.999),
        per[per.len() - 1],
    );
    drop(e);
    drop(grouped);

    // 3. Flush cost.
    let keys = workload::Keys::new(20_000);
    let mut draws = workload::Draws::new(20_000, 7);
    let (mut e, p) = engine();
    for offset in 0..200_000 {
        let (rank, latency, t) = draws.next();
        let Event::Query(q) = &mut ev else {
            unreachable!()
        };
        workload::fill(q, &keys, rank, latency, t);
        e.record(p, offset, &ev, workload::T0).expect("assigned");
    }
    // One event two minutes on moves the watermark past the window.
    let Event::Query(q) = &mut ev else {
        unreachable!()
    };
    workload::fill(q, &keys, 0, 1, workload::T0 + 120_000_000);
    e.record(p, 200_000, &ev, workload::T0).expect("assigned");
    e.advance(workload::T0);
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let started = Instant::now();
    let flush = e.flush();
    let elapsed = started.elapsed();
    let rollups = flush.closed.len();
    let held = LIVE.load(Relaxed) as isize - before as isize;
    let peak = PEAK.load(Relaxed) - before;
    println!(
        "flush: {rollups} rollups in {elapsed:.2?}, peak +{peak} B ({} B per rollup), held by the Flush {held} B",
        peak / rollups.max(1)
    );
}
