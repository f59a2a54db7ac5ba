//! The saga views and the interventions: what `flext-saga` and the console's saga pages
//! call.

use uuid::Uuid;

use super::{Intervened, MAX_PAGE, Operations, SagaDetail, SagaPage};
use crate::codes;
use crate::error::{Error, Result};
use crate::input::echo;
use crate::saga::{Intervention, SagaFilter, SagaOutcome, SagaState, now_ms};

impl Operations {
    /// Where every queue of the log stands: how many wait, how many run, and when the
    /// oldest waiting one was enqueued (`flext-saga queues`, the console's
    /// `/api/queues`).
    ///
    /// # Errors
    ///
    /// The log's, when it cannot be read; `flext.saga.queues_unsupported` from a log
    /// that keeps no queues.
    pub async fn queues(&self) -> Result<Vec<crate::saga::QueueDepth>> {
        self.log.queue_depths().await
    }

    /// One page of sagas matching `filter`, at most [`MAX_PAGE`] (a larger or missing
    /// limit is cut to it), and whether more follow.
    ///
    /// # Errors
    ///
    /// The log's, when it cannot be read.
    pub async fn sagas(&self, filter: &SagaFilter) -> Result<SagaPage> {
        let limit = filter.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let mut ask = filter.clone();
        ask.limit = Some(limit + 1);
        let mut sagas = self.log.list(&ask).await?;
        let more = sagas.len() > limit;
        sagas.truncate(limit);
        Ok(SagaPage {
            offset: filter.offset,
            limit,
            more,
            sagas,
        })
    }

    /// The saga `id` names: a whole id, or a prefix (at least one hex digit) only one
    /// saga's id starts with.
    ///
    /// # Errors
    ///
    /// `flext.saga.not_found`: validation when `id` is not an id or a prefix of one, or
    /// when several sagas' ids start with it (naming up to five); not found when none
    /// does.
    pub async fn find(&self, id: &str) -> Result<Uuid> {
        if let Ok(full) = id.trim().parse::<Uuid>() {
            return Ok(full);
        }
        let prefix = id.trim().to_ascii_lowercase();
        if prefix.is_empty()
            || prefix.len() > 36
            || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        {
            return Err(Error::validation(
                codes::SAGA_NOT_FOUND,
                format!(
                    "`{}` is not a saga id: give the id the list shows, or its first characters",
                    echo(id)
                ),
            ));
        }
        let found = self
            .log
            .list(&SagaFilter::default().id_prefix(prefix.clone()).limit(6))
            .await?;
        match found.as_slice() {
            [one] => Ok(one.id),
            [] => Err(Error::not_found(
                codes::SAGA_NOT_FOUND,
                format!("no saga id starts with `{prefix}`"),
            )),
            many => Err(Error::validation(
                codes::SAGA_NOT_FOUND,
                format!(
                    "`{prefix}` starts {} saga ids ({}{}): give more of the id",
                    if many.len() > 5 {
                        "more than 5".to_owned()
                    } else {
                        many.len().to_string()
                    },
                    many.iter()
                        .take(5)
                        .map(|s| s.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if many.len() > 5 { ", ..." } else { "" }
                ),
            )),
        }
    }

    /// One saga (`id` or a unique prefix): its record, its timeline with times,
    /// attempts and errors, the steps of the definition it was logged with, and the
    /// steps an abort would leave done.
    ///
    /// # Errors
    ///
    /// Those of [`find`](Self::find); the log's, when it cannot be read.
    pub async fn saga(&self, id: &str) -> Result<SagaDetail> {
        let id = self.find(id).await?;
        let record = self.log.load(id).await?;
        let history = self.log.history(id).await?;
        Ok(SagaDetail::new(&record, &history, self.show_payloads))
    }

    /// Carries out `intervention` on the saga `id` names (a whole id or a unique
    /// prefix), recorded in the saga's log with its principal and reason. With a runner
    /// ([`for_runner`](Self::for_runner)) a resume or an abort is driven at once, and
    /// the result says how the saga ended; without one, the saga is left for the next
    /// recovery pass of a runner that has its type. Audited whether it is done or
    /// refused.
    ///
    /// # Errors
    ///
    /// Those of [`find`](Self::find) and [`Intervention::check`]; those of
    /// [`Intervention::next_state`] when the log refuses the action (finished, under a
    /// live lease, not stuck, past the pivot); and, when a runner drives the saga,
    /// those of [`SagaRunner::intervene`](crate::saga::SagaRunner::intervene) (`flext.saga.unknown_type` is not one: the
    /// action is recorded and the result says a runner with the type takes it).
    pub async fn intervene(&self, id: &str, intervention: &Intervention) -> Result<Intervened> {
        let target = format!("saga {}", echo(id));
        let result = self.intervene_inner(id, intervention).await;
        self.record_audit(
            intervention.action.as_str(),
            match &result {
                Ok(done) => format!("saga {}", done.saga.id),
                Err(_) => target,
            },
            &intervention.principal,
            &intervention.reason,
            result.as_ref().err(),
        );
        result
    }

    async fn intervene_inner(&self, id: &str, intervention: &Intervention) -> Result<Intervened> {
        intervention.check()?;
        let id = self.find(id).await?;
        let (record, outcome) = match &self.runner {
            Some(runner) => match runner.intervene(id, intervention).await {
                Ok(outcome) => (self.log.load(id).await?, Some(describe(&outcome))),
                Err(e) if e.code() == codes::SAGA_UNKNOWN_TYPE => (self.log.load(id).await?, None),
                Err(e) => return Err(e),
            },
            None => (
                self.log.intervene(id, intervention, None, now_ms()).await?,
                None,
            ),
        };
        let next = match (record.state, &outcome) {
            (_, Some(outcome)) => outcome.clone(),
            (SagaState::Resolved, None) => "resolved: nothing more runs".to_owned(),
            (SagaState::Compensating, None) => {
                "a worker's next recovery pass runs its compensations".to_owned()
            }
            _ => "a worker's next recovery pass runs it".to_owned(),
        };
        Ok(Intervened {
            saga: record.summary(),
            action: intervention.action,
            principal: intervention.principal.clone(),
            next,
        })
    }
}

/// What happens next after a runner drove an intervened saga, in words.
fn describe(outcome: &SagaOutcome<serde_json::Value>) -> String {
    match outcome.state() {
        SagaState::Stuck => "stuck again".to_owned(),
        SagaState::Resolved => "resolved: nothing more runs".to_owned(),
        state => state.as_str().to_owned(),
    }
}
