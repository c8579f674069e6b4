//! `teams`: each team's name, size and `quantity`.

use super::*;

pub(super) type TeamDefs = Vec<(String, Vec<usize>)>;

pub(super) fn parse_teams(v: Option<&Json>, errs: &mut Errors) -> (TeamDefs, Vec<Team>) {
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
