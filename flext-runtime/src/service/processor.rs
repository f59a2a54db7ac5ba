//! Service processors: the source documents' `ServiceProcessor[Request, Domain, Result]`,
//! a template method (Gamma et al., "Design Patterns", 1994) whose user writes `process`
//! (the business logic) and `build` (a pure mapping to the response), and gets `run`,
//! `process_json` and `run_batch` with a span, metrics and correlation ids.

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
pub use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::batch::{BatchOptions, BatchReport};
use super::metrics::ServiceStats;
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;

/// A synchronous service processor: `process` turns a request into a domain value or an
/// error, `build` turns the domain value into the response; `rules` (by default none,
/// written by `#[business_rules]`) checks the request first. The provided methods run
/// them.
///
/// ```
/// use flext::prelude::*;
/// use flext::service::{BatchOptions, ServiceProcessor};
///
/// #[derive(serde::Deserialize)]
/// struct Signup { email: String, age: u32 }
///
/// struct Signups;
///
/// // `#[business_rules]` is optional: it writes `rules` from the `#[business_rule]`s.
/// #[business_rules]
/// impl ServiceProcessor for Signups {
///     type Request = Signup;
///     type Domain = (String, u32);
///     type Response = String;
///     fn name(&self) -> &str { "signups" }
///
///     #[business_rule(code = "signup.email")]
///     fn email_has_an_at(&self, s: &Signup) -> RuleResult {
///         ensure!(s.email.contains('@'), "an email needs an @")
///     }
///
///     #[business_rule(code = "signup.age")]
///     fn old_enough(&self, s: &Signup) -> RuleResult {
///         ensure!(s.age >= 16, "signups start at 16")
///     }
///
///     fn process(&self, s: &Signup, _: &Context) -> Result<(String, u32)> {
///         Ok((s.email.to_lowercase(), s.age))
///     }
///     fn build(&self, (email, age): (String, u32), correlation_id: Uuid) -> String {
///         format!("{email} ({age}) [{correlation_id}]")
///     }
/// }
///
/// let ctx = Context::new();
/// assert!(Signups.process_json(r#"{"email": "Ada@x.io", "age": 36}"#, &ctx).unwrap().starts_with("ada@x.io (36)"));
/// let bad = Signups.process_json(r#"{"email": "Ada@x.io", "age": "old"}"#, &ctx).unwrap_err();
/// assert_eq!(bad.code(), flext::codes::INPUT_INVALID_FIELD);
///
/// // Every rule runs, and every violation is reported.
/// let err = Signups.run(&Signup { email: "nope".into(), age: 3 }, &ctx).unwrap_err();
/// assert_eq!(err.violations().len(), 2);
///
/// let batch = Signups.run_batch(
///     vec![Signup { email: "a@x".into(), age: 21 }, Signup { email: "nope".into(), age: 22 }],
///     &BatchOptions::default(),
/// );
/// assert_eq!(batch.succeeded.len(), 1);
/// assert_eq!(batch.failed[0].0, 1, "the failure keeps its input's index");
/// ```
pub trait ServiceProcessor: Send + Sync {
    /// What a caller sends.
    type Request;
    /// The business result `process` produces.
    type Domain;
    /// What the caller gets back.
    type Response;

    /// The processor's name: its span's, its metrics' and its input errors' label.
    fn name(&self) -> &str;

    /// The business logic.
    ///
    /// # Errors
    ///
    /// The processor's own: a rule the request breaks, a failed dependency.
    fn process(&self, request: &Self::Request, ctx: &Context) -> Result<Self::Domain>;

    /// Builds the response from the domain value; pure, given the correlation id.
    fn build(&self, domain: Self::Domain, correlation_id: Uuid) -> Self::Response;

    /// The processor's business rules, run on each request before
    /// [`process`](Self::process); by default none. Written by `#[business_rules]` on
    /// the `impl` from its `#[business_rule]` methods.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation) with every
    /// violation.
    fn rules(&self, request: &Self::Request, ctx: &Context) -> Result<()> {
        let _ = (request, ctx);
        Ok(())
    }

