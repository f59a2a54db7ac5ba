//! The console's JSON API over a real bound port, on SQLite and on PostgreSQL: every
//! action and refusal, the read-only mode without a principal, the guard against other
//! origins, and an audit record for every attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flext::database::BusRelay;
use flext::operator::Operations;
use flext::prelude::*;
use flext::saga::{SagaRunner, SagaState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Carrier {
    down: AtomicBool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ship {
    parcel: u32,
}

#[saga]
impl Ship {
    #[saga_step(compensate = release)]
    fn book(&self) -> Result<String> {
        Ok(format!("slot-{}", self.parcel))
    }
    fn release(&self, _slot: &String) -> Result<()> {
        Ok(())
    }
    #[saga_step(pivot)]
    fn pay(&self, _slot: &String) -> Result<u64> {
        Ok(u64::from(self.parcel) * 100)
    }
    #[saga_step(retries = 0)]
    fn label(&self, _paid: &u64, carrier: State<Arc<Carrier>>) -> Result<String> {
        if carrier.down.load(Ordering::SeqCst) {
            return Err(Error::infrastructure(
                "carrier.down",
                "the carrier answers 503",
            ));
        }
        Ok(format!("TRK{}", self.parcel))
    }
}

/// The console served on a free port behind a stand-in for the application's
/// authentication: a request with `x-test-user` is signed in as that user.
async fn serve(ops: Operations) -> String {
    let app = axum::Router::new()
        .nest("/ops", flext::console::router(ops))
        .layer(axum::middleware::from_fn(
            |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
                let user = request
                    .headers()
                    .get("x-test-user")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(user) = user {
                    request.extensions_mut().insert(flext::Principal::new(user));
                }
                next.run(request).await
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/ops")
}

struct Console {
    base: String,
    http: reqwest::Client,
}

impl Console {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn post(&self, user: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(user) = user {
            request = request.header("x-test-user", user);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }
}

/// Three parcels: 1 and 3 stick at their label (the carrier is down), 2 ships. Returns
/// their saga ids.
async fn ship_three(runner: &SagaRunner, carrier: &Carrier) -> [String; 3] {
    let mut ids = Vec::new();
    for parcel in 1..=3 {
        carrier.down.store(parcel != 2, Ordering::SeqCst);
        let outcome = runner.run(Ship { parcel }, &Context::new()).await.unwrap();
        let expected = if parcel == 2 {
            SagaState::Completed
        } else {
            SagaState::Stuck
        };
        assert_eq!(outcome.state(), expected, "parcel {parcel}");
        ids.push(outcome.saga_id().to_string());
    }
    carrier.down.store(false, Ordering::SeqCst);
    [ids[0].clone(), ids[1].clone(), ids[2].clone()]
}

/// Every view, action and refusal of the saga API, on whichever log `runner` has.
async fn sagas_act_and_refuse_as_the_log_says(runner: SagaRunner, carrier: Arc<Carrier>) {
    let [one, two, three] = ship_three(&runner, &carrier).await;
    let ops = Operations::for_runner(runner);
    let console = Console {
        base: serve(ops.clone()).await,
        http: reqwest::Client::new(),
    };

    // Read-only without a principal: the views are served, stuck sagas first.
    let (status, who) = console.get("/api/whoami").await;
    assert_eq!((status, who["read_only"].clone()), (200, json!(true)));
    let (status, page) = console.get("/api/sagas").await;
    assert_eq!(status, 200);
    let listed: Vec<(&str, &str)> = page["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (one.as_str(), "stuck"),
            (three.as_str(), "stuck"),
            (two.as_str(), "completed")
        ]
    );
    assert_eq!(page["sagas"][0]["stuck_at"]["step"], "label");
    assert_eq!(page["sagas"][0]["stuck_at"]["code"], "carrier.down");
    // Filters and paging.
    let (_, stuck) = console.get("/api/sagas?state=completed").await;
    assert_eq!(stuck["sagas"].as_array().unwrap().len(), 1);
    let (_, by_prefix) = console.get(&format!("/api/sagas?id={}", &two[..8])).await;
    assert_eq!(by_prefix["sagas"][0]["id"], two.as_str());
    let (_, first) = console.get("/api/sagas?limit=2").await;
    assert_eq!(
        (
            first["sagas"].as_array().unwrap().len(),
            first["more"].clone()
        ),
        (2, json!(true))
    );
    let (_, rest) = console.get("/api/sagas?limit=2&offset=2").await;
    assert_eq!(rest["sagas"][0]["id"], two.as_str());
    assert_eq!(rest["more"], false);
    let (status, bad) = console.get("/api/sagas?state=sleeping").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("flext.input.invalid_field"))
    );
    let (status, bad) = console.get("/api/sagas?id=zz%3Cscript%3E").await;
    assert_eq!(status, 400, "{bad}");

    // One saga: its timeline and definition, without its payloads.
    let (status, detail) = console.get(&format!("/api/sagas/{}", &one[..8])).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["summary"]["id"], one.as_str());
    let steps: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["book", "pay", "label"]);
    assert_eq!(detail["steps"][1]["pivot"], true);
    assert_eq!(detail["stays_done_on_abort"], json!(["pay"]));
    assert_eq!(detail["actions"], json!(["resume", "abort", "resolve"]));
    assert!(
        detail.get("input").is_none(),
        "payloads are hidden: {detail}"
    );
    assert!(detail["timeline"][0].get("output").is_none(), "{detail}");
    let (status, missing) = console.get("/api/sagas/ffffffff").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("flext.saga.not_found"))
    );

    // Without a principal every action is refused, and the refusal audited.
    let (status, refused) = console
        .post(
            None,
            &format!("/api/sagas/{one}/resume"),
            json!({ "reason": "carrier back" }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (401, Some("flext.operator.no_principal"))
    );
    let (status, refused) = console
        .post(
            None,
            "/api/projections/none/rebuild",
            json!({ "reason": "why not" }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (401, Some("flext.operator.no_principal"))
    );

    // Another origin, or a form post, is refused even with a principal.
    let forged = console
        .http
        .post(format!("{}/api/sagas/{one}/resolve", console.base))
        .header("x-test-user", "mallory")
        .header("origin", "https://evil.example")
        .json(&json!({ "reason": "forged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let form = console
        .http
        .post(format!("{}/api/sagas/{one}/resolve", console.base))
        .header("x-test-user", "mallory")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 403);
    let same_origin = console
        .http
        .post(format!("{}/api/sagas/{one}/frobnicate", console.base))
        .header("x-test-user", "alice")
        .header("origin", console.base.trim_end_matches("/ops"))
        .json(&json!({ "reason": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        same_origin.status().as_u16(),
        404,
        "same origin passes the guard"
    );

    // A reason is required, and bounded.
    let (status, refused) = console
        .post(
            Some("alice"),
            &format!("/api/sagas/{one}/resume"),
            json!({ "reason": "  " }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("flext.saga.operator_input"))
    );
    let (status, _) = console
        .post(
            Some("alice"),
            &format!("/api/sagas/{one}/resume"),
            json!({ "reason": "x".repeat(5000) }),
        )
        .await;
    assert_eq!(status, 422);
    let (status, refused) = console
        .post(
            Some("alice"),
            &format!("/api/sagas/{one}/resume"),
            json!({ "because": "x" }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("flext.input.malformed_json"))
    );

    // Resume: the runner drives the saga at once, and it completes.
    let (status, done) = console
        .post(
            Some("alice"),
            &format!("/api/sagas/{}/resume", &one[..8]),
            json!({ "reason": "carrier back up" }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["saga"]["state"], "completed");
    assert_eq!(done["next"], "completed");
    assert_eq!(done["principal"], "alice");
    let (_, detail) = console.get(&format!("/api/sagas/{one}")).await;
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "step_completed",
            "step_completed",
            "stuck",
            "operator",
            "step_completed"
        ]
    );
    assert_eq!(detail["timeline"][3]["principal"], "alice");
    assert_eq!(detail["timeline"][3]["reason"], "carrier back up");
    assert_eq!(detail["timeline"][3]["action"], "resume");

    // The log refuses what does not apply: a finished saga, a resume of a running one.
    let (status, refused) = console
        .post(
            Some("bob"),
            &format!("/api/sagas/{one}/resolve"),
            json!({ "reason": "again" }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("flext.saga.finished"))
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("is completed"),
        "{refused}"
    );

    // An abort past the pivot names what stays done, and needs past_pivot.
    let (status, refused) = console
        .post(
            Some("bob"),
            &format!("/api/sagas/{three}/abort"),
            json!({ "reason": "customer cancelled" }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("flext.saga.past_pivot"))
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("`pay`"),
        "{refused}"
    );
    let (status, done) = console
        .post(
            Some("bob"),
            &format!("/api/sagas/{three}/abort"),
            json!({ "reason": "customer cancelled; refunded by hand", "past_pivot": true }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["saga"]["state"], "compensated");
    let (_, detail) = console.get(&format!("/api/sagas/{three}")).await;
    let last = detail["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["kind"].as_str(), last["step"].as_str()),
        (Some("compensation_completed"), Some("compensate book"))
    );

    // Every attempt left an audit record, in order.
    let (_, audit) = console.get("/api/audit").await;
    let outcomes: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_owned(),
                a["principal"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("resume", "-", "refused: flext.operator.no_principal"),
        ("rebuild", "-", "refused: flext.operator.no_principal"),
        (
            "resolve",
            "mallory",
            "refused: flext.operator.forbidden_origin",
        ),
        (
            "resolve",
            "mallory",
            "refused: flext.operator.forbidden_origin",
        ),
        (
            "frobnicate",
            "alice",
            "refused: flext.operator.unknown_target",
        ),
        ("resume", "alice", "refused: flext.saga.operator_input"),
        ("resume", "alice", "refused: flext.saga.operator_input"),
        ("resume", "alice", "refused: flext.input.malformed_json"),
        ("resume", "alice", "done"),
        ("resolve", "bob", "refused: flext.saga.finished"),
        ("abort", "bob", "refused: flext.saga.past_pivot"),
        ("abort", "bob", "done"),
    ]
    .iter()
    .map(|(a, p, o)| ((*a).to_owned(), (*p).to_owned(), (*o).to_owned()))
    .collect();
    assert_eq!(outcomes, expected);
    assert_eq!(audit[8]["reason"], "carrier back up");
    assert_eq!(audit[8]["target"], format!("saga {one}"));
}

fn carrier() -> Arc<Carrier> {
    Arc::new(Carrier::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sagas_act_and_refuse_through_the_console() {
    let dir = std::env::temp_dir().join(format!("flext-console-api-{}", uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("sagas.db")).unwrap();
    let carrier = carrier();
    let runner = SagaRunner::builder(db.saga_log().unwrap())
        .owner("api-test")
        .lease(Duration::from_millis(300))
        .state(carrier.clone())
        .build();
    sagas_act_and_refuse_as_the_log_says(runner, carrier).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sagas_act_and_refuse_through_the_console() {
    let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let db = flext::postgres::PgDatabase::connect(&cluster.fresh_database().await.unwrap())
        .await
        .unwrap();
    let carrier = carrier();
    let runner = SagaRunner::builder(db.saga_log())
        .owner("api-test")
        .lease(Duration::from_millis(300))
        .state(carrier.clone())
        .build();
    sagas_act_and_refuse_as_the_log_says(runner, carrier).await;
}

fn uuid() -> String {
    format!("{}-{}", std::process::id(), flext::saga::now_ms())
}

// ------------------------------------------------------------------ projections and outbox

#[event(name = "test.parcel_counted")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counted {
    parcel: u32,
}

struct Counts;

/// Whether the `counts` projection refuses parcel 13 (its bug, until fixed).
static UNLUCKY: AtomicBool = AtomicBool::new(true);

#[projection(name = "counts", tables = ["counts"])]
impl Counts {
    fn setup(&self, uow: &flext::sqlite::SqliteUnitOfWork) -> Result<()> {
        uow.connection()
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (parcel INTEGER PRIMARY KEY)",
                uow.table("counts")
            ))
            .map_err(|e| Error::internal("counts.sql", e.to_string()))
    }
    #[apply]
    fn counted(&self, uow: &flext::sqlite::SqliteUnitOfWork, e: &Counted) -> Result<()> {
        if e.parcel == 13 && UNLUCKY.load(Ordering::SeqCst) {
            return Err(Error::internal("counts.unlucky", "parcel 13 is refused"));
        }
        uow.connection()
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO {} (parcel) VALUES (?1)",
                    uow.table("counts")
                ),
                [e.parcel],
            )
            .map(|_| ())
            .map_err(|e| Error::internal("counts.sql", e.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_projections_and_the_outbox_are_shown_and_rebuilt() {
    use flext::event_store::{NewEvent, StreamId};
    let dir = std::env::temp_dir().join(format!("flext-console-proj-{}", uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("app.db")).unwrap();
    for parcel in [1u32, 2, 13, 4] {
        let event = NewEvent::new(
            Counted::NAME,
            1,
            json!({ "parcel": parcel }),
            &Context::new(),
        );
        db.transaction(|uow| {
            uow.append_events(&StreamId::new("parcel", parcel.to_string()), 0, &[event])
        })
        .unwrap();
    }
    let projection = flext::sqlite::SqliteProjectionRunner::new(db.clone(), Counts);
    projection.catch_up().unwrap_err();
    let bus = Bus::builder().build().unwrap();
    let relay = flext::sqlite::SqliteOutboxRelay::new(db.clone(), BusRelay::new(bus.clone()));
    let ops = Operations::new(db.saga_log().unwrap())
        .bus(bus)
        .projection(projection)
        .outbox("parcels", relay.clone());
    let console = Console {
        base: serve(ops).await,
        http: reqwest::Client::new(),
    };

    let (_, projections) = console.get("/api/projections").await;
    let counts = &projections[0]["status"];
    assert_eq!(counts["name"], "counts");
    assert_eq!(
        (counts["checkpoint"].as_u64(), counts["head"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(counts["events_behind"], 2);
    assert_eq!(
        counts["stopped_at"][0], 3,
        "stopped at the event of parcel 13: {counts}"
    );
    assert!(
        counts["stopped_at"][1]
            .as_str()
            .unwrap()
            .contains("parcel 13 is refused"),
        "{counts}"
    );

    let (_, outbox) = console.get("/api/outbox").await;
    assert_eq!(outbox[0]["name"], "parcels");
    assert_eq!(outbox[0]["status"]["undelivered"], 4);
    assert!(
        outbox[0]["status"]["oldest_age_ms"].as_u64().is_some(),
        "{outbox}"
    );
    relay.deliver_pending().await.unwrap();
    let (_, outbox) = console.get("/api/outbox").await;
    assert_eq!(
        outbox[0]["status"],
        json!({ "undelivered": 0, "oldest_age_ms": 0 })
    );

    // A rebuild applies again from the first event, and stops where the handler does.
    let (status, refused) = console
        .post(
            Some("alice"),
            "/api/projections/counts/rebuild",
            json!({ "reason": "fixed the handler" }),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (500, Some("flext.projection.stopped")),
        "{refused}"
    );
    UNLUCKY.store(false, Ordering::SeqCst);
    let (status, rebuilt) = console
        .post(
            Some("alice"),
            "/api/projections/counts/rebuild",
            json!({ "reason": "fixed the handler, really" }),
        )
        .await;
    assert_eq!(
        (status, rebuilt),
        (200, json!({ "projection": "counts", "applied": 4 }))
    );
    let (_, projections) = console.get("/api/projections").await;
    assert_eq!(projections[0]["status"]["checkpoint"], 4);
    assert_eq!(projections[0]["status"]["events_behind"], 0);
    let (status, unknown) = console
        .post(
            Some("alice"),
            "/api/projections/nope/rebuild",
            json!({ "reason": "typo" }),
        )
        .await;
    assert_eq!(
        (status, unknown["code"].as_str()),
        (404, Some("flext.operator.unknown_target"))
    );
    assert!(
        unknown["detail"].as_str().unwrap().contains("`counts`"),
        "{unknown}"
    );

    // No consumer registered: no dead letters, and a replay names what is known.
    let (_, dead) = console.get("/api/dead-letters").await;
    assert_eq!(dead, json!([]));
    let (status, unknown) = console
        .post(
            Some("alice"),
            "/api/dead-letters/receiver/7/replay",
            json!({ "reason": "retry" }),
        )
        .await;
    assert_eq!(
        (status, unknown["code"].as_str()),
        (404, Some("flext.operator.unknown_target"))
    );
    let (status, _) = console
        .post(
            Some("alice"),
            "/api/dead-letters/receiver/seven/replay",
            json!({ "reason": "retry" }),
        )
        .await;
    assert_eq!(status, 404);

    let (_, health) = console.get("/api/health").await;
    assert_eq!(health["stats_enabled"], true, "{health}");
    let (_, audit) = console.get("/api/audit").await;
    let outcomes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "refused: flext.projection.stopped",
            "done",
            "refused: flext.operator.unknown_target",
            "refused: flext.operator.unknown_target",
            "refused: flext.operator.unknown_target"
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------------------------ the same on PostgreSQL

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
    use flext::postgres::{
        PgDatabase, PgOutboxRelay, PgProjection, PgProjectionRunner, PgUnitOfWork,
    };

    /// Counts parcels; refuses parcel 13.
    struct PgCounts;

    impl PgProjection for PgCounts {
        fn name(&self) -> &str {
            "counts"
        }
        fn apply<'a>(
            &'a self,
            _uow: &'a PgUnitOfWork,
            event: &'a EventEnvelope,
        ) -> flext::BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                if event.payload["parcel"] == 13 {
                    return Err(Error::internal("counts.unlucky", "parcel 13 is refused"));
                }
                Ok(())
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_projections_and_the_outbox_are_shown() {
        let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let db = PgDatabase::connect(&cluster.fresh_database().await.unwrap())
            .await
            .unwrap();
        let store = db.event_store();
        for parcel in [1u32, 2, 13, 4] {
            let event = NewEvent::new(
                Counted::NAME,
                1,
                json!({ "parcel": parcel }),
                &Context::new(),
            );
            store
                .append(&StreamId::new("parcel", parcel.to_string()), 0, &[event])
                .await
                .unwrap();
        }
        let projection = PgProjectionRunner::new(db.clone(), PgCounts);
        projection.catch_up().await.unwrap_err();
        let bus = Bus::builder().build().unwrap();
        let relay = PgOutboxRelay::new(db.clone(), BusRelay::new(bus.clone()));
        let ops = Operations::new(db.saga_log())
            .bus(bus)
            .projection(projection)
            .outbox("parcels", relay.clone());
        let console = Console {
            base: serve(ops).await,
            http: reqwest::Client::new(),
        };

        let (_, projections) = console.get("/api/projections").await;
        let counts = &projections[0]["status"];
        assert_eq!(counts["name"], "counts");
        assert_eq!(counts["events_behind"], 2, "{counts}");
        assert_eq!(counts["head"], 4, "{counts}");
        assert!(
            counts["stopped_at"][1]
                .as_str()
                .unwrap()
                .contains("parcel 13 is refused"),
            "{counts}"
        );

        let (_, outbox) = console.get("/api/outbox").await;
        assert_eq!(outbox[0]["status"]["undelivered"], 4, "{outbox}");
        relay.deliver_pending().await.unwrap();
        let (_, outbox) = console.get("/api/outbox").await;
        assert_eq!(
            outbox[0]["status"],
            json!({ "undelivered": 0, "oldest_age_ms": 0 })
        );

        // PostgreSQL projections have no rebuild yet: refused, saying what to do.
        let (status, refused) = console
            .post(
                Some("alice"),
                "/api/projections/counts/rebuild",
                json!({ "reason": "fixed" }),
            )
            .await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (422, Some("flext.operator.unsupported"))
        );
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("flext_checkpoints"),
            "{refused}"
        );
        let (_, audit) = console.get("/api/audit").await;
        assert_eq!(audit[0]["outcome"], "refused: flext.operator.unsupported");
        assert_eq!(audit[0]["principal"], "alice");
    }
}

/// pick and label side by side, then pack; pack fails and both are compensated.
#[derive(Debug, Serialize, Deserialize)]
struct Dispatch {
    order: u32,
}

#[workflow(durable)]
impl Dispatch {
    #[workflow_step(compensate = restock)]
    async fn pick(&self) -> Result<u32> {
        Ok(self.order)
    }
    async fn restock(&self, _items: &u32) -> Result<()> {
        Ok(())
    }
    #[workflow_step]
    async fn label(&self) -> Result<String> {
        Ok(format!("LBL-{}", self.order))
    }
    #[workflow_step(depends_on = [pick, label])]
    async fn pack(&self, _items: &u32, label: &str) -> Result<()> {
        Err(Error::infrastructure(
            "packer.jammed",
            format!("cannot pack {label}"),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_workflow_run_is_shown_as_its_graph() {
    let dir = std::env::temp_dir().join(format!("flext-console-graph-{}", uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("sagas.db")).unwrap();
    let runner = SagaRunner::builder(db.saga_log().unwrap()).build();
    let run = runner
        .run_workflow_durable(Dispatch { order: 7 }, &Context::new())
        .await
        .unwrap();
    assert_eq!(run.failed_step().unwrap().name, "pack");
    let console = Console {
        base: serve(Operations::for_runner(runner)).await,
        http: reqwest::Client::new(),
    };
    let (status, detail) = console
        .get(&format!("/api/sagas/{}", run.run_id().unwrap()))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["summary"]["state"], "compensated");
    let nodes: Vec<(&str, &str, Value)> = detail["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap(),
                n["state"].as_str().unwrap(),
                n["depends_on"].clone(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("pick", "compensated", json!([])),
            ("label", "completed", json!([])),
            ("pack", "failed", json!(["pick", "label"])),
        ]
    );
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"node_compensated"), "{kinds:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_shown_with_their_depth_and_oldest_waiting_saga() {
    let dir = std::env::temp_dir().join(format!("flext-console-queues-{}", uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("sagas.db")).unwrap();
    let runner = SagaRunner::builder(db.saga_log().unwrap())
        .state(carrier())
        .build();
    let labels = flext::saga::Queue::new("labels").unwrap().limit(1);
    for parcel in [1, 2] {
        runner
            .enqueue(
                &labels,
                flext::Uuid::new_v4(),
                Ship { parcel },
                Default::default(),
                &Context::new(),
            )
            .await
            .unwrap();
    }
    let console = Console {
        base: serve(Operations::for_runner(runner)).await,
        http: reqwest::Client::new(),
    };
    let (status, queues) = console.get("/api/queues").await;
    assert_eq!(status, 200, "{queues}");
    assert_eq!(queues[0]["queue"], "labels");
    assert_eq!(
        (queues[0]["queued"].clone(), queues[0]["running"].clone()),
        (json!(2), json!(0))
    );
    assert!(queues[0]["oldest_queued_ms"].as_u64().is_some(), "{queues}");
    std::fs::remove_dir_all(&dir).ok();
}
