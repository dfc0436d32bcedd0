//! The operator watermark: how far event time has certainly progressed over all partitions.

/// What one partition contributes to the operator watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMark {
    /// Max event time seen minus the allowed lateness (or the stored watermark after a restart);
    /// `None` before the partition has any.
    pub watermark_us: Option<i64>,
    /// No message for the idle timeout: the partition no longer holds the watermark back.
    pub idle: bool,
}

/// The new operator watermark: never below `previous`; otherwise the minimum over the
/// partitions that are not idle (a busy partition without a watermark yet holds everything
/// back), or, when every partition is idle, the maximum over them.
pub fn combine(
    previous: Option<i64>,
    marks: impl IntoIterator<Item = PartitionMark>,
) -> Option<i64> {
    let mut busy_min: Option<Option<i64>> = None;
    let mut idle_max: Option<i64> = None;
    for m in marks {
        if m.idle {
            idle_max = idle_max.max(m.watermark_us);
        } else {
            busy_min = Some(match busy_min {
                None => m.watermark_us,
                Some(cur) => option_min(cur, m.watermark_us),
            });
        }
    }
    let candidate = match busy_min {
        Some(min) => min,
        None => idle_max,
    };
    previous.max(candidate)
}

/// Minimum where `None` (no watermark yet) is the lowest.
fn option_min(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(w: Option<i64>) -> PartitionMark {
        PartitionMark {
            watermark_us: w,
            idle: false,
        }
    }
    fn idle(w: Option<i64>) -> PartitionMark {
        PartitionMark {
            watermark_us: w,
            idle: true,
        }
    }

    #[test]
    fn minimum_of_busy_partitions() {
        assert_eq!(
            combine(None, [busy(Some(10)), busy(Some(7)), idle(Some(3))]),
            Some(7)
        );
    }

    #[test]
    fn busy_partition_without_watermark_holds_back() {
        assert_eq!(combine(None, [busy(Some(10)), busy(None)]), None);
        assert_eq!(combine(Some(4), [busy(Some(10)), busy(None)]), Some(4));
    }

    #[test]
    fn all_idle_takes_the_maximum() {
        assert_eq!(
            combine(None, [idle(Some(10)), idle(Some(7)), idle(None)]),
            Some(10)
        );
    }

    #[test]
    fn never_goes_back() {
        assert_eq!(combine(Some(20), [busy(Some(10))]), Some(20));
        assert_eq!(combine(Some(20), []), Some(20));
        assert_eq!(combine(None, []), None);
    }
}
