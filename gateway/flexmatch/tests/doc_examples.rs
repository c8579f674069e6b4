//! The FlexMatch documentation's example rule sets (tests/fixtures), each validated and run
//! against pools where the documented behaviour can be checked: who matches with whom, who
//! does not, and when expansions let a match happen.

mod common;

use common::*;
use matchgate_flexmatch::{BatchingPreference, RuleSet, Strategy};

const T0: u64 = 1_000_000;

#[test]
fn every_fixture_validates() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap();
        assert_eq!(RuleSet::validate_all(&body), vec![], "{}", path.display());
        count += 1;
    }
    assert!(count >= 11);
}

// Example 1: two teams with evenly matched players.

#[test]
fn example1_forms_an_even_match_from_similar_players() {
    let rs = fixture("example1_aliens_vs_cowboys.json");
    let pool: Vec<_> = (0..8).map(|i| solo(&format!("p{i}"), T0 + i, &[("skill", n(10.0 + i as f64))], &[])).collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let m = &matches[0];
    assert_eq!(team(m, "cowboys").len(), 4);
    assert_eq!(team(m, "aliens").len(), 4);
    let names: Vec<_> = m.rule_evaluation_metrics.iter().map(|r| r.rule_name.as_str()).collect();
    assert_eq!(names, ["FairTeamSkill", "EqualTeamSizes"]);
    assert!(m.rule_evaluation_metrics.iter().all(|r| r.passed_count >= 1));
}

#[test]
fn example1_fills_teams_to_max_and_keeps_them_equal() {
    let rs = fixture("example1_aliens_vs_cowboys.json");
    let pool: Vec<_> = (0..17).map(|i| solo(&format!("p{i}"), T0 + i, &[], &[])).collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    // Defaults fill in the skill; 8v8 is the fullest even match; one player waits.
    assert_eq!(team(&matches[0], "cowboys").len(), 8);
    assert_eq!(team(&matches[0], "aliens").len(), 8);
    assert!(!all_players(&matches[0]).contains(&"p16".to_string()));
}

