//! How a batch of requests runs ([`BatchOptions`]) and what it did ([`BatchReport`],
//! [`Progress`], [`FailureGroup`]).

use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::{Error, Result};

/// How a batch runs: concurrency (async processors), a progress callback, cancellation.
#[derive(Clone)]
pub struct BatchOptions {
    pub(super) concurrency: usize,
    pub(super) progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
    pub(super) cancel: Option<CancellationToken>,
    pub(super) context: Option<Context>,
}

impl Default for BatchOptions {
    /// Eight at a time, no progress callback, not cancellable.
    fn default() -> Self {
        BatchOptions {
            concurrency: 8,
            progress: None,
            cancel: None,
            context: None,
        }
    }
}

impl BatchOptions {
    /// Up to `n` requests at once (async processors; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Calls `progress` after each request, with the counts so far.
    pub fn on_progress(mut self, progress: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Stops starting requests once `token` is cancelled.
    pub fn cancel_with(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Runs every request of the batch under `ctx` (by default a new root context per
    /// batch): a batch is one operation, so its requests share one correlation id, and
    /// each request's span carries its `index`.
    pub fn context(mut self, ctx: Context) -> Self {
        self.context = Some(ctx);
        self
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    pub(super) fn tick<R>(&self, report: &BatchReport<R>) {
        if let Some(progress) = &self.progress {
            progress(Progress {
                done: report.succeeded.len() + report.failed.len(),
                failed: report.failed.len(),
                total: report.total,
            });
        }
    }
}

/// A batch's progress, passed to [`BatchOptions::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Requests finished, successes and failures.
    pub done: usize,
    /// Of which failed.
    pub failed: usize,
    /// How many there are, when known.
    pub total: Option<usize>,
}

/// What a batch did: each success and failure with its request's index in the input.
#[derive(Debug)]
pub struct BatchReport<R> {
    /// Responses, by input index (in input order).
    pub succeeded: Vec<(usize, R)>,
    /// Errors, by input index (in input order).
    pub failed: Vec<(usize, Error)>,
    /// Whether the batch was cancelled before every request ran.
    pub cancelled: bool,
    /// Requests never started because of the cancellation.
    pub not_run: usize,
    total: Option<usize>,
}

impl<R> BatchReport<R> {
    pub(super) fn with_total(total: Option<usize>) -> Self {
        BatchReport {
            succeeded: Vec::new(),
            failed: Vec::new(),
            cancelled: false,
            not_run: 0,
            total,
        }
    }

    pub(super) fn push(&mut self, index: usize, result: Result<R>) {
        match result {
            Ok(r) => self.succeeded.push((index, r)),
            Err(e) => self.failed.push((index, e)),
        }
    }

    /// The failures grouped by error code (a rule violation under each violated rule's
    /// code), each with its count and the input indexes and
    /// messages of the first `examples` of them.
    pub fn failures_by_code(&self, examples: usize) -> Vec<FailureGroup> {
        let mut groups: Vec<FailureGroup> = Vec::new();
        for (index, error) in &self.failed {
            // A rule violation counts under each violated rule's own code, so a row with
            // three violations counts once under each of them.
            let violations = error.violations();
            let codes: Vec<(&str, &str)> = if violations.is_empty() {
                vec![(error.code(), error.message())]
            } else {
                violations
                    .iter()
                    .map(|v| {
                        if v.code.is_empty() {
                            (error.code(), v.message.as_str())
                        } else {
                            (&*v.code, v.message.as_str())
                        }
                    })
                    .collect()
            };
            for (code, message) in codes {
                let at = groups
                    .iter()
                    .position(|g| g.code == code)
                    .unwrap_or_else(|| {
                        groups.push(FailureGroup {
                            code: code.to_owned(),
                            count: 0,
                            examples: Vec::new(),
                        });
                        groups.len() - 1
                    });
                let group = &mut groups[at];
                group.count += 1;
                if group.examples.len() < examples {
                    group.examples.push((*index, message.to_owned()));
                }
            }
        }
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
        groups
    }
}

/// Failures of one error code in a batch; see [`BatchReport::failures_by_code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FailureGroup {
    /// The error code.
    pub code: String,
    /// How many requests failed with it.
    pub count: usize,
    /// The first few: input index and message.
    pub examples: Vec<(usize, String)>,
}
