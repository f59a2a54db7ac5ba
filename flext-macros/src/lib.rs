//! Procedural macros of [flext](https://docs.rs/flext). Use them through the `flext`
//! crate (`use flext::prelude::*;`), whose documentation describes each attribute with
//! examples; generated code refers to the runtime only as `::flext::__private_<version>`.
#![forbid(unsafe_code)]

mod aggregate;
mod common;
mod domain_service;
mod handler;
mod message;
mod projection;
mod saga;
mod workflow;

#[cfg(test)]
mod placeholders;

use proc_macro::TokenStream;

use common::driver::{Family, drive};
use common::kind::Kind;

fn run<F: Family>(config: F::Config, args: TokenStream, input: TokenStream) -> TokenStream {
    drive::<F>(config, args.into(), input.into()).into()
}

/// Turns an inherent `impl` block into a domain service: business rules that run in a
/// declared order, then a railway of steps where each step's output feeds the next.
///
/// The struct's fields are the service's inputs. The macro emits the impl block as
/// written (minus flext's method attributes) and implements
/// [`DomainService`](../flext/trait.DomainService.html) for the type, plus
/// [`SyncDomainService`](../flext/trait.SyncDomainService.html) when no method it
/// calls is `async`.
///
/// # What `execute` does, in order
///
/// 1. Opens a `tracing` info span `domain_service` with the service's name in `service`,
///    `correlation_id`, and a `failed_at` field that records the rule or step that failed.
/// 2. Runs every `#[business_rule]`: those with `order = N` first, by ascending `N`; then
///    the others in declaration order; `after = other_rule` moves a rule after another
///    (a stable topological sort). By default all rules run and every violation is
///    returned in one [`Error`](../flext/struct.Error.html) of kind `RuleViolation`; with
///    `fail_fast` the first violated rule ends the run.
/// 3. Runs the `#[step]`s in declaration order. The first takes no value; a later one
///    may take the previous step's output by value, and any earlier step's output by
///    reference (`&T`, or `&str`/`&[T]` for a `String`/`Vec<T>`). The first `Err` ends
///    the run. A `#[tap]` between steps sees the current value by reference and cannot
///    fail.
/// 4. Runs every `#[postcondition]` on the final value, collecting violations.
/// 5. When a step or postcondition fails, runs the undos (`#[step(undo = method)]`) of
///    the steps that completed, in reverse order, each with its step's output by
///    reference (the compensating-transaction pattern of sagas, within one call). A
///    failed undo makes the error `CompensationFailed`, with the original as its source.
/// 6. On any failure, passes the error through the `on_error` hook, if there is one, and
///    returns what the hook returns: the place to map or log the error.
///
/// Any of these methods may be `async`, and may take `ctx: &Context` as an extra
/// parameter to receive the context `execute` was called with.
///
/// # Options
///
/// | option | meaning |
/// | --- | --- |
/// | `fail_fast` | stop at the first violated business rule |
/// | `on_error = method` | call `fn method(&self, error: Error) -> Error` (optionally `async`, optionally with `ctx: &Context`) with the error before returning it |
/// | `name = "..."` | the span name and `DomainService::NAME`; defaults to the type's name |
/// | `crate = path` | where the flext crate is, when it is renamed |
///
/// Method attributes:
///
/// | attribute | signature | options |
/// | --- | --- | --- |
/// | `#[business_rule]` | `fn(&self [, &Context]) -> RuleResult` | `code = "..."` (default: the method name), `order = N`, `after = rule` (repeatable) |
/// | `#[step]` | `fn(&self [, input: T] [, earlier: &E ...] [, &Context]) -> Result<U>` | `undo = method`: `fn method(&self, output: &U [, &Context]) -> Result<()>` |
/// | `#[tap]` | `fn(&self, value: &T [, &Context])` | none |
/// | `#[postcondition]` | `fn(&self, result: &T [, &Context]) -> RuleResult` | `code = "..."` |
///
/// A rule may also return `Result<(), Vec<RuleViolation>>` (several violations) or
/// `flext::Result<()>` (an error that is not a rule violation aborts the service, for
/// example when a repository it queries is down).
///
/// # Example
///
/// ```
/// use flext::prelude::*;
///
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// struct PlaceOrder { sku: String, quantity: u32, in_stock: u32, released: AtomicU32 }
///
/// #[domain_service(on_error = log)]
/// impl PlaceOrder {
///     #[business_rule(code = "order.quantity.positive")]
///     fn quantity_positive(&self) -> RuleResult {
///         ensure!(self.quantity > 0, "quantity must be positive")
///     }
///
///     #[business_rule(code = "order.stock", after = quantity_positive)]
///     fn enough_stock(&self) -> RuleResult {
///         ensure!(self.quantity <= self.in_stock, "only {} of {} in stock", self.in_stock, self.sku)
///     }
///
///     // A step whose effect a later failure must revert names its undo: the undo gets
///     // this run's output, so one service value may run many times at once.
///     #[step(undo = release)]
///     fn reserve(&self) -> Result<u32> {
///         Ok(self.quantity)
///     }
///
///     fn release(&self, reserved: &u32) -> Result<()> {
///         self.released.fetch_add(*reserved, Ordering::SeqCst); // give the units back
///         Ok(())
///     }
///
///     #[step]
///     async fn price(&self, reserved: &u32, ctx: &Context) -> Result<u64> {
///         let _ = ctx.correlation_id();
///         if self.sku.starts_with("X-") {
///             return Err(Error::validation("order.sku", "discontinued"));
///         }
///         Ok(u64::from(*reserved) * 250)
///     }
///
///     // Maps or logs the error on its way out; reverting effects is `undo`'s job.
///     fn log(&self, error: Error) -> Error {
///         eprintln!("order {} refused: {}", self.sku, error.code());
///         error
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let ctx = Context::new();
/// let order = |sku: &str, quantity| PlaceOrder {
///     sku: sku.into(), quantity, in_stock: 5, released: AtomicU32::new(0),
/// };
/// assert_eq!(order("A-1", 2).execute(&ctx).await.unwrap(), 500);
///
/// let err = order("A-1", 9).execute(&ctx).await.unwrap_err();
/// assert_eq!(err.code(), "order.stock");
/// assert_eq!(err.violations()[0].message, "only 5 of A-1 in stock");
///
/// // `price` fails after `reserve`: `release` gets this run's 2 units back.
/// let discontinued = order("X-9", 2);
/// assert_eq!(discontinued.execute(&ctx).await.unwrap_err().code(), "order.sku");
/// assert_eq!(discontinued.released.load(Ordering::SeqCst), 2);
/// # }
/// ```
///
/// # Compile-time checks
///
/// Each is an error on the user's own token (see `tests/ui/domain_service/fail/`):
/// a step whose input type differs from the previous step's output (on the parameter),
/// a duplicate `order`, a cycle or an unknown name in `after`, a rule or step with a wrong
/// signature or return type, a service with no `#[step]`, an unknown or repeated
/// option, an `on_error` or `undo` that names no method, an undo that does not take its
/// step's output, an undone output moved into the next step, and `execute_sync` called
/// on a service with an async item (the error names the item).
///
/// ```compile_fail
/// use flext::prelude::*;
/// struct S;
/// #[domain_service]
/// impl S {
///     #[step] fn a(&self) -> Result<u32> { Ok(1) }
///     #[step] fn b(&self, s: String) -> Result<String> { Ok(s) } // expected `String`, found `u32`
/// }
/// ```
///
/// # Limitations
///
/// - The context parameter is recognised by its type's last path segment: a parameter of
///   type `&Context` is always the flext context.
/// - A generic service's output may not be an `impl Trait` type.
///
/// # Performance
///
/// The expansion is straight-line code: one call per rule and per step into small
/// `#[inline]` runtime functions, no allocation unless a rule is violated. The benchmark
/// `cargo bench --bench domain_service` compares it with the same service written by hand
/// (see BENCHMARKS.md).
#[proc_macro_attribute]
pub fn domain_service(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<domain_service::Service>(domain_service::Mode::Service, args, input)
}

