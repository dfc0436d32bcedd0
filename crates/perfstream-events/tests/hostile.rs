//! Hostile input: random and mutated bytes never panic, and never make a decoder allocate more
//! than a small multiple of the message's own size. A counting allocator measures each call.
//!
//! `PROPTEST_CASES` sets the number of cases (default 512 here, so CI stays fast; a dedicated
//! run uses millions: `PROPTEST_CASES=2000000 cargo nextest run -p perfstream-events --release
//! --test hostile`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use perfstream_events::encode::{encode_alert, encode_dead_letter};
use perfstream_events::*;
use proptest::prelude::*;

/// Counts, per thread, the largest single allocation and the bytes allocated in total.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the thread-local may be gone while a thread shuts down
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    let _ = TOTAL.try_with(|t| t.set(t.get() + size));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns (largest single allocation, total bytes allocated) on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

/// Decodes `bytes` every way there is (both paths, all three record families) and checks the
/// allocation bounds. The decoders are built outside the measurement.
fn decode_all(fast: &Decoder, slow: &Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    // apache-avro's values cost a few hundred bytes per field; 64 KiB covers any small message.
    let largest_bound = 4096 + 2 * bytes.len();
    let total_bound = 65_536 + 256 * bytes.len();
    for d in [fast, slow] {
        let (_, largest, total) = measure(|| d.decode(bytes, Some(T0)));
        prop_assert!(
            largest <= largest_bound,
            "largest allocation {largest} for {} bytes",
            bytes.len()
        );
        prop_assert!(
            total <= total_bound,
            "allocated {total} for {} bytes",
            bytes.len()
        );
        let (_, largest, _) = measure(|| d.decode_alert(bytes));
        prop_assert!(largest <= largest_bound);
        let (_, largest, _) = measure(|| d.decode_dead_letter(bytes));
        prop_assert!(largest <= largest_bound);
    }
    Ok(())
}

fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (1..=7u32).prop_map(|id| { let mut h = vec![0]; h.extend(id.to_be_bytes()); h }),
        1 => proptest::collection::vec(any::<u8>(), 0..6),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn random_bytes_never_panic(head in header(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let (fast, slow) = both_paths();
        let mut bytes = head;
        bytes.extend(body);
        decode_all(&fast, &slow, &bytes)?;
    }

    #[test]
    fn mutated_messages_never_panic(
        which in 0..5usize,
        e in event(),
        a in alert_event(),
        d in dead_letter_event(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (fast, slow) = both_paths();
        let mut bytes = Vec::new();
        match which {
            0 => encode_alert(&mut bytes, &a),
            1 => encode_dead_letter(&mut bytes, &d),
            _ => encode_event(&mut bytes, &e),
        }
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        decode_all(&fast, &slow, &bytes)?;
    }
}

#[test]
fn huge_length_prefixes_allocate_nothing_large() {
    let (fast, slow) = both_paths();
    // every string, bytes, map count position of every record family, with 2^60 and i64::MAX
    for id in 1..=7u32 {
        for prefix_len in 0..12 {
            for huge in [1i64 << 60, i64::MAX, i64::MIN] {
                // a valid-looking prefix of small varints, then the huge one
                let mut bytes = vec![0];
                bytes.extend(id.to_be_bytes());
                bytes.extend(std::iter::repeat_n(2u8, prefix_len)); // zigzag 1
                let mut z = ((huge << 1) ^ (huge >> 63)) as u64;
                while z >= 0x80 {
                    bytes.push(z as u8 | 0x80);
                    z >>= 7;
                }
                bytes.push(z as u8);
                decode_all(&fast, &slow, &bytes).unwrap();
            }
        }
    }
}

#[test]
fn the_counter_sees_decoder_allocations() {
    // Guards the tests above against a counter that measures nothing.
    let (_, slow) = both_paths();
    let bytes = framed(&Event::Resource(resource()));
    let (r, largest, total) = measure(|| slow.decode(&bytes, None));
    assert!(r.is_ok());
    assert!(
        largest > 0 && total > largest,
        "largest {largest}, total {total}"
    );
}
