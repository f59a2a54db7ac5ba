//! The processes behind a [`TestCluster`](super::TestCluster): finding the server's
//! programs, running them (as the `postgres` user under root), and the processes a
//! server leaves working in its data directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Where the server programs are: on the `PATH`, or in Debian's
/// `/usr/lib/postgresql/<version>/bin`, the newest first.
pub(super) fn find(program: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(program)))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

pub(super) fn failed(what: impl std::fmt::Display) -> Error {
    Error::infrastructure(crate::codes::STORE_FAILED, format!("test cluster: {what}"))
}

pub(super) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub(super) fn run(program: &Path, args: &[&str], as_postgres: bool) -> Result<()> {
    let mut command = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command
        .args(args)
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{} failed: {}",
            program.display(),
            crate::input::echo(String::from_utf8_lossy(&out.stderr).trim())
        )))
    }
}

/// The processes working in `dir` (Linux's `/proc/<pid>/cwd`; none found elsewhere): a
/// PostgreSQL server's postmaster and every process it starts work in its data directory.
pub(super) fn working_in(dir: &Path) -> Vec<String> {
    let (Ok(dir), Ok(entries)) = (dir.canonicalize(), std::fs::read_dir("/proc")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok().map(|n| (n, e.path())))
        .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|(_, p)| std::fs::read_link(p.join("cwd")).is_ok_and(|c| c == dir))
        .map(|(n, _)| n)
        .collect()
}

/// Why the server would not start, from its log: the last line at PostgreSQL's
/// `FATAL` or `PANIC` severity, or the log's last line when there is none.
pub(super) fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines = || text.lines().rev().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.contains("FATAL:") || l.contains("PANIC:"))
        .or_else(|| lines().next())
        .unwrap_or("(empty)")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::log_tail;

    #[test]
    fn the_tail_is_the_last_fatal_line_or_the_last_line() {
        let dir = std::env::temp_dir().join(format!("flext-log-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        std::fs::write(
            &log,
            "LOG:  starting\nFATAL:  pre-existing shared memory block is still in use\nHINT:  Terminate any old server processes.\nLOG:  database system is shut down\n",
        )
        .unwrap();
        assert_eq!(
            log_tail(&log),
            "FATAL:  pre-existing shared memory block is still in use"
        );
        std::fs::write(&log, "LOG:  starting\nLOG:  could not bind\n\n").unwrap();
        assert_eq!(log_tail(&log), "LOG:  could not bind");
        assert_eq!(log_tail(&dir.join("missing.log")), "(empty)");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
