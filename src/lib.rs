#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use flext_macros::*;
pub use flext_runtime::*;

/// The operator console (the `console` feature): see [`flext_console`].
#[cfg(feature = "console")]
pub use flext_console as console;
/// The HTTP front door (the `http` feature): see [`flext_http`].
#[cfg(feature = "http")]
pub use flext_http as http;
/// Events to other services through NATS JetStream (the `nats` feature): see
/// [`flext_nats`].
#[cfg(feature = "nats")]
pub use flext_nats as nats;

/// Everything a service definition needs: `use flext::prelude::*;`.
pub mod prelude {
    pub use flext_macros::*;
    /// `Workflow::run`, callable on a `#[workflow]` type with the prelude alone (the
    /// trait itself is `flext::workflow::Workflow`, for `STEPS` and bounds).
    pub use flext_runtime::workflow::Workflow as _;
    pub use flext_runtime::{
        Bus, Command, Context, DomainService, Error, ErrorKind, Event, Message, Principal,
        PublishReport, Query, Result, RuleResult, RuleViolation, State, SyncDomainService, Uuid,
        ensure,
    };
}

/// Items used by flext's generated code, under a name that carries the version so that
/// only the runtime of the same version resolves it (serde's `__private228`). Not public
/// API.
#[doc(hidden)]
pub mod __private_0_1_0 {
    pub use flext_runtime::__private::*;
}

/// The guides in `docs/`, compiled and run as doctests like the README, so that no
/// example in them can rot.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../docs/sagas.md")]
    struct Sagas;
    #[doc = include_str!("../docs/database.md")]
    struct Database;
    #[doc = include_str!("../docs/services.md")]
    struct Services;
    #[doc = include_str!("../docs/testing.md")]
    struct Testing;
}
