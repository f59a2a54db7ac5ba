//! Three processes on one PostgreSQL database, one killed with SIGKILL at a random moment
//! each round: the survivors finish or compensate its sagas, deliver its events and
//! project them, and the ledger shows every transfer exactly once or exactly undone.
//!
//! Each round starts three workers of `examples/pg_transfers.rs` on ten transfers each
//! (`--drain`: each waits, at the end, until no saga is in flight, nothing is
//! undelivered and the projection is caught up), kills one of them after 0 to 450 ms
//! (mid-saga, mid-outbox or mid-projection, wherever it is), and waits for the other two.
//! After the last round it checks, from the database:
//! - every saga completed or compensated, none in flight;
//! - the ledger: a completed transfer has one debit and one credit, a compensated one a
//!   debit and its refund, or nothing; no posting without its saga;
//! - every event delivered (outbox empty), one notification per event;
//! - the projection applied each event once (its table of applied positions has each
//!   position once, and its balances are the sums of the postings).
//!
//! `FLEXT_PG_KILL_RUNS` sets the rounds (default 50); `FLEXT_KILL_SEED` replays a run.
//! Prints how many sagas the survivors took over.

#![cfg(feature = "postgres")]

#[path = "common/kill.rs"]
mod kill;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flext::event_store::EventStore;
use flext::postgres::{PgDatabase, TestCluster};
use flext::saga::{SagaFilter, SagaLog, SagaState};

const PER_WORKER: u64 = 10;

fn spawn(exe: &std::path::Path, url: &str, owner: &str, start: u64) -> Child {
    Command::new(exe)
        .args(["--url", url, "--owner", owner, "--lines"])
        .arg(start.to_string())
        .arg(PER_WORKER.to_string())
        .arg("--drain")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts")
}

#[test]
fn three_processes_one_killed_each_round_lose_nothing_and_repeat_nothing() {
    let runs = kill::env_count("FLEXT_PG_KILL_RUNS", 50);
    let seed = kill::seed();
    let mut rng = kill::Rng(seed);
    let exe = kill::example_with("pg_transfers", &["postgres"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = rt.block_on(cluster.fresh_database()).unwrap();

    let (mut killed_running, mut taken_over) = (0, 0);
    for round in 0..runs {
        let base = round * 3 * PER_WORKER;
        let mut workers: Vec<Child> = (0..3)
            .map(|w| {
                spawn(
                    &exe,
                    &url,
                    &format!("worker-{round}-{w}"),
                    base + w * PER_WORKER,
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.below(450)));
        let victim = usize::try_from(rng.below(3)).unwrap();
        if workers[victim].try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        workers[victim].kill().ok(); // SIGKILL
        workers[victim].wait().unwrap();
        for (w, child) in workers.into_iter().enumerate() {
            if w == victim {
                continue;
            }
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round}, worker {w} (seed {seed}): {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            taken_over += stdout
                .lines()
                .filter_map(|l| l.strip_prefix("took over "))
                .map(|n| n.parse::<u64>().unwrap())
                .sum::<u64>();
        }
    }

    rt.block_on(check(&url, runs, seed));
    println!(
        "pg kill runs: {runs} (seed {seed}), killed while running: {killed_running}, sagas taken over by survivors: {taken_over}"
    );
}

async fn check(url: &str, runs: u64, seed: u64) {
    let db = PgDatabase::connect(url).await.unwrap();
    let sagas = db.saga_log().list(&SagaFilter::default()).await.unwrap();
    let mut outcome = BTreeMap::new();
    for s in &sagas {
        assert!(
            matches!(s.state, SagaState::Completed | SagaState::Compensated),
            "saga {} left {:?} (seed {seed})",
            s.id,
            s.state
        );
        let record = db.saga_log().load(s.id).await.unwrap();
        let n = record.input["n"].as_u64().unwrap();
        outcome.insert(n, s.state);
    }
    assert!(outcome.len() as u64 <= runs * 3 * PER_WORKER);

    // The ledger: postings per transfer.
    let events = db.event_store().read_all(0, usize::MAX).await.unwrap();
    let mut postings: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for e in &events {
        let n = e.payload["transfer"].as_u64().unwrap();
        postings.entry(n).or_default().push(e.name.clone());
        *sums
            .entry(e.payload["account"].as_str().unwrap().to_owned())
            .or_default() += e.payload["cents"].as_i64().unwrap();
    }
    for (n, names) in &postings {
        let mut names = names.clone();
        names.sort();
        match outcome.get(n) {
            Some(SagaState::Completed) => {
                assert_eq!(
                    names,
                    ["account.credited", "account.debited"],
                    "transfer {n}"
                )
            }
            Some(SagaState::Compensated) => {
                assert_eq!(
                    names,
                    ["account.debited", "account.refunded"],
                    "transfer {n}"
                )
            }
            other => panic!("transfer {n} posted {names:?} with saga {other:?}"),
        }
    }
    for (n, state) in &outcome {
        if *state == SagaState::Completed {
            assert!(
                postings.contains_key(n),
                "completed transfer {n} posted nothing"
            );
        }
    }
    assert_eq!(sums.values().sum::<i64>(), 0, "no money created or lost");

    // The outbox and its consumer.
    let client = db.client().await.unwrap();
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) as u64 }
    };
    assert_eq!(
        db.outbox_pending().await.unwrap(),
        0,
        "every event delivered"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM notifications").await,
        events.len() as u64
    );
    let deliveries = count("SELECT COUNT(*) FROM deliveries").await;
    assert!(deliveries >= events.len() as u64);

    // The projection: each event once, balances the sums of the postings.
    assert_eq!(
        count("SELECT COUNT(*) FROM applied").await,
        events.len() as u64
    );
    let balances: BTreeMap<String, i64> = client
        .query("SELECT account, cents FROM balances", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(balances, sums, "the projection is the sum of the postings");
    println!(
        "pg kill ledger: {} transfers ({} compensated), {} events, {} deliveries ({} redelivered)",
        outcome.len(),
        outcome
            .values()
            .filter(|s| **s == SagaState::Compensated)
            .count(),
        events.len(),
        deliveries,
        deliveries - events.len() as u64
    );
}