/// Implements `Validate` for a message from the `#[business_rule]` methods of an `impl`
/// block: every rule runs, in the same order `#[domain_service]` uses, and every
/// violation is collected. The `Validation` middleware runs them before the handler for
/// messages marked `validate`.
///
/// On `impl ServiceProcessor for X` (or `AsyncServiceProcessor`) it writes the
/// processor's `rules` from the `#[business_rule]` methods inside that impl, each taking
/// the request (`fn rule(&self, request: &Request) -> RuleResult`, optionally also
/// `&Context`); `run` and `run_batch` run them, in order and collecting every violation,
/// before `process`. The rule methods move to an inherent impl of `X`. The runnable
/// example is on `flext::service::ServiceProcessor`.
///
/// ```
/// use flext::prelude::*;
///
/// #[command(output = (), validate)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Rename { name: String }
///
/// #[business_rules]
/// impl Rename {
///     #[business_rule(code = "rename.name.required")]
///     fn name_present(&self) -> RuleResult {
///         ensure!(!self.name.trim().is_empty(), "a name is required")
///     }
/// }
///
/// let err = flext::Message::validate(&Rename { name: " ".into() }).unwrap_err();
/// assert_eq!(err.code(), "rename.name.required");
/// ```
#[proc_macro_attribute]
pub fn business_rules(args: TokenStream, input: TokenStream) -> TokenStream {
    let on_trait = syn::parse::<syn::ItemImpl>(input.clone()).is_ok_and(|i| i.trait_.is_some());
    let mode = if on_trait {
        domain_service::Mode::ProcessorRules
    } else {
        domain_service::Mode::MessageRules
    };
    run::<domain_service::Service>(mode, args, input)
}

