//! `matchgate simulate` and `matchgate test-rules`: the lab's command lines.

use std::path::{Path, PathBuf};

use clap::Args;

use super::gate::Threshold;
use super::population::PopulationSpec;
use super::report::Report;
use super::simulator::{self, AcceptanceModel, SimulationSetup};
use super::{Arrival, LabError, parse_rule_set, read_file};
use crate::gamelift::MatchmakingConfiguration;
use crate::stack::{DEFAULT_RULE_SET, LOCAL_PARAMETER_DEFAULTS, StackConfig};

/// Where the matchmaking configuration and the default rule set come from.
const DEFAULT_TEMPLATE: &str = "infra/template.yaml";

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// FlexMatch rule set JSON [default: the template's].
    #[arg(long)]
    pub ruleset: Option<PathBuf>,
    /// A second rule set run on the identical population (same seed, same arrivals), reported
    /// side by side.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// The synthetic population spec (JSON; see docs/rule-set-lab.md).
    #[arg(long, required_unless_present = "replay", conflicts_with = "replay")]
    pub population: Option<PathBuf>,
    /// Replay a recording from `matchgate up --record` instead of a synthetic population.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Replay faster (2 = twice as fast: arrivals twice as dense) or slower (0.5).
    #[arg(long, default_value_t = 1.0, requires = "replay")]
    pub time_scale: f64,
    /// The SAM template whose matchmaking configuration (and rule set) to simulate
    /// [default: infra/template.yaml when it exists, else the built-in configuration].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// RequestTimeoutSeconds [default: the template's].
    #[arg(long)]
    pub request_timeout: Option<u32>,
    /// AcceptanceRequired [default: the template's].
    #[arg(long)]
    pub acceptance_required: Option<bool>,
    /// AcceptanceTimeoutSeconds [default: the template's].
    #[arg(long)]
    pub acceptance_timeout: Option<u32>,
    /// The chance a simulated player accepts a proposed match; the others never answer.
    #[arg(long, default_value_t = AcceptanceModel::default().probability)]
    pub acceptance_probability: f64,
    /// How often the simulated matchmaker runs a cycle, in ms.
    #[arg(long, default_value_t = 1000)]
    pub batching_interval_ms: u64,
    /// Seeds the population and the players' answers: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report with charts to FILE.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// A threshold the run must meet, e.g. `p95_wait<=30s` or `timeout_rate<1%` (repeatable);
    /// the command exits non-zero when one fails.
    #[arg(long = "assert")]
    pub asserts: Vec<String>,
}

/// The template's configuration and rule set body, or the built-in ones.
pub fn template_setup(template: Option<&Path>) -> Result<(MatchmakingConfiguration, String), LabError> {
    let default = PathBuf::from(DEFAULT_TEMPLATE);
    let path = template.map(Path::to_path_buf).or_else(|| default.exists().then_some(default));
    let Some(path) = path else {
        let config = StackConfig::default();
        return Ok((config.configuration, DEFAULT_RULE_SET.to_owned()));
    };
    let overrides = LOCAL_PARAMETER_DEFAULTS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let fail = |e: String| LabError::Configuration(format!("{}: {e}", path.display()));
    let template = crate::template::load(&path, &overrides).map_err(|e| fail(format!("{e:#}")))?;
    let config = StackConfig::default().with_template(&template).map_err(|e| fail(e.to_string()))?;
    Ok((config.configuration, config.rule_set_body))
}

/// The arrivals of a run: the population drawn with the seed, or the recording replayed.
fn arrivals(args: &SimulateArgs, rule_set: &matchgate_flexmatch::RuleSet) -> Result<Vec<Arrival>, LabError> {
    if let Some(path) = &args.population {
        let spec = PopulationSpec::parse(&read_file(path)?)?;
        spec.validate(rule_set)?;
        return spec.generate(args.seed);
    }
    let path = args.replay.as_ref().ok_or_else(|| LabError::Usage("give --population or --replay".into()))?;
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(LabError::Usage("--time-scale must be above 0".into()));
    }
    super::recording::replay(path, args.time_scale)
}

/// Writes a command's output; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<(), LabError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(LabError::Io { path: "stdout".into(), source: e }),
        _ => Ok(()),
    }
}

