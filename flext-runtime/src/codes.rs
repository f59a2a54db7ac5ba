//! Every error code flext itself emits, as constants: match on these instead of string
//! literals. User code chooses its own codes (`user.email.taken`); flext's all start with
//! `flext.`.
//!
//! The scheme is `flext.<area>.<condition>`: the area is where the error arises
//! (`input`, `rule`, `bus`, `saga`, `store`, `event`, `aggregate`, `projection`, `outbox`, `service`), the condition is a snake_case noun or
//! past participle (`no_handler`, `timed_out`, `panicked`). A code never changes within
//! a major version.
//!
//! ```
//! use flext::{codes, input};
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct Signup { age: u32 }
//!
//! let e = input::from_json::<Signup>("line 1", "{\"age\": \"x\"}").unwrap_err();
//! assert_eq!(e.code(), codes::INPUT_INVALID_FIELD);
//! ```

// ---- input: reading untrusted JSON (`flext::input`, `Bus::send_json`) ---------------

/// The text is not JSON, or not one complete JSON document. [`ErrorKind::Validation`].
///
/// [`ErrorKind::Validation`]: crate::ErrorKind::Validation
pub const INPUT_MALFORMED_JSON: &str = "flext.input.malformed_json";
/// A command or query was given as a positional array, which its type does not accept
/// (`#[command(positional)]`). Validation.
pub const INPUT_POSITIONAL: &str = "flext.input.positional";
/// A field has the wrong type or value; the violation's subject names it. Validation.
pub const INPUT_INVALID_FIELD: &str = "flext.input.invalid_field";
/// A required field is absent. Validation.
pub const INPUT_MISSING_FIELD: &str = "flext.input.missing_field";
/// A field the type does not know (with `#[serde(deny_unknown_fields)]`). Validation.
pub const INPUT_UNKNOWN_FIELD: &str = "flext.input.unknown_field";
/// The payload is longer than the reader's or the bus's limit; nothing was parsed.
/// Validation.
pub const INPUT_TOO_LARGE: &str = "flext.input.too_large";
/// A message name is longer than [`bus::MAX_MESSAGE_NAME_BYTES`](crate::bus::MAX_MESSAGE_NAME_BYTES);
/// it was rejected before any lookup. Validation.
pub const INPUT_NAME_TOO_LONG: &str = "flext.input.name_too_long";

// ---- rule: business rules ------------------------------------------------------------

/// Several business rules are violated; each is in `Error::violations`. (One violated
/// rule lends the error its own code.) [`ErrorKind::RuleViolation`].
///
/// [`ErrorKind::RuleViolation`]: crate::ErrorKind::RuleViolation
pub const RULE_VIOLATED: &str = "flext.rule.violated";

// ---- bus: building it, dispatching, middleware ---------------------------------------

/// No handler for the command or query is linked into the program (or the bus's filter
/// left it out). NotFound.
pub const BUS_NO_HANDLER: &str = "flext.bus.no_handler";
/// A command or query has two handlers; the message names both with their locations.
/// Conflict, from `BusBuilder::build`.
pub const BUS_DUPLICATE_HANDLER: &str = "flext.bus.duplicate_handler";
/// Two message types share a name, so JSON dispatch could not tell them apart. Conflict,
/// from `BusBuilder::build`.
pub const BUS_DUPLICATE_MESSAGE_NAME: &str = "flext.bus.duplicate_message_name";
/// A handler takes `State<T>` and the bus has no `T`. NotFound, from `BusBuilder::build`.
pub const BUS_MISSING_STATE: &str = "flext.bus.missing_state";
/// `BusBuilder::build` found several problems; each is in `Error::related` with its own
/// kind and code.
pub const BUS_BUILD_FAILED: &str = "flext.bus.build_failed";
/// No message is named that (`send_json` and friends). NotFound.
pub const BUS_UNKNOWN_MESSAGE: &str = "flext.bus.unknown_message";
/// The name is a message of another kind (a query given to `send_json`). Validation.
pub const BUS_WRONG_KIND: &str = "flext.bus.wrong_kind";
/// The registered handler's output type is not the message's (a bug in generated code
/// or a hand-written registration), or a middleware returned another dispatch's output.
/// Internal.
pub const BUS_HANDLER_TYPE_MISMATCH: &str = "flext.bus.handler_type_mismatch";
/// The handler panicked; the bus goes on serving. Internal.
pub const BUS_HANDLER_PANICKED: &str = "flext.bus.handler_panicked";
/// The handler's output did not serialise to JSON (`send_json`). Internal.
pub const BUS_OUTPUT_NOT_SERIALISABLE: &str = "flext.bus.output_not_serialisable";
/// The `Timeout` middleware's limit passed. Timeout.
pub const BUS_TIMED_OUT: &str = "flext.bus.timed_out";
/// The `Authorize` middleware's policy refused the principal. Unauthorized.
pub const BUS_UNAUTHORIZED: &str = "flext.bus.unauthorized";

