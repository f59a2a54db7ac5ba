//! The rule and step driver generated code calls: rule accumulation, step results,
//! undos, and the service span.

use std::future::Future;

use super::{RuleMode, RuleOutcome, StepOutcome, Verdict};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result, RuleViolation};

/// Accumulates the verdicts of a service's rules. Used by generated code.
#[derive(Debug)]
pub struct Rules {
    mode: RuleMode,
    violations: Vec<RuleViolation>,
    /// The first rule that failed, recorded on the span once rule evaluation ends.
    first_failed: Option<&'static str>,
}

impl Rules {
    /// An empty accumulator.
    #[inline]
    pub fn new(mode: RuleMode) -> Self {
        Rules {
            mode,
            violations: Vec::new(),
            first_failed: None,
        }
    }

    /// Records the verdict of the rule `name` (method name) whose attribute code is
    /// `code`; violations without a code of their own take `code`.
    ///
    /// # Errors
    ///
    /// The rule's abort error; in [`RuleMode::FailFast`], the rule's violations.
    #[inline]
    pub fn check(
        &mut self,
        name: &'static str,
        code: &'static str,
        outcome: impl RuleOutcome,
    ) -> Result<()> {
        if outcome.holds() {
            Ok(())
        } else {
            self.failed(name, code, outcome.verdict())
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&mut self, name: &'static str, code: &'static str, verdict: Verdict) -> Result<()> {
        match verdict {
            Verdict::Holds => Ok(()),
            Verdict::Aborted(e) => {
                record_failure("rule", name, &e);
                Err(e)
            }
            // One violation, the common case, is pushed as it is: going through
            // `extend` with an iterator cost about a tenth of a rejected `execute`
            // (`cargo bench --bench domain_service`).
            Verdict::Violation(mut v) => {
                v.default_code(code);
                self.first_failed.get_or_insert(name);
                self.violations.push(v);
                self.violated()
            }
            Verdict::Violated(vs) => {
                self.first_failed.get_or_insert(name);
                self.violations.extend(vs.into_iter().map(|mut v| {
                    v.default_code(code);
                    v
                }));
                self.violated()
            }
        }
    }

    /// What a violation does in this mode: nothing yet, or stop with every violation.
    fn violated(&mut self) -> Result<()> {
        match self.mode {
            RuleMode::CollectAll => Ok(()),
            RuleMode::FailFast => Err(self.violated_error()),
        }
    }

    #[cold]
    #[inline(never)]
    fn violated_error(&mut self) -> Error {
        let error = Error::rule_violations(std::mem::take(&mut self.violations));
        record_failure("rule", self.first_failed.unwrap_or("?"), &error);
        error
    }

    /// Ends rule evaluation. Takes `&mut self` rather than `self`: moving the
    /// accumulator would copy it through the stack on every call, which costs more than
    /// all of a small service's rules (a store-forwarding stall).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`] carrying every violation recorded, if any.
    #[inline]
    pub fn finish(&mut self) -> Result<()> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self.violated_error())
        }
    }
}

/// Converts a step's return value, recording the step name on the service span when it
/// failed. Used by generated code.
///
/// # Errors
///
/// The step's error, converted into [`Error`].
#[inline]
pub fn step<O: StepOutcome>(name: &'static str, outcome: O) -> Result<O::Output> {
    match outcome.into_result() {
        Ok(v) => Ok(v),
        Err(e) => Err(step_failed(name, e)),
    }
}

#[cold]
#[inline(never)]
fn step_failed(name: &'static str, e: Error) -> Error {
    record_failure("step", name, &e);
    e
}

/// The span a domain service runs in: `domain_service`, with the service's name, the
/// context's correlation id, and `failed_at`, which records the rule or step that
/// failed. Used by generated code.
#[doc(hidden)]
#[inline]
pub fn service_span(name: &'static str, ctx: &Context) -> tracing::Span {
    // With INFO off, leave before `info_span!` looks at its callsite: that callsite sits
    // in this crate, not the caller's, and reaching it cost ~0.5 ns per `execute` in
    // `cargo bench --bench domain_service` (generated / hand-written 1.08 without this
    // check, 0.97 with it).
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "domain_service",
        service = name,
        correlation_id = %ctx.correlation_id(),
        failed_at = tracing::field::Empty,
    )
}

/// Runs a synchronous service's body inside its span. Used by generated code.
#[doc(hidden)]
#[inline]
pub fn run_sync<T>(
    name: &'static str,
    ctx: &Context,
    body: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let span = service_span(name, ctx);
    let _entered = span.enter();
    body()
}

/// Runs an async service's body inside its span. Used by generated code.
#[doc(hidden)]
#[inline]
pub fn run_async<T>(
    name: &'static str,
    ctx: &Context,
    body: impl Future<Output = Result<T>>,
) -> impl Future<Output = Result<T>> {
    tracing::Instrument::instrument(body, service_span(name, ctx))
}

/// Runs the undo of a completed step after a later failure: returns `error` when the
/// undo succeeded, and when it failed an error of kind
/// [`ErrorKind::CompensationFailed`] (code `flext.service.undo_failed`) that names the
/// undo and carries `error` as its source, so that the caller knows the rollback is
/// incomplete. Used by generated code.
#[doc(hidden)]
pub fn undo<O: StepOutcome>(error: Error, name: &'static str, outcome: O) -> Error {
    match outcome.into_result() {
        Ok(_) => error,
        Err(failed) => undo_failed(error, name, failed),
    }
}

