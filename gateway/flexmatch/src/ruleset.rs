//! Rule set parsing and validation: every section of the FlexMatch rule set schema, with the
//! JSON path and the reason for each error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::expr::{self, Elem, Expr, Ty};
use crate::{AttributeValue, Player};

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

fn parse_attributes(v: Option<&Json>, errs: &mut Errors) -> Vec<AttributeDef> {
    let mut out: Vec<AttributeDef> = Vec::new();
    let Some(v) = v else { return out };
    let Some(items) = v.as_array() else {
        errs.push("$.playerAttributes", "must be an array");
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.playerAttributes[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        check_keys(obj, &["name", "type", "default"], &path, errs);
        let name = match obj.get("name").and_then(Json::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                errs.push(format!("{path}.name"), "is required (a non-empty string)");
                continue;
            }
        };
        if out.iter().any(|a| a.name == name) {
            errs.push(format!("{path}.name"), format!("duplicate player attribute {name:?}"));
            continue;
        }
        let kind = match obj.get("type") {
            Some(Json::String(t)) => match AttributeType::parse(t) {
                Some(k) => k,
                None => {
                    errs.push(
                        format!("{path}.type"),
                        format!("must be one of string, number, string_list, string_number_map, found {t:?}"),
                    );
                    continue;
                }
            },
            _ => {
                errs.push(format!("{path}.type"), "is required");
                continue;
            }
        };
        let default = match obj.get("default") {
            None => None,
            Some(d) => match default_value(kind, d) {
                Some(v) => Some(v),
                None => {
                    errs.push(format!("{path}.default"), format!("{d} is not a {} value", kind.as_str()));
                    None
                }
            },
        };
        out.push(AttributeDef { name, kind, default });
    }
    out
}

type TeamDefs = Vec<(String, Vec<usize>)>;

fn parse_teams(v: Option<&Json>, errs: &mut Errors) -> (TeamDefs, Vec<Team>) {
    let mut defs: TeamDefs = Vec::new();
    let mut teams: Vec<Team> = Vec::new();
    let Some(items) = v.and_then(Json::as_array) else {
        errs.push("$.teams", "is required: an array of at least one team");
        return (defs, teams);
    };
    if items.is_empty() {
        errs.push("$.teams", "at least one team is required");
    }
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.teams[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        check_keys(obj, &["name", "minPlayers", "maxPlayers", "quantity"], &path, errs);
        let name = match obj.get("name").and_then(Json::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                errs.push(format!("{path}.name"), "is required (a non-empty string)");
                continue;
            }
        };
        let mut count = |key: &str| match obj.get(key) {
            None => {
                errs.push(format!("{path}.{key}"), "is required");
                None
            }
            Some(v) => {
                let n = as_count(v);
                if n.is_none() {
                    errs.push(format!("{path}.{key}"), format!("must be a whole number of players, found {v}"));
                }
                n
            }
        };
        let (Some(min), Some(max)) = (count("minPlayers"), count("maxPlayers")) else { continue };
        if max == 0 {
            errs.push(format!("{path}.maxPlayers"), "must be at least 1");
            continue;
        }
        if min > max {
            errs.push(format!("{path}.minPlayers"), format!("{min} exceeds maxPlayers {max}"));
            continue;
        }
        let quantity = match obj.get("quantity") {
            None => 1,
            Some(q) => match as_count(q) {
                Some(q) if q >= 1 => q,
                _ => {
                    errs.push(format!("{path}.quantity"), format!("must be a whole number of at least 1, found {q}"));
                    continue;
                }
            },
        };
        if defs.iter().any(|(n, _)| *n == name) {
            errs.push(format!("{path}.name"), format!("duplicate team name {name:?}"));
            continue;
        }
        // The documentation: "When FlexMatch creates a match, it gives these teams the
        // provided name with an appended number. For example Red-Team1, Red-Team2, and
        // Red-Team3."
        let names: Vec<String> =
            if quantity == 1 { vec![name.clone()] } else { (1..=quantity).map(|n| format!("{name}{n}")).collect() };
        let mut indices = Vec::new();
        for n in names {
            if teams.iter().any(|t| t.name == n) {
                errs.push(format!("{path}.name"), format!("team name {n:?} is used twice once quantity is applied"));
                continue;
            }
            indices.push(teams.len());
            teams.push(Team { name: n, min_players: min, max_players: max });
        }
        defs.push((name, indices));
    }
    (defs, teams)
}

