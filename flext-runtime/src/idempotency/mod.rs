//! Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header): a request carrying
//! a key is executed once, and a repeat is answered with the first response.
//!
//! The store keeps one row per (scope, key). [`IdempotencyStore::claim`] takes the row
//! for a request, in flight; the command's writes then complete it **in their own
//! transaction**: an aggregate's append (SQLite and PostgreSQL event stores) writes the
//! response into the row in the transaction that appends the events, and refuses to
//! commit when the claim was taken over meanwhile (`flext.idempotency.claim_lost`). So
//! the effects and the stored response commit together or not at all, the pattern of
//! Stripe's idempotency keys and of Wolverine's `[Deduplicated]` handlers. A command that
//! writes nothing through the event store is completed right after it answers
//! ([`IdempotencyStore::complete`]); a failed command releases its claim, so that the
//! client may try again.
//!
//! `flext-http` (`flext::http`) drives this for every command route; the types are here
//! so that the stores can complete a claim inside their transactions.
//!
//!
//! An example is on the SQLite database's implementation of [`IdempotencyStore`].

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::Error;
use crate::error::Result;
use crate::future::BoxFuture;

/// A claim on an idempotency key: the request that holds it may commit its effects with
/// the response; a later holder (after [`claim`](IdempotencyStore::claim)'s in-flight
/// lease ran out) fences it out by its `token`.
#[derive(Debug)]
pub struct IdempotencyClaim {
    /// Whose key this is: the principal and the route, so that two clients' keys never
    /// meet.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// This claim's fencing token: a takeover writes a new one.
    pub token: Uuid,
    /// The status a success is answered with (200, 201 or 202), stored with the body.
    pub status: u16,
    /// The `Location` a success is answered with, for a 201.
    pub location: Option<String>,
    /// The name of the command whose commit completes the claim (`Message::NAME`); other
    /// commands the handler sends under the same context leave it alone.
    pub message: String,
    completed: AtomicBool,
}

impl IdempotencyClaim {
    /// A claim held with `token` (what a store's [`claim`](IdempotencyStore::claim)
    /// returns; `status` 200, no `Location` and no message until set).
    pub fn new(scope: impl Into<String>, key: impl Into<String>, token: Uuid) -> Self {
        IdempotencyClaim {
            scope: scope.into(),
            key: key.into(),
            token,
            status: 200,
            location: None,
            message: String::new(),
            completed: AtomicBool::new(false),
        }
    }

    /// Sets what a success answers: its status, its `Location`, and the command whose
    /// commit completes the claim.
    pub fn answering(
        mut self,
        status: u16,
        location: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        self.status = status;
        self.location = location;
        self.message = message.into();
        self
    }

    /// Whether a store completed this claim inside a command's transaction.
    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }

    /// Marks the claim completed (by a store, after its transaction committed).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn set_completed(&self) {
        self.completed.store(true, Ordering::Release);
    }

    /// Whether command `message`'s transaction should complete this claim: the claim's
    /// own command, not completed yet.
    pub(crate) fn is_for(&self, message: &str) -> bool {
        self.message == message && !self.is_completed()
    }
}

/// A stored response, replayed for a repeat of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body, JSON text.
    pub body: String,
    /// The `Location` header, for a 201.
    pub location: Option<String>,
}

impl Response {
    /// A response.
    pub fn new(status: u16, body: impl Into<String>, location: Option<String>) -> Self {
        Response {
            status,
            body: body.into(),
            location,
        }
    }
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// The key is new (or its earlier row expired, or its holder's in-flight lease ran
    /// out): run the command under this claim.
    Claimed(IdempotencyClaim),
    /// The key was used for the same request, which completed: answer with this.
    Replay(Response),
    /// The key was used for the same request, which is still running: 409.
    InFlight,
    /// The key was used for a different request (another fingerprint): 422.
    Mismatch,
}

/// Where idempotency keys are claimed and their responses kept: the SQLite and
/// PostgreSQL databases (`SqliteDatabase`, `PgDatabase`), which are also where the
/// command's events are appended, so that a claim completes in the append's transaction.
///
/// Times are milliseconds.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` in `scope` for a request whose content hashes to `fingerprint`:
    /// a new key (or one whose row expired) is claimed, in flight for `in_flight_ms`
    /// (after which another request may take it over, fencing this one out) and kept
    /// `keep_ms` from now. A key seen before answers [`Claim::Replay`] (done, same
    /// fingerprint), [`Claim::InFlight`] or [`Claim::Mismatch`] (another fingerprint).
    /// Also deletes a few expired rows.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the store
    /// fails.
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: &'a str,
        in_flight_ms: u64,
        keep_ms: u64,
    ) -> BoxFuture<'a, Result<Claim>>;

    /// Stores `response` for `claim` when the claim is still held and in flight; a claim
    /// a command's transaction completed already is left as it is. Returns whether it
    /// wrote.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the store
    /// fails.
    fn complete<'a>(
        &'a self,
        claim: &'a IdempotencyClaim,
        response: &'a Response,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Gives up `claim` (the command failed): the key may be used again at once. A claim
    /// that was completed or taken over is left as it is.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the store
    /// fails.
    fn release<'a>(&'a self, claim: &'a IdempotencyClaim) -> BoxFuture<'a, Result<()>>;
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: &'a str,
        in_flight_ms: u64,
        keep_ms: u64,
    ) -> BoxFuture<'a, Result<Claim>> {
        (**self).claim(scope, key, fingerprint, in_flight_ms, keep_ms)
    }

    fn complete<'a>(
        &'a self,
        claim: &'a IdempotencyClaim,
        response: &'a Response,
    ) -> BoxFuture<'a, Result<bool>> {
        (**self).complete(claim, response)
    }

    fn release<'a>(&'a self, claim: &'a IdempotencyClaim) -> BoxFuture<'a, Result<()>> {
        (**self).release(claim)
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The error of a command whose claim was taken over before it committed: nothing it
/// wrote through the store committed.
pub(crate) fn claim_lost(claim: &IdempotencyClaim) -> Error {
    Error::conflict(
        crate::codes::IDEMPOTENCY_CLAIM_LOST,
        format!(
            "idempotency key {} was taken over by a repeat after this request's in-flight time ran out: nothing was committed; the repeat's answer stands",
            crate::input::echo(&claim.key)
        ),
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// What a row holds, as both stores read it.
pub(crate) struct Row {
    pub fingerprint: String,
    pub done: bool,
    pub locked_until_ms: i64,
    pub expires_ms: i64,
    pub response: Option<Response>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// What a claim does with the row it found (`None`: no row).
pub(crate) enum Decision {
    Take,
    Answer(Claim),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decide(row: Option<Row>, fingerprint: &str, now: i64) -> Decision {
    match row {
        None => Decision::Take,
        Some(row) if row.expires_ms <= now => Decision::Take,
        Some(row) if row.fingerprint != fingerprint => Decision::Answer(Claim::Mismatch),
        Some(Row {
            done: true,
            response: Some(r),
            ..
        }) => Decision::Answer(Claim::Replay(r)),
        Some(row) if row.locked_until_ms > now => Decision::Answer(Claim::InFlight),
        // In flight past its lease: its holder died or stalled; take it over.
        Some(_) => Decision::Take,
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
