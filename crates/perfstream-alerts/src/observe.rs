//! Each rule's judgement of one key in one window: the figure, whether it breaches the fire
//! threshold, whether it is past the clear threshold. No state here: trend and baseline rules
//! get their history as arguments.

use crate::lifecycle::{Detail, Observation};
use crate::rows::{Latency, RequestRow, ResourceRow};
use crate::rule::Rule;
use crate::settings::Statistic;
use crate::stats::{self, Fit};

fn above(rule: &Rule, value: f64) -> Observation {
    Observation {
        breach: value > rule.threshold,
        clear: value <= rule.clear_threshold,
        no_data: false,
        value,
        detail: Detail::None,
    }
}

fn stat_us(l: &Latency, s: Statistic) -> i64 {
    match s {
        Statistic::P50 => l.p50_us,
        Statistic::P90 => l.p90_us,
        Statistic::P95 => l.p95_us,
        Statistic::P99 => l.p99_us,
        Statistic::P999 => l.p999_us,
        Statistic::Max => l.max_us,
        Statistic::Avg => l.mean_us,
    }
}

/// Latency rules (slow_query, endpoint_sla): the statistic in ms.
pub fn latency(rule: &Rule, l: &Latency) -> Observation {
    if (l.count as u64) < rule.min_count {
        return Observation::absent();
    }
    above(rule, stat_us(l, rule.statistic) as f64 / 1000.0)
}

/// Regression: the statistic over its baseline, as a factor.
pub fn regression(rule: &Rule, l: &Latency, baseline_us: Option<f64>) -> Observation {
    match baseline_us {
        Some(b) if b > 0.0 && (l.count as u64) >= rule.min_count => {
            let mut o = above(rule, stat_us(l, rule.statistic) as f64 / b);
            o.detail = Detail::Baseline {
                baseline: b / 1000.0,
            };
            o
        }
        _ => Observation::absent(),
    }
}

/// 5xx share of an endpoint's requests.
pub fn error_rate(rule: &Rule, r: &RequestRow) -> Observation {
    if (r.latency.count as u64) < rule.min_count || r.latency.count <= 0 {
        return Observation::absent();
    }
    above(rule, r.status_5xx as f64 / r.latency.count as f64)
}

/// A plain gauge over its threshold (pool and memory utilisation, CPU, GC share).
pub fn gauge(rule: &Rule, value: Option<f64>) -> Observation {
    match value {
        Some(v) if v.is_finite() => above(rule, v),
        _ => Observation::absent(),
    }
}

/// GC pause time over the sampled wall time.
pub fn gc_share(r: &ResourceRow) -> Option<f64> {
    match (r.gc_pause_us_sum, r.gc_interval_us_sum) {
        (Some(p), Some(i)) if i > 0 => Some(p as f64 / i as f64),
        _ => None,
    }
}

/// Pool exhaustion: waiters over the threshold while the pool is at its maximum; clears when
/// the waiters are gone (a pool that dips under 100 % with callers still queued is not healed).
pub fn pool_exhaustion(rule: &Rule, r: &ResourceRow) -> Observation {
    let (Some(waiters), Some(util_max)) = (r.pool_waiters_max, r.pool_utilization_max) else {
        return Observation::absent();
    };
    let full = util_max >= 1.0;
    let w = waiters as f64;
    Observation {
        breach: full && w > rule.threshold,
        clear: w <= rule.clear_threshold,
        no_data: false,
        value: w,
        detail: Detail::None,
    }
}

/// Cache hit ratio, `None` under `min_count` lookups.
pub fn cache_ratio(r: &ResourceRow) -> Option<(f64, u64)> {
    let lookups = r.cache_hits + r.cache_misses;
    (lookups > 0).then(|| (r.cache_hits as f64 / lookups as f64, lookups as u64))
}

/// Cache hit ratio under an absolute threshold, or a relative drop under its baseline (the
/// median of `history`, the previous windows' ratios).
pub fn cache_hit_ratio(rule: &Rule, ratio: Option<(f64, u64)>, history: &mut [f64]) -> Observation {
    let Some((v, lookups)) = ratio else {
        return Observation::absent();
    };
    if lookups < rule.min_count {
        return Observation::absent();
    }
    let baseline = if history.len() >= 3 {
        stats::median(history)
    } else {
        None
    };
    let rel_breach = baseline.is_some_and(|b| v < b * (1.0 - rule.relative_drop));
    let rel_clear = baseline.is_none_or(|b| v >= b * (1.0 - rule.clear_relative_drop));
    Observation {
        breach: v < rule.threshold || rel_breach,
        clear: v >= rule.clear_threshold && rel_clear,
        no_data: false,
        value: v,
        detail: baseline.map_or(Detail::None, |baseline| Detail::Baseline { baseline }),
    }
}

/// Enough points for a trend over `windows` windows.
fn fit_of(rule: &Rule, xs: &[f64], ys: &[f64]) -> Option<Fit> {
    if xs.len() < (rule.windows as usize / 2).max(3) {
        return None;
    }
    stats::fit(xs, ys)
}

fn trend_detail(f: &Fit) -> Detail {
    let time_to_limit_s = (f.slope > 0.0).then(|| ((1.0 - f.last) / f.slope).max(0.0));
    Detail::Trend {
        slope_per_min: f.slope * 60.0,
        r2: f.r2,
        tau: f.tau,
        level: f.last,
        time_to_limit_s,
    }
}