fn parse_algorithm(
    v: Option<&Json>,
    attributes: &[AttributeDef],
    large: bool,
    errs: &mut Errors,
) -> (Algorithm, Option<usize>, Vec<usize>) {
    let path = "$.algorithm";
    let empty = Map::new();
    let obj = match v {
        None => &empty,
        Some(Json::Object(o)) => o,
        Some(_) => {
            errs.push(path, "must be an object");
            &empty
        }
    };
    check_keys(
        obj,
        &[
            "strategy",
            "balancedAttribute",
            "batchingPreference",
            "sortByAttributes",
            "expansionAgeSelection",
            "backfillPriority",
        ],
        path,
        errs,
    );
    let strategy = enum_value(
        obj,
        "strategy",
        path,
        &[("exhaustiveSearch", Strategy::ExhaustiveSearch), ("balanced", Strategy::Balanced)],
        errs,
    )
    .unwrap_or(Strategy::ExhaustiveSearch);
    if large && strategy != Strategy::Balanced {
        let at = if obj.contains_key("strategy") { format!("{path}.strategy") } else { path.to_string() };
        errs.push(at, "matches of more than 40 players (the sum of the teams' maxPlayers) need strategy \"balanced\"");
    }
    let mut balanced_attribute = None;
    let balanced_name = obj.get("balancedAttribute").map(|b| match b.as_str() {
        Some(name) => {
            match attributes.iter().position(|a| a.name == name) {
                Some(i) if attributes[i].kind == AttributeType::Number => balanced_attribute = Some(i),
                Some(_) => {
                    errs.push(format!("{path}.balancedAttribute"), format!("{name:?} must be a number attribute"))
                }
                None => errs.push(format!("{path}.balancedAttribute"), format!("unknown player attribute {name:?}")),
            }
            name.to_string()
        }
        None => {
            errs.push(format!("{path}.balancedAttribute"), "must be a string");
            String::new()
        }
    });
    if strategy == Strategy::Balanced && balanced_name.is_none() {
        errs.push(format!("{path}.balancedAttribute"), "is required with strategy \"balanced\"");
    }
    let batching = obj.get("batchingPreference").and_then(|b| {
        let parsed = b.as_str().and_then(BatchingPreference::parse);
        let allowed: &[BatchingPreference] = match strategy {
            Strategy::ExhaustiveSearch => &[BatchingPreference::Random, BatchingPreference::Sorted],
            Strategy::Balanced => &[BatchingPreference::LargestPopulation, BatchingPreference::FastestRegion],
        };
        match parsed {
            Some(p) if allowed.contains(&p) => Some(p),
            _ => {
                let names = match strategy {
                    Strategy::ExhaustiveSearch => "random or sorted with strategy exhaustiveSearch",
                    Strategy::Balanced => "largestPopulation or fastestRegion with strategy balanced",
                };
                errs.push(format!("{path}.batchingPreference"), format!("must be {names}, found {b}"));
                None
            }
        }
    });
    let batching_preference = batching.unwrap_or(match strategy {
        Strategy::ExhaustiveSearch => BatchingPreference::Random,
        Strategy::Balanced => BatchingPreference::LargestPopulation,
    });
    let mut sort_by = Vec::new();
    let mut sort_names = Vec::new();
    if let Some(s) = obj.get("sortByAttributes") {
        match s.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}.sortByAttributes[{i}]");
                    match item.as_str().map(|n| (n, attributes.iter().position(|a| a.name == n))) {
                        Some((n, Some(idx))) => {
                            if matches!(attributes[idx].kind, AttributeType::Number | AttributeType::String) {
                                sort_by.push(idx);
                                sort_names.push(n.to_string());
                            } else {
                                errs.push(p, format!("{n:?} must be a number or string attribute to sort by"));
                            }
                        }
                        Some((n, None)) => errs.push(p, format!("unknown player attribute {n:?}")),
                        None => errs.push(p, "must be an attribute name"),
                    }
                }
            }
            None => errs.push(format!("{path}.sortByAttributes"), "must be an array of attribute names"),
        }
    }
    if batching_preference == BatchingPreference::Sorted && obj.get("sortByAttributes").is_none() {
        errs.push(format!("{path}.sortByAttributes"), "is required with batchingPreference \"sorted\"");
    }
    let expansion_age_selection = enum_value(
        obj,
        "expansionAgeSelection",
        path,
        &[("newest", ExpansionAgeSelection::Newest), ("oldest", ExpansionAgeSelection::Oldest)],
        errs,
    )
    .unwrap_or(ExpansionAgeSelection::Newest);
    let backfill_priority = enum_value(
        obj,
        "backfillPriority",
        path,
        &[("normal", BackfillPriority::Normal), ("low", BackfillPriority::Low), ("high", BackfillPriority::High)],
        errs,
    )
    .unwrap_or(BackfillPriority::Normal);
    (
        Algorithm {
            strategy,
            balanced_attribute: balanced_name,
            batching_preference,
            sort_by_attributes: sort_names,
            expansion_age_selection,
            backfill_priority,
        },
        balanced_attribute,
        sort_by,
    )
}

