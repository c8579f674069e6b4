//! `matchgate bench simulate`: how fast the lab simulates. One simulated hour at 100 tickets a
//! second (360,000 tickets) of a 5v5 skill + latency rule set, timed on the wall clock.

use std::time::{Duration, Instant};

use matchgate_flexmatch::bench_support::skill_latency_rule_set;

use super::LabError;
use super::population::PopulationSpec;
use super::report::Report;
use super::simulator::{self, AcceptanceModel, SimulationSetup};
use crate::gamelift::{FlexMatchMode, MatchmakingConfiguration};

/// Skill around 1500 and four regions, as `matchgate bench flexmatch`'s pools.
fn population(seconds: u64, per_second: f64) -> String {
    format!(
        r#"{{
  "durationSeconds": {seconds},
  "arrivals": {{ "type": "constant", "ticketsPerSecond": {per_second} }},
  "attributes": {{ "skill": {{ "type": "normal", "mean": 1500, "stddev": 250 }} }},
  "partySizes": {{ "1": 0.9, "2": 0.05, "3": 0.03, "4": 0.02 }},
  "regions": {{
    "us-east-1": {{ "share": 0.4, "latencyMs": {{ "type": "uniform", "min": 20, "max": 80 }} }},
    "us-west-2": {{ "share": 0.2, "latencyMs": {{ "type": "uniform", "min": 20, "max": 80 }} }},
    "eu-west-1": {{ "share": 0.3, "latencyMs": {{ "type": "uniform", "min": 20, "max": 80 }} }},
    "ap-northeast-1": {{ "share": 0.1, "latencyMs": {{ "type": "uniform", "min": 20, "max": 80 }} }}
  }},
  "remoteLatencyMs": {{ "type": "uniform", "min": 90, "max": 290 }}
}}"#
    )
}

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (Linux); on a shared machine
/// it says more than the wall clock, which also counts waiting for a core.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

pub fn simulate(seconds: u64, per_second: f64) -> Result<(), LabError> {
    let body = skill_latency_rule_set(5);
    let rule_set = super::parse_rule_set("bench 5v5", &body)?;
    let spec = PopulationSpec::parse(&population(seconds, per_second))?;
    spec.validate(&rule_set)?;
    let setup = SimulationSetup {
        rule_set_body: body,
        configuration: MatchmakingConfiguration {
            name: "bench".into(),
            rule_set_name: "bench".into(),
            request_timeout_seconds: 120,
            flex_match_mode: FlexMatchMode::WithQueue,
            ..MatchmakingConfiguration::default()
        },
        batching_interval_ms: 1000,
        acceptance: AcceptanceModel::default(),
        seed: 1,
    };
    let started = Instant::now();
    let cpu_start = thread_cpu();
    let arrivals = spec.generate(setup.seed)?;
    let generated = started.elapsed();
    let sim = simulator::run(&setup, arrivals)?;
    let simulated = started.elapsed();
    let report = Report::new("bench 5v5", &setup, &sim);
    let total = started.elapsed();
    let cpu = match (cpu_start, thread_cpu()) {
        (Some(a), Some(b)) => format!("{:.1} s", b.saturating_sub(a).as_secs_f64()),
        _ => "n/a".into(),
    };
    println!(
        "| simulated | tickets | matches | cycles | population | simulation | report | wall total | CPU total | simulated s per wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} s at {per_second}/s | {} | {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {cpu} | {:.0} |",
        seconds,
        report.tickets,
        report.match_quality.matches,
        sim.cycles,
        generated.as_secs_f64(),
        (simulated - generated).as_secs_f64(),
        (total - simulated).as_secs_f64(),
        total.as_secs_f64(),
        report.simulated_seconds / total.as_secs_f64()
    );
    eprint!("{}", report.summary());
    Ok(())
}
