//! A real `nats-server` for tests: the machine's, with JetStream, on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flext_runtime::{Error, codes};

/// A `nats-server -js` of the machine's, on a free loopback port with a fresh store
/// directory, stopped (and its directory removed) on drop; or, when `NATS_URL` is set,
/// that server, left alone.
///
/// ```no_run
/// # async fn run() -> flext::Result<()> {
/// let server = flext::nats::NatsTestServer::start()?;
/// let relay = flext::nats::NatsRelay::connect(server.url(), "test").await?;
/// # let _ = relay; Ok(()) }
/// ```
#[derive(Debug)]
pub struct NatsTestServer {
    url: String,
    child: Option<Child>,
    store: Option<PathBuf>,
    port: u16,
}

impl NatsTestServer {
    /// Starts the server and waits until it takes connections (up to 10 s).
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when `nats-server` is not installed (the message says how to
    /// install it), does not start, or does not listen within 10 s.
    pub fn start() -> Result<NatsTestServer, Error> {
        if let Ok(url) = std::env::var("NATS_URL") {
            return Ok(NatsTestServer {
                url,
                child: None,
                store: None,
                port: 0,
            });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| failed(format!("no free port: {e}")))?;
        let store = std::env::temp_dir().join(format!("flext-nats-{}-{port}", std::process::id()));
        let mut server = NatsTestServer {
            url: format!("nats://127.0.0.1:{port}"),
            child: None,
            store: Some(store),
            port,
        };
        server.restart()?;
        Ok(server)
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills the server at once (SIGKILL), as a crash would; its store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store directory (after
    /// [`kill`](Self::kill)), and waits until it listens.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) -> Result<(), Error> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        self.kill();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "`nats-server` does not start ({e}): install it (`apt-get install nats-server`), or set NATS_URL to a server with JetStream"
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "`nats-server` did not listen on port {} within 10 s",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for NatsTestServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(store) = &self.store {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}

fn failed(message: String) -> Error {
    Error::infrastructure(codes::STORE_FAILED, message)
}
