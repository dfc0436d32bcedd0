//! What the generator yields: one Kafka message with its class.

use perfstream_events::Event;

use crate::scenario::TopicKind;

/// How a message relates to the pipeline's event-time rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// At its scheduled time.
    OnTime,
    /// Earlier than scheduled, within the allowed lateness.
    OutOfOrder,
    /// Its window is closed; within the correction horizon (a correction).
    Late,
    /// Beyond the correction horizon: expected in the late topic, not in the rollups.
    TooLate,
    /// Undecodable bytes: expected in the dead-letter topic.
    Malformed(MalformedKind),
}

impl Class {
    /// Name used in the truth file and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::OnTime => "on_time",
            Class::OutOfOrder => "out_of_order",
            Class::Late => "late",
            Class::TooLate => "too_late",
            Class::Malformed(_) => "malformed",
        }
    }
}

/// The ways a generated malformed message is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Zero bytes.
    Empty,
    /// First byte is not the Confluent magic byte 0.
    BadMagic,
    /// Magic byte 0 with schema id 999 (no such schema).
    UnknownSchema,
    /// A valid event cut short (1 to len-1 bytes kept).
    Truncated,
}

impl MalformedKind {
    pub const ALL: [MalformedKind; 4] = [
        Self::Empty,
        Self::BadMagic,
        Self::UnknownSchema,
        Self::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::BadMagic => "bad_magic",
            Self::UnknownSchema => "unknown_schema",
            Self::Truncated => "truncated",
        }
    }
}

/// One message to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the generated sequence, from 0.
    pub seq: u64,
    /// Position on the timeline (scheduled time), for pacing; not the event time.
    pub sched_us: i64,
    pub topic: TopicKind,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub class: Class,
    /// The decoded event; `None` for malformed messages.
    pub event: Option<Event>,
}
