//! What the `flext-saga` tests share: a temporary directory for the log, and the tool
//! run as an operator runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flext::Uuid;

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("flext-saga-cli-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    pub fn db(&self) -> PathBuf {
        self.0.join("sagas.db")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

pub fn tool(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flext-saga"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("FLEXT_SAGA_DB")
        .output()
        .expect("flext-saga runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
