//! Every attribute and option name the macros understand, in one table (serde_derive's
//! `symbol.rs`), so that parsers, checks and messages cannot drift apart.

// Container attributes.
pub const DOMAIN_SERVICE: &str = "domain_service";
pub const BUSINESS_RULES: &str = "business_rules";
pub const SAGA: &str = "saga";

// Method attributes inside `#[domain_service]` and `#[business_rules]`.
pub const BUSINESS_RULE: &str = "business_rule";
pub const STEP: &str = "step";
pub const TAP: &str = "tap";
pub const POSTCONDITION: &str = "postcondition";
pub const SERVICE_ROLES: [&str; 4] = [BUSINESS_RULE, STEP, TAP, POSTCONDITION];

// Method attribute inside `#[saga]`.
pub const SAGA_STEP: &str = "saga_step";

// `#[workflow]` on an impl block with `#[workflow_step]` methods.
pub const WORKFLOW: &str = "workflow";
pub const WORKFLOW_STEP: &str = "workflow_step";

// `#[aggregate]`, on a struct (with an `#[aggregate_id]` field) and on its impl (with
// `#[apply]` and `#[command_handler]` methods); `#[aggregate_id]` also marks a command's
// id field.
pub const AGGREGATE: &str = "aggregate";
pub const AGGREGATE_ID: &str = "aggregate_id";
pub const APPLY: &str = "apply";
pub const COMMAND_HANDLER: &str = "command_handler";

// `#[projection]` on an impl block with `#[apply]` methods.
pub const PROJECTION: &str = "projection";

// Message attributes, on a struct or an enum.
pub const COMMAND: &str = "command";
pub const QUERY: &str = "query";
pub const EVENT: &str = "event";

// Handler attributes, on a function or on methods of a `#[handlers]` impl block
// (`#[command_handler]` also inside `#[aggregate]`).
pub const HANDLERS: &str = "handlers";
pub const QUERY_HANDLER: &str = "query_handler";
pub const EVENT_HANDLER: &str = "event_handler";

// Options.
pub const ACCEPTED: &str = "accepted";
pub const ACCEPTS: &str = "accepts";
pub const AFTER: &str = "after";
pub const BACKOFF_MS: &str = "backoff_ms";
pub const BREAKER: &str = "breaker";
pub const CODE: &str = "code";
pub const COMPENSATE: &str = "compensate";
pub const COMPENSATE_BACKOFF_MS: &str = "compensate_backoff_ms";
pub const COMPENSATE_RETRIES: &str = "compensate_retries";
pub const CRATE: &str = "crate";
pub const CREATED: &str = "created";
pub const DEPENDS_ON: &str = "depends_on";
pub const DURABLE: &str = "durable";
pub const EXTERNAL: &str = "external";
pub const FAIL_FAST: &str = "fail_fast";
pub const HTTP: &str = "http";
pub const IDEMPOTENT: &str = "idempotent";
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
pub const KEY: &str = "key";
pub const POSITIONAL: &str = "positional";
pub const NAME: &str = "name";
pub const ON_ERROR: &str = "on_error";
pub const OPTIONAL: &str = "optional";
pub const ORDER: &str = "order";
pub const OUTPUT: &str = "output";
pub const PIVOT: &str = "pivot";
pub const RETRIES: &str = "retries";
pub const SIGNAL: &str = "signal";
pub const CHILD: &str = "child";
pub const QUEUE: &str = "queue";
pub const SLEEP: &str = "sleep";
pub const RETRY_ON: &str = "retry_on";
pub const SNAPSHOT_EVERY: &str = "snapshot_every";
pub const TABLES: &str = "tables";
pub const TIMEOUT_MS: &str = "timeout_ms";
pub const UNDO: &str = "undo";
pub const VALIDATE: &str = "validate";
pub const VERSION: &str = "version";
pub const WAIT_MS: &str = "wait_ms";