/// Runs `matchgate simulate`; the gate's failures are an error (non-zero exit).
pub fn simulate(args: &SimulateArgs) -> Result<(), LabError> {
    let thresholds: Vec<Threshold> = args.asserts.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    if !(0.0..=1.0).contains(&args.acceptance_probability) {
        return Err(LabError::Usage("--acceptance-probability must be between 0 and 1".into()));
    }
    let (mut configuration, template_body) = template_setup(args.template.as_deref())?;
    if let Some(t) = args.request_timeout {
        configuration.request_timeout_seconds = t;
    }
    if let Some(a) = args.acceptance_required {
        configuration.acceptance_required = a;
    }
    if let Some(t) = args.acceptance_timeout {
        configuration.acceptance_timeout_seconds = Some(t);
    }
    let (name, body) = match &args.ruleset {
        Some(path) => (path.display().to_string(), read_file(path)?),
        None => ("the template's rule set".to_owned(), template_body),
    };
    let rule_set = parse_rule_set(&name, &body)?;
    let name = format!("{} ({name})", rule_set.name());
    let compare = match &args.compare {
        Some(path) => {
            let other = read_file(path)?;
            let parsed = parse_rule_set(&path.display().to_string(), &other)?;
            Some((format!("{} ({})", parsed.name(), path.display()), other, parsed))
        }
        None => None,
    };
    let arrivals = arrivals(args, &rule_set)?;
    if let Some((_, _, other)) = &compare {
        // The same population must make sense to both rule sets.
        if let Some(path) = &args.population {
            PopulationSpec::parse(&read_file(path)?)?.validate(other)?;
        }
    }
    let setup = |body: String| SimulationSetup {
        rule_set_body: body,
        configuration: configuration.clone(),
        batching_interval_ms: args.batching_interval_ms,
        acceptance: AcceptanceModel { probability: args.acceptance_probability, ..AcceptanceModel::default() },
        seed: args.seed,
    };
    let primary_setup = setup(body);
    let primary = simulator::run(&primary_setup, arrivals.clone())?;
    let primary = Report::new(&name, &primary_setup, &primary);
    let other = match compare {
        Some((other_name, other_body, _)) => {
            let s = setup(other_body);
            let sim = simulator::run(&s, arrivals)?;
            Some(Report::new(&other_name, &s, &sim))
        }
        None => None,
    };

    let out = if args.json {
        match &other {
            None => serde_json::to_string_pretty(&primary),
            Some(o) => serde_json::to_string_pretty(&serde_json::json!({ "ruleSet": primary, "compare": o })),
        }
        .map_err(|e| LabError::Usage(e.to_string()))?
            + "\n"
    } else {
        match &other {
            None => primary.summary(),
            Some(o) => format!("{}\n{}\n{}", primary.summary(), o.summary(), super::html::side_by_side(&primary, o)),
        }
    };
    write_stdout(&out)?;
    if let Some(path) = &args.html {
        let page = super::html::page(&primary, other.as_ref());
        std::fs::write(path, page).map_err(|source| LabError::Io { path: path.display().to_string(), source })?;
        tracing::info!(file = %path.display(), "wrote the HTML report");
    }
    let verdicts: Vec<(String, bool)> = thresholds
        .iter()
        .map(|t| {
            let v = t.check(&primary);
            (t.describe(&v), v.passed)
        })
        .collect();
    for (line, _) in &verdicts {
        eprintln!("{line}");
    }
    let failed: Vec<&String> = verdicts.iter().filter(|(_, ok)| !ok).map(|(l, _)| l).collect();
    if !failed.is_empty() {
        return Err(LabError::Gate(failed.len(), verdicts.len()));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TestRulesArgs {
    /// FlexMatch rule set JSON.
    pub ruleset: PathBuf,
    /// Sample tickets and the expected outcome (JSON; see docs/rule-set-lab.md).
    pub samples: PathBuf,
    /// The SAM template whose matchmaking configuration (request timeout) to use
    /// [default: infra/template.yaml when it exists, else the built-in configuration].
    #[arg(long)]
    pub template: Option<PathBuf>,
}

/// Runs `matchgate test-rules`; a failed expectation is an error (non-zero exit).
pub fn test_rules(args: &TestRulesArgs) -> Result<(), LabError> {
    let name = args.ruleset.display().to_string();
    let body = read_file(&args.ruleset)?;
    let rule_set = parse_rule_set(&name, &body)?;
    let samples = super::test_rules::Samples::parse(&args.samples.display().to_string(), &read_file(&args.samples)?)?;
    let (configuration, _) = template_setup(args.template.as_deref())?;
    let verdicts = super::test_rules::run(&body, &rule_set, configuration, &samples)?;
    let mut out = String::new();
    for v in &verdicts {
        out.push_str(&format!("{}  {}: {}\n", if v.passed { "PASS" } else { "FAIL" }, v.name, v.explanation));
    }
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    out.push_str(&format!("{} passed, {failed} failed\n", verdicts.len() - failed));
    write_stdout(&out)?;
    if failed > 0 {
        return Err(LabError::Expectations(failed, verdicts.len()));
    }
    Ok(())
}
