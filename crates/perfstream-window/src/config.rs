//! [`WindowConfig`]: the engine's settings, embedded by the binary's figment config.

use std::time::Duration;

use serde::Deserialize;

use crate::hdr::MAX_SIGFIG;

/// Settings of the window [`crate::Engine`].
///
/// Durations are humantime strings (`"60s"`, `"500ms"`, `"1h"`); the engine works in whole
/// microseconds, so sub-microsecond parts are rejected. Every field has a default, so an empty
/// table is a valid config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Size of the tumbling event-time windows, aligned to multiples of it since the Unix epoch
    /// (so 60 s windows start on UTC minutes). Default `60s`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How far behind the newest event time of a partition an event may be and still count as
    /// on time: a partition's watermark is its max event time minus this. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition that received no message for this long (judged by the `now_us` passed to
    /// `advance` against the arrival times passed to `record`) stops holding the watermark back,
    /// so one quiet partition cannot stall every window. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Late events whose window closed less than this before the watermark become corrections
    /// merged into the stored row; older ones are handed back as too late. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub correction_horizon: Duration,
    /// Events more than this ahead of their arrival time are refused (`RecordOutcome::Future`),
    /// so one bad producer clock cannot push the watermark years ahead and make every later
    /// event late. The codec has its own skew check; this is the engine's guard. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Significant digits of the latency histograms, `1..=3`. Default `2` (at most 1 % error).
    pub significant_digits: u8,
    /// Whether the query key includes the event's tenant id. When off (or the event has none)
    /// the tenant is stored as the empty string. Default `false`.
    pub tenant_dimension: bool,
    /// Cap on live series (every partition, open window, pending correction and kind counted).
    /// Past it, events of new keys aggregate into the one global overflow series of their kind
    /// (service and key fields [`crate::OVERFLOW_KEY`]); totals stay exact. Default `1_000_000`.
    pub max_series: usize,
    /// Cap on the live series of one service. Past it, events of the service's new keys
    /// aggregate into its own overflow series. Default `100_000`.
    pub max_series_per_service: usize,
    /// Memory budget of the series held, in MiB (keys, figures, histogram buckets, query texts;
    /// see `perfstream_window::budget`). New keys go to the global overflow series before it is
    /// exceeded. Default `1024`.
    pub max_memory_mb: usize,
    /// Longest query text kept per series, in bytes: longer texts are cut on a character
    /// boundary before they are stored (`query_catalog.query_text`). Default `2048`.
    pub max_query_text_bytes: usize,
    /// Samples kept per window and key of queries and requests: the slowest events with their
    /// raw fields and source offset (`query_samples`, `request_samples`). `0..=64`; 0 keeps
    /// none. Default `5`.
    pub samples_per_series: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            window: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            correction_horizon: Duration::from_secs(3600),
            max_future_skew: Duration::from_secs(3600),
            significant_digits: crate::rollup::DEFAULT_SIGFIG,
            tenant_dimension: false,
            max_series: 1_000_000,
            max_series_per_service: 100_000,
            max_memory_mb: 1024,
            max_query_text_bytes: 2048,
            samples_per_series: 5,
        }
    }
}

/// Why a [`WindowConfig`] was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("window.{field} must be a whole number of microseconds, got {value:?}")]
    SubMicrosecond {
        field: &'static str,
        value: Duration,
    },
    #[error("window.{field} is too large: {value:?}")]
    TooLarge {
        field: &'static str,
        value: Duration,
    },
    #[error("window.window must be positive")]
    ZeroWindow,
    #[error("window.significant_digits must be in 1..={MAX_SIGFIG}, got {0}")]
    SignificantDigits(u8),
    #[error("window.max_series must be at least 1")]
    ZeroMaxSeries,
    #[error("window.{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error("window.samples_per_series must be at most {max}, got {got}")]
    TooManySamples { got: usize, max: usize },
}

/// The config in microseconds, as the engine uses it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Micros {
    pub window: i64,
    pub allowed_lateness: i64,
    pub idle_timeout: i64,
    pub correction_horizon: i64,
    pub max_future_skew: i64,
}

