//! Schedules: a cron pattern that starts a saga at each tick, at most once per tick
//! across any number of processes ([`SagaRunner::spawn_schedule`]).
//!
//! Each tick's saga id is a UUID v5 of the schedule's name and the tick's time, so every
//! process that reaches a tick starts the same id, and the idempotent start
//! ([`SagaRunner::run_with_id`]) keeps one: the log's unique key on the id does the
//! deduplication, with no lock and no leader. The same idea as a Temporal schedule's
//! workflow id with its scheduled time, or DBOS's scheduled workflow ids.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Saga, SagaRunner};
use crate::context::Context;
use crate::error::{Error, Result};

/// The longest schedule name [`Schedule::cron`] takes, in bytes.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 128;

/// What a schedule does about the ticks that passed while no process ran it: the
/// catch-up policy, applied when [`SagaRunner::spawn_schedule`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CatchUp {
    /// Fire only the ticks that come after the schedule starts (the default).
    #[default]
    Skip,
    /// Fire the latest tick that passed, once, when its saga is not in the log.
    Once,
    /// Fire each tick that passed since the last one whose saga is in the log, oldest
    /// first, at most `max` of them (the latest `max`).
    Each {
        /// The most ticks fired on catching up.
        max: u32,
    },
}

/// A cron schedule of sagas: its name, its pattern (UTC), and its catch-up policy.
///
/// Patterns are POSIX cron's five fields (`minute hour day-of-month month
/// day-of-week`, as `0 2 * * *` for 02:00 every night) with an optional sixth field in
/// front for seconds (`*/10 * * * * *`), and the extensions of the croner crate (`L`,
/// `#`, `W`, month and weekday names), evaluated in UTC.
///
/// ```
/// use flext::saga::{CatchUp, Schedule};
/// let nightly = Schedule::cron("reconcile", "0 2 * * *").unwrap().catch_up(CatchUp::Once);
/// // 2026-12-05T00:00:00Z: the next tick is at 02:00.
/// assert_eq!(nightly.next_after(1_796_428_800_000), Some(1_796_436_000_000));
/// assert_eq!(nightly.saga_id(1_796_436_000_000), nightly.saga_id(1_796_436_000_000));
/// assert!(Schedule::cron("bad", "61 * * * *").is_err());
/// ```
#[derive(Clone)]
pub struct Schedule {
    name: String,
    pattern: String,
    cron: Arc<croner::Cron>,
    catch_up: CatchUp,
    not_before_ms: u64,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("catch_up", &self.catch_up)
            .field("not_before_ms", &self.not_before_ms)
            .finish()
    }
}

/// One tick of a schedule, given to the function that makes its saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// When the tick is due, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The id of the tick's saga (the same in every process).
    pub saga_id: Uuid,
}

/// The namespace of tick saga ids (a UUID v5 of the schedule's name and tick).
const TICKS: Uuid = Uuid::from_u128(0x5c4e_d0e1_7a2b_4c39_9f1e_0b6a_d3c2_f871);

impl Schedule {
    /// The schedule `name` (unique in the application: it names the ticks' saga ids)
    /// with the cron `pattern`, catching up nothing ([`CatchUp::Skip`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`](crate::ErrorKind::Validation),
    /// `flext.saga.schedule_input`: `name` is empty or longer than
    /// [`MAX_SCHEDULE_NAME_BYTES`], or `pattern` is not a cron pattern (the message
    /// quotes it, bounded and escaped, with the parser's reason).
    pub fn cron(name: &str, pattern: &str) -> Result<Schedule> {
        if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_BYTES {
            return Err(Error::validation(
                crate::codes::SAGA_SCHEDULE_INPUT,
                format!(
                    "a schedule's name names its ticks' sagas: give 1 to {MAX_SCHEDULE_NAME_BYTES} bytes (got {})",
                    name.len()
                ),
            ));
        }
        let cron = croner::Cron::from_str(pattern).map_err(|e| {
            Error::validation(
                crate::codes::SAGA_SCHEDULE_INPUT,
                format!(
                    "schedule `{}`: {} is not a cron pattern ({e}); write five fields, `minute hour day-of-month month day-of-week` (UTC), with an optional seconds field in front",
                    crate::input::echo(name),
                    crate::input::echo(pattern)
                ),
            )
        })?;
        Ok(Schedule {
            name: name.to_owned(),
            pattern: pattern.to_owned(),
            cron: Arc::new(cron),
            catch_up: CatchUp::Skip,
            not_before_ms: 0,
        })
    }