// ---- saga ----------------------------------------------------------------------------

/// A saga with this id is already in the log. Conflict.
pub const SAGA_EXISTS: &str = "flext.saga.exists";
/// `run_with_id` was given an id the log holds for another saga type or another input.
/// Conflict.
pub const SAGA_ID_REUSED: &str = "flext.saga.id_reused";
/// `run_with_id` found the saga still in flight under another runner's live lease;
/// the message says its state and owner. Conflict.
pub const SAGA_IN_FLIGHT: &str = "flext.saga.in_flight";
/// No saga with this id is in the log. NotFound.
pub const SAGA_NOT_FOUND: &str = "flext.saga.not_found";
/// Another runner holds the saga's lease. Conflict.
pub const SAGA_LEASE_LOST: &str = "flext.saga.lease_lost";
/// The log could not be read or written (SQLite's error is the source). Infrastructure.
pub const SAGA_LOG_FAILED: &str = "flext.saga.log_failed";
/// A log record does not decode. Internal.
pub const SAGA_LOG_CORRUPT: &str = "flext.saga.log_corrupt";
/// The saga's input did not serialise. Internal.
pub const SAGA_INPUT_NOT_SERIALISABLE: &str = "flext.saga.input_not_serialisable";
/// The logged input no longer decodes as the saga type (a changed definition). Internal.
pub const SAGA_INPUT_MISMATCH: &str = "flext.saga.input_mismatch";
/// A step's output did not serialise. Internal.
pub const SAGA_OUTPUT_NOT_SERIALISABLE: &str = "flext.saga.output_not_serialisable";
/// A logged output no longer decodes as the step's type. Internal.
pub const SAGA_OUTPUT_MISMATCH: &str = "flext.saga.output_mismatch";
/// A step needs an earlier output the log does not hold. Internal.
pub const SAGA_MISSING_OUTPUT: &str = "flext.saga.missing_output";
/// The saga has no step at that index (a log written by a longer definition). Internal.
pub const SAGA_NO_SUCH_STEP: &str = "flext.saga.no_such_step";
/// A value is not durable; never returned by a program that compiles. Internal.
pub const SAGA_NOT_DURABLE: &str = "flext.saga.not_durable";
/// The saga started under another definition of its type (steps added, removed,
/// reordered, an output type changed); recovery leaves it as it is. Internal.
pub const SAGA_DEFINITION_CHANGED: &str = "flext.saga.definition_changed";
/// The saga's type is not linked into this program, so recovery cannot resume it.
/// NotFound.
pub const SAGA_UNKNOWN_TYPE: &str = "flext.saga.unknown_type";
/// Two saga or durable workflow types linked into this program share one name, so a
/// logged run of that name could be driven by the wrong one: recovery, the operator's
/// actions and queues leave such runs as they are. Internal.
pub const SAGA_DUPLICATE_NAME: &str = "flext.saga.duplicate_name";
/// A step or compensation did not finish within its `timeout_ms`. Timeout.
pub const SAGA_STEP_TIMED_OUT: &str = "flext.saga.step_timed_out";
/// A step or compensation panicked. Internal.
pub const SAGA_STEP_PANICKED: &str = "flext.saga.step_panicked";
/// A saga state name that is not one of `running`, `compensating`, `completed`,
/// `compensated`, `stuck`, `resolved`. Validation.
pub const SAGA_UNKNOWN_STATE: &str = "flext.saga.unknown_state";
/// An operator asked to resume a saga that is not stuck. Conflict.
pub const SAGA_NOT_STUCK: &str = "flext.saga.not_stuck";
/// An operator acted on a saga a runner is driving under a live lease. Conflict.
pub const SAGA_LEASE_LIVE: &str = "flext.saga.lease_live";
/// An operator acted on a saga that has already finished. Conflict.
pub const SAGA_FINISHED: &str = "flext.saga.finished";
/// An operator aborted the saga; the error its compensation records. Conflict.
pub const SAGA_ABORTED: &str = "flext.saga.aborted";
/// An operator's principal or reason is empty or too long. Validation.
pub const SAGA_OPERATOR_INPUT: &str = "flext.saga.operator_input";
/// A file given as a saga log holds none (no `flext_sagas` table), or is missing.
/// Not found.
pub const SAGA_NO_LOG: &str = "flext.saga.no_log";
/// An abort of a saga past its pivot, without saying so: the pivot and the steps after
/// it cannot be undone.
pub const SAGA_PAST_PIVOT: &str = "flext.saga.past_pivot";
/// A signal step's wait passed its `wait_ms` before any signal came
/// ([`Signal::received`](crate::saga::Signal::received)). Timeout.
pub const SAGA_SIGNAL_TIMED_OUT: &str = "flext.saga.signal_timed_out";
/// A signal's sender id is empty or too long, or its payload does not serialise.
/// Validation.
pub const SAGA_SIGNAL_INPUT: &str = "flext.saga.signal_input";
/// The saga log keeps no signals (a backend that does not implement
/// [`SagaLog::send_signal`](crate::saga::SagaLog::send_signal)). Internal.
pub const SAGA_SIGNALS_UNSUPPORTED: &str = "flext.saga.signals_unsupported";
/// A child saga compensated or was resolved instead of completing
/// ([`Child::completed`](crate::saga::Child::completed)). Conflict.
pub const SAGA_CHILD_FAILED: &str = "flext.saga.child_failed";
/// The saga log keeps no child sagas (a backend that does not implement
/// [`SagaLog::create_child`](crate::saga::SagaLog::create_child)). Internal.
pub const SAGA_CHILDREN_UNSUPPORTED: &str = "flext.saga.children_unsupported";
/// A completed child saga compensates because its parent does
/// ([`OperatorAction::Compensate`](crate::saga::OperatorAction::Compensate)). Conflict.
pub const SAGA_PARENT_COMPENSATED: &str = "flext.saga.parent_compensated";
/// A queue's name or a partition key is empty or too long. Validation.
pub const SAGA_QUEUE_INPUT: &str = "flext.saga.queue_input";
/// The saga log keeps no queues (a backend that does not implement
/// [`SagaLog::enqueue`](crate::saga::SagaLog::enqueue)). Internal.
pub const SAGA_QUEUES_UNSUPPORTED: &str = "flext.saga.queues_unsupported";
/// A schedule's name is empty or too long, or its pattern is not a cron pattern.
/// Validation.
pub const SAGA_SCHEDULE_INPUT: &str = "flext.saga.schedule_input";