/// Durations up to ~292 years convert; we refuse more so sums of two never overflow `i64`.
const MAX_US: u128 = (i64::MAX / 4) as u128;

fn micros(field: &'static str, value: Duration) -> Result<i64, ConfigError> {
    if !value.subsec_nanos().is_multiple_of(1000) {
        return Err(ConfigError::SubMicrosecond { field, value });
    }
    let us = value.as_micros();
    if us > MAX_US {
        return Err(ConfigError::TooLarge { field, value });
    }
    Ok(us as i64)
}

impl WindowConfig {
    pub(crate) fn validate(&self) -> Result<Micros, ConfigError> {
        let m = Micros {
            window: micros("window", self.window)?,
            allowed_lateness: micros("allowed_lateness", self.allowed_lateness)?,
            idle_timeout: micros("idle_timeout", self.idle_timeout)?,
            correction_horizon: micros("correction_horizon", self.correction_horizon)?,
            max_future_skew: micros("max_future_skew", self.max_future_skew)?,
        };
        if m.window == 0 {
            return Err(ConfigError::ZeroWindow);
        }
        if !(1..=MAX_SIGFIG).contains(&self.significant_digits) {
            return Err(ConfigError::SignificantDigits(self.significant_digits));
        }
        if self.max_series == 0 {
            return Err(ConfigError::ZeroMaxSeries);
        }
        for (field, v) in [
            ("max_series_per_service", self.max_series_per_service),
            ("max_memory_mb", self.max_memory_mb),
            ("max_query_text_bytes", self.max_query_text_bytes),
        ] {
            if v == 0 {
                return Err(ConfigError::ZeroLimit(field));
            }
        }
        if self.samples_per_series > crate::MAX_SAMPLES {
            return Err(ConfigError::TooManySamples {
                got: self.samples_per_series,
                max: crate::MAX_SAMPLES,
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<WindowConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_table_gives_documented_defaults() {
        let c = parse("{}").unwrap();
        assert_eq!(c, WindowConfig::default());
        let m = c.validate().unwrap();
        assert_eq!(m.window, 60_000_000);
        assert_eq!(m.allowed_lateness, 5_000_000);
        assert_eq!(m.idle_timeout, 30_000_000);
        assert_eq!(m.correction_horizon, 3_600_000_000);
        assert_eq!(c.significant_digits, 2);
        assert!(!c.tenant_dimension);
    }

    #[test]
    fn humantime_durations() {
        let c =
            parse(r#"{"window": "10s", "allowed_lateness": "250ms", "tenant_dimension": true}"#)
                .unwrap();
        let m = c.validate().unwrap();
        assert_eq!(m.window, 10_000_000);
        assert_eq!(m.allowed_lateness, 250_000);
        assert!(c.tenant_dimension);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse(r#"{"window_us": 10}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = |c: WindowConfig| c.validate().unwrap_err();
        let d = WindowConfig::default;
        assert_eq!(
            bad(WindowConfig {
                window: Duration::ZERO,
                ..d()
            }),
            ConfigError::ZeroWindow
        );
        assert_eq!(
            bad(WindowConfig {
                significant_digits: 4,
                ..d()
            }),
            ConfigError::SignificantDigits(4)
        );
        assert_eq!(
            bad(WindowConfig {
                significant_digits: 0,
                ..d()
            }),
            ConfigError::SignificantDigits(0)
        );
        assert_eq!(
            bad(WindowConfig {
                max_series: 0,
                ..d()
            }),
            ConfigError::ZeroMaxSeries
        );
        assert!(matches!(
            bad(WindowConfig {
                window: Duration::from_nanos(1500),
                ..d()
            }),
            ConfigError::SubMicrosecond {
                field: "window",
                ..
            }
        ));
        assert!(matches!(
            bad(WindowConfig {
                idle_timeout: Duration::from_secs(u64::MAX),
                ..d()
            }),
            ConfigError::TooLarge {
                field: "idle_timeout",
                ..
            }
        ));
    }
}
