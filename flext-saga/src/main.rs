//! `flext-saga`: the operator's tool over a flext saga log, in a SQLite file or a
//! PostgreSQL database.
//!
//! ```text
//! flext-saga --db sagas.db list [--state stuck] [--name FulfilOrder] [--older-than 1h] [--limit 20]
//! flext-saga --db postgres://ops@db/orders show 3f2a91c0
//! flext-saga --db sagas.db resume ID --reason "the carrier is back"
//! flext-saga --db sagas.db abort ID --reason "customer cancelled" [--past-pivot]
//! flext-saga --db sagas.db resolve ID --reason "refunded by hand, ticket 4411"
//! ```
//!
//! `list` and `show` open a SQLite log read-only; no command creates flext's tables in a
//! file or database that has none (the wrong file is refused, named). An id may be
//! shortened to any unique prefix. `list` shows where each stuck saga stuck and why.
//! `abort` of a saga past its pivot is refused, naming the steps that would stay done,
//! unless `--past-pivot` says the operator knows.
//!
//! Every command prints for people by default and JSON with `--json`. `resume`, `abort`
//! and `resolve` are recorded in the log as transitions with the acting principal
//! (`--principal`, or `$USER`) and the reason. This tool does not link your saga types,
//! so it does not run steps: a resumed or aborted saga is left with an expired lease, and
//! the next recovery pass of one of your workers (`SagaRunner::spawn_recovery`) carries
//! it out. `resolve` finishes the saga at once.
//!
//! Exit status: 0 on success (also when the reader of the output went away, as with
//! `| head`); 1 when the log refuses the command (the saga is finished, or a runner
//! holds it under a live lease, ...), with the reason on stderr; 2 for a bad command
//! line or a file or database that holds no saga log.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
mod text;

use text::{list_text, queues_text, show_text};

use flext_runtime::input::echo;
use flext_runtime::operator::Operations;
use flext_runtime::saga::{
    Intervention, OperatorAction, SagaFilter, SagaLog, SagaState, SagaSummary, SqliteLog,
};

#[derive(Parser)]
#[command(
    name = "flext-saga",
    version,
    about = "List, show, resume, abort and resolve flext sagas in a SQLite or PostgreSQL saga log."
)]
struct Cli {
    /// The saga log: the SQLite file your workers open with `SqliteLog::open`, or the
    /// `postgres://` URL of the database your workers' `PgDatabase` connects to.
    #[arg(long, env = "FLEXT_SAGA_DB", global = true)]
    db: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List sagas, oldest first.
    List {
        /// Only sagas in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        /// Only sagas of this type (the `#[saga]` struct's name).
        #[arg(long)]
        name: Option<String>,
        /// Only sagas created at least this long ago: `90s`, `15m`, `2h`, `3d`.
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one saga: its input, state, owner and every transition.
    Show {
        /// The saga's id, or a unique prefix of it.
        id: String,
    },
    /// Where every queue stands: how many sagas wait, how many run, and the oldest
    /// waiting one's age.
    Queues,
    /// Send a stuck saga back to the step or compensation that stuck; a worker's next
    /// recovery pass runs it.
    Resume(Action),
    /// Compensate what a stuck saga (or one whose runner died) can compensate; a
    /// worker's next recovery pass runs the compensations.
    Abort(Action),
    /// Mark a stuck saga (or one whose runner died) resolved by hand: nothing more runs.
    Resolve(Action),
}

#[derive(clap::Args)]
struct Action {
    /// The saga's id, or a unique prefix of it.
    id: String,
    /// For `abort` of a saga past its pivot: go ahead, knowing that the pivot and the
    /// steps after it stay done.
    #[arg(long)]
    past_pivot: bool,
    /// Why, for whoever reads the saga's history later.
    #[arg(long)]
    reason: String,
    /// Who acts (default: `$USER`).
    #[arg(long, env = "USER")]
    principal: Option<String>,
}

/// A saga state, as the command line spells it.
#[derive(Clone, Copy, ValueEnum)]
enum State {
    Running,
    Compensating,
    Completed,
    Compensated,
    Stuck,
    Resolved,
}

impl From<State> for SagaState {
    fn from(s: State) -> Self {
        match s {
            State::Running => SagaState::Running,
            State::Compensating => SagaState::Compensating,
            State::Completed => SagaState::Completed,
            State::Compensated => SagaState::Compensated,
            State::Stuck => SagaState::Stuck,
            State::Resolved => SagaState::Resolved,
        }
    }
}

/// `90s`, `15m`, `2h`, `3d`, or a number of seconds.
fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "`{}` is not an age: give a number and a unit, such as 90s, 15m, 2h or 3d",
            echo(text)
        )
    })?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!("unknown unit `{}`: use s, m, h or d", echo(other)));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

