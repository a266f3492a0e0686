//! Latency histograms (HDR, microsecond resolution, 3 significant digits), their percentile
//! summaries in milliseconds, and error tallies by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// How many error messages are kept as samples.
pub const MAX_ERROR_SAMPLES: usize = 10;

/// The largest value a histogram holds: one day, in microseconds.
const MAX_MICROS: u64 = 86_400_000_000;

/// One latency distribution.
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency")
            .field("n", &self.hist.len())
            .finish()
    }
}

impl Latency {
    /// An empty distribution of 1 µs to 1 day (longer values count as 1 day).
    pub fn new() -> Self {
        #[allow(clippy::expect_used)]
        let hist = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .expect("1 µs to 1 day at 3 significant digits are valid bounds");
        Latency { hist }
    }

    /// Records one duration (in microseconds; at least 1).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(us);
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The value at quantile `q` (0–1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        us_to_ms(self.hist.value_at_quantile(q.clamp(0.0, 1.0)) as f64)
    }

    /// p50/p90/p95/p99/max and the mean in milliseconds; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        if self.hist.is_empty() {
            return None;
        }
        Some(Summary {
            n: self.hist.len(),
            mean: round3(us_to_ms(self.hist.mean())),
            p50: round3(self.quantile_ms(0.50)),
            p90: round3(self.quantile_ms(0.90)),
            p95: round3(self.quantile_ms(0.95)),
            p99: round3(self.quantile_ms(0.99)),
            max: round3(us_to_ms(self.hist.max() as f64)),
        })
    }

    /// The same distribution with every value divided by `divisor` (e.g. run latency → per
    /// step). Values are re-recorded at their quantiles, so the result is approximate only in
    /// the HDR sense (3 significant digits).
    pub fn scaled_down(&self, divisor: u64) -> Latency {
        let divisor = divisor.max(1);
        let mut out = Latency::new();
        for v in self.hist.iter_recorded() {
            let value = (v.value_iterated_to() / divisor).clamp(1, MAX_MICROS);
            let _ = out.hist.record_n(value, v.count_at_value());
        }
        out
    }

    /// Points `(quantile, ms)` of the percentile curve, evenly spaced on the usual HDR axis
    /// (`log10(1 / (1 - q))`) from 0 to 99.9 %, then the maximum at q = 1.
    pub fn curve(&self, points: usize) -> Vec<(f64, f64)> {
        if self.is_empty() {
            return Vec::new();
        }
        let points = points.max(2);
        let mut out: Vec<(f64, f64)> = (0..points)
            .map(|i| {
                let x = 3.0 * i as f64 / (points - 1) as f64;
                let q = 1.0 - 10f64.powf(-x);
                (q, self.quantile_ms(q))
            })
            .collect();
        out.push((1.0, us_to_ms(self.hist.max() as f64)));
        out
    }
}

fn us_to_ms(us: f64) -> f64 {
    us / 1000.0
}

/// Rounds to 3 decimals (microseconds when the unit is ms).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounds to 2 decimals.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A latency summary in milliseconds, shaped like the peer harness's `summarize_ms`
/// (`n`, `mean`, `p50`, `p95`, `p99`, `max`) plus `p90`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub n: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// Errors counted by kind, with a few sample messages.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    by_kind: BTreeMap<String, u64>,
    samples: Vec<String>,
}

impl Errors {
    /// Counts one error of `kind`, keeping `message` as a sample while there is room.
    pub fn add(&mut self, kind: String, message: String) {
        *self.by_kind.entry(kind).or_insert(0) += 1;
        if self.samples.len() < MAX_ERROR_SAMPLES {
            self.samples.push(message);
        }
    }

    /// Adds every count and sample of `other`.
    pub fn merge(&mut self, other: &Errors) {
        for (k, n) in &other.by_kind {
            *self.by_kind.entry(k.clone()).or_insert(0) += n;
        }
        for s in &other.samples {
            if self.samples.len() < MAX_ERROR_SAMPLES {
                self.samples.push(s.clone());
            }
        }
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// Counts by kind, ordered by kind.
    pub fn by_kind(&self) -> &BTreeMap<String, u64> {
        &self.by_kind
    }

    /// The sample messages kept.
    pub fn samples(&self) -> &[String] {
        &self.samples
    }

    /// `kind×count` pairs on one line, `-` when there are none.
    pub fn one_line(&self) -> String {
        if self.by_kind.is_empty() {
            return "-".to_string();
        }
        self.by_kind
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn summary_of_1_to_100_ms() {
        let mut l = Latency::new();
        for i in 1..=100 {
            l.record(ms(i));
        }
        let s = l.summary().expect("values were recorded");
        assert_eq!(s.n, 100);
        // HDR with 3 significant digits: within 0.1 %.
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(s.p50, 50.0), "{s:?}");
        assert!(close(s.p90, 90.0), "{s:?}");
        assert!(close(s.p95, 95.0), "{s:?}");
        assert!(close(s.p99, 99.0), "{s:?}");
        assert!(close(s.max, 100.0), "{s:?}");
        assert!(close(s.mean, 50.5), "{s:?}");
    }

    #[test]
    fn empty_has_no_summary_and_no_curve() {
        let l = Latency::new();
        assert!(l.summary().is_none());
        assert!(l.curve(10).is_empty());
        assert!(l.is_empty());
    }

    #[test]
    fn zero_and_huge_durations_do_not_panic() {
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(86_400 * 365));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn scaled_down_divides_each_value() {
        let mut l = Latency::new();
        for _ in 0..10 {
            l.record(ms(100));
        }
        let s = l.scaled_down(10).summary().expect("values");
        assert_eq!(s.n, 10);
        assert!((s.p50 - 10.0).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn curve_rises_and_ends_at_the_max() {
        let mut l = Latency::new();
        for i in 1..=1000 {
            l.record(ms(i));
        }
        let c = l.curve(31);
        assert_eq!(c.len(), 32);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 <= w[1].0));
        assert_eq!(c[0].0, 0.0);
        let (q, v) = c[c.len() - 1];
        assert_eq!(q, 1.0);
        assert!((v - 1000.0).abs() < 1.0);
    }

    #[test]
    fn errors_count_by_kind_and_cap_samples() {
        let mut e = Errors::default();
        for i in 0..15 {
            e.add("http 409".into(), format!("conflict {i}"));
        }
        e.add("transport timeout".into(), "slow".into());
        let mut other = Errors::default();
        other.add("http 409".into(), "again".into());
        e.merge(&other);
        assert_eq!(e.total(), 17);
        assert_eq!(e.by_kind()["http 409"], 16);
        assert_eq!(e.samples().len(), MAX_ERROR_SAMPLES);
        assert_eq!(e.one_line(), "http 409×16, transport timeout×1");
        assert_eq!(Errors::default().one_line(), "-");
    }

    #[test]
    fn rounding() {
        assert_eq!(round3(1.23456), 1.235);
        assert_eq!(round2(1.235_1), 1.24);
    }
}
