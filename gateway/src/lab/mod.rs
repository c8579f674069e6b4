//! The rule-set lab: a designer's questions about a FlexMatch rule set answered before it ships.
//!
//! [`simulator`] runs a discrete-event simulation on a virtual clock that drives the very
//! [`LocalFlexMatch`](crate::gamelift::LocalFlexMatch) the local stack runs — the same
//! configuration semantics, the same `RuleSet::find_matches` — fed by a synthetic
//! [`population`] or a [`recording`] of real traffic. [`report`] turns what the engine published
//! into wait times and match quality, [`html`] draws it, [`gate`] fails CI on a threshold.

pub mod bench;
pub mod blocking;
pub mod cli;
pub mod gate;
pub mod html;
pub mod population;
pub mod recording;
pub mod report;
pub mod shadow;
pub mod simulator;
pub mod test_rules;

use matchgate_protocol::gamelift::Player;

/// One StartMatchmaking of the simulation: when (milliseconds after the start) and who.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub at_ms: u64,
    pub ticket_id: String,
    pub players: Vec<Player>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The same errors, with the same JSON paths, as ValidateMatchmakingRuleSet.
    #[error("Invalid rule set {file}:\n  {}", .errors.join("\n  "))]
    RuleSet { file: String, errors: Vec<String> },
    #[error("population spec: {0}")]
    Population(String),
    #[error("recording {file}, line {line}: {message}")]
    Recording { file: String, line: usize, message: String },
    #[error("{0}")]
    Bound(String),
    #[error("the matchmaking configuration was refused: {0}")]
    Configuration(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0} of {1} thresholds failed")]
    Gate(usize, usize),
    #[error("{0} of {1} expectations failed")]
    Expectations(usize, usize),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Reads a file, naming it in the error.
pub fn read_file(path: &std::path::Path) -> Result<String, LabError> {
    std::fs::read_to_string(path).map_err(|source| LabError::Io { path: path.display().to_string(), source })
}

/// Parses a rule set, or every error ValidateMatchmakingRuleSet would report, with its JSON path.
pub fn parse_rule_set(file: &str, body: &str) -> Result<matchgate_flexmatch::RuleSet, LabError> {
    let errors = matchgate_flexmatch::RuleSet::validate_all(body);
    if !errors.is_empty() {
        return Err(LabError::RuleSet {
            file: file.to_owned(),
            errors: errors.iter().map(ToString::to_string).collect(),
        });
    }
    matchgate_flexmatch::RuleSet::parse(body)
        .map_err(|e| LabError::RuleSet { file: file.to_owned(), errors: vec![e.to_string()] })
}
