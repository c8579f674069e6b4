//! FlexMatch property expressions: references into a potential match (`teams[red].players`,
//! `teams[*].players.attributes[skill]`, `teams[blue].players[playerId]`) and the aggregation
//! functions that reduce them (`min`, `max`, `avg`, `median`, `sum`, `count`, `stddev`,
//! `flatten`, `set_intersection`).
//!
//! The documentation gives every expression a type (`Team`, `List<Player>`,
//! `List<List<number>>`, ...), and says that each function applied to a nested list operates on
//! every sublist and yields a list of results. Types are checked when the rule set is parsed,
//! so evaluation never meets a surprise.

use std::collections::BTreeMap;

/// The innermost kind of value an expression yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    Number,
    String,
    StringNumberMap,
    Player,
    Team,
}

/// The static type of an expression: `depth` levels of `List<..>` around an `Elem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ty {
    pub depth: u8,
    pub elem: Elem,
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = match self.elem {
            Elem::Number => "number",
            Elem::String => "string",
            Elem::StringNumberMap => "string_number_map",
            Elem::Player => "Player",
            Elem::Team => "Team",
        };
        for _ in 0..self.depth {
            f.write_str("List<")?;
        }
        f.write_str(inner)?;
        for _ in 0..self.depth {
            f.write_str(">")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Min,
    Max,
    Avg,
    Median,
    Sum,
    Count,
    Stddev,
    Flatten,
    SetIntersection,
}

impl Func {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "min" => Self::Min,
            "max" => Self::Max,
            "avg" => Self::Avg,
            "median" => Self::Median,
            "sum" => Self::Sum,
            "count" => Self::Count,
            "stddev" => Self::Stddev,
            "flatten" => Self::Flatten,
            "set_intersection" => Self::SetIntersection,
            _ => return None,
        })
    }

    pub(crate) fn is_aggregate(self) -> bool {
        !matches!(self, Self::Flatten)
    }
}

/// What a reference ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leaf {
    /// `teams[red]`
    Teams,
    /// `teams[red].players`
    Players,
    /// `teams[red].players[playerId]`
    PlayerId,
    /// `teams[red].players.attributes[skill]`; the index into the declared attributes.
    Attribute(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `teams[..]...`: `teams` are indices into the expanded teams; `grouped` when the
    /// selector names more than one team (`*`, `red,blue`, or a team with `quantity` > 1).
    Ref { teams: Vec<usize>, grouped: bool, leaf: Leaf },
    /// `func(arg)`; `map_levels` is how many list levels the function maps over before it
    /// applies, as the documentation's "operates on each sublist individually" says.
    Call { func: Func, map_levels: u8, arg: Box<Expr> },
}

impl Expr {
    /// True when the expression contains an aggregation (anything but `flatten`): such a value
    /// can move either way as players join, so a failing rule over it may pass later.
    pub(crate) fn has_aggregate(&self) -> bool {
        match self {
            Expr::Ref { .. } => false,
            Expr::Call { func, arg, .. } => func.is_aggregate() || arg.has_aggregate(),
        }
    }
}

/// What an expression may refer to: the rule set's teams and attributes.
pub(crate) trait Scope {
    /// Indices of the expanded teams a name denotes (a `quantity` team denotes all copies).
    fn team_indices(&self, name: &str) -> Option<Vec<usize>>;
    fn team_count(&self) -> usize;
    /// The attribute's index and its type (`string_list` is `List<string>`).
    fn attribute(&self, name: &str) -> Option<(usize, Ty)>;
}

/// Parses and type-checks a property expression.
pub(crate) fn parse(text: &str, scope: &dyn Scope) -> Result<(Expr, Ty), String> {
    let mut p = Parser { s: text.as_bytes(), pos: 0, text };
    p.skip_ws();
    let out = p.expr(scope)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected {:?} at offset {} of {text:?}", &text[p.pos..], p.pos));
    }
    Ok(out)
}

