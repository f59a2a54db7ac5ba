//! The message bus: typed `send`, `query` and `publish`, by-name JSON dispatch, and the
//! link-time handler registry behind them.
//!
//! This is the source documents' `CommandBus`, `QueryBus` and `EventBus` in one value,
//! after MediatR's requests and notifications and Axon's command and event buses:
//! handlers are found by message type, a command or query has exactly one handler, an
//! event reaches every subscriber, and middleware wraps every dispatch.

mod builder;
mod dispatch;
mod dispatched;
mod erased;
mod handler;
mod json;
mod publish;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

pub use builder::BusBuilder;
pub use dispatch::Handle;
pub use dispatched::Dispatched;
pub use handler::LocalHandler;
#[doc(hidden)]
pub use handler::{
    HandlerFor, OneHandlerPerCommandOrQuery, command_async, command_sync, event_async, event_sync,
    query_async, query_sync,
};
pub use json::MAX_MESSAGE_NAME_BYTES;
#[doc(hidden)]
pub use json::{JsonEntry, MessageRegistration, json_command, json_event, json_query};
pub use publish::{PublishReport, SubscriberOutcome};

// The building blocks from the layers below, under the paths users know them by.
pub use crate::future::BoxFuture;
pub use crate::message::{Command, Event, Message, MessageKind, Query, Validate, Wire, kind};
#[doc(hidden)]
pub use crate::message::{
    OutputBounds, ReplyOf, assert_command, assert_event, assert_query, message_name,
};
#[doc(hidden)]
pub use crate::registry::ErasedHandler;
pub use crate::registry::HandlerRegistration;
pub use crate::state::{FromState, State, StateMap};

use crate::middleware::{Interceptor, Middleware};
use crate::registry::{HandlerStats, RegistryReport};

/// The default limit of [`Bus::send_json`] and friends: 1 MiB.
pub const DEFAULT_MAX_JSON_BYTES: usize = 1 << 20;

struct Slot {
    /// An `Arc<Handler<M, O>>`.
    handler: Box<dyn Any + Send + Sync>,
    /// Index into `Inner::registrations` and `Inner::stats`.
    index: usize,
}

/// Values by message type, for the dispatch path: open addressing over the low bits of
/// the `TypeId` (already a hash), linear probing, at most half full. A lookup is a load
/// and a compare; a hash map's probe of its control bytes measured about 3 ns more per
/// typed `send` (`cargo bench --bench bus`).
struct TypeTable<V> {
    slots: Box<[Option<(TypeId, V)>]>,
    mask: usize,
}

impl<V> TypeTable<V> {
    fn new(entries: FxHashMap<TypeId, V>) -> Self {
        let size = (entries.len() * 2).next_power_of_two().max(2);
        let mut slots: Box<[Option<(TypeId, V)>]> = (0..size).map(|_| None).collect();
        let mask = size - 1;
        for (key, value) in entries {
            let mut i = low_bits(&key) & mask;
            while slots[i].is_some() {
                i = (i + 1) & mask;
            }
            slots[i] = Some((key, value));
        }
        TypeTable { slots, mask }
    }

    #[inline]
    fn get(&self, key: &TypeId) -> Option<&V> {
        let mut i = low_bits(key) & self.mask;
        // At most half full: an empty slot ends every probe.
        loop {
            match self.slots.get(i)? {
                Some((k, v)) if k == key => return Some(v),
                Some(_) => i = (i + 1) & self.mask,
                None => return None,
            }
        }
    }
}

/// The bits a `TypeId` hashes itself as.
#[inline]
fn low_bits(id: &TypeId) -> usize {
    use std::hash::{Hash, Hasher};

    #[derive(Default)]
    struct Bits(u64);
    impl Hasher for Bits {
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 ^= n;
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }
    let mut bits = Bits::default();
    id.hash(&mut bits);
    bits.0 as usize
}

struct Inner {
    handlers: TypeTable<Slot>,
    subscribers: TypeTable<Vec<Slot>>,
    by_name: HashMap<&'static str, JsonEntry>,
    middleware: Vec<Arc<dyn Middleware>>,
    interceptors: Vec<Arc<dyn Interceptor>>,
    /// Whether an interceptor reads the dispatch's elapsed time.
    clock: bool,
    /// Per handler, one memo slot per interceptor (`Dispatch::memo`).
    memos: Box<[std::sync::OnceLock<Box<dyn Any + Send + Sync>>]>,
    registrations: Vec<&'static HandlerRegistration>,
    stats: Option<Vec<HandlerStats>>,
    max_json_bytes: usize,
    /// Kept for handlers called through `send_local`, which extract their state per call.
    state: StateMap,
    /// Components reported beside the handlers.
    sources: Vec<Arc<dyn crate::registry::ReportSource>>,
}

/// Dispatches commands, queries and events to the handlers registered with
/// `#[command_handler]`, `#[query_handler]` and `#[event_handler]`.
///
/// Build one with [`Bus::builder`]; it finds every handler linked into the program, so
/// building needs no list of handlers. `Bus` is cheap to clone (an `Arc`) and is shared
/// by every task. A handler can take `bus: &Bus` to send further messages.
///
/// Every dispatch gives the handler a [child](crate::Context::child) of the caller's context:
/// the same correlation id, a new id, and the caller's id as causation id.
///
/// # Link-time registration
///
/// Handlers are collected with [`inventory`]: the linker keeps a handler only if its
/// crate is linked into the program. A crate of handlers that nothing else references
/// may be dropped; reference it once, for example `use my_handlers as _;` in `main.rs`.
///
/// # Example
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
///
/// #[command(output = u64)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct Add { a: u64, b: u64 }
///
/// #[command_handler]
/// fn add(cmd: Add) -> Result<u64> {
///     Ok(cmd.a + cmd.b)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder().build().unwrap();
/// assert_eq!(bus.send(Add { a: 2, b: 3 }, &Context::new()).await.unwrap(), 5);
///
/// let out = bus.send_json("Add", r#"{"a": 1, "b": 2}"#, &Context::new()).await.unwrap();
/// assert_eq!(out, serde_json::json!(3));
/// # }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("handlers", &self.inner.registrations.len())
            .field("middleware", &self.inner.middleware.len())
            .field("stats", &self.inner.stats.is_some())
            .finish()
    }
}

impl Bus {
    /// A builder with no state, no middleware, statistics on and the default JSON limit.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    #[doc(hidden)]
    pub fn __state(&self) -> &StateMap {
        &self.inner.state
    }

    /// Every handler of this bus with its message, kind, source location and, when
    /// statistics are on, its counts, failures, last error and latency percentiles.
    pub fn report(&self) -> RegistryReport {
        crate::registry::report(
            &self.inner.registrations,
            self.inner.stats.as_deref(),
            &self.inner.sources,
        )
    }
}
