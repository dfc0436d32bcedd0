//! The time range a chart request covers, and the tier and bucket size it is read at.
//!
//! Pure: the clock is a parameter (`now_s`), so every choice is a plain unit test. The tier
//! rule is what keeps a 7-day view fast: ranges up to [`BASE_MAX_SPAN_S`] read the base
//! windows, longer ones the '1h' tier (168 rows per series for a week instead of 10 080), and
//! ranges beyond [`HOUR_TIER_MAX_SPAN_S`] the '1d' tier.

use serde::Deserialize;

/// Longest range read from the base windows (12 h: 720 one-minute windows per series).
pub const BASE_MAX_SPAN_S: f64 = 12.0 * 3600.0;
/// Longest range read from the '1h' tier (14 days: 336 hourly rows per series).
pub const HOUR_TIER_MAX_SPAN_S: f64 = 14.0 * 86400.0;
/// Longest range accepted at all (the '1d' tier's default retention is a year or more; a
/// bound keeps a typo from scanning everything).
pub const MAX_SPAN_S: f64 = 400.0 * 86400.0;
/// Points per series a chart aims at: buckets are the smallest "nice" size giving at most
/// this many (a 1366 px wide chart shows ~2 px per point).
pub const TARGET_POINTS: f64 = 240.0;
/// Bucket sizes the step is rounded up to, in seconds: the x axis lands on round times.
const NICE_STEPS_S: &[f64] = &[
    1.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0,
    21600.0, 43200.0, 86400.0, 172800.0, 604800.0,
];

/// The presets of the range switch, with their length in seconds.
pub const PRESETS: &[(&str, f64)] = &[
    ("15m", 900.0),
    ("1h", 3600.0),
    ("6h", 21600.0),
    ("24h", 86400.0),
    ("7d", 604800.0),
];

/// Which stored rows a range reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The pipeline's own windows (`resolution` other than '1h' and '1d').
    Base,
    /// Rows the tiers job derived per hour.
    Hour,
    /// Rows the tiers job derived per day.
    Day,
}

impl Tier {
    /// The label the SQL compares with (`$3`): `'base'` or the tier's `resolution`.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Base => "base",
            Tier::Hour => "1h",
            Tier::Day => "1d",
        }
    }

    /// The tier's window length; the base windows' length is not known here (it is
    /// configurable), so buckets never go below 1 s for them.
    fn min_step_s(self) -> f64 {
        match self {
            Tier::Base => 1.0,
            Tier::Hour => 3600.0,
            Tier::Day => 86400.0,
        }
    }
}

/// The query string of every chart endpoint: a preset (`range=1h`) or a custom range
/// (`from` and `to`, Unix milliseconds).
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    /// One of [`PRESETS`]; `1h` when neither this nor `from`/`to` is given.
    pub range: Option<String>,
    /// Start of a custom range, Unix milliseconds (with `to`).
    pub from: Option<i64>,
    /// End of a custom range, Unix milliseconds (with `from`).
    pub to: Option<i64>,
}

/// A resolved range: bounds in Unix seconds, the tier and the bucket size.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeRange {
    /// Inclusive start (compared with `window_start`).
    pub from_s: f64,
    /// Exclusive end.
    pub to_s: f64,
    /// Rows read.
    pub tier: Tier,
    /// Bucket size in seconds: rows are grouped by `date_bin(step, window_start)`.
    pub step_s: f64,
    /// True for presets (they end now and the page refreshes them); false for custom ranges.
    pub live: bool,
    /// What identifies the range in a cache key: the preset's name, or `from-to`.
    pub key: String,
}

impl RangeQuery {
    /// Resolves the query at `now_s`; an error names the bad parameter.
    pub fn resolve(&self, now_s: f64) -> Result<TimeRange, String> {
        match (self.from, self.to, self.range.as_deref()) {
            (Some(from), Some(to), None) => {
                let (from_s, to_s) = (from as f64 / 1000.0, to as f64 / 1000.0);
                if to_s <= from_s {
                    return Err(format!("`to` ({to}) must be after `from` ({from})"));
                }
                if to_s - from_s > MAX_SPAN_S {
                    return Err(format!(
                        "a range may span at most {} days",
                        MAX_SPAN_S / 86400.0
                    ));
                }
                Ok(TimeRange::new(from_s, to_s, false, format!("{from}-{to}")))
            }
            (None, None, preset) => {
                let name = preset.unwrap_or("1h");
                let (name, span) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
                    let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
                    format!("range must be one of {names:?}, got {name:?}")
                })?;
                Ok(TimeRange::new(
                    now_s - span,
                    now_s,
                    true,
                    (*name).to_owned(),
                ))
            }
            _ => Err("give either `range`, or both `from` and `to` (Unix ms)".to_owned()),
        }
    }
}

