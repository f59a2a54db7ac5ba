//! [`RuleViolation`], one broken business rule, and the [`ensure!`](crate::ensure) macro
//! that makes one.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One broken business rule: a stable code, a message for people, and optionally the
/// field or subject it concerns.
///
/// Build one with [`RuleViolation::new`] (or the [`ensure!`](crate::ensure) macro) and
/// refine it with [`with_code`](Self::with_code) and [`on`](Self::on). A violation built
/// without a code takes the `code` of the `#[business_rule]` that returned it, or the
/// rule's method name when the attribute gives none.
///
/// ```
/// use flext::RuleViolation;
/// let v = RuleViolation::new("must be at least 8 characters")
///     .with_code("user.password.length")
///     .on("password");
/// assert_eq!(v.code, "user.password.length");
/// assert_eq!(v.subject.as_deref(), Some("password"));
/// assert_eq!(v.to_string(), "[user.password.length] password: must be at least 8 characters");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(
    description = "One broken business rule: a stable code, a message for people, and the field or subject it concerns."
)]
pub struct RuleViolation {
    /// Stable, machine-readable code such as `user.email.format`. Empty until set by the
    /// rule body or filled in from the rule's attribute.
    pub code: Cow<'static, str>,
    /// Human-readable explanation.
    pub message: String,
    /// The field or subject the violation concerns, if any (for example `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl RuleViolation {
    /// A violation with `message` and no code or subject yet.
    pub fn new(message: impl Into<String>) -> Self {
        RuleViolation {
            code: Cow::Borrowed(""),
            message: message.into(),
            subject: None,
        }
    }

    /// Sets the stable code (replaces the code the rule attribute would give).
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.code = code.into();
        self
    }

    /// Names the field or subject the violation concerns.
    pub fn on(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Fills in `code` when the violation has none yet. Used by the rule driver.
    pub(crate) fn default_code(&mut self, code: &'static str) {
        if self.code.is_empty() {
            self.code = Cow::Borrowed(code);
        }
    }
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] ", self.code)?;
        if let Some(subject) = &self.subject {
            write!(f, "{subject}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Evaluates to a [`RuleResult`](crate::RuleResult): `Ok(())` when `cond` holds, otherwise a
/// [`RuleViolation`] with the formatted message. Makes the common rule body one line.
///
/// Forms:
/// - `ensure!(cond, "message {}", args...)`
/// - `ensure!(cond, code = "user.age.minimum", "message {}", args...)` to set the code
///   here instead of in the `#[business_rule]` attribute.
///
/// Chain several checks with `?`: `ensure!(a, "...")?; ensure!(b, "...")`.
///
/// ```
/// use flext::{ensure, RuleResult};
///
/// fn adult(age: u32) -> RuleResult {
///     ensure!(age >= 18, code = "user.age.minimum", "must be 18 or older, is {age}")
/// }
/// assert!(adult(30).is_ok());
/// let v = adult(12).unwrap_err();
/// assert_eq!(v.code, "user.age.minimum");
/// assert_eq!(v.message, "must be 18 or older, is 12");
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, code = $code:expr, $($msg:tt)+) => {
        if $cond {
            ::core::result::Result::Ok(())
        } else {
            ::core::result::Result::Err(
                $crate::RuleViolation::new(::std::format!($($msg)+)).with_code($code),
            )
        }
    };
    ($cond:expr, $($msg:tt)+) => {
        if $cond {
            ::core::result::Result::Ok(())
        } else {
            ::core::result::Result::Err($crate::RuleViolation::new(::std::format!($($msg)+)))
        }
    };
}
