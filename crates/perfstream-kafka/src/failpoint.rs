//! Crash points for the fault tests, compiled in only with the `failpoints` feature.
//!
//! `PERFSTREAM_FAILPOINT=<name>:<n>` aborts the process the n-th time the point `<name>` is hit
//! (n defaults to 1). Names: `after_dlq_ack`, `before_commit`, `after_commit`, `after_replay_commit` (a commit
//! of a flush planned while a partition replaying below its claimed applied mark held windows
//! the operator watermark had closed: the flush that once stored a weakened mark),
//! `during_revoke`.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SPEC: Mutex<Option<Option<(String, u64)>>> = Mutex::new(None);
    static HITS: AtomicU64 = AtomicU64::new(0);
    let mut spec = SPEC.lock().expect("failpoint lock");
    let spec = spec.get_or_insert_with(|| {
        std::env::var("PERFSTREAM_FAILPOINT")
            .ok()
            .map(|v| match v.split_once(':') {
                Some((n, c)) => (n.to_string(), c.parse().unwrap_or(1)),
                None => (v, 1),
            })
    });
    if let Some((point, n)) = spec
        && point == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= *n
    {
        eprintln!("failpoint {name} hit: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
