//! [`Fixture`]: given/when/then tests of an aggregate's decisions, without a store.

use super::{Aggregate, Events, Handles};
use crate::context::Context;
use crate::error::Result;
use crate::message::Command;

type Given<A> = Box<dyn FnOnce(&mut A, &Context) -> Result<()>>;

/// A test of aggregate `A`: given its history (events, or commands that raise them),
/// when it receives a command, then it raises these events, or refuses with that error.
/// In the style of cqrs-es's `TestFramework` and Axon's `AggregateTestFixture`.
///
/// Given events are applied the way a load applies them, through the same JSON text the
/// stores keep, so that a test also catches an event that does not survive the store;
/// when the aggregate takes snapshots, the given state is also restored from its
/// snapshot's text before the command. The aggregate's id is the `when` command's.
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
/// Fixture::<Account>::given(Events::one(Deposited { cents: 100 }))
///     .when(Deposit { account: "a-1".into(), cents: 50 })
///     .then_expect(Events::one(Deposited { cents: 50 }));
///
/// let account = Fixture::<Account>::given_command(Deposit { account: "a-1".into(), cents: 7 })
///     .when(Deposit { account: "a-1".into(), cents: 0 })
///     .then_expect_error("account.zero");
/// assert_eq!(account.code(), "account.zero");
/// ```
pub struct Fixture<A> {
    given: Vec<Given<A>>,
    ctx: Context,
}

impl<A: Aggregate> Fixture<A> {
    /// A new aggregate, with no history.
    pub fn given_no_events() -> Self {
        Fixture {
            given: Vec::new(),
            ctx: Context::new(),
        }
    }

    /// An aggregate whose stream holds `events`.
    pub fn given(events: Events<A>) -> Self {
        Self::given_no_events().and_events(events)
    }

    /// An aggregate that has handled `command` (it must succeed; its events become the
    /// history).
    pub fn given_command<C>(command: C) -> Self
    where
        C: Command,
        A: Handles<C>,
    {
        Self::given_no_events().and_command(command)
    }

    /// Then these events too.
    pub fn and_events(mut self, events: Events<A>) -> Self {
        self.given.push(Box::new(move |state: &mut A, _: &Context| {
            for (name, payload) in events.to_json()? {
                state.apply_stored(name, &through_text(&payload)?)?;
            }
            Ok(())
        }));
        self
    }

    /// Then what `command` raises (it must succeed).
    pub fn and_command<C>(mut self, command: C) -> Self
    where
        C: Command,
        A: Handles<C>,
    {
        self.given
            .push(Box::new(move |state: &mut A, ctx: &Context| {
                let events = state.handle(&command, ctx)?;
                events.apply_to(state);
                Ok(())
            }));
        self
    }

    /// Runs the commands under `ctx` (for a principal or metadata the decision reads).
    pub fn with_context(mut self, ctx: Context) -> Self {
        self.ctx = ctx;
        self
    }

    /// Builds the history, then decides `command`.
    ///
    /// # Panics
    ///
    /// When the history cannot be built (a given command fails, a given event does not
    /// decode): the test's setup is wrong, and the panic says how.
    pub fn when<C>(self, command: C) -> FixtureResult<A>
    where
        C: Command,
        A: Handles<C>,
    {
        let mut state = A::initial();
        let id = A::aggregate_id_of(&command);
        if let Err(e) = state.set_aggregate_id(&id) {
            panic!(
                "fixture: the command's aggregate id `{id}` is not a valid id of `{}`: {e}",
                A::TYPE
            );
        }
        for (i, given) in self.given.into_iter().enumerate() {
            if let Err(e) = given(&mut state, &self.ctx) {
                panic!("fixture: given #{} of `{}` failed: {e}", i + 1, A::TYPE);
            }
        }
        if let Some(snapshot) = state.snapshot() {
            let restored = snapshot
                .and_then(|s| through_text(&s))
                .and_then(|s| A::restore(s).unwrap_or_else(|| Ok(A::initial())));
            match restored {
                Ok(restored) => state = restored,
                Err(e) => panic!(
                    "fixture: the given state of `{}` does not survive its snapshot: {e}",
                    A::TYPE
                ),
            }
        }
        let result = state.handle(&command, &self.ctx);
        if let Ok(events) = &result {
            events.apply_to(&mut state);
        }
        FixtureResult { result, state }
    }
}