/// True when a string value looks like a property expression rather than a literal string
/// (a rule's `referenceValue` may be either, e.g. `"medic"` for a `contains` collection rule).
pub(crate) fn looks_like_expression(text: &str) -> bool {
    let t = text.trim_start();
    let head: String = t.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let rest = t[head.len()..].trim_start();
    ((head == "teams" || head == "team") && rest.starts_with('['))
        || (Func::from_name(&head).is_some() && rest.starts_with('('))
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        self.text[start..self.pos].to_string()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at offset {} of {:?}", c as char, self.pos, self.text))
        }
    }

    /// The text between `[` and `]`.
    fn bracket(&mut self) -> Result<String, String> {
        self.expect(b'[')?;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != b']' {
            self.pos += 1;
        }
        if self.pos == self.s.len() {
            return Err(format!("unclosed '[' in {:?}", self.text));
        }
        let inner = self.text[start..self.pos].trim().to_string();
        self.pos += 1;
        Ok(inner)
    }

    fn expr(&mut self, scope: &dyn Scope) -> Result<(Expr, Ty), String> {
        self.skip_ws();
        let start = self.pos;
        let name = self.ident();
        if name.is_empty() {
            return Err(format!("expected a function or a teams[...] reference at offset {start} of {:?}", self.text));
        }
        self.skip_ws();
        if name == "teams" || name == "team" {
            return self.reference(scope);
        }
        let Some(func) = Func::from_name(&name) else {
            return Err(format!(
                "unknown function or reference {name:?} in {:?} (functions: min, max, avg, median, sum, count, \
                 stddev, flatten, set_intersection; references start with teams[...])",
                self.text
            ));
        };
        self.expect(b'(')?;
        let (arg, ty) = self.expr(scope)?;
        self.expect(b')')?;
        let (map_levels, out) = type_call(func, ty).map_err(|e| format!("{name}(): {e}"))?;
        Ok((Expr::Call { func, map_levels, arg: Box::new(arg) }, out))
    }

    fn reference(&mut self, scope: &dyn Scope) -> Result<(Expr, Ty), String> {
        let selector = self.bracket()?;
        let (teams, grouped) = if selector == "*" {
            ((0..scope.team_count()).collect::<Vec<_>>(), true)
        } else {
            let names: Vec<&str> = selector.split(',').map(str::trim).collect();
            let mut teams = Vec::new();
            for n in &names {
                let found = scope.team_indices(n).ok_or_else(|| format!("unknown team {n:?} in {:?}", self.text))?;
                teams.extend(found);
            }
            let grouped = teams.len() != 1 || names.len() != 1;
            (teams, grouped)
        };
        let depth_teams: u8 = u8::from(grouped);
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'.') {
            let ty = Ty { depth: depth_teams, elem: Elem::Team };
            return Ok((Expr::Ref { teams, grouped, leaf: Leaf::Teams }, ty));
        }
        self.pos += 1;
        let field = self.ident();
        if field != "players" {
            return Err(format!("expected .players after teams[...] in {:?}, found .{field}", self.text));
        }
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b'[') => {
                let key = self.bracket()?;
                if key != "playerId" {
                    return Err(format!(
                        "only players[playerId] is supported, found players[{key}] in {:?}",
                        self.text
                    ));
                }
                let ty = Ty { depth: depth_teams + 1, elem: Elem::String };
                Ok((Expr::Ref { teams, grouped, leaf: Leaf::PlayerId }, ty))
            }
            Some(b'.') => {
                self.pos += 1;
                let field = self.ident();
                if field != "attributes" {
                    return Err(format!("expected .attributes[...] after .players in {:?}, found .{field}", self.text));
                }
                let attr = self.bracket()?;
                let (index, attr_ty) = scope
                    .attribute(&attr)
                    .ok_or_else(|| format!("unknown player attribute {attr:?} in {:?}", self.text))?;
                let ty = Ty { depth: depth_teams + 1 + attr_ty.depth, elem: attr_ty.elem };
                Ok((Expr::Ref { teams, grouped, leaf: Leaf::Attribute(index) }, ty))
            }
            _ => {
                let ty = Ty { depth: depth_teams + 1, elem: Elem::Player };
                Ok((Expr::Ref { teams, grouped, leaf: Leaf::Players }, ty))
            }
        }
    }
}

/// The type rules of the documented functions; returns the map levels and the result type.
fn type_call(func: Func, arg: Ty) -> Result<(u8, Ty), String> {
    match func {
        Func::Min | Func::Max | Func::Avg | Func::Median | Func::Sum | Func::Stddev => {
            if arg.elem != Elem::Number || arg.depth < 1 {
                return Err(format!("needs List<number>, got {arg}"));
            }
            Ok((arg.depth - 1, Ty { depth: arg.depth - 1, elem: Elem::Number }))
        }
        Func::Count => {
            if arg.depth < 1 {
                return Err(format!("needs a list, got {arg}"));
            }
            Ok((arg.depth - 1, Ty { depth: arg.depth - 1, elem: Elem::Number }))
        }
        Func::Flatten => {
            if arg.depth < 2 {
                return Err(format!("needs a nested list List<List<?>>, got {arg}"));
            }
            Ok((0, Ty { depth: arg.depth - 1, elem: arg.elem }))
        }
        Func::SetIntersection => {
            if arg.elem != Elem::String || arg.depth < 2 {
                return Err(format!("needs List<List<string>>, got {arg}"));
            }
            Ok((arg.depth - 2, Ty { depth: arg.depth - 1, elem: Elem::String }))
        }
    }
}