/// Measurements are one expression or an array of them.
fn parse_measurements(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    errs: &mut Errors,
) -> Option<Vec<(Expr, Ty)>> {
    let p = format!("{path}.measurements");
    let texts: Vec<(String, &Json)> = match obj.get("measurements") {
        None => {
            errs.push(&p, "is required");
            return None;
        }
        Some(v @ Json::String(_)) => vec![(p.clone(), v)],
        Some(Json::Array(items)) if !items.is_empty() => {
            items.iter().enumerate().map(|(i, v)| (format!("{p}[{i}]"), v)).collect()
        }
        Some(other) => {
            errs.push(&p, format!("must be a property expression or a non-empty array of them, found {other}"));
            return None;
        }
    };
    let mut out = Vec::new();
    for (path, v) in texts {
        let Some(text) = v.as_str() else {
            errs.push(&path, "must be a property expression string");
            return None;
        };
        match expr::parse(text, scope) {
            Ok(e) => out.push(e),
            Err(reason) => {
                errs.push(&path, reason);
                return None;
            }
        }
    }
    Some(out)
}

/// Parses a `referenceValue` (or an expansion step's new value for one).
fn parse_operand(v: &Json, path: &str, scope: &ScopeView<'_>, errs: &mut Errors) -> Option<(Operand, Option<Ty>)> {
    match v {
        Json::Number(n) => n.as_f64().map(|f| (Operand::Num(f), Some(Ty { depth: 0, elem: Elem::Number }))),
        Json::String(s) if expr::looks_like_expression(s) => match expr::parse(s, scope) {
            Ok((e, ty)) => Some((Operand::Expr(e), Some(ty))),
            Err(reason) => {
                errs.push(path, reason);
                None
            }
        },
        Json::String(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Some((Operand::Num(f), Some(Ty { depth: 0, elem: Elem::Number }))),
            _ => Some((Operand::Str(s.clone()), Some(Ty { depth: 0, elem: Elem::String }))),
        },
        Json::Array(items) => match items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>() {
            Some(list) => Some((Operand::List(list), Some(Ty { depth: 1, elem: Elem::String }))),
            None => {
                errs.push(path, "a list reference value must hold only strings");
                None
            }
        },
        other => {
            errs.push(path, format!("must be a number, a string or a property expression, found {other}"));
            None
        }
    }
}

fn numeric_prop(obj: &Map<String, Json>, key: &str, path: &str, errs: &mut Errors) -> Option<f64> {
    let v = obj.get(key)?;
    let n = as_number(v);
    if n.is_none() {
        errs.push(format!("{path}.{key}"), format!("must be a number, found {v}"));
    }
    n
}

fn parse_rules(
    v: Option<&Json>,
    scope: &ScopeView<'_>,
    large: bool,
    errs: &mut Errors,
) -> (Vec<Rule>, Vec<RuleParams>) {
    let mut rules: Vec<Rule> = Vec::new();
    let mut params: Vec<RuleParams> = Vec::new();
    let Some(v) = v else { return (rules, params) };
    let Some(items) = v.as_array() else {
        errs.push("$.rules", "must be an array");
        return (rules, params);
    };
    // Names first, so compound statements may name rules that come after them.
    let names: Vec<Option<&str>> = items.iter().map(|r| r.get("name").and_then(Json::as_str)).collect();
    // Compound statements are resolved after every rule has its final index.
    let mut compounds: Vec<(usize, String, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.rules[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        let name = match names[i] {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                errs.push(format!("{path}.name"), "is required (a non-empty string)");
                continue;
            }
        };
        if names[..i].contains(&Some(name.as_str())) {
            errs.push(format!("{path}.name"), format!("duplicate rule name {name:?}"));
            continue;
        }
        let Some(kind) = obj.get("type").and_then(Json::as_str) else {
            errs.push(format!("{path}.type"), "is required");
            continue;
        };
        const COMMON: [&str; 3] = ["name", "description", "type"];
        let allowed: &[&str] = match kind {
            "batchDistance" => &["batchAttribute", "maxDistance", "partyAggregation"],
            "comparison" => &["measurements", "referenceValue", "operation", "partyAggregation"],
            "distance" => &["measurements", "referenceValue", "maxDistance", "minDistance", "partyAggregation"],
            "collection" => {
                &["measurements", "referenceValue", "operation", "maxCount", "minCount", "partyAggregation"]
            }
            "latency" => &["maxLatency", "maxDistance", "distanceReference", "partyAggregation"],
            "absoluteSort" | "distanceSort" => &["sortDirection", "sortAttribute", "mapKey", "partyAggregation"],
            "compound" => &["statement"],
            other => {
                errs.push(
                    format!("{path}.type"),
                    format!(
                        "unknown rule type {other:?}; FlexMatch rule types are batchDistance, comparison, distance, \
                         collection, latency, absoluteSort, distanceSort and compound"
                    ),
                );
                continue;
            }
        };
        if large && !matches!(kind, "batchDistance" | "latency") {
            errs.push(
                format!("{path}.type"),
                format!("{kind} rules are not available for large matches (more than 40 players): use batchDistance and latency rules"),
            );
            continue;
        }
        let all: Vec<&str> = COMMON.iter().chain(allowed).copied().collect();
        check_keys(obj, &all, &path, errs);
        let errors_before = errs.0.len();
        let mut p = RuleParams {
            max_distance: numeric_prop(obj, "maxDistance", &path, errs),
            min_distance: numeric_prop(obj, "minDistance", &path, errs),
            max_latency: numeric_prop(obj, "maxLatency", &path, errs),
            min_count: numeric_prop(obj, "minCount", &path, errs),
            max_count: numeric_prop(obj, "maxCount", &path, errs),
            reference: None,
        };
        let party_aggregation =
            if kind == "collection" { None } else { enum_value(obj, "partyAggregation", &path, PARTY, errs) };
        let rule_kind = match kind {
            "batchDistance" => parse_batch_distance(obj, &path, scope, &p, errs),
            "comparison" => parse_comparison(obj, &path, scope, &mut p, errs),
            "distance" => parse_distance(obj, &path, scope, &mut p, errs),
            "collection" => parse_collection(obj, &path, scope, &mut p, errs),
            "latency" => parse_latency(obj, &path, &p, errs),
            "absoluteSort" | "distanceSort" => parse_sort(kind, obj, &path, scope, errs),
            _ => match obj.get("statement").and_then(Json::as_str) {
                Some(s) => {
                    compounds.push((rules.len(), s.to_string(), format!("{path}.statement")));
                    Some(RuleKind::Compound { statement: Statement::And(Vec::new()) })
                }
                None => {
                    errs.push(format!("{path}.statement"), "is required: e.g. \"and(RuleA, or(RuleB, RuleC))\"");
                    None
                }
            },
        };
        let Some(rule_kind) = rule_kind else { continue };
        if errs.0.len() > errors_before {
            continue;
        }
        let prunable = is_prunable(&rule_kind, &p);
        rules.push(Rule { name, kind: rule_kind, party_aggregation, in_compound: false, prunable });
        params.push(p);
    }
    for (index, text, path) in compounds {
        match parse_statement(&text, &rules, index) {
            Ok(statement) => {
                let mut referenced = Vec::new();
                statement_rules(&statement, &mut referenced);
                for r in referenced {
                    rules[r].in_compound = true;
                }
                rules[index].kind = RuleKind::Compound { statement };
            }
            Err(reason) => errs.push(path, reason),
        }
    }
    (rules, params)
}

