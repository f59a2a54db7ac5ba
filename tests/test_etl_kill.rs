//! The durable ETL example killed during its load: started again, it resumes from the
//! saga log without extracting, validating or transforming again, loads once, and
//! reports the same figures; started a third time, it prints what the log recorded.

#![cfg(all(feature = "sqlite", unix))]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[path = "common/kill.rs"]
#[allow(dead_code)] // the seeded generator serves the random soaks
mod kill;

/// Each node's transitions in the log, by kind: `started extract`, `completed load`, ...
fn node_transitions(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT body FROM flext_saga_transitions ORDER BY saga_id, seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|body| {
            let t: serde_json::Value = serde_json::from_str(&body.unwrap()).unwrap();
            let kind = t["kind"]
                .as_str()
                .unwrap()
                .trim_start_matches("node_")
                .to_owned();
            format!("{kind} {}", t["node"].as_str().unwrap_or("?"))
        })
        .collect()
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or(-1)
}

#[test]
fn a_kill_during_the_load_resumes_from_the_log_without_extracting_or_validating_again() {
    let binary = kill::example("etl_pipeline");
    let dir = std::env::temp_dir().join(format!("flext-etl-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("strikes.db");
    let db_arg = db.to_str().unwrap();

    // 1. Killed with its rows inserted and not committed.
    let mut child = Command::new(&binary)
        .args(["--db", db_arg, "--pause-in-load-ms", "60000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts");
    let mut first = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let inside_load = line == "load: rows inserted, not committed";
        first.push(line);
        if inside_load {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        first
            .iter()
            .any(|l| l == "load: rows inserted, not committed"),
        "the first run reached the load: {first:?}"
    );
    assert!(first.iter().any(|l| l.starts_with("extract: reading")));
    assert!(first.iter().any(|l| l.starts_with("validated 10000 rows")));
    let logged = node_transitions(&db);
    for node in ["extract", "validate", "transform"] {
        assert!(logged.contains(&format!("completed {node}")), "{logged:?}");
    }
    assert!(logged.contains(&"started load".to_owned()), "{logged:?}");
    assert!(!logged.contains(&"completed load".to_owned()), "{logged:?}");
    assert!(
        count(&db, "SELECT COUNT(*) FROM etl_loads") <= 0,
        "the killed load committed nothing"
    );

    // 2. Started again: resumed from the log.
    let out = Command::new(&binary)
        .args(["--db", db_arg])
        .output()
        .unwrap();
    let second = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{second}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        second.contains(": completed"),
        "the run was resumed: {second}"
    );
    assert!(
        second.lines().any(|l| l.starts_with("resumed run ")),
        "{second}"
    );
    for not_again in ["extract: reading", "validated 10000 rows"] {
        assert!(
            !second.contains(not_again),
            "`{not_again}` ran again:\n{second}"
        );
    }
    assert!(second.contains("load: inserting 9977 rows"), "{second}");
    assert!(second.contains("loaded 9977 rows into SQLite"), "{second}");
    assert!(second.contains("rejected rows: 23"), "{second}");
    assert!(second.contains("Canada goose"), "{second}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM strikes"), 9977);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM etl_loads"), 1);
    let logged = node_transitions(&db);
    for node in ["extract", "validate", "transform", "load", "aggregate"] {
        let completed = logged
            .iter()
            .filter(|t| **t == format!("completed {node}"))
            .count();
        assert_eq!(completed, 1, "{node} completed once: {logged:?}");
    }
    for node in ["extract", "validate", "transform"] {
        let started = logged
            .iter()
            .filter(|t| **t == format!("started {node}"))
            .count();
        assert_eq!(started, 1, "{node} started once: {logged:?}");
    }

    // 3. A third start runs nothing and prints the recorded run.
    let out = Command::new(&binary)
        .args(["--db", db_arg])
        .output()
        .unwrap();
    let third = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{third}");
    assert!(!third.contains("load: inserting"), "{third}");
    assert!(
        !third.lines().any(|l| l.starts_with("resumed run ")),
        "{third}"
    );
    assert!(third.contains("loaded 9977 rows into SQLite"), "{third}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM strikes"), 9977);
    println!(
        "etl kill: {} transitions in the log; the resumed run loaded 9977 rows once",
        node_transitions(&db).len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
