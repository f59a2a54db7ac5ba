//! [`Repository`]: loading an aggregate from its stream (and snapshot), executing a
//! command against it, appending what it raised.

use std::marker::PhantomData;
use std::sync::Arc;

use super::bus::Appended;
use super::cache::{Cache, Serial};
use super::{Aggregate, Events, Handles, RaisedEvent};
use crate::bus::Bus;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::event_store::{EventStore, NewEvent, Snapshot, StreamId, Upcasters};
use crate::message::Command;

/// Loads aggregates of type `A` from an [`EventStore`] and executes commands against
/// them. Register one per aggregate type as bus state, so that the aggregate's commands
/// find it: `Bus::builder().state(Repository::<Account>::new(store))`.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::aggregate::{Events, Fixture, Repository};
/// use serde::{Deserialize, Serialize};
///
/// #[command(output = u64)]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Deposit { #[aggregate_id] account: String, cents: u64 }
///
/// #[event(name = "account.deposited")]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Deposited { cents: u64 }
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// struct Account { #[aggregate_id] id: String, balance: u64 }
///
/// #[aggregate]
/// impl Account {
///     #[command_handler]
///     fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
///         if c.cents == 0 {
///             return Err(Error::validation("account.zero", "deposit at least one cent"));
///         }
///         Ok(Events::one(Deposited { cents: c.cents }))
///     }
///     #[apply]
///     fn deposited(&mut self, e: &Deposited) { self.balance += e.cents; }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use flext::event_store::{MemoryEventStore, Upcasters};
/// let accounts = Repository::<Account>::new(Arc::new(MemoryEventStore::new()))
///     .upcasters(Upcasters::new())
///     .retry_on_conflict(3);
/// let done = accounts.execute(&Deposit { account: "a-1".into(), cents: 250 }, &Context::new()).await.unwrap();
/// assert_eq!((done.appended.version, done.state.balance), (1, 250));
/// let loaded = accounts.load("a-1").await.unwrap();
/// assert_eq!((loaded.version, loaded.state.balance), (1, 250));
/// # }
/// ```
pub struct Repository<A> {
    store: Arc<dyn EventStore>,
    upcasters: Upcasters,
    conflict_retries: u32,
    cache: Option<Arc<Cache<A>>>,
    serial: Option<Arc<Serial>>,
    publish: bool,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            upcasters: self.upcasters.clone(),
            conflict_retries: self.conflict_retries,
            cache: self.cache.clone(),
            serial: self.serial.clone(),
            publish: self.publish,
            _aggregate: PhantomData,
        }
    }
}

/// An aggregate as loaded: its state and the version of its stream it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream's version: how many events the state includes (0 for an aggregate with
    /// no events yet).
    pub version: u64,
}

/// What [`Repository::execute`] did: what was appended, the aggregate's state after it,
/// and the raised events, typed, to publish.
pub struct Executed<A> {
    /// What was appended.
    pub appended: Appended,
    /// The state after the events.
    pub state: A,
    /// The events, as raised.
    pub events: Vec<Box<dyn RaisedEvent<A>>>,
    /// How many times the command was decided (more than 1 after conflicts).
    pub attempts: u32,
}

