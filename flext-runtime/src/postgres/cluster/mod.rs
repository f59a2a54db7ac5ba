//! [`TestCluster`]: a throwaway PostgreSQL server for tests, or the user's own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Result;

mod process;

use process::{failed, find, is_root, log_tail, run, working_in};

/// A PostgreSQL server for a test: the one `DATABASE_URL` names when it is set (the
/// user's own; each test gets a fresh database on it), otherwise a throwaway cluster made
/// with the machine's `initdb` and `pg_ctl` in a temporary directory, on a free local
/// port, run as the `postgres` user when the tests run as root, and stopped and removed
/// when this value is dropped.
///
/// On a shared `DATABASE_URL` server, run the tests one at a time
/// (`-- --test-threads=1`): [`PgEventStore`](super::PgEventStore) numbers only events
/// older than every transaction running on the server, in any database, so tests
/// running beside each other delay each other's `read_all` (a reader lags by the longest
/// running transaction; in production that is the intended behaviour, in a test that
/// expects to read its event at once it is a failure).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cluster = flext::postgres::TestCluster::start().unwrap();
/// let db = flext::postgres::PgDatabase::connect(cluster.url()).await.unwrap();
/// # let _ = db;
/// # }
/// ```
pub struct TestCluster {
    url: String,
    /// The data directory and how to stop it, when this value started the server.
    owned: Option<Owned>,
}

struct Owned {
    dir: PathBuf,
    pg_ctl: PathBuf,
    as_postgres: bool,
    /// The server's options (port, socket directory, fsync) and log file, to start it
    /// again after [`TestCluster::kill`].
    options: String,
    log: String,
}

impl TestCluster {
    /// The server to test against; see the type's documentation.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure), `flext.store.failed`:
    /// when neither `DATABASE_URL` is set nor `initdb` and `pg_ctl` are installed (the
    /// message says how to install them), or when the cluster cannot be made or started.
    pub fn start() -> Result<Self> {
        Self::start_with(false)
    }

