//! The pure description of a generated run: everything that shapes the events, nothing about
//! where they go. Same scenario, same messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::EmitError;

/// Everything the generation core needs; built from [`crate::GenerateArgs::scenario`] or by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Random seed.
    pub seed: u64,
    /// Event time of the first regular event, microseconds since the epoch, UTC.
    pub start_us: i64,
    /// Regular events per second of event time (and of wall time when paced).
    pub rate: f64,
    /// Number of regular (query and request) events.
    pub count: u64,
    /// Number of services.
    pub services: u32,
    /// Instances per service.
    pub instances: u32,
    /// Endpoints per service.
    pub endpoints: u32,
    /// Query hashes per service.
    pub query_hashes: u32,
    /// Zipf exponent of endpoint and query-hash popularity (0 = uniform).
    pub zipf_exponent: f64,
    /// Share of regular events that are queries; the rest are requests.
    pub query_share: f64,
    /// Share of requests answering 5xx outside episodes.
    pub error_rate: f64,
    /// Window size the truth aggregates by; must match the pipeline's.
    pub window_us: i64,
    /// The pipeline's allowed lateness: out-of-order shifts stay below it.
    pub allowed_lateness_us: i64,
    /// The pipeline's correction horizon: late events stay within it, too-late ones beyond.
    pub correction_horizon_us: i64,
    /// Time between two resource samples of one instance.
    pub resource_interval_us: i64,
    /// Fraction of events moved back by less than the allowed lateness.
    pub out_of_order: f64,
    /// Fraction of events moved back beyond window + lateness, within the horizon.
    pub late: f64,
    /// Number of extra events beyond the correction horizon.
    pub too_late: u64,
    /// Probability of a malformed message before each regular event.
    pub malformed: f64,
    /// Episodes to inject.
    pub episodes: Vec<EpisodeKind>,
    /// Episode interval start, as a fraction of the event-time span.
    pub episodes_from: f64,
    /// Episode interval end, as a fraction of the event-time span.
    pub episodes_to: f64,
    /// Topic names.
    pub topics: Topics,
}

impl Scenario {
    /// A small scenario for tests: 1000 regular events at 1000/s from 2026-01-01T00:00:00Z.
    pub fn small(seed: u64) -> Scenario {
        Scenario {
            seed,
            start_us: 1_767_225_600_000_000,
            rate: 1000.0,
            count: 1000,
            services: 3,
            instances: 2,
            endpoints: 8,
            query_hashes: 40,
            zipf_exponent: 1.1,
            query_share: 0.6,
            error_rate: 0.002,
            window_us: 60_000_000,
            allowed_lateness_us: 5_000_000,
            correction_horizon_us: 3_600_000_000,
            resource_interval_us: 10_000_000,
            out_of_order: 0.05,
            late: 0.01,
            too_late: 5,
            malformed: 0.001,
            episodes: EpisodeKind::ALL.to_vec(),
            episodes_from: 0.25,
            episodes_to: 0.6,
            topics: Topics::default(),
        }
    }