impl<A: std::fmt::Debug> std::fmt::Debug for Executed<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let events: Vec<&str> = self.events.iter().map(|e| e.name()).collect();
        f.debug_struct("Executed")
            .field("appended", &self.appended)
            .field("state", &self.state)
            .field("events", &events)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<A: Aggregate> Executed<A> {
    /// Publishes the events on `bus`, in order (subscribers' failures are logged: the
    /// events are stored whatever they do).
    pub async fn publish(self, bus: &Bus, ctx: &Context) -> Appended {
        for event in self.events {
            event.publish(bus, ctx).await;
        }
        self.appended
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store`, with no upcasters and no retry on conflict.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Repository {
            store,
            upcasters: Upcasters::new(),
            conflict_retries: 0,
            cache: None,
            serial: None,
            publish: true,
            _aggregate: PhantomData,
        }
    }

    /// Whether a command sent on the bus publishes its events on the bus right after the
    /// append (default `true`). Turn it off when the events reach subscribers through the
    /// transactional outbox ([`SqliteOutboxRelay`](crate::sqlite::SqliteOutboxRelay)) instead, so
    /// that they are not delivered twice.
    pub fn publish_on_bus(mut self, publish: bool) -> Self {
        self.publish = publish;
        self
    }

    /// Whether commands on the bus publish their events right after the append.
    pub(super) fn publishes(&self) -> bool {
        self.publish
    }

    /// Runs the commands for one aggregate id one at a time in this process (they queue,
    /// in arrival order), so that a hot aggregate does not thrash on conflicts; commands
    /// for different ids still run at once. Beside [`retry_on_conflict`](Self::retry_on_conflict),
    /// which still covers writers in other processes. Clones of the repository share the
    /// queue.
    pub fn one_command_at_a_time(mut self) -> Self {
        self.serial = Some(Arc::default());
        self
    }

    /// Keeps up to `capacity` aggregates in memory as the last command left them, so
    /// that the next command for one decides without reading its stream. Safe with other
    /// writers (other processes, other repositories): the append still carries the
    /// cached version as the expected one, so a stale entry ends in a conflict, is
    /// dropped, and the command is decided again from the store (within
    /// [`retry_on_conflict`](Self::retry_on_conflict)). The caching repository of Axon
    /// and of Akka's persistent actors, with optimistic concurrency as the guard. Clones
    /// of the repository share the cache.
    pub fn cache(mut self, capacity: usize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(Arc::new(Cache {
            entries: std::sync::Mutex::default(),
            capacity: capacity.max(1),
            clone: A::clone,
        }));
        self
    }

    /// The upcasters that upgrade stored events to the versions `A` reads.
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// When another writer appends to the stream between this load and this append
    /// (`flext.event.conflict`), or the database stays locked past its busy timeout
    /// (`flext.store.busy`, transient), reload and decide again, up to `retries` more
    /// times, before returning the error. Default 0: the error goes to the caller.
    pub fn retry_on_conflict(mut self, retries: u32) -> Self {
        self.conflict_retries = retries;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The stream of aggregate `id`.
    pub fn stream(id: &str) -> StreamId {
        StreamId::new(A::TYPE, id)
    }

    /// Loads aggregate `id`: its latest snapshot, when `A` takes snapshots and one
    /// decodes, then every event after it, each upcast to the version `A` reads and
    /// applied in order. An aggregate with no events is `A::initial()` with its id set,
    /// at version 0.
    ///
    /// # Errors
    ///
    /// The store's errors; `flext.event.unknown` for a stored event `A` does not apply;
    /// `flext.event.no_upcaster` or `flext.event.version_too_new` for a stored version
    /// with no way to the one `A` reads; `flext.event.decode` for a payload that does not
    /// decode; the id's parse error from [`AggregateRoot::set_aggregate_id`](super::AggregateRoot::set_aggregate_id).
    pub async fn load(&self, id: &str) -> Result<Loaded<A>> {
        let stream = Self::stream(id);
        let mut loaded = None;
        if A::SNAPSHOT_EVERY.is_some()
            && let Some(snapshot) = self.store.load_snapshot(&stream).await?
        {
            match A::restore(snapshot.state) {
                Some(Ok(state)) => {
                    loaded = Some(Loaded {
                        state,
                        version: snapshot.version,
                    })
                }
                Some(Err(error)) => {
                    tracing::warn!(stream = %stream, %error, "snapshot does not decode; replaying the stream")
                }
                None => {}
            }
        }
        let mut loaded = match loaded {
            Some(l) => l,
            None => {
                let mut state = A::initial();
                state.set_aggregate_id(id)?;
                Loaded { state, version: 0 }
            }
        };
        // Each stored event is decoded once, from the store's own copy where the store
        // lends it (`EventStore::replay`); its payload is copied only to be upcast.
        let upcasters = &self.upcasters;
        let after = loaded.version;
        let (state, version) = (&mut loaded.state, &mut loaded.version);
        let mut apply = |event: &crate::event_store::EventEnvelope| -> Result<()> {
            let target = A::event_version(&event.name).ok_or_else(|| {
                Error::internal(
                    crate::codes::EVENT_UNKNOWN,
                    format!(
                        "stream {stream} holds event `{}` (sequence {}), which `{}` has no `#[apply]` method for",
                        crate::input::echo(&event.name),
                        event.sequence,
                        A::TYPE
                    ),
                )
            })?;
            if target == event.schema_version {
                state.apply_stored(&event.name, &event.payload)?;
            } else {
                let payload = upcasters.upcast(
                    &event.name,
                    event.schema_version,
                    target,
                    event.payload.clone(),
                )?;
                state.apply_stored(&event.name, &payload)?;
            }
            *version = event.sequence;
            Ok(())
        };
        self.store.replay(&stream, after, &mut apply).await?;
        Ok(loaded)
    }

    /// Executes `command`: loads its aggregate, decides, appends the raised events with
    /// the loaded version as the expected one, applies them, and takes a snapshot when
    /// the version crosses a multiple of `A::SNAPSHOT_EVERY`. A command that raises
    /// nothing appends nothing. Each event gets a fresh id, the context's correlation id,
    /// and the context's id as its causation id.
    ///
    /// # Errors
    ///
    /// The command method's error, as it returned it; those of [`load`](Self::load);
    /// `flext.event.conflict` when another writer appended first and the retries allowed
    /// by [`retry_on_conflict`](Self::retry_on_conflict) are spent.
    pub async fn execute<C>(&self, command: &C, ctx: &Context) -> Result<Executed<A>>
    where
        C: Command,
        A: Handles<C>,
    {
        let id = A::aggregate_id_of(command);
        let Some(serial) = self.serial.clone() else {
            return self.execute_unserialised(id, command, ctx).await;
        };
        // Released when this future ends or is dropped (a cancelled command).
        let turn = serial.enter(&id);
        let _held = turn.wait().await;
        self.execute_unserialised(id.clone(), command, ctx).await
    }

    async fn execute_unserialised<C>(
        &self,
        id: String,
        command: &C,
        ctx: &Context,
    ) -> Result<Executed<A>>
    where
        C: Command,
        A: Handles<C>,
    {
        let stream = Self::stream(&id);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let cached = self.cache.as_ref().and_then(|c| c.take(&id));
            let Loaded { mut state, version } = match cached {
                Some(loaded) => loaded,
                None => self.load(&id).await?,
            };
            let events = match state.handle(command, ctx) {
                Ok(events) => events,
                Err(e) => {
                    // Refused: the state is as it was, still current.
                    if let Some(cache) = &self.cache {
                        cache.put(id, &state, version);
                    }
                    return Err(e);
                }
            };
            if events.is_empty() {
                if let Some(cache) = &self.cache {
                    cache.put(id, &state, version);
                }
                return Ok(Executed {
                    appended: Appended {
                        stream,
                        version,
                        event_ids: Vec::new(),
                    },
                    state,
                    events: Vec::new(),
                    attempts,
                });
            }
            let new = new_events(&events, ctx)?;
            let appending = match ctx.idempotency_claim().filter(|c| c.is_for(C::NAME)) {
                // The response commits with the events.
                Some(claim) => {
                    // Through a `Value`, as the bus answers: the stored text is the
                    // answered text, byte for byte.
                    let body = serde_json::to_value(A::answer(Appended {
                        stream: stream.clone(),
                        version: version + new.len() as u64,
                        event_ids: new.iter().map(|e| e.event_id).collect(),
                    }))
                    .map(|v| v.to_string())
                    .map_err(|e| {
                        Error::internal(
                            crate::codes::BUS_OUTPUT_NOT_SERIALISABLE,
                            format!("the command's answer does not serialise: {e}"),
                        )
                    })?;
                    let response = crate::idempotency::Response::new(
                        claim.status,
                        body,
                        claim.location.clone(),
                    );
                    self.store
                        .append_claimed(&stream, version, &new, claim, &response)
                        .await
                }
                None => self.store.append(&stream, version, &new).await,
            };
            match appending {
                Ok(now) => {
                    events.apply_to(&mut state);
                    if let Some(cache) = &self.cache {
                        cache.put(id, &state, now);
                    }
                    self.maybe_snapshot(&stream, &state, version, now).await;
                    return Ok(Executed {
                        appended: Appended {
                            stream,
                            version: now,
                            event_ids: new.iter().map(|e| e.event_id).collect(),
                        },
                        state,
                        events: events.into_vec(),
                        attempts,
                    });
                }
                Err(e)
                    if (e.code() == crate::codes::EVENT_CONFLICT
                        || e.code() == crate::codes::STORE_BUSY)
                        && attempts <= self.conflict_retries =>
                {
                    tracing::debug!(stream = %stream, attempts, code = e.code(), "conflict; deciding again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn maybe_snapshot(&self, stream: &StreamId, state: &A, before: u64, now: u64) {
        let Some(every) = A::SNAPSHOT_EVERY.filter(|&n| n > 0) else {
            return;
        };
        if before / every == now / every {
            return;
        }
        let snapshot = match state.snapshot() {
            Some(Ok(state)) => Snapshot {
                stream: stream.clone(),
                version: now,
                state,
                taken_ms: crate::saga::now_ms(),
            },
            Some(Err(error)) => {
                tracing::warn!(stream = %stream, %error, "the state does not serialise: no snapshot");
                return;
            }
            None => return,
        };
        // A snapshot is an optimisation: failing to save one loses nothing.
        if let Err(error) = self.store.save_snapshot(&snapshot).await {
            tracing::warn!(stream = %stream, %error, "saving a snapshot failed");
        }
    }
}

fn new_events<A: 'static>(events: &Events<A>, ctx: &Context) -> Result<Vec<NewEvent>> {
    events
        .iter()
        .map(|e| Ok(NewEvent::new(e.name(), e.version(), e.to_json()?, ctx)))
        .collect()
}
