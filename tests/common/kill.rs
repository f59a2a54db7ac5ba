//! What the SIGKILL soaks share: a seeded generator for kill points, counts and seeds
//! from the environment, and the example binary to kill.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;

/// A small xorshift generator: the tests need varied kill points, not cryptography.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The count in environment variable `name`, or `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `FLEXT_KILL_SEED`, to replay a run, or a fresh odd seed.
pub fn seed() -> u64 {
    std::env::var("FLEXT_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

/// Builds example `name` (debug) and returns its path.
#[allow(dead_code)] // each soak uses one of the two
pub fn example(name: &str) -> PathBuf {
    example_with(name, &[])
}

/// Builds example `name` (debug) with the cargo `features` it needs, and returns its path.
pub fn example_with(name: &str, features: &[&str]) -> PathBuf {
    let features = features.join(",");
    let mut args = vec!["build", "--quiet", "--example", name];
    if !features.is_empty() {
        args.extend(["--features", features.as_str()]);
    }
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the example builds");
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        )
        .join("debug")
        .join("examples")
        .join(name)
}

/// Reads `child`'s progress lines until `lines` have passed, then kills it; `true` when
/// it was killed, `false` when it finished first.
#[allow(dead_code)] // the soaks that read a child's progress
pub fn kill_after(child: &mut std::process::Child, lines: u64) -> bool {
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout).lines();
    let mut seen = 0;
    while let Some(Ok(_)) = reader.next() {
        if seen == lines {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        seen += 1;
    }
    child.wait().unwrap();
    false
}