/// What a [`Fixture`]'s command did; assert on it with `then_*`.
pub struct FixtureResult<A> {
    result: Result<Events<A>>,
    state: A,
}

impl<A: Aggregate> FixtureResult<A> {
    /// Asserts that the command raised exactly `expected`, in order (compared by name
    /// and JSON payload).
    ///
    /// # Panics
    ///
    /// When it raised other events, or failed; the message shows both sides as the
    /// events' JSON text, line by line, marking the lines that differ. Also when an
    /// event has no JSON form (a NaN float, for one).
    #[track_caller]
    pub fn then_expect(self, expected: Events<A>) -> A {
        let expected = lines(&expected, "expected");
        match &self.result {
            Ok(events) => {
                let actual = lines(events, "raised");
                if actual != expected {
                    panic!(
                        "fixture: `{}` raised other events than expected\n{}",
                        A::TYPE,
                        side_by_side(&expected, &actual)
                    );
                }
            }
            Err(e) => panic!(
                "fixture: expected {} event(s), but the command failed: {e}",
                expected.len()
            ),
        }
        self.state
    }

    /// Asserts that the command raised nothing and succeeded.
    ///
    /// # Panics
    ///
    /// When it raised events or failed.
    #[track_caller]
    pub fn then_expect_no_events(self) -> A {
        self.then_expect(Events::none())
    }

    /// Asserts that the command was refused with error code `code`.
    ///
    /// # Panics
    ///
    /// When it succeeded, or failed with another code; the message shows what happened.
    #[track_caller]
    pub fn then_expect_error(self, code: &str) -> crate::Error {
        match self.result {
            Ok(events) => panic!(
                "fixture: expected error `{code}`, but `{}` raised {:?}",
                A::TYPE,
                events
            ),
            Err(e) => {
                assert_eq!(
                    e.code(),
                    code,
                    "fixture: `{}` failed with another error: {e}",
                    A::TYPE
                );
                e
            }
        }
    }

    /// Asserts that the command was refused with the message `message` (the error's
    /// [`message`](crate::Error::message), without its code), as cqrs-es's
    /// `then_expect_error_message`. Returns the error.
    ///
    /// # Panics
    ///
    /// When it succeeded, or failed with another message; the message shows both.
    #[track_caller]
    pub fn then_expect_error_message(self, message: &str) -> crate::Error {
        match self.result {
            Ok(events) => panic!(
                "fixture: expected an error saying `{message}`, but `{}` raised {:?}",
                A::TYPE,
                events
            ),
            Err(e) => {
                assert_eq!(
                    e.message(),
                    message,
                    "fixture: `{}` failed with another message (code `{}`)",
                    A::TYPE,
                    e.code()
                );
                e
            }
        }
    }

    /// The aggregate's state after the command's events (unchanged when it failed).
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// `value` written as the stores write it and read back, as a load reads it.
fn through_text(value: &serde_json::Value) -> Result<serde_json::Value> {
    serde_json::to_string(value)
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|e| {
            crate::Error::internal(
                crate::codes::EVENT_DECODE,
                format!("not stored exactly: {e}"),
            )
        })
}

/// One line per event: its name and its JSON text.
#[track_caller]
fn lines<A: 'static>(events: &Events<A>, side: &str) -> Vec<String> {
    match events.to_json() {
        Ok(events) => events
            .iter()
            .map(|(name, payload)| format!("{name} {payload}"))
            .collect(),
        Err(e) => panic!("fixture: the {side} events have no JSON form: {e}"),
    }
}

/// The two sides, line by line, with `!=` on the lines that differ.
fn side_by_side(expected: &[String], actual: &[String]) -> String {
    let width = expected.iter().map(String::len).max().unwrap_or(0).max(8);
    let mut out = format!("   {:<width$}    raised\n", "expected");
    for i in 0..expected.len().max(actual.len()) {
        let left = expected.get(i).map_or("(none)", String::as_str);
        let right = actual.get(i).map_or("(none)", String::as_str);
        let mark = if left == right { "  " } else { "!=" };
        out.push_str(&format!("{} {left:<width$} {mark} {right}\n", i + 1));
    }
    out
}
