//! SNS delivery of FlexMatch's events to the events function, in the shape Lambda receives
//! from an SNS subscription.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use matchgate_protocol::flexmatch::MatchmakingEvent;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::apigw::Integration;

/// The integration target events are delivered to.
pub const EVENTS_TARGET: &str = "events";

/// Wraps one FlexMatch event as the `SNSEvent` a subscribed Lambda receives.
pub fn sns_event(topic_arn: &str, event: &MatchmakingEvent) -> Value {
    let message = serde_json::to_string(event).unwrap_or_default();
    let message_id = uuid::Uuid::new_v4().to_string();
    json!({
        "Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": format!("{topic_arn}:{}", uuid::Uuid::new_v4()),
            "Sns": {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic_arn,
                "Subject": null,
                "Message": message,
                "Timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                "SignatureVersion": "1",
                "Signature": "",
                "SigningCertUrl": "",
                "UnsubscribeUrl": "",
                "MessageAttributes": {}
            }
        }]
    })
}

/// Delivers events one at a time, in the order FlexMatch produced them, until the sender is
/// dropped. A failed delivery is logged; the backstop recovers what it would have said.
pub fn spawn_delivery(
    topic_arn: String,
    integration: Arc<dyn Integration>,
    mut events: mpsc::UnboundedReceiver<MatchmakingEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let payload = sns_event(&topic_arn, &event);
            if let Err(e) = integration.invoke(EVENTS_TARGET, payload).await {
                tracing::warn!(event_id = event.id, error = %e, "event delivery failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::sns::SnsEvent;

    use super::*;

    #[test]
    fn wraps_as_the_lambda_sns_event_type() {
        let text = include_str!("../../../protocol/tests/fixtures/flexmatch/MatchmakingSucceeded.json");
        let event = MatchmakingEvent::from_sns_message(text).unwrap();
        let sns: SnsEvent = serde_json::from_value(sns_event("arn:aws:sns:us-east-1:000000000000:t", &event)).unwrap();
        let inner = MatchmakingEvent::from_sns_message(&sns.records[0].sns.message).unwrap();
        assert_eq!(inner, event);
    }
}
