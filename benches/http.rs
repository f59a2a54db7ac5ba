//! A command over HTTP: flext's route (`#[command(http = "..")]`, `flext::http::router`)
//! against a hand-written axum handler doing the same work, over loopback with a
//! keep-alive client, at 1 and 32 concurrent connections: p50, p99 and requests per
//! second, both measured in the same run. A second table gives the cost of an
//! `Idempotency-Key` (a fresh key per request, kept in a SQLite file at
//! `Synchronous::Normal`) against the same route without one.
//!
//! ```text
//! cargo bench --features http --bench http
//! FLEXT_HTTP_BENCH_REQUESTS=50000 cargo bench --features http --bench http
//! ```
//!
//! A custom harness rather than criterion: the figures wanted are a latency distribution
//! under concurrency and a throughput, which criterion's mean time per iteration is not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State as AxumState};
use axum::routing::post;
use flext::prelude::*;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The work both handlers do: add to an account's balance, answer the new balance.
#[derive(Default)]
struct Ledger(Mutex<HashMap<String, u64>>);

impl Ledger {
    fn deposit(&self, account: &str, cents: u64) -> u64 {
        let mut balances = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let balance = balances.entry(account.to_owned()).or_default();
        *balance += cents;
        *balance
    }
}

#[command(output = u64, http = "POST /accounts/{account_id}/deposits")]
#[derive(Clone, Serialize, Deserialize)]
struct Deposit {
    account_id: String,
    cents: u64,
}

#[command_handler]
fn deposit(command: Deposit, ledger: State<Ledger>) -> Result<u64> {
    Ok(ledger.deposit(&command.account_id, command.cents))
}

#[derive(Deserialize)]
struct Body {
    cents: u64,
}

/// The hand-written twin: the same path, body and answer.
async fn by_hand(
    AxumState(ledger): AxumState<Arc<Ledger>>,
    Path(account_id): Path<String>,
    axum::Json(body): axum::Json<Body>,
) -> axum::Json<u64> {
    axum::Json(ledger.deposit(&account_id, body.cents))
}

async fn bind(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    base
}

struct Figures {
    p50_us: f64,
    p99_us: f64,
    per_second: f64,
}

/// `requests` deposits spread over `connections` concurrent keep-alive connections, each
/// with a fresh `Idempotency-Key` when `keyed`.
async fn load(base: &str, connections: usize, requests: usize, keyed: bool) -> Figures {
    static ROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .expect("client");
    let url = format!("{base}/accounts/a-1/deposits");
    // Warm-up: connections opened, caches filled.
    for i in 0..200 {
        let mut request = client
            .post(&url)
            .body(r#"{"cents":1}"#)
            .header("content-type", "application/json");
        if keyed {
            request = request.header("idempotency-key", format!("w-{round}-{i}"));
        }
        request.send().await.expect("warm-up");
    }
    let per_task = requests / connections;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|task| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new(3).expect("histogram");
                for i in 0..per_task {
                    let t = Instant::now();
                    let mut request = client
                        .post(&url)
                        .body(r#"{"cents":1}"#)
                        .header("content-type", "application/json");
                    if keyed {
                        request =
                            request.header("idempotency-key", format!("k-{round}-{task}-{i}"));
                    }
                    let response = request.send().await.expect("request");
                    assert!(response.status().is_success());
                    response.bytes().await.expect("body");
                    histogram
                        .record(t.elapsed().as_micros() as u64)
                        .expect("record");
                }
                histogram
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for task in tasks {
        all.add(task.await.expect("task")).expect("merge");
    }
    let elapsed = started.elapsed();
    Figures {
        p50_us: all.value_at_quantile(0.50) as f64,
        p99_us: all.value_at_quantile(0.99) as f64,
        per_second: (per_task * connections) as f64 / elapsed.as_secs_f64(),
    }
}

/// The median of each figure over the rounds.
fn median(rounds: &[Figures]) -> Figures {
    let middle = |f: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Figures {
        p50_us: middle(|f| f.p50_us),
        p99_us: middle(|f| f.p99_us),
        per_second: middle(|f| f.per_second),
    }
}

/// One table row: the baseline `h` and the measured `f`, with their ratios.
fn row(label: &str, h: &Figures, f: &Figures) {
    println!(
        "| {label} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
        h.p50_us,
        f.p50_us,
        f.p50_us / h.p50_us,
        h.p99_us,
        f.p99_us,
        f.p99_us / h.p99_us,
        h.per_second,
        f.per_second,
        f.per_second / h.per_second
    );
}

fn main() {
    let requests: usize = std::env::var("FLEXT_HTTP_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bus = Bus::builder().state(Ledger::default()).build().expect("bus");
        let flext_base = bind(flext::http::router(bus).expect("router")).await;
        let hand = axum::Router::new()
            .route("/accounts/{account_id}/deposits", post(by_hand))
            .with_state(Arc::new(Ledger::default()));
        let hand_base = bind(hand).await;
        // The control: a second, identical hand-written server, measured as flext is. Its
        // ratios are the noise floor of the figures on this machine.
        let twin_base = bind(
            axum::Router::new()
                .route("/accounts/{account_id}/deposits", post(by_hand))
                .with_state(Arc::new(Ledger::default())),
        )
        .await;
        let dir = std::env::temp_dir().join(format!("flext-http-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = flext::sqlite::SqliteDatabase::open(dir.join("keys.db")).expect("database");
        let keyed_bus = Bus::builder().state(Ledger::default()).build().expect("bus");
        let keyed_base = bind(
            flext::http::RouterBuilder::new(keyed_bus)
                .idempotency(db)
                .build()
                .expect("router"),
        )
        .await;
        println!("{requests} deposits per row, over loopback, keep-alive (microseconds)");
        println!("| connections | hand p50 | flext p50 | ratio | hand p99 | flext p99 | ratio | hand req/s | flext req/s | ratio |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for connections in [1, 32] {
            // Interleaved rounds, the median of each figure kept: the machine's other
            // work lands on both sides alike.
            let rounds: usize = std::env::var("FLEXT_HTTP_BENCH_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            let (mut hands, mut ours) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                hands.push(load(&hand_base, connections, requests, false).await);
                ours.push(load(&flext_base, connections, requests, false).await);
            }
            let (h, f) = (median(&hands), median(&ours));
            row(&connections.to_string(), &h, &f);
        }
        // The noise floor: the hand-written handler against its twin.
        let (mut hands, mut twins) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            hands.push(load(&hand_base, 1, requests / 2, false).await);
            twins.push(load(&twin_base, 1, requests / 2, false).await);
        }
        row("1, control: hand vs its twin", &median(&hands), &median(&twins));
        println!();
        println!("The cost of an Idempotency-Key: the same flext route with a fresh key per request (SQLite)");
        println!("| connections | without p50 | with p50 | ratio | without req/s | with req/s | ratio |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for connections in [1, 32] {
            let (mut plain, mut keyed) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                plain.push(load(&flext_base, connections, requests / 4, false).await);
                keyed.push(load(&keyed_base, connections, requests / 4, true).await);
            }
            let (p, k) = (median(&plain), median(&keyed));
            println!(
                "| {connections} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
                p.p50_us,
                k.p50_us,
                k.p50_us / p.p50_us,
                p.per_second,
                k.per_second,
                k.per_second / p.per_second
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        std::fs::remove_dir_all(&dir).ok();
    });
}