fn parse_batch_distance(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let Some(name) = obj.get("batchAttribute").and_then(Json::as_str) else {
        errs.push(format!("{path}.batchAttribute"), "is required");
        return None;
    };
    let Some(index) = scope.attributes.iter().position(|a| a.name == name) else {
        errs.push(format!("{path}.batchAttribute"), format!("unknown player attribute {name:?}"));
        return None;
    };
    let numeric = match scope.attributes[index].kind {
        AttributeType::Number => true,
        AttributeType::String => false,
        other => {
            errs.push(
                format!("{path}.batchAttribute"),
                format!("{name:?} is a {} attribute; batchDistance needs a number or string attribute", other.as_str()),
            );
            return None;
        }
    };
    if numeric && !obj.contains_key("maxDistance") {
        errs.push(format!("{path}.maxDistance"), "is required when batchAttribute is a number attribute");
        return None;
    }
    if p.max_distance.is_some_and(|d| d < 0.0) {
        errs.push(format!("{path}.maxDistance"), "must not be negative");
    }
    Some(RuleKind::BatchDistance { attribute: index, numeric })
}

fn parse_comparison(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &mut RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let measurements = parse_measurements(obj, path, scope, errs)?;
    let op = enum_value(
        obj,
        "operation",
        path,
        &[
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            ("=", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
        ],
        errs,
    );
    if !obj.contains_key("operation") {
        errs.push(format!("{path}.operation"), "is required: one of <, <=, =, !=, >, >=");
    }
    let op = op?;
    let elem = measurements[0].1.elem;
    for (i, (_, ty)) in measurements.iter().enumerate() {
        if !matches!(ty.elem, Elem::Number | Elem::String) || ty.elem != elem {
            errs.push(
                format!("{path}.measurements"),
                format!("measurement {i} is {ty}; comparison measures numbers or strings, all of one kind"),
            );
            return None;
        }
    }
    if elem == Elem::String && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        errs.push(format!("{path}.operation"), "strings can only be compared with = or !=");
        return None;
    }
    match obj.get("referenceValue") {
        None => {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                errs.push(
                    format!("{path}.referenceValue"),
                    "is required unless operation is = or != (which then compare the players with each other)",
                );
                return None;
            }
        }
        Some(v) => {
            let rp = format!("{path}.referenceValue");
            let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
            let ty = ty.unwrap_or(Ty { depth: 0, elem });
            if ty.depth != 0 || ty.elem != elem {
                errs.push(
                    rp,
                    format!("must be a single {} to compare the measurements with, found {ty}", Ty { depth: 0, elem }),
                );
                return None;
            }
            p.reference = Some(operand);
        }
    }
    Some(RuleKind::Comparison { measurements: measurements.into_iter().map(|(e, _)| e).collect(), op })
}

