//! The CI gate: `--assert 'p95_wait<=30s' --assert 'timeout_rate<1%'` against a report.
//!
//! Metrics: `p50_wait`, `p95_wait`, `p99_wait`, `max_wait` (a duration: `30s`, `500ms`, `2m`,
//! or seconds), `match_rate`, `timeout_rate`, `cancellation_rate`, `failure_rate` (a percentage
//! `1%` or a fraction `0.01`), `worst_latency_p95` (ms), and per numeric attribute
//! `spread_p95.ATTR` and `balance_p95.ATTR`. Operators: `<`, `<=`, `>`, `>=`, `==`.

use super::LabError;
use super::report::Report;

/// One parsed `--assert`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub text: String,
    metric: String,
    op: Op,
    value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
            Op::Eq => (actual - limit).abs() < 1e-9,
        }
    }
}

const METRICS: &str = "p50_wait, p95_wait, p99_wait, max_wait, match_rate, timeout_rate, cancellation_rate, \
                       failure_rate, worst_latency_p95, spread_p95.ATTR, balance_p95.ATTR";

impl std::str::FromStr for Threshold {
    type Err = LabError;

    fn from_str(text: &str) -> Result<Self, LabError> {
        let bad = |why: &str| LabError::Usage(format!("--assert {text:?}: {why}"));
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (at, op, len) = ["<=", ">=", "==", "<", ">"]
            .iter()
            .filter_map(|o| compact.find(o).map(|i| (i, *o, o.len())))
            .min_by_key(|(i, _, len)| (*i, std::cmp::Reverse(*len)))
            .ok_or_else(|| bad("expected METRIC<=VALUE (or <, >, >=, ==)"))?;
        let op = match op {
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "<" => Op::Lt,
            _ => Op::Gt,
        };
        let metric = compact[..at].to_owned();
        let raw = &compact[at + len..];
        let known = ["p50_wait", "p95_wait", "p99_wait", "max_wait", "match_rate", "timeout_rate"]
            .iter()
            .chain(&["cancellation_rate", "failure_rate", "worst_latency_p95"])
            .any(|m| *m == metric)
            || metric.starts_with("spread_p95.")
            || metric.starts_with("balance_p95.");
        if !known {
            return Err(bad(&format!("unknown metric {metric:?}; known: {METRICS}")));
        }
        let value = if metric.ends_with("_wait") {
            parse_seconds(raw).ok_or_else(|| bad("a wait is a duration like 30s, 500ms or 2m"))?
        } else if metric.ends_with("_rate") {
            match raw.strip_suffix('%') {
                Some(p) => p.parse::<f64>().ok().map(|p| p / 100.0),
                None => raw.parse().ok(),
            }
            .ok_or_else(|| bad("a rate is a percentage like 1% or a fraction like 0.01"))?
        } else {
            raw.trim_end_matches("ms").parse().map_err(|_| bad("expected a number"))?
        };
        Ok(Self { text: text.to_owned(), metric, op, value })
    }
}

fn parse_seconds(s: &str) -> Option<f64> {
    let (n, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    n.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v * scale)
}

/// A threshold's verdict on one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub threshold: String,
    pub actual: Option<f64>,
    pub passed: bool,
}

impl Threshold {
    fn actual(&self, r: &Report) -> Option<f64> {
        let q = &r.match_quality;
        Some(match self.metric.as_str() {
            "p50_wait" => r.time_to_match.p50,
            "p95_wait" => r.time_to_match.p95,
            "p99_wait" => r.time_to_match.p99,
            "max_wait" => r.time_to_match.max,
            "match_rate" => r.outcomes.match_rate,
            "timeout_rate" => r.outcomes.timeout_rate,
            "cancellation_rate" => r.outcomes.cancellation_rate,
            "failure_rate" => r.outcomes.failure_rate,
            "worst_latency_p95" => q.worst_latency_ms.as_ref()?.p95,
            m => {
                if let Some(a) = m.strip_prefix("spread_p95.") {
                    q.attribute_spread.get(a)?.p95
                } else {
                    q.team_balance.get(m.strip_prefix("balance_p95.")?)?.p95
                }
            }
        })
    }

    pub fn check(&self, report: &Report) -> Verdict {
        let actual = self.actual(report);
        Verdict { threshold: self.text.clone(), actual, passed: actual.is_some_and(|a| self.op.holds(a, self.value)) }
    }

    /// How a verdict reads: the actual value in the threshold's unit.
    pub fn describe(&self, v: &Verdict) -> String {
        let shown = match v.actual {
            None => "no value (no match formed, or no such attribute)".to_owned(),
            Some(a) if self.metric.ends_with("_wait") => format!("{a:.3}s"),
            Some(a) if self.metric.ends_with("_rate") => format!("{:.3}%", a * 100.0),
            Some(a) => format!("{a}"),
        };
        format!("{} {}: actual {shown}", if v.passed { "PASS" } else { "FAIL" }, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_their_units() {
        let t: Threshold = "p95_wait<=30s".parse().unwrap();
        assert_eq!((t.metric.as_str(), t.op, t.value), ("p95_wait", Op::Le, 30.0));
        let t: Threshold = "timeout_rate < 1%".parse().unwrap();
        assert_eq!((t.metric.as_str(), t.op, t.value), ("timeout_rate", Op::Lt, 0.01));
        let t: Threshold = "p99_wait<1500ms".parse().unwrap();
        assert_eq!(t.value, 1.5);
        let t: Threshold = "match_rate>=0.9".parse().unwrap();
        assert_eq!((t.op, t.value), (Op::Ge, 0.9));
    }

    #[test]
    fn a_bad_threshold_says_what_is_wrong() {
        let e = "p95_wiat<=30s".parse::<Threshold>().unwrap_err().to_string();
        assert!(e.contains("unknown metric") && e.contains("p95_wait"), "{e}");
        let e = "p95_wait<=soon".parse::<Threshold>().unwrap_err().to_string();
        assert!(e.contains("duration"), "{e}");
        let e = "p95_wait".parse::<Threshold>().unwrap_err().to_string();
        assert!(e.contains("expected METRIC"), "{e}");
    }
}
