//! Kills the `order_fulfillment` example with SIGKILL at random moments while it runs
//! sagas against a SQLite file, restarts it, and checks that every effect in the durable
//! ledger is applied exactly once, or applied and undone exactly once, and that no saga
//! is left in flight.
//!
//! `FLEXT_KILL_RUNS` sets the number of kills (default 200); a longer soak:
//! `FLEXT_KILL_RUNS=1000 cargo test --release --test test_saga_kill -- --nocapture`.
//! `FLEXT_KILL_SEED` replays a run.

#![cfg(feature = "sqlite")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A small xorshift generator: the test needs varied kill points, not cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn example_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", "order_fulfillment"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the example builds");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target
        .join("debug")
        .join("examples")
        .join("order_fulfillment")
}

#[test]
#[cfg(unix)]
fn sigkill_at_random_moments_loses_nothing() {
    let runs: u64 = std::env::var("FLEXT_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("FLEXT_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
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
        let lines_before_kill = rng.below(14);
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout).lines();
        let mut seen = 0;
        let mut finished = true;
        while let Some(Ok(_)) = reader.next() {
            if seen == lines_before_kill {
                finished = false;
                break;
            }
            seen += 1;
        }
        if !finished {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }

    // A last run, not killed, recovers whatever the last kill left.
    let out = Command::new(&binary)
        .args(["--db", db.to_str().unwrap(), "--orders", "0", "--drain"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let in_flight: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM flext_sagas WHERE state IN ('running', 'compensating')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(in_flight, 0, "no saga is left in flight");
    let stuck: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM flext_sagas WHERE state = 'stuck'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stuck, 0);

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
            }
            other => panic!("saga {id} ended {other}"),
        }
    }
    // Orders whose saga was never created (killed before the first write) have no
    // effects at all: every effect belongs to a logged saga.
    let orphans: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM effects WHERE substr(key, 1, 36) NOT IN (SELECT id FROM flext_sagas)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "no effect without its saga");
    println!(
        "kill runs: {runs} ({killed} killed mid-run), seed {seed}: {} sagas, {completed} completed, {compensated} compensated",
        sagas.len()
    );
    assert!(killed > runs / 2, "most runs were killed mid-flight");
    std::fs::remove_dir_all(&dir).ok();
}