/// Makes a struct or enum a command: a request to change state with exactly one
/// handler. Implements `Message` and `Command` and registers the type for
/// `Bus::send_json`.
///
/// Options: `output = T` (required: what the handler returns), `name = "..."` (the stable
/// name; default the type's name), `idempotent` (the `Retry` middleware may retry it),
/// `timeout_ms = N` (the `Timeout` middleware's limit for it), `validate` (run its
/// `#[business_rules]` in the `Validation` middleware), `crate = path`.
///
/// The type must be `Clone + Serialize + Deserialize + Send + Sync + 'static`.
///
/// ```
/// use flext::prelude::*;
///
/// #[command(output = u64, name = "users.create", idempotent, timeout_ms = 2000)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct CreateUser { email: String }
///
/// assert_eq!(<CreateUser as flext::Message>::NAME, "users.create");
/// assert!(<CreateUser as flext::Message>::IDEMPOTENT);
/// ```
#[proc_macro_attribute]
pub fn command(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<message::MessageDef>(Kind::Command, args, input)
}

/// Makes a struct or enum a query: a request to read state with exactly one handler.
/// Same options as [`macro@command`].
///
/// ```
/// use flext::prelude::*;
///
/// #[query(output = Option<String>)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct FindEmail { user_id: u64 }
/// ```
#[proc_macro_attribute]
pub fn query(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<message::MessageDef>(Kind::Query, args, input)
}

/// Makes a struct or enum an event: something that happened, delivered to every
/// subscriber. Options: `name = "..."`, `version = N` (schema version, from 1),
/// `validate`, `crate = path`.
///
/// ```
/// use flext::prelude::*;
///
/// #[event(name = "user.created", version = 2)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct UserCreated { user_id: u64 }
///
/// assert_eq!(<UserCreated as flext::Message>::VERSION, 2);
/// ```
#[proc_macro_attribute]
pub fn event(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<message::MessageDef>(Kind::Event, args, input)
}

/// Registers a function as the handler of a command, at link time.
///
/// The first parameter is the command, by value; then, in any order, `ctx: &Context`
/// (the dispatch's child context), `bus: &Bus` (to send further messages), and injected
/// state such as `repo: State<UserRepository>`. The function returns
/// `flext::Result<Output>` and may be `async`.
///
/// A second handler for the same command in the same crate is a compile error (E0119,
/// conflicting implementations of `HasOneHandler`). For a command defined in another
/// crate write `#[command_handler(external)]`; the bus then reports a second handler when
/// it is built, naming both.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
///
/// #[command(output = String)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Greet { name: String }
///
/// #[command_handler]
/// async fn greet(cmd: Greet, ctx: &Context) -> Result<String> {
///     Ok(format!("hello {} ({})", cmd.name, ctx.causation_id().is_some()))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder().build().unwrap();
/// let out = bus.send(Greet { name: "Ada".into() }, &Context::new()).await.unwrap();
/// assert_eq!(out, "hello Ada (true)");
/// # }
/// ```
#[proc_macro_attribute]
pub fn command_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<handler::Handler>(Kind::Command, args, input)
}