impl TimeRange {
    fn new(from_s: f64, to_s: f64, live: bool, key: String) -> Self {
        let span = to_s - from_s;
        let tier = if span <= BASE_MAX_SPAN_S {
            Tier::Base
        } else if span <= HOUR_TIER_MAX_SPAN_S {
            Tier::Hour
        } else {
            Tier::Day
        };
        let wanted = (span / TARGET_POINTS).max(tier.min_step_s());
        let step_s = NICE_STEPS_S
            .iter()
            .copied()
            .find(|s| *s >= wanted)
            .unwrap_or(wanted.ceil());
        Self {
            from_s,
            to_s,
            tier,
            step_s,
            live,
            key,
        }
    }

    /// The range as the JSON the page reads back (`range` of every chart answer).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "from_ms": (self.from_s * 1000.0) as i64,
            "to_ms": (self.to_s * 1000.0) as i64,
            "tier": self.tier.label(),
            "step_s": self.step_s,
            "live": self.live,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_767_225_600.0;

    fn preset(name: &str) -> TimeRange {
        RangeQuery {
            range: Some(name.to_owned()),
            ..Default::default()
        }
        .resolve(NOW)
        .expect("valid preset")
    }

    #[test]
    fn short_presets_read_base_windows_and_long_ones_a_tier() {
        assert_eq!(preset("15m").tier, Tier::Base);
        assert_eq!(preset("1h").tier, Tier::Base);
        assert_eq!(preset("6h").tier, Tier::Base);
        assert_eq!(preset("24h").tier, Tier::Hour);
        assert_eq!(preset("7d").tier, Tier::Hour);
        let year = RangeQuery {
            from: Some(0),
            to: Some(300 * 86_400_000),
            range: None,
        }
        .resolve(NOW)
        .expect("valid");
        assert_eq!(year.tier, Tier::Day);
        assert_eq!(year.step_s, 172_800.0);
    }

    #[test]
    fn steps_are_nice_at_most_target_points_and_never_below_the_tier() {
        assert_eq!(preset("15m").step_s, 5.0);
        assert_eq!(preset("1h").step_s, 15.0);
        assert_eq!(preset("6h").step_s, 120.0);
        assert_eq!(preset("24h").step_s, 3600.0);
        assert_eq!(preset("7d").step_s, 3600.0);
        for (name, span) in PRESETS {
            let r = preset(name);
            assert!(span / r.step_s <= TARGET_POINTS, "{name}");
            assert_eq!(r.to_s, NOW);
            assert_eq!(r.from_s, NOW - span);
            assert!(r.live);
        }
    }

    #[test]
    fn no_parameters_mean_the_last_hour() {
        let r = RangeQuery::default().resolve(NOW).expect("default");
        assert_eq!((r.key.as_str(), r.tier, r.live), ("1h", Tier::Base, true));
    }

    #[test]
    fn custom_ranges_are_checked_and_not_live() {
        let q = |from, to, range: Option<&str>| RangeQuery {
            from,
            to,
            range: range.map(str::to_owned),
        };
        let r = q(Some(1_000_000), Some(1_000_000 + 1_800_000), None)
            .resolve(NOW)
            .expect("valid");
        assert_eq!((r.from_s, r.to_s, r.live), (1000.0, 2800.0, false));
        assert_eq!(r.key, "1000000-2800000");
        assert!(q(Some(2), Some(1), None).resolve(NOW).is_err());
        assert!(q(Some(1), None, None).resolve(NOW).is_err());
        assert!(q(Some(1), Some(2), Some("1h")).resolve(NOW).is_err());
        assert!(q(None, None, Some("2h")).resolve(NOW).is_err());
        assert!(
            q(Some(0), Some(500 * 86_400_000), None)
                .resolve(NOW)
                .is_err()
        );
    }
}
