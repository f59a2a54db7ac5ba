//! The database dies under three workers: the PostgreSQL server is killed with SIGKILL
//! (the postmaster and its processes, no shutdown) while three processes of
//! `examples/pg_transfers.rs --outages` run their transfers, and started again a moment
//! later, several times a round. Afterwards, from the database:
//!
//! - no saga is left in flight (every one completed or compensated);
//! - no saga was driven twice: no step completion or compensation recorded twice, no
//!   transition after a final state, the transitions numbered one by one;
//! - the ledger holds each transfer's postings once (a completed transfer one debit and
//!   one credit, a compensated one a debit and its refund);
//! - the outbox is empty and the projection applied each event once.
//!
//! `FLEXT_PG_SERVER_KILLS` sets the rounds (default 3, each with two server kills);
//! `FLEXT_KILL_SEED` replays a run. Prints the rounds, the kills and the counts.

#![cfg(feature = "postgres")]

#[path = "common/kill.rs"]
mod kill;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flext::event_store::EventStore;
use flext::postgres::{PgDatabase, TestCluster};
use flext::saga::{SagaFilter, SagaLog, SagaState, Transition};

const PER_WORKER: u64 = 16;

fn spawn(exe: &std::path::Path, url: &str, owner: &str, start: u64) -> Child {
    Command::new(exe)
        .args(["--url", url, "--owner", owner, "--lines"])
        .arg(start.to_string())
        .arg(PER_WORKER.to_string())
        .args(["--drain", "--outages"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts")
}

#[test]
fn the_server_killed_under_three_workers_drives_no_saga_twice_and_leaves_none_in_flight() {
    let rounds = kill::env_count("FLEXT_PG_SERVER_KILLS", 3);
    let seed = kill::seed();
    let mut rng = kill::Rng(seed);
    let exe = kill::example_with("pg_transfers", &["postgres"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = rt.block_on(cluster.fresh_database()).unwrap();
    // The schema exists before the first kill.
    rt.block_on(async { PgDatabase::connect(&url).await.unwrap() });

    let (mut kills, mut deferred, mut taken_over) = (0, 0, 0);
    for round in 0..rounds {
        let base = round * 3 * PER_WORKER;
        let workers: Vec<Child> = (0..3)
            .map(|w| {
                spawn(
                    &exe,
                    &url,
                    &format!("worker-{round}-{w}"),
                    base + w * PER_WORKER,
                )
            })
            .collect();
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
            cluster.kill().unwrap_or_else(|e| panic!("{e}"));
            kills += 1;
            // Down for up to three leases of the workers (300 ms each).
            std::thread::sleep(Duration::from_millis(200 + rng.below(700)));
            cluster.restart().unwrap_or_else(|e| panic!("{e}"));
        }
        for (w, child) in workers.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round}, worker {w} (seed {seed}): {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            deferred += stdout.lines().filter(|l| l.contains(" deferred: ")).count();
            taken_over += stdout
                .lines()
                .filter_map(|l| l.strip_prefix("took over "))
                .map(|n| n.parse::<u64>().unwrap())
                .sum::<u64>();
        }
    }

    let (sagas, twice, in_flight) = rt.block_on(check(&url, rounds, seed));
    println!(
        "pg server kills: {rounds} rounds, {kills} kills (seed {seed}), {sagas} sagas, transfers deferred by an outage: {deferred}, taken over: {taken_over}, sagas driven twice: {twice}, sagas left in flight: {in_flight}"
    );
    assert_eq!((twice, in_flight), (0, 0));
}

/// Checks the database; returns how many sagas, how many were driven twice and how many
/// are left in flight.
async fn check(url: &str, rounds: u64, seed: u64) -> (usize, usize, usize) {
    let db = PgDatabase::connect(url).await.unwrap();
    let log = db.saga_log();
    let sagas = log.list(&SagaFilter::default()).await.unwrap();
    assert_eq!(sagas.len() as u64, rounds * 3 * PER_WORKER, "seed {seed}");
    let (mut twice, mut in_flight) = (0, 0);
    let mut outcome = BTreeMap::new();
    for s in &sagas {
        if s.state.is_in_flight() {
            in_flight += 1;
            eprintln!("saga {} left {} (seed {seed})", s.id, s.state);
        }
        let record = log.load(s.id).await.unwrap();
        let history = log.history(s.id).await.unwrap();
        let mut seen = BTreeMap::new();
        let mut ended = false;
        let mut doubled = false;
        for (i, h) in history.iter().enumerate() {
            doubled |= h.seq != i as u64 + 1 || ended;
            match &h.transition {
                Transition::StepCompleted { index, .. } => {
                    *seen.entry(("step", *index)).or_insert(0) += 1;
                    ended |= *index == 1;
                }
                Transition::CompensationCompleted { index, .. } => {
                    *seen.entry(("undo", *index)).or_insert(0) += 1;
                    ended = true;
                }
                // Failures, stuck points, operators' actions; a saga writes no node
                // transitions.
                _ => {}
            }
        }
        doubled |= seen.values().any(|n| *n > 1);
        if doubled {
            twice += 1;
            eprintln!("saga {} driven twice: {history:?} (seed {seed})", s.id);
        }
        outcome.insert(record.input["n"].as_u64().unwrap(), s.state);
    }

    // The ledger: each saga's postings once.
    let events = db.event_store().read_all(0, usize::MAX).await.unwrap();
    let mut postings: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in &events {
        let n = e.payload["transfer"].as_u64().unwrap();
        postings.entry(n).or_default().push(e.name.clone());
    }
    for (n, state) in &outcome {
        let mut got = postings.remove(n).unwrap_or_default();
        got.sort();
        let expected: &[&str] = match state {
            SagaState::Completed => &["account.credited", "account.debited"],
            // A debit that failed for good (its retries outlasted by the outage) was never
            // posted, so there is nothing to refund: compensated with no postings.
            SagaState::Compensated if got.is_empty() => &[],
            SagaState::Compensated => &["account.debited", "account.refunded"],
            _ => continue,
        };
        assert_eq!(got, expected, "transfer {n} (seed {seed})");
    }
    assert!(postings.is_empty(), "postings without a saga: {postings:?}");
    assert_eq!(db.outbox_pending().await.unwrap(), 0, "seed {seed}");
    let client = db.client().await.unwrap();
    let applied: i64 = client
        .query_one("SELECT COUNT(*) FROM applied", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied as usize, events.len(), "each event projected once");
    (sagas.len(), twice, in_flight)
}
