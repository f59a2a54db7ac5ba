#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub use flext_macros::*;
pub use flext_runtime::*;

/// Everything a service definition needs: `use flext::prelude::*;`.
pub mod prelude {
    pub use flext_macros::*;
    pub use flext_runtime::{
        Bus, Command, Context, DomainService, Error, ErrorKind, Event, Message, Principal,
        PublishReport, Query, Result, RuleResult, RuleViolation, State, SyncDomainService, Uuid,
        ensure,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use flext_runtime::__private::*;
}
