//! Chart answers cached per (query, range), dropped when a flush lands.
//!
//! Every open dashboard refreshes every few seconds, and rollups only change when the pipeline
//! commits a flush. So an answer stays valid until the next flush: the flush transaction fires
//! `NOTIFY perfstream_flush` (trigger on `consumer_offsets`, migration `alerts`), a listener
//! task bumps [`QueryCache::invalidate`]'s generation, and entries of an older generation are
//! misses. Alerts are written by the evaluator after the flush it judged, and a LISTEN
//! connection can drop unnoticed for a while, so entries also expire after [`MAX_AGE`]: no
//! answer is ever older than that.
//!
//! Keys of live ranges (`range=1h`) do not contain the clock: within one generation the
//! answer of a minute-old "last hour" is the same rows but a few seconds of x axis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool};

impl std::fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (hits, misses) = self.counts();
        f.debug_struct("QueryCache")
            .field("hits", &hits)
            .field("misses", &misses)
            .finish_non_exhaustive()
    }
}

/// Longest an answer is served from the cache, flush or not.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Entries kept at most; the cache is cleared when full (keys are few: views x ranges x
/// services looked at).
const MAX_ENTRIES: usize = 512;
/// The channel the flush trigger notifies.
const FLUSH_CHANNEL: &str = "perfstream_flush";
/// Pause before listening again after the LISTEN connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

struct Entry {
    generation: u64,
    stored: Instant,
    body: Arc<str>,
}

/// The cache and its hit and miss counters (read by `/metrics`).
#[derive(Default)]
pub struct QueryCache {
    entries: Mutex<HashMap<String, Entry>>,
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl QueryCache {
    /// The answer stored under `key` when it is from this generation and younger than
    /// [`MAX_AGE`]; counts a hit or a miss.
    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        let generation = self.generation.load(Relaxed);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let found = entries
            .get(key)
            .filter(|e| e.generation == generation && e.stored.elapsed() < MAX_AGE)
            .map(|e| e.body.clone());
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// Stores `body` under `key`, as of `generation` (read with [`Self::generation`] before
    /// the query ran, so an answer computed across a flush is never stored as fresh).
    pub fn put(&self, key: String, generation: u64, body: Arc<str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                generation,
                stored: Instant::now(),
                body,
            },
        );
    }

    /// The current generation: bumped by every flush.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Makes every stored answer stale (a flush landed).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    /// (hits, misses) since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

/// Listens for flush notifications on a connection of `pool`'s database and invalidates
/// `cache` on each, until the returned task is aborted. While the connection is down,
/// [`MAX_AGE`] alone bounds staleness; after a reconnect the cache is invalidated once, as a
/// flush may have landed meanwhile.
pub fn spawn_flush_listener(pool: PgPool, cache: Arc<QueryCache>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&pool, &cache).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, channel = FLUSH_CHANNEL, "Cache invalidation listener failed; answers expire by age meanwhile.");
                    tokio::time::sleep(RELISTEN_AFTER).await;
                }
            }
        }
    })
}

async fn listen(pool: &PgPool, cache: &QueryCache) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(FLUSH_CHANNEL).await?;
    cache.invalidate();
    loop {
        // `recv` reconnects by itself and reports the gap as an error only when it cannot.
        listener.recv().await?;
        cache.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_a_hit_until_the_next_flush_and_counts_both() {
        let cache = QueryCache::default();
        assert!(cache.get("overview|1h").is_none());
        let g = cache.generation();
        cache.put("overview|1h".into(), g, Arc::from("{}"));
        assert_eq!(cache.get("overview|1h").as_deref(), Some("{}"));
        assert!(
            cache.get("overview|6h").is_none(),
            "the range is in the key"
        );
        cache.invalidate();
        assert!(cache.get("overview|1h").is_none());
        assert_eq!(cache.counts(), (1, 3));
    }

    #[test]
    fn an_answer_computed_across_a_flush_is_stored_stale() {
        let cache = QueryCache::default();
        let before = cache.generation();
        cache.invalidate();
        cache.put("k".into(), before, Arc::from("old"));
        assert!(cache.get("k").is_none());
    }
}