// ---- store ---------------------------------------------------------------------------

/// A SQLite database shared by several stores could not be opened, read or written
/// (SQLite's error is the source). Infrastructure.
pub const STORE_FAILED: &str = "flext.store.failed";
/// The database is locked beyond the busy timeout (SQLite's `SQLITE_BUSY` and
/// `SQLITE_LOCKED`), or no read connection came free in time. Infrastructure, and
/// transient: retried by the saga runner's step policy and `retry_on_conflict`.
pub const STORE_BUSY: &str = "flext.store.busy";
/// The file or its directory is read-only for this process, or the database was opened
/// read-only and a write was tried. Infrastructure.
pub const STORE_READ_ONLY: &str = "flext.store.read_only";
/// The disk (or the database's quota) is full. Infrastructure.
pub const STORE_DISK_FULL: &str = "flext.store.disk_full";
/// The file is not a SQLite database. Infrastructure.
pub const STORE_NOT_A_DATABASE: &str = "flext.store.not_a_database";
/// The database cannot be reached: the file cannot be opened, or the server refused
/// the connection or did not answer (host and port named). Infrastructure.
pub const STORE_UNAVAILABLE: &str = "flext.store.unavailable";
/// The server is starting up, shutting down or recovering. Infrastructure.
pub const STORE_STARTING_UP: &str = "flext.store.starting_up";
/// The server refused the credentials (the user named, never the password).
/// Infrastructure.
pub const STORE_AUTH_FAILED: &str = "flext.store.auth_failed";
/// The database named in the URL does not exist on the server. Infrastructure.
pub const STORE_NO_DATABASE: &str = "flext.store.no_database";
/// The connection settings (a URL, TLS) are malformed. Validation.
pub const STORE_BAD_CONFIG: &str = "flext.store.bad_config";

