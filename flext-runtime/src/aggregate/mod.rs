//! Event-sourced aggregates: state rebuilt from its events, commands decided against it,
//! the events they raise appended with optimistic concurrency and published.
//!
//! `#[aggregate]` on a struct and its `impl` implements [`Aggregate`] (the stream's
//! type name, the id field, the stored events it applies), [`Apply`] for each event an
//! `#[apply]` method takes, and [`Handles`] for each command a `#[command_handler]`
//! method takes, and registers those commands on the bus: `bus.send(Deposit { .. })`
//! loads the account through its [`Repository`], decides, appends and publishes. The
//! shape is Axon's `@Aggregate` with `@CommandHandler` and `@EventSourcingHandler`, and
//! cqrs-es's `Aggregate::handle`/`apply`, with the events as plain `#[event]` types.
//!
//! [`Fixture`] tests an aggregate's decisions in the given/when/then style of cqrs-es's
//! `TestFramework` and Axon's `AggregateTestFixture`.

mod bus;
mod cache;
mod events;
mod fixture;
mod repository;

pub use self::bus::{Appended, FromAppended};
#[doc(hidden)]
pub use self::bus::{aggregate_command, aggregate_send_local};
pub use self::events::{Events, RaisedEvent};
pub use self::fixture::{Fixture, FixtureResult};
pub use self::repository::{Executed, Loaded, Repository};

use crate::context::Context;
use crate::error::Result;
use crate::message::Command;

/// The struct half of an aggregate: its type name, its id field, and its snapshots.
/// Implemented by `#[aggregate]` on the struct.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not marked `#[aggregate]`",
    label = "not an aggregate",
    note = "add `#[aggregate]` to `struct {Self}`, with `#[aggregate_id]` on its id field"
)]
pub trait AggregateRoot: Sized + Send + Sync + 'static {
    /// The aggregate type's name, the `aggregate_type` of its streams (the struct's name
    /// unless `#[aggregate(name = "..")]`).
    const TYPE: &'static str;
    /// Take a snapshot whenever the stream's version reaches a multiple of this
    /// (`#[aggregate(snapshot_every = N)]`); `None` for never.
    const SNAPSHOT_EVERY: Option<u64> = None;

    /// The state before any event: `Default::default()`, which `#[aggregate]` calls (one
    /// error at the struct's name when it does not derive `Default`, none elsewhere).
    fn initial() -> Self;

    /// The aggregate's id (its `#[aggregate_id]` field), as its stream names it.
    fn aggregate_id(&self) -> String;

    /// Sets the `#[aggregate_id]` field from a stream's id, before any event is applied.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.aggregate.bad_id`,
    /// when the id does not parse as the field's type.
    fn set_aggregate_id(&mut self, id: &str) -> Result<()>;

    /// The state as a snapshot, when the aggregate takes snapshots.
    ///
    /// # Errors
    ///
    /// When the state does not serialise.
    fn snapshot(&self) -> Option<Result<serde_json::Value>> {
        None
    }

    /// The state a snapshot holds, when the aggregate takes snapshots.
    ///
    /// # Errors
    ///
    /// When the snapshot does not decode as the state.
    fn restore(snapshot: serde_json::Value) -> Option<Result<Self>> {
        let _ = snapshot;
        None
    }
}

/// An event-sourced aggregate: its state is what its events made it. The impl half,
/// implemented by `#[aggregate]` on the `impl` block: which stored events it applies,
/// and how.
pub trait Aggregate: AggregateRoot {
    /// The schema version this program reads for the stored event named `name`, or
    /// `None` when the aggregate does not apply it.
    fn event_version(name: &str) -> Option<u32>;

    /// Applies a stored event, its payload upcast to [`event_version`](Self::event_version).
    /// The payload is borrowed: it is decoded straight into the event's type.
    ///
    /// # Errors
    ///
    /// `flext.event.unknown` for a name the aggregate does not apply; `flext.event.decode`
    /// when the payload does not decode as the event's type.
    fn apply_stored(&mut self, name: &str, payload: &serde_json::Value) -> Result<()>;
}

/// Which aggregate a command is for: implemented by `#[command]` for a command with an
/// `#[aggregate_id]` field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say which aggregate it is for",
    label = "decided by an aggregate",
    note = "mark the command's field that holds the aggregate's id `#[aggregate_id]`: `#[command(output = ..)] struct {Self} {{ #[aggregate_id] account_id: String, .. }}`"
)]
pub trait AggregateCommand {
    /// The id of the aggregate the command is for.
    fn aggregate_id(&self) -> String;
}