fn parse_distance(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &mut RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let measurements = parse_measurements(obj, path, scope, errs)?;
    for (i, (_, ty)) in measurements.iter().enumerate() {
        if ty.elem != Elem::Number {
            errs.push(
                format!("{path}.measurements"),
                format!("measurement {i} is {ty}; distance rules measure numbers"),
            );
            return None;
        }
    }
    if let Some(v) = obj.get("referenceValue") {
        let rp = format!("{path}.referenceValue");
        let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
        if ty != Some(Ty { depth: 0, elem: Elem::Number }) {
            errs.push(rp, "must be a number or an expression that yields one number");
            return None;
        }
        p.reference = Some(operand);
    }
    if p.max_distance.is_none() && p.min_distance.is_none() {
        errs.push(path, "a distance rule needs maxDistance or minDistance");
        return None;
    }
    if let (Some(min), Some(max)) = (p.min_distance, p.max_distance)
        && min > max
    {
        errs.push(format!("{path}.minDistance"), format!("{min} exceeds maxDistance {max}"));
        return None;
    }
    Some(RuleKind::Distance { measurements: measurements.into_iter().map(|(e, _)| e).collect() })
}

fn parse_collection(
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    p: &mut RuleParams,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let measurements = parse_measurements(obj, path, scope, errs)?;
    if !obj.contains_key("operation") {
        errs.push(format!("{path}.operation"), "is required: intersection, contains or reference_intersection_count");
        return None;
    }
    let op = enum_value(
        obj,
        "operation",
        path,
        &[
            ("intersection", CollectionOp::Intersection),
            ("contains", CollectionOp::Contains),
            ("reference_intersection_count", CollectionOp::ReferenceIntersectionCount),
        ],
        errs,
    )?;
    let aggregation = enum_value(
        obj,
        "partyAggregation",
        path,
        &[("union", CollectionAggregation::Union), ("intersection", CollectionAggregation::Intersection)],
        errs,
    );
    for (i, (_, ty)) in measurements.iter().enumerate() {
        let ok = match op {
            CollectionOp::Contains => ty.elem == Elem::String && ty.depth >= 1,
            _ => ty.elem == Elem::String && ty.depth == 2,
        };
        if !ok {
            let want = if op == CollectionOp::Contains {
                "a list of strings"
            } else {
                "a list of string lists, List<List<string>>"
            };
            errs.push(
                format!("{path}.measurements"),
                format!("measurement {i} is {ty}; this collection rule needs {want}"),
            );
            return None;
        }
    }
    let rp = format!("{path}.referenceValue");
    match (op, obj.get("referenceValue")) {
        (CollectionOp::Intersection, Some(_)) => {
            errs.push(rp, "the intersection operation takes no referenceValue");
            return None;
        }
        (CollectionOp::Intersection, None) => {}
        (_, None) => {
            errs.push(rp, "is required for contains and reference_intersection_count");
            return None;
        }
        (CollectionOp::Contains, Some(v)) => {
            let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
            if ty != Some(Ty { depth: 0, elem: Elem::String }) && !matches!(operand, Operand::Num(_)) {
                errs.push(rp, "must be the string to count");
                return None;
            }
            // A numeric-looking literal is still a string to look for.
            p.reference = Some(match (operand, v) {
                (Operand::Num(_), Json::String(s)) => Operand::Str(s.clone()),
                (Operand::Num(n), _) => Operand::Str(n.to_string()),
                (o, _) => o,
            });
        }
        (CollectionOp::ReferenceIntersectionCount, Some(v)) => {
            let (operand, ty) = parse_operand(v, &rp, scope, errs)?;
            if ty != Some(Ty { depth: 1, elem: Elem::String }) {
                errs.push(rp, "must be a list of strings (or an expression that yields List<string>)");
                return None;
            }
            p.reference = Some(operand);
        }
    }
    if p.min_count.is_none() && p.max_count.is_none() {
        errs.push(path, "a collection rule needs minCount or maxCount");
        return None;
    }
    Some(RuleKind::Collection { measurements: measurements.into_iter().map(|(e, _)| e).collect(), op, aggregation })
}

fn parse_latency(obj: &Map<String, Json>, path: &str, p: &RuleParams, errs: &mut Errors) -> Option<RuleKind> {
    if p.max_latency.is_none() && p.max_distance.is_none() {
        errs.push(path, "a latency rule needs maxLatency or maxDistance");
        return None;
    }
    if p.max_latency.is_some_and(|l| l <= 0.0) {
        errs.push(format!("{path}.maxLatency"), "must be greater than 0");
        return None;
    }
    let distance_reference = enum_value(
        obj,
        "distanceReference",
        path,
        &[("min", DistanceReference::Min), ("avg", DistanceReference::Avg)],
        errs,
    )
    .unwrap_or(DistanceReference::Min);
    Some(RuleKind::Latency { distance_reference })
}