/// Registers a function as the handler of a query; see [`macro@command_handler`].
#[proc_macro_attribute]
pub fn query_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<handler::Handler>(Kind::Query, args, input)
}

/// Registers a function as a subscriber of an event; any number of subscribers may
/// exist. Returns `flext::Result<()>`; a failure or panic is reported in the
/// `PublishReport` and does not reach the other subscribers. Parameters as in
/// [`macro@command_handler`].
#[proc_macro_attribute]
pub fn event_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<handler::Handler>(Kind::Event, args, input)
}

/// Registers the methods of a handler type marked `#[command_handler]`,
/// `#[query_handler]` or `#[event_handler]`. `&self` is the value registered with
/// `Bus::builder().state(value)`.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
///
/// #[query(output = u32)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Stock { sku: String }
///
/// struct Inventory { on_hand: u32 }
///
/// #[handlers]
/// impl Inventory {
///     #[query_handler]
///     fn stock(&self, _q: Stock) -> Result<u32> {
///         Ok(self.on_hand)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder().state(Inventory { on_hand: 7 }).build().unwrap();
/// assert_eq!(bus.query(Stock { sku: "A".into() }, &Context::new()).await.unwrap(), 7);
/// # }
/// ```
#[proc_macro_attribute]
pub fn handlers(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<handler::HandlerImpl>((), args, input)
}

