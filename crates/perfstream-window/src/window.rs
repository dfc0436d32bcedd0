//! [`WindowState`]: the series of one partition in one window (open, or pending correction).

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;

use crate::OVERFLOW_KEY;
use crate::budget::{Admit, Budget, Limits, series_cost};
use crate::hdr::HdrLayout;
use crate::key::{PackedKey, SmallKey, service_of};
use crate::series::{QuerySeries, RequestSeries, ResourceSeries, Series};

/// Series by packed key (see [`crate::key`]).
pub type SeriesMap<S> = HashMap<SmallKey, S>;

#[derive(Debug, Default)]
pub struct WindowState {
    /// Smallest source offset aggregated here: the partition may resume no later than this.
    pub min_offset: i64,
    pub query: SeriesMap<QuerySeries>,
    pub request: SeriesMap<RequestSeries>,
    pub resource: SeriesMap<ResourceSeries>,
}

impl WindowState {
    pub fn new(offset: i64) -> Self {
        WindowState {
            min_offset: offset,
            ..Default::default()
        }
    }

    pub fn series_count(&self) -> usize {
        self.query.len() + self.request.len() + self.resource.len()
    }

    /// Moves every series of `other` into `self`, merging those of equal keys.
    pub fn absorb(&mut self, other: WindowState, layout: &HdrLayout) {
        self.min_offset = self.min_offset.min(other.min_offset);
        absorb_map(&mut self.query, other.query, layout);
        absorb_map(&mut self.request, other.request, layout);
        absorb_map(&mut self.resource, other.resource, layout);
    }
}

fn absorb_map<S: Series>(into: &mut SeriesMap<S>, from: SeriesMap<S>, layout: &HdrLayout) {
    if into.is_empty() {
        *into = from;
        return;
    }
    for (k, s) in from {
        match into.entry(k) {
            hashbrown::hash_map::Entry::Occupied(mut o) => o.get_mut().merge(&s, layout),
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(s);
            }
        }
    }
}

/// The series for the packed key in `key`, created if new. A new key the [`Budget`] does not
/// admit goes to an overflow series instead (its service's, or the global one), created even
/// past the limits so that no event is ever dropped; `key` then holds the overflow key. The
/// flag says whether that happened. `extra` is heap the new series will take (its text).
#[inline]
pub fn upsert<'m, S: Series>(
    map: &'m mut SeriesMap<S>,
    key: &mut Vec<u8>,
    service: &str,
    live: &mut usize,
    budget: &mut Budget,
    limits: &Limits,
    extra: usize,
) -> (&'m mut S, bool) {
    let mut overflow = false;
    if !map.contains_key(&key[..]) {
        let cost = series_cost::<S>(key.len()) + extra;
        match budget.admit(service, *live, cost, limits) {
            Admit::Key => {}
            Admit::ServiceOverflow => {
                S::Key::encode_overflow(key, service);
                overflow = true;
            }
            Admit::GlobalOverflow => {
                S::Key::encode_overflow(key, OVERFLOW_KEY);
                overflow = true;
            }
        }
    }
    let s = match map.entry_ref(&key[..]) {
        EntryRef::Occupied(o) => o.into_mut(),
        EntryRef::Vacant(v) => {
            *live += 1;
            budget.charge(service_of(&key[..]), series_cost::<S>(key.len()) + extra);
            v.insert(S::default())
        }
    };
    (s, overflow)
}