    /// The same schedule with catch-up policy `policy`.
    pub fn catch_up(mut self, policy: CatchUp) -> Self {
        self.catch_up = policy;
        self
    }

    /// The same schedule catching up no tick before `ms` (milliseconds since the Unix
    /// epoch): when it was first deployed, say, so that its first start fires no tick
    /// from before it existed.
    pub fn not_before_ms(mut self, ms: u64) -> Self {
        self.not_before_ms = ms;
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first tick after `after_ms` (milliseconds since the Unix epoch), or `None`
    /// when the pattern has no later one.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = utc(after_ms)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last tick at or before `at_ms`, or `None` when there is none.
    fn previous(&self, at_ms: u64, inclusive: bool) -> Option<u64> {
        let at = utc(at_ms)?;
        let previous = self.cron.find_previous_occurrence(&at, inclusive).ok()?;
        u64::try_from(previous.timestamp_millis()).ok()
    }

    /// The id of the saga of the tick at `at_ms`: a UUID v5 of the schedule's name and
    /// the tick, the same in every process.
    pub fn saga_id(&self, at_ms: u64) -> Uuid {
        Uuid::new_v5(&TICKS, format!("{}\n{at_ms}", self.name).as_bytes())
    }

    fn tick(&self, at_ms: u64) -> Tick {
        Tick {
            at_ms,
            saga_id: self.saga_id(at_ms),
        }
    }
}

/// `ms` as a UTC time, down to its whole second: patterns have no finer field, and the
/// parser keeps a start's fraction of a second in what it finds.
fn utc(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(i64::try_from(ms / 1_000).ok()?, 0)
}

/// A schedule started by [`SagaRunner::spawn_schedule`]; stop it with
/// [`shutdown`](Self::shutdown). Dropping it leaves the schedule running until the
/// runtime stops.
#[derive(Debug)]
pub struct ScheduleLoop {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl ScheduleLoop {
    /// Stops the schedule: no tick fires after this returns (sagas already started go on
    /// in their tasks, and the recovery loop finishes any a crash leaves).
    pub async fn shutdown(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

impl SagaRunner {
    /// Starts a saga made by `saga` at every tick of `schedule`, on the current tokio
    /// runtime, until [`ScheduleLoop::shutdown`]. Run the same schedule in every
    /// process: each tick's saga is started once across all of them (its id is
    /// [`Schedule::saga_id`] of the tick, and the start is idempotent), and a tick whose
    /// process crashed is finished by the recovery loop like any saga. `saga` must make
    /// the same input from the same tick in every process (a function of the tick, not
    /// of the clock or the process): another input under the same id is refused
    /// (`flext.saga.id_reused`, logged).
    ///
    /// On starting, the schedule catches up on the ticks that passed while no process
    /// ran it, as its [`CatchUp`] policy says, then fires each tick as it comes, each
    /// saga in a task of its own (a long saga does not delay the next tick). A tick
    /// fires as soon after its time as the runtime's timer allows; a process whose clock
    /// is behind fires late, and the first process to start a tick runs it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use flext::prelude::*;
    /// use flext::saga::{CatchUp, MemoryLog, SagaRunner, Schedule};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Reconcile { day_ms: u64 }
    ///
    /// #[saga]
    /// impl Reconcile {
    ///     #[saga_step]
    ///     async fn compare(&self) -> Result<u64> { Ok(self.day_ms) }
    /// }
    ///
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let nightly = Schedule::cron("reconcile", "0 2 * * *").unwrap().catch_up(CatchUp::Once);
    /// let schedule = runner.spawn_schedule(nightly, |tick| Reconcile { day_ms: tick.at_ms });
    /// // ... serve ...
    /// schedule.shutdown().await;
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns a task).
    pub fn spawn_schedule<S, F>(&self, schedule: Schedule, saga: F) -> ScheduleLoop
    where
        S: Saga,
        F: Fn(&Tick) -> S + Send + Sync + 'static,
    {
        let runner = self.clone();
        let saga = Arc::new(saga);
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let started = super::now_ms();
            let missed = runner
                .missed_ticks(&schedule, started)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(schedule = schedule.name, error = %e, "the schedule cannot read the log to catch up; it fires the ticks to come");
                    Vec::new()
                });
            for at_ms in missed {
                fire(&runner, &schedule, &saga, at_ms);
            }
            let mut last = started;
            while let Some(next) = schedule.next_after(last) {
                let wait = Duration::from_millis(next.saturating_sub(super::now_ms()));
                let due = std::pin::pin!(tokio::time::sleep(wait));
                let stop = std::pin::pin!(stopped.notified());
                if let futures_util::future::Either::Right(_) =
                    futures_util::future::select(due, stop).await
                {
                    return;
                }
                fire(&runner, &schedule, &saga, next);
                last = next;
            }
            tracing::info!(
                schedule = schedule.name,
                "the schedule's pattern has no later tick"
            );
        });
        ScheduleLoop { stop, task }
    }

    /// The ticks at or before `now_ms` (milliseconds since the Unix epoch) that
    /// `schedule`'s catch-up policy fires when it starts then, oldest first: none for
    /// [`CatchUp::Skip`]; for [`CatchUp::Once`], the latest tick when its saga is not in
    /// the log; for [`CatchUp::Each`], the ticks after the latest one whose saga is in
    /// the log, at most `max` (the latest). Never a tick before the schedule's
    /// [`not_before_ms`](Schedule::not_before_ms).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the log
    /// cannot be read.
    pub async fn missed_ticks(&self, schedule: &Schedule, now_ms: u64) -> Result<Vec<u64>> {
        let max = match schedule.catch_up {
            CatchUp::Skip => return Ok(Vec::new()),
            CatchUp::Once => 1,
            CatchUp::Each { max } => max,
        };
        let mut missed = Vec::new();
        let mut at = schedule.previous(now_ms, true);
        while let Some(tick) = at.filter(|t| *t >= schedule.not_before_ms) {
            if missed.len() >= max as usize {
                break;
            }
            match self.log.load(schedule.saga_id(tick)).await {
                // The last tick some process fired: nothing before it is missed.
                Ok(_) => break,
                Err(e) if e.kind() == crate::ErrorKind::NotFound => missed.push(tick),
                Err(e) => return Err(e),
            }
            at = schedule.previous(tick, false);
        }
        missed.reverse();
        Ok(missed)
    }
}

/// Starts tick `at_ms`'s saga in a task of its own.
fn fire<S, F>(runner: &SagaRunner, schedule: &Schedule, saga: &Arc<F>, at_ms: u64)
where
    S: Saga,
    F: Fn(&Tick) -> S + Send + Sync + 'static,
{
    let tick = schedule.tick(at_ms);
    let runner = runner.clone();
    let saga = saga.clone();
    let name = schedule.name.clone();
    tokio::spawn(async move {
        let input = saga(&tick);
        match runner
            .run_with_id(tick.saga_id, input, &Context::new())
            .await
        {
            Ok(outcome) => {
                tracing::info!(schedule = name, tick_ms = tick.at_ms, saga_id = %tick.saga_id, state = %outcome.state(), "schedule tick");
            }
            // Another process started this tick first: it runs it.
            Err(e) if e.code() == crate::codes::SAGA_IN_FLIGHT => {
                tracing::debug!(
                    schedule = name,
                    tick_ms = tick.at_ms,
                    "tick started by another process"
                );
            }
            Err(e) => {
                tracing::warn!(schedule = name, tick_ms = tick.at_ms, error = %e, "schedule tick not started");
            }
        }
    });
}