/// Turns an `impl` of a saga's input struct into a saga: its `#[saga_step]` methods run
/// in declaration order under a `SagaRunner`, and a failure compensates every completed
/// step in reverse order.
///
/// Step options: `compensate = method` (the undo; it receives the step's output by
/// reference), `retries = N`, `backoff_ms = N` (first wait, doubled each retry; default
/// 100), `timeout_ms = N` (per attempt), `retry_on = any | transient` (which errors are
/// retried, see below), `compensate_retries = N` and `compensate_backoff_ms = N` (the
/// compensation's own retries and first wait), `pivot` (the point of no return: it and
/// later steps have no compensation; later steps are retried, five times unless told,
/// and the saga is marked stuck if they still fail).
///
/// A step takes `&self`, then any of: `ctx: &Context` (carrying
/// `ctx.idempotency_key()`), `&T` for the output of an earlier step, and `State<T>` from
/// the runner. The struct and every step output must be `Serialize + Deserialize`: the
/// runner logs them.
///
/// # Retries
///
/// | what fails | retried on | how many times | waits |
/// | --- | --- | --- | --- |
/// | a step before the pivot (or with no pivot) | transient errors only (`ErrorKind::Timeout`, `ErrorKind::Infrastructure`) unless `retry_on = any`; any other error compensates at once | `retries` (default 0) | `backoff_ms`, doubling, capped by the runner's `backoff_cap` (60 s) |
/// | a step after the pivot | every error unless `retry_on = transient`: it cannot be compensated, so it must finish | `retries` (default 5), then the saga is stuck | as above |
/// | a compensation | every error | `compensate_retries` + 1 attempts, or the runner's `compensation_attempts` (default 5 in all), then the saga is stuck | `compensate_backoff_ms`, or its step's `backoff_ms`, doubling, same cap |
///
/// A step's `timeout_ms` bounds each attempt, and a timed-out attempt is a
/// `flext.saga.step_timed_out` error of kind `Timeout` (so it is retried like any
/// transient error). A panic is an `Internal` error.
///
/// # Definitions, changed code and `accepts`
///
/// `#[saga]` writes the type's *definition*: one line per step with its name, its output
/// type, its compensation (`-` for none) and `pivot`, tab-separated
/// (`Saga::DEFINITION`). The log keeps the definition each saga started under. A saga
/// in flight when you deploy changed code is resumed by that code only if its
/// definition is the linked one or one the type lists in
/// `#[saga(accepts = "...")]`; otherwise recovery, a second `run_with_id` and an
/// operator's resume leave it exactly as it is (no claim, no owner or lease change, no
/// write) and report `flext.saga.definition_changed`, naming what changed (a step added,
/// removed, reordered, an output type, a compensation, the pivot) and the `accepts`
/// string to add once the new code can resume the old sagas. Add it when the change is
/// one the logged outputs survive, for instance a step renamed but not retyped, or a
/// step appended after the last one.
///
/// The definition names types, not their fields: a field added to a step's output
/// without `#[serde(default)]` keeps the definition and breaks the logged outputs. Those
/// are checked too before a saga is claimed (`Saga::check_outputs`): such a saga is left
/// as it is with `flext.saga.output_mismatch`, naming the step, the type and serde's
/// reason. Give new fields a serde default, and older sagas resume.
///
/// ```
/// use flext::prelude::*;
/// use flext::saga::Saga;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Refund { cents: u64 }
///
/// // Version 2 dropped a `notify` step that ran after `credit`; sagas that version 1
/// // started (and logged under its definition) are still resumed by this code.
/// #[saga(name = "payments.refund", accepts = "credit\tu64\t-\t\nnotify\t()\t-\t")]
/// impl Refund {
///     #[saga_step]
///     async fn credit(&self) -> Result<u64> {
///         Ok(self.cents)
///     }
/// }
///
/// assert_eq!(<Refund as Saga>::DEFINITION, "credit\tu64\t-\t");
/// assert_eq!(<Refund as Saga>::ACCEPTS, ["credit\tu64\t-\t\nnotify\t()\t-\t"]);
/// ```
///
/// Compile-time checks (each in `tests/ui/saga/fail/`): the compensation exists and
/// accepts the step's output; no compensation on or after the pivot; at most one pivot;
/// every `&T` a step takes is produced by an earlier step; logged types are serde types.
///
/// ```
/// use flext::prelude::*;
/// use flext::saga::{MemoryLog, SagaOutcome, SagaRunner};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order { sku: String, qty: u32 }
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Reservation { id: String }
///
/// #[saga]
/// impl Order {
///     #[saga_step(compensate = release)]
///     async fn reserve(&self, ctx: &Context) -> Result<Reservation> {
///         Ok(Reservation { id: ctx.idempotency_key().unwrap_or_default().to_owned() })
///     }
///     async fn release(&self, reservation: &Reservation) -> Result<()> {
///         let _ = &reservation.id;
///         Ok(())
///     }
///
///     #[saga_step(pivot, retries = 2)]
///     async fn charge(&self, reservation: &Reservation) -> Result<u64> {
///         let _ = reservation;
///         Ok(u64::from(self.qty) * 250)
///     }
///
///     #[saga_step(timeout_ms = 1000)]
///     fn ship(&self, charged: &u64) -> Result<String> {
///         Ok(format!("shipped {} x {} for {charged}", self.qty, self.sku))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let runner = SagaRunner::builder(MemoryLog::new()).build();
/// let outcome = runner.run(Order { sku: "A-1".into(), qty: 2 }, &Context::new()).await.unwrap();
/// assert!(matches!(outcome, SagaOutcome::Completed { ref output, .. } if output == "shipped 2 x A-1 for 500"));
/// # }
/// ```
#[proc_macro_attribute]
pub fn saga(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<saga::Saga>((), args, input)
}

