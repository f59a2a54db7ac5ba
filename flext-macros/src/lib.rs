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

#[doc = include_str!("../doc/domain_service.md")]
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
/// With the `http` feature: `http = "POST /accounts/{account}/deposits"` (the route
/// `flext::http::router` serves it on: each `{name}` is a field, the rest comes from the
/// JSON body), `created = "/accounts/{account}"` (answer 201 with that `Location`) or
/// `accepted` (answer 202), and `idempotency_key` (the route answers 400 without an
/// `Idempotency-Key` header, when the router keeps keys). A routed message derives
/// `schemars::JsonSchema` from this attribute, for the OpenAPI document: each field's
/// type needs a JSON Schema (`#[schemars(with = "String")]` on a field whose type has
/// none), and the `output` type must implement `JsonSchema` itself.
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
/// Same options as [`macro@command`], but a query's route is a `GET` whose fields come
/// from the path and the query string, answered 200 (404 for `None`): `created`,
/// `accepted` and `idempotency_key` are a command's.
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

#[doc = include_str!("../doc/saga.md")]
#[proc_macro_attribute]
pub fn saga(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<saga::Saga>((), args, input)
}

#[doc = include_str!("../doc/workflow.md")]
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, input: TokenStream) -> TokenStream {
    run::<workflow::WorkflowDef>((), args, input)
}

#[doc = include_str!("../doc/aggregate.md")]
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    let tokens = proc_macro2::TokenStream::from(input.clone());
    match syn::parse2::<syn::Item>(tokens) {
        Ok(syn::Item::Impl(_)) => run::<aggregate::Behaviour>((), args, input),
        _ => run::<aggregate::Root>((), args, input),
    }
}

#[doc = include_str!("../doc/projection.md")]
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