/// A runtime value. `Null` is the aggregate of an empty list (the average of a team that has
/// no players yet); rules skip it rather than fail on it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Num(f64),
    Str(String),
    Map(BTreeMap<String, f64>),
    List(Vec<Value>),
}

impl Value {
    /// Every non-list value inside, depth first.
    pub(crate) fn scalars(&self, out: &mut Vec<Value>) {
        match self {
            Value::List(items) => items.iter().for_each(|v| v.scalars(out)),
            Value::Null => {}
            other => out.push(other.clone()),
        }
    }

    pub(crate) fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }
}

/// What evaluation reads: the potential match's teams and their players.
pub(crate) trait MatchView {
    fn team_name(&self, team: usize) -> &str;
    fn team_players(&self, team: usize) -> usize;
    fn player_id(&self, team: usize, player: usize) -> &str;
    fn attribute(&self, team: usize, player: usize, attribute: usize) -> Value;
}

pub(crate) fn eval(expr: &Expr, view: &dyn MatchView) -> Value {
    match expr {
        Expr::Ref { teams, grouped, leaf } => {
            let per_team = |t: usize| -> Value {
                match leaf {
                    Leaf::Teams => Value::Str(view.team_name(t).to_string()),
                    Leaf::Players => Value::List(
                        (0..view.team_players(t)).map(|p| Value::Str(view.player_id(t, p).to_string())).collect(),
                    ),
                    Leaf::PlayerId => Value::List(
                        (0..view.team_players(t)).map(|p| Value::Str(view.player_id(t, p).to_string())).collect(),
                    ),
                    Leaf::Attribute(a) => {
                        Value::List((0..view.team_players(t)).map(|p| view.attribute(t, p, *a)).collect())
                    }
                }
            };
            if *grouped { Value::List(teams.iter().map(|&t| per_team(t)).collect()) } else { per_team(teams[0]) }
        }
        Expr::Call { func, map_levels, arg } => map_apply(*func, *map_levels, eval(arg, view)),
    }
}

fn map_apply(func: Func, levels: u8, v: Value) -> Value {
    if levels == 0 {
        return apply(func, v);
    }
    match v {
        Value::List(items) => Value::List(items.into_iter().map(|i| map_apply(func, levels - 1, i)).collect()),
        other => other,
    }
}

