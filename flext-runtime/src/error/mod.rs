//! [`Error`], [`ErrorKind`], [`RuleViolation`] and the result aliases every flext call
//! returns.
//!
//! This is the typed form of the source documents' `FlextResult`: instead of a failure
//! string, a failure carries a [`ErrorKind`] to branch on, a stable machine-readable code
//! for logs and API clients, a message for people, every [`RuleViolation`] when business
//! rules failed, and the underlying source error when one exists.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

mod record;
mod violation;

pub use record::ErrorRecord;
pub use violation::RuleViolation;

/// `std::result::Result` with [`Error`] as the error type; what every flext service, step
/// and handler returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a `#[business_rule]` or `#[postcondition]` method returns: `Ok(())` when the rule
/// holds, `Err(violation)` when it does not.
///
/// A rule may also return `Result<(), Vec<RuleViolation>>` to report several violations
/// at once, or [`Result<()>`] (with [`Error`]) to abort the service on an infrastructure
/// failure; see [`RuleOutcome`](crate::service::RuleOutcome).
pub type RuleResult = std::result::Result<(), RuleViolation>;

/// The boxed source error an [`Error`] may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, coarsely: the kind decides how a caller reacts (retry, show the user,
/// page an operator). The fine-grained reason is [`Error::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is malformed: bad JSON, a wrong field type, a missing field.
    Validation,
    /// The input is well-formed but breaks one or more business rules; see
    /// [`Error::violations`].
    RuleViolation,
    /// Something the call needs does not exist.
    NotFound,
    /// The call lost a race or would duplicate existing state (for example an email that
    /// is already registered, or an optimistic-concurrency check that failed).
    Conflict,
    /// The principal in the context may not do this.
    Unauthorized,
    /// The deadline passed before the call finished.
    Timeout,
    /// A database, network or other dependency failed; usually worth retrying.
    Infrastructure,
    /// A compensation (undo) of an earlier step failed; state may need an operator.
    CompensationFailed,
    /// A bug: an invariant of flext or of the user's code did not hold (for example a
    /// handler panicked).
    Internal,
}

impl ErrorKind {
    /// The kind as a stable lower-case string, as it appears in logs and JSON.
    ///
    /// ```
    /// assert_eq!(flext::ErrorKind::RuleViolation.as_str(), "rule_violation");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validation",
            ErrorKind::RuleViolation => "rule_violation",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Infrastructure => "infrastructure",
            ErrorKind::CompensationFailed => "compensation_failed",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of flext: a [`kind`](Self::kind), a stable [`code`](Self::code), a
/// [`message`](Self::message), the [`violations`](Self::violations) when business rules
/// failed, and the [`source`](std::error::Error::source) error when one exists.
///
/// `Display` prints `[code] message`, followed by the violations when there are several.
///
/// ```
/// use flext::{Error, ErrorKind, RuleViolation};
///
/// let e = Error::not_found("user.not_found", "no user with id 42");
/// assert_eq!(e.kind(), ErrorKind::NotFound);
/// assert_eq!(e.code(), "user.not_found");
/// assert_eq!(e.to_string(), "[user.not_found] no user with id 42");
///
/// let e = Error::rule_violations(vec![
///     RuleViolation::new("invalid format").with_code("user.email.format"),
///     RuleViolation::new("too short").with_code("user.password.length"),
/// ]);
/// assert_eq!(e.kind(), ErrorKind::RuleViolation);
/// assert_eq!(e.violations().len(), 2);
/// assert_eq!(
///     e.to_string(),
///     "[flext.rule.violated] 2 business rules violated: \
///      [user.email.format] invalid format; [user.password.length] too short"
/// );
/// ```
///
/// An `Error` is one pointer wide (its parts live in one allocation), so that
/// `Result<(), Error>` stays cheap to return through every `?` of a service.
#[derive(thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Inner>);

#[derive(Debug, thiserror::Error)]
#[error("{}", DisplayError(self))]
struct Inner {
    kind: ErrorKind,
    code: Cow<'static, str>,
    message: String,
    violations: Vec<RuleViolation>,
    /// Separate problems reported together (see [`Error::related`]).
    related: Vec<Error>,
    #[source]
    source: Option<BoxError>,
}

struct DisplayError<'a>(&'a Inner);

