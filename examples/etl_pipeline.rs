//! An ETL pipeline on real data: the FAA Wildlife Strike Database sample shipped in
//! `examples/data/birdstrikes.csv` (10,000 reports; a U.S. Government work, see
//! `birdstrikes.SOURCE.md`), the source documents' ETL scenario, run as a durable
//! workflow.
//!
//! A `#[workflow(durable)]` ties the stages together:
//!
//! ```text
//! extract ─▶ validate ─▶ transform ─▶ load ─┬─▶ aggregate
//!                                           └─▶ quality_report (optional; made to fail)
//! ```
//!
//! - **extract** reads the CSV with the `csv` crate;
//! - **validate** runs a `ServiceProcessor` over every row with `run_batch`: its
//!   `#[business_rule]`s check known flight phases and damage levels and that an airborne
//!   aircraft has a speed (or a blank one), then `process` parses dates and costs that
//!   must be non-negative integers adding up; a progress bar (`indicatif`) follows it;
//! - **transform** turns valid rows into records (year, species, dollars);
//! - **load** writes them into SQLite in one transaction, once per run: it records the
//!   run's idempotency key in the same transaction (compensated by dropping the table
//!   should a later required step fail);
//! - **aggregate** sums costs by year and by species in SQL;
//! - **quality_report** is optional and calls a quality service that is down: its
//!   failure is recorded and the run still succeeds.
//!
//! Every node's start and completion, with its output, is recorded in the saga log (a
//! SQLite file, the same file as the loaded table with `--db`). A process killed during
//! the load resumes from the log when it starts again: extract, validate and transform
//! are not run again (their logged outputs feed the load), and the load runs again
//! under the same idempotency key. `tests/test_etl_kill.rs` kills it there and checks.
//!
//! At the end: the rejected rows, counted per reason with the first few of each, the
//! aggregates, each step's status, and the metrics report.
//!
//! ```text
//! cargo run --example etl_pipeline [-- --csv PATH] [--db PATH]
//! ```
//!
//! Without `--db` the run uses a fresh file in the system's temporary directory. With
//! `--db PATH` the run is named by the CSV and database paths: starting it again after a
//! kill finishes it; starting it again after it finished prints what it recorded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use flext::prelude::*;
use flext::saga::{SagaRunner, SqliteLog};
use flext::service::{BatchOptions, FailureGroup, MetricsReport, ServiceProcessor};
use flext::workflow::StepStatus;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ the data

/// One row of `birdstrikes.csv`, as text: validation decides what it means.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawRow {
    #[serde(rename = "Airport Name")]
    airport: String,
    #[serde(rename = "Effect Amount of damage")]
    damage: String,
    #[serde(rename = "Flight Date")]
    date: String,
    #[serde(rename = "Phase of flight")]
    phase: String,
    #[serde(rename = "Wildlife Species")]
    species: String,
    #[serde(rename = "Cost Other")]
    cost_other: String,
    #[serde(rename = "Cost Repair")]
    cost_repair: String,
    #[serde(rename = "Cost Total $")]
    cost_total: String,
    #[serde(rename = "Speed IAS in knots")]
    speed: String,
}

/// A row that passed validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Strike {
    airport: String,
    year: u16,
    month: u8,
    phase: String,
    damaged: bool,
    species: String,
    cost_total: u64,
    /// `None` when the report left it blank.
    speed_knots: Option<u16>,
}

const PHASES: [&str; 7] = [
    "Approach",
    "Climb",
    "Descent",
    "Take-off run",
    "Landing Roll",
    "Taxi",
    "Parked",
];
const AIRBORNE: [&str; 3] = ["Approach", "Climb", "Descent"];
const DAMAGE: [&str; 5] = ["None", "Minor", "Medium", "Substantial", "Destroyed"];

/// Untrusted text quoted in a message: at most 40 characters, escaped.
fn quoted(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    let ellipsis = if text.chars().count() > 40 { "…" } else { "" };
    format!("{:?}{ellipsis}", short)
}

// ------------------------------------------------------------------ validation

/// Validates one row: a `ServiceProcessor`, run over the file with `run_batch`.
struct ValidateStrike;

