//! Filling `query_hash` from `query_text`, in the emitter's background thread.
//!
//! A service that gives only the statement's text (`query_hash` empty) gets the shared
//! fingerprint ([`crate::fingerprint`]): the hash, the kind when it said `Other`, and the
//! normalised text in place of the raw one, so literals (and whatever personal data they hold)
//! never leave the process. The normalised text is sent with the first event of each hash and
//! again at most every [`TEXT_EVERY`]; perfstream keeps one text per hash (`query_catalog`),
//! so repeating it on every event would only cost bytes. It runs in the background thread
//! rather than in `record_query` so that the caller's cost stays one channel send.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use perfstream_events::{QueryEvent, QueryType};

use crate::fingerprint::{Fingerprint, fingerprint};

/// How often the normalised text of one hash is sent again (the first event of a process
/// may be dropped, and perfstream's catalog may be younger than this process).
pub(crate) const TEXT_EVERY: Duration = Duration::from_secs(300);

/// Hashes remembered at most; beyond it the memory is cleared (texts are then sent again
/// once), so a service with unbounded distinct statements cannot grow the emitter.
const MAX_REMEMBERED: usize = 100_000;

/// Bytes of raw query text whose fingerprints are cached; beyond it the cache is cleared. A
/// service with placeholders has few distinct texts, so most events cost a lookup.
const CACHE_BYTES: usize = 4 << 20;

/// When each hash's text was last sent, and the fingerprints of recent raw texts.
#[derive(Default)]
pub(crate) struct QueryFiller {
    text_sent: HashMap<String, Instant>,
    cache: Cache,
}

/// Fingerprints by raw text, at most [`CACHE_BYTES`] of text.
#[derive(Default)]
struct Cache {
    fingerprints: HashMap<String, Fingerprint>,
    bytes: usize,
}

impl Cache {
    fn get(&mut self, text: String) -> &Fingerprint {
        if !self.fingerprints.contains_key(&text) {
            if self.bytes + text.len() > CACHE_BYTES {
                self.fingerprints.clear();
                self.bytes = 0;
            }
            self.bytes += text.len();
            let f = fingerprint(&text);
            self.fingerprints.insert(text.clone(), f);
        }
        &self.fingerprints[&text]
    }
}

impl QueryFiller {
    /// Fills `q` when it carries text but no hash; leaves any other event untouched.
    pub(crate) fn fill(&mut self, q: &mut QueryEvent, now: Instant) {
        if !q.query_hash.is_empty() {
            return;
        }
        let Some(text) = q.query_text.take() else {
            return;
        };
        let f = self.cache.get(text);
        if q.query_type == QueryType::Other {
            q.query_type = f.query_type;
        }
        let due = self
            .text_sent
            .get(&f.hash)
            .is_none_or(|at| now.duration_since(*at) >= TEXT_EVERY);
        if due {
            if self.text_sent.len() >= MAX_REMEMBERED {
                self.text_sent.clear();
            }
            self.text_sent.insert(f.hash.clone(), now);
        }
        q.query_text = due.then(|| f.normalized.clone());
        q.query_hash = f.hash.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(hash: &str, text: Option<&str>) -> QueryEvent {
        QueryEvent {
            service: "s".into(),
            instance: "i".into(),
            query_hash: hash.into(),
            query_type: QueryType::Other,
            query_text: text.map(str::to_string),
            execution_time_us: 1,
            rows_affected: 0,
            tenant_id: None,
            trace_id: None,
            executed_at_us: 0,
        }
    }

    #[test]
    fn text_only_events_get_the_fingerprint_and_the_text_once_per_interval() {
        let mut f = QueryFiller::default();
        let t0 = Instant::now();
        let mut a = event("", Some("SELECT * FROM t WHERE id = 42"));
        f.fill(&mut a, t0);
        assert_eq!(
            a.query_hash,
            fingerprint("select * from t where id = ?").hash
        );
        assert_eq!(a.query_type, QueryType::Select);
        assert_eq!(
            a.query_text.as_deref(),
            Some("select * from t where id = ?")
        );

        // Another spelling of the same statement: same hash, text not repeated.
        let mut b = event("", Some("select *\n  from t where id=$1"));
        f.fill(&mut b, t0 + Duration::from_secs(1));
        assert_eq!(b.query_hash, a.query_hash);
        assert_eq!(b.query_text, None);

        let mut c = event("", Some("select * from t where id = 7"));
        f.fill(&mut c, t0 + TEXT_EVERY);
        assert_eq!(
            c.query_text.as_deref(),
            Some("select * from t where id = ?")
        );
    }

    #[test]
    fn events_with_a_hash_or_without_text_are_left_alone() {
        let mut f = QueryFiller::default();
        let mut given = event("abc", Some("SELECT 1"));
        f.fill(&mut given, Instant::now());
        assert_eq!(given, event("abc", Some("SELECT 1")));
        let mut bare = event("", None);
        f.fill(&mut bare, Instant::now());
        assert_eq!(bare, event("", None));
    }

    #[test]
    fn a_kind_the_service_gave_is_kept() {
        let mut f = QueryFiller::default();
        let mut q = event("", Some("WITH x AS (SELECT 1) SELECT * FROM x"));
        q.query_type = QueryType::Update;
        f.fill(&mut q, Instant::now());
        assert_eq!(q.query_type, QueryType::Update);
    }

    #[test]
    fn the_fingerprint_cache_stays_within_its_budget() {
        let mut c = Cache::default();
        let long = "x".repeat(1 << 20);
        for k in 0..10 {
            let f = c.get(format!("SELECT {k} FROM t -- {long}")).clone();
            assert_eq!(f, fingerprint("select ? from t"));
            assert!(c.bytes <= CACHE_BYTES, "{} bytes", c.bytes);
        }
        assert!(c.fingerprints.len() < 10);
    }
}