fn trend(rule: &Rule, f: &Fit, extra_fire: bool) -> Observation {
    Observation {
        breach: f.rise > rule.threshold
            && f.r2 >= rule.min_r2
            && f.tau >= rule.min_tau
            && extra_fire,
        clear: f.rise <= rule.clear_threshold || f.r2 < rule.clear_r2,
        no_data: false,
        value: f.rise,
        detail: trend_detail(f),
    }
}

/// Memory leak: memory utilisation (xs in seconds) rising steadily toward the limit. The time
/// to the limit is predicted from the newer half of the points: at the onset of a ramp the full
/// fit still averages in the flat part and would predict too late.
pub fn memory_leak(rule: &Rule, xs: &[f64], ys: &[f64]) -> Observation {
    let Some(f) = fit_of(rule, xs, ys) else {
        return Observation::absent();
    };
    let half = xs.len() - (xs.len() / 2).max(3);
    let recent = stats::fit(&xs[half..], &ys[half..]).unwrap_or(f);
    let ttl = (recent.slope > 0.0).then(|| ((1.0 - recent.last) / recent.slope).max(0.0));
    let soon = f.slope > 0.0 && ttl.is_some_and(|t| t <= rule.max_time_to_limit.as_secs_f64());
    let mut o = trend(rule, &f, soon);
    if let Detail::Trend {
        time_to_limit_s, ..
    } = &mut o.detail
    {
        *time_to_limit_s = ttl;
    }
    o
}

/// Connection leak: pool utilisation rising steadily while the service's request rate (`rate`,
/// requests per window at `rate_xs`) is flat or falling.
pub fn connection_leak(
    rule: &Rule,
    xs: &[f64],
    ys: &[f64],
    rate_xs: &[f64],
    rate: &[f64],
) -> Observation {
    let Some(f) = fit_of(rule, xs, ys) else {
        return Observation::absent();
    };
    let flat = match stats::fit(rate_xs, rate) {
        Some(r) => {
            let mean = rate.iter().sum::<f64>() / rate.len() as f64;
            mean <= 0.0 || r.rise / mean <= rule.max_rate_growth
        }
        // No requests seen: nothing explains the rise.
        None => true,
    };
    trend(rule, &f, flat)
}

/// Absent: `missing` complete windows since the series' last row (0: it has one in this
/// window). Fires at the rule's `windows`; clears as soon as the series reports again.
pub fn absent(r: &Rule, missing: u32) -> Observation {
    Observation {
        breach: missing >= r.windows,
        clear: missing == 0,
        no_data: false,
        // u32::MAX: forgotten by a restart, known only to be at least `windows`.
        value: f64::from(if missing == u32::MAX {
            r.windows
        } else {
            missing
        }),
        detail: Detail::None,
    }
}

/// One window of an endpoint, for the burn-rate rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnPoint {
    pub start_us: i64,
    pub requests: i64,
    /// 5xx responses.
    pub errors: i64,
    /// Requests over the endpoint's SLA threshold (from the histogram).
    pub slow: i64,
    /// False when the threshold fell inside a histogram bucket (its requests counted as slow).
    pub slow_exact: bool,
}

/// Which budget a burn-rate rule judges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// 5xx responses (`error_budget_burn`).
    Errors,
    /// Requests over the SLA threshold of `threshold_ms` (`latency_burn`).
    Latency { threshold_ms: f64 },
}

/// Burn rate of one endpoint: `hist` is its windows up to the current one, which ends at
/// `end_us`. A pair breaches when both its windows burn at least its factor (burn = bad share /
/// (1 - slo_target)); the value is the fastest pair's burn (the smaller of its two), the
/// threshold that pair's factor. Too few requests in a pair's long window (`min_count`) leave
/// the pair out; no pair judged is no data.
pub fn burn(
    r: &Rule,
    hist: Option<&std::collections::VecDeque<BurnPoint>>,
    end_us: i64,
    budget: Budget,
) -> Observation {
    let Some(hist) = hist else {
        return Observation::absent();
    };
    let allowed = 1.0 - r.slo_target;
    // (requests, bad, exact)
    let sum = |span: std::time::Duration| {
        let from = end_us - span.as_micros() as i64;
        hist.iter()
            .filter(|p| p.start_us >= from)
            .fold((0i64, 0i64, true), |(n, e, x), p| match budget {
                Budget::Errors => (n + p.requests, e + p.errors, x),
                Budget::Latency { .. } => (n + p.requests, e + p.slow, x && p.slow_exact),
            })
    };
    let mut best: Option<(f64, f64, bool, bool)> = None; // (burn, factor, breach, exact)
    for b in &r.burn_windows {
        let (nl, el, xl) = sum(b.long);
        let (ns, es, xs) = sum(b.short);
        if (nl.max(0) as u64) < r.min_count.max(1) || ns <= 0 {
            continue;
        }
        let rate = (el as f64 / nl as f64 / allowed).min(es as f64 / ns as f64 / allowed);
        let breach = rate >= b.factor;
        // Prefer a breaching pair, then the one closest to its factor.
        let better = match best {
            None => true,
            Some((br, bf, bb, _)) => (breach, rate / b.factor) > (bb, br / bf),
        };
        if better {
            best = Some((rate, b.factor, breach, xl && xs));
        }
    }
    match best {
        Some((rate, factor, breach, exact)) => Observation {
            breach,
            clear: !breach,
            no_data: false,
            value: rate,
            detail: Detail::Burn {
                factor,
                exact,
                threshold_ms: match budget {
                    Budget::Errors => None,
                    Budget::Latency { threshold_ms } => Some(threshold_ms),
                },
            },
        },
        None => Observation::absent(),
    }
}
