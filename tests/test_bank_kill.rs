//! Kills the `bank_account` example with SIGKILL at random moments while it sends
//! commands that append events (with their outbox rows), delivers the outbox (which
//! starts `Review` sagas from large withdrawals) and feeds the `balances` projection,
//! all on one SQLite database; restarts it each time; and checks, after a last run that
//! settles everything:
//!
//! - every event has its outbox row, and every row was delivered;
//! - the projection's checkpoint is the last event, and each account's projected balance
//!   and event count equal what its events say: no event applied twice or skipped;
//! - each large withdrawal started exactly one `Review` saga (the id derived from the
//!   event's), completed, with one review row;
//! - nothing is visible without the rest of its transaction (an event without its
//!   outbox row, a review without its saga).
//!
//! `FLEXT_BANK_KILL_RUNS` sets the number of runs (default 200); `FLEXT_KILL_SEED`
//! replays one.

#![cfg(all(feature = "sqlite", unix))]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[path = "common/kill.rs"]
mod kill;

use kill::{Rng, env_count, seed};

#[test]
fn sigkill_while_appending_delivering_and_projecting_loses_nothing_and_repeats_nothing() {
    let runs = env_count("FLEXT_BANK_KILL_RUNS", 200);
    let seed = seed();
    let mut rng = Rng(seed);
    let binary = kill::example("bank_account");
    let dir = std::env::temp_dir().join(format!("flext-bank-kill-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("bank.db");

    let mut killed = 0;
    for run in 0..runs {
        let mut child = Command::new(&binary)
            .args([
                "--db",
                db.to_str().unwrap(),
                "--lines",
                &(run * 3).to_string(),
                "3",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example starts");
        // Up to 10 progress lines per run: settled, then three per command.
        let kill_after = rng.below(11);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        let mut finished = true;
        while let Some(Ok(_)) = lines.next() {
            if seen == kill_after {
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
    let out = Command::new(&binary)
        .args(["--db", db.to_str().unwrap(), "--drain"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let conn = rusqlite::Connection::open(&db).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let events = one("SELECT COUNT(*) FROM flext_events");
    assert!(events > 0);
    assert_eq!(
        one("SELECT COUNT(*) FROM flext_outbox"),
        events,
        "an outbox row per event"
    );
    assert_eq!(
        one(
            "SELECT COUNT(*) FROM flext_events e LEFT JOIN flext_outbox o ON o.position = e.position WHERE o.position IS NULL"
        ),
        0,
        "no event without its outbox row"
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM flext_outbox WHERE delivered_ms IS NULL"),
        0,
        "every row delivered"
    );
    assert_eq!(
        one("SELECT position FROM flext_checkpoints WHERE name = 'balances'"),
        one("SELECT MAX(position) FROM flext_events"),
        "the projection reached the last event"
    );

    // Each account as its events say, against the projection.
    let mut stmt = conn
        .prepare("SELECT aggregate_id, name, payload FROM flext_events ORDER BY position")
        .unwrap();
    let mut truth: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut large = Vec::new();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap();
    let mut ids = conn
        .prepare("SELECT event_id FROM flext_events ORDER BY position")
        .unwrap();
    let event_ids: Vec<String> = ids
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (row, event_id) in rows.zip(&event_ids) {
        let (account, name, payload) = row.unwrap();
        let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let entry = truth.entry(account).or_default();
        entry.1 += 1;
        match name.as_str() {
            "account.deposited" => entry.0 += payload["cents"].as_i64().unwrap(),
            "account.withdrawn" => {
                let cents = payload["cents"].as_i64().unwrap();
                entry.0 -= cents;
                if cents >= 40_000 {
                    large.push(event_id.clone());
                }
            }
            _ => {}
        }
    }
    let mut stmt = conn
        .prepare("SELECT account, balance_cents, events FROM balances")
        .unwrap();
    let projected: BTreeMap<String, (i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(projected, truth, "each event projected once, none skipped");

    // One completed Review saga per large withdrawal, under the id its event gives.
    let reviews = one("SELECT COUNT(*) FROM flext_sagas WHERE name = 'Review'");
    assert_eq!(
        reviews,
        large.len() as i64,
        "one review saga per large withdrawal"
    );
    for event_id in &large {
        let id = flext::saga::saga_id_for_event("Review", event_id.parse().unwrap());
        let state: String = conn
            .query_row(
                "SELECT state FROM flext_sagas WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .unwrap_or_else(|_| panic!("no review saga for event {event_id}"));
        assert_eq!(state, "completed");
    }
    let review_rows = if large.is_empty() {
        0
    } else {
        one("SELECT COUNT(*) FROM reviews")
    };
    assert_eq!(review_rows, large.len() as i64, "one review row per saga");
    assert_eq!(
        one("SELECT COUNT(*) FROM flext_sagas WHERE state NOT IN ('completed')"),
        0,
        "no saga left in flight or stuck"
    );
    println!(
        "bank kill runs: {runs} ({killed} killed mid-run), seed {seed}: {events} events, {} accounts, {} review sagas",
        truth.len(),
        large.len()
    );
    assert!(killed > runs / 2, "most runs were killed mid-flight");
    std::fs::remove_dir_all(&dir).ok();
}
