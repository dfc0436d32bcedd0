//! Series Postgres refused to store, and the events that belong to them.
//!
//! An event that decodes is writable (perfstream-events validates every constraint the tables
//! enforce), so this is the second line of defence: when a flush fails with a data error
//! (SQLSTATE class 22 or 23, e.g. a constraint an operator added), the adapter asks the store
//! which rows it refuses, and the core isolates their series. From then on, events of an
//! isolated series go to the dead-letter topic with the database's reason instead of being
//! aggregated; everything else is counted as usual.

use std::collections::{BTreeMap, HashSet};

use perfstream_events::{Event, EventKind};
use perfstream_window::SeriesKey;

#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    /// Services with any isolated series: the fast negative check on the per-event path.
    services: HashSet<String>,
    series: BTreeMap<SeriesKey, String>,
    /// An overflow series was refused: every event of that kind and service is isolated (which
    /// keys went to overflow depends on arrival order, so no finer rule is deterministic).
    whole: BTreeMap<(EventKind, String), String>,
}

impl Quarantine {
    pub(crate) fn len(&self) -> usize {
        self.series.len() + self.whole.len()
    }

    pub(crate) fn add(&mut self, key: SeriesKey, reason: String) {
        self.services.insert(key.service().to_string());
        if key.is_overflow() {
            self.whole
                .insert((key.kind(), key.service().to_string()), reason);
        } else {
            self.series.insert(key, reason);
        }
    }

    /// The database's reason when `event` belongs to an isolated series.
    pub(crate) fn reason(&self, event: &Event, tenant_dimension: bool) -> Option<&str> {
        if self.services.is_empty() {
            return None;
        }
        let service = match event {
            Event::Query(e) => &e.service,
            Event::Request(e) => &e.service,
            Event::Resource(e) => &e.service,
        };
        if !self.services.contains(service.as_str()) {
            return None;
        }
        if let Some(r) = self.whole.get(&(event.kind(), service.clone())) {
            return Some(r);
        }
        self.series
            .get(&SeriesKey::of(event, tenant_dimension))
            .map(String::as_str)
    }
}