impl ValidateStrike {
    fn date(row: &RawRow) -> Result<(u16, u8)> {
        let bad = || {
            Error::validation(
                "strike.date",
                format!("flight date {} is not YYYY-MM-DD", quoted(&row.date)),
            )
        };
        let mut parts = row.date.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (year, month, day): (u16, u8, u8) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        if !(1900..=2100).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day)
        {
            return Err(bad());
        }
        Ok((year, month))
    }

    fn cost(field: &str, text: &str) -> Result<u64> {
        text.trim().parse::<u64>().map_err(|_| {
            Error::validation(
                "strike.cost",
                format!(
                    "{field} {} is not a non-negative whole number",
                    quoted(text)
                ),
            )
        })
    }
}

/// The checks that need no parsing are business rules: they run first, in order, and a
/// row breaking several is reported with every violation. `process` parses the rest.
#[business_rules]
impl ServiceProcessor for ValidateStrike {
    type Request = RawRow;
    type Domain = Strike;
    type Response = Strike;

    fn name(&self) -> &str {
        "etl.validate_strike"
    }

    #[business_rule(code = "strike.phase")]
    fn known_phase(&self, row: &RawRow) -> RuleResult {
        ensure!(
            PHASES.contains(&row.phase.as_str()),
            "unknown phase of flight {}",
            quoted(&row.phase)
        )
    }

    #[business_rule(code = "strike.damage")]
    fn known_damage(&self, row: &RawRow) -> RuleResult {
        ensure!(
            DAMAGE.contains(&row.damage.as_str()),
            "damage level {} is none of {}",
            quoted(&row.damage),
            DAMAGE.join(", ")
        )
    }

    #[business_rule(code = "strike.speed_airborne")]
    fn flying_speed(&self, row: &RawRow) -> RuleResult {
        let airborne = AIRBORNE.contains(&row.phase.as_str());
        ensure!(
            !(airborne && row.speed.trim() == "0"),
            "an aircraft in {} cannot fly at 0 knots (leave it blank when unknown)",
            row.phase
        )
    }

    fn process(&self, row: &RawRow, _: &Context) -> Result<Strike> {
        let (year, month) = Self::date(row)?;
        let other = Self::cost("Cost Other", &row.cost_other)?;
        let repair = Self::cost("Cost Repair", &row.cost_repair)?;
        let total = Self::cost("Cost Total $", &row.cost_total)?;
        if other.checked_add(repair) != Some(total) {
            return Err(Error::validation(
                "strike.cost_sum",
                format!("Cost Other {other} + Cost Repair {repair} is not Cost Total {total}"),
            ));
        }
        let speed_knots = match row.speed.trim() {
            "" => None,
            text => Some(text.parse::<u16>().map_err(|_| {
                Error::validation(
                    "strike.speed",
                    format!("speed {} is not a whole number of knots", quoted(text)),
                )
            })?),
        };
        Ok(Strike {
            airport: row.airport.clone(),
            year,
            month,
            phase: row.phase.clone(),
            damaged: row.damage != "None",
            species: row.species.trim().to_owned(),
            cost_total: total,
            speed_knots,
        })
    }

    fn build(&self, strike: Strike, _: Uuid) -> Strike {
        strike
    }
}

// ------------------------------------------------------------------ the workflow

#[derive(Serialize, Deserialize)]
struct Validated {
    strikes: Vec<Strike>,
    rejected: Vec<FailureGroup>,
    rejected_rows: usize,
}

/// What `transform` makes of a strike: what the aggregates need.
#[derive(Serialize, Deserialize)]
struct Record {
    year: u16,
    month: u8,
    species: String,
    phase: String,
    damaged: bool,
    cost_dollars: u64,
    speed_knots: Option<u16>,
    airport: String,
}

