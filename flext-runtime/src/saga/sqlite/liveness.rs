//! Liveness lock files beside a SQLite log: each runner incarnation holds an exclusive
//! lock (`flock`, through [`std::fs::File::try_lock`]) on a file of its own in
//! `<database>.flext-runners/`, for as long as its log lives. The operating system
//! releases the lock when the process ends, however it ends, so a lock that can be taken
//! proves its incarnation gone: a restarted process takes that incarnation's sagas back
//! at once instead of waiting out their lease.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The lock files this log holds, by owner.
#[derive(Default)]
pub(super) struct Liveness {
    held: Mutex<HashMap<String, File>>,
}

/// The lock file of `owner` for the database at `db`.
fn file_for(db: &Path, owner: &str) -> PathBuf {
    let mut dir = db.as_os_str().to_owned();
    dir.push(".flext-runners");
    let name: String = owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(dir).join(format!("{name}.lock"))
}

/// Whether this process now holds `file`'s lock.
fn try_lock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

impl Liveness {
    /// Takes `owner`'s lock for the database at `db`; `Ok(false)` for a database with no
    /// file (in memory).
    pub(super) fn hold(&self, db: Option<&Path>, owner: &str) -> Result<bool> {
        let Some(db) = db else { return Ok(false) };
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.contains_key(owner) {
            return Ok(true);
        }
        let path = file_for(db, owner);
        let failed = |e: std::io::Error| {
            Error::infrastructure(
                crate::codes::SAGA_LOG_FAILED,
                format!(
                    "saga log: cannot take the liveness lock {}: {e}",
                    path.display()
                ),
            )
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(failed)?;
        if try_lock(&file).map_err(failed)? {
            held.insert(owner.to_owned(), file);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Whether `owner`'s process is provably gone: its lock file exists and its lock
    /// is free. An owner with no lock file (a log written before liveness locks, an
    /// operator) is never proven gone. The file of a gone owner is removed.
    pub(super) fn gone(&self, db: Option<&Path>, owner: &str) -> bool {
        let Some(db) = db else { return false };
        if self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(owner)
        {
            return false;
        }
        let path = file_for(db, owner);
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        if try_lock(&file).unwrap_or(false) {
            let _ = std::fs::remove_file(&path);
            true
        } else {
            false
        }
    }
}