fn parse_sort(
    kind: &str,
    obj: &Map<String, Json>,
    path: &str,
    scope: &ScopeView<'_>,
    errs: &mut Errors,
) -> Option<RuleKind> {
    let descending =
        enum_value(obj, "sortDirection", path, &[("ascending", false), ("descending", true)], errs).unwrap_or(false);
    let Some(name) = obj.get("sortAttribute").and_then(Json::as_str) else {
        errs.push(format!("{path}.sortAttribute"), "is required");
        return None;
    };
    let Some(attribute) = scope.attributes.iter().position(|a| a.name == name) else {
        errs.push(format!("{path}.sortAttribute"), format!("unknown player attribute {name:?}"));
        return None;
    };
    let map_key =
        enum_value(obj, "mapKey", path, &[("minValue", MapKey::MinValue), ("maxValue", MapKey::MaxValue)], errs);
    match (scope.attributes[attribute].kind, map_key) {
        (AttributeType::Number, None) | (AttributeType::StringNumberMap, Some(_)) => {}
        (AttributeType::Number, Some(_)) => {
            errs.push(format!("{path}.mapKey"), "only applies to string_number_map attributes");
            return None;
        }
        (AttributeType::StringNumberMap, None) => {
            errs.push(
                format!("{path}.mapKey"),
                "is required to sort by a string_number_map attribute: minValue or maxValue",
            );
            return None;
        }
        (other, _) => {
            errs.push(
                format!("{path}.sortAttribute"),
                format!(
                    "{name:?} is a {} attribute; sort rules need a number or string_number_map attribute",
                    other.as_str()
                ),
            );
            return None;
        }
    }
    Some(if kind == "absoluteSort" {
        RuleKind::AbsoluteSort { attribute, descending, map_key }
    } else {
        RuleKind::DistanceSort { attribute, descending, map_key }
    })
}

/// Whether a failing rule stays failing as tickets join the match.
fn is_prunable(kind: &RuleKind, p: &RuleParams) -> bool {
    let plain = |ms: &[Expr]| ms.iter().all(|m| !m.has_aggregate());
    let constant_ref = !matches!(p.reference, Some(Operand::Expr(_)));
    match kind {
        // The spread of values and the set of shared regions only get worse.
        RuleKind::BatchDistance { .. } | RuleKind::Latency { .. } => true,
        // Each player's value is judged alone (or all values against each other).
        RuleKind::Comparison { measurements, .. } => plain(measurements) && constant_ref,
        RuleKind::Distance { measurements } => plain(measurements) && constant_ref,
        RuleKind::Collection { measurements, op, .. } => {
            plain(measurements)
                && match op {
                    CollectionOp::Intersection => p.max_count.is_none(),
                    CollectionOp::Contains => p.min_count.is_none(),
                    CollectionOp::ReferenceIntersectionCount => {
                        p.min_count.is_none() && !matches!(&p.reference, Some(Operand::Expr(e)) if e.has_aggregate())
                    }
                }
        }
        _ => false,
    }
}

fn parse_statement(text: &str, rules: &[Rule], own: usize) -> Result<Statement, String> {
    let mut p = StatementParser { s: text.as_bytes(), pos: 0, text, rules, own };
    let st = p.statement()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected {:?} after the statement", &text[p.pos..]));
    }
    if matches!(st, Statement::Rule(_)) {
        return Err("a compound statement must apply and, or, not or xor to rules".into());
    }
    Ok(st)
}

struct StatementParser<'a> {
    s: &'a [u8],
    pos: usize,
    text: &'a str,
    rules: &'a [Rule],
    own: usize,
}

impl StatementParser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn statement(&mut self) -> Result<Statement, String> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() && !matches!(self.s[self.pos], b'(' | b')' | b',') {
            self.pos += 1;
        }
        let word = self.text[start..self.pos].trim().to_string();
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'(') {
            self.pos += 1;
            let mut args = vec![self.statement()?];
            loop {
                self.skip_ws();
                match self.s.get(self.pos) {
                    Some(b',') => {
                        self.pos += 1;
                        args.push(self.statement()?);
                    }
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or ')' at offset {} of {:?}", self.pos, self.text)),
                }
            }
            return match word.as_str() {
                "and" => Ok(Statement::And(args)),
                "or" => Ok(Statement::Or(args)),
                "xor" => Ok(Statement::Xor(args)),
                "not" if args.len() == 1 => Ok(Statement::Not(Box::new(args.remove(0)))),
                "not" => Err("not() takes exactly one argument".into()),
                other => Err(format!("unknown operator {other:?}: use and, or, not, xor")),
            };
        }
        if word.is_empty() {
            return Err(format!("expected a rule name at offset {start} of {:?}", self.text));
        }
        let Some(index) = self.rules.iter().position(|r| r.name == word) else {
            return Err(format!("unknown rule {word:?} in the statement"));
        };
        if index == self.own {
            return Err("a compound rule cannot refer to itself".into());
        }
        match self.rules[index].kind {
            RuleKind::Compound { .. } => {
                Err(format!("{word:?} is a compound rule; compound rules combine non-compound rules"))
            }
            RuleKind::AbsoluteSort { .. } | RuleKind::DistanceSort { .. } => {
                Err(format!("{word:?} is a sort rule; sort rules order candidates and neither pass nor fail"))
            }
            _ => Ok(Statement::Rule(index)),
        }
    }
}

