//! Matchmaking configurations: Create, Describe, Update and Delete.

use super::*;

impl LocalFlexMatch {
    /// CreateMatchmakingConfiguration.
    pub fn create_configuration(
        &self,
        mut configuration: MatchmakingConfiguration,
    ) -> Result<MatchmakingConfiguration, GameLiftError> {
        valid_name(&configuration.name)?;
        configuration.rule_set_name =
            configuration.rule_set_name.rsplit('/').next().unwrap_or(&configuration.rule_set_name).to_owned();
        check_configuration(&configuration)?;
        let mut state = self.lock();
        if state.configurations.contains_key(&configuration.name) {
            return Err(GameLiftError::InvalidRequest(format!("Configuration {} already exists", configuration.name)));
        }
        if !state.rule_sets.contains_key(&configuration.rule_set_name) {
            return Err(GameLiftError::NotFound(format!("Rule set {} not found", configuration.rule_set_name)));
        }
        configuration.creation_time_ms = self.clock.now_ms();
        state.configurations.insert(configuration.name.clone(), configuration.clone());
        Ok(configuration)
    }

    /// DescribeMatchmakingConfigurations: all, the named ones, or those using a rule set.
    pub fn describe_configurations(
        &self,
        names: &[String],
        rule_set_name: Option<&str>,
    ) -> Vec<MatchmakingConfiguration> {
        let state = self.lock();
        state
            .configurations
            .values()
            .filter(|c| names.is_empty() || names.iter().any(|n| n.rsplit('/').next() == Some(c.name.as_str())))
            .filter(|c| rule_set_name.is_none_or(|r| c.rule_set_name == r))
            .cloned()
            .collect()
    }

    /// UpdateMatchmakingConfiguration: `update` edits a copy; the result is validated first.
    pub fn update_configuration(
        &self,
        name: &str,
        update: impl FnOnce(&mut MatchmakingConfiguration),
    ) -> Result<MatchmakingConfiguration, GameLiftError> {
        let mut state = self.lock();
        let mut configuration = state
            .configurations
            .get(name)
            .cloned()
            .ok_or_else(|| GameLiftError::NotFound(format!("Configuration {name} not found")))?;
        update(&mut configuration);
        configuration.name = name.to_owned();
        check_configuration(&configuration)?;
        if !state.rule_sets.contains_key(&configuration.rule_set_name) {
            return Err(GameLiftError::NotFound(format!("Rule set {} not found", configuration.rule_set_name)));
        }
        state.configurations.insert(name.to_owned(), configuration.clone());
        Ok(configuration)
    }

    /// DeleteMatchmakingConfiguration: refused while tickets of it are live, which would
    /// otherwise never match, time out or settle.
    pub fn delete_configuration(&self, name: &str) -> Result<(), GameLiftError> {
        let mut state = self.lock();
        if state.tickets.values().any(|t| t.configuration_name == name && !t.status.is_terminal()) {
            return Err(GameLiftError::InvalidRequest(format!("Configuration {name} has live tickets")));
        }
        state
            .configurations
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| GameLiftError::NotFound(format!("Configuration {name} not found")))
    }
}

fn check_configuration(c: &MatchmakingConfiguration) -> Result<(), GameLiftError> {
    if !(1..=43_200).contains(&c.request_timeout_seconds) {
        return Err(GameLiftError::InvalidRequest("RequestTimeoutSeconds must be 1-43200".into()));
    }
    if c.acceptance_required && !(1..=600).contains(&c.acceptance_timeout()) {
        return Err(GameLiftError::InvalidRequest("AcceptanceTimeoutSeconds must be 1-600".into()));
    }
    if c.flex_match_mode == FlexMatchMode::WithQueue && c.game_session_queue_arns.is_empty() {
        // Locally the simulated fleet stands in for any queue; GameLift would require one.
        tracing::debug!(configuration = c.name, "WITH_QUEUE without a queue ARN: placing on the simulated fleet");
    }
    Ok(())
}