/// Turns an `impl` of a workflow's input struct into a workflow: its `#[workflow_step]`
/// methods run as soon as the steps they depend on have settled, independent steps
/// concurrently, and a required step's failure compensates the completed steps.
///
/// Options of `#[workflow]`: `name = ".."` (for spans and metrics; the type's name by
/// default), `crate = path`. Options of `#[workflow_step]`:
///
/// | option | meaning |
/// |---|---|
/// | `depends_on = [a, b]` | waits until `a` and `b` have settled; may take their outputs (and their dependencies') by reference |
/// | `optional` | its failure is recorded and the workflow goes on; steps taking its output are skipped |
/// | `timeout_ms = N` | fails with `flext.service.step_timed_out` after `N` milliseconds |
/// | `compensate = method` | `method(&self, output: &T) -> Result<()>` undoes it if a required step fails |
/// | `breaker = field` | runs it through the `CircuitBreaker` in `self.field`: refused while the breaker is open |
///
/// A step takes `&self`, the outputs it needs as `&T` (or `&str` for a `String`, `&[T]`
/// for a `Vec<T>`), `&Context`, and `State<T>` values from the runner
/// (`SagaRunner::run_workflow`); it returns `Result<T>` with `T: Send + Sync + 'static`.
///
/// Compile-time checks (each in `tests/ui/workflow/fail/`): every name in `depends_on`
/// is a step; the steps make no cycle; every `&T` a step takes is produced by a step it
/// depends on, directly or through others; no required step takes an optional step's
/// output; compensations exist and take their step's output.
///
/// ```
/// use flext::prelude::*;
/// use flext::workflow::Workflow;
///
/// struct Quote { sku: String }
///
/// #[workflow]
/// impl Quote {
///     #[workflow_step]
///     async fn price(&self) -> Result<u64> { Ok(1200) }
///
///     #[workflow_step]
///     async fn stock(&self) -> Result<u32> { Ok(7) }
///
///     #[workflow_step(depends_on = [price, stock], timeout_ms = 500)]
///     async fn offer(&self, price: &u64, stock: &u32) -> Result<String> {
///         Ok(format!("{} x{stock} at {price}", self.sku))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let run = Quote { sku: "A-1".into() }.run(&Context::new()).await;
/// assert_eq!(run.output::<String>("offer").unwrap(), "A-1 x7 at 1200");
/// # }
/// ```
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<workflow::WorkflowDef>((), args, input)
}

/// An event-sourced aggregate: on the struct, with `#[aggregate_id]` on its id field
/// (options: `snapshot_every = N`, `name = ".."`); on its `impl` block, with `#[apply]`
/// methods that evolve the state from an event (`&mut self`, `&Event`, no result) and
/// `#[command_handler]` methods that decide a command (`&self`, `&Command`, optionally
/// `&Context`, returning `Result<Events<Self>>`). Each command is registered on the bus:
/// `bus.send(command)` loads the aggregate through the `Repository<Self>` in the bus's
/// state, decides, appends the events and publishes them. The command marks its own
/// `#[aggregate_id]` field.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::aggregate::{Events, Fixture};
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
/// #[derive(Default)]
/// struct Account { #[aggregate_id] id: String, balance: u64 }
///
/// #[aggregate]
/// impl Account {
///     #[command_handler]
///     fn deposit(&self, command: &Deposit) -> Result<Events<Self>> {
///         if command.cents == 0 {
///             return Err(Error::validation("account.zero_deposit", "deposit at least one cent"));
///         }
///         Ok(Events::one(Deposited { cents: command.cents }))
///     }
///
///     #[apply]
///     fn deposited(&mut self, event: &Deposited) {
///         self.balance += event.cents;
///     }
/// }
///
/// let account = Fixture::<Account>::given(Events::one(Deposited { cents: 100 }))
///     .when(Deposit { account: "a-1".into(), cents: 50 })
///     .then_expect(Events::one(Deposited { cents: 50 }));
/// assert_eq!((account.id.as_str(), account.balance), ("a-1", 150));
/// ```
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    let tokens = proc_macro2::TokenStream::from(input.clone());
    match syn::parse2::<syn::Item>(tokens) {
        Ok(syn::Item::Impl(_)) => run::<aggregate::Behaviour>((), args, input),
        _ => run::<aggregate::Root>((), args, input),
    }
}