fn statement_rules(st: &Statement, out: &mut Vec<usize>) {
    match st {
        Statement::Rule(r) => out.push(*r),
        Statement::And(v) | Statement::Or(v) | Statement::Xor(v) => v.iter().for_each(|s| statement_rules(s, out)),
        Statement::Not(s) => statement_rules(s, out),
    }
}

fn parse_expansions(
    v: Option<&Json>,
    scope: &ScopeView<'_>,
    team_defs: &TeamDefs,
    teams: &[Team],
    rules: &[Rule],
    errs: &mut Errors,
) -> Vec<Expansion> {
    let mut out = Vec::new();
    let Some(v) = v else { return out };
    let Some(items) = v.as_array() else {
        errs.push("$.expansions", "must be an array");
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("$.expansions[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(&path, "must be an object");
            continue;
        };
        check_keys(obj, &["target", "steps"], &path, errs);
        let Some(target_text) = obj.get("target").and_then(Json::as_str) else {
            errs.push(
                format!("{path}.target"),
                "is required, e.g. \"rules[FairSkill].maxDistance\" or \"teams[red].minPlayers\"",
            );
            continue;
        };
        let target = match parse_target(target_text, team_defs, rules) {
            Ok(t) => t,
            Err(reason) => {
                errs.push(format!("{path}.target"), reason);
                continue;
            }
        };
        let Some(steps) = obj.get("steps").and_then(Json::as_array).filter(|s| !s.is_empty()) else {
            errs.push(format!("{path}.steps"), "is required: a non-empty array of {waitTimeSeconds, value}");
            continue;
        };
        let mut parsed = Vec::new();
        let mut last_wait: Option<f64> = None;
        for (j, step) in steps.iter().enumerate() {
            let sp = format!("{path}.steps[{j}]");
            let Some(so) = step.as_object() else {
                errs.push(&sp, "must be an object");
                continue;
            };
            check_keys(so, &["waitTimeSeconds", "value"], &sp, errs);
            let wait = match so.get("waitTimeSeconds").map(|w| (w, as_number(w))) {
                Some((_, Some(w))) if w >= 0.0 => w,
                Some((w, _)) => {
                    errs.push(
                        format!("{sp}.waitTimeSeconds"),
                        format!("must be a number of seconds, at least 0, found {w}"),
                    );
                    continue;
                }
                None => {
                    errs.push(format!("{sp}.waitTimeSeconds"), "is required");
                    continue;
                }
            };
            if let Some(prev) = last_wait
                && wait <= prev
            {
                errs.push(
                    format!("{sp}.waitTimeSeconds"),
                    format!("steps must have strictly increasing waitTimeSeconds ({wait} follows {prev})"),
                );
                continue;
            }
            last_wait = Some(wait);
            let Some(value) = so.get("value") else {
                errs.push(format!("{sp}.value"), "is required");
                continue;
            };
            let vp = format!("{sp}.value");
            let Some(value) = step_value(&target, value, &vp, scope, teams, errs) else { continue };
            parsed.push(((wait * 1000.0).round() as u64, value));
        }
        out.push(Expansion { target, steps: parsed });
    }
    out
}

