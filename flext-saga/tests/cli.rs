//! `flext-saga` as an operator uses it, on a log a runner wrote: list, show, resume
//! (carried out by the worker's next recovery pass), resolve, and what it refuses.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flext::prelude::*;
use flext::saga::{SagaRunner, SagaState, SqliteLog};
use serde::{Deserialize, Serialize};

mod common;
use common::{Dir, stderr, stdout, tool};

#[derive(Default)]
struct Carrier {
    down: AtomicBool,
}

#[derive(Serialize, Deserialize)]
struct Ship {
    parcel: u32,
}

#[saga]
impl Ship {
    #[saga_step(pivot)]
    async fn pay(&self) -> Result<u64> {
        Ok(u64::from(self.parcel) * 100)
    }

    #[saga_step(retries = 1, backoff_ms = 0)]
    async fn label(&self, paid: &u64, carrier: State<Carrier>) -> Result<String> {
        if carrier.down.load(Ordering::SeqCst) {
            return Err(Error::infrastructure(
                "carrier.down",
                "the carrier's API answers 503",
            ));
        }
        Ok(format!("label for {paid}"))
    }
}

fn runner(db: &Path, carrier: &Arc<Carrier>) -> SagaRunner {
    SagaRunner::builder(SqliteLog::open(db).unwrap())
        .owner("shipping-worker")
        .shared_state(carrier.clone())
        .build()
}