/// A read model kept in the database's tables: on an `impl` block whose `#[apply]`
/// methods each apply one event type (optionally also taking `&EventEnvelope`), with an
/// optional `fn setup` that creates its tables. Each stored event it applies is decoded
/// and handed to its method, the others are passed over; the runner feeds it in global
/// order, checkpoint and state in one transaction. Options: `name = ".."` (its
/// checkpoint's key; the type's name by default) and `tables = [".."]` (swapped as a
/// whole by a rebuild).
///
/// Methods that take `writes: &mut ProjectionWrites` write portable SQL (`$1`
/// placeholders, SQL both backends read) and implement
/// `flext::database::PortableProjection`: the same type runs under the SQLite
/// `SqliteProjectionRunner` and the PostgreSQL `PgProjectionRunner`. Methods that take the
/// SQLite `uow: &SqliteUnitOfWork` implement `flext::sqlite::SqliteProjection` (SQLite only, with
/// rusqlite's whole API). All methods of one projection take the same kind.
///
/// ```
/// use flext::database::{PortableProjection, ProjectionWrites};
/// use flext::prelude::*;
///
/// #[event(name = "account.deposited")]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Deposited { account: String, cents: i64 }
///
/// struct Totals;
///
/// #[projection(name = "totals", tables = ["totals"])]
/// impl Totals {
///     fn setup(&self, writes: &mut ProjectionWrites) -> Result<()> {
///         writes.execute("CREATE TABLE IF NOT EXISTS totals (id TEXT PRIMARY KEY, cents BIGINT NOT NULL)", []);
///         Ok(())
///     }
///
///     #[apply]
///     fn deposited(&self, writes: &mut ProjectionWrites, e: &Deposited) -> Result<()> {
///         writes.execute(
///             "INSERT INTO totals (id, cents) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET cents = totals.cents + $2",
///             [e.account.as_str().into(), e.cents.into()],
///         );
///         Ok(())
///     }
/// }
///
/// // The same type runs under the SQLite and the PostgreSQL runner.
/// fn portable<P: PortableProjection>(_: &P) {}
/// portable(&Totals);
/// ```
///
/// Delivery: what a projection writes through its unit of work takes effect exactly once
/// per event; any other effect of its code runs at least once (key it on
/// `event.event_id` to make it idempotent).
///
/// The runnable version is on `flext::sqlite::SqliteProjection` (it needs the `sqlite`
/// feature, which this crate's own doc tests do not enable).
#[proc_macro_attribute]
pub fn projection(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<projection::ProjectionDef>((), args, input)
}

/// Marks a method that applies an event inside an `#[aggregate]` or `#[projection]` impl
/// block; see [`macro@aggregate`] and [`macro@projection`].
#[proc_macro_attribute]
pub fn apply(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("apply", input)
}

/// Marks a step inside a `#[saga]` impl block; see [`macro@saga`].
#[proc_macro_attribute]
pub fn saga_step(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("saga_step", input)
}

/// Marks a step inside a `#[workflow]` impl block; see [`macro@workflow`].
#[proc_macro_attribute]
pub fn workflow_step(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("workflow_step", input)
}

/// Marks a business rule inside a `#[domain_service]` impl block.
#[proc_macro_attribute]
pub fn business_rule(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("business_rule", input)
}

/// Marks a step of the railway inside a `#[domain_service]` impl block.
#[proc_macro_attribute]
pub fn step(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("step", input)
}

/// Marks a side effect that sees the previous step's output, inside a `#[domain_service]`
/// impl block.
#[proc_macro_attribute]
pub fn tap(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("tap", input)
}

/// Marks a check of the service's result inside a `#[domain_service]` impl block.
#[proc_macro_attribute]
pub fn postcondition(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_service("postcondition", input)
}

/// The method attributes only mean something to the `#[domain_service]` that reads them;
/// reaching one on its own means the enclosing impl lacks that attribute.
fn outside_service(name: &str, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let span = syn::parse2::<syn::ImplItemFn>(input.clone())
        .map(|f| f.sig.ident.span())
        .unwrap_or_else(|_| proc_macro2::Span::call_site());
    let message = match name {
        "saga_step" => "`#[saga_step]` only works on a method inside a `#[saga]` impl block: add `#[saga]` to the enclosing `impl`".to_owned(),
        "workflow_step" => "`#[workflow_step]` only works on a method inside a `#[workflow]` impl block: add `#[workflow]` to the enclosing `impl`".to_owned(),
        "apply" => "`#[apply]` only works on a method inside an `#[aggregate]` or `#[projection]` impl block: add the one that fits to the enclosing `impl`".to_owned(),
        "business_rule" => "`#[business_rule]` only works inside an impl block marked `#[domain_service]` (a service), `#[business_rules]` (the rules of a command, query or event) or `#[aggregate]` (the rules of an aggregate's command): add the one that fits to the enclosing `impl`".to_owned(),
        _ => format!("`#[{name}]` only works on a method inside a `#[domain_service]` impl block: add `#[domain_service]` to the enclosing `impl`"),
    };
    let error = syn::Error::new(span, message).to_compile_error();
    quote::quote!(#input #error).into()
}
