//! Kills the `order_fulfillment` example with SIGKILL at random moments while it runs
//! sagas against a SQLite file, restarts it, and checks that every effect in the durable
//! ledger is applied exactly once, or applied and undone exactly once, and that no saga
//! is left in flight.
//!
//! `FLEXT_KILL_RUNS` sets the number of kills (default 200) and `FLEXT_KILL_RUNS_TWO` the
//! rounds of the two-worker soak (default 100); a longer soak:
//! `FLEXT_KILL_RUNS=1000 FLEXT_KILL_RUNS_TWO=500 cargo test --release --test test_saga_kill -- --nocapture`.
//! `FLEXT_KILL_SEED` replays a run.

#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::process::{Command, Stdio};

#[path = "common/kill.rs"]
mod kill;

use kill::{Rng, env_count, kill_after, seed};

fn example_binary() -> PathBuf {
    kill::example("order_fulfillment")
}

/// Runs the example once more, not killed, until nothing is in flight.
fn drain(binary: &PathBuf, db: &std::path::Path) {
    let out = Command::new(binary)
        .args(["--db", db.to_str().unwrap(), "--orders", "0", "--drain"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the ledger and the log hold once everything has been recovered.
struct Verified {
    sagas: usize,
    completed: usize,
    compensated: usize,
}

/// Checks the ledger and the log: no saga in flight or stuck; each completed saga applied
/// each of its four effects once and undid none; each compensated saga undid every
/// effect it applied, once, and never reached the pivot; no effect without its saga; and
/// the log holds exactly one record per transition: each step completed at most once, a
/// failure once, each compensation once, in an order the runner writes.
fn verify(db: &std::path::Path) -> Verified {
    let conn = rusqlite::Connection::open(db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM flext_sagas WHERE state IN ('running', 'compensating')"),
        0,
        "no saga is left in flight"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM flext_sagas WHERE state = 'stuck'"),
        0
    );

    let mut sagas = conn.prepare("SELECT id, state FROM flext_sagas").unwrap();
    let sagas: Vec<(String, String)> = sagas
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut completed = 0;
    let mut compensated = 0;
    for (id, state) in &sagas {
        let mut effects = conn
            .prepare("SELECT step, undone FROM effects WHERE key LIKE ?1 || ':%' ORDER BY step")
            .unwrap();
        let effects: Vec<(String, i64)> = effects
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut bodies = conn
            .prepare("SELECT body FROM flext_saga_transitions WHERE saga_id = ?1 ORDER BY seq")
            .unwrap();
        let transitions: Vec<String> = bodies
            .query_map([id], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|body| {
                let t: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
                format!("{} {}", t["kind"].as_str().unwrap(), t["index"])
            })
            .collect();
        match state.as_str() {
            "completed" => {
                completed += 1;
                let steps: Vec<&str> = effects.iter().map(|(s, _)| s.as_str()).collect();
                assert_eq!(
                    steps,
                    [
                        "charge_payment",
                        "create_order",
                        "reserve_inventory",
                        "schedule_shipping"
                    ],
                    "saga {id}: every effect applied once"
                );
                assert!(
                    effects.iter().all(|(_, undone)| *undone == 0),
                    "saga {id}: nothing undone"
                );
                assert_eq!(
                    transitions,
                    [
                        "step_completed 0",
                        "step_completed 1",
                        "step_completed 2",
                        "step_completed 3"
                    ],
                    "saga {id}: one record per transition"
                );
            }
            "compensated" => {
                compensated += 1;
                assert!(
                    effects.iter().all(|(_, undone)| *undone == 1),
                    "saga {id}: every applied effect undone: {effects:?}"
                );
                assert!(
                    effects.iter().all(|(s, _)| s != "schedule_shipping"),
                    "saga {id}: the pivot never took effect"
                );
                // k completed steps, the failure of step k, then k compensations, last
                // first: nothing twice.
                let k = transitions
                    .iter()
                    .position(|t| t.starts_with("step_failed"))
                    .unwrap_or_else(|| panic!("saga {id}: no failure in {transitions:?}"));
                let mut expected: Vec<String> =
                    (0..k).map(|i| format!("step_completed {i}")).collect();
                expected.push(format!("step_failed {k}"));
                expected.extend((0..k).rev().map(|i| format!("compensation_completed {i}")));
                assert_eq!(
                    transitions, expected,
                    "saga {id}: one record per transition"
                );
            }
            other => panic!("saga {id} ended {other}"),
        }
    }
    // Orders whose saga was never created (killed before the first write) have no
    // effects at all: every effect belongs to a logged saga.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM effects WHERE substr(key, 1, 36) NOT IN (SELECT id FROM flext_sagas)"
        ),
        0,
        "no effect without its saga"
    );
    Verified {
        sagas: sagas.len(),
        completed,
        compensated,
    }
}

#[test]
#[cfg(unix)]
fn sigkill_at_random_moments_loses_nothing() {
    let runs = env_count("FLEXT_KILL_RUNS", 200);
    let seed = seed();
    let mut rng = Rng(seed);
    let binary = example_binary();
    let dir = std::env::temp_dir().join(format!("flext-kill-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("fulfilment.db");

    let mut killed = 0;
    for run in 0..runs {
        let mut child = Command::new(&binary)
            .args([
                "--db",
                db.to_str().unwrap(),
                "--orders",
                "2",
                "--start",
                &(run * 2).to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts");
        // Kill after a random number of progress lines: somewhere inside a step, a
        // compensation or a log commit, since the child keeps running while we read.
        if kill_after(&mut child, rng.below(14)) {
            killed += 1;
        }
    }

    // A last run, not killed, recovers whatever the last kill left.
    drain(&binary, &db);
    let ledger = verify(&db);
    println!(
        "kill runs: {runs} ({killed} killed mid-run), seed {seed}: {} sagas, {} completed, {} compensated",
        ledger.sagas, ledger.completed, ledger.compensated
    );
    assert!(killed > runs / 2, "most runs were killed mid-flight");
    std::fs::remove_dir_all(&dir).ok();
}

/// Two workers on one log file, each with a recovery loop, running side by side; each
/// round kills one of them, chosen at random, at a random moment, and starts a new one
/// in its place, while the other keeps running. What a killed worker left in flight is
/// finished by the others (the live one's recovery loop, or the new one's) once its
/// leases expire. `FLEXT_KILL_RUNS_TWO` sets the number of rounds (default 100).
#[test]
#[cfg(unix)]
fn two_workers_on_one_log_with_either_killed_lose_nothing() {
    let rounds = env_count("FLEXT_KILL_RUNS_TWO", 100);
    let seed = seed();
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let binary = example_binary();
    let dir = std::env::temp_dir().join(format!("flext-kill-two-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("fulfilment.db");
    const ORDERS: u64 = 20;

    let mut spawned = 0;
    let mut worker = || {
        let name = format!("worker-{spawned}");
        let child = Command::new(&binary)
            .args([
                "--db",
                db.to_str().unwrap(),
                "--owner",
                &name,
                "--orders",
                &ORDERS.to_string(),
                "--start",
                &(spawned * ORDERS).to_string(),
                "--recovery-ms",
                "50",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts");
        spawned += 1;
        (name, child)
    };
    let mut workers = [worker(), worker()];
    let (mut killed, mut left_in_flight) = (0, 0);
    for _ in 0..rounds {
        let victim = rng.below(2) as usize;
        let (name, child) = &mut workers[victim];
        if kill_after(child, rng.below(ORDERS * 6)) {
            killed += 1;
            // What the dead worker held: only the others can finish it now.
            let conn = rusqlite::Connection::open(&db).unwrap();
            let left: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM flext_sagas WHERE state IN ('running', 'compensating') AND owner LIKE ?1 || '/%'",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .unwrap();
            left_in_flight += left;
        }
        workers[victim] = worker();
    }
    for (_, mut child) in workers {
        assert!(
            child.wait().unwrap().success(),
            "a worker not killed failed"
        );
    }
    drain(&binary, &db);
    let ledger = verify(&db);
    println!(
        "two-worker kill runs: {rounds} ({killed} killed mid-run; {left_in_flight} sagas they left in flight, finished by the other workers), seed {seed}: {} sagas, {} completed, {} compensated",
        ledger.sagas, ledger.completed, ledger.compensated
    );
    assert!(
        killed > rounds / 2,
        "most rounds killed a worker mid-flight"
    );
    std::fs::remove_dir_all(&dir).ok();
}