impl fmt::Display for DisplayError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(f, "[{}] {}", e.code, e.message)?;
        // One violation already lent the error its code, subject and message.
        if e.violations.len() > 1 {
            f.write_str(": ")?;
            for (i, v) in e.violations.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{v}")?;
            }
        }
        if !e.related.is_empty() {
            f.write_str(": ")?;
            for (i, r) in e.related.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "({}) {r}", r.kind())?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("code", &self.0.code)
            .field("message", &self.0.message);
        if !self.0.violations.is_empty() {
            d.field("violations", &self.0.violations);
        }
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl Error {
    /// An error of `kind` with a stable `code` (such as `user.email.taken`) and a message
    /// for people.
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Error(Box::new(Inner {
            kind,
            code: code.into(),
            message: message.into(),
            violations: Vec::new(),
            related: Vec::new(),
            source: None,
        }))
    }

    /// An [`ErrorKind::Validation`] error: the input is malformed.
    pub fn validation(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, code, message)
    }

    /// An [`ErrorKind::NotFound`] error.
    pub fn not_found(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    /// An [`ErrorKind::Conflict`] error.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// An [`ErrorKind::Unauthorized`] error.
    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, code, message)
    }

    /// An [`ErrorKind::Timeout`] error.
    pub fn timeout(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, code, message)
    }

    /// An [`ErrorKind::Infrastructure`] error: a dependency failed.
    pub fn infrastructure(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Infrastructure, code, message)
    }

    /// An [`ErrorKind::Internal`] error: a bug.
    pub fn internal(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, code, message)
    }

    /// An [`ErrorKind::RuleViolation`] error carrying `violations`, with code
    /// `flext.rule.violated` and a message that counts them.
    ///
    /// A single violation's code becomes the error's code and its subject and message
    /// the error's message, so that one broken rule reads as
    /// `[user.email.format] email: ...` in logs, as each of several does.
    pub fn rule_violations(violations: Vec<RuleViolation>) -> Self {
        let (code, message) = match violations.as_slice() {
            [one] => (
                one.code.clone(),
                match &one.subject {
                    Some(subject) => format!("{subject}: {}", one.message),
                    None => one.message.clone(),
                },
            ),
            many => (
                Cow::Borrowed(crate::codes::RULE_VIOLATED),
                format!("{} business rules violated", many.len()),
            ),
        };
        Error(Box::new(Inner {
            kind: ErrorKind::RuleViolation,
            code,
            message,
            violations,
            related: Vec::new(),
            source: None,
        }))
    }

    /// Attaches the underlying error, returned by [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    /// Replaces the message, keeping kind, code, violations and source.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }

    /// Attaches `violations` (the broken rules, or for input errors the invalid field as
    /// the subject), keeping kind, code and message.
    ///
    /// ```
    /// use flext::{Error, RuleViolation};
    /// let e = Error::validation("order.lines", "an order needs lines")
    ///     .with_violations(vec![RuleViolation::new("is empty").on("lines")]);
    /// assert_eq!(e.violations()[0].subject.as_deref(), Some("lines"));
    /// ```
    pub fn with_violations(mut self, violations: Vec<RuleViolation>) -> Self {
        self.0.violations = violations;
        self
    }

    /// Attaches separate problems reported together, each with its own kind and code
    /// (what [`BusBuilder::build`](crate::BusBuilder::build) returns when it finds
    /// several).
    pub fn with_related(mut self, related: Vec<Error>) -> Self {
        self.0.related = related;
        self
    }

    /// The separate problems this error reports together; empty for most errors.
    pub fn related(&self) -> &[Error] {
        &self.0.related
    }

    /// The coarse kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The stable machine-readable code, such as `user.email.taken`.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The broken business rules, in the order they were evaluated, for
    /// [`ErrorKind::RuleViolation`]; the invalid field (as `subject`) for input errors of
    /// [`ErrorKind::Validation`] built by [`crate::input`]; empty otherwise.
    pub fn violations(&self) -> &[RuleViolation] {
        &self.0.violations
    }
}

impl From<RuleViolation> for Error {
    fn from(v: RuleViolation) -> Self {
        Error::rule_violations(vec![v])
    }
}

impl From<Vec<RuleViolation>> for Error {
    fn from(v: Vec<RuleViolation>) -> Self {
        Error::rule_violations(v)
    }
}

/// Serialises as `{"kind", "code", "message", "violations"}` (the related errors under
/// `"related"` when there are any, the source error as its display string under
/// `"source"` when present), the shape API clients receive.
impl Serialize for Error {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Error", 6)?;
        s.serialize_field("kind", &self.0.kind)?;
        s.serialize_field("code", &self.0.code)?;
        s.serialize_field("message", &self.0.message)?;
        s.serialize_field("violations", &self.0.violations)?;
        if self.0.related.is_empty() {
            s.skip_field("related")?;
        } else {
            s.serialize_field("related", &self.0.related)?;
        }
        s.serialize_field("source", &self.0.source.as_ref().map(|e| e.to_string()))?;
        s.end()
    }
}

impl ErrorKind {
    /// Whether an error of this kind is usually transient, so that retrying an idempotent
    /// message may succeed: [`Timeout`](Self::Timeout) and
    /// [`Infrastructure`](Self::Infrastructure).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Infrastructure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_violation_lends_its_code_to_the_error() {
        let e: Error = RuleViolation::new("bad").with_code("a.b").into();
        assert_eq!(e.code(), "a.b");
        assert_eq!(e.message(), "bad");
        assert_eq!(e.violations().len(), 1);
    }

    #[test]
    fn a_violation_displays_its_subject_alone_as_among_several() {
        let one = RuleViolation::new("is not a customer")
            .with_code("order.customer.exists")
            .on("customer_id");
        let alone = Error::rule_violations(vec![one.clone()]);
        assert_eq!(
            alone.to_string(),
            "[order.customer.exists] customer_id: is not a customer"
        );
        let both = Error::rule_violations(vec![one, RuleViolation::new("empty").with_code("o.l")]);
        assert!(
            both.to_string()
                .contains("[order.customer.exists] customer_id: is not a customer; [o.l] empty"),
            "{both}"
        );
    }

    #[test]
    fn source_is_kept() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::infrastructure("db.write", "could not save").with_source(io);
        let src = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(src.as_deref(), Some("disk on fire"));
    }

    #[test]
    fn serialises_for_api_clients() {
        let e = Error::rule_violations(vec![
            RuleViolation::new("x").with_code("a").on("f"),
            RuleViolation::new("y").with_code("b"),
        ]);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "rule_violation");
        assert_eq!(json["code"], crate::codes::RULE_VIOLATED);
        assert_eq!(json["violations"][0]["subject"], "f");
        assert_eq!(json["violations"][1]["code"], "b");
        assert!(json["source"].is_null());
    }
}
