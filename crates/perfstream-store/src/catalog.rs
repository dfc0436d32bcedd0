//! `query_catalog` upkeep in the flush transaction, with a per-`Store` memory of what the
//! catalog already holds so that most flushes skip it.
//!
//! Catalog rows only ever move one way (first_seen earlier, last_seen later, text smaller),
//! whoever writes them. So a state this process read back from its own committed write is a
//! safe bound: while a flush's hashes bring nothing beyond it (no earlier window, no smaller
//! text, last_seen less than an hour past it) the statements would change nothing and are
//! skipped. The memory is updated only after COMMIT, and forgotten wholesale past
//! [`MAX_REMEMBERED`] hashes. A catalog row deleted by hand comes back once its hash moves on by
//! an hour (or at the next start).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use perfstream_events::TimestampUs;
use perfstream_window::QueryRollup;
use sqlx::{PgConnection, Row};

use crate::StoreError;
use crate::table::{from_ts, to_ts};

/// How far last_seen may lag: it is refreshed when a window ends more than this after it.
const LAST_SEEN_SLACK_US: i64 = 3_600_000_000;
/// Hashes remembered per process before the memory starts over.
const MAX_REMEMBERED: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    first_us: TimestampUs,
    last_us: TimestampUs,
    text: Option<String>,
}

/// States read back from this transaction's catalog writes, to remember once it commits.
#[derive(Debug, Default)]
pub(crate) struct Pending(Vec<(String, Known)>);

#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    known: Arc<Mutex<HashMap<String, Known>>>,
}

struct Entry<'a> {
    query_type: &'static str,
    text: Option<&'a str>,
    first: TimestampUs,
    last: TimestampUs,
}

impl Entry<'_> {
    /// True when the catalog row, at least as advanced as `k`, would not change.
    fn covered_by(&self, k: &Known) -> bool {
        self.first >= k.first_us
            && self.last <= k.last_us + LAST_SEEN_SLACK_US
            && match (self.text, k.text.as_deref()) {
                (None, _) => true,
                (Some(new), Some(known)) => known <= new,
                (Some(_), None) => false,
            }
    }
}

impl Catalog {
    /// One catalog row per hash of `rows`: smallest text, first and last seen.
    pub async fn upsert(
        &self,
        conn: &mut PgConnection,
        rows: &[QueryRollup],
    ) -> Result<Pending, StoreError> {
        let mut by_hash: BTreeMap<&str, Entry<'_>> = BTreeMap::new();
        for r in rows {
            let text = r.figures.query_text.as_deref();
            let e = by_hash.entry(&r.key.query_hash).or_insert(Entry {
                query_type: r.key.query_type.as_str(),
                text,
                first: r.window_start_us,
                last: r.window_end_us,
            });
            e.first = e.first.min(r.window_start_us);
            e.last = e.last.max(r.window_end_us);
            e.text = match (e.text, text) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            by_hash.retain(|h, e| !known.get(*h).is_some_and(|k| e.covered_by(k)));
        }
        if by_hash.is_empty() {
            return Ok(Pending::default());
        }
        let hashes: Vec<&str> = by_hash.keys().copied().collect();
        let types: Vec<&str> = by_hash.values().map(|e| e.query_type).collect();
        let texts: Vec<Option<&str>> = by_hash.values().map(|e| e.text).collect();
        let firsts: Vec<_> = by_hash.values().map(|e| to_ts(e.first)).collect();
        let lasts: Vec<_> = by_hash.values().map(|e| to_ts(e.last)).collect();
        // New hashes first; existing rows are left alone (and unlocked) unless this flush
        // moves first_seen earlier, brings a smaller text, or moves last_seen on by more than
        // an hour: rewriting (and locking) them on every flush would serialize concurrent
        // writers for nothing.
        let inserted = sqlx::query(
            "INSERT INTO query_catalog (query_hash, query_type, normalized_text, first_seen, last_seen) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) \
             ON CONFLICT (query_hash) DO NOTHING \
             RETURNING query_hash, first_seen, last_seen, normalized_text",
        )
        .bind(&hashes)
        .bind(&types)
        .bind(&texts)
        .bind(&firsts)
        .bind(&lasts)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::db("inserting into the query catalog"))?;
        let updated = sqlx::query(
            "UPDATE query_catalog AS c SET \
                 normalized_text = LEAST(c.normalized_text, u.normalized_text COLLATE \"C\"), \
                 first_seen = LEAST(c.first_seen, u.first_seen), \
                 last_seen = GREATEST(c.last_seen, u.last_seen) \
             FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) \
                 AS u(query_hash, normalized_text, first_seen, last_seen) \
             WHERE c.query_hash = u.query_hash \
               AND (u.first_seen < c.first_seen \
                    OR u.last_seen > c.last_seen + interval '1 hour' \
                    OR u.normalized_text COLLATE \"C\" < c.normalized_text \
                    OR (c.normalized_text IS NULL AND u.normalized_text IS NOT NULL)) \
             RETURNING c.query_hash, c.first_seen, c.last_seen, c.normalized_text",
        )
        .bind(&hashes)
        .bind(&texts)
        .bind(&firsts)
        .bind(&lasts)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::db("updating the query catalog"))?;
        let mut pending = Vec::with_capacity(inserted.len() + updated.len());
        for r in inserted.iter().chain(&updated) {
            let read = |r: &sqlx::postgres::PgRow| -> Result<(String, Known), sqlx::Error> {
                Ok((
                    r.try_get(0)?,
                    Known {
                        first_us: from_ts(r.try_get(1)?),
                        last_us: from_ts(r.try_get(2)?),
                        text: r.try_get(3)?,
                    },
                ))
            };
            pending.push(read(r).map_err(StoreError::db("reading back the query catalog"))?);
        }
        Ok(Pending(pending))
    }

    /// Remembers the states of a committed flush.
    pub fn committed(&self, pending: Pending) {
        if pending.0.is_empty() {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() + pending.0.len() > MAX_REMEMBERED {
            known.clear();
        }
        known.extend(pending.0);
    }
}
