//! HdrHistogram V2 compressed encoding ("HISTFAAA..." once base64'd), cheap enough for the bulk
//! insert.
//!
//! The format is the V2 serialization wrapped in a zlib stream. `Latency::hist_bytes` builds a
//! fresh deflate compressor per histogram, about 50 µs, mostly allocating and zeroing its
//! tables, which capped the fast path under 20 k rows/s. Here:
//! - a V2 serialization of at most [`STORED_MAX_RAW`] bytes (a window's histogram with a few dozen
//!   distinct buckets; V2 already run-length encodes empty buckets, so deflate
//!   gains little there) goes into a zlib stream of one *stored* block: no compressor at all;
//! - a larger one is deflated by one compressor reset between histograms, and is then
//!   byte-identical to `Latency::hist_bytes` (a test pins it).
//!
//! Both are valid zlib streams that every HdrHistogram implementation decodes, and the bytes
//! are a pure function of the histogram, so equal histograms store equal bytes (what the
//! tier tests compare).

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2Serializer};

/// The V2 compressed cookie (HdrHistogram's `V2CompressedEncodingCookieBase | 0x10`).
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;

/// Largest V2 serialization stored uncompressed (one zlib stored block).
pub(crate) const STORED_MAX_RAW: usize = 256;

/// Adler-32 of `data` (the zlib trailer).
fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the largest n with 255 n (n + 1) / 2 + (n + 1)(MOD - 1) < 2^32.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

pub(crate) struct HistEncoder {
    v2: V2Serializer,
    raw: Vec<u8>,
    /// Created on the first histogram that needs deflating.
    z: Option<ZlibEncoder<Vec<u8>>>,
}

fn header() -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v
}

impl HistEncoder {
    pub fn new() -> HistEncoder {
        HistEncoder {
            v2: V2Serializer::new(),
            raw: Vec::new(),
            z: None,
        }
    }

    /// The histogram in V2 compressed format (see the module doc).
    pub fn encode(&mut self, h: &Histogram<u64>) -> Vec<u8> {
        self.raw.clear();
        // Writing to a Vec cannot fail; serialization fails only on invalid histograms, which
        // `Histogram` cannot represent.
        self.v2
            .serialize(h, &mut self.raw)
            .expect("serializing a histogram to a Vec");
        if self.raw.len() <= STORED_MAX_RAW {
            let mut out = header();
            let len = self.raw.len() as u16;
            // zlib header: deflate, 32 KiB window, no dictionary, "fastest" level hint.
            out.extend_from_slice(&[0x78, 0x01]);
            // One final stored block: BFINAL=1, BTYPE=00, then LEN and its complement.
            out.push(0x01);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(&self.raw);
            out.extend_from_slice(&adler32(&self.raw).to_be_bytes());
            let zlen = (out.len() - 8) as u32;
            out[4..8].copy_from_slice(&zlen.to_be_bytes());
            return out;
        }
        let z = self
            .z
            .get_or_insert_with(|| ZlibEncoder::new(header(), Compression::default()));
        z.write_all(&self.raw)
            .and_then(|_| z.try_finish())
            .expect("compressing into a Vec");
        let mut out = z.reset(header()).expect("resetting a Vec writer");
        let len = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&len.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::Deserializer;
    use perfstream_window::Latency;

    fn latency(n: usize, seed: &mut u64) -> Latency {
        let mut l = Latency::new(perfstream_window::DEFAULT_SIGFIG);
        for _ in 0..n {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            l.record((*seed % 5_000_000_000) as i64);
        }
        l
    }

    #[test]
    fn small_histograms_are_stored_and_decode_to_the_same_histogram() {
        let mut enc = HistEncoder::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in [0usize, 1, 2, 10, 30] {
            let l = latency(n, &mut seed);
            let bytes = enc.encode(&l.hist.to_histogram());
            assert_eq!(bytes[8..10], [0x78, 0x01], "n = {n}: a stored zlib stream");
            let back: hdrhistogram::Histogram<u64> =
                Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            assert_eq!(back, l.hist.to_histogram(), "n = {n}");
            assert_eq!(Latency::decode_hist(&bytes).unwrap(), l.hist.to_histogram());
        }
    }

    #[test]
    fn large_histograms_are_deflated_byte_identical_to_the_window_crate() {
        let mut enc = HistEncoder::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for n in [1000usize, 20_000] {
            for _ in 0..3 {
                let l = latency(n, &mut seed);
                let bytes = enc.encode(&l.hist.to_histogram());
                assert_eq!(bytes, l.hist_bytes(), "n = {n}");
                assert_eq!(Latency::decode_hist(&bytes).unwrap(), l.hist.to_histogram());
            }
        }
    }

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let big = vec![0xffu8; 100_000];
        // Reference from zlib's definition, computed without the chunking shortcut.
        let (mut a, mut b) = (1u64, 0u64);
        for x in &big {
            a = (a + u64::from(*x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&big), ((b << 16) | a) as u32);
    }
}