/// Prints `text` and a newline; a reader that went away (`| head`) ends the tool
/// quietly, with success.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flext-saga: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(db) = cli.db.clone() else {
        eprintln!(
            "flext-saga: no saga log given: pass --db PATH (SQLite) or --db postgres://... , or set FLEXT_SAGA_DB"
        );
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flext-saga: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli, &db)) {
        Ok(text) => emit(&text),
        Err(e) => {
            if cli.json {
                let _ = emit(
                    &serde_json::json!({ "error": { "code": e.code(), "message": e.message() } })
                        .to_string(),
                );
            }
            eprintln!("flext-saga: {e}");
            if e.code() == flext_runtime::codes::SAGA_NO_LOG {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The log `db` names: a PostgreSQL URL, or a SQLite file (read-only for `list` and
/// `show`). Neither is created, nor given flext's tables.
async fn open(db: &str, read_only: bool) -> flext_runtime::Result<Arc<dyn SagaLog>> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        let pg = flext_runtime::postgres::PgDatabase::connect_existing(db).await?;
        return Ok(Arc::new(pg.saga_log()));
    }
    let path = std::path::Path::new(db);
    let log = if read_only {
        SqliteLog::open_read_only(path)?
    } else {
        SqliteLog::open_existing(path)?
    };
    Ok(Arc::new(log))
}

async fn run(cli: &Cli, db: &str) -> flext_runtime::Result<String> {
    let read_only = matches!(
        cli.command,
        Command::List { .. } | Command::Show { .. } | Command::Queues
    );
    // The same operator views as the web console (`flext::console`): what an action does
    // and refuses is decided in one place. Whoever runs this tool reads the database
    // itself, so payloads are shown.
    let ops = Operations::from_log(open(db, read_only).await?).show_payloads(true);
    let json = |value: serde_json::Value| {
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    };
    match &cli.command {
        Command::List {
            state,
            name,
            older_than,
            limit,
        } => {
            let mut filter = SagaFilter {
                state: state.map(SagaState::from),
                name: name.clone(),
                ..SagaFilter::default()
            };
            if let Some(age) = older_than {
                filter = filter.older_than(*age);
            }
            // Page by page, as the console does, up to the limit.
            let mut sagas: Vec<SagaSummary> = Vec::new();
            loop {
                let want = limit.map_or(flext_runtime::operator::MAX_PAGE, |l| {
                    l.saturating_sub(sagas.len())
                        .min(flext_runtime::operator::MAX_PAGE)
                });
                if want == 0 {
                    break;
                }
                let page = ops
                    .sagas(&filter.clone().offset(sagas.len()).limit(want))
                    .await?;
                sagas.extend(page.sagas);
                if !page.more {
                    break;
                }
            }
            Ok(if cli.json {
                json(serde_json::to_value(&sagas).unwrap_or_default())
            } else {
                list_text(&sagas)
            })
        }
        Command::Show { id } => {
            let detail = ops.saga(id).await?;
            Ok(if cli.json {
                json(serde_json::to_value(&detail).unwrap_or_default())
            } else {
                show_text(&detail)
            })
        }
        Command::Queues => {
            let queues = ops.queues().await?;
            Ok(if cli.json {
                json(serde_json::to_value(&queues).unwrap_or_default())
            } else {
                queues_text(&queues, flext_runtime::saga::now_ms())
            })
        }
        Command::Resume(a) | Command::Abort(a) | Command::Resolve(a) => {
            let action = match &cli.command {
                Command::Resume(_) => OperatorAction::Resume,
                Command::Abort(_) => OperatorAction::Abort,
                _ => OperatorAction::Resolve,
            };
            let Some(principal) = a.principal.clone().filter(|p| !p.trim().is_empty()) else {
                return Err(flext_runtime::Error::validation(
                    flext_runtime::codes::SAGA_OPERATOR_INPUT,
                    "say who acts: pass --principal NAME (it defaults to $USER, which is not set)",
                ));
            };
            let mut intervention = Intervention::new(action, principal, a.reason.clone())?;
            if a.past_pivot {
                intervention = intervention.past_pivot();
            }
            let done = ops.intervene(&a.id, &intervention).await?;
            Ok(if cli.json {
                json(serde_json::to_value(&done).unwrap_or_default())
            } else {
                format!(
                    "{} {}: recorded by {}; the saga is {} and {}",
                    action,
                    done.saga.id,
                    echo(&done.principal),
                    done.saga.state,
                    done.next
                )
            })
        }
    }
}