    /// Runs `process` then `build` in a `tracing` span carrying the name and correlation
    /// id, counting the run and its latency (see [`MetricsReport`](super::MetricsReport)
    /// and the `metrics` facade: `flext_service_runs_total`, `flext_service_failures_total`).
    ///
    /// # Errors
    ///
    /// `process`'s error.
    fn run(&self, request: &Self::Request, ctx: &Context) -> Result<Self::Response> {
        run_with(self, &ServiceStats::named(self.name()), request, ctx)
    }

    /// Decodes `json` as the request (through [`flext::input`](crate::input): a bad
    /// document or a wrong-typed field is an error naming the field, with the untrusted
    /// text echoed bounded and escaped), then [`run`](Self::run)s it.
    ///
    /// # Errors
    ///
    /// `flext.input.*` for input that does not decode; `process`'s error.
    fn process_json(&self, json: &str, ctx: &Context) -> Result<Self::Response>
    where
        Self::Request: DeserializeOwned,
    {
        let request = crate::input::from_json::<Self::Request>(self.name(), json)?;
        self.run(&request, ctx)
    }

    /// Runs every request in order under the batch's context ([`BatchOptions::context`],
    /// or one new root context: a batch is one operation, so its requests share one
    /// correlation id, and each request's span carries its `index`), collecting successes
    /// and failures with their input's index; calls the progress callback after each and
    /// stops early when the cancellation token is cancelled (the rest are counted in
    /// [`BatchReport::not_run`]). Every request is counted in the
    /// [`MetricsReport`](super::MetricsReport) when the batch ends, and one in 8 is timed
    /// for its latency percentiles.
    fn run_batch<I>(&self, requests: I, options: &BatchOptions) -> BatchReport<Self::Response>
    where
        I: IntoIterator<Item = Self::Request>,
    {
        let stats = ServiceStats::named(self.name());
        let own;
        let ctx = match &options.context {
            Some(ctx) => ctx,
            None => {
                own = Context::new();
                &own
            }
        };
        let mut recorder = stats.batch();
        let requests = requests.into_iter();
        let mut report = BatchReport::with_total(requests.size_hint().1);
        let mut requests = requests.enumerate();
        for (index, request) in requests.by_ref() {
            if options.is_cancelled() {
                report.cancelled = true;
                report.not_run = 1;
                break;
            }
            let span = tracing::info_span!("service_processor", service = self.name(), correlation_id = %ctx.correlation_id(), index);
            let entered = span.enter();
            let started = recorder.start();
            let domain = self
                .rules(&request, ctx)
                .and_then(|()| self.process(&request, ctx));
            recorder.item(started, domain.is_err());
            report.push(index, domain.map(|d| self.build(d, ctx.correlation_id())));
            drop(entered);
            options.tick(&report);
        }
        drop(recorder);
        report.not_run += requests.count();
        report
    }
}

/// `run` with the stats resolved once (a batch resolves them once for all its items).
fn run_with<P: ServiceProcessor + ?Sized>(
    processor: &P,
    stats: &ServiceStats,
    request: &P::Request,
    ctx: &Context,
) -> Result<P::Response> {
    let span = tracing::info_span!("service_processor", service = processor.name(), correlation_id = %ctx.correlation_id());
    let _entered = span.enter();
    let started = stats.start();
    let domain = processor
        .rules(request, ctx)
        .and_then(|()| processor.process(request, ctx));
    stats.record(started, domain.as_ref().err());
    Ok(processor.build(domain?, ctx.correlation_id()))
}

/// An asynchronous service processor: as [`ServiceProcessor`], with an async `process`;
/// its batches run up to [`BatchOptions::concurrency`] requests at once.
///
/// ```
/// use flext::prelude::*;
/// use flext::BoxFuture;
/// use flext::service::{AsyncServiceProcessor, BatchOptions};
///
/// struct Doubler;
///
/// impl AsyncServiceProcessor for Doubler {
///     type Request = u32;
///     type Domain = u32;
///     type Response = u32;
///     fn name(&self) -> &str { "doubler" }
///     fn process<'a>(&'a self, n: &'a u32, _: &'a Context) -> BoxFuture<'a, Result<u32>> {
///         Box::pin(async move { n.checked_mul(2).ok_or_else(|| Error::validation("doubler.overflow", "too large")) })
///     }
///     fn build(&self, n: u32, _: Uuid) -> u32 { n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let report = Doubler.run_batch(vec![1, u32::MAX, 3], &BatchOptions::default().concurrency(2)).await;
/// assert_eq!(report.succeeded, vec![(0, 2), (2, 6)], "in input order");
/// assert_eq!(report.failed[0].1.code(), "doubler.overflow");
/// # }
/// ```
pub trait AsyncServiceProcessor: Send + Sync {
    /// What a caller sends.
    type Request: Send + Sync;
    /// The business result `process` produces.
    type Domain: Send;
    /// What the caller gets back.
    type Response: Send;

