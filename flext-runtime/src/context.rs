//! [`Context`]: who asked, on behalf of what, and by when.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The authenticated caller on whose behalf a call runs.
///
/// ```
/// let p = flext::Principal::new("u-17").with_role("admin");
/// assert!(p.has_role("admin"));
/// assert!(!p.has_role("auditor"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable identifier of the caller (user id, service account name).
    pub id: String,
    /// Roles granted to the caller.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Principal {
    /// A principal with `id` and no roles.
    pub fn new(id: impl Into<String>) -> Self {
        Principal {
            id: id.into(),
            roles: Vec::new(),
        }
    }

    /// Adds a role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Whether the principal has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// What travels with every service call, dispatch and event: ids that tie a chain of
/// messages together, the caller, an optional deadline and free metadata.
///
/// - [`id`](Self::id) identifies this operation (the message being handled).
/// - [`correlation_id`](Self::correlation_id) is shared by every operation started, directly
///   or not, by the same original request.
/// - [`causation_id`](Self::causation_id) is the `id` of the operation that caused this one;
///   `None` for the original request.
///
/// This is the correlation/causation scheme of Greg Young's event-sourcing talks, as used
/// by EventStoreDB and Axon: follow `causation_id` to rebuild the tree of a request,
/// filter by `correlation_id` to see all of it.
///
/// `Context` is cheap to clone and to derive with [`child`](Self::child): the ids are
/// `Copy`, the principal and the metadata are shared behind `Arc`s.
///
/// ```
/// use flext::{Context, Principal};
/// use std::time::Duration;
///
/// let root = Context::new()
///     .with_principal(Principal::new("alice"))
///     .with_timeout(Duration::from_millis(500))
///     .with_metadata("tenant", "acme");
/// let child = root.child();
/// assert_eq!(child.correlation_id(), root.correlation_id());
/// assert_eq!(child.causation_id(), Some(root.id()));
/// assert_ne!(child.id(), root.id());
/// assert_eq!(child.principal().map(|p| p.id.as_str()), Some("alice"));
/// assert_eq!(child.metadata("tenant"), Some("acme"));
/// assert_eq!(child.deadline(), root.deadline());
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    id: Uuid,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    principal: Option<Arc<Principal>>,
    deadline: Option<Instant>,
    /// `None` when empty: a root context allocates nothing.
    metadata: Option<Arc<BTreeMap<String, String>>>,
    idempotency_key: Option<Arc<str>>,
    fencing_token: Option<u64>,
    idempotency_claim: Option<Arc<crate::idempotency::IdempotencyClaim>>,
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    /// A root context: a fresh random (v4) id that is also the correlation id, no
    /// causation id, no principal, no deadline, no metadata.
    pub fn new() -> Self {
        let id = Uuid::new_v4();
        Context {
            id,
            correlation_id: id,
            causation_id: None,
            principal: None,
            deadline: None,
            metadata: None,
            idempotency_key: None,
            fencing_token: None,
            idempotency_claim: None,
        }
    }

    /// A root context that joins an existing correlation, for example one received in an
    /// HTTP header from an upstream service.
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// Sets the id of the message that caused this operation: for a root context built
    /// from a message received from elsewhere (an event from a broker), so that what it
    /// raises names that message as its cause's cause.
    pub fn with_causation_id(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// The context for an operation caused by this one: a new id, the same correlation
    /// id, principal, deadline and metadata, and `causation_id` set to this context's id.
    pub fn child(&self) -> Self {
        self.child_with_id(Uuid::new_v4())
    }

    /// [`child`](Self::child) with a given id.
    pub(crate) fn child_with_id(&self, id: Uuid) -> Self {
        Context {
            id,
            correlation_id: self.correlation_id,
            causation_id: Some(self.id),
            principal: self.principal.clone(),
            deadline: self.deadline,
            metadata: self.metadata.clone(),
            // An idempotency key names one operation; a child is another one.
            idempotency_key: None,
            fencing_token: None,
            // The claim names its command: the bus's child context for the handler
            // carries it there, and other commands leave it alone.
            idempotency_claim: self.idempotency_claim.clone(),
        }
    }

    /// Sets the principal the operation runs for.
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = Some(Arc::new(principal));
        self
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the deadline to `timeout` from now (keeps an earlier deadline if one is set).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let at = Instant::now() + timeout;
        match self.deadline {
            Some(existing) if existing <= at => self,
            _ => self.with_deadline(at),
        }
    }

    /// Sets the idempotency key of this operation (what [`idempotency_key`] returns);
    /// saga runners set it for every step. Not inherited by [`child`](Self::child).
    ///
    /// [`idempotency_key`]: Self::idempotency_key
    pub fn with_idempotency_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The idempotency key of the operation this context belongs to, when one is set:
    /// for a saga step `"<saga id>:<step>"` (with `":compensate"` appended for a
    /// compensation). Every attempt of the step gets the same key, before and after a
    /// crash; deduplicate side effects on it.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Sets the claim on a client's idempotency key this operation runs under (what
    /// `flext::http` does for a request with an `Idempotency-Key`): the event store's
    /// append for the claim's command stores the response in its own transaction
    /// ([`idempotency`](crate::idempotency)). Inherited by [`child`](Self::child).
    pub fn with_idempotency_claim(
        mut self,
        claim: Arc<crate::idempotency::IdempotencyClaim>,
    ) -> Self {
        self.idempotency_claim = Some(claim);
        self
    }

    /// The idempotency claim this operation runs under, when one is set.
    pub fn idempotency_claim(&self) -> Option<&Arc<crate::idempotency::IdempotencyClaim>> {
        self.idempotency_claim.as_ref()
    }

    /// Sets the fencing token this operation runs under (what [`fencing_token`]
    /// returns); saga runners set it for every step. Not inherited by
    /// [`child`](Self::child).
    ///
    /// [`fencing_token`]: Self::fencing_token
    pub fn with_fencing_token(mut self, token: u64) -> Self {
        self.fencing_token = Some(token);
        self
    }

    /// The fencing token of the claim this operation runs under, when one is set: for a
    /// saga step, the saga's epoch ([`SagaRecord::epoch`](crate::saga::SagaRecord::epoch)),
    /// which grows by one each time another runner claims the saga. A step's body may
    /// still overlap with the same step under a newer epoch (a runner that paused past
    /// its lease); a step that fences its own side effects stores the highest token it
    /// saw next to the [`idempotency_key`](Self::idempotency_key) and refuses a lower one
    /// (Kleppmann, "How to do distributed locking", 2016).
    ///
    /// ```
    /// use flext::Context;
    /// let ctx = Context::new().with_fencing_token(3);
    /// assert_eq!(ctx.fencing_token(), Some(3));
    /// assert_eq!(ctx.child().fencing_token(), None);
    /// ```
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// Adds a metadata entry (replacing an earlier value for `key`).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(self.metadata.get_or_insert_with(Arc::default))
            .insert(key.into(), value.into());
        self
    }

    /// The id of this operation.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The id shared by every operation of the same original request.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// The id of the operation that caused this one; `None` for a root context.
    pub fn causation_id(&self) -> Option<Uuid> {
        self.causation_id
    }

    /// The caller, when known.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }

    /// The deadline, when one is set.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until the deadline: `None` without a deadline, `Some(Duration::ZERO)`
    /// once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// One metadata value.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key).map(String::as_str)
    }

    /// All metadata, sorted by key.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causation_chain_over_three_hops() {
        let a = Context::new();
        let b = a.child();
        let c = b.child();
        assert_eq!(a.causation_id(), None);
        assert_eq!(c.causation_id(), Some(b.id()));
        assert_eq!(c.correlation_id(), a.id());
    }

    #[test]
    fn with_timeout_never_extends_a_deadline() {
        let ctx = Context::new().with_timeout(Duration::from_millis(10));
        let first = ctx.deadline().unwrap();
        let ctx = ctx.with_timeout(Duration::from_secs(3600));
        assert_eq!(ctx.deadline(), Some(first));
    }
}