fn apply(func: Func, v: Value) -> Value {
    let Value::List(items) = v else { return Value::Null };
    let numbers = || -> Vec<f64> { items.iter().filter_map(Value::as_num).collect() };
    match func {
        Func::Count => Value::Num(items.len() as f64),
        Func::Flatten => Value::List(
            items
                .into_iter()
                .flat_map(|i| match i {
                    Value::List(inner) => inner,
                    other => vec![other],
                })
                .collect(),
        ),
        Func::SetIntersection => {
            let mut lists = items.iter().map(|i| match i {
                Value::List(inner) => {
                    inner.iter().filter_map(|s| if let Value::Str(s) = s { Some(s.clone()) } else { None }).collect()
                }
                _ => Vec::new(),
            });
            let Some(mut acc): Option<Vec<String>> = lists.next() else { return Value::List(Vec::new()) };
            acc.sort();
            acc.dedup();
            for list in lists {
                acc.retain(|s| list.contains(s));
            }
            Value::List(acc.into_iter().map(Value::Str).collect())
        }
        Func::Min => numbers().into_iter().reduce(f64::min).map_or(Value::Null, Value::Num),
        Func::Max => numbers().into_iter().reduce(f64::max).map_or(Value::Null, Value::Num),
        Func::Sum => Value::Num(numbers().iter().sum()),
        Func::Avg => {
            let n = numbers();
            if n.is_empty() { Value::Null } else { Value::Num(n.iter().sum::<f64>() / n.len() as f64) }
        }
        Func::Median => {
            let mut n = numbers();
            if n.is_empty() {
                return Value::Null;
            }
            n.sort_by(f64::total_cmp);
            let mid = n.len() / 2;
            Value::Num(if n.len() % 2 == 0 { (n[mid - 1] + n[mid]) / 2.0 } else { n[mid] })
        }
        Func::Stddev => {
            let n = numbers();
            if n.is_empty() {
                return Value::Null;
            }
            let mean = n.iter().sum::<f64>() / n.len() as f64;
            Value::Num((n.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.len() as f64).sqrt())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TwoTeams;
    impl Scope for TwoTeams {
        fn team_indices(&self, name: &str) -> Option<Vec<usize>> {
            match name {
                "red" => Some(vec![0]),
                "blue" => Some(vec![1]),
                _ => None,
            }
        }
        fn team_count(&self) -> usize {
            2
        }
        fn attribute(&self, name: &str) -> Option<(usize, Ty)> {
            match name {
                "skill" => Some((0, Ty { depth: 0, elem: Elem::Number })),
                "maps" => Some((1, Ty { depth: 1, elem: Elem::String })),
                _ => None,
            }
        }
    }

    struct View;
    impl MatchView for View {
        fn team_name(&self, team: usize) -> &str {
            ["red", "blue"][team]
        }
        fn team_players(&self, _team: usize) -> usize {
            2
        }
        fn player_id(&self, team: usize, player: usize) -> &str {
            [["a", "b"], ["c", "d"]][team][player]
        }
        fn attribute(&self, team: usize, player: usize, attribute: usize) -> Value {
            if attribute == 0 {
                Value::Num([[10.0, 20.0], [30.0, 50.0]][team][player])
            } else {
                let maps: [[&[&str]; 2]; 2] = [[&["x", "y"], &["y"]], [&["y", "z"], &["y", "x"]]];
                Value::List(maps[team][player].iter().map(|s| Value::Str(s.to_string())).collect())
            }
        }
    }

    fn run(text: &str) -> (Value, String) {
        let (e, ty) = parse(text, &TwoTeams).unwrap();
        (eval(&e, &View), ty.to_string())
    }

    #[test]
    fn documented_types_and_values() {
        assert_eq!(run("teams[red].players.attributes[skill]").1, "List<number>");
        assert_eq!(run("teams[*].players.attributes[skill]").1, "List<List<number>>");
        assert_eq!(run("teams[red,blue].players.attributes[skill]").1, "List<List<number>>");
        assert_eq!(run("teams[red].players[playerId]").1, "List<string>");
        assert_eq!(
            run("avg(teams[*].players.attributes[skill])").0,
            Value::List(vec![Value::Num(15.0), Value::Num(40.0)])
        );
        assert_eq!(run("avg(flatten(teams[*].players.attributes[skill]))").0, Value::Num(27.5));
        assert_eq!(run("count(teams[red].players)").0, Value::Num(2.0));
        assert_eq!(run("max(count(teams[*].players))").0, Value::Num(2.0));
        assert_eq!(run("median(flatten(teams[*].players.attributes[skill]))").0, Value::Num(25.0));
        assert_eq!(run("sum(teams[blue].players.attributes[skill])").0, Value::Num(80.0));
        assert_eq!(run("stddev(teams[red].players.attributes[skill])").0, Value::Num(5.0));
        assert_eq!(
            run("set_intersection(flatten(teams[*].players.attributes[maps]))").0,
            Value::List(vec![Value::Str("y".into())])
        );
    }

    #[test]
    fn type_errors_are_reported() {
        assert!(parse("avg(teams[red].players[playerId])", &TwoTeams).unwrap_err().contains("List<number>"));
        assert!(parse("flatten(teams[red].players.attributes[skill])", &TwoTeams).unwrap_err().contains("nested"));
        assert!(parse("teams[green].players", &TwoTeams).unwrap_err().contains("unknown team"));
        assert!(
            parse("teams[red].players.attributes[rank]", &TwoTeams).unwrap_err().contains("unknown player attribute")
        );
        assert!(
            parse("mean(teams[red].players.attributes[skill])", &TwoTeams).unwrap_err().contains("unknown function")
        );
        assert!(parse("count(teams[red].players", &TwoTeams).is_err());
    }

    #[test]
    fn literal_strings_are_not_expressions() {
        assert!(!looks_like_expression("medic"));
        assert!(looks_like_expression("count(teams[aliens].players)"));
        assert!(looks_like_expression("teams[*].players[playerId]"));
    }
}