    /// The processor's name: its span's, its metrics' and its input errors' label.
    fn name(&self) -> &str;

    /// The business logic.
    ///
    /// # Errors
    ///
    /// The processor's own.
    fn process<'a>(
        &'a self,
        request: &'a Self::Request,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Domain>>;

    /// Builds the response from the domain value; pure, given the correlation id.
    fn build(&self, domain: Self::Domain, correlation_id: Uuid) -> Self::Response;

    /// The processor's business rules, run on each request before
    /// [`process`](Self::process); by default none. Written by `#[business_rules]` on
    /// the `impl` from its `#[business_rule]` methods.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation) with every
    /// violation.
    fn rules(&self, request: &Self::Request, ctx: &Context) -> Result<()> {
        let _ = (request, ctx);
        Ok(())
    }

    /// Runs `process` then `build`, as [`ServiceProcessor::run`].
    ///
    /// # Errors
    ///
    /// `process`'s error.
    fn run<'a>(
        &'a self,
        request: &'a Self::Request,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Response>> {
        Box::pin(async move {
            let stats = ServiceStats::named(self.name());
            run_async_with(self, &stats, request, ctx).await
        })
    }

    /// Decodes `json` as the request, then [`run`](Self::run)s it.
    ///
    /// # Errors
    ///
    /// `flext.input.*` for input that does not decode; `process`'s error.
    fn process_json<'a>(
        &'a self,
        json: &'a str,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Response>>
    where
        Self::Request: DeserializeOwned,
    {
        Box::pin(async move {
            let request = crate::input::from_json::<Self::Request>(self.name(), json)?;
            self.run(&request, ctx).await
        })
    }

    /// Runs the requests, up to `options`' concurrency at once, under the batch's context
    /// ([`BatchOptions::context`], or one new root context: one correlation id for the
    /// batch), collecting successes and failures with their input's index (sorted by
    /// index); progress after each; no new request starts once the cancellation token is
    /// cancelled (those in flight finish).
    fn run_batch<'a>(
        &'a self,
        requests: Vec<Self::Request>,
        options: &'a BatchOptions,
    ) -> BoxFuture<'a, BatchReport<Self::Response>>
    where
        Self::Request: 'a,
    {
        Box::pin(async move {
            let stats = ServiceStats::named(self.name());
            let mut report = BatchReport::with_total(Some(requests.len()));
            let total = requests.len();
            let stats = &stats;
            let batch_ctx = options.context.clone().unwrap_or_default();
            let ctx = &batch_ctx;
            let mut results = futures_util::stream::iter(requests.into_iter().enumerate())
                .take_while(|_| std::future::ready(!options.is_cancelled()))
                .map(|(index, request)| async move {
                    (index, run_async_with(self, stats, &request, ctx).await)
                })
                .buffer_unordered(options.concurrency);
            let mut ran = 0;
            while let Some((index, result)) = results.next().await {
                ran += 1;
                report.push(index, result);
                options.tick(&report);
            }
            report.succeeded.sort_by_key(|(i, _)| *i);
            report.failed.sort_by_key(|(i, _)| *i);
            report.not_run = total - ran;
            report.cancelled = report.not_run > 0;
            report
        })
    }
}

async fn run_async_with<P: AsyncServiceProcessor + ?Sized>(
    processor: &P,
    stats: &ServiceStats,
    request: &P::Request,
    ctx: &Context,
) -> Result<P::Response> {
    use tracing::Instrument;
    let span = tracing::info_span!("service_processor", service = processor.name(), correlation_id = %ctx.correlation_id());
    let started = stats.start();
    let domain = match processor.rules(request, ctx) {
        Ok(()) => processor.process(request, ctx).instrument(span).await,
        Err(e) => Err(e),
    };
    stats.record(started, domain.as_ref().err());
    Ok(processor.build(domain?, ctx.correlation_id()))
}