#[cold]
#[inline(never)]
fn undo_failed(error: Error, name: &'static str, failed: Error) -> Error {
    tracing::error!(undo = name, error = %failed, cause = %error, "undo failed after a failed step");
    Error::new(
        ErrorKind::CompensationFailed,
        crate::codes::SERVICE_UNDO_FAILED,
        format!("undo `{name}` failed ({failed}) while rolling back after: {error}"),
    )
    .with_source(error)
}

fn record_failure(what: &'static str, name: &'static str, e: &Error) {
    // The service span is INFO: when INFO is off there is no span to record on, and
    // looking up the current span would be the most expensive part of a failure.
    if tracing::level_enabled!(tracing::Level::INFO) {
        tracing::Span::current().record("failed_at", name);
    }
    tracing::debug!(failed = what, name, code = e.code(), error = %e, "domain service failed");
}

/// A step's input is the previous step's output: `V` must be `P`, the type the step's
/// parameter names. `S` is a marker type named after the previous step, so that a
/// mismatch says which step's output it is. Used by generated code.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this step takes `{P}`, but the step before it, `{S}`, returns `{Self}`",
    label = "the output of `{S}` is a `{Self}`",
    note = "take `{Self}` here, or make `{S}` return `{P}`"
)]
pub trait OutputOfStep<P, S> {
    /// The output, as the step's input.
    fn into_input(self) -> P;
}

impl<T, S> OutputOfStep<T, S> for T {
    #[inline]
    fn into_input(self) -> T {
        self
    }
}

/// See [`OutputOfStep`].
#[doc(hidden)]
#[inline]
pub fn step_input<S, P, V: OutputOfStep<P, S>>(value: V) -> P {
    value.into_input()
}

/// An undo's input is a reference to its step's output: `V` must be `P`, the type the
/// undo's parameter names; `S` is a marker type named after the step. Used by generated
/// code.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "this undo takes `{P}`, but the step it undoes, `{S}`, gives it `{Self}`",
    label = "`{S}` gives a `{Self}`",
    note = "take `{Self}` here: an undo receives its step's output by reference"
)]
pub trait UndoneOutput<P, S> {
    /// The reference, as the undo's input.
    fn into_input(self) -> P;
}

impl<T, S> UndoneOutput<T, S> for T {
    #[inline]
    fn into_input(self) -> T {
        self
    }
}

/// `&String` as `&str`, the coercion a `let` would make.
#[diagnostic::do_not_recommend]
impl<'a, S> UndoneOutput<&'a str, S> for &'a String {
    #[inline]
    fn into_input(self) -> &'a str {
        self
    }
}

/// `&Vec<T>` as `&[T]`, the coercion a `let` would make.
#[diagnostic::do_not_recommend]
impl<'a, T, S> UndoneOutput<&'a [T], S> for &'a Vec<T> {
    #[inline]
    fn into_input(self) -> &'a [T] {
        self
    }
}

/// See [`UndoneOutput`].
#[doc(hidden)]
#[inline]
pub fn undo_input<S, P, V: UndoneOutput<P, S>>(value: V) -> P {
    value.into_input()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_all_keeps_every_violation_in_order() {
        let mut rules = Rules::new(RuleMode::CollectAll);
        rules
            .check("a", "c.a", Err::<(), _>(RuleViolation::new("first")))
            .unwrap();
        rules
            .check("b", "c.b", Ok::<(), RuleViolation>(()))
            .unwrap();
        rules
            .check(
                "c",
                "c.c",
                Err::<(), _>(vec![
                    RuleViolation::new("second"),
                    RuleViolation::new("third").with_code("own.code"),
                ]),
            )
            .unwrap();
        let e = rules.finish().unwrap_err();
        let codes: Vec<_> = e.violations().iter().map(|v| v.code.as_ref()).collect();
        assert_eq!(codes, ["c.a", "c.c", "own.code"]);
    }

    #[test]
    fn fail_fast_stops_at_the_first_violation() {
        let mut rules = Rules::new(RuleMode::FailFast);
        let e = rules
            .check("a", "c.a", Err::<(), _>(RuleViolation::new("first")))
            .unwrap_err();
        assert_eq!(e.code(), "c.a");
        assert!(rules.finish().is_ok(), "the violation moved into the error");
    }

    #[test]
    fn an_infrastructure_error_aborts_even_when_collecting() {
        let mut rules = Rules::new(RuleMode::CollectAll);
        let e = rules
            .check(
                "a",
                "c.a",
                Err::<(), _>(Error::infrastructure("db.down", "no db")),
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Infrastructure);
    }

    #[test]
    fn an_error_of_kind_rule_violation_counts_as_violations() {
        let mut rules = Rules::new(RuleMode::CollectAll);
        let err: Error = RuleViolation::new("x").into();
        rules.check("a", "c.a", Err::<(), _>(err)).unwrap();
        assert_eq!(rules.finish().unwrap_err().violations().len(), 1);
    }

    #[test]
    fn step_converts_foreign_errors() {
        #[derive(Debug)]
        struct Mine;
        impl From<Mine> for Error {
            fn from(_: Mine) -> Error {
                Error::conflict("mine", "mine")
            }
        }
        let e = step("s", Err::<u8, _>(Mine)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(step("s", Ok::<u8, Mine>(3)).unwrap(), 3);
    }
}
