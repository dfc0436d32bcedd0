//! Benchmark helpers for `scripts/bench-throughput.sh` (issue 13).
//!
//! The one binary, `raw-consume`, is the reference the pipeline is measured against: it reads
//! the input topics with exactly the consumer properties `perfstream run` uses
//! (`KafkaSettings::consumer_properties`) and the same one-message-per-`poll` loop, and does no
//! work beyond counting the messages and folding their bytes into a checksum (so the payload is
//! really read). Whatever the pipeline spends above this rate is decode, aggregation, flushes
//! and their coordination.
//!
//! The crate is not part of the product: nothing depends on it.
