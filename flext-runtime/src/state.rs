//! State injection: the values registered with `Bus::builder().state(..)` (or a saga
//! runner's builder), and the [`FromState`] extractors handlers and saga steps take.

use std::any::{Any, TypeId};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};

/// The values registered with [`BusBuilder::state`](crate::BusBuilder::state) (or a
/// saga runner's builder), one per type. A [`FromState`] extractor reads it when the bus
/// is built.
#[derive(Default)]
pub struct StateMap {
    values: FxHashMap<TypeId, (&'static str, Box<dyn Any + Send + Sync>)>,
}

impl StateMap {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    pub(crate) fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(
            TypeId::of::<T>(),
            (std::any::type_name::<T>(), Box::new(value)),
        );
    }

    /// The value of type `T`, if one was registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<Arc<T>>())
            .cloned()
    }
}

/// Shared state injected into a handler: a parameter `repo: State<UserRepository>`
/// receives the value registered with `Bus::builder().state(UserRepository::new())`.
/// Cloning is an `Arc` clone. In the spirit of axum's `State` extractor.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[command(output = u64)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Increment;
///
/// #[derive(Default)]
/// struct Counter { next: AtomicU64 }
///
/// #[command_handler]
/// fn increment(_: Increment, counter: State<Counter>) -> Result<u64> {
///     Ok(counter.next.fetch_add(1, Ordering::Relaxed) + 1)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder().state(Counter::default()).build().unwrap();
/// let ctx = Context::new();
/// assert_eq!(bus.send(Increment, &ctx).await.unwrap(), 1);
/// assert_eq!(bus.send(Increment, &ctx).await.unwrap(), 2);
/// # }
/// ```
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// Wraps shared state, for calling a handler directly (in a unit test, say).
    pub fn new(value: Arc<T>) -> Self {
        State(value)
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A handler parameter the bus fills in when it is built. Implemented for [`State`];
/// implement it for your own extractors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be injected into a handler",
    label = "not the message, `&Context`, `&Bus` or injectable state",
    note = "a handler takes the message first, then any of `ctx: &Context`, `bus: &Bus` and `State<T>` (registered with `Bus::builder().state(value)`)"
)]
///
/// # Your own extractor
///
/// Implement it to hand handlers a part of the registered state, in the manner of axum's
/// `FromRef`: the handler asks for what it uses, the bus holds what the application has.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::bus::{FromState, StateMap};
/// use std::sync::Arc;
///
/// /// What the application registers.
/// struct AppConfig { tenant: String, greeting: String }
///
/// /// What one handler needs: a part of it, extracted once, when the bus is built.
/// #[derive(Clone)]
/// struct Greeting(Arc<str>);
///
/// impl FromState for Greeting {
///     fn from_state(state: &StateMap, handler: &'static str) -> Result<Self> {
///         let config = State::<AppConfig>::from_state(state, handler)?;
///         Ok(Greeting(format!("{} from {}", config.greeting, config.tenant).into()))
///     }
/// }
///
/// #[query(output = String)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Greet { name: String }
///
/// #[query_handler]
/// fn greet(q: Greet, greeting: Greeting) -> Result<String> {
///     Ok(format!("{}, {}", greeting.0, q.name))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder()
///     .state(AppConfig { tenant: "acme".into(), greeting: "hello".into() })
///     .build()
///     .unwrap();
/// let out = bus.query(Greet { name: "Ada".into() }, &Context::new()).await.unwrap();
/// assert_eq!(out, "hello from acme, Ada");
/// # }
/// ```
pub trait FromState: Sized + Clone + Send + Sync + 'static {
    /// Extracts the value from the bus's state when the bus is built.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the state was not
    /// registered; the message names `handler` and the missing type.
    fn from_state(state: &StateMap, handler: &'static str) -> Result<Self>;

    /// The value handed to one call of the handler: a clone (for [`State`], an `Arc`
    /// clone).
    fn share(&self) -> Self {
        self.clone()
    }
}

impl<T: Send + Sync + 'static> FromState for State<T> {
    fn from_state(state: &StateMap, handler: &'static str) -> Result<Self> {
        state.get::<T>().map(State).ok_or_else(|| {
            let ty = std::any::type_name::<T>();
            Error::not_found(
                crate::codes::BUS_MISSING_STATE,
                format!(
                    "handler `{handler}` takes `State<{ty}>`, but the bus has no state of that type: add `.state(value)` to `Bus::builder()`"
                ),
            )
        })
    }
}

pub(crate) fn state_names(state: &StateMap) -> Vec<&'static str> {
    state.values.values().map(|(n, _)| *n).collect()
}
