//! The HTTP front door against a bound listener, with a real HTTP client: each row of
//! the status table, problem details, path and query binding, correlation ids.

use std::sync::Mutex;
use std::time::Duration;

use flext::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[command(output = u64, validate, http = "POST /accounts/{account_id}/deposits")]
#[derive(Clone, Serialize, Deserialize)]
struct Deposit {
    account_id: String,
    cents: u64,
}

#[business_rules]
impl Deposit {
    #[business_rule(code = "deposit.positive")]
    fn positive(&self) -> RuleResult {
        ensure!(self.cents > 0, "deposit at least one cent")
    }
}

#[query(output = Option<u64>, http = "GET /accounts/{account_id}")]
#[derive(Clone, Serialize, Deserialize)]
struct Balance {
    account_id: String,
    #[serde(default)]
    min: Option<u64>,
}

#[command(output = (), http = "PUT /faults/{kind}")]
#[derive(Clone, Serialize, Deserialize)]
struct Fault {
    kind: String,
}

#[derive(Default)]
struct Ledger(Mutex<Vec<(String, u64)>>);

/// What the `Trace` handler saw of its context.
#[derive(Default)]
struct Traces(Mutex<Vec<(Uuid, Option<String>)>>);

#[command(output = (), http = "POST /traces")]
#[derive(Clone, Serialize, Deserialize)]
struct Trace {}

#[command_handler]
fn trace(_: Trace, ctx: &Context, traces: State<Traces>) -> Result<()> {
    let parent = ctx.metadata("traceparent").map(str::to_owned);
    traces
        .0
        .lock()
        .unwrap()
        .push((ctx.correlation_id(), parent));
    Ok(())
}

#[command(output = String, http = "PUT /people/{name}", created = "/people/{name}")]
#[derive(Clone, Serialize, Deserialize)]
struct AddPerson {
    name: String,
}

#[command_handler]
fn add_person(command: AddPerson) -> Result<String> {
    Ok(format!("welcome, {}", command.name))
}

#[command(output = (), http = "POST /reports", accepted)]
#[derive(Clone, Serialize, Deserialize)]
struct Report {}

#[command_handler]
fn report(_: Report) -> Result<()> {
    Ok(())
}

/// Allowed to principals with the role "clerk" only.
#[command(output = (), http = "POST /vault")]
#[derive(Clone, Serialize, Deserialize)]
struct OpenVault {}

#[command_handler]
fn open_vault(_: OpenVault) -> Result<()> {
    Ok(())
}

/// Waits until the test lets it go: a request in flight at shutdown.
#[command(output = String, http = "POST /slow")]
#[derive(Clone, Serialize, Deserialize)]
struct Slow {}

