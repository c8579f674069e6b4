//! Rule sets: CreateMatchmakingRuleSet, DescribeMatchmakingRuleSets, DeleteMatchmakingRuleSet.

use super::*;

impl LocalFlexMatch {
    /// CreateMatchmakingRuleSet. Rule sets are immutable, as in GameLift.
    pub fn create_rule_set(&self, name: &str, body: &str) -> Result<StoredRuleSet, GameLiftError> {
        valid_name(name)?;
        let parsed =
            RuleSet::parse(body).map_err(|e| GameLiftError::InvalidRequest(format!("Invalid rule set: {e}")))?;
        let mut state = self.lock();
        if state.rule_sets.contains_key(name) {
            return Err(GameLiftError::InvalidRequest(format!("Rule set {name} already exists")));
        }
        let stored = StoredRuleSet {
            name: name.to_owned(),
            body: body.to_owned(),
            parsed: Arc::new(parsed),
            creation_time_ms: self.clock.now_ms(),
        };
        state.rule_sets.insert(name.to_owned(), stored.clone());
        Ok(stored)
    }

    /// DescribeMatchmakingRuleSets: all, or the named ones (every name must exist).
    pub fn describe_rule_sets(&self, names: &[String]) -> Result<Vec<StoredRuleSet>, GameLiftError> {
        let state = self.lock();
        if names.is_empty() {
            return Ok(state.rule_sets.values().cloned().collect());
        }
        names
            .iter()
            .map(|n| {
                let name = n.rsplit('/').next().unwrap_or(n);
                state
                    .rule_sets
                    .get(name)
                    .cloned()
                    .ok_or_else(|| GameLiftError::NotFound(format!("Rule set {n} not found")))
            })
            .collect()
    }

    /// DeleteMatchmakingRuleSet: refused while a configuration uses it.
    pub fn delete_rule_set(&self, name: &str) -> Result<(), GameLiftError> {
        let mut state = self.lock();
        if !state.rule_sets.contains_key(name) {
            return Err(GameLiftError::NotFound(format!("Rule set {name} not found")));
        }
        if let Some(c) = state.configurations.values().find(|c| c.rule_set_name == name) {
            return Err(GameLiftError::InvalidRequest(format!("Rule set {name} is used by configuration {}", c.name)));
        }
        state.rule_sets.remove(name);
        Ok(())
    }
}
