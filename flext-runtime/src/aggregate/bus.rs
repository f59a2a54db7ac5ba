//! Aggregates on the bus: what a command decided by an aggregate answers, and the
//! handler the bus calls for it. Generated code registers these; the logic is here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Handles, Repository};
use crate::bus::{Bus, ErasedHandler, FromState, State, StateMap, command_async};
use crate::context::Context;
use crate::error::Result;
use crate::event_store::StreamId;
use crate::message::Command;

/// What a command appended: the answer a command handled by an aggregate gives on the
/// bus (as itself, as `u64` its version, or as `()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Appended {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the append (unchanged when the command raised nothing).
    pub version: u64,
    /// The appended events' ids, in order.
    pub event_ids: Vec<Uuid>,
}

/// What a command decided by an aggregate may answer on the bus: [`Appended`] itself,
/// `u64` (the stream's version after the append), or `()`.
#[diagnostic::on_unimplemented(
    message = "a command decided by an aggregate answers with `Appended`, `u64` (the new version) or `()`, not `{Self}`",
    label = "the command's `output`",
    note = "write `#[command(output = u64)]` (or `()`, or `flext::aggregate::Appended`) on the command"
)]
pub trait FromAppended {
    /// The answer for what was appended.
    fn from_appended(appended: Appended) -> Self;
}

impl FromAppended for Appended {
    fn from_appended(appended: Appended) -> Self {
        appended
    }
}

impl FromAppended for u64 {
    fn from_appended(appended: Appended) -> u64 {
        appended.version
    }
}

impl FromAppended for () {
    fn from_appended(_: Appended) {}
}

/// The bus handler of command `C`, decided by aggregate `A`: built when the bus is
/// built, with the `Repository<A>` from the bus's state. Used by generated code.
#[doc(hidden)]
pub fn aggregate_command<A, C>(handler: &'static str, state: &StateMap) -> Result<ErasedHandler>
where
    A: Handles<C>,
    C: Command<Output = <C as crate::message::Message>::Reply>,
{
    let repository = <State<Repository<A>> as FromState>::from_state(state, handler)?;
    Ok(command_async::<C, _>(
        handler,
        true,
        move |command, ctx, bus| {
            let repository = repository.clone();
            Box::pin(async move { run(&repository, &command, ctx, bus).await })
        },
    ))
}

/// `Bus::send_local` for command `C`, decided by aggregate `A`. Used by generated code.
#[doc(hidden)]
pub async fn aggregate_send_local<A, C>(
    handler: &'static str,
    command: C,
    ctx: &Context,
    bus: &Bus,
) -> Result<C::Output>
where
    A: Handles<C>,
    C: Command<Output = <C as crate::message::Message>::Reply>,
{
    let repository = <State<Repository<A>> as FromState>::from_state(bus.__state(), handler)?;
    run(&repository, &command, ctx, bus).await
}

/// A command on the bus: executed, its events published unless the outbox delivers
/// them ([`Repository::publish_on_bus`]), and answered as the command's output.
async fn run<A, C>(
    repository: &Repository<A>,
    command: &C,
    ctx: &Context,
    bus: &Bus,
) -> Result<C::Output>
where
    A: Handles<C>,
    C: Command,
{
    let executed = repository.execute(command, ctx).await?;
    let appended = if repository.publishes() {
        executed.publish(bus, ctx).await
    } else {
        executed.appended
    };
    Ok(A::answer(appended))
}
