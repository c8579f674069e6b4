//! The HTML report: one self-contained page (inline CSS and SVG, no script, no network) and
//! the side-by-side table of a comparison.

use std::fmt::Write as _;

use super::report::Report;

const COLORS: [&str; 3] = ["#2f6fb0", "#d9822b", "#b03a2e"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(r: f64) -> String {
    format!("{:.2}%", r * 100.0)
}

/// Key figures of two runs with their difference, as text.
pub fn side_by_side(a: &Report, b: &Report) -> String {
    let mut out = String::new();
    let rows = rows(a, b);
    let _ = writeln!(out, "{:<28} {:>16} {:>16} {:>12}", "", "rule set", "compare", "difference");
    for (name, x, y, unit) in rows {
        let fmt = |v: f64| if unit == "%" { pct(v) } else { format!("{v:.1}{unit}") };
        let diff = if unit == "%" { format!("{:+.2} pp", (y - x) * 100.0) } else { format!("{:+.1}{unit}", y - x) };
        let _ = writeln!(out, "{name:<28} {:>16} {:>16} {diff:>12}", fmt(x), fmt(y));
    }
    out
}

fn rows(a: &Report, b: &Report) -> Vec<(String, f64, f64, &'static str)> {
    let mut rows = vec![
        ("time to match p50".into(), a.time_to_match.p50, b.time_to_match.p50, "s"),
        ("time to match p95".into(), a.time_to_match.p95, b.time_to_match.p95, "s"),
        ("time to match p99".into(), a.time_to_match.p99, b.time_to_match.p99, "s"),
        ("match rate".into(), a.outcomes.match_rate, b.outcomes.match_rate, "%"),
        ("timeout rate".into(), a.outcomes.timeout_rate, b.outcomes.timeout_rate, "%"),
        ("cancellation rate".into(), a.outcomes.cancellation_rate, b.outcomes.cancellation_rate, "%"),
    ];
    for (attr, s) in &a.match_quality.attribute_spread {
        if let Some(t) = b.match_quality.attribute_spread.get(attr) {
            rows.push((format!("{attr} spread p95"), s.p95, t.p95, ""));
        }
    }
    for (attr, s) in &a.match_quality.team_balance {
        if let Some(t) = b.match_quality.team_balance.get(attr) {
            rows.push((format!("{attr} team gap p95"), s.p95, t.p95, ""));
        }
    }
    if let (Some(x), Some(y)) = (&a.match_quality.worst_latency_ms, &b.match_quality.worst_latency_ms) {
        rows.push(("worst latency p95 (ms)".into(), x.p95, y.p95, ""));
    }
    rows
}

/// Horizontal bars, one group per label with a bar per series.
fn bars(title: &str, series: &[&str], groups: &[(String, Vec<f64>)], unit: &str) -> String {
    let max = groups.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max).max(1e-9);
    let bar_h = 14;
    let group_h = bar_h * series.len() + 8;
    let (label_w, plot_w) = (230, 460);
    let height = 30 + group_h * groups.len() + 20;
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg role="img" aria-label="{}" width="{}" height="{height}" viewBox="0 0 {} {height}">"#,
        esc(title),
        esc(title),
        label_w + plot_w + 90,
        label_w + plot_w + 90
    );
    for (s, name) in series.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<rect x="{}" y="4" width="10" height="10" fill="{}"/><text x="{}" y="13">{}</text>"#,
            label_w + s * 150,
            COLORS[s % COLORS.len()],
            label_w + s * 150 + 14,
            esc(name)
        );
    }
    for (g, (label, values)) in groups.iter().enumerate() {
        let y0 = 26 + g * group_h;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6,
            y0 + group_h / 2,
            esc(label)
        );
        for (s, v) in values.iter().enumerate() {
            let w = (v / max * plot_w as f64).max(0.0);
            let y = y0 + s * bar_h;
            let _ = write!(
                svg,
                r#"<rect x="{label_w}" y="{y}" width="{w:.1}" height="{}" fill="{}"><title>{} {}: {v}{unit}</title></rect><text x="{:.1}" y="{}" class="v">{}{unit}</text>"#,
                bar_h - 2,
                COLORS[s % COLORS.len()],
                esc(label),
                esc(series[s]),
                label_w as f64 + w + 4.0,
                y + bar_h - 3,
                trim(*v)
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// Lines over time: one per series.
fn lines(title: &str, bucket_seconds: u64, series: &[(&str, &[u64])]) -> String {
    let (w, h, left, bottom) = (700.0, 220.0, 50.0, 30.0);
    let n = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(2);
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).max().unwrap_or(0).max(1) as f64;
    let x = |i: usize| left + (w - left - 10.0) * i as f64 / (n - 1) as f64;
    let y = |v: u64| (h - bottom) - (h - bottom - 10.0) * v as f64 / max;
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg role="img" aria-label="{}" width="{w}" height="{}" viewBox="0 0 {w} {}">"#,
        esc(title),
        esc(title),
        h + 20.0,
        h + 20.0
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{0}" x2="{w}" y2="{0}" stroke="gray"/><line x1="{left}" y1="10" x2="{left}" y2="{0}" stroke="gray"/><text x="{1}" y="20" text-anchor="end">{max}</text><text x="{1}" y="{0}" text-anchor="end">0</text><text x="{w}" y="{2}" text-anchor="end">{3} s</text><text x="{left}" y="{2}">0 s</text>"#,
        h - bottom,
        left - 4.0,
        h - 8.0,
        bucket_seconds * (n as u64 - 1)
    );
    for (s, (name, values)) in series.iter().enumerate() {
        let points: Vec<String> = values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"><title>{}</title></polyline><rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            points.join(" "),
            esc(name),
            left + 10.0 + s as f64 * 160.0,
            h + 4.0,
            left + 24.0 + s as f64 * 160.0,
            h + 13.0,
            esc(name),
            c = COLORS[s % COLORS.len()]
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn section(r: &Report) -> String {
    let mut out = String::new();
    let o = &r.outcomes;
    let _ = write!(
        out,
        "<h2>{}</h2><p>{} tickets, {} players, {:.0} simulated seconds, seed {}. Request timeout {} s, acceptance {}.</p>",
        esc(&r.rule_set),
        r.tickets,
        r.players,
        r.simulated_seconds,
        r.seed,
        r.configuration.request_timeout_seconds,
        if r.configuration.acceptance_required {
            format!(
                "required within {} s (players accept with probability {})",
                r.configuration.acceptance_timeout_seconds, r.configuration.acceptance_probability
            )
        } else {
            "not required".into()
        }
    );
    let _ = write!(
        out,
        r#"<table><tr><th>matched</th><th>timed out</th><th>cancelled</th><th>failed</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr><tr><td>{} ({})</td><td>{} ({})</td><td>{} ({})</td><td>{} ({})</td><td>{:.1} s</td><td>{:.1} s</td><td>{:.1} s</td><td>{:.1} s</td></tr></table>"#,
        o.matched,
        pct(o.match_rate),
        o.timed_out,
        pct(o.timeout_rate),
        o.cancelled,
        pct(o.cancellation_rate),
        o.failed,
        pct(o.failure_rate),
        r.time_to_match.p50,
        r.time_to_match.p95,
        r.time_to_match.p99,
        r.time_to_match.max
    );
    let t = &r.over_time;
    out.push_str(&lines(
        "Tickets arriving, matches formed and tickets timing out, per bucket",
        t.bucket_seconds,
        &[("arrivals", &t.arrivals), ("matches", &t.matches), ("timeouts", &t.timeouts)],
    ));
    let groups: Vec<(String, Vec<f64>)> = r
        .segments
        .iter()
        .map(|s| {
            (format!("{} {} ({})", s.dimension, s.name, s.tickets), vec![s.time_to_match.p50, s.time_to_match.p95])
        })
        .collect();
    out.push_str(&bars("Time to match by segment (seconds)", &["p50", "p95"], &groups, " s"));
    let groups: Vec<(String, Vec<f64>)> =
        r.segments.iter().map(|s| (format!("{} {}", s.dimension, s.name), vec![s.timeout_rate * 100.0])).collect();
    out.push_str(&bars("Timeout rate by segment (%)", &["timeouts"], &groups, "%"));
    let q = &r.match_quality;
    let mut groups: Vec<(String, Vec<f64>)> = Vec::new();
    for (a, s) in &q.attribute_spread {
        groups.push((format!("{a} spread within a match"), vec![s.p50, s.p95, s.max]));
    }
    for (a, s) in &q.team_balance {
        groups.push((format!("{a} gap between teams"), vec![s.p50, s.p95, s.max]));
    }
    if let Some(s) = &q.worst_latency_ms {
        groups.push(("worst latency (ms)".into(), vec![s.p50, s.p95, s.max]));
    }
    if !groups.is_empty() {
        out.push_str(&bars(&format!("Match quality over {} matches", q.matches), &["p50", "p95", "max"], &groups, ""));
    }
    let b = &r.blocking_rules;
    if b.examined > 0 {
        let mut groups: Vec<(String, Vec<f64>)> = b
            .rules
            .iter()
            .map(|(name, block)| {
                let steps: Vec<String> =
                    block.by_expansion_step.iter().map(|(s, n)| format!("step {s}: {n}")).collect();
                (format!("{name} ({})", steps.join(", ")), vec![block.tickets as f64])
            })
            .collect();
        groups.push(("no single rule (too few players)".into(), vec![b.no_single_rule as f64]));
        out.push_str(&bars(
            &format!("Rules that kept timed-out tickets from a match ({} examined)", b.examined),
            &["tickets"],
            &groups,
            "",
        ));
    }
    out
}

/// The whole report page.
pub fn page(primary: &Report, compare: Option<&Report>) -> String {
    let mut body = String::new();
    if let Some(other) = compare {
        body.push_str("<h2>Side by side</h2><table><tr><th></th><th>");
        let _ =
            write!(body, "{}</th><th>{}</th><th>difference</th></tr>", esc(&primary.rule_set), esc(&other.rule_set));
        for (name, x, y, unit) in rows(primary, other) {
            let fmt = |v: f64| if unit == "%" { pct(v) } else { format!("{v:.1}{unit}") };
            let diff = if unit == "%" { format!("{:+.2} pp", (y - x) * 100.0) } else { format!("{:+.1}{unit}", y - x) };
            let _ =
                write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{diff}</td></tr>", esc(&name), fmt(x), fmt(y));
        }
        body.push_str("</table>");
    }
    body.push_str(&section(primary));
    if let Some(other) = compare {
        body.push_str(&section(other));
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>matchgate rule-set lab report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 900px; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: bold; margin-bottom: .3em; }}
svg text {{ font-size: 11px; fill: #333; }} svg text.v {{ fill: #555; }}
</style></head>
<body><h1>Rule-set lab report</h1>
{body}
</body></html>
"#
    )
}