// ---- event store ---------------------------------------------------------------------

/// An append expected the stream at another version: another writer appended first.
/// Conflict.
pub const EVENT_CONFLICT: &str = "flext.event.conflict";
/// An event with this id is already stored. Conflict.
pub const EVENT_DUPLICATE_ID: &str = "flext.event.duplicate_id";
/// The event store could not be read or written (SQLite's error is the source).
/// Infrastructure.
pub const EVENT_STORE_FAILED: &str = "flext.event.store_failed";
/// A stored event or snapshot does not decode. Infrastructure.
pub const EVENT_STORE_CORRUPT: &str = "flext.event.store_corrupt";
/// A stored event's name is not one the aggregate applies. Internal.
pub const EVENT_UNKNOWN: &str = "flext.event.unknown";
/// A stored event's schema version has no upcaster to the version the code reads.
/// Internal.
pub const EVENT_NO_UPCASTER: &str = "flext.event.no_upcaster";
/// A stored event's schema version is newer than the code reads. Internal.
pub const EVENT_VERSION_TOO_NEW: &str = "flext.event.version_too_new";
/// A stored event's payload (after upcasting) does not decode as its type. Internal.
pub const EVENT_DECODE: &str = "flext.event.decode";
/// A snapshot does not decode as the aggregate's state; the aggregate is replayed from
/// its events instead, so this is only logged. Internal.
pub const EVENT_SNAPSHOT_DECODE: &str = "flext.event.snapshot_decode";

/// A stream's id does not parse as the aggregate's `#[aggregate_id]` type. Validation.
pub const AGGREGATE_BAD_ID: &str = "flext.aggregate.bad_id";

/// A projection's handler failed at an event: it stopped there and applies it again on
/// its next catch-up. Internal.
pub const PROJECTION_STOPPED: &str = "flext.projection.stopped";
/// A projection names a table that is not a plain SQL identifier. Validation.
pub const PROJECTION_BAD_TABLE: &str = "flext.projection.bad_table";
/// The outbox relay could not deliver an event. Internal.
pub const OUTBOX_FAILED: &str = "flext.outbox.failed";
/// A message a broker consumer received is not a flext event: a header it needs is
/// missing or malformed, or its payload is not JSON. It goes to the dead letters at
/// once. Validation.
pub const CONSUMER_BAD_MESSAGE: &str = "flext.consumer.bad_message";
/// A broker consumer could not reach its broker or its inbox. Infrastructure.
pub const CONSUMER_FAILED: &str = "flext.consumer.failed";

// ---- service -------------------------------------------------------------------------

