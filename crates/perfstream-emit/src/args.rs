//! `perfstream emit` command-line arguments and their translation into a pure [`Scenario`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::error::EmitError;
use crate::scenario::{EpisodeKind, Scenario, Topics};

/// Arguments of the load generator (`perfstream emit`).
///
/// Every figure that shapes the events is part of the scenario; the same scenario (same seed
/// and `--start-time`) always gives the same messages, byte for byte.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "localhost:9092")]
    pub bootstrap: String,

    /// Regular events (queries and requests) per second, both as the send pace and as the
    /// spacing of event times. Resource samples and malformed messages come on top.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// How much event time to generate (e.g. `10s`, `5m`); `count = rate * duration`.
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,

    /// Number of regular events to generate (default: 10 s worth at `--rate`).
    #[arg(long)]
    pub count: Option<u64>,

    /// Number of services.
    #[arg(long, default_value_t = 3)]
    pub services: u32,

    /// Instances per service.
    #[arg(long, default_value_t = 2)]
    pub instances: u32,

    /// Endpoints per service (request route templates).
    #[arg(long, default_value_t = 8)]
    pub endpoints: u32,

    /// Distinct query hashes per service.
    #[arg(long, default_value_t = 40)]
    pub query_hashes: u32,

    /// Zipf exponent of endpoint and query-hash popularity.
    #[arg(long, default_value_t = 1.1)]
    pub zipf_exponent: f64,

    /// Share of regular events that are queries (the rest are requests).
    #[arg(long, default_value_t = 0.6)]
    pub query_share: f64,

    /// Share of requests that answer 5xx outside episodes.
    #[arg(long, default_value_t = 0.002)]
    pub error_rate: f64,

    /// Tumbling window size; must match the pipeline's.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub window: Duration,

    /// Allowed lateness; must match the pipeline's.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub allowed_lateness: Duration,

    /// Correction horizon; must match the pipeline's.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub correction_horizon: Duration,

    /// Interval between two resource samples of one instance.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub resource_interval: Duration,

    /// Fraction of events moved back in event time by less than the allowed lateness.
    #[arg(long, default_value_t = 0.05)]
    pub out_of_order: f64,

    /// Fraction of events older than window + lateness (but within the correction horizon).
    #[arg(long, default_value_t = 0.01)]
    pub late: f64,

    /// Number of events beyond the correction horizon (expected in perf.late).
    #[arg(long, default_value_t = 5)]
    pub too_late: u64,

    /// Fraction of extra malformed messages (undecodable bytes on the input topics).
    #[arg(long, default_value_t = 0.001)]
    pub malformed: f64,

    /// Episodes to inject: `all`, `none`, or a comma list of slow_query, pool_saturation,
    /// memory_ramp, connection_leak, cache_drop, sla_breach.
    #[arg(long, default_value = "all")]
    pub episodes: String,

    /// Where episodes start, as a fraction of the generated event-time span.
    #[arg(long, default_value_t = 0.25)]
    pub episodes_from: f64,

    /// Where episodes end, as a fraction of the generated event-time span.
    #[arg(long, default_value_t = 0.6)]
    pub episodes_to: f64,

    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Event-time origin: RFC 3339 (`2026-01-01T00:00:00Z`) or microseconds since the epoch.
    /// Default: now.
    #[arg(long, value_parser = parse_start_time)]
    pub start_time: Option<i64>,

    /// Send as fast as the broker takes it instead of pacing at `--rate` (event times still
    /// follow the rate, so they run ahead of the wall clock, and of the Kafka timestamps, by up
    /// to the whole span: keep that under the pipeline's `window.max_future_skew`, 1 h by
    /// default, or give a `--start-time` in the past).
    #[arg(long)]
    pub unpaced: bool,

    /// Write the truth file (exact expected aggregates of the acknowledged events) here.
    #[arg(long)]
    pub truth: Option<PathBuf>,

    /// Interval between progress lines on long runs.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub progress_interval: Duration,

    /// How long to wait for outstanding acknowledgements at the end.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub flush_timeout: Duration,

    /// Query topic.
    #[arg(long, default_value = "perf.query")]
    pub topic_query: String,

    /// Request topic.
    #[arg(long, default_value = "perf.request")]
    pub topic_request: String,

    /// Resource topic.
    #[arg(long, default_value = "perf.resource")]
    pub topic_resource: String,

    /// librdkafka producer property `key=value`, repeatable (passed through unchanged).
    #[arg(short = 'X', long = "producer-property", value_parser = parse_key_value)]
    pub producer_properties: Vec<(String, String)>,
}

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    args: GenerateArgs,
}

