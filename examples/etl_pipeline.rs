//! An ETL pipeline on real data: the FAA Wildlife Strike Database sample shipped in
//! `examples/data/birdstrikes.csv` (10,000 reports; a U.S. Government work, see
//! `birdstrikes.SOURCE.md`), the source documents' ETL scenario.
//!
//! A `#[workflow]` ties the stages together:
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
//! - **load** writes them into SQLite in one transaction (compensated by dropping the
//!   table should a later required step fail);
//! - **aggregate** sums costs by year and by species in SQL;
//! - **quality_report** is optional and calls a quality service that is down: its
//!   failure is recorded and the run still succeeds.
//!
//! At the end: the rejected rows, counted per reason with the first few of each, the
//! aggregates, each step's status, and the metrics report.
//!
//! ```text
//! cargo run --example etl_pipeline [-- --csv PATH] [--db PATH]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use flext::prelude::*;
use flext::service::{BatchOptions, FailureGroup, MetricsReport, ServiceProcessor};
use flext::workflow::{StepStatus, Workflow};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

// ------------------------------------------------------------------ the data

/// One row of `birdstrikes.csv`, as text: validation decides what it means.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone)]
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

struct Validated {
    strikes: Vec<Strike>,
    rejected: Vec<FailureGroup>,
    rejected_rows: usize,
}

/// What `transform` makes of a strike: what the aggregates need.
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

struct Loaded {
    rows: usize,
}

#[derive(Debug)]
struct Aggregates {
    by_year: Vec<(u16, u64, u64)>,
    top_species: Vec<(String, u64, u64)>,
}

struct Etl {
    csv: PathBuf,
    db: Mutex<rusqlite::Connection>,
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::infrastructure("etl.sqlite", e.to_string())
}

#[workflow(name = "etl")]
impl Etl {
    #[workflow_step]
    async fn extract(&self) -> Result<Vec<RawRow>> {
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

    #[workflow_step(depends_on = [transform], compensate = unload)]
    async fn load(&self, records: &[Record]) -> Result<Loaded> {
        let mut db = self
            .db
            .lock()
            .map_err(|_| Error::internal("etl.db", "poisoned"))?;
        let tx = db.transaction().map_err(db_error)?;
        tx.execute_batch(
            "CREATE TABLE strikes (year INTEGER NOT NULL, month INTEGER NOT NULL,
                species TEXT NOT NULL, phase TEXT NOT NULL, damaged INTEGER NOT NULL,
                cost_dollars INTEGER NOT NULL, speed_knots INTEGER, airport TEXT NOT NULL)",
        )
        .map_err(db_error)?;
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
        tx.commit().map_err(db_error)?;
        Ok(Loaded {
            rows: records.len(),
        })
    }
    async fn unload(&self, loaded: &Loaded) -> Result<()> {
        let db = self
            .db
            .lock()
            .map_err(|_| Error::internal("etl.db", "poisoned"))?;
        db.execute_batch("DROP TABLE IF EXISTS strikes")
            .map_err(db_error)?;
        println!("unloaded {} rows", loaded.rows);
        Ok(())
    }

    #[workflow_step(depends_on = [load])]
    async fn aggregate(&self, loaded: &Loaded) -> Result<Aggregates> {
        let db = self
            .db
            .lock()
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
    let db = match arg("--db") {
        Some(path) => rusqlite::Connection::open(path)?,
        None => rusqlite::Connection::open_in_memory()?,
    };
    let etl = Etl {
        csv,
        db: Mutex::new(db),
    };
    let mut run = etl.run(&Context::new()).await;

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
    Ok(())
}
