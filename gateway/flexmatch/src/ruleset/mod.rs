//! Rule set parsing and validation: every section of the FlexMatch rule set schema, with the
//! JSON path and the reason for each error.
//!
//! - [`attributes`], [`teams`], [`algorithm`], [`rules`] (with [`compound`] statements) and
//!   [`expansions`]: one file per section of the schema.

mod algorithm;
mod attributes;
mod compound;
mod expansions;
mod rules;
mod teams;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::expr::{self, Elem, Expr, Ty};
use crate::{AttributeValue, Player};

use self::algorithm::*;
use self::attributes::*;
use self::compound::*;
use self::expansions::*;
use self::rules::*;
use self::teams::*;

/// Why a rule set was refused: the JSON path of the offending value and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RuleSetError {
    pub path: String,
    pub reason: String,
}

impl RuleSetError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}

/// The most players a match may hold, over all teams (FlexMatch's large-match limit).
pub const MAX_MATCH_PLAYERS: usize = 200;
/// Matches of more players than this are large matches and need the `balanced` strategy.
pub const MAX_SMALL_MATCH_PLAYERS: usize = 40;
/// The most players one matchmaking ticket may carry (StartMatchmaking's limit).
pub const MAX_PLAYERS_PER_TICKET: usize = 10;

/// A team of the rule set, after `quantity` has been expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    pub name: String,
    pub min_players: usize,
    pub max_players: usize,
}

/// The declared type of a player attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
    StringList,
    StringNumberMap,
}

