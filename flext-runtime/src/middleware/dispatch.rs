//! [`Dispatch`]: what a middleware or an interceptor knows about one dispatch, and the
//! cells the bus keeps beside it.

use std::any::Any;
use std::sync::OnceLock;
use std::time::Duration;

use crate::context::Context;
use crate::error::Result;
use crate::message::{Message, MessageKind};

/// What a message type tells every dispatch of it: one `'static` value per type.
struct MessageInfo {
    name: &'static str,
    kind: MessageKind,
    idempotent: bool,
    timeout: fn() -> Option<Duration>,
    validate: fn(&(dyn Any + Send + Sync)) -> Result<()>,
}

struct InfoOf<M>(std::marker::PhantomData<M>);

impl<M: Message> InfoOf<M> {
    const INFO: MessageInfo = MessageInfo {
        name: M::NAME,
        kind: M::KIND,
        idempotent: M::IDEMPOTENT,
        timeout: M::timeout,
        validate: validate_erased::<M>,
    };
}

/// What one dispatch keeps beside its [`Dispatch`], in the bus's frame: set at most once
/// each, by whoever asks first.
#[derive(Default)]
pub(crate) struct Cells {
    span: OnceLock<::tracing::Span>,
    id: OnceLock<uuid::Uuid>,
}

impl Cells {
    /// The handler's context: a child of the caller's, with the id an interceptor saw,
    /// or a new one.
    pub(crate) fn handler_context(&self, caller: &Context) -> Context {
        caller.child_with_id(*self.id.get_or_init(uuid::Uuid::new_v4))
    }

    /// The span an interceptor set, if any.
    pub(crate) fn span(&self) -> Option<&::tracing::Span> {
        self.span.get()
    }
}

/// What a middleware or an [`Interceptor`](super::Interceptor) knows about the dispatch it sees.
pub struct Dispatch<'a> {
    info: &'static MessageInfo,
    handler: &'static str,
    /// `None` in [`Interceptor::after`](super::Interceptor::after): the handler has taken the message.
    message: Option<&'a (dyn Any + Send + Sync)>,
    /// Read once by the bus when an interceptor is [`timed`](super::Interceptor::timed).
    started: Option<quanta::Instant>,
    cells: &'a Cells,
    /// This handler's memo slots, one per interceptor of the bus.
    memos: &'a [OnceLock<Box<dyn Any + Send + Sync>>],
}

impl<'a> Dispatch<'a> {
    #[inline]
    pub(crate) fn new<M: Message>(
        message: &'a M,
        handler: &'static str,
        cells: &'a Cells,
        memos: &'a [OnceLock<Box<dyn Any + Send + Sync>>],
        clock: bool,
    ) -> Self {
        Dispatch {
            info: &InfoOf::<M>::INFO,
            handler,
            message: Some(message),
            started: clock.then(quanta::Instant::now),
            cells,
            memos,
        }
    }

    /// The same dispatch without its message, for what runs after the handler took it:
    /// the borrow of the message ends here.
    #[inline]
    pub(crate) fn finish<'b>(
        self,
        cells: &'b Cells,
        memos: &'b [OnceLock<Box<dyn Any + Send + Sync>>],
    ) -> Dispatch<'b> {
        Dispatch {
            info: self.info,
            handler: self.handler,
            message: None,
            started: self.started,
            cells,
            memos,
        }
    }

    /// The message's stable name.
    pub fn name(&self) -> &'static str {
        self.info.name
    }

    /// Command, query or event.
    pub fn kind(&self) -> MessageKind {
        self.info.kind
    }

    /// The handler the dispatch goes to.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// Whether the message is marked idempotent (may be retried).
    pub fn idempotent(&self) -> bool {
        self.info.idempotent
    }

    /// The message's own timeout, if it declares one.
    pub fn timeout(&self) -> Option<Duration> {
        (self.info.timeout)()
    }

    /// The message, when it is an `M`; `None` for another type, and in
    /// [`Interceptor::after`](super::Interceptor::after), where the handler has taken it.
    pub fn message<M: 'static>(&self) -> Option<&M> {
        self.message?.downcast_ref()
    }

    /// Runs the message's business rules; `Ok` in [`Interceptor::after`](super::Interceptor::after).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation) with every violation.
    pub fn validate(&self) -> Result<()> {
        match self.message {
            Some(message) => (self.info.validate)(message),
            None => Ok(()),
        }
    }

    /// The time since the dispatch started, when an interceptor of the bus is
    /// [`timed`](super::Interceptor::timed) (the bus reads the clock once for all of them);
    /// `None` otherwise.
    pub fn elapsed(&self) -> Option<Duration> {
        self.started.map(|s| s.elapsed())
    }

    /// Sets the span the rest of the dispatch (wrapping middleware, the handler, and
    /// every later interceptor) runs in. The first span set wins: returns `false`, and
    /// drops `span`, when one is set already. [`Tracing`](super::Tracing) sets its `flext.dispatch`
    /// span here.
    pub fn enter_span(&self, span: ::tracing::Span) -> bool {
        self.cells.span.set(span).is_ok()
    }

    /// The span set with [`enter_span`](Self::enter_span), if any.
    pub fn span(&self) -> Option<&::tracing::Span> {
        self.cells.span.get()
    }

    /// The id the handler's context has (a [`Context::child`] of the caller's gets it):
    /// an interceptor sees the caller's context, and this is the dispatch's own id, for
    /// a span or a log line. Made on first use: a dispatch nobody asks about and whose
    /// handler does not take `&Context` draws no random id.
    pub fn message_id(&self) -> uuid::Uuid {
        *self.cells.id.get_or_init(uuid::Uuid::new_v4)
    }

    /// A value kept per handler of this bus for the interceptor's own use, made by `init`
    /// the first time a dispatch of this handler asks for a `T`: what [`Metrics`](super::Metrics) keeps
    /// its metric handles in, so that it builds no key per call. One value per type and
    /// handler; a bus has one slot per interceptor, and `None` comes back when they are
    /// all taken by other types (then compute the value yourself).
    pub fn memo<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        let mut init = Some(init);
        for slot in self.memos {
            let value = slot.get_or_init(|| match init.take() {
                Some(init) => Box::new(init()),
                None => Box::new(()),
            });
            if let Some(value) = value.downcast_ref::<T>() {
                return Some(value);
            }
        }
        None
    }
}

fn validate_erased<M: Message>(message: &(dyn Any + Send + Sync)) -> Result<()> {
    match message.downcast_ref::<M>() {
        Some(m) => m.validate(),
        None => Ok(()),
    }
}