    /// As [`start`](Self::start), but a server that syncs its commits to disk (`fsync` on,
    /// PostgreSQL's default), for benchmarks whose figures depend on the cost of a durable
    /// commit and on PostgreSQL's group commit.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_durable() -> Result<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Result<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(TestCluster { url, owned: None });
        }
        let (Some(initdb), Some(pg_ctl)) = (find("initdb"), find("pg_ctl")) else {
            return Err(failed(
                "PostgreSQL is not installed: install its server (Debian and Ubuntu: `apt-get install postgresql`), or set DATABASE_URL to a server you own",
            ));
        };
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("flext-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(format!("cannot make {}: {e}", dir.display())))?;
        if as_postgres {
            let owned = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| failed(format!("chown: {e}")))?;
            if !owned.success() {
                return Err(failed(
                    "cannot give the cluster's directory to the postgres user (running as root needs that user: it comes with the postgresql package)",
                ));
            }
        }
        let data = dir.join("data");
        let data_arg = data.to_string_lossy().into_owned();
        run(
            &initdb,
            &[
                "-D",
                &data_arg,
                "-U",
                "flext",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            as_postgres,
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| failed(format!("no free port: {e}")))?
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            dir.display(),
            if durable { "on" } else { "off" }
        );
        let log = dir.join("server.log").to_string_lossy().into_owned();
        let cluster = TestCluster {
            url: format!("postgres://flext@127.0.0.1:{port}/postgres"),
            owned: Some(Owned {
                dir,
                pg_ctl: pg_ctl.clone(),
                as_postgres,
                options,
                log,
            }),
        };
        cluster.restart()?;
        Ok(cluster)
    }

    /// Kills the server as a crash would: `SIGKILL` to the postmaster and to every
    /// server process it started, with no shutdown checkpoint. Every connection fails
    /// at once; [`restart`](Self::restart) brings the server back on the same port with
    /// the same data (crash recovery replays its WAL).
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when this value did not start the server (`DATABASE_URL`)
    /// or the server's process id cannot be read.
    pub fn kill(&self) -> Result<()> {
        let owned = self
            .owned
            .as_ref()
            .ok_or_else(|| failed("the server on DATABASE_URL is not this test's to kill"))?;
        let pid_file = owned.dir.join("data").join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.lines().next().map(str::trim).map(str::to_owned))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| failed(format!("no server process id in {}", pid_file.display())))?;
        let data = owned.dir.join("data");
        // A second kill without a restart reads a stale id, which another process may
        // have been given since: only a process working in the data directory is the
        // server's (where `/proc` cannot tell, the id is taken as it is).
        let ours = working_in(&data).contains(&pid) || !Path::new("/proc/self/cwd").exists();
        if ours {
            // Stopped first, so that it forks no backend for a worker's new connection
            // while its children are killed (such a backend would outlive it, holding
            // the shared memory that the next start then refuses to take over).
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
            let _ = Command::new("pkill").args(["-KILL", "-P", &pid]).status();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        // Wait until the processes are gone, so that a restart finds the port and the
        // shared memory free: every server process works in the data directory.
        for _ in 0..250 {
            let left = working_in(&data);
            let alive = ours
                && Command::new("kill")
                    .args(["-0", &pid])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if left.is_empty() && !alive {
                break;
            }
            if !left.is_empty() {
                let _ = Command::new("kill").arg("-KILL").args(&left).status();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the server this value made (again, after [`kill`](Self::kill)), and
    /// waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when this value did not start the server, or `pg_ctl`
    /// fails.
    pub fn restart(&self) -> Result<()> {
        let owned = self
            .owned
            .as_ref()
            .ok_or_else(|| failed("the server on DATABASE_URL is not this test's to start"))?;
        let data = owned.dir.join("data").to_string_lossy().into_owned();
        let start = || {
            run(
                &owned.pg_ctl,
                &[
                    "-D",
                    &data,
                    "-o",
                    &owned.options,
                    "-l",
                    &owned.log,
                    "-w",
                    "start",
                ],
                owned.as_postgres,
            )
        };
        // Right after a kill the old processes may still hold the port or the shared
        // memory for a moment: try again for a few seconds.
        let mut tries = 0;
        loop {
            match start() {
                Err(e) if tries < 25 => {
                    tries += 1;
                    tracing::debug!(error = %e, "test cluster: start failed; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(failed(format!(
                        "{e}; the server's log says: {}",
                        crate::input::echo(&log_tail(Path::new(&owned.log)))
                    )));
                }
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Turns TLS on with the certificate and key given in PEM (the key readable by the
    /// server alone), and restarts the server: clients may then connect with
    /// `sslmode=require`.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when this value did not start the server, or a file cannot
    /// be written or the server restarted.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        let owned = self.owned()?;
        let data = owned.dir.join("data");
        owned.write(&data.join("server.crt"), cert_pem, 0o644)?;
        owned.write(&data.join("server.key"), key_pem, 0o600)?;
        owned.append(
            &data.join("postgresql.conf"),
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        )?;
        owned.reload()
    }

    /// Requires a password (SCRAM) of every user connecting over TCP but the cluster's
    /// own `flext` user, and restarts the server: for tests of refused credentials. Create users
    /// with `CREATE ROLE name LOGIN PASSWORD '...'`.
    ///
    /// # Errors
    ///
    /// As [`enable_tls`](Self::enable_tls).
    pub fn require_passwords(&self) -> Result<()> {
        let owned = self.owned()?;
        owned.write(
            &owned.dir.join("data").join("pg_hba.conf"),
            "local all all trust\nhost all flext 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            0o600,
        )?;
        owned.reload()
    }

    /// Stops the server and starts it again as a standby with no primary and
    /// `hot_standby = off`: it stays in recovery, and refuses every connection with
    /// SQLSTATE 57P03, as a server does while it starts up or recovers. For tests of
    /// that refusal; [`restart`](Self::restart) does not undo it.
    ///
    /// # Errors
    ///
    /// As [`enable_tls`](Self::enable_tls), or when `pg_ctl` fails.
    pub fn restart_in_recovery(&self) -> Result<()> {
        let owned = self.owned()?;
        let data = owned.dir.join("data");
        let data_arg = data.to_string_lossy().into_owned();
        run(
            &owned.pg_ctl,
            &["-D", &data_arg, "-m", "fast", "-w", "stop"],
            owned.as_postgres,
        )?;
        owned.write(&data.join("standby.signal"), "", 0o600)?;
        owned.append(&data.join("postgresql.conf"), "\nhot_standby = off\n")?;
        self.restart()
    }

    fn owned(&self) -> Result<&Owned> {
        self.owned
            .as_ref()
            .ok_or_else(|| failed("the server on DATABASE_URL is not this test's to configure"))
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A fresh database on the server, for one test; returns its URL.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be created.
    pub async fn fresh_database(&self) -> Result<String> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(super::pg_error)?;
        let task = tokio::spawn(connection);
        let name = format!("flext_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(super::pg_error)?;
        drop(client);
        let _ = task.await;
        // The same server, another database: the URL's last path segment.
        let base = self
            .url
            .rsplit_once('/')
            .map_or(self.url.as_str(), |(b, _)| b);
        Ok(format!("{base}/{name}"))
    }
}

impl Owned {
    /// Writes `contents` to `path` in the data directory, owned by the server's user.
    fn write(&self, path: &Path, contents: &str, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents)
            .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        if self.as_postgres {
            let owned = Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .status()
                .map_err(|e| failed(format!("chown: {e}")))?;
            if !owned.success() {
                return Err(failed(format!("cannot chown {}", path.display())));
            }
        }
        Ok(())
    }

    fn append(&self, path: &Path, text: &str) -> Result<()> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| failed(format!("cannot append to {}: {e}", path.display())))
    }

    /// Restarts the server and waits until it accepts connections, so that a changed
    /// configuration is in force when this returns (a `reload` only signals it).
    fn reload(&self) -> Result<()> {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        run(
            &self.pg_ctl,
            &[
                "-D",
                &data,
                "-m",
                "fast",
                "-o",
                &self.options,
                "-l",
                &self.log,
                "-w",
                "restart",
            ],
            self.as_postgres,
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(owned) = self.owned.take() {
            let data = owned.dir.join("data").to_string_lossy().into_owned();
            // Stopping is best effort: the directory goes either way.
            let _ = run(
                &owned.pg_ctl,
                &["-D", &data, "-m", "immediate", "-w", "stop"],
                owned.as_postgres,
            );
            let _ = std::fs::remove_dir_all(&owned.dir);
        }
    }
}