#[derive(Serialize, Deserialize)]
struct Loaded {
    rows: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Aggregates {
    by_year: Vec<(u16, u64, u64)>,
    top_species: Vec<(String, u64, u64)>,
}

/// The workflow's input, recorded in the log: where to read and where to load. The
/// database connection is the runner's state (`State<Warehouse>`).
#[derive(Serialize, Deserialize)]
struct Etl {
    csv: PathBuf,
    db: PathBuf,
}

/// Test hook (`--pause-in-load-ms N`): how long `load` waits, its rows inserted and not
/// committed, so that the crash test's kill lands inside the load. A setting of this
/// process, not of the run: a resumed run does not wait.
static PAUSE_IN_LOAD_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The database the pipeline loads into.
struct Warehouse(Mutex<rusqlite::Connection>);

fn db_error(e: rusqlite::Error) -> Error {
    Error::infrastructure("etl.sqlite", e.to_string())
}

/// Prints a line and flushes it: the crash test reads them to choose its moment.
fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

#[workflow(name = "etl", durable)]
impl Etl {
    #[workflow_step]
    async fn extract(&self) -> Result<Vec<RawRow>> {
        say(&format!("extract: reading {}", self.csv.display()));
        let mut reader = csv::Reader::from_path(&self.csv).map_err(|e| {
            Error::infrastructure(
                "etl.extract",
                format!("cannot open {}: {e}", self.csv.display()),
            )
        })?;
        reader
            .deserialize()
            .enumerate()
            .map(|(i, row)| {
                row.map_err(|e| {
                    Error::validation("etl.csv", format!("record {} is malformed: {e}", i + 1))
                })
            })
            .collect()
    }

    #[workflow_step(depends_on = [extract])]
    async fn validate(&self, rows: &[RawRow]) -> Result<Validated> {
        let bar = ProgressBar::new(rows.len() as u64).with_style(
            ProgressStyle::with_template("validate [{bar:40}] {pos}/{len} rows, {msg}")
                .map_err(|e| Error::internal("etl.progress", e.to_string()))?
                .progress_chars("=> "),
        );
        let shown = bar.clone();
        // Without a terminal (a CI log) indicatif draws nothing: print a line per quarter.
        let plain = bar.is_hidden();
        let quarter = rows.len().div_ceil(4).max(1);
        let options = BatchOptions::default().on_progress(move |p| {
            shown.set_position(p.done as u64);
            if p.done % 500 == 0 || Some(p.done) == p.total {
                shown.set_message(format!("{} rejected", p.failed));
            }
            if plain && (p.done % quarter == 0 || Some(p.done) == p.total) {
                println!(
                    "validate: {}/{} rows, {} rejected",
                    p.done,
                    p.total.unwrap_or(0),
                    p.failed
                );
            }
        });
        let report = ValidateStrike.run_batch(rows.to_vec(), &options);
        bar.finish();
        println!(
            "validated {} rows: {} accepted, {} rejected",
            rows.len(),
            report.succeeded.len(),
            report.failed.len()
        );
        Ok(Validated {
            rejected: report.failures_by_code(3),
            rejected_rows: report.failed.len(),
            strikes: report.succeeded.into_iter().map(|(_, s)| s).collect(),
        })
    }

    #[workflow_step(depends_on = [validate])]
    async fn transform(&self, valid: &Validated) -> Result<Vec<Record>> {
        Ok(valid
            .strikes
            .iter()
            .map(|s| Record {
                year: s.year,
                month: s.month,
                species: s.species.clone(),
                phase: s.phase.clone(),
                damaged: s.damaged,
                cost_dollars: s.cost_total,
                speed_knots: s.speed_knots,
                airport: s.airport.clone(),
            })
            .collect())
    }