#[derive(Default, Clone)]
struct Gate {
    entered: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

#[command_handler]
async fn slow(_: Slow, gate: State<Gate>) -> Result<String> {
    gate.entered.notify_one();
    gate.release.notified().await;
    Ok("finished".into())
}

/// A camelCase API: path parameters and the `Location` follow serde's names.
#[command(output = String, http = "POST /accounts/{from_account}/transfers/{transfer}", created = "/transfers/{transfer}")]
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Transfer {
    from_account: String,
    #[serde(rename = "ref")]
    transfer: u32,
    amount_cents: u64,
}

#[command_handler]
fn transfer(command: Transfer) -> Result<String> {
    Ok(format!(
        "{} sent {} as #{}",
        command.from_account, command.amount_cents, command.transfer
    ))
}

#[command(output = usize)]
#[derive(Clone, Serialize, Deserialize)]
struct Unrouted {
    items: Vec<u32>,
}

#[command_handler]
fn unrouted(command: Unrouted) -> Result<usize> {
    Ok(command.items.len())
}

#[command_handler]
fn deposit(command: Deposit, ledger: State<Ledger>) -> Result<u64> {
    let mut rows = ledger.0.lock().unwrap();
    rows.push((command.account_id.clone(), command.cents));
    Ok(rows
        .iter()
        .filter(|(a, _)| *a == command.account_id)
        .map(|(_, c)| c)
        .sum())
}

#[query_handler]
fn balance(query: Balance, ledger: State<Ledger>) -> Result<Option<u64>> {
    let rows = ledger.0.lock().unwrap();
    let mut found = rows
        .iter()
        .filter(|(a, _)| *a == query.account_id)
        .peekable();
    if found.peek().is_none() {
        return Ok(None);
    }
    let total: u64 = found.map(|(_, c)| c).sum();
    Ok(Some(total).filter(|t| query.min.is_none_or(|m| *t >= m)))
}

#[command_handler]
async fn fault(command: Fault) -> Result<()> {
    match command.kind.as_str() {
        "conflict" => Err(Error::conflict("account.version", "the account moved on")),
        "down" => Err(Error::infrastructure("ledger.down", "the ledger is down")),
        "slow" => Err(Error::timeout(
            "ledger.slow",
            "the ledger did not answer in time",
        )),
        "bug" => Err(Error::internal("ledger.bug", "secret row 42 is corrupt")),
        "denied" => Err(Error::unauthorized("ledger.denied", "not yours")),
        _ => Ok(()),
    }
}

/// The router on a bound loopback port; its base URL.
async fn serve() -> String {
    serve_with(|b| b).await
}

async fn serve_with(
    options: impl FnOnce(flext::http::RouterBuilder) -> flext::http::RouterBuilder,
) -> String {
    serve_bus(|b| b, options).await
}

async fn serve_bus(
    bus_options: impl FnOnce(flext::BusBuilder) -> flext::BusBuilder,
    options: impl FnOnce(flext::http::RouterBuilder) -> flext::http::RouterBuilder,
) -> String {
    let bus = bus_options(Bus::builder())
        .state(Ledger::default())
        .state(Traces::default())
        .state(Gate::default())
        .middleware(flext::middleware::Validation)
        .middleware(flext::middleware::Authorize::new(|principal, dispatch| {
            dispatch.name() != "OpenVault" || principal.is_some_and(|p| p.has_role("clerk"))
        }))
        .build()
        .unwrap();
    // The application's own authentication: a bearer token names the principal.
    let authenticate = |mut request: axum::extract::Request| async move {
        let token = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(name) = token.as_deref().and_then(|t| t.strip_prefix("Bearer ")) {
            let role = if name == "carol" { "clerk" } else { "guest" };
            request
                .extensions_mut()
                .insert(Principal::new(name).with_role(role));
        }
        request
    };
    let app = options(flext::http::RouterBuilder::new(bus))
        .build()
        .unwrap()
        .layer(axum::middleware::map_request(authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_command_binds_its_path_and_body_and_answers_its_output() {
    let base = serve().await;
    let http = client();
    let correlation = Uuid::new_v4().to_string();
    let first = http
        .post(format!("{base}/accounts/a-1/deposits"))
        .header("x-correlation-id", &correlation)
        .json(&json!({"cents": 250}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(
        first.headers()["x-correlation-id"].to_str().unwrap(),
        correlation
    );
    assert_eq!(first.json::<u64>().await.unwrap(), 250);
    let second = http
        .post(format!("{base}/accounts/a-1/deposits"))
        .json(&json!({"cents": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.json::<u64>().await.unwrap(), 300);

    // The query reads the path and the query string, typed.
    let balance = http
        .get(format!("{base}/accounts/a-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(balance.status().as_u16(), 200);
    assert_eq!(balance.json::<u64>().await.unwrap(), 300);
    let (status, body) = problem(
        http.get(format!("{base}/accounts/a-1?min=1000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("flext.http.not_found"))
    );
    let (status, _) = problem(
        http.get(format!("{base}/accounts/nobody"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_input_is_400_and_a_broken_rule_is_422_with_every_violation() {
    let base = serve().await;
    let http = client();
    let url = format!("{base}/accounts/a-2/deposits");
    let (status, body) = problem(http.post(&url).body("{not json").send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.malformed_json"))
    );
    let (status, body) = problem(http.post(&url).json(&json!([1, 2])).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.not_an_object"))
    );
    let (status, body) = problem(
        http.post(&url)
            .json(&json!({"cents": "ten"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A body naming the path's field as well is ambiguous: refused, not overridden.
    let (status, body) = problem(
        http.post(&url)
            .json(&json!({"account_id": "b-9", "cents": 1}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("duplicate field `account_id`"),
        "{body}"
    );
    let (status, body) = problem(http.post(&url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.missing_field"))
    );
    let (status, body) = problem(
        http.get(format!("{base}/accounts/a-2?min=lots"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.invalid_field"))
    );
    let (status, body) = problem(
        http.get(format!("{base}/accounts/a-2?color=red"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.unknown_field"))
    );

    let (status, body) = problem(
        http.post(&url)
            .json(&json!({"cents": 0}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "urn:flext:problem:deposit.positive");
    assert_eq!(body["violations"][0]["code"], "deposit.positive");
    assert_eq!(
        body["violations"][0]["message"],
        "deposit at least one cent"
    );
    assert!(Uuid::parse_str(body["correlation_id"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn each_kind_of_failure_has_its_status_and_a_500_masks_its_detail() {
    let base = serve().await;
    let http = client();
    for (kind, status, code) in [
        ("conflict", 409, "account.version"),
        ("down", 503, "ledger.down"),
        ("slow", 504, "ledger.slow"),
        ("denied", 401, "ledger.denied"),
        ("bug", 500, "ledger.bug"),
    ] {
        let (got, body) = problem(
            http.put(format!("{base}/faults/{kind}"))
                .json(&json!({}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{kind}: {body}"
        );
        assert_eq!(body["status"], status);
    }
    let (_, body) = problem(
        http.put(format!("{base}/faults/bug"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(!detail.contains("secret"), "{detail}");
    assert!(
        detail.contains(body["correlation_id"].as_str().unwrap()),
        "{detail}"
    );
    // A method the route does not serve.
    let wrong = http.get(format!("{base}/faults/bug")).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 405);
    let ok = http
        .put(format!("{base}/faults/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (ok.status().as_u16(), ok.text().await.unwrap()),
        (200, "null".to_owned())
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_json_too_deep_is_400() {
    let base = serve_with(|b| b.body_limit(64).json_depth(3)).await;
    let http = client();
    let url = format!("{base}/accounts/a-3/deposits");
    let big = format!("{{\"cents\": 1, \"pad\": \"{}\"}}", "x".repeat(100));
    let (status, body) = problem(
        http.post(&url)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("flext.input.too_large"))
    );
    let deep = r#"{"cents": 1, "a": [[[[1]]]]}"#;
    let (status, body) = problem(http.post(&url).body(deep).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.too_deep"))
    );
    // Brackets inside strings do not count.
    let ok = http
        .post(&url)
        .body(r#"{"cents": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test]
async fn traceparent_reaches_the_handler_and_names_the_correlation_when_none_is_given() {
    let base = serve().await;
    let http = client();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = http
        .post(format!("{base}/traces"))
        .header("traceparent", parent)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(correlation, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    // A malformed one is ignored: a new correlation id, no trace parent.
    let response = http
        .post(format!("{base}/traces"))
        .header("traceparent", "00-zz-1-01")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let other = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(other, correlation);
    assert!(Uuid::parse_str(&other).is_ok());
}

#[tokio::test]
async fn the_by_name_entry_exists_only_when_enabled() {
    let http = client();
    let closed = serve().await;
    let response = http
        .post(format!("{closed}/commands/Unrouted"))
        .json(&json!({"items": [1, 2, 3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let open = serve_with(|b| b.by_name(true)).await;
    let response = http
        .post(format!("{open}/commands/Unrouted"))
        .json(&json!({"items": [1, 2, 3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status().as_u16(), response.text().await.unwrap()),
        (200, "3".to_owned())
    );
    let (status, body) = problem(
        http.post(format!("{open}/commands/Nope"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("flext.bus.unknown_message"))
    );
    // A command asked for as a query: there is no such query.
    let (status, body) = problem(
        http.post(format!("{open}/queries/Unrouted"))
            .json(&json!({"items": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("flext.bus.wrong_kind"))
    );
}

#[tokio::test]
async fn a_created_resource_is_201_with_its_location_and_accepted_work_is_202() {
    let base = serve().await;
    let http = client();
    let created = http
        .put(format!("{base}/people/ada%20lovelace"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(
        created.headers()["location"].to_str().unwrap(),
        "/people/ada%20lovelace"
    );
    assert_eq!(
        created.json::<String>().await.unwrap(),
        "welcome, ada lovelace"
    );
    let accepted = http
        .post(format!("{base}/reports"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
}

#[tokio::test]
async fn refused_without_a_principal_is_401_and_with_one_403() {
    let base = serve().await;
    let http = client();
    let url = format!("{base}/vault");
    let (status, body) = problem(http.post(&url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("flext.bus.unauthorized"))
    );
    let (status, _) = problem(
        http.post(&url)
            .bearer_auth("bob")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let allowed = http
        .post(&url)
        .bearer_auth("carol")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
}

#[tokio::test]
async fn a_graceful_shutdown_lets_the_request_in_flight_finish_and_takes_no_new_one() {
    let gate = Gate::default();
    let bus = Bus::builder()
        .state(Ledger::default())
        .state(Traces::default())
        .state(gate.clone())
        .build()
        .unwrap();
    let app = flext::http::router(bus).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    let http = client();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move {
            http.post(format!("{base}/slow"))
                .json(&json!({}))
                .send()
                .await
        }
    });
    gate.entered.notified().await;
    stop.send(()).unwrap();
    // The server stops accepting (its listener is closed) while the request is in flight;
    // only then is the request let go, and it finishes.
    let address = base.trim_start_matches("http://").to_owned();
    let mut closed = false;
    for _ in 0..10_000 {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            closed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        closed,
        "the listener still accepts after the shutdown signal"
    );
    gate.release.notify_one();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<String>().await.unwrap(), "finished");
    server.await.unwrap().unwrap();
    assert!(
        http.post(format!("{base}/slow"))
            .json(&json!({}))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn path_parameters_and_the_location_follow_serdes_renames() {
    let base = serve().await;
    let http = client();
    let response = http
        .post(format!("{base}/accounts/a-7/transfers/42"))
        .json(&json!({"amountCents": 900}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        "/transfers/42"
    );
    assert_eq!(
        response.json::<String>().await.unwrap(),
        "a-7 sent 900 as #42"
    );
}

#[tokio::test]
async fn a_request_past_the_routers_deadline_is_504() {
    // `Slow` waits for a release that never comes: only the deadline ends it.
    let base = serve_with(|b| b.timeout(Duration::from_millis(50))).await;
    let (status, body) = problem(
        client()
            .post(format!("{base}/slow"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("flext.http.timeout"))
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_as_it_is_served() {
    let base = serve().await;
    let http = client();
    let response = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // A command: its path parameter, its body without the path's field, its output, and
    // every status of the table.
    let deposit = &doc["paths"]["/accounts/{account_id}/deposits"]["post"];
    assert_eq!(deposit["operationId"], "Deposit");
    let parameters = deposit["parameters"].as_array().unwrap();
    assert_eq!(parameters[0]["name"], "account_id");
    assert_eq!(parameters[0]["in"], "path");
    assert_eq!(parameters[0]["schema"]["type"], "string");
    let body = &deposit["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["cents"]["type"], "integer");
    assert_eq!(
        body["properties"]["account_id"], false,
        "named by the path only"
    );
    assert_eq!(body["required"], json!(["cents"]));
    let responses = deposit["responses"].as_object().unwrap();
    let mut statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [
            "200", "400", "401", "403", "404", "409", "413", "422", "500", "503", "504"
        ]
    );
    assert_eq!(
        responses["200"]["content"]["application/json"]["schema"]["type"],
        "integer"
    );
    assert_eq!(
        responses["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    let problem_schema = &doc["components"]["schemas"]["Problem"];
    assert_eq!(problem_schema["properties"]["type"]["type"], "string");
    assert_eq!(
        problem_schema["properties"]["violations"]["items"]["$ref"],
        "#/components/schemas/RuleViolation"
    );

    // A query: the query string's fields by name; no body.
    let balance = &doc["paths"]["/accounts/{account_id}"]["get"];
    assert!(balance.get("requestBody").is_none());
    let min = balance["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "min")
        .unwrap();
    assert_eq!(
        (&min["in"], &min["required"]),
        (&json!("query"), &json!(false))
    );

    // 201 with its `Location`, and serde's renames in the path's parameters and the body.
    let person = &doc["paths"]["/people/{name}"]["put"]["responses"]["201"];
    assert_eq!(person["headers"]["Location"]["required"], true);
    let transfer = &doc["paths"]["/accounts/{from_account}/transfers/{transfer}"]["post"];
    let body = &transfer["requestBody"]["content"]["application/json"]["schema"];
    assert!(body["properties"].get("amountCents").is_some(), "{body}");
    assert_eq!(body["properties"]["ref"], false);
    assert_eq!(body["additionalProperties"], false, "deny_unknown_fields");

    // A message with no route is not in it; a path no route serves is a problem.
    let text = doc.to_string();
    assert!(!text.contains("Unrouted"));
    let (status, body) = problem(http.get(format!("{base}/nowhere")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("flext.http.no_route"))
    );
}

#[tokio::test]
async fn an_integer_written_with_a_fraction_is_taken_as_an_integer() {
    let base = serve().await;
    let http = client();
    let response = http
        .post(format!("{base}/accounts/int-1/deposits"))
        .body(r#"{"cents": 2.5e2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.json::<u64>().await.unwrap(), 250);
    let (status, _) = problem(
        http.post(format!("{base}/accounts/int-1/deposits"))
            .body(r#"{"cents": 2.5}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "a fraction is no integer");
}

#[tokio::test]
async fn an_open_circuit_is_503_without_calling_the_handler() {
    let breaker = flext::middleware::CircuitBreaker::builder("ledger")
        .consecutive_failures(2)
        .cool_down(Duration::from_secs(600))
        .build();
    let base = serve_bus(|b| b.middleware(breaker), |r| r).await;
    let http = client();
    let call = |kind: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            problem(
                http.put(format!("{base}/faults/{kind}"))
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    for _ in 0..2 {
        let (status, body) = call("down").await;
        assert_eq!((status, body["code"].as_str()), (503, Some("ledger.down")));
    }
    // Open: even a call that would succeed is refused, as 503.
    let (status, body) = call("fine").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("flext.service.circuit_open"))
    );
}