    /// Checks every figure; errors name the `perfstream emit` argument. The generator assumes a
    /// valid scenario ([`crate::generate`] panics on an invalid one).
    pub fn validate(&self) -> Result<(), EmitError> {
        let bad = |arg: &str, reason: String| {
            Err(EmitError::InvalidArgs {
                arg: arg.into(),
                reason,
            })
        };
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return bad("--rate", format!("must be > 0, got {}", self.rate));
        }
        for (arg, v) in [
            ("--query-share", self.query_share),
            ("--error-rate", self.error_rate),
            ("--out-of-order", self.out_of_order),
            ("--late", self.late),
            ("--malformed", self.malformed),
            ("--episodes-from", self.episodes_from),
            ("--episodes-to", self.episodes_to),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(arg, format!("must be within 0..=1, got {v}"));
            }
        }
        if self.out_of_order + self.late > 1.0 {
            return bad("--late", "--late + --out-of-order must be <= 1".into());
        }
        if self.episodes_from >= self.episodes_to {
            return bad(
                "--episodes-to",
                "must be greater than --episodes-from".into(),
            );
        }
        for (arg, v) in [
            ("--services", self.services),
            ("--instances", self.instances),
            ("--endpoints", self.endpoints),
            ("--query-hashes", self.query_hashes),
        ] {
            if v == 0 {
                return bad(arg, "must be >= 1".into());
            }
        }
        if !(self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0) {
            return bad("--zipf-exponent", "must be finite and >= 0".into());
        }
        if self.window_us <= 0 {
            return bad("--window", "must be > 0".into());
        }
        if self.resource_interval_us <= 0 {
            return bad("--resource-interval", "must be > 0".into());
        }
        if self.allowed_lateness_us < 0 {
            return bad("--allowed-lateness", "must be >= 0".into());
        }
        let min_horizon = 2 * self.window_us + self.allowed_lateness_us + 2_000_000;
        if self.correction_horizon_us < min_horizon {
            return bad(
                "--correction-horizon",
                "must exceed 2 windows + lateness + 2 s, or late events cannot be placed".into(),
            );
        }
        Ok(())
    }

    /// Event-time span of the regular events, microseconds.
    pub fn span_us(&self) -> i64 {
        self.sched_offset_us(self.count)
    }

    /// Offset of regular event `i` from the start, microseconds.
    pub fn sched_offset_us(&self, i: u64) -> i64 {
        (i as f64 * 1e6 / self.rate).floor() as i64
    }

    pub fn topic(&self, kind: TopicKind) -> &str {
        match kind {
            TopicKind::Query => &self.topics.query,
            TopicKind::Request => &self.topics.request,
            TopicKind::Resource => &self.topics.resource,
        }
    }
}

/// Names of the three input topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    pub query: String,
    pub request: String,
    pub resource: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            query: "perf.query".into(),
            request: "perf.request".into(),
            resource: "perf.resource".into(),
        }
    }
}

/// Which input topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    Query,
    Request,
    Resource,
}

impl TopicKind {
    pub const ALL: [TopicKind; 3] = [Self::Query, Self::Request, Self::Resource];
}

/// The kinds of injected trouble, each aimed at alert rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeKind {
    /// One query hash runs 1.2 to 3 s (over the 1 s slow-query threshold).
    SlowQuery,
    /// One instance's pool at its maximum, with waiters and long waits.
    PoolSaturation,
    /// One instance's memory rises linearly from ~45 % to ~95 % of its limit.
    MemoryRamp,
    /// One instance's active connections rise from ~20 % to ~85 % of the pool while its
    /// request rate stays flat.
    ConnectionLeak,
    /// One instance's `query_cache` hit ratio drops from ~95 % to ~40 %.
    CacheDrop,
    /// One endpoint answers in 0.7 to 1.8 s (over the 500 ms p95 SLA).
    SlaBreach,
}

impl EpisodeKind {
    pub const ALL: [EpisodeKind; 6] = [
        Self::SlowQuery,
        Self::PoolSaturation,
        Self::MemoryRamp,
        Self::ConnectionLeak,
        Self::CacheDrop,
        Self::SlaBreach,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SlowQuery => "slow_query",
            Self::PoolSaturation => "pool_saturation",
            Self::MemoryRamp => "memory_ramp",
            Self::ConnectionLeak => "connection_leak",
            Self::CacheDrop => "cache_drop",
            Self::SlaBreach => "sla_breach",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The alert rule the episode is aimed at (its main expected alert).
    pub fn rule(self) -> &'static str {
        self.rules()[0]
    }

    /// Every alert rule the episode is expected to fire, main rule first.
    pub fn rules(self) -> &'static [&'static str] {
        match self {
            Self::SlowQuery => &["slow_query"],
            Self::PoolSaturation => &["pool_utilization", "pool_exhaustion"],
            Self::MemoryRamp => &["memory_leak", "memory_utilization"],
            Self::ConnectionLeak => &["connection_leak"],
            Self::CacheDrop => &["cache_hit_ratio"],
            Self::SlaBreach => &["endpoint_sla"],
        }
    }
}

/// One injected episode: what, on which key, and when (event time, `[start_us, end_us)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub kind: EpisodeKind,
    /// The main alert rule it is aimed at.
    pub rule: String,
    /// Every alert rule it is expected to fire.
    pub rules: Vec<String>,
    /// The key of the affected series: `service` plus the rule's key fields.
    pub labels: BTreeMap<String, String>,
    pub start_us: i64,
    pub end_us: i64,
}
