//! Recordings of live traffic: `matchgate up --record FILE` writes every StartMatchmaking the
//! stack receives as one JSON line, and `matchgate simulate --replay FILE` plays them back.
//!
//! Each line is StartMatchmaking's input in GameLift's own JSON shape, with the time it arrived:
//!
//! ```json
//! {"TimeMs":1767225600123,"ConfigurationName":"matchgate-default","TicketId":"3f0c..","Players":[{"PlayerId":"ana","PlayerAttributes":{"skill":{"N":42.0}},"LatencyInMs":{"us-east-1":40}}]}
//! ```

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use matchgate_protocol::gamelift::{Player, StartMatchmakingRequest};
use serde::{Deserialize, Serialize};

use super::{Arrival, LabError, read_file};
use crate::gamelift::engine::TicketObserver;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RecordedStart {
    /// When the stack received it, epoch milliseconds.
    pub time_ms: i64,
    pub configuration_name: String,
    #[serde(default)]
    pub ticket_id: String,
    pub players: Vec<Player>,
}

impl RecordedStart {
    pub fn new(request: &StartMatchmakingRequest, time_ms: i64) -> Self {
        Self {
            time_ms,
            configuration_name: request.configuration_name.clone(),
            ticket_id: request.ticket_id.clone(),
            players: request.players.clone(),
        }
    }
}

/// Appends every StartMatchmaking to a JSON Lines file, one flushed line each, so a stack that
/// is killed leaves only whole lines behind.
#[derive(Debug)]
pub struct Recorder {
    file: Mutex<std::fs::File>,
}

impl Recorder {
    pub fn create(path: &Path) -> Result<Self, LabError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LabError::Io { path: path.display().to_string(), source })?;
        Ok(Self { file: Mutex::new(file) })
    }
}

impl TicketObserver for Recorder {
    fn started(&self, request: &StartMatchmakingRequest, now_ms: i64) {
        let Ok(mut line) = serde_json::to_vec(&RecordedStart::new(request, now_ms)) else { return };
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(error = %e, "recording a StartMatchmaking failed");
        }
    }
}

/// Reads a recording into arrivals, `time_scale` times as fast, the first at 0. A malformed
/// line is an error naming its line number.
pub fn replay(path: &Path, time_scale: f64) -> Result<Vec<Arrival>, LabError> {
    let text = read_file(path)?;
    parse(&path.display().to_string(), &text, time_scale)
}

pub fn parse(file: &str, text: &str, time_scale: f64) -> Result<Vec<Arrival>, LabError> {
    let mut starts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let de = &mut serde_json::Deserializer::from_str(line);
        let start: RecordedStart = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let message = if path == "." { e.into_inner().to_string() } else { format!("{path}: {}", e.into_inner()) };
            LabError::Recording { file: file.to_owned(), line: n + 1, message }
        })?;
        starts.push(start);
        if starts.len() as u64 > super::population::MAX_TICKETS {
            return Err(LabError::Bound(format!(
                "{file} holds more than {} StartMatchmaking requests, the simulator's bound: replay a part of it",
                super::population::MAX_TICKETS
            )));
        }
    }
    if starts.is_empty() {
        return Err(LabError::Recording {
            file: file.to_owned(),
            line: 0,
            message: "no StartMatchmaking in it".into(),
        });
    }
    starts.sort_by_key(|s| s.time_ms);
    let first = starts[0].time_ms;
    Ok(starts
        .into_iter()
        .map(|s| Arrival {
            at_ms: ((s.time_ms - first) as f64 / time_scale).round() as u64,
            ticket_id: s.ticket_id,
            players: s.players,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use matchgate_protocol::gamelift::AttributeValue;

    use super::*;

    const LINES: &str = r#"{"TimeMs":1000,"ConfigurationName":"c","TicketId":"a","Players":[{"PlayerId":"ana","PlayerAttributes":{"skill":{"N":10.0}},"LatencyInMs":{"us-east-1":40}}]}
{"TimeMs":5000,"ConfigurationName":"c","TicketId":"b","Players":[{"PlayerId":"bo"}]}
"#;

    #[test]
    fn a_recording_replays_time_scaled_from_zero() {
        let arrivals = parse("r.jsonl", LINES, 2.0).unwrap();
        assert_eq!(
            arrivals.iter().map(|a| (a.ticket_id.as_str(), a.at_ms)).collect::<Vec<_>>(),
            [("a", 0), ("b", 2000)]
        );
        assert_eq!(arrivals[0].players[0].attributes["skill"], AttributeValue::N(10.0));
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let text = format!(
            "{LINES}{{\"TimeMs\":7000,\"ConfigurationName\":\"c\",\"TicketId\":\"x\",\"Players\":[{{\"PlayerId\":7}}]}}\n"
        );
        let e = parse("r.jsonl", &text, 1.0).unwrap_err().to_string();
        assert!(e.contains("r.jsonl, line 3") && e.contains("Players[0].PlayerId"), "{e}");
        let e = parse("r.jsonl", "\nnot json\n", 1.0).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn the_recorder_writes_lines_the_replay_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.jsonl");
        let recorder = Recorder::create(&path).unwrap();
        let request = StartMatchmakingRequest {
            configuration_name: "c".into(),
            ticket_id: "t1".into(),
            players: vec![Player {
                player_id: "ana".into(),
                attributes: BTreeMap::from([("skill".into(), AttributeValue::N(3.0))]),
                latency_in_ms: BTreeMap::from([("eu-west-1".into(), 30)]),
            }],
        };
        recorder.started(&request, 42);
        let arrivals = replay(&path, 1.0).unwrap();
        assert_eq!(arrivals, vec![Arrival { at_ms: 0, ticket_id: "t1".into(), players: request.players }]);
    }
}