/// An undo (`#[step(undo = ..)]`) failed while rolling back after a failed step; the
/// original error is the source. CompensationFailed.
pub const SERVICE_UNDO_FAILED: &str = "flext.service.undo_failed";
/// A circuit breaker is open: the call was refused without being made. Retry after the
/// breaker's cool-down. Infrastructure.
pub const SERVICE_CIRCUIT_OPEN: &str = "flext.service.circuit_open";
/// No instance of a service in the registry is healthy. Infrastructure.
pub const SERVICE_NO_HEALTHY_INSTANCE: &str = "flext.service.no_healthy_instance";
/// A workflow step took longer than its `timeout_ms`. Timeout.
pub const SERVICE_STEP_TIMED_OUT: &str = "flext.service.step_timed_out";
/// A workflow step could not run because a step it depends on failed or was skipped.
/// Internal.
pub const SERVICE_DEPENDENCY_FAILED: &str = "flext.service.dependency_failed";
/// A workflow step panicked; the workflow treats it as the step's failure. Internal.
pub const SERVICE_STEP_PANICKED: &str = "flext.service.step_panicked";

// ---- operator ------------------------------------------------------------------------

/// A state-changing operator action came without a principal: the console serves
/// read-only views to a request its application did not authenticate. Unauthorized
/// (401).
pub const OPERATOR_NO_PRINCIPAL: &str = "flext.operator.no_principal";
/// An operator request came from another origin, or without the console's token: a
/// cross-site request forgery is refused. Unauthorized (403).
pub const OPERATOR_FORBIDDEN_ORIGIN: &str = "flext.operator.forbidden_origin";
/// An operator named a projection or outbox the application did not register with its
/// operator views. Not found (404).
pub const OPERATOR_UNKNOWN_TARGET: &str = "flext.operator.unknown_target";
/// The backend cannot carry out this operator action (a PostgreSQL projection has no
/// rebuild yet). Validation.
pub const OPERATOR_UNSUPPORTED: &str = "flext.operator.unsupported";

// ---- idempotency ---------------------------------------------------------------------

/// An `Idempotency-Key` is malformed (empty, over 255 characters, or not visible
/// ASCII). Validation (400).
pub const INPUT_IDEMPOTENCY_KEY_INVALID: &str = "flext.input.idempotency_key_invalid";
/// A route that requires an `Idempotency-Key` was called without one. Validation (400).
pub const INPUT_IDEMPOTENCY_KEY_MISSING: &str = "flext.input.idempotency_key_missing";
/// An idempotency key was used before for a different request (another body, path or
/// query). Validation (422).
pub const IDEMPOTENCY_KEY_REUSED: &str = "flext.idempotency.key_reused";
/// The first request with this idempotency key is still running: retry after it ends.
/// Conflict (409).
pub const IDEMPOTENCY_IN_FLIGHT: &str = "flext.idempotency.in_flight";
/// A request's idempotency claim was taken over by a repeat (its in-flight time ran
/// out) before it committed: nothing it wrote committed. Conflict (409).
pub const IDEMPOTENCY_CLAIM_LOST: &str = "flext.idempotency.claim_lost";

