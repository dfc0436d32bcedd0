//! The cardinality budget: how many series the engine holds, per service and in all, and about
//! how many bytes they take. A hostile or broken producer that invents keys (a new service name
//! or query hash per event) must cost its own resolution, never the process's memory.
//!
//! A new key is admitted unless it would break a limit ([`Limits`]):
//! - the live series reach `window.max_series`, or their estimated bytes would pass
//!   `window.max_memory_mb`: the event goes to the one *global* overflow series of its kind
//!   (service and every key field [`crate::OVERFLOW_KEY`]);
//! - its service already has `window.max_series_per_service` live series: the event goes to the
//!   overflow series of its service.
//!
//! Overflow series are created even past the limits, so no event is dropped and every total
//! stays exact; there is at most one global overflow series per kind per window and partition,
//! and one per admitted service. The byte estimate counts each series' key, figures, hash-table
//! slot, query text and histogram buckets, plus one entry per service; it is exact for what it
//! counts as of the last flush (which recounts everything it keeps), and estimated for series
//! created since (histograms growing between two flushes are counted at the next one).

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;

use crate::key::{INLINE_KEY, SmallKey, service_of};
use crate::series::Series;
use crate::window::{SeriesMap, WindowState};

/// The configured limits (see [`crate::WindowConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_series: usize,
    pub max_series_per_service: usize,
    pub max_bytes: usize,
}

/// What a new key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Key,
    ServiceOverflow,
    GlobalOverflow,
}

/// Bytes of one entry of the per-service map, besides the name: its slot, doubled for the
/// table's free share (a hash table that grows by doubling is between 7/16 and 7/8 full).
const SERVICE_ENTRY: usize = (size_of::<(Box<str>, u32)>() + 1) * 2;

/// What the allocator takes for a heap block of `len` bytes: 16-byte granules plus its header.
fn heap_block(len: usize) -> usize {
    len.next_multiple_of(16) + 16
}

/// Live series per service and the estimated bytes of everything held.
#[derive(Debug, Default)]
pub struct Budget {
    bytes: usize,
    services: HashMap<Box<str>, u32>,
}

/// Estimated bytes of a series of type `S` under a packed key of `key_len` bytes, before any
/// heap its figures take: the hash-table slot, doubled for the table's free share, and a heap
/// key. Calibrated against the process's RSS by `benches/cardinality.rs`.
pub fn series_cost<S: Series>(key_len: usize) -> usize {
    let slot = (size_of::<SmallKey>() + size_of::<S>() + 1) * 2;
    slot + if key_len > INLINE_KEY {
        heap_block(key_len)
    } else {
        0
    }
}

impl Budget {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What a new series of `service` costing `cost` bytes gets, with `live` series held.
    pub fn admit(&self, service: &str, live: usize, cost: usize, l: &Limits) -> Admit {
        let service_entry = if self.services.contains_key(service) {
            0
        } else {
            SERVICE_ENTRY + heap_block(service.len())
        };
        if live >= l.max_series || self.bytes + cost + service_entry > l.max_bytes {
            Admit::GlobalOverflow
        } else if self.services.get(service).map_or(0, |&n| n as usize) >= l.max_series_per_service
        {
            Admit::ServiceOverflow
        } else {
            Admit::Key
        }
    }

    /// A series of `service` costing `cost` bytes was created.
    pub fn charge(&mut self, service: &str, cost: usize) {
        self.bytes += cost;
        match self.services.entry_ref(service) {
            EntryRef::Occupied(o) => *o.into_mut() += 1,
            EntryRef::Vacant(v) => {
                self.bytes += SERVICE_ENTRY + heap_block(service.len());
                v.insert(1);
            }
        }
    }

    /// Recounts everything from the windows still held (after a flush or a revoke released
    /// some), with each series' actual heap.
    pub fn recount<'a>(&mut self, windows: impl Iterator<Item = &'a WindowState>) {
        self.bytes = 0;
        self.services.clear();
        for w in windows {
            self.add_map(&w.query);
            self.add_map(&w.request);
            self.add_map(&w.resource);
        }
        self.services.shrink_to_fit();
    }

    fn add_map<S: Series>(&mut self, map: &SeriesMap<S>) {
        for (k, s) in map {
            let key = k.as_slice();
            self.charge(
                service_of(key),
                series_cost::<S>(key.len()) + s.heap_bytes(),
            );
        }
    }
}