impl GenerateArgs {
    /// Parses arguments as `perfstream emit` would (without the program name), for tests and
    /// in-process callers: `GenerateArgs::from_args(["--count", "1000", "--seed", "7"])`.
    pub fn from_args<I, S>(args: I) -> Result<Self, EmitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("emit"))
            .chain(args.into_iter().map(Into::into));
        Wrapper::try_parse_from(argv)
            .map(|w| w.args)
            .map_err(|e| EmitError::InvalidArgs {
                arg: "argv".into(),
                reason: e.to_string(),
            })
    }

    /// The pure scenario these arguments describe; `now_us` is the start time when
    /// `--start-time` is not given.
    pub fn scenario(&self, now_us: i64) -> Result<Scenario, EmitError> {
        let count = match (self.count, self.duration) {
            (Some(c), _) => c,
            (None, Some(d)) => (d.as_secs_f64() * self.rate).round() as u64,
            (None, None) => (10.0 * self.rate).round() as u64,
        };
        let us = |d: Duration| d.as_micros().min(i64::MAX as u128) as i64;
        let scenario = Scenario {
            seed: self.seed,
            start_us: self.start_time.unwrap_or(now_us),
            rate: self.rate,
            count,
            services: self.services,
            instances: self.instances,
            endpoints: self.endpoints,
            query_hashes: self.query_hashes,
            zipf_exponent: self.zipf_exponent,
            query_share: self.query_share,
            error_rate: self.error_rate,
            window_us: us(self.window),
            allowed_lateness_us: us(self.allowed_lateness),
            correction_horizon_us: us(self.correction_horizon),
            resource_interval_us: us(self.resource_interval),
            out_of_order: self.out_of_order,
            late: self.late,
            too_late: self.too_late,
            malformed: self.malformed,
            episodes: parse_episodes(&self.episodes)?,
            episodes_from: self.episodes_from,
            episodes_to: self.episodes_to,
            topics: Topics {
                query: self.topic_query.clone(),
                request: self.topic_request.clone(),
                resource: self.topic_resource.clone(),
            },
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// The librdkafka properties given with `-X`.
    pub fn producer_properties(&self) -> BTreeMap<String, String> {
        self.producer_properties.iter().cloned().collect()
    }
}

fn parse_episodes(s: &str) -> Result<Vec<EpisodeKind>, EmitError> {
    match s.trim() {
        "all" => return Ok(EpisodeKind::ALL.to_vec()),
        "none" | "" => return Ok(Vec::new()),
        _ => {}
    }
    let mut out = Vec::new();
    for name in s.split(',').map(str::trim) {
        let kind = EpisodeKind::parse(name).ok_or_else(|| EmitError::InvalidArgs {
            arg: "--episodes".into(),
            reason: format!("unknown episode {name:?}"),
        })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

/// Parses `250ms`, `10s`, `5m`, `1h`, `2d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms, 5m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        u => return Err(format!("invalid duration unit {u:?} in {s:?}")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses an RFC 3339 time or an integer number of microseconds since the epoch.
pub fn parse_start_time(s: &str) -> Result<i64, String> {
    if let Ok(us) = s.trim().parse::<i64>() {
        return Ok(us);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("invalid start time {s:?} ({e}): expected RFC 3339 or microseconds"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10x").is_err());
    }

    #[test]
    fn start_time_accepts_rfc3339_and_micros() {
        assert_eq!(
            parse_start_time("2026-01-01T00:00:00Z"),
            Ok(1_767_225_600_000_000)
        );
        assert_eq!(parse_start_time("42"), Ok(42));
        assert!(parse_start_time("yesterday").is_err());
    }

    #[test]
    fn duration_sets_count_from_rate() {
        let a = GenerateArgs::from_args(["--rate", "50000", "--duration", "10s"]).unwrap();
        assert_eq!(a.scenario(0).unwrap().count, 500_000);
        let a = GenerateArgs::from_args(["--count", "7"]).unwrap();
        assert_eq!(a.scenario(0).unwrap().count, 7);
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let a = GenerateArgs::from_args(["--late", "1.5"]).unwrap();
        let err = a.scenario(0).unwrap_err().to_string();
        assert!(err.contains("--late"), "{err}");
        let a = GenerateArgs::from_args(["--episodes", "slow_query,nonsense"]).unwrap();
        let err = a.scenario(0).unwrap_err().to_string();
        assert!(err.contains("nonsense"), "{err}");
        assert!(GenerateArgs::from_args(["--count", "1", "--duration", "1s"]).is_err());
    }
}