/// Every code above, for tests and documentation generators.
pub const ALL: &[&str] = &[
    INPUT_MALFORMED_JSON,
    INPUT_POSITIONAL,
    INPUT_INVALID_FIELD,
    INPUT_MISSING_FIELD,
    INPUT_UNKNOWN_FIELD,
    INPUT_TOO_LARGE,
    INPUT_NAME_TOO_LONG,
    RULE_VIOLATED,
    BUS_NO_HANDLER,
    BUS_DUPLICATE_HANDLER,
    BUS_DUPLICATE_MESSAGE_NAME,
    BUS_MISSING_STATE,
    BUS_BUILD_FAILED,
    BUS_UNKNOWN_MESSAGE,
    BUS_WRONG_KIND,
    BUS_HANDLER_TYPE_MISMATCH,
    BUS_HANDLER_PANICKED,
    BUS_OUTPUT_NOT_SERIALISABLE,
    BUS_TIMED_OUT,
    BUS_UNAUTHORIZED,
    SAGA_EXISTS,
    SAGA_ID_REUSED,
    SAGA_IN_FLIGHT,
    SAGA_NOT_FOUND,
    SAGA_LEASE_LOST,
    SAGA_LOG_FAILED,
    SAGA_LOG_CORRUPT,
    SAGA_INPUT_NOT_SERIALISABLE,
    SAGA_INPUT_MISMATCH,
    SAGA_OUTPUT_NOT_SERIALISABLE,
    SAGA_OUTPUT_MISMATCH,
    SAGA_MISSING_OUTPUT,
    SAGA_NO_SUCH_STEP,
    SAGA_NOT_DURABLE,
    SAGA_DEFINITION_CHANGED,
    SAGA_UNKNOWN_TYPE,
    SAGA_DUPLICATE_NAME,
    SAGA_STEP_TIMED_OUT,
    SAGA_STEP_PANICKED,
    SAGA_UNKNOWN_STATE,
    SAGA_NOT_STUCK,
    SAGA_LEASE_LIVE,
    SAGA_FINISHED,
    SAGA_ABORTED,
    SAGA_OPERATOR_INPUT,
    SAGA_PAST_PIVOT,
    SAGA_NO_LOG,
    SAGA_SIGNAL_TIMED_OUT,
    SAGA_SIGNAL_INPUT,
    SAGA_SIGNALS_UNSUPPORTED,
    SAGA_CHILD_FAILED,
    SAGA_CHILDREN_UNSUPPORTED,
    SAGA_PARENT_COMPENSATED,
    SAGA_QUEUE_INPUT,
    SAGA_QUEUES_UNSUPPORTED,
    SAGA_SCHEDULE_INPUT,
    STORE_FAILED,
    STORE_BUSY,
    STORE_READ_ONLY,
    STORE_DISK_FULL,
    STORE_NOT_A_DATABASE,
    STORE_UNAVAILABLE,
    STORE_STARTING_UP,
    STORE_AUTH_FAILED,
    STORE_NO_DATABASE,
    STORE_BAD_CONFIG,
    EVENT_CONFLICT,
    EVENT_DUPLICATE_ID,
    EVENT_STORE_FAILED,
    EVENT_STORE_CORRUPT,
    EVENT_UNKNOWN,
    EVENT_NO_UPCASTER,
    EVENT_VERSION_TOO_NEW,
    EVENT_DECODE,
    EVENT_SNAPSHOT_DECODE,
    AGGREGATE_BAD_ID,
    PROJECTION_STOPPED,
    PROJECTION_BAD_TABLE,
    OUTBOX_FAILED,
    CONSUMER_BAD_MESSAGE,
    CONSUMER_FAILED,
    SERVICE_UNDO_FAILED,
    SERVICE_CIRCUIT_OPEN,
    SERVICE_NO_HEALTHY_INSTANCE,
    SERVICE_STEP_TIMED_OUT,
    SERVICE_DEPENDENCY_FAILED,
    SERVICE_STEP_PANICKED,
    OPERATOR_NO_PRINCIPAL,
    OPERATOR_FORBIDDEN_ORIGIN,
    OPERATOR_UNKNOWN_TARGET,
    OPERATOR_UNSUPPORTED,
    INPUT_IDEMPOTENCY_KEY_INVALID,
    INPUT_IDEMPOTENCY_KEY_MISSING,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_IN_FLIGHT,
    IDEMPOTENCY_CLAIM_LOST,
];

#[cfg(test)]
mod tests {
    use super::ALL;

    #[test]
    fn codes_follow_the_scheme_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ALL {
            let parts: Vec<&str> = code.split('.').collect();
            assert_eq!(parts.len(), 3, "{code}");
            assert_eq!(parts[0], "flext", "{code}");
            assert!(
                [
                    "input",
                    "rule",
                    "bus",
                    "saga",
                    "store",
                    "event",
                    "aggregate",
                    "projection",
                    "outbox",
                    "consumer",
                    "service",
                    "operator",
                    "idempotency"
                ]
                .contains(&parts[1]),
                "{code}"
            );
            assert!(
                parts[2].chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert!(seen.insert(code), "{code} twice");
        }
    }
}
