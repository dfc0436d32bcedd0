//! Small statistics for the trend and baseline rules.

/// A least-squares line through `(x, y)` points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// dy/dx.
    pub slope: f64,
    /// The line's value at the last x.
    pub last: f64,
    /// Coefficient of determination, 0..1 (0 for a flat series).
    pub r2: f64,
    /// Kendall's tau-a between x and y, -1..1: 1 for a strictly rising series; a step scores
    /// far lower than a ramp of the same rise.
    pub tau: f64,
    /// `slope * (last x - first x)`: the rise the line explains over the points.
    pub rise: f64,
}

/// Fits a line; `None` with fewer than 3 points. `xs` must be ascending.
pub fn fit(xs: &[f64], ys: &[f64]) -> Option<Fit> {
    let n = xs.len();
    if n < 3 || ys.len() != n {
        return None;
    }
    let nf = n as f64;
    let mx = xs.iter().sum::<f64>() / nf;
    let my = ys.iter().sum::<f64>() / nf;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        let (dx, dy) = (x - mx, y - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        (sxy * sxy) / (sxx * syy)
    } else {
        0.0
    };
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            let d = (ys[j] - ys[i]) * (xs[j] - xs[i]);
            s += if d > 0.0 {
                1
            } else if d < 0.0 {
                -1
            } else {
                0
            };
        }
    }
    let pairs = (n * (n - 1) / 2) as f64;
    let last_x = xs[n - 1];
    Some(Fit {
        slope,
        last: my + slope * (last_x - mx),
        r2,
        tau: s as f64 / pairs,
        rise: slope * (last_x - xs[0]),
    })
}

/// Median of `v` (reordered); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_fits_exactly() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let ys = [1.0, 3.0, 5.0, 7.0];
        let f = fit(&xs, &ys).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-12);
        assert!((f.last - 7.0).abs() < 1e-12);
        assert!((f.r2 - 1.0).abs() < 1e-12);
        assert_eq!(f.tau, 1.0);
        assert!((f.rise - 6.0).abs() < 1e-12);
    }

    #[test]
    fn a_step_has_lower_tau_than_a_ramp() {
        let xs: Vec<f64> = (0..10).map(f64::from).collect();
        let step: Vec<f64> = (0..10).map(|i| if i < 5 { 0.3 } else { 1.0 }).collect();
        let f = fit(&xs, &step).unwrap();
        assert!(f.tau < 0.6, "{f:?}");
        assert!(f.r2 > 0.7, "{f:?}");
    }

    #[test]
    fn flat_and_short_series() {
        assert!(fit(&[0.0, 1.0], &[1.0, 2.0]).is_none());
        let f = fit(&[0.0, 1.0, 2.0], &[5.0, 5.0, 5.0]).unwrap();
        assert_eq!((f.slope, f.r2, f.tau), (0.0, 0.0, 0.0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
