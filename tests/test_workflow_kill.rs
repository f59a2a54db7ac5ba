//! Two workers of the `dispatch` example (durable workflows with two branches in flight
//! at once) on one SQLite file, one of them killed with SIGKILL at a random moment each
//! round and replaced; then every run is checked: none in flight or stuck, each node's
//! effect applied once (and undone once when its run compensated), each node completed
//! and compensated at most once in the log, compensations in the reverse of the
//! completion order.
//!
//! `FLEXT_WORKFLOW_KILL_ROUNDS` sets the rounds (default 200); `FLEXT_KILL_SEED`
//! replays a run.

#![cfg(all(feature = "sqlite", unix))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "common/kill.rs"]
mod kill;

use kill::{Rng, env_count, kill_after, seed};

fn drain(binary: &PathBuf, db: &Path) {
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

struct Verified {
    runs: usize,
    completed: usize,
    compensated: usize,
    violations: usize,
}

/// The properties, per run; counts the violations and prints each.
fn verify(db: &Path) -> Verified {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut runs = conn.prepare("SELECT id, state FROM flext_sagas").unwrap();
    let runs: Vec<(String, String)> = runs
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut v = Verified {
        runs: runs.len(),
        completed: 0,
        compensated: 0,
        violations: 0,
    };
    let mut violation = |what: String| {
        println!("violation: {what}");
        v.violations += 1;
    };
    for (id, state) in &runs {
        let mut effects = conn
            .prepare("SELECT node, undone FROM effects WHERE key LIKE ?1 || ':%' ORDER BY node")
            .unwrap();
        let effects: BTreeMap<String, i64> = effects
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut bodies = conn
            .prepare("SELECT body FROM flext_saga_transitions WHERE saga_id = ?1 ORDER BY seq")
            .unwrap();
        let transitions: Vec<(String, String)> = bodies
            .query_map([id], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|body| {
                let t: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
                (
                    t["kind"].as_str().unwrap_or("?").to_owned(),
                    t["node"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        let of = |kind: &str| -> Vec<String> {
            transitions
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, n)| n.clone())
                .collect()
        };
        let completed = of("node_completed");
        let compensations = of("node_compensated");
        for (what, nodes) in [("completed", &completed), ("compensated", &compensations)] {
            let mut seen = std::collections::BTreeSet::new();
            for n in nodes {
                if !seen.insert(n) {
                    violation(format!("run {id}: {n} {what} twice"));
                }
            }
        }
        match state.as_str() {
            "completed" => {
                v.completed += 1;
                let applied: Vec<&str> = effects.keys().map(String::as_str).collect();
                if applied != ["label", "pack", "pick", "ship"] {
                    violation(format!("run {id} completed with effects {effects:?}"));
                }
                if effects.values().any(|u| *u != 0) {
                    violation(format!(
                        "run {id} completed with an effect undone: {effects:?}"
                    ));
                }
            }
            "compensated" => {
                v.compensated += 1;
                if effects.values().any(|u| *u != 1) {
                    violation(format!(
                        "run {id}: an applied effect not undone: {effects:?}"
                    ));
                }
                if effects.contains_key("ship") {
                    violation(format!(
                        "run {id}: ship took effect and the run compensated"
                    ));
                }
                // Compensations: the completed compensatable nodes, last completed first.
                let expected: Vec<String> = completed
                    .iter()
                    .rev()
                    .filter(|n| ["pick", "label", "pack"].contains(&n.as_str()))
                    .cloned()
                    .collect();
                if compensations != expected {
                    violation(format!(
                        "run {id}: compensated {compensations:?}, completed {completed:?}"
                    ));
                }
            }
            other => violation(format!("run {id} ended {other}")),
        }
    }
    let orphans: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM effects WHERE substr(key, 1, 36) NOT IN (SELECT id FROM flext_sagas)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if orphans > 0 {
        println!("violation: {orphans} effects without their run");
        v.violations += orphans as usize;
    }
    v
}

#[test]
fn two_workers_running_durable_workflows_with_either_killed_lose_nothing() {
    let rounds = env_count("FLEXT_WORKFLOW_KILL_ROUNDS", 200);
    let seed = seed();
    let mut rng = Rng(seed);
    let binary = kill::example("dispatch");
    let dir = std::env::temp_dir().join(format!("flext-workflow-kill-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("dispatch.db");
    const ORDERS: u64 = 8;

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
        child
    };
    let mut workers = [worker(), worker()];
    let mut killed = 0;
    for _ in 0..rounds {
        let victim = rng.below(2) as usize;
        if kill_after(&mut workers[victim], rng.below(ORDERS * 5)) {
            killed += 1;
        }
        workers[victim] = worker();
    }
    for mut child in workers {
        assert!(
            child.wait().unwrap().success(),
            "a worker not killed failed"
        );
    }
    drain(&binary, &db);
    let v = verify(&db);
    println!(
        "workflow kill rounds: {rounds} ({killed} killed mid-run), seed {seed}: {} runs, {} completed, {} compensated, {} violations",
        v.runs, v.completed, v.compensated, v.violations
    );
    assert_eq!(v.violations, 0);
    assert!(
        killed > rounds / 2,
        "most rounds killed a worker mid-flight"
    );
    assert!(v.completed > 0 && v.compensated > 0);
    std::fs::remove_dir_all(&dir).ok();
}