    /// Loads the records in one transaction, once per run: the run's idempotency key is
    /// recorded in the same transaction, so a load that committed before a crash is not
    /// loaded twice when the run resumes.
    #[workflow_step(depends_on = [transform], compensate = unload)]
    async fn load(
        &self,
        records: &[Record],
        db: State<Warehouse>,
        ctx: &Context,
    ) -> Result<Loaded> {
        let key = ctx.idempotency_key().unwrap_or("in-memory").to_owned();
        let mut db =
            db.0.lock()
                .map_err(|_| Error::internal("etl.db", "poisoned"))?;
        let tx = db.transaction().map_err(db_error)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS etl_loads (key TEXT PRIMARY KEY, rows INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS strikes (year INTEGER NOT NULL, month INTEGER NOT NULL,
                species TEXT NOT NULL, phase TEXT NOT NULL, damaged INTEGER NOT NULL,
                cost_dollars INTEGER NOT NULL, speed_knots INTEGER, airport TEXT NOT NULL)",
        )
        .map_err(db_error)?;
        let done: Option<i64> = tx
            .query_row("SELECT rows FROM etl_loads WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .ok();
        if let Some(rows) = done {
            say(&format!("load: already loaded under {key}"));
            return Ok(Loaded {
                rows: rows as usize,
            });
        }
        say(&format!("load: inserting {} rows", records.len()));
        {
            let mut insert = tx
                .prepare("INSERT INTO strikes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .map_err(db_error)?;
            for r in records {
                insert
                    .execute(rusqlite::params![
                        r.year,
                        r.month,
                        r.species,
                        r.phase,
                        r.damaged,
                        r.cost_dollars as i64,
                        r.speed_knots,
                        r.airport
                    ])
                    .map_err(db_error)?;
            }
        }
        tx.execute(
            "INSERT INTO etl_loads (key, rows) VALUES (?1, ?2)",
            rusqlite::params![key, records.len() as i64],
        )
        .map_err(db_error)?;
        let pause = PAUSE_IN_LOAD_MS.load(std::sync::atomic::Ordering::Relaxed);
        if pause > 0 {
            say("load: rows inserted, not committed");
            std::thread::sleep(Duration::from_millis(pause));
        }
        tx.commit().map_err(db_error)?;
        Ok(Loaded {
            rows: records.len(),
        })
    }
    async fn unload(&self, loaded: &Loaded, db: State<Warehouse>) -> Result<()> {
        let db =
            db.0.lock()
                .map_err(|_| Error::internal("etl.db", "poisoned"))?;
        db.execute_batch("DROP TABLE IF EXISTS strikes; DELETE FROM etl_loads")
            .map_err(db_error)?;
        println!("unloaded {} rows", loaded.rows);
        Ok(())
    }

    #[workflow_step(depends_on = [load])]
    async fn aggregate(&self, loaded: &Loaded, db: State<Warehouse>) -> Result<Aggregates> {
        let db =
            db.0.lock()
                .map_err(|_| Error::internal("etl.db", "poisoned"))?;
        let rows = |sql: &str| -> Result<Vec<(String, u64, u64)>> {
            let mut stmt = db.prepare(sql).map_err(db_error)?;
            let found = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, rusqlite::types::Value>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db_error)?
                .map(|row| {
                    let (key, n, cost) = row.map_err(db_error)?;
                    let key = match key {
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    };
                    Ok((key, n.max(0) as u64, cost.max(0) as u64))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(found)
        };
        let by_year = rows(
            "SELECT year, COUNT(*), SUM(cost_dollars) FROM strikes GROUP BY year ORDER BY year",
        )?
        .into_iter()
        .map(|(y, n, c)| (y.parse().unwrap_or(0), n, c))
        .collect::<Vec<_>>();
        let top_species = rows(
            "SELECT species, COUNT(*), SUM(cost_dollars) FROM strikes
             GROUP BY species ORDER BY SUM(cost_dollars) DESC, species LIMIT 8",
        )?;
        let counted: u64 = by_year.iter().map(|(_, n, _)| n).sum();
        if counted != loaded.rows as u64 {
            return Err(Error::internal(
                "etl.aggregate",
                format!(
                    "the table holds {counted} rows, {} were loaded",
                    loaded.rows
                ),
            ));
        }
        Ok(Aggregates {
            by_year,
            top_species,
        })
    }

    /// Asks the data-quality service to score the load. That service is down in this
    /// example: the step is optional, so its failure is recorded and the run succeeds.
    #[workflow_step(depends_on = [load], optional, timeout_ms = 2000)]
    async fn quality_report(&self, loaded: &Loaded) -> Result<String> {
        Err(Error::infrastructure(
            "quality.unavailable",
            format!(
                "the data-quality service refused the report on {} rows: connection refused",
                loaded.rows
            ),
        ))
    }
}

// ------------------------------------------------------------------ main

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let csv = arg("--csv").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/birdstrikes.csv"),
        PathBuf::from,
    );
    // Without `--db`, a fresh file of this run's own, removed at the end.
    let scratch = arg("--db")
        .is_none()
        .then(|| std::env::temp_dir().join(format!("flext-etl-{}", Uuid::new_v4())));
    let db = match (&scratch, arg("--db")) {
        (_, Some(path)) => PathBuf::from(path),
        (Some(dir), None) => {
            std::fs::create_dir_all(dir)?;
            dir.join("strikes.db")
        }
        (None, None) => unreachable!("scratch is set when --db is not"),
    };
    let connection = rusqlite::Connection::open(&db)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.execute_batch("PRAGMA journal_mode = WAL")?;
    // The saga log lives in the same file as the loaded table.
    let runner = SagaRunner::builder(SqliteLog::open(&db)?)
        .owner("etl")
        .lease(Duration::from_secs(10))
        .state(Warehouse(Mutex::new(connection)))
        .build();
    PAUSE_IN_LOAD_MS.store(
        arg("--pause-in-load-ms").map_or(Ok(0), |ms| ms.parse())?,
        std::sync::atomic::Ordering::Relaxed,
    );
    // A run a killed process left: taken back at once (the log's lock file proves the
    // process gone) and finished from where its log stops.
    for resumed in runner.recover().await?.sagas {
        match resumed.result {
            Ok(outcome) => say(&format!(
                "resumed run {}: {}",
                resumed.saga_id,
                outcome.state()
            )),
            Err(e) => say(&format!("resuming run {} failed: {e}", resumed.saga_id)),
        }
    }
    // One run per CSV and database: starting it again returns what it recorded.
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("etl:{}:{}", csv.display(), db.display()).as_bytes(),
    );
    let etl = Etl {
        csv,
        db: db.clone(),
    };
    let mut run = runner
        .run_workflow_with_id(id, etl, &Context::new())
        .await?;
    say(&format!("run {id}"));

