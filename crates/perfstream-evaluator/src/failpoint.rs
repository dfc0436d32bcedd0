//! Crash points for fault tests, compiled in only with the `failpoints` feature (the same
//! convention as the pipeline's): `PERFSTREAM_FAILPOINT=<name>:<n>` aborts the process the n-th
//! time `<name>` is hit. Names: `alerts_before_commit`, `alerts_after_commit`,
//! `alerts_after_publish` (acknowledged by the broker, not yet marked sent).

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SPEC: Mutex<Option<Option<(String, u64)>>> = Mutex::new(None);
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Ok(mut spec) = SPEC.lock() else { return };
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
