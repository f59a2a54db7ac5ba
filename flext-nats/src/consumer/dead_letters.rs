//! A consumer's dead letters for the operator views (`flext::operator`): listed from the
//! dead-letter stream, and replayed through the consumer's own handling.

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use flext_runtime::operator::{DeadLetter, DeadLetterControl};
use flext_runtime::{BoxFuture, Error, Result, codes};

use super::{Incoming, Inner, NatsConsumer, failed};
use crate::headers;

/// The most dead-letter stream sequences one listing reads (the stream is shared by
/// every consumer of the source stream).
const MAX_SCAN: u64 = 10_000;

impl Inner {
    async fn dead_letter_stream(&self) -> Result<Stream> {
        let name = self
            .dead_letter_subject
            .rsplit_once('.')
            .map_or(self.dead_letter_subject.as_str(), |(stream, _)| stream);
        self.jetstream
            .get_stream(name)
            .await
            .map_err(|e| failed(format!("dead-letter stream `{name}`: {e}")))
    }

    async fn list_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut stream = self.dead_letter_stream().await?;
        let info = stream
            .info()
            .await
            .map_err(|e| failed(format!("reading the dead-letter stream: {e}")))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let mut out = Vec::new();
        let last = last.min(first.saturating_add(MAX_SCAN));
        for seq in first.max(1)..=last {
            if out.len() >= limit {
                break;
            }
            let message = match stream.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => return Err(failed(format!("reading dead letter {seq}: {e}"))),
            };
            if message.subject.as_str() != self.dead_letter_subject {
                continue;
            }
            let get = |k: &str| message.headers.get(k).map(|v| v.as_str().to_owned());
            out.push(DeadLetter {
                id: seq,
                event_id: message
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|id| original_id(id.as_str()).to_owned()),
                event: get(headers::EVENT_NAME),
                subject: get(headers::SUBJECT).unwrap_or_default(),
                error_code: get(headers::ERROR_CODE).unwrap_or_default(),
                error: get(headers::ERROR).unwrap_or_default(),
                deliveries: get(headers::DELIVERIES)
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0),
                at_ms: u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                payload: serde_json::from_slice(&message.payload).ok(),
            });
        }
        Ok(out)
    }

    async fn replay_dead_letter(&self, id: u64) -> Result<()> {
        let stream = self.dead_letter_stream().await?;
        let unknown = || {
            Error::not_found(
                codes::OPERATOR_UNKNOWN_TARGET,
                format!(
                    "consumer `{}` keeps no dead letter {id}: list them again",
                    self.durable
                ),
            )
        };
        let message = match stream.get_raw_message(id).await {
            Ok(m) if m.subject.as_str() == self.dead_letter_subject => m,
            Ok(_) => return Err(unknown()),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Err(unknown()),
            Err(e) => return Err(failed(format!("reading dead letter {id}: {e}"))),
        };
        // The dead letter's id is the event's with the consumer's name after it (so
        // that the dead-letter stream deduplicates per consumer): the event's own again.
        let mut original = HeaderMap::new();
        for (name, values) in message.headers.iter() {
            for value in values {
                original.append(name.clone(), value.clone());
            }
        }
        if let Some(dead_id) = message.headers.get(async_nats::header::NATS_MESSAGE_ID) {
            original.insert(
                async_nats::header::NATS_MESSAGE_ID,
                original_id(dead_id.as_str()),
            );
        }
        let event = Incoming::parse(Some(&original), &message.payload)?;
        let handled_before = match &self.inbox {
            Some(inbox) => inbox.contains(&self.durable, event.event_id).await?,
            None => false,
        };
        if !handled_before {
            self.dispatch(&event).await?;
            if let Some(inbox) = &self.inbox {
                inbox.record(&self.durable, event.event_id).await?;
            }
        }
        stream
            .delete_message(id)
            .await
            .map_err(|e| failed(format!("removing dead letter {id} after its replay: {e}")))?;
        tracing::info!(consumer = %self.durable, dead_letter = id, event_id = %event.event_id, handled_before, "dead letter replayed");
        Ok(())
    }
}

/// The event id in a dead letter's `Nats-Msg-Id` (`{event id}:{consumer}`).
fn original_id(dead_id: &str) -> &str {
    dead_id.split_once(':').map_or(dead_id, |(id, _)| id)
}

impl DeadLetterControl for NatsConsumer {
    fn name(&self) -> &str {
        &self.inner.durable
    }

    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(self.inner.list_dead_letters(limit))
    }

    fn replay(&self, id: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.inner.replay_dead_letter(id))
    }
}