    println!("\nsteps:");
    for step in run.steps() {
        let took = step.duration.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1e3),
        );
        let status = match &step.status {
            StepStatus::Completed => "completed".to_owned(),
            StepStatus::Failed(e) => format!("failed ({}): {}", e.code(), e.message()),
            other => format!("{other:?}"),
        };
        let name = if step.optional {
            format!("{} (optional)", step.name)
        } else {
            step.name.to_owned()
        };
        println!("  {name:<26} {took:>9}  {status}");
    }
    if !run.is_success() {
        let error = run.error().map(ToString::to_string).unwrap_or_default();
        return Err(format!(
            "the pipeline failed: {error}; compensated {:?}",
            run.compensated()
        )
        .into());
    }

    let validated = run
        .take_output::<Validated>("validate")
        .ok_or("no validation output")?;
    println!("\nrejected rows: {}", validated.rejected_rows);
    for group in &validated.rejected {
        println!("  {:<24} {:>5}", group.code, group.count);
        for (index, message) in &group.examples {
            // Row numbers as a spreadsheet shows them: the header is row 1.
            println!("      row {:>5}: {message}", index + 2);
        }
    }

    let loaded = run.output::<Loaded>("load").ok_or("no load output")?;
    println!("\nloaded {} rows into SQLite", loaded.rows);
    let aggregates = run
        .take_output::<Aggregates>("aggregate")
        .ok_or("no aggregates")?;
    println!("\ncost by year (strikes, dollars):");
    let mut decades: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for (year, n, cost) in &aggregates.by_year {
        println!("  {year}  {n:>5}  {cost:>12}");
        let d = decades.entry(year / 10 * 10).or_default();
        d.0 += n;
        d.1 += cost;
    }
    for (decade, (n, cost)) in decades {
        println!("  {decade}s {n:>5}  {cost:>12}");
    }
    println!("\ncostliest species (strikes, dollars):");
    for (species, n, cost) in &aggregates.top_species {
        println!("  {species:<28} {n:>5}  {cost:>12}");
    }

    println!("\nmetrics:\n{}", MetricsReport::collect());
    drop(runner);
    if let Some(dir) = scratch {
        std::fs::remove_dir_all(dir).ok();
    }
    Ok(())
}
