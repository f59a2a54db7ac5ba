//! What the saga log can keep ([`Durable`]) and how generated code writes and reads
//! logged values.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StepScope;
use crate::error::{Error, Result};

/// What the saga log can keep: a saga's input and every step's output are written to it
/// so that a resumed saga sees what the crashed one saw. Implemented for every
/// `Serialize + DeserializeOwned` type.
///
/// One trait rather than two supertraits, so that a type that is not serde gets one
/// error naming both derives, once per type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in the saga log",
    label = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`",
    note = "the saga log stores the saga's input and every step's output so that a resumed saga sees what the crashed one saw"
)]
pub trait Durable: Sized {
    /// The value as JSON for the log.
    ///
    /// # Errors
    ///
    /// serde's error when the value does not serialise, or when its JSON would not read
    /// back as the same value (a NaN or infinite float; `Some` of a value that
    /// serialises as `null`).
    fn to_log(&self) -> serde_json::Result<serde_json::Value>;
    /// The value read back from the log.
    ///
    /// # Errors
    ///
    /// serde's error when the JSON is not a `Self` (a log written by another version).
    fn from_log(value: serde_json::Value) -> serde_json::Result<Self>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> Durable for T {
    fn to_log(&self) -> serde_json::Result<serde_json::Value> {
        crate::exact::to_exact_value(self)
    }
    fn from_log(value: serde_json::Value) -> serde_json::Result<Self> {
        serde_json::from_value(value)
    }
}

/// A logged value of type `T` as generated code reads and writes it. Through autoref
/// specialisation, [`EncodeDurable`] applies when `T` is [`Durable`] and
/// [`EncodeNotDurable`] otherwise, so a type that is not durable costs the one
/// `assert_durable` error, not one per use. Used by generated code.
#[doc(hidden)]
pub struct LogSlot<T>(std::marker::PhantomData<fn() -> T>);

impl<T> LogSlot<T> {
    #[doc(hidden)]
    #[inline]
    pub const fn new() -> Self {
        LogSlot(std::marker::PhantomData)
    }
}

#[doc(hidden)]
pub trait EncodeDurable<T> {
    /// Encodes a step's output for the log.
    fn encode(&self, scope: &StepScope<'_>, value: &T) -> Result<serde_json::Value>;
    /// Reads step `index`'s output back.
    fn decode(&self, scope: &StepScope<'_>, index: usize) -> Result<T>;
    /// Whether step `step`'s logged `value` decodes as `T`.
    fn check(&self, step: &str, value: &serde_json::Value) -> Result<()>;
    /// What a signal step received, as a `Signal<T>`.
    fn signal(&self, scope: &StepScope<'_>) -> Result<super::Signal<T>>;
}

impl<T: Durable> EncodeDurable<T> for &LogSlot<T> {
    fn check(&self, step: &str, value: &serde_json::Value) -> Result<()> {
        T::from_log(value.clone()).map(drop).map_err(|e| {
            Error::internal(
                crate::codes::SAGA_OUTPUT_MISMATCH,
                format!(
                    "the logged output of step `{step}` does not decode as `{}`: {e}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }
    #[inline]
    fn encode(&self, scope: &StepScope<'_>, value: &T) -> Result<serde_json::Value> {
        scope.encode(value)
    }
    #[inline]
    fn decode(&self, scope: &StepScope<'_>, index: usize) -> Result<T> {
        scope.output(index)
    }
    #[inline]
    fn signal(&self, scope: &StepScope<'_>) -> Result<super::Signal<T>> {
        scope.signal()
    }
}

#[doc(hidden)]
pub trait EncodeNotDurable<T> {
    /// Never runs: the crate does not compile while `T` is not durable.
    fn encode(&self, scope: &StepScope<'_>, value: &T) -> Result<serde_json::Value>;
    /// Never runs: the crate does not compile while `T` is not durable.
    fn decode(&self, scope: &StepScope<'_>, index: usize) -> Result<T>;
    /// Never runs: the crate does not compile while `T` is not durable.
    fn check(&self, step: &str, value: &serde_json::Value) -> Result<()>;
    /// Never runs: the crate does not compile while `T` is not durable.
    fn signal(&self, scope: &StepScope<'_>) -> Result<super::Signal<T>>;
}

impl<T> EncodeNotDurable<T> for LogSlot<T> {
    fn check(&self, _: &str, _: &serde_json::Value) -> Result<()> {
        Err(not_durable::<T>())
    }
    fn encode(&self, _: &StepScope<'_>, _: &T) -> Result<serde_json::Value> {
        Err(not_durable::<T>())
    }
    fn decode(&self, _: &StepScope<'_>, _: usize) -> Result<T> {
        Err(not_durable::<T>())
    }
    fn signal(&self, _: &StepScope<'_>) -> Result<super::Signal<T>> {
        Err(not_durable::<T>())
    }
}

fn not_durable<T>() -> Error {
    Error::internal(
        crate::codes::SAGA_NOT_DURABLE,
        format!(
            "`{}` cannot be stored in the saga log",
            std::any::type_name::<T>()
        ),
    )
}

/// A durable workflow node's output, boxed as the graph driver keeps it, as generated
/// code encodes and decodes it: [`NodeDurable`] when `T` is [`Durable`] and shareable,
/// [`NodeNotDurable`] otherwise (the crate then does not compile: `assert_durable` or
/// the workflow's own output check reports it, once). Used by generated code.
#[doc(hidden)]
pub trait NodeDurable<T> {
    /// Encodes node `step`'s output for the log.
    fn encode_node(
        &self,
        step: &str,
        output: &crate::workflow::StepOutput,
    ) -> Result<serde_json::Value>;
    /// Decodes node `step`'s logged output.
    fn decode_node(
        &self,
        step: &str,
        value: serde_json::Value,
    ) -> Result<crate::workflow::StepOutput>;
}

impl<T: Durable + Send + Sync + 'static> NodeDurable<T> for &LogSlot<T> {
    fn encode_node(
        &self,
        step: &str,
        output: &crate::workflow::StepOutput,
    ) -> Result<serde_json::Value> {
        let value = output.downcast_ref::<T>().ok_or_else(|| {
            Error::internal(
                crate::codes::SAGA_OUTPUT_NOT_SERIALISABLE,
                format!(
                    "the output of node `{step}` is not a `{}`",
                    std::any::type_name::<T>()
                ),
            )
        })?;
        value.to_log().map_err(|e| {
            Error::internal(
                crate::codes::SAGA_OUTPUT_NOT_SERIALISABLE,
                format!("the output of node `{step}` does not serialise: {e}"),
            )
        })
    }
    fn decode_node(
        &self,
        step: &str,
        value: serde_json::Value,
    ) -> Result<crate::workflow::StepOutput> {
        match T::from_log(value) {
            Ok(v) => Ok(Box::new(v)),
            Err(e) => Err(Error::internal(
                crate::codes::SAGA_OUTPUT_MISMATCH,
                format!(
                    "the logged output of node `{step}` does not decode as `{}`: {e}",
                    std::any::type_name::<T>()
                ),
            )),
        }
    }
}

#[doc(hidden)]
pub trait NodeNotDurable<T> {
    /// Never runs: the crate does not compile while `T` is not durable.
    fn encode_node(
        &self,
        step: &str,
        output: &crate::workflow::StepOutput,
    ) -> Result<serde_json::Value>;
    /// Never runs: the crate does not compile while `T` is not durable.
    fn decode_node(
        &self,
        step: &str,
        value: serde_json::Value,
    ) -> Result<crate::workflow::StepOutput>;
}

impl<T> NodeNotDurable<T> for LogSlot<T> {
    fn encode_node(&self, _: &str, _: &crate::workflow::StepOutput) -> Result<serde_json::Value> {
        Err(not_durable::<T>())
    }
    fn decode_node(&self, _: &str, _: serde_json::Value) -> Result<crate::workflow::StepOutput> {
        Err(not_durable::<T>())
    }
}

/// The error of a step index the saga does not have. Used by generated code.
#[doc(hidden)]
#[cold]
pub fn no_such_step(saga: &'static str, index: usize) -> Error {
    Error::internal(
        crate::codes::SAGA_NO_SUCH_STEP,
        format!("saga `{saga}` has no step {index}"),
    )
}

/// Used by generated code to check [`Durable`] at the user's type.
#[doc(hidden)]
pub fn assert_durable<T: Durable>() {}

/// What a `#[saga_step(sleep)]` step returns: how long the saga sleeps. Spanned at the
/// step's output type by generated code.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a sleep step returns `Result<Duration>`: how long the saga sleeps, not `{Self}`",
    label = "return a `std::time::Duration`",
    note = "the runner records the wake-up time (now plus the duration) and lets the saga go until then"
)]
pub trait SleepOutput {}
impl SleepOutput for std::time::Duration {}

/// Used by generated code to check a sleep step's output type.
#[doc(hidden)]
pub fn assert_sleep_output<T: SleepOutput>() {}
