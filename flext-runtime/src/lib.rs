//! Runtime of [flext](https://docs.rs/flext): the types that flext's generated code calls
//! into.
//!
//! Depend on the `flext` crate, not on this one: `flext` re-exports everything here
//! together with the attribute macros, and its generated code names this crate only
//! through `::flext::__private_<version>`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod aggregate;
mod attempt;
mod background;
mod backoff;
pub mod bus;
pub mod codes;
mod context;
pub mod database;
#[cfg(feature = "sqlite")]
mod db;
mod error;
pub mod event_store;
mod exact;
mod future;
pub mod idempotency;
pub mod input;
mod message;
pub mod middleware;
pub mod operator;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod registry;
pub mod route;
pub mod saga;
pub mod service;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod state;
mod suggest;
pub mod workflow;

pub use backoff::Backoff;
pub use bus::{
    BoxFuture, Bus, BusBuilder, Command, Event, FromState, Handle, HandlerRegistration, Message,
    MessageKind, PublishReport, Query, State, SubscriberOutcome, Validate, Wire,
};
pub use context::{Context, Principal};
pub use error::{BoxError, Error, ErrorKind, Result, RuleResult, RuleViolation};
/// JSON Schema (schemars 1), which `flext::http`'s OpenAPI document is built from: derive
/// `flext::schemars::JsonSchema` (with `#[schemars(crate = "flext::schemars")]`) on the
/// output types of routed messages; the messages themselves get it from their attribute.
pub use schemars;
pub use service::{DomainService, RuleMode, RuleOutcome, StepOutcome, SyncDomainService};
/// The id type of [`Context`] (re-exported from the `uuid` crate).
pub use uuid::Uuid;

/// Items used by flext's generated code. Not public API: anything here may change in a
/// patch release.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate;
    pub use crate::bus::{
        BoxFuture, Bus, Command, ErasedHandler, Event, FromState, HandlerFor, HandlerRegistration,
        JsonEntry, Message, MessageKind, MessageRegistration, OneHandlerPerCommandOrQuery,
        OutputBounds, Query, ReplyOf, State, StateMap, Validate, Wire, assert_command,
        assert_event, assert_query, command_async, command_sync, event_async, event_sync,
        json_command, json_event, json_query, kind, message_name, query_async, query_sync,
    };
    pub use crate::context::Context;
    pub use crate::database;
    pub use crate::error::{Error, Result};
    pub use crate::route::{RouteRegistration, field_value};
    pub use crate::saga::{
        ChildSpec, DurableWorkflow, EncodeDurable, EncodeNotDurable, KeyedSaga, LogSlot,
        NodeDurable, NodeNotDurable, RetryOn, Saga, SagaRegistration, SignalKey, SignalSpec,
        StepScope, StepSpec, WaitsFor, assert_durable, assert_sleep_output, no_such_step, resume,
    };
    pub use crate::service::{
        DomainService, RuleMode, Rules, ServiceStats, StepOutcome, SyncDomainService, run_async,
        run_sync, service_span, step, step_input, undo, undo_input,
    };
    #[cfg(feature = "sqlite")]
    pub use crate::sqlite;
    pub use crate::workflow::{
        BoxNotShareable, BoxShareable, OutputSlot, SendCheck, SendOfNotSync, SendOfSync,
        StepOutput, Workflow, WorkflowScope, WorkflowStepSpec, assert_step_output,
        assert_step_output_send, no_such_step as no_such_workflow_step, step_stats,
    };
    pub use inventory;
    pub use schemars;
    pub use serde_json;
}