impl AttributeType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "number" => Self::Number,
            "string_list" => Self::StringList,
            "string_number_map" => Self::StringNumberMap,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::StringList => "string_list",
            Self::StringNumberMap => "string_number_map",
        }
    }

    fn ty(self) -> Ty {
        match self {
            Self::String => Ty { depth: 0, elem: Elem::String },
            Self::Number => Ty { depth: 0, elem: Elem::Number },
            Self::StringList => Ty { depth: 1, elem: Elem::String },
            Self::StringNumberMap => Ty { depth: 0, elem: Elem::StringNumberMap },
        }
    }

    /// True when `value` has this type.
    pub fn admits(self, value: &AttributeValue) -> bool {
        matches!(
            (self, value),
            (Self::String, AttributeValue::S(_))
                | (Self::Number, AttributeValue::N(_))
                | (Self::StringList, AttributeValue::SL(_))
                | (Self::StringNumberMap, AttributeValue::SDM(_))
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttributeDef {
    pub name: String,
    pub kind: AttributeType,
    pub default: Option<AttributeValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    ExhaustiveSearch,
    Balanced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchingPreference {
    Random,
    Sorted,
    LargestPopulation,
    FastestRegion,
}

impl BatchingPreference {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "random" => Self::Random,
            "sorted" => Self::Sorted,
            "largestPopulation" => Self::LargestPopulation,
            "fastestRegion" => Self::FastestRegion,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpansionAgeSelection {
    Newest,
    Oldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackfillPriority {
    Normal,
    Low,
    High,
}

/// The rule set's `algorithm` section, with FlexMatch's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Algorithm {
    pub strategy: Strategy,
    pub balanced_attribute: Option<String>,
    pub batching_preference: BatchingPreference,
    pub sort_by_attributes: Vec<String>,
    pub expansion_age_selection: ExpansionAgeSelection,
    pub backfill_priority: BackfillPriority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartyAggregation {
    Min,
    Max,
    Avg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CollectionAggregation {
    Union,
    Intersection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Eq,
    Ne,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CollectionOp {
    Intersection,
    Contains,
    ReferenceIntersectionCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DistanceReference {
    Min,
    Avg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapKey {
    MinValue,
    MaxValue,
}

/// A `referenceValue`: a literal or a property expression over the potential match.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Num(f64),
    Str(String),
    List(Vec<String>),
    Expr(Expr),
}

/// A compound rule's statement: `and(A, or(B, not(C)))`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    Rule(usize),
    And(Vec<Statement>),
    Or(Vec<Statement>),
    Not(Box<Statement>),
    Xor(Vec<Statement>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RuleKind {
    BatchDistance { attribute: usize, numeric: bool },
    Comparison { measurements: Vec<Expr>, op: CmpOp },
    Distance { measurements: Vec<Expr> },
    Collection { measurements: Vec<Expr>, op: CollectionOp, aggregation: Option<CollectionAggregation> },
    Latency { distance_reference: DistanceReference },
    AbsoluteSort { attribute: usize, descending: bool, map_key: Option<MapKey> },
    DistanceSort { attribute: usize, descending: bool, map_key: Option<MapKey> },
    Compound { statement: Statement },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub name: String,
    pub kind: RuleKind,
    /// As written; `None` means FlexMatch's default for the rule type.
    pub party_aggregation: Option<PartyAggregation>,
    /// Rules named in a compound statement are judged only through it.
    pub in_compound: bool,
    /// A failing prunable rule can never pass again as more tickets join the match, so the
    /// search abandons that branch at once.
    pub prunable: bool,
}

impl Rule {
    pub(crate) fn is_sort(&self) -> bool {
        matches!(self.kind, RuleKind::AbsoluteSort { .. } | RuleKind::DistanceSort { .. })
    }
}

/// The properties of a rule that expansions can relax.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RuleParams {
    pub max_distance: Option<f64>,
    pub min_distance: Option<f64>,
    pub max_latency: Option<f64>,
    pub min_count: Option<f64>,
    pub max_count: Option<f64>,
    pub reference: Option<Operand>,
}

/// Everything an expansion may change, at one stage of expansion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub rules: Vec<RuleParams>,
    /// Per expanded team.
    pub team_min: Vec<usize>,
    pub team_max: Vec<usize>,
    pub batching_preference: BatchingPreference,
}

#[derive(Debug, Clone, PartialEq)]
enum ExpansionTarget {
    Rule { rule: usize, property: RuleProperty },
    Team { teams: Vec<usize>, max: bool },
    BatchingPreference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleProperty {
    MaxDistance,
    MinDistance,
    MaxLatency,
    MinCount,
    MaxCount,
    ReferenceValue,
}

#[derive(Debug, Clone, PartialEq)]
enum StepValue {
    Num(f64),
    Operand(Operand),
    Batching(BatchingPreference),
}

#[derive(Debug, Clone, PartialEq)]
struct Expansion {
    target: ExpansionTarget,
    /// (waitTimeSeconds in ms, value), strictly increasing in time.
    steps: Vec<(u64, StepValue)>,
}

/// A validated FlexMatch rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) name: String,
    pub(crate) attributes: Vec<AttributeDef>,
    pub(crate) teams: Vec<Team>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) algorithm: Algorithm,
    pub(crate) balanced_attribute: Option<usize>,
    pub(crate) sort_by: Vec<usize>,
    /// The expansion stages: from `wait_ms` of ticket age on, `params` hold. The first stage
    /// starts at 0 and holds the rule set as written.
    pub(crate) stages: Vec<(u64, Params)>,
}

/// The rule set as far as expressions can see it.
struct ScopeView<'a> {
    attributes: &'a [AttributeDef],
    team_defs: &'a [(String, Vec<usize>)],
    teams: &'a [Team],
}

impl expr::Scope for ScopeView<'_> {
    fn team_indices(&self, name: &str) -> Option<Vec<usize>> {
        if let Some((_, indices)) = self.team_defs.iter().find(|(n, _)| n == name) {
            return Some(indices.clone());
        }
        self.teams.iter().position(|t| t.name == name).map(|i| vec![i])
    }
    fn team_count(&self) -> usize {
        self.teams.len()
    }
    fn attribute(&self, name: &str) -> Option<(usize, Ty)> {
        self.attributes.iter().position(|a| a.name == name).map(|i| (i, self.attributes[i].kind.ty()))
    }
}

struct Errors(Vec<RuleSetError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(RuleSetError::new(path, reason));
    }
}

/// A number as FlexMatch reads it: a JSON number, or a string holding one (the documentation's
/// own examples write `"maxDistance": "500"`).
fn as_number(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn as_count(v: &Json) -> Option<usize> {
    as_number(v).filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= 1e9).map(|f| f as usize)
}

fn check_keys(obj: &Map<String, Json>, allowed: &[&str], path: &str, errs: &mut Errors) {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            errs.push(format!("{path}.{key}"), format!("unknown property; allowed here: {}", allowed.join(", ")));
        }
    }
}

fn enum_value<T>(obj: &Map<String, Json>, key: &str, path: &str, allowed: &[(&str, T)], errs: &mut Errors) -> Option<T>
where
    T: Copy,
{
    let v = obj.get(key)?;
    let found = v.as_str().and_then(|s| allowed.iter().find(|(name, _)| *name == s)).map(|(_, t)| *t);
    if found.is_none() {
        let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
        errs.push(format!("{path}.{key}"), format!("must be one of {}, found {v}", names.join(", ")));
    }
    found
}

fn default_value(kind: AttributeType, v: &Json) -> Option<AttributeValue> {
    match kind {
        AttributeType::Number => as_number(v).map(AttributeValue::N),
        AttributeType::String => v.as_str().map(|s| AttributeValue::S(s.to_string())),
        AttributeType::StringList => v
            .as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(AttributeValue::SL),
        AttributeType::StringNumberMap => v
            .as_object()?
            .iter()
            .map(|(k, n)| as_number(n).map(|n| (k.clone(), n)))
            .collect::<Option<BTreeMap<_, _>>>()
            .map(AttributeValue::SDM),
    }
}

const PARTY: &[(&str, PartyAggregation)] =
    &[("avg", PartyAggregation::Avg), ("min", PartyAggregation::Min), ("max", PartyAggregation::Max)];

impl RuleSet {
    /// Parses and validates a rule set body (the JSON that `CreateMatchmakingRuleSet` takes),
    /// returning the first problem found.
    pub fn parse(body: &str) -> Result<Self, RuleSetError> {
        let mut errs = Errors(Vec::new());
        let built = Self::build(body, &mut errs);
        match (built, errs.0.into_iter().next()) {
            (_, Some(first)) => Err(first),
            (Some(rs), None) => Ok(rs),
            (None, None) => Err(RuleSetError::new("$", "invalid rule set")),
        }
    }

    /// Every problem in a rule set body, in document order; empty when it is valid. This is
    /// what `ValidateMatchmakingRuleSet` reports.
    pub fn validate_all(body: &str) -> Vec<RuleSetError> {
        let mut errs = Errors(Vec::new());
        Self::build(body, &mut errs);
        errs.0
    }

    fn build(body: &str, errs: &mut Errors) -> Option<Self> {
        let doc: Json = match serde_json::from_str(body) {
            Ok(doc) => doc,
            Err(e) => {
                errs.push("$", format!("not valid JSON: {e}"));
                return None;
            }
        };
        let Some(root) = doc.as_object() else {
            errs.push("$", "a rule set must be a JSON object");
            return None;
        };
        check_keys(
            root,
            &["name", "ruleLanguageVersion", "playerAttributes", "algorithm", "teams", "rules", "expansions"],
            "$",
            errs,
        );
        let name = match root.get("name") {
            None => String::new(),
            Some(Json::String(s)) => s.clone(),
            Some(other) => {
                errs.push("$.name", format!("must be a string, found {other}"));
                String::new()
            }
        };
        match root.get("ruleLanguageVersion") {
            Some(Json::String(v)) if v == "1.0" => {}
            Some(other) => errs.push("$.ruleLanguageVersion", format!("must be \"1.0\", found {other}")),
            None => errs.push("$.ruleLanguageVersion", "is required (\"1.0\")"),
        }

        let attributes = parse_attributes(root.get("playerAttributes"), errs);
        let (team_defs, teams) = parse_teams(root.get("teams"), errs);
        let total_max: usize = teams.iter().map(|t| t.max_players).sum();
        if total_max > MAX_MATCH_PLAYERS {
            errs.push(
                "$.teams",
                format!("the teams hold up to {total_max} players; a match holds at most {MAX_MATCH_PLAYERS}"),
            );
        }
        let large = total_max > MAX_SMALL_MATCH_PLAYERS;
        let (algorithm, balanced_attribute, sort_by) = parse_algorithm(root.get("algorithm"), &attributes, large, errs);

        let scope = ScopeView { attributes: &attributes, team_defs: &team_defs, teams: &teams };
        let (rules, base_rule_params) = parse_rules(root.get("rules"), &scope, large, errs);
        let expansions = parse_expansions(root.get("expansions"), &scope, &team_defs, &teams, &rules, errs);

        let base = Params {
            rules: base_rule_params,
            team_min: teams.iter().map(|t| t.min_players).collect(),
            team_max: teams.iter().map(|t| t.max_players).collect(),
            batching_preference: algorithm.batching_preference,
        };
        let stages = build_stages(base, &expansions);
        Some(Self { name, attributes, teams, rules, algorithm, balanced_attribute, sort_by, stages })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn teams(&self) -> &[Team] {
        &self.teams
    }

    /// The largest match this rule set can form.
    pub fn max_players(&self) -> usize {
        self.teams.iter().map(|t| t.max_players).sum()
    }

    /// True when the rule set builds large matches (more than 40 players).
    pub fn is_large_match(&self) -> bool {
        self.max_players() > MAX_SMALL_MATCH_PLAYERS
    }

    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// The declared player attributes and their types, in document order.
    pub fn player_attributes(&self) -> impl Iterator<Item = (&str, AttributeType)> {
        self.attributes.iter().map(|a| (a.name.as_str(), a.kind))
    }

    /// The names of the rules `ruleEvaluationMetrics` reports, in document order: every rule
    /// but the sort rules, which only order candidates and never pass or fail.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().filter(|r| !r.is_sort()).map(|r| r.name.as_str())
    }

    /// True when the rule set has a latency rule, so players must report latencies to match.
    pub fn requires_latency(&self) -> bool {
        self.rules.iter().any(|r| matches!(r.kind, RuleKind::Latency { .. }))
    }

    /// Fills in the rule set's default for every declared attribute the player lacks.
    pub fn apply_defaults(&self, player: &mut Player) {
        for a in &self.attributes {
            if let Some(d) = &a.default {
                player.attributes.entry(a.name.clone()).or_insert_with(|| d.clone());
            }
        }
    }

    /// Why a player cannot be matched under this rule set (after defaults are applied): a
    /// declared attribute with a value of the wrong type, or missing with no default.
    pub fn check_player(&self, player: &Player) -> Result<(), String> {
        for a in &self.attributes {
            match player.attributes.get(&a.name).or(a.default.as_ref()) {
                Some(v) if a.kind.admits(v) => {}
                Some(v) => {
                    return Err(format!(
                        "player {} attribute {:?} must be of type {}, found {v:?}",
                        player.player_id,
                        a.name,
                        a.kind.as_str()
                    ));
                }
                None => {
                    return Err(format!(
                        "player {} lacks attribute {:?}, which has no default",
                        player.player_id, a.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The parameters in force for a match whose expansion age is `age_ms`.
    pub(crate) fn params_at(&self, age_ms: u64) -> &Params {
        let i = self.stages.partition_point(|(wait, _)| *wait <= age_ms);
        &self.stages[i.saturating_sub(1)].1
    }
}
