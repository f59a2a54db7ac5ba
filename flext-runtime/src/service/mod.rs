//! Domain services: the traits `#[domain_service]` implements and the rule and step driver
//! its generated code calls.
//!
//! A domain service is the source documents' `FlextDomainService`: a struct whose fields
//! are the inputs, business rules that check them, and a railway of steps where each
//! step's output feeds the next and the first failure ends the run (Scott Wlaschin's
//! "railway-oriented programming"; here the rails are `Result` and `?`).

use std::future::Future;

mod batch;
mod driver;
mod metrics;
mod processor;

use crate::context::Context;
use crate::error::{Error, ErrorKind, Result, RuleViolation};
pub use batch::{BatchOptions, BatchReport, FailureGroup, Progress};
#[doc(hidden)]
pub use driver::{Rules, run_async, run_sync, service_span, step, step_input, undo, undo_input};
#[doc(hidden)]
pub use metrics::ServiceStats;
pub use metrics::{MetricsReport, ServiceReport};
pub use processor::{AsyncServiceProcessor, CancellationToken, ServiceProcessor};

/// A domain service: validates its inputs with business rules, then runs its steps.
///
/// Implemented by `#[domain_service]`; implement it by hand only for services the macro
/// cannot express. `execute` runs the rules in their declared order, then the steps, then
/// the postconditions, inside a `tracing` span named after the service that carries the
/// correlation id; a failure is passed through the service's error hook, if it has one,
/// before it is returned.
///
/// # Errors
///
/// - [`ErrorKind::RuleViolation`] with every [`Error::violations`] when business rules
///   fail (only the first one in fail-fast mode), or when postconditions fail.
/// - Whatever error a rule aborts with, or a step or the error hook returns.
///
/// # Example
///
/// ```
/// use flext::prelude::*;
///
/// struct Greet { name: String }
///
/// #[domain_service]
/// impl Greet {
///     #[business_rule(code = "greet.name.required")]
///     fn name_given(&self) -> RuleResult {
///         ensure!(!self.name.is_empty(), "a name is required")
///     }
///
///     #[step]
///     fn greet(&self) -> Result<String> {
///         Ok(format!("hello, {}", self.name))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ctx = Context::new();
/// assert_eq!(Greet { name: "Ada".into() }.execute(&ctx).await.unwrap(), "hello, Ada");
/// let err = Greet { name: String::new() }.execute(&ctx).await.unwrap_err();
/// assert_eq!(err.code(), "greet.name.required");
/// # }
/// ```
pub trait DomainService {
    /// What a successful run returns: the output of the last step.
    type Output;

    /// The service's name, as used for its `tracing` span.
    const NAME: &'static str;

    /// Runs the service under `ctx`. See the trait documentation for the order of
    /// effects and the errors.
    fn execute(&self, ctx: &Context) -> impl Future<Output = Result<Self::Output>>;
}

/// The blocking form of [`DomainService`], implemented by `#[domain_service]` when no
/// rule, step, tap, postcondition or error hook is `async`.
///
/// ```
/// use flext::prelude::*;
///
/// struct Double(u32);
///
/// #[domain_service]
/// impl Double {
///     #[step]
///     fn double(&self) -> Result<u32> { Ok(self.0 * 2) }
/// }
///
/// assert_eq!(Double(21).execute_sync(&Context::new()).unwrap(), 42);
/// ```
pub trait SyncDomainService: DomainService {
    /// Runs the service on the current thread; same effects and errors as
    /// [`DomainService::execute`].
    fn execute_sync(&self, ctx: &Context) -> Result<Self::Output>;
}

/// Whether rule evaluation stops at the first violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMode {
    /// Evaluate every rule and report every violation (the default).
    CollectAll,
    /// Stop at the first violated rule.
    FailFast,
}

/// The result of one rule, normalised. See [`RuleOutcome`].
#[derive(Debug)]
pub enum Verdict {
    /// The rule holds.
    Holds,
    /// The rule is broken once.
    Violation(RuleViolation),
    /// The rule is broken in several ways.
    Violated(Vec<RuleViolation>),
    /// The rule could not be evaluated (for example its repository failed); the service
    /// stops with this error whatever the [`RuleMode`].
    Aborted(Error),
}

/// The return types a `#[business_rule]` or `#[postcondition]` may have.
///
/// - [`RuleResult`](crate::RuleResult) = `Result<(), RuleViolation>`: one violation.
/// - `Result<(), Vec<RuleViolation>>`: several violations from one rule (an empty vector
///   counts as holding).
/// - [`Result<()>`](crate::Result) = `Result<(), Error>`: an error of kind
///   [`ErrorKind::RuleViolation`] counts as its violations; any other kind aborts the
///   service.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a business-rule result",
    label = "a `#[business_rule]` or `#[postcondition]` must return `flext::RuleResult`",
    note = "return `RuleResult` (that is `Result<(), RuleViolation>`), `Result<(), Vec<RuleViolation>>`, or `flext::Result<()>` to abort on an infrastructure error"
)]
pub trait RuleOutcome {
    /// Whether the rule holds; the driver's fast path.
    fn holds(&self) -> bool;
    /// Normalises the rule's return value.
    fn verdict(self) -> Verdict;
}

impl RuleOutcome for std::result::Result<(), RuleViolation> {
    #[inline]
    fn holds(&self) -> bool {
        self.is_ok()
    }
    #[inline]
    fn verdict(self) -> Verdict {
        match self {
            Ok(()) => Verdict::Holds,
            Err(v) => Verdict::Violation(v),
        }
    }
}

impl RuleOutcome for std::result::Result<(), Vec<RuleViolation>> {
    #[inline]
    fn holds(&self) -> bool {
        self.as_ref().map_or_else(Vec::is_empty, |()| true)
    }
    #[inline]
    fn verdict(self) -> Verdict {
        match self {
            Ok(()) => Verdict::Holds,
            Err(v) if v.is_empty() => Verdict::Holds,
            Err(v) => Verdict::Violated(v),
        }
    }
}

impl RuleOutcome for Result<()> {
    #[inline]
    fn holds(&self) -> bool {
        self.is_ok()
    }
    #[inline]
    fn verdict(self) -> Verdict {
        match self {
            Ok(()) => Verdict::Holds,
            Err(e) if e.kind() == ErrorKind::RuleViolation && !e.violations().is_empty() => {
                Verdict::Violated(e.violations().to_vec())
            }
            Err(e) => Verdict::Aborted(e),
        }
    }
}

/// The return types a `#[step]` may have: `Result<T, E>` for any `E: Into<Error>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a step result",
    label = "a `#[step]` must return `flext::Result<T>`",
    note = "return `flext::Result<T>` (or `Result<T, E>` where `E: Into<flext::Error>`); the `T` is passed to the next step"
)]
pub trait StepOutcome {
    /// The value passed to the next step.
    type Output;
    /// Converts the step's return value into a flext result.
    fn into_result(self) -> Result<Self::Output>;
}

impl<T, E: Into<Error>> StepOutcome for std::result::Result<T, E> {
    type Output = T;
    #[inline]
    fn into_result(self) -> Result<T> {
        self.map_err(Into::into)
    }
}