#[tokio::test]
async fn an_operator_lists_shows_and_resumes_a_stuck_saga() {
    let dir = Dir::new();
    let db = dir.db();
    let carrier = Arc::new(Carrier::default());
    let done = runner(&db, &carrier)
        .run(Ship { parcel: 1 }, &Context::new())
        .await
        .unwrap();
    carrier.down.store(true, Ordering::SeqCst);
    let stuck = runner(&db, &carrier)
        .run(Ship { parcel: 2 }, &Context::new())
        .await
        .unwrap();
    assert_eq!(stuck.state(), SagaState::Stuck);
    let id = stuck.saga_id().to_string();

    let list = tool(&db, &["list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    assert!(text.starts_with("ID"), "{text}");
    assert!(
        text.contains(&id) && text.contains(&done.saga_id().to_string()),
        "{text}"
    );
    assert!(text.contains("2 saga(s)"), "{text}");
    // Where the stuck one stuck, and why, on its line.
    let line = text.lines().find(|l| l.contains(&id)).unwrap();
    assert!(
        line.contains("label: carrier.down the carrier's API answers 503"),
        "{line}"
    );
    // Listing writes nothing to the file.
    let before = std::fs::read(&db).unwrap();
    tool(&db, &["list", "--state", "stuck"]);
    assert_eq!(std::fs::read(&db).unwrap(), before);

    let stuck_only = tool(&db, &["list", "--state", "stuck", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&stuck_only.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "stuck");
    let none = tool(&db, &["list", "--state", "running", "--name", "Ship"]);
    assert_eq!(stdout(&none).trim(), "no sagas match");
    let old = tool(&db, &["list", "--older-than", "1d"]);
    assert_eq!(stdout(&old).trim(), "no sagas match");

    // Any unique prefix of the id will do.
    let show = tool(&db, &["show", &id[..8]]);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = stdout(&show);
    for expected in [
        "name        Ship",
        "state       stuck",
        "input       {\"parcel\":2}",
        "step `pay` completed (1 attempt)",
        "STUCK at `label` (2 attempts): carrier.down the carrier's API answers 503",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }

    // Resumed by the tool, carried out by the worker's next recovery pass.
    let resume = tool(
        &db,
        &[
            "resume",
            &id,
            "--principal",
            "alice",
            "--reason",
            "carrier back up",
        ],
    );
    assert!(resume.status.success(), "{}", stderr(&resume));
    assert!(
        stdout(&resume).contains("recorded by alice; the saga is running"),
        "{}",
        stdout(&resume)
    );
    carrier.down.store(false, Ordering::SeqCst);
    let report = runner(&db, &carrier).recover().await.unwrap();
    assert_eq!(report.completed(), 1, "{report:?}");

    let show = tool(&db, &["show", &id, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["summary"]["state"], "completed");
    let kinds: Vec<&str> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["step_completed", "stuck", "operator", "step_completed"]
    );
    assert_eq!(shown["timeline"][2]["principal"], "alice");
    assert_eq!(shown["timeline"][2]["reason"], "carrier back up");

    // A finished saga cannot be resolved: exit 1, the reason on stderr, nothing written.
    let refused = tool(
        &db,
        &["resolve", &id, "--principal", "bob", "--reason", "x"],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("is completed"),
        "{}",
        stderr(&refused)
    );
    let again = tool(&db, &["show", &id, "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["timeline"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn resolve_finishes_a_stuck_saga_at_once() {
    let dir = Dir::new();
    let db = dir.db();
    let carrier = Arc::new(Carrier::default());
    carrier.down.store(true, Ordering::SeqCst);
    let stuck = runner(&db, &carrier)
        .run(Ship { parcel: 3 }, &Context::new())
        .await
        .unwrap();
    let id = stuck.saga_id().to_string();
    let out = tool(
        &db,
        &[
            "resolve",
            &id,
            "--principal",
            "carol",
            "--reason",
            "label printed by hand",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["saga"]["state"], "resolved");
    assert_eq!(answer["action"], "resolve");
    assert_eq!(answer["principal"], "carol");
    let show = stdout(&tool(&db, &["show", &id]));
    assert!(
        show.contains("resolve by carol: label printed by hand"),
        "{show}"
    );
    assert!(runner(&db, &carrier).recover().await.unwrap().is_empty());
}

#[tokio::test]
async fn abort_past_the_pivot_needs_the_flag_and_names_what_stays_done() {
    let dir = Dir::new();
    let db = dir.db();
    let carrier = Arc::new(Carrier::default());
    carrier.down.store(true, Ordering::SeqCst);
    let stuck = runner(&db, &carrier)
        .run(Ship { parcel: 5 }, &Context::new())
        .await
        .unwrap();
    let id = stuck.saga_id().to_string();
    let args = ["abort", &id, "--principal", "dave", "--reason", "cancelled"];
    let refused = tool(&db, &args);
    assert_eq!(refused.status.code(), Some(1));
    let why = stderr(&refused);
    assert!(
        why.contains("past its pivot") && why.contains("`pay`") && why.contains("--past-pivot"),
        "{why}"
    );
    let history = tool(&db, &["show", &id, "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(
        history["timeline"].as_array().unwrap().len(),
        2,
        "nothing written"
    );

    let forced = tool(&db, &[&args[..], &["--past-pivot"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stdout(&forced).contains("the saga is compensating"),
        "{}",
        stdout(&forced)
    );
}

#[test]
fn the_wrong_file_is_refused_and_left_as_it_was() {
    let dir = Dir::new();
    let app = dir.0.join("app.db");
    let conn = rusqlite::Connection::open(&app).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&app).unwrap();
    for args in [
        &["list"][..],
        &[
            "resolve",
            &Uuid::new_v4().to_string(),
            "--principal",
            "e",
            "--reason",
            "x",
        ],
    ] {
        let out = tool(&app, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let why = stderr(&out);
        assert!(
            why.contains("app.db") && why.contains("holds no flext saga log"),
            "{why}"
        );
    }
    assert_eq!(std::fs::read(&app).unwrap(), before, "no table was created");
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_tool_quietly() {
    let dir = Dir::new();
    let db = dir.db();
    let carrier = Arc::new(Carrier::default());
    let runner = runner(&db, &carrier);
    for parcel in 0..300 {
        runner.run(Ship { parcel }, &Context::new()).await.unwrap();
    }
    // `flext-saga --json list | head -c 0`: the reader is gone before the first write.
    let mut child = Command::new(env!("CARGO_BIN_EXE_flext-saga"))
        .arg("--db")
        .arg(&db)
        .args(["--json", "list"])
        .env_remove("FLEXT_SAGA_DB")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn a_bad_command_line_says_what_to_give() {
    let dir = Dir::new();
    let missing = tool(&dir.db(), &["list"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("holds no flext saga log"),
        "{}",
        stderr(&missing)
    );
    assert!(!dir.db().exists(), "nothing created");

    drop(SqliteLog::open(dir.db()).unwrap());
    let age = tool(&dir.db(), &["list", "--older-than", "3 weeks"]);
    assert_eq!(age.status.code(), Some(2));
    assert!(
        stderr(&age).contains("use s, m, h or d"),
        "{}",
        stderr(&age)
    );
    let id = tool(&dir.db(), &["show", "not-a-uuid"]);
    assert_eq!(id.status.code(), Some(1));
    assert!(stderr(&id).contains("is not a saga id"), "{}", stderr(&id));
    let unknown = tool(&dir.db(), &["show", &Uuid::new_v4().to_string()]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no saga"), "{}", stderr(&unknown));
    let no_reason = tool(&dir.db(), &["resolve", &Uuid::new_v4().to_string()]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(
        stderr(&no_reason).contains("--reason"),
        "{}",
        stderr(&no_reason)
    );
}