fn parse_target(text: &str, team_defs: &TeamDefs, rules: &[Rule]) -> Result<ExpansionTarget, String> {
    if let Some(prop) = text.strip_prefix("algorithm.") {
        return match prop {
            "batchingPreference" => Ok(ExpansionTarget::BatchingPreference),
            other => Err(format!("algorithm.{other} cannot be expanded; algorithm.batchingPreference can")),
        };
    }
    let (component, rest) = text.split_once('[').ok_or_else(|| {
        format!("{text:?} is not a target; write rules[<rule name>].<property> or teams[<team name>].<property>")
    })?;
    let (name, prop) = rest
        .split_once("].")
        .ok_or_else(|| format!("{text:?} is not a target; write {component}[<name>].<property>"))?;
    match component {
        "rules" => {
            let rule = rules.iter().position(|r| r.name == name).ok_or_else(|| format!("unknown rule {name:?}"))?;
            let property = match prop {
                "maxDistance" => RuleProperty::MaxDistance,
                "minDistance" => RuleProperty::MinDistance,
                "maxLatency" => RuleProperty::MaxLatency,
                "minCount" => RuleProperty::MinCount,
                "maxCount" => RuleProperty::MaxCount,
                "referenceValue" => RuleProperty::ReferenceValue,
                other => return Err(format!("rule property {other:?} cannot be expanded")),
            };
            let applies = matches!(
                (&rules[rule].kind, property),
                (RuleKind::BatchDistance { .. }, RuleProperty::MaxDistance)
                    | (
                        RuleKind::Distance { .. },
                        RuleProperty::MaxDistance | RuleProperty::MinDistance | RuleProperty::ReferenceValue
                    )
                    | (RuleKind::Comparison { .. }, RuleProperty::ReferenceValue)
                    | (
                        RuleKind::Collection { .. },
                        RuleProperty::MinCount | RuleProperty::MaxCount | RuleProperty::ReferenceValue
                    )
                    | (RuleKind::Latency { .. }, RuleProperty::MaxLatency | RuleProperty::MaxDistance)
            );
            if !applies {
                return Err(format!("rule {name:?} has no expandable property {prop:?}"));
            }
            Ok(ExpansionTarget::Rule { rule, property })
        }
        "teams" => {
            let indices = if name == "*" {
                team_defs.iter().flat_map(|(_, i)| i.iter().copied()).collect()
            } else {
                team_defs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, i)| i.clone())
                    .ok_or_else(|| format!("unknown team {name:?}"))?
            };
            match prop {
                "minPlayers" => Ok(ExpansionTarget::Team { teams: indices, max: false }),
                "maxPlayers" => Ok(ExpansionTarget::Team { teams: indices, max: true }),
                other => Err(format!("team property {other:?} cannot be expanded: minPlayers or maxPlayers")),
            }
        }
        other => Err(format!("unknown target component {other:?}: rules, teams or algorithm")),
    }
}

fn step_value(
    target: &ExpansionTarget,
    value: &Json,
    path: &str,
    scope: &ScopeView<'_>,
    teams: &[Team],
    errs: &mut Errors,
) -> Option<StepValue> {
    match target {
        ExpansionTarget::BatchingPreference => match value.as_str().and_then(BatchingPreference::parse) {
            Some(b) => Some(StepValue::Batching(b)),
            None => {
                errs.push(path, format!("must be a batching preference, found {value}"));
                None
            }
        },
        ExpansionTarget::Team { teams: which, max } => {
            let Some(n) = as_count(value) else {
                errs.push(path, format!("must be a whole number of players, found {value}"));
                return None;
            };
            for &t in which {
                if *max && n < teams[t].min_players {
                    errs.push(path, format!("maxPlayers {n} would be below minPlayers {}", teams[t].min_players));
                    return None;
                }
                if !*max && n > teams[t].max_players {
                    errs.push(path, format!("minPlayers {n} would exceed maxPlayers {}", teams[t].max_players));
                    return None;
                }
            }
            Some(StepValue::Num(n as f64))
        }
        ExpansionTarget::Rule { property: RuleProperty::ReferenceValue, .. } => {
            let (operand, _) = parse_operand(value, path, scope, errs)?;
            Some(StepValue::Operand(operand))
        }
        ExpansionTarget::Rule { .. } => match as_number(value) {
            Some(n) => Some(StepValue::Num(n)),
            None => {
                errs.push(path, format!("must be a number, found {value}"));
                None
            }
        },
    }
}

fn build_stages(base: Params, expansions: &[Expansion]) -> Vec<(u64, Params)> {
    let mut waits: BTreeSet<u64> = expansions.iter().flat_map(|e| e.steps.iter().map(|(w, _)| *w)).collect();
    waits.insert(0);
    waits
        .into_iter()
        .map(|at| {
            let mut p = base.clone();
            for e in expansions {
                let Some((_, value)) = e.steps.iter().rev().find(|(w, _)| *w <= at) else { continue };
                match (&e.target, value) {
                    (ExpansionTarget::BatchingPreference, StepValue::Batching(b)) => p.batching_preference = *b,
                    (ExpansionTarget::Team { teams, max }, StepValue::Num(n)) => {
                        for &t in teams {
                            if *max {
                                p.team_max[t] = *n as usize;
                            } else {
                                p.team_min[t] = *n as usize;
                            }
                        }
                    }
                    (ExpansionTarget::Rule { rule, property }, value) => {
                        let rp = &mut p.rules[*rule];
                        match (property, value) {
                            (RuleProperty::MaxDistance, StepValue::Num(n)) => rp.max_distance = Some(*n),
                            (RuleProperty::MinDistance, StepValue::Num(n)) => rp.min_distance = Some(*n),
                            (RuleProperty::MaxLatency, StepValue::Num(n)) => rp.max_latency = Some(*n),
                            (RuleProperty::MinCount, StepValue::Num(n)) => rp.min_count = Some(*n),
                            (RuleProperty::MaxCount, StepValue::Num(n)) => rp.max_count = Some(*n),
                            (RuleProperty::ReferenceValue, StepValue::Operand(o)) => rp.reference = Some(o.clone()),
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
            (at, p)
        })
        .collect()
}