#[test]
fn example1_skill_gap_needs_the_expansion() {
    let rs = fixture("example1_aliens_vs_cowboys.json");
    // Overall average 25: the outlier's team averages 50, 25 away; FairTeamSkill's maxDistance
    // of 10 refuses it until the 5-second expansion to 50.
    let mut pool: Vec<_> = (0..7).map(|i| solo(&format!("p{i}"), T0, &[("skill", n(0.0))], &[])).collect();
    pool.push(solo("outlier", T0, &[("skill", n(200.0))], &[]));
    assert!(rs.find_matches(&pool, T0 + 4_999).is_empty());
    let matches = rs.find_matches(&pool, T0 + 5 * SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(all_players(&matches[0]).len(), 8);
}

// Example 2: uneven teams (hunters vs monster).

fn hunter(id: &str, start: u64, desired: f64) -> matchgate_flexmatch::Ticket {
    solo(id, start, &[("wantsToBeMonster", n(0.0)), ("desiredSkillOfMonster", n(desired))], &[])
}

fn monster(id: &str, start: u64, skill: f64) -> matchgate_flexmatch::Ticket {
    solo(id, start, &[("wantsToBeMonster", n(1.0)), ("skill", n(skill))], &[])
}

#[test]
fn example2_puts_the_monster_on_its_own_team() {
    let rs = fixture("example2_players_vs_monster.json");
    // The monster is the oldest ticket, so it anchors the match.
    let mut pool = vec![monster("m", T0, 15.0)];
    pool.extend((0..5).map(|i| hunter(&format!("h{i}"), T0 + 1 + i, 12.0)));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(team(&matches[0], "monster"), ["m"]);
    assert_eq!(team(&matches[0], "players").len(), 5);
}

#[test]
fn example2_monster_must_meet_the_hunters_desired_skill() {
    let rs = fixture("example2_players_vs_monster.json");
    let mut pool = vec![monster("weak", T0, 5.0)];
    pool.extend((0..5).map(|i| hunter(&format!("h{i}"), T0 + 1 + i, 10.0)));
    assert!(rs.find_matches(&pool, T0 + SECOND).is_empty());
    // A strong enough monster joining later completes the match; the weak one keeps waiting.
    pool.push(monster("strong", T0 + 10, 30.0));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(team(&matches[0], "monster"), ["strong"]);
}

#[test]
fn example2_relaxes_the_hunter_team_after_30_and_60_seconds() {
    let rs = fixture("example2_players_vs_monster.json");
    let mut pool = vec![monster("m", T0, 15.0)];
    pool.extend((0..3).map(|i| hunter(&format!("h{i}"), T0, 10.0)));
    assert!(rs.find_matches(&pool, T0 + 29 * SECOND).is_empty());
    // 4 hunters would do after 30 s, but there are only 3.
    assert!(rs.find_matches(&pool, T0 + 45 * SECOND).is_empty());
    let matches = rs.find_matches(&pool, T0 + 60 * SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(team(&matches[0], "players").len(), 3);
}

// Example 3: team-level requirements and latency limits.

fn trio_player(id: &str, character: &str, ms: u32) -> matchgate_flexmatch::Ticket {
    solo(id, T0, &[("character", sl(&[character]))], &[("us-east-1", ms), ("eu-west-1", ms + 100)])
}

#[test]
fn example3_names_quantity_teams_with_an_appended_number() {
    let rs = fixture("example3_three_team_game.json");
    let names: Vec<_> = rs.teams().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["trio1", "trio2", "trio3"]);
    assert_eq!(rs.max_players(), 15);
}

#[test]
fn example3_builds_three_close_teams_with_at_most_five_medics() {
    let rs = fixture("example3_three_team_game.json");
    let mut pool: Vec<_> = (0..8).map(|i| trio_player(&format!("medic{i}"), "medic", 30)).collect();
    pool.extend((0..10).map(|i| trio_player(&format!("peasant{i}"), "peasant", 30)));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let m = &matches[0];
    let sizes: Vec<usize> = m.teams.iter().map(|t| t.player_ids.len()).collect();
    assert_eq!(sizes, [5, 5, 5]);
    let medics = all_players(m).iter().filter(|p| p.starts_with("medic")).count();
    assert!(medics <= 5, "{medics} medics");
}

#[test]
fn example3_latency_limit_relaxes_over_time() {
    let rs = fixture("example3_three_team_game.json");
    let pool: Vec<_> = (0..9).map(|i| trio_player(&format!("p{i}"), "peasant", 80)).collect();
    assert!(rs.find_matches(&pool, T0 + 9 * SECOND).is_empty());
    let matches = rs.find_matches(&pool, T0 + 10 * SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(all_players(&matches[0]).len(), 9);
    let tickets: Vec<_> = pool.iter().filter(|t| matches[0].ticket_ids.contains(&t.ticket_id)).cloned().collect();
    // us-east-1 at 80 ms is within the expanded 100; eu-west-1 at 180 ms is not.
    assert_eq!(rs.acceptable_regions(&tickets, T0 + 10 * SECOND), ["us-east-1"]);
    assert_eq!(rs.acceptable_regions(&tickets, T0 + 20 * SECOND), ["us-east-1"]);
    assert!(rs.acceptable_regions(&tickets, T0).is_empty());
}

#[test]
fn example3_a_player_without_latency_data_cannot_match() {
    let rs = fixture("example3_three_team_game.json");
    let mut pool: Vec<_> = (0..8).map(|i| trio_player(&format!("p{i}"), "peasant", 30)).collect();
    pool.insert(0, solo("silent", T0 - 60 * SECOND, &[], &[]));
    assert!(rs.find_matches(&pool, T0 + SECOND).is_empty(), "8 reporting players are one short of 3x3");
    pool.push(trio_player("p8", "peasant", 30));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert!(!all_players(&matches[0]).contains(&"silent".to_string()));
}

// Example 4: explicit sorting.

#[test]
fn example4_prefers_players_who_favour_the_anchors_map() {
    let rs = fixture("example4_multi_map_game.json");
    let maps = sl(&["forest", "desert"]);
    let mut pool = vec![solo(
        "anchor",
        T0 - 10 * SECOND,
        &[("map_preference", sdm(&[("forest", 100.0), ("desert", 10.0)])), ("acceptable_maps", maps.clone())],
        &[],
    )];
    for i in 0..9 {
        let pref = sdm(&[("forest", 90.0 - i as f64), ("desert", 5.0)]);
        pool.push(solo(&format!("fan{i}"), T0, &[("map_preference", pref), ("acceptable_maps", maps.clone())], &[]));
    }
    for i in 0..9 {
        // Older tickets, but they care little for the anchor's favourite map.
        let pref = sdm(&[("forest", 1.0), ("desert", 100.0)]);
        pool.push(solo(
            &format!("dune{i}"),
            T0 - 5 * SECOND,
            &[("map_preference", pref), ("acceptable_maps", maps.clone())],
            &[],
        ));
    }
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let players = all_players(&matches[0]);
    assert!(players.contains(&"anchor".to_string()));
    assert_eq!(players.iter().filter(|p| p.starts_with("fan")).count(), 9, "{players:?}");
    // No metrics for sort rules: they order candidates, they neither pass nor fail.
    let names: Vec<_> = matches[0].rule_evaluation_metrics.iter().map(|r| r.rule_name.as_str()).collect();
    assert_eq!(names, ["SharedMap"]);
}

#[test]
fn example4_needs_a_map_everyone_can_play() {
    let rs = fixture("example4_multi_map_game.json");
    let mut pool: Vec<_> = (0..9)
        .map(|i| solo(&format!("f{i}"), T0 + i, &[("acceptable_maps", sl(&["forest", "desert"]))], &[]))
        .collect();
    pool.push(solo("x", T0 - SECOND, &[("acceptable_maps", sl(&["swamp"]))], &[]));
    assert!(rs.find_matches(&pool, T0 + SECOND).is_empty());
    pool.push(solo("d", T0 + 50, &[("acceptable_maps", sl(&["desert"]))], &[]));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert!(!all_players(&matches[0]).contains(&"x".to_string()));
}

#[test]
fn example4_distance_sort_prefers_similar_experience() {
    let rs = fixture("example4_multi_map_game.json");
    let mut pool = vec![solo("anchor", T0 - SECOND, &[("experience", n(50.0))], &[])];
    pool.extend((0..9).map(|i| solo(&format!("near{i}"), T0 + 10, &[("experience", n(48.0 + i as f64 % 5.0))], &[])));
    pool.extend((0..9).map(|i| solo(&format!("far{i}"), T0, &[("experience", n(500.0 + i as f64))], &[])));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert!(all_players(&matches[0]).iter().all(|p| !p.starts_with("far")));
}

// Example 5: intersections across multiple attributes.

fn fighter(id: &str, start: u64, me: &str, opponents: &[&str]) -> matchgate_flexmatch::Ticket {
    solo(id, start, &[("myCharacter", sl(&[me])), ("preferredOpponents", sl(opponents))], &[])
}

#[test]
fn example5_every_character_is_on_everyones_list() {
    let rs = fixture("example5_preferred_characters.json");
    let all = ["knight", "mage", "rogue", "orc"];
    let pool = vec![
        fighter("a", T0, "knight", &all),
        // The older mage refuses orcs, so the orc cannot join the match the mage is in.
        fighter("b", T0 + 1, "mage", &["knight", "mage", "rogue"]),
        fighter("orc", T0 + 2, "orc", &all),
        fighter("c", T0 + 3, "rogue", &all),
        fighter("d", T0 + 4, "knight", &all),
        fighter("e", T0 + 5, "mage", &all),
    ];
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(all_players(&matches[0]), ["a", "b", "c", "d", "e"]);
}

// Example 6: compare attributes across all players.

#[test]
fn example6_same_mode_and_different_characters() {
    let rs = fixture("example6_compare_all_players.json");
    let p = |id: &str, start: u64, mode: &str, character: &str| {
        solo(id, start, &[("gameMode", s(mode)), ("character", s(character))], &[])
    };
    let pool = vec![
        p("a", T0, "ranked", "knight"),
        p("casual", T0 + 1, "casual", "mage"),
        p("b", T0 + 2, "ranked", "knight"),
        p("c", T0 + 3, "ranked", "mage"),
        p("d", T0 + 4, "ranked", "rogue"),
        p("e", T0 + 5, "ranked", "orc"),
    ];
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(all_players(&matches[0]), ["a", "c", "d", "e"]);
}

// Example 7: a large match.

#[test]
fn example7_large_free_for_all() {
    let rs = fixture("example7_large_match.json");
    assert!(rs.is_large_match());
    assert_eq!(rs.algorithm().strategy, Strategy::Balanced);
    let pool: Vec<_> = (0..160)
        .map(|i| {
            solo(
                &format!("p{i:03}"),
                T0 + i,
                &[("skill", n((i % 50) as f64))],
                &[("us-west-2", 60), ("eu-west-1", 190)],
            )
        })
        .collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(team(&matches[0], "Marauders").len(), 150);
    // The 10 youngest tickets wait.
    assert!(!all_players(&matches[0]).contains(&"p159".to_string()));
}

#[test]
fn example7_minimum_relaxes_after_150_seconds() {
    let rs = fixture("example7_large_match.json");
    let pool: Vec<_> =
        (0..60).map(|i| solo(&format!("p{i}"), T0, &[("skill", n(i as f64))], &[("us-west-2", 60)])).collect();
    assert!(rs.find_matches(&pool, T0 + 149 * SECOND).is_empty());
    let matches = rs.find_matches(&pool, T0 + 150 * SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(team(&matches[0], "Marauders").len(), 60);
}

// Example 8: a multi-team large match. The fixture is the documented rule set as published:
// its prose asks for a 200 ms latency limit but its JSON says `"maxLatency": 150`, so the tests
// below only use latencies on which both agree (120 ms or less passes, over 200 ms fails).

const MONSTER_KILLS: &str = "monster-kills";

/// A monster-hunters player; `kills: None` leaves the balanced attribute to its default of 5.
fn mh_player(id: &str, start: u64, kills: Option<f64>, latency: &[(&str, u32)]) -> matchgate_flexmatch::Ticket {
    match kills {
        Some(k) => solo(id, start, &[(MONSTER_KILLS, n(k))], latency),
        None => solo(id, start, &[], latency),
    }
}

/// `count` players who all entered matchmaking at `start`, fastest in us-east-1.
fn mh_pool(count: usize, start: u64) -> Vec<matchgate_flexmatch::Ticket> {
    (0..count).map(|i| mh_player(&format!("p{i:03}"), start, None, &[("us-east-1", 40), ("eu-west-1", 120)])).collect()
}

fn hunter_names() -> Vec<String> {
    (1..=10).map(|i| format!("Hunters{i}")).collect()
}

/// (Monsters size, sizes of Hunters1..Hunters10).
fn mh_sizes(m: &matchgate_flexmatch::ProposedMatch) -> (usize, Vec<usize>) {
    (team(m, "Monsters").len(), hunter_names().iter().map(|h| team(m, h).len()).collect())
}

#[test]
fn example8_quantity_makes_ten_hunter_teams_and_one_monster_team() {
    let rs = fixture("example8_multi_team_large_match.json");
    let mut expected = vec!["Monsters".to_string()];
    expected.extend(hunter_names());
    let names: Vec<_> = rs.teams().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, expected);
    assert!(rs.teams()[1..].iter().all(|t| (t.min_players, t.max_players) == (12, 15)));
    assert_eq!((rs.teams()[0].min_players, rs.teams()[0].max_players), (5, 5));
    // 10 x 15 hunters + 5 monsters.
    assert_eq!(rs.max_players(), 155);
    assert!(rs.is_large_match());
    let algorithm = rs.algorithm();
    assert_eq!(algorithm.strategy, Strategy::Balanced);
    assert_eq!(algorithm.batching_preference, BatchingPreference::FastestRegion);
    assert_eq!(algorithm.balanced_attribute.as_deref(), Some(MONSTER_KILLS));
}

#[test]
fn example8_a_full_pool_fills_every_team_and_balances_kills() {
    let rs = fixture("example8_multi_team_large_match.json");
    // Half the players report their kills; the rest count as the default 5.
    let pool: Vec<_> = (0..160)
        .map(|i| {
            let kills = (i % 2 == 0).then_some((i % 23) as f64);
            mh_player(&format!("p{i:03}"), T0 + i as u64, kills, &[("us-east-1", 40)])
        })
        .collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let m = &matches[0];
    assert_eq!(mh_sizes(m), (5, vec![15; 10]));
    // The 5 youngest tickets wait.
    assert!(all_players(m).iter().all(|p| p[1..].parse::<usize>().unwrap() < 155));
    let kills_of = |id: &String| {
        let i: usize = id[1..].parse().unwrap();
        if i.is_multiple_of(2) { (i % 23) as f64 } else { 5.0 }
    };
    let averages: Vec<f64> =
        hunter_names().iter().map(|h| team(m, h).iter().map(kills_of).sum::<f64>() / 15.0).collect();
    let spread = averages.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - averages.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(spread < 1.0, "hunter teams' average kills {averages:?}");
}

#[test]
fn example8_fills_teams_below_minimum_first_then_most_open_slots() {
    let rs = fixture("example8_multi_team_large_match.json");
    // Before any expansion: hunters to 10 each (100), then 2 each to all eleven teams (122),
    // hunters now at their minimum of 12 and the monsters at 2, so the next 3 go to the
    // monsters: 125 is the smallest match.
    assert!(rs.find_matches(&mh_pool(124, T0), T0 + SECOND).is_empty());
    let matches = rs.find_matches(&mh_pool(125, T0), T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(mh_sizes(&matches[0]), (5, vec![12; 10]));
    // The monsters are full; the next players go to the hunters in turn, which stay within one
    // player of each other.
    let matches = rs.find_matches(&mh_pool(140, T0), T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let (monsters, hunters) = mh_sizes(&matches[0]);
    assert_eq!(monsters, 5);
    assert_eq!(hunters.iter().sum::<usize>(), 135);
    assert!(hunters.iter().all(|&h| h == 13 || h == 14), "{hunters:?}");
}

#[test]
fn example8_hunter_minimum_relaxes_for_all_ten_teams() {
    let rs = fixture("example8_multi_team_large_match.json");
    // 105 = 10 hunters on each of ten teams + 5 monsters: enough only once minPlayers is 10.
    let pool = mh_pool(105, T0);
    assert!(rs.find_matches(&pool, T0 + 15 * SECOND - 1).is_empty());
    let matches = rs.find_matches(&pool, T0 + 15 * SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(mh_sizes(&matches[0]), (5, vec![10; 10]));
    // 85 = 8 x 10 + 5: only after the 20-second step.
    let pool = mh_pool(85, T0);
    assert!(rs.find_matches(&pool, T0 + 20 * SECOND - 1).is_empty());
    let matches = rs.find_matches(&pool, T0 + 20 * SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(mh_sizes(&matches[0]), (5, vec![8; 10]));
    // The monster team is not relaxed: 84 players never make 8 x 10 + 5.
    assert!(rs.find_matches(&mh_pool(84, T0), T0 + 60 * SECOND).is_empty());
}

#[test]
fn example8_latency_over_200_ms_is_never_acceptable() {
    let rs = fixture("example8_multi_team_large_match.json");
    // The oldest ticket, so it anchors first; the rule is not expanded, so it never matches.
    let mut pool = vec![mh_player("far", T0 - 60 * SECOND, None, &[("us-east-1", 250), ("eu-west-1", 320)])];
    pool.extend(mh_pool(125, T0));
    for now in [T0 + SECOND, T0 + 20 * SECOND, T0 + 600 * SECOND] {
        let matches = rs.find_matches(&pool, now);
        assert_eq!(matches.len(), 1);
        let players = all_players(&matches[0]);
        assert_eq!(players.len(), 125);
        assert!(!players.contains(&"far".to_string()));
    }
    assert!(rs.find_matches(&pool[..1], T0 + 600 * SECOND).is_empty());
}

#[test]
fn example8_batches_players_by_their_fastest_region() {
    let rs = fixture("example8_multi_team_large_match.json");
    // Two full matches' worth of players, interleaved by age: every other ticket is fastest in
    // eu-west-1, though its us-east-1 latency is acceptable too.
    let pool: Vec<_> = (0..310)
        .map(|i| {
            let (id, latency) = if i % 2 == 0 {
                (format!("east{i:03}"), [("us-east-1", 30), ("eu-west-1", 110)])
            } else {
                (format!("west{i:03}"), [("us-east-1", 110), ("eu-west-1", 30)])
            };
            mh_player(&id, T0 + i as u64, None, &latency)
        })
        .collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 2);
    for (m, home, region) in [(&matches[0], "east", "us-east-1"), (&matches[1], "west", "eu-west-1")] {
        let players = all_players(m);
        assert_eq!(players.len(), 155);
        assert!(players.iter().all(|p| p.starts_with(home)), "{home}: {players:?}");
        let tickets: Vec<_> = pool.iter().filter(|t| m.ticket_ids.contains(&t.ticket_id)).cloned().collect();
        assert_eq!(rs.acceptable_regions(&tickets, T0 + SECOND)[0], region);
    }
}

// Example 9: a large match with players with similar attributes.

fn league_player(id: usize, skill: f64, map: &str) -> matchgate_flexmatch::Ticket {
    solo(
        &format!("p{id:03}"),
        T0 + id as u64,
        &[("league", n(5.0)), ("skill", n(skill)), ("map", s(map)), ("mode", s("conquest"))],
        &[],
    )
}

#[test]
fn example9_batches_by_map_and_balances_skill() {
    let rs = fixture("example9_large_similar_attributes.json");
    let mut pool: Vec<_> = (0..200).map(|i| league_player(i, 45.0 + (i % 11) as f64, "canyon")).collect();
    pool.extend((200..230).map(|i| league_player(i, 50.0, "harbor")));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let m = &matches[0];
    assert_eq!(team(m, "red").len(), 100);
    assert_eq!(team(m, "blue").len(), 100);
    let skill_of = |id: &str| 45.0 + (id[1..].parse::<usize>().unwrap() % 11) as f64;
    let avg = |ids: &[String]| ids.iter().map(|i| skill_of(i)).sum::<f64>() / ids.len() as f64;
    assert!((avg(team(m, "red")) - avg(team(m, "blue"))).abs() < 0.5);
    assert!(all_players(m).iter().all(|p| p[1..].parse::<usize>().unwrap() < 200), "no harbor players");
}

#[test]
fn example9_skill_distance_expands_at_10_and_20_seconds() {
    let rs = fixture("example9_large_similar_attributes.json");
    // Skills spread over 30 points: only the 40-point step (after 20 s) takes them all.
    let pool: Vec<_> = (0..200).map(|i| league_player(i, 40.0 + (i % 31) as f64, "canyon")).collect();
    let all_at = |at: u64| -> Vec<_> {
        pool.iter().map(|t| matchgate_flexmatch::Ticket { start_time_ms: at, ..t.clone() }).collect()
    };
    let young = all_at(T0);
    assert!(rs.find_matches(&young, T0 + 19 * SECOND).is_empty());
    assert_eq!(rs.find_matches(&young, T0 + 20 * SECOND).len(), 1);
}

// Example 10: a compound rule.

fn compound_player(id: usize, skill: f64, league: f64, map: &str, mode: &str) -> matchgate_flexmatch::Ticket {
    solo(
        &format!("p{id:02}"),
        T0 + id as u64,
        &[("league", n(league)), ("skill", n(skill)), ("map", s(map)), ("mode", s(mode))],
        &[],
    )
}

#[test]
fn example10_same_map_and_mode_is_enough() {
    let rs = fixture("example10_compound.json");
    let pool: Vec<_> = (0..40).map(|i| compound_player(i, i as f64 * 10.0, (i % 7) as f64, "canyon", "ctf")).collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(all_players(&matches[0]).len(), 40);
    assert_eq!(team(&matches[0], "red").len(), 20);
}

#[test]
fn example10_similar_skill_and_league_is_enough() {
    let rs = fixture("example10_compound.json");
    let maps = ["canyon", "harbor", "forest"];
    let pool: Vec<_> = (0..20).map(|i| compound_player(i, 50.0 + (i % 5) as f64, 3.0, maps[i % 3], "ctf")).collect();
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    assert_eq!(all_players(&matches[0]).len(), 20);
}

#[test]
fn example10_neither_branch_means_no_match() {
    let rs = fixture("example10_compound.json");
    let maps = ["canyon", "harbor"];
    let pool: Vec<_> = (0..20).map(|i| compound_player(i, i as f64 * 10.0, 3.0, maps[i % 2], "ctf")).collect();
    assert!(rs.find_matches(&pool, T0 + SECOND).is_empty());
}

// Example 11: a player's block list.

#[test]
fn example11_blocked_players_never_share_a_match() {
    let rs = fixture("example11_block_list.json");
    let mut pool = vec![solo("grumpy", T0, &[("BlockList", sl(&["p3"]))], &[])];
    pool.extend((0..10).map(|i| solo(&format!("p{i}"), T0 + 1 + i, &[], &[])));
    let matches = rs.find_matches(&pool, T0 + SECOND);
    assert_eq!(matches.len(), 1);
    let players = all_players(&matches[0]);
    assert!(players.contains(&"grumpy".to_string()));
    assert!(!players.contains(&"p3".to_string()));
    assert_eq!(players.len(), 10);
}