/// Parses a stream's id as an `#[aggregate_id]` field of type `T`. Used by generated code.
#[doc(hidden)]
pub fn parse_aggregate_id<T>(aggregate: &'static str, id: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    id.parse().map_err(|e| {
        crate::Error::validation(
            crate::codes::AGGREGATE_BAD_ID,
            format!(
                "{} is not an id of `{aggregate}`: {e}",
                crate::input::echo(id)
            ),
        )
    })
}

/// Decodes a stored event's payload as `E` and applies it. Used by generated code.
#[doc(hidden)]
pub fn apply_payload<A, E: Apply<A> + crate::message::Event>(
    aggregate: &mut A,
    payload: &serde_json::Value,
) -> Result<()> {
    let event = E::from_json_value(payload).map_err(|e| {
        crate::Error::internal(
            crate::codes::EVENT_DECODE,
            format!("a stored `{}` does not decode: {e}", E::NAME),
        )
    })?;
    event.apply_to(aggregate);
    Ok(())
}

/// The name of event `E`, which `A` applies. Used by generated code.
#[doc(hidden)]
pub fn event_name<A, E: Apply<A> + crate::message::Event>() -> &'static str {
    E::NAME
}

/// The schema version of event `E`, which `A` applies. Used by generated code.
#[doc(hidden)]
pub fn event_version_of<A, E: Apply<A> + crate::message::Event>() -> u32 {
    E::VERSION
}

/// The `#[aggregate_id]` of command `C`. Used by generated code, spanned at the command
/// type, so that a command without the field is one error there.
#[doc(hidden)]
pub fn aggregate_id_of<C: AggregateCommand>(command: &C) -> String {
    command.aggregate_id()
}

/// Command `C`'s answer for what it appended. Used by generated code, spanned at the
/// command type.
#[doc(hidden)]
pub fn answer<C: Command>(appended: Appended) -> C::Output
where
    C::Output: FromAppended,
{
    C::Output::from_appended(appended)
}

/// The error for a stored event the aggregate does not apply. Used by generated code.
#[doc(hidden)]
pub fn unknown_event(aggregate: &'static str, name: &str) -> crate::Error {
    crate::Error::internal(
        crate::codes::EVENT_UNKNOWN,
        format!(
            "`{aggregate}` has no `#[apply]` method for stored event `{}`",
            crate::input::echo(name)
        ),
    )
}

/// A snapshot of `state`. Used by generated code.
#[doc(hidden)]
pub fn snapshot_of<A: serde::Serialize>(state: &A) -> Result<serde_json::Value> {
    crate::exact::to_exact_value(state).map_err(|e| {
        crate::Error::internal(
            crate::codes::EVENT_SNAPSHOT_DECODE,
            format!("the state does not serialise: {e}"),
        )
    })
}

/// The state in a snapshot. Used by generated code.
#[doc(hidden)]
pub fn restore_from<A: serde::de::DeserializeOwned>(snapshot: serde_json::Value) -> Result<A> {
    serde_json::from_value(snapshot).map_err(|e| {
        crate::Error::internal(
            crate::codes::EVENT_SNAPSHOT_DECODE,
            format!("the snapshot does not decode: {e}"),
        )
    })
}

/// Aggregate `A` applies this event: implemented by `#[aggregate]` for the event type of
/// each `#[apply]` method, so that raising an event the aggregate cannot apply does not
/// compile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is raised, but the aggregate has no `#[apply]` method for it",
    label = "raised here",
    note = "add `#[apply] fn on_event(&mut self, event: &{Self}) {{ .. }}` to the aggregate's `#[aggregate] impl`: every event an aggregate raises must evolve its state"
)]
pub trait Apply<A> {
    /// Evolves `aggregate` by this event. Cannot fail: the decision was made when the
    /// event was raised.
    fn apply_to(&self, aggregate: &mut A);
}

/// Aggregate `Self` decides command `C`: implemented by `#[aggregate]` for each
/// `#[command_handler]` method.
pub trait Handles<C: Command>: Aggregate {
    /// The id of the aggregate `command` is for (its `#[aggregate_id]` field).
    fn aggregate_id_of(command: &C) -> String;

    /// The answer on the bus for what the command appended.
    fn answer(appended: Appended) -> C::Output;

    /// Decides: the events the command raises, or why it is refused.
    ///
    /// # Errors
    ///
    /// Whatever the command method returns.
    fn handle(&self, command: &C, ctx: &Context) -> Result<Events<Self>>;
}
