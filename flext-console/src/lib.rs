//! The operator console of flext: one web page and a JSON API, served by the application
//! itself and mounted behind its own authentication (as Oban Web, Hangfire's dashboard
//! and apalis-board live inside theirs).
//!
//! [`router`] takes the application's [`Operations`] (its saga log and runner, bus,
//! projections and outboxes) and returns an axum [`Router`] to nest under a path of the
//! application's choosing:
//!
//! ```no_run
//! use flext::console;
//! use flext::operator::Operations;
//! use flext::saga::{SagaRunner, SqliteLog};
//!
//! # async fn serve() -> flext::Result<()> {
//! let runner = SagaRunner::builder(SqliteLog::open("sagas.db")?).build();
//! let ops = Operations::for_runner(runner);
//! let app = axum::Router::new().nest("/ops", console::router(ops));
//! // ... behind the application's own authentication layer, which puts a
//! // `flext::Principal` on each request it lets through:
//! // let app = app.layer(my_auth_layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # Ok(()) }
//! ```
//!
//! # What it serves
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the page: sagas with a state filter and a search by id prefix, a saga's timeline, its actions, and panels for projections, the outbox and handlers, refreshed every 2 seconds |
//! | `GET /api/whoami` | the principal, and whether the console is read-only for it |
//! | `GET /api/sagas?state=&name=&id=&offset=&limit=` | one page of sagas, stuck first ([`SagaPage`](flext_runtime::operator::SagaPage)) |
//! | `GET /api/sagas/{id}` | one saga (a unique id prefix will do) with its timeline ([`SagaDetail`](flext_runtime::operator::SagaDetail)) |
//! | `POST /api/sagas/{id}/resume`, `/abort`, `/resolve` | `{"reason": "...", "past_pivot": false}`: the intervention, recorded in the saga's log ([`Intervened`](flext_runtime::operator::Intervened)) |
//! | `GET /api/projections` | each projection's position, lag in events and milliseconds, the event and error it stopped at |
//! | `POST /api/projections/{name}/rebuild` | `{"reason": "..."}`: rebuilds it; answers how many events it applied |
//! | `GET /api/outbox` | each outbox's backlog and its oldest row's age |
//! | `GET /api/dead-letters` | each consumer's dead letters (up to 50): the event, the error, the deliveries |
//! | `POST /api/dead-letters/{consumer}/{id}/replay` | `{"reason": "..."}`: handles the dead letter again through the consumer, and removes it once handled |
//! | `GET /api/health` | the bus's report: handlers' counts, failures by code and latency percentiles; circuit breakers; the service registry; consumers |
//! | `GET /api/audit` | the operator actions done and refused since the process started ([`AuditRecord`](flext_runtime::operator::AuditRecord)) |
//!
//! # Security
//!
//! - **Who acts.** The principal is the [`Principal`](flext_runtime::Principal) the application's middleware puts
//!   in the request's extensions (as for the HTTP front door). Without one the console
//!   is read-only: every view is served and every action refused with 401,
//!   `flext.operator.no_principal`.
//! - **Why.** Every action needs a reason (1 to 4096 bytes); every action, done or
//!   refused, leaves an [`AuditRecord`](flext_runtime::operator::AuditRecord), and a
//!   saga's intervention is a transition in its durable log.
//! - **Cross-site request forgery.** An action must be a `POST` with
//!   `Content-Type: application/json`, which a page of another origin cannot send
//!   without a CORS preflight this router never grants; and a request whose `Origin`
//!   is not the console's own host, or whose `Sec-Fetch-Site` is `cross-site`, is
//!   refused with 403, `flext.operator.forbidden_origin`.
//! - **Bounded input.** Bodies over 16 KiB, ids longer than 36 characters, names longer
//!   than 256 bytes and pages over 200 sagas are refused or cut; text quoted back in an
//!   error is bounded and escaped.
//! - **Payloads.** A saga's input and its steps' outputs may hold personal data: they
//!   are shown only when the application opts in with
//!   [`Operations::show_payloads`](flext_runtime::operator::Operations::show_payloads).
//!
//! The same [`Operations`] is behind the `flext-saga` command-line tool, so the console
//! and the tool cannot disagree on what an action does or refuses.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod guard;

pub use axum::Router;
use flext_runtime::operator::Operations;

/// The page, served at `/`: HTML, CSS and a little script, with no build step.
const PAGE: &str = include_str!("page.html");

/// The largest request body the console reads, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The console's routes (see the [crate docs](crate) for the table), over `operations`.
/// Nest it under a path (`Router::new().nest("/ops", router(ops))`) behind the
/// application's authentication, which sets a [`Principal`](flext_runtime::Principal) on the requests it lets
/// through. The page is then at `/ops` (axum's `nest` does not match `/ops/`; the page
/// finds its API from either).
///
/// ```
/// use flext::operator::Operations;
/// use flext::saga::MemoryLog;
/// let app: axum::Router = axum::Router::new().nest("/ops", flext::console::router(Operations::new(MemoryLog::new())));
/// ```
pub fn router(operations: Operations) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route("/", get(page))
        .route("/api/whoami", get(api::whoami))
        .route("/api/sagas", get(api::sagas))
        .route("/api/sagas/{id}", get(api::saga))
        .route("/api/sagas/{id}/{action}", post(api::intervene))
        .route("/api/projections", get(api::projections))
        .route("/api/projections/{name}/rebuild", post(api::rebuild))
        .route("/api/outbox", get(api::outbox))
        .route("/api/queues", get(api::queues))
        .route("/api/dead-letters", get(api::dead_letters))
        .route(
            "/api/dead-letters/{consumer}/{id}/replay",
            post(api::replay),
        )
        .route("/api/health", get(api::health))
        .route("/api/audit", get(api::audit))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(operations)
}

async fn page() -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Scripts and styles come from this page only; no frame may embed it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}
